"""Registry credentials, found where the docker client keeps them.

Per registry host, the first that has some wins:

1. ``--username NAME --password-stdin``, for the run's one origin registry;
2. the docker client's ``config.json`` (``--auth-file PATH``; default
   ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``): the helper
   ``credHelpers`` names for the host, else ``credsStore``, asked with
   ``docker-credential-NAME get`` (the host on stdin, JSON on stdout, as the
   docker-credential-helpers protocol says); then the host's ``auths`` entry
   (``auth``: base64 of ``USER:PASSWORD``; or ``username``/``password``;
   ``identitytoken``).

Keys are matched as the docker client matches them: scheme and path dropped, and
Docker Hub under ``https://index.docker.io/v1/``. A config.json that cannot be used
(not JSON, a helper missing or failing, a symlink out of its directory, a FIFO)
is a ``CredentialsError``: a usage error (exit 2), raised before anything is
downloaded. Every secret read is registered with ``redact`` at once.
"""

from __future__ import annotations

import base64
import errno
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dind.errors import UsageError
from dind.frozen import redact
from dind.frozen.errors import printable
from dind.frozen.jsondoc import parse_json
from dind.frozen.reference import DOCKER_HUB

HUB_KEY = "https://index.docker.io/v1/"
"""The key (and the helper's server URL) docker uses for Docker Hub."""
HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_HELPER_BYTES = 1024 * 1024
MAX_PASSWORD_BYTES = 64 * 1024
HELPER_TIMEOUT = 60.0
MAX_LINKS = 8
TOKEN_USER = "<token>"  # noqa: S105 - a marker, not a password
"""A helper's ``Username`` when its ``Secret`` is an identity (refresh) token."""
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NOT_FOUND = "credentials not found"


class CredentialsError(UsageError):
    """A config.json or credential helper that cannot be used (exit 2, like a bad option)."""


@dataclass(frozen=True)
class Credentials:
    """One login: a password, or (``identity_token``) an OAuth2 refresh token."""

    username: str
    password: str = field(repr=False)
    identity_token: str = field(default="", repr=False)
    origin: str = ""
    """Where they came from, for messages (never the secret itself)."""

    def __post_init__(self) -> None:
        redact.register(self.password, self.identity_token, self.basic_value())

    def basic_value(self) -> str:
        """The ``Authorization`` header value for Basic auth."""
        if not self.password:
            return ""
        pair = f"{self.username}:{self.password}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"


def auth_host(host: str) -> str:
    """The name credentials are stored under for a registry host (``host[:port]``)."""
    host = host.lower() if host.lower() in HUB_HOSTS else host
    return DOCKER_HUB if host in HUB_HOSTS else host


def key_host(key: str) -> str:
    """A config.json key as a host: ``https://host:port/v1/`` -> ``host:port`` (docker's
    ``ConvertToHostname``), Docker Hub's aliases -> ``docker.io``."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
    return auth_host(key.split("/", 1)[0])


def helper_server(host: str) -> str:
    """What a credential helper is asked for: Docker Hub's legacy URL, else the host."""
    return HUB_KEY if host == DOCKER_HUB else host


@dataclass(frozen=True)
class AuthConfig:
    """What a config.json says about credentials (``auths`` by host, helper names)."""

    path: str
    auths: dict[str, Credentials] = field(default_factory=dict)
    helpers: dict[str, str] = field(default_factory=dict)
    store: str = ""


def parse_auth_config(data: bytes, path: str) -> AuthConfig:
    """Parse a docker client config.json; what is wrong is named, secrets never shown."""
    try:
        doc = parse_json(data)
    except UnicodeDecodeError:
        raise CredentialsError(f"{path}: not UTF-8 text, so not a docker config.json") from None
    except ValueError as err:
        raise CredentialsError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{path}: not a JSON object, so not a docker config.json")
    auths = _object(doc, "auths", path)
    helpers = _object(doc, "credHelpers", path)
    store = doc.get("credsStore", "")
    if not isinstance(store, str):
        raise CredentialsError(f"{path}: credsStore is not a string")
    parsed: dict[str, Credentials] = {}
    for key, entry in auths.items():
        creds = _entry(entry, f"{path}: auths[{printable(key)!r}]")
        if creds is not None:
            parsed.setdefault(key_host(key), creds)
    names: dict[str, str] = {}
    for key, name in helpers.items():
        if not isinstance(name, str):
            raise CredentialsError(f"{path}: credHelpers[{printable(key)!r}] is not a string")
        names[key_host(key)] = name
    return AuthConfig(path, parsed, names, store)


def _object(doc: dict[str, object], key: str, path: str) -> dict[str, object]:
    value = doc.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CredentialsError(f"{path}: {key} is not a JSON object")
    return value


def _entry(entry: object, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} is not a JSON object")
    fields = {}
    for name in ("auth", "username", "password", "identitytoken"):
        value = entry.get(name, "")
        if not isinstance(value, str):
            raise CredentialsError(f"{where}.{name} is not a string")
        fields[name] = value
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        redact.register(fields["auth"])
        try:
            pair = base64.b64decode(fields["auth"], validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            raise CredentialsError(f"{where}.auth is not base64 of USER:PASSWORD") from None
        username, colon, password = pair.partition(":")
        if not colon:
            raise CredentialsError(f"{where}.auth is not base64 of USER:PASSWORD")
    token = fields["identitytoken"]
    if not (password or token):
        return None  # an entry that only names the registry (credsStore keeps the secret)
    return Credentials(username, password, token, origin=where.partition(": ")[0])


# -- the file


def default_auth_file(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``, as the docker client."""
    folder = env.get("DOCKER_CONFIG")
    if folder:
        return Path(folder) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def read_auth_file(path: Path, *, required: bool) -> bytes | None:
    """The file's bytes; None if it is missing and not ``required``.

    Its directory is the user's choice and followed; the file itself must be a
    regular file, reached through symlinks only while they stay inside that
    directory (a Kubernetes secret volume links ``config.json`` to
    ``..data/config.json``; a link to ``/etc/shadow`` is refused, not read).
    """
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        _missing(path, required)
        return None
    except OSError as err:
        raise CredentialsError(f"{path}: cannot open its directory: {err.strerror}") from None
    try:
        fd = _open_beneath(parent, path.name, path)
    finally:
        os.close(parent)
    if fd is None:
        _missing(path, required)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CredentialsError(f"{path}: not a regular file; refusing to read it")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise CredentialsError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    return data


def _missing(path: Path, required: bool) -> None:
    if required:
        raise CredentialsError(f"{path}: no such file")


def _open_beneath(root: int, name: str, path: Path) -> int | None:
    """Open ``name`` below the directory fd ``root``, resolving symlinks by hand: relative
    targets without ``..`` only, each component opened ``O_NOFOLLOW`` (a swap in between
    makes the open fail, never land elsewhere). None if something is missing."""
    pending = [name]
    current = os.dup(root)
    hops = 0
    try:
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                raise CredentialsError(f"{path}: a symbolic link leads out of {path.parent}")
            try:
                st = os.stat(part, dir_fd=current, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(part, dir_fd=current)
                hops += 1
                if target.startswith("/") or ".." in target.split("/") or hops > MAX_LINKS:
                    raise CredentialsError(
                        f"{path} is a symbolic link to {printable(target)!r}, outside "
                        f"{path.parent}; refusing to follow it"
                    )
                pending[:0] = target.split("/")
                continue
            flags = os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_RDONLY | os.O_NONBLOCK if not pending else os.O_PATH | os.O_DIRECTORY
            opened = os.open(part, flags, dir_fd=current)
            os.close(current)
            current = opened
            if not pending:
                found, current = current, -1
                return found
        raise CredentialsError(f"{path}: not a file name")
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CredentialsError(f"{path}: changed while being opened; refusing it") from None
        raise CredentialsError(f"{path}: {err.strerror or err}") from None
    finally:
        if current >= 0:
            os.close(current)


# -- credential helpers


def helper_credentials(name: str, host: str, config: str) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` for ``host``; None if it has nothing for it."""
    program_name = f"docker-credential-{name}"
    where = f"{config}: credential helper {printable(program_name)!r} for {host}"
    if not _HELPER_NAME.fullmatch(name):
        raise CredentialsError(f"{where}: not a helper name")
    program = shutil.which(program_name)
    if program is None:
        raise CredentialsError(f"{where}: not found in PATH")
    status, out = _run_helper(program, helper_server(host), where)
    text = out.decode("utf-8", "replace")
    if status != 0:
        if _NOT_FOUND in text.lower():
            return None
        first = printable(redact.redact(text.strip().splitlines()[0] if text.strip() else ""))
        raise CredentialsError(f"{where}: exit status {status}: {first[:200]}".rstrip(": "))
    try:
        doc = parse_json(out)
    except ValueError:
        raise CredentialsError(f"{where}: the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{where}: the answer is not a JSON object")
    username, secret = doc.get("Username", ""), doc.get("Secret", "")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(f"{where}: Username and Secret must be strings")
    if not secret:
        return None
    origin = f"helper {program_name}"
    if username == TOKEN_USER:
        return Credentials("", "", secret, origin=origin)
    return Credentials(username, secret, origin=origin)


def _run_helper(program: str, server: str, where: str) -> tuple[int, bytes]:
    """Run ``PROGRAM get`` with ``server`` on stdin: (status, first MAX_HELPER_BYTES of stdout)."""
    try:
        proc = subprocess.Popen(
            [program, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError as err:
        raise CredentialsError(f"{where}: cannot run it: {err.strerror or err}") from None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(HELPER_TIMEOUT, expire)
    timer.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(server.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = proc.stdout.read(MAX_HELPER_BYTES + 1)
        proc.stdout.close()
        if len(out) > MAX_HELPER_BYTES:
            proc.kill()
        status = proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        raise CredentialsError(f"{where}: no answer within {HELPER_TIMEOUT:.0f} s")
    if len(out) > MAX_HELPER_BYTES:
        raise CredentialsError(f"{where}: answered more than {MAX_HELPER_BYTES} bytes")
    return status, out


# -- all of it, for one run


class CredentialStore:
    """Credentials by registry host for one run: the override, then config.json."""

    def __init__(
        self,
        config: AuthConfig | None,
        override: Credentials | None = None,
        override_host: str = "",
    ) -> None:
        self.config = config
        self.override = override
        self.override_host = auth_host(override_host) if override_host else ""
        self._found: dict[str, Credentials | None] = {}

    def for_host(self, host: str) -> Credentials | None:
        """Credentials for a registry host (``host[:port]``, or ``docker.io``), or None."""
        host = auth_host(host)
        if self.override is not None and host == self.override_host:
            return self.override
        if host not in self._found:
            self._found[host] = self._lookup(host)
        return self._found[host]

    def _lookup(self, host: str) -> Credentials | None:
        config = self.config
        if config is None:
            return None
        helper = config.helpers.get(host) or config.store
        if helper:
            found = helper_credentials(helper, host, config.path)
            if found is not None:
                return found
        return config.auths.get(host)


def password_from(stream: object) -> str:
    """``--password-stdin``: stdin (``sys.stdin``, None when closed) to its end, as docker
    login reads it, bounded; one trailing newline dropped."""
    binary = getattr(stream, "buffer", None)
    if binary is None:
        raise UsageError("--password-stdin: no standard input")
    data: bytes = binary.read(MAX_PASSWORD_BYTES + 1)
    if len(data) > MAX_PASSWORD_BYTES:
        raise UsageError(f"--password-stdin: more than {MAX_PASSWORD_BYTES} bytes on stdin")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise UsageError("--password-stdin: the password is not UTF-8 text") from None
    password: str = text.removesuffix("\n").removesuffix("\r")
    redact.register(password)
    if not password:
        raise UsageError("--password-stdin: stdin held no password")
    return password
