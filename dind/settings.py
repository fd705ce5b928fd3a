"""Run-time settings: the one place where options and DIND_* variables meet.

Both the click CLI and the fast path (no options on the command line) build a
``Settings`` through ``from_sources``, so environment handling cannot drift apart.
Every value is validated here: a bad one is a usage error (exit 2), one line.
"""

from __future__ import annotations

import os
import posixpath

from dind import paths, steps
from dind.errors import UsageError, shown
from dind.log import ERROR, FORMATS, INFO, NOTICE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
IPTABLES_CHOICES = ("auto", "nft", "legacy")
MTU_MIN = 68
"""The smallest MTU IPv4 allows (RFC 791); dockerd's own lower bound."""
MTU_MAX = 65535
DEFAULT_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_ROOTLESS_USER = "rootless"
"""The image's user for the rootless daemon (uid 1000, docker:dind-rootless's name)."""


class Settings:
    """Everything a run needs to know, resolved and validated."""

    __slots__ = (
        "allow_host",
        "cgroup_root",
        "check",
        "command",
        "data_root_check",
        "dockerd_args",
        "dockerd_log",
        "dockerd_stop_timeout",
        "dry_run",
        "init",
        "init_group",
        "iptables",
        "log_format",
        "log_level",
        "mountinfo",
        "mtu",
        "proc_cgroup",
        "ready",
        "recipe",
        "rootless",
        "rootless_user",
        "seccomp_profile",
        "skip",
        "strict",
        "timeout",
        "tls_certdir",
        "tls_san",
        "with_dockerd",
    )

    def __init__(
        self,
        *,
        command: list[str],
        cgroup_root: str = paths.DEFAULT_CGROUP_ROOT,
        skip: frozenset[str] = frozenset(),
        strict: bool = False,
        dry_run: bool = False,
        proc_cgroup: str = paths.PROC_1_CGROUP,
        mountinfo: str = paths.MOUNTINFO,
        log_format: str = "text",
        log_level: int = NOTICE,
        init: bool | None = None,
        init_group: bool = False,
        check: bool = False,
        allow_host: bool = False,
        with_dockerd: bool = False,
        dockerd_args: tuple[str, ...] = (),
        dockerd_log: str = paths.DOCKERD_LOG,
        dockerd_stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        timeout: float | None = None,
        ready: bool = False,
        iptables: str = "auto",
        mtu: str = "auto",
        data_root_check: bool = True,
        tls_certdir: str | None = None,
        tls_san: tuple[str, ...] = (),
        recipe: str | None = None,
        seccomp_profile: bool = False,
        rootless: bool = False,
        rootless_user: str = DEFAULT_ROOTLESS_USER,
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
        self.allow_host = allow_host
        self.with_dockerd = with_dockerd
        self.dockerd_args = dockerd_args
        self.dockerd_log = dockerd_log
        self.dockerd_stop_timeout = dockerd_stop_timeout
        self.timeout = timeout
        self.ready = ready
        self.iptables = iptables
        self.mtu = mtu
        self.data_root_check = data_root_check
        self.tls_certdir = tls_certdir
        self.tls_san = tls_san
        self.recipe = recipe
        """``--recipe RUNTIME``: print the least-privilege outer options, do nothing else."""
        self.seccomp_profile = seccomp_profile
        """``--seccomp-profile``: print dind's seccomp profile, do nothing else."""
        self.rootless = rootless
        self.rootless_user = rootless_user

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` (``--check`` plans dockerd mode with the user's options)."""
        copy = object.__new__(Settings)
        for name in self.__slots__:
            setattr(copy, name, changes.get(name, getattr(self, name)))
        return copy

    @property
    def dockerd_command(self) -> bool:
        """COMMAND is dockerd itself (``dind dockerd ...``): dind runs the daemon steps first."""
        return bool(self.command) and is_dockerd(self.command[0])

    @property
    def daemon_mode(self) -> bool:
        """dind starts a dockerd: as COMMAND (dockerd mode) or before it (--with-dockerd)."""
        return self.with_dockerd or self.dockerd_command

    @property
    def dockerd_argv(self) -> list[str]:
        """The daemon's command line before dind's steps add to it."""
        base = list(self.command) if self.dockerd_command else ["dockerd"]
        return [*base, *self.dockerd_args]

    @property
    def runs_init(self) -> bool:
        """dind stays as init: asked for, or by default in dockerd mode (shims are reaped)."""
        if self.init is not None:
            return self.init
        return self.dockerd_command and not self.with_dockerd


def is_dockerd(word: str) -> bool:
    return word == "dockerd" or word.endswith("/dockerd")


def parse_bool(name: str, value: str) -> bool:
    """Accept the usual spellings; anything else is a usage error, not a silent False."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UsageError(f"{name}={shown(value)}: expected one of 1/0, true/false, yes/no, on/off")


def parse_skip(values: list[str], origin: str) -> frozenset[str]:
    """Validate step names; accepts repeated values and comma-separated lists."""
    names: set[str] = set()
    for value in values:
        for item in value.split(","):
            name = item.strip()
            if not name:
                continue
            if name not in steps.STEPS:
                raise UsageError(
                    f"{origin}: unknown step {shown(name)} (steps: {', '.join(steps.STEPS)})"
                )
            names.add(name)
    return frozenset(names)


def parse_cgroup_root(value: str, origin: str) -> str:
    """An absolute path other than ``/``, normalised once: ``//x/./y/`` is ``/x/y``.

    Symlinks are not resolved here (or anywhere): a root that goes through one is
    refused when dind looks at it.
    """
    if not value.startswith("/") or "\0" in value:
        raise UsageError(f"{origin}: {shown(value)} is not an absolute path")
    if ".." in value.split("/"):
        raise UsageError(f"{origin}: {shown(value)} has a '..' component")
    path = "/" + posixpath.normpath(value).lstrip("/")
    if path == "/":
        raise UsageError(f"{origin}: the cgroup root cannot be /")
    return path


def parse_log_format(value: str, origin: str) -> str:
    if value not in FORMATS:
        raise UsageError(f"{origin}: {shown(value)} is not one of {', '.join(FORMATS)}")
    return value


def parse_seconds(value: object, origin: str) -> float:
    """A finite, non-negative number of seconds."""
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise UsageError(f"{origin}: {shown(str(value))} is not a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"{origin}: {shown(str(value))} is not a number of seconds >= 0")
    return seconds


def parse_iptables(value: str, origin: str) -> str:
    if value not in IPTABLES_CHOICES:
        raise UsageError(f"{origin}={shown(value)}: expected one of {', '.join(IPTABLES_CHOICES)}")
    return value


def parse_mtu(value: str, origin: str) -> str:
    """``auto``, ``off`` or an MTU dockerd accepts."""
    if value in ("auto", "off"):
        return value
    if not value.isascii() or not value.isdigit() or not MTU_MIN <= int(value) <= MTU_MAX:
        raise UsageError(
            f"{origin}={shown(value)}: expected auto, off or an MTU from {MTU_MIN} to {MTU_MAX}"
        )
    return str(int(value))


def parse_user_name(value: str, origin: str) -> str:
    """A user name as /etc/passwd can hold it (no ':', '/', blanks or control characters)."""
    if not value or not value.isprintable() or any(c in value for c in ":/ \t"):
        raise UsageError(f"{origin}={value!r}: not a user name")
    return value


def _log_level(options: dict[str, object]) -> int:
    verbose = options.get("verbose") or 0
    assert isinstance(verbose, int)
    quiet = bool(options.get("quiet"))
    if verbose and quiet:
        raise UsageError("-v/--verbose and -q/--quiet cannot be combined")
    if verbose:
        return INFO - 10 * (verbose - 1)
    return ERROR if quiet else NOTICE


def _daemon_variables(env: Mapping[str, str]) -> tuple[str, str, bool]:
    """DIND_IPTABLES (docker:dind's DOCKER_IPTABLES_LEGACY too), DIND_MTU, DIND_DATA_ROOT_CHECK."""
    iptables = parse_iptables(env.get("DIND_IPTABLES", "auto") or "auto", "DIND_IPTABLES")
    if iptables == "auto" and env.get("DOCKER_IPTABLES_LEGACY"):
        iptables = "legacy"  # docker:dind's variable: any non-empty value selects legacy
    mtu = parse_mtu(env.get("DIND_MTU", "auto") or "auto", "DIND_MTU")
    check = True
    if "DIND_DATA_ROOT_CHECK" in env:
        check = parse_bool("DIND_DATA_ROOT_CHECK", env["DIND_DATA_ROOT_CHECK"])
    return iptables, mtu, check


def _certdir(env: Mapping[str, str]) -> str | None:
    """DOCKER_TLS_CERTDIR: unset (no TLS), empty (TLS off, docker:dind's opt-out), or a path."""
    value = env.get("DOCKER_TLS_CERTDIR")
    if value and ("\0" in value or ".." in value.split("/")):
        raise UsageError(f"DOCKER_TLS_CERTDIR={shown(value)}: a path without '..' is expected")
    return value


PRINTS = ("check", "ready", "recipe", "seccomp_profile")
"""Options that answer and exit: one at a time, and without a command."""


def _recipe(value: object) -> str | None:
    """``--recipe RUNTIME``: one of dind.requirements.RUNTIMES, else a usage error."""
    if value is None:
        return None
    from dind.requirements import RUNTIMES

    if value not in RUNTIMES:
        raise UsageError(f"--recipe: {shown(str(value))} is not one of {', '.join(RUNTIMES)}")
    return str(value)


def _sans(text: str) -> tuple[str, ...]:
    """DOCKER_TLS_SAN, checked here so that garbage is a usage error before any step runs."""
    if not text.strip():
        return ()
    from dind.daemon.addresses import parse_sans

    return tuple(parse_sans(text, "DOCKER_TLS_SAN"))


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
        if var and var in env:
            return env[var], var
        return None, ""

    def flag(key: str, var: str) -> bool:
        value, origin = pick(key, var)
        if isinstance(value, str):
            return parse_bool(origin, value)
        return bool(value)

    root, origin = pick("cgroup_root", "DIND_CGROUP_ROOT")
    cgroup_root = (
        paths.DEFAULT_CGROUP_ROOT if root is None else parse_cgroup_root(str(root), origin)
    )

    skip_value, origin = pick("skip", "DIND_SKIP")
    if isinstance(skip_value, str):
        skip = parse_skip([skip_value], origin)
    elif isinstance(skip_value, tuple | list):
        skip = parse_skip([str(s) for s in skip_value], origin)
    else:
        skip = frozenset()

    fmt_value, origin = pick("log_format", "DIND_LOG_FORMAT")
    log_format = "text" if fmt_value is None else parse_log_format(str(fmt_value), origin)

    log_level = _log_level(options)
    init_value, origin = pick("init", "DIND_INIT")
    init = None if init_value is None else flag("init", "DIND_INIT")

    timeout_value, origin = pick("timeout", "DIND_TIMEOUT")
    timeout = None if timeout_value is None else parse_seconds(timeout_value, origin)
    stop_value, origin = pick("dockerd_stop_timeout", "DIND_DOCKERD_STOP_TIMEOUT")
    stop_timeout = DEFAULT_STOP_TIMEOUT if stop_value is None else parse_seconds(stop_value, origin)
    log_value, origin = pick("dockerd_log", "DIND_DOCKERD_LOG")
    dockerd_log = paths.DOCKERD_LOG if log_value is None else str(log_value)
    if not dockerd_log.startswith("/"):
        raise UsageError(f"{origin}: {shown(dockerd_log)} is not an absolute path")
    extra = options.get("dockerd_arg") or ()
    assert isinstance(extra, tuple | list)

    iptables, mtu, data_root_check = _daemon_variables(env)

    settings = Settings(
        command=command,
        cgroup_root=cgroup_root,
        skip=skip,
        strict=flag("strict", "DIND_STRICT"),
        dry_run=flag("dry_run", "DIND_DRY_RUN"),
        proc_cgroup=str(options.get("proc_cgroup") or paths.PROC_1_CGROUP),
        mountinfo=str(options.get("mountinfo") or paths.MOUNTINFO),
        log_format=log_format,
        log_level=log_level,
        init=init,
        init_group=flag("init_group", "DIND_INIT_GROUP"),
        check=flag("check", "DIND_CHECK"),
        allow_host=flag("allow_host", "DIND_ALLOW_HOST"),
        with_dockerd=flag("with_dockerd", "DIND_WITH_DOCKERD"),
        dockerd_args=tuple(str(a) for a in extra),
        dockerd_log=dockerd_log,
        dockerd_stop_timeout=stop_timeout,
        timeout=timeout,
        ready=flag("ready", ""),
        iptables=iptables,
        mtu=mtu,
        data_root_check=data_root_check,
        tls_certdir=_certdir(env),
        tls_san=_sans(env.get("DOCKER_TLS_SAN", "")),
        recipe=_recipe(options.get("recipe")),
        seccomp_profile=bool(options.get("seccomp_profile")),
        rootless=flag("rootless", "DIND_ROOTLESS"),
        rootless_user=parse_user_name(
            env.get("DIND_ROOTLESS_USER", DEFAULT_ROOTLESS_USER), "DIND_ROOTLESS_USER"
        ),
    )
    if settings.init_group:
        settings.init = True
    only = [name for name in PRINTS if getattr(settings, name)]
    if len(only) > 1:
        names = [f"--{name.replace('_', '-')}" for name in only]
        raise UsageError(f"{' and '.join(names)} cannot be combined")
    if only and command:
        raise UsageError(f"--{only[0].replace('_', '-')} takes no command")
    if settings.with_dockerd and settings.dockerd_command:
        raise UsageError("--with-dockerd starts dockerd itself; COMMAND is what runs beside it")
    if settings.rootless and command and not settings.daemon_mode:
        raise UsageError(
            "--rootless (DIND_ROOTLESS) is for a nested dockerd: COMMAND dockerd, or --with-dockerd"
        )
    if not command and not (settings.dry_run or only):
        raise UsageError("no command given (e.g. 'dind -- dockerd')")
    return settings
