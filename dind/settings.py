"""Run-time settings: the one place where options and DIND_* variables meet.

Both the click CLI and the fast path (no options on the command line) build a
``Settings`` through ``from_sources``, so environment handling cannot drift apart.
"""

from __future__ import annotations

import os
import posixpath

from dind.errors import UsageError
from dind.log import ERROR, FORMATS, INFO, WARNING

STEPS = ("securityfs", "tmp", "cgroup-mounts", "cgroup-nesting", "rshared")
"""Step names accepted by --skip, in the order dind runs them."""

DEFAULT_CGROUP_ROOT = "/cgroup"
DEFAULT_PROC_CGROUP = "/proc/1/cgroup"
DEFAULT_MOUNTINFO = "/proc/self/mountinfo"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class Settings:
    """Everything a run needs to know, resolved and validated."""

    __slots__ = (
        "cgroup_root",
        "check",
        "command",
        "dry_run",
        "init",
        "init_group",
        "log_format",
        "log_level",
        "mountinfo",
        "proc_cgroup",
        "skip",
        "strict",
    )

    def __init__(
        self,
        *,
        command: list[str],
        cgroup_root: str = DEFAULT_CGROUP_ROOT,
        skip: frozenset[str] = frozenset(),
        strict: bool = False,
        dry_run: bool = False,
        proc_cgroup: str = DEFAULT_PROC_CGROUP,
        mountinfo: str = DEFAULT_MOUNTINFO,
        log_format: str = "text",
        log_level: int = WARNING,
        init: bool = False,
        init_group: bool = False,
        check: bool = False,
    ) -> None:
        self.command = command
        self.cgroup_root = cgroup_root
        self.skip = skip
        self.strict = strict
        self.dry_run = dry_run
        self.proc_cgroup = proc_cgroup
        self.mountinfo = mountinfo
        self.log_format = log_format
        self.log_level = log_level
        self.init = init
        self.init_group = init_group
        self.check = check


def parse_bool(name: str, value: str) -> bool:
    """Accept the usual spellings; anything else is a usage error, not a silent False."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"{name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")


def parse_skip(values: list[str], origin: str) -> frozenset[str]:
    """Validate step names; accepts repeated values and comma-separated lists."""
    steps: set[str] = set()
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            if name not in STEPS:
                raise UsageError(f"{origin}: unknown step {name!r} (steps: {', '.join(STEPS)})")
            steps.add(name)
    return frozenset(steps)


def parse_cgroup_root(value: str, origin: str) -> str:
    """The cgroup root must be an absolute, normalised path other than ``/``."""
    if not value.startswith("/") or "\0" in value:
        raise UsageError(f"{origin}: {value!r} is not an absolute path")
    path = posixpath.normpath(value)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if path == "/":
        raise UsageError(f"{origin}: the cgroup root cannot be /")
    return path


def parse_log_format(value: str, origin: str) -> str:
    if value not in FORMATS:
        raise UsageError(f"{origin}: {value!r} is not one of {', '.join(FORMATS)}")
    return value


def from_sources(
    command: list[str],
    options: dict[str, object],
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge command-line ``options`` (None = not given) over ``DIND_*`` variables."""
    env = os.environ if environ is None else environ

    def pick(key: str, var: str) -> tuple[object, str]:
        given = options.get(key)
        if given is not None and given != ():
            return given, f"--{key.replace('_', '-')}"
        if var in env:
            return env[var], var
        return None, ""

    def flag(key: str, var: str) -> bool:
        value, origin = pick(key, var)
        if isinstance(value, str):
            return parse_bool(origin, value)
        return bool(value)

    root, origin = pick("cgroup_root", "DIND_CGROUP_ROOT")
    cgroup_root = DEFAULT_CGROUP_ROOT if root is None else parse_cgroup_root(str(root), origin)

    skip_value, origin = pick("skip", "DIND_SKIP")
    if isinstance(skip_value, str):
        skip = parse_skip([skip_value], origin)
    elif isinstance(skip_value, tuple | list):
        skip = parse_skip([str(s) for s in skip_value], origin)
    else:
        skip = frozenset()

    fmt_value, origin = pick("log_format", "DIND_LOG_FORMAT")
    log_format = "text" if fmt_value is None else parse_log_format(str(fmt_value), origin)

    verbose = options.get("verbose") or 0
    assert isinstance(verbose, int)
    quiet = bool(options.get("quiet"))
    if verbose and quiet:
        raise UsageError("-v/--verbose and -q/--quiet cannot be combined")
    log_level = WARNING
    if verbose:
        log_level = INFO - 10 * (verbose - 1)
    elif quiet:
        log_level = ERROR

    settings = Settings(
        command=command,
        cgroup_root=cgroup_root,
        skip=skip,
        strict=flag("strict", "DIND_STRICT"),
        dry_run=flag("dry_run", "DIND_DRY_RUN"),
        proc_cgroup=str(options.get("proc_cgroup") or DEFAULT_PROC_CGROUP),
        mountinfo=str(options.get("mountinfo") or DEFAULT_MOUNTINFO),
        log_format=log_format,
        log_level=log_level,
        init=flag("init", "DIND_INIT"),
        init_group=flag("init_group", "DIND_INIT_GROUP"),
        check=flag("check", "DIND_CHECK"),
    )
    if settings.init_group:
        settings.init = True
    if settings.check and command:
        raise UsageError("--check takes no command")
    if not command and not (settings.dry_run or settings.check):
        raise UsageError("no command given (e.g. 'dind -- dockerd')")
    return settings
