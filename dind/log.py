"""Structured logging to stderr, in text or JSON.

Text records are written directly; ``logging`` and python-json-logger are imported
only when a JSON record is actually emitted, so no container start pays for them
unless it asked for JSON.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

DEBUG = 10
INFO = 20
NOTICE = 25
"""What dind decided for a daemon it starts: shown by default, not with -q (``dind.summary``)."""
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

_PREFIX = {DEBUG: "", INFO: "", NOTICE: "", WARNING: "warning: ", ERROR: "error: "}


def _emit(text: str) -> None:
    """Write to stderr if it can be written: a closed or full stderr (``2>&-``,
    ``2>/dev/full``) must never decide whether the command runs."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        if text:
            stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


class Log:
    """Leveled logger whose records carry fields (step, action, target, errno...).

    Text shows ``dind: warning: message``; JSON shows one object per record with the
    fields as keys.
    """

    def __init__(self, level: int = NOTICE, fmt: str = "text", prefix: str = "dind") -> None:
        self.level = level
        self.fmt = fmt
        self.prefix = prefix
        self._logger: logging.Logger | None = None

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def debug(self, msg: str, **fields: object) -> None:
        self.log(DEBUG, msg, fields)

    def info(self, msg: str, **fields: object) -> None:
        self.log(INFO, msg, fields)

    def notice(self, msg: str, **fields: object) -> None:
        self.log(NOTICE, msg, fields)

    def warning(self, msg: str, **fields: object) -> None:
        self.log(WARNING, msg, fields)

    def error(self, msg: str, **fields: object) -> None:
        """Errors are shown at every level, -q included."""
        self.log(ERROR, msg, fields)

    def log(self, level: int, msg: str, fields: dict[str, object]) -> None:
        if level < self.level and level < ERROR:
            return
        if self.fmt != "json":
            # Plain text needs no logging machinery: one write, no imports.
            _emit(f"{self.prefix}: {_PREFIX.get(level, '')}{msg}\n")
            return
        logger = self._logger or self._setup()
        extra = {(k + "_" if k in _RESERVED else k): v for k, v in fields.items() if v is not None}
        logger.log(level, msg, extra=extra)

    def prepare(self) -> None:
        """Import what emitting needs now, before mounts may cover where it lives."""
        if self.fmt == "json" and self._logger is None:
            self._setup()

    def flush(self) -> None:
        """Flush stderr before exec, so no record is lost with the old process image."""
        if self._logger is not None:
            for handler in self._logger.handlers:
                handler.flush()
        _emit("")

    def _setup(self) -> logging.Logger:
        import logging

        from pythonjsonlogger.json import JsonFormatter

        logging.raiseExceptions = False  # a closed or full stderr must not print a traceback
        logging.addLevelName(NOTICE, "NOTICE")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
            )
        )
        logger = logging.getLogger(self.prefix)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(DEBUG)
        self._logger = logger
        return logger
