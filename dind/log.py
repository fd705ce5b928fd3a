"""Structured logging to stderr, in text or JSON.

The ``logging`` module (and python-json-logger for JSON) is imported only when a
record is actually emitted: a quiet, successful container start never pays for it.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40

FORMATS = ("text", "json")

# LogRecord attributes that ``extra`` may not overwrite; such fields get a ``_`` suffix.
_RESERVED = frozenset({
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName",
    "levelname", "levelno", "lineno", "message", "module", "msecs", "msg", "name",
    "pathname", "process", "processName", "relativeCreated", "stack_info", "taskName",
    "thread", "threadName",
})  # fmt: skip

_PREFIX = {DEBUG: "", INFO: "", WARNING: "warning: ", ERROR: "error: "}


class Log:
    """Leveled logger whose records carry fields (step, action, target, errno...).

    Text shows ``dind: warning: message``; JSON shows one object per record with the
    fields as keys.
    """

    def __init__(self, level: int = WARNING, fmt: str = "text") -> None:
        self.level = level
        self.fmt = fmt
        self._logger: logging.Logger | None = None

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def debug(self, msg: str, **fields: object) -> None:
        self.log(DEBUG, msg, fields)

    def info(self, msg: str, **fields: object) -> None:
        self.log(INFO, msg, fields)

    def warning(self, msg: str, **fields: object) -> None:
        self.log(WARNING, msg, fields)

    def error(self, msg: str, **fields: object) -> None:
        """Errors are shown at every level, -q included."""
        self.log(ERROR, msg, fields)

    def log(self, level: int, msg: str, fields: dict[str, object]) -> None:
        if level < self.level and level < ERROR:
            return
        logger = self._logger or self._setup()
        extra = {(k + "_" if k in _RESERVED else k): v for k, v in fields.items() if v is not None}
        logger.log(level, msg, extra=extra)

    def flush(self) -> None:
        """Flush stderr before exec, so no record is lost with the old process image."""
        if self._logger is not None:
            for handler in self._logger.handlers:
                handler.flush()
        sys.stderr.flush()

    def _setup(self) -> logging.Logger:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        formatter: logging.Formatter
        if self.fmt == "json":
            from pythonjsonlogger.json import JsonFormatter

            formatter = JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
            )
        else:
            formatter = _text_formatter(logging.Formatter)()
        handler.setFormatter(formatter)
        logger = logging.getLogger("dind")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(DEBUG)
        self._logger = logger
        return logger


def _text_formatter(base: type[logging.Formatter]) -> type[logging.Formatter]:
    """``dind: warning: message``; built here because ``logging`` is imported lazily."""

    class TextFormatter(base):  # type: ignore[valid-type,misc]
        def format(self, record: logging.LogRecord) -> str:
            return f"dind: {_PREFIX.get(record.levelno, '')}{record.getMessage()}"

    return TextFormatter
