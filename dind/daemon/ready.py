"""Is the daemon answering? ``GET /_ping`` → ``OK``, the way Docker's own clients ask.

``dind --ready`` is a probe for ``HEALTHCHECK`` and Kubernetes startup probes:
0 when the daemon at ``DOCKER_HOST`` answers (honouring ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``; the unix socket by default), else 1 with one line why.
With ``--timeout S`` it retries until then; without, one attempt. Either way it
never waits past its bound. ``--with-dockerd`` waits for its daemon with the same
``ping``.

The certificate directory is often a volume that containers nobody vetted can
write. The client files are read as the tls step reads its own (``dind.safepath``:
regular files only, no symlink, opened non-blocking, bounded), then handed to
OpenSSL from memory (a memfd), never by their path: a FIFO planted as ``ca.pem``
is refused at once instead of hanging the health check.
"""

from __future__ import annotations

import os
import time

from dind import paths, signals
from dind.errors import UsageError, clipped, control, printable, shown
from dind.safepath import read_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping

    from dind.log import Log
    from dind.settings import Settings

ATTEMPT = 5.0
"""Bound of one request, and of a probe without --timeout."""
INTERVAL = 0.05
DEFAULT_PORT = 2375
DEFAULT_TLS_PORT = 2376
"""The docker client's ports for a tcp:// DOCKER_HOST without one (plain, TLS)."""
MAX_PEM = 1 << 20
"""Largest certificate or key file read (as the tls step's)."""
READY = 0
NOT_READY = 1


class Endpoint:
    """Where and how to reach a daemon: a unix socket, or http(s) with optional client certs."""

    __slots__ = ("base", "cert", "socket", "verify")

    def __init__(
        self,
        base: str,
        socket: str | None = None,
        verify: str | bool = False,
        cert: tuple[str, str] | None = None,
    ) -> None:
        self.base = base
        self.socket = socket
        self.verify = verify
        self.cert = cert

    def __str__(self) -> str:
        return printable(f"unix://{self.socket}" if self.socket else self.base)


def endpoint(environ: Mapping[str, str]) -> Endpoint:
    """The daemon a docker client would talk to, from DOCKER_HOST and the TLS variables.

    The value checked is the value used: a control character anywhere is refused
    here, not met later by the URL parser or the socket layer.
    """
    host = environ.get("DOCKER_HOST") or paths.DOCKER_SOCKET
    bad = next((c for c in host if control(c)), None)
    if bad is not None:
        raise UsageError(f"DOCKER_HOST={shown(host)}: control character {bad!r}")
    scheme, sep, rest = host.partition("://")
    if (scheme, sep) == ("unix", "://"):
        if not rest:
            raise UsageError(f"DOCKER_HOST={shown(host)}: no socket path")
        return Endpoint("http://docker", socket=rest)
    if (scheme, sep) != ("tcp", "://"):
        raise UsageError(f"DOCKER_HOST={shown(host)}: --ready speaks to unix:// and tcp:// daemons")
    verify = environ.get("DOCKER_TLS_VERIFY")
    tls = bool(verify or environ.get("DOCKER_TLS"))
    address = _address(host, rest.rstrip("/"), DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    certs = os.path.abspath(environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker"))
    cert = (f"{certs}/cert.pem", f"{certs}/key.pem")
    if verify:
        return Endpoint(f"https://{address}", verify=f"{certs}/ca.pem", cert=cert)
    if tls:
        return Endpoint(f"https://{address}", cert=cert if os.path.lexists(cert[0]) else None)
    return Endpoint(f"http://{address}")


def _address(host: str, netloc: str, default_port: int) -> str:
    """``HOST:PORT`` of a tcp:// DOCKER_HOST, with the docker client's default port."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError as err:
        raise UsageError(
            f"DOCKER_HOST={shown(host)}: not HOST[:PORT] ({clipped(str(err))})"
        ) from None
    if not parts.hostname or parts.path or parts.username is not None:
        raise UsageError(f"DOCKER_HOST={shown(host)}: not HOST[:PORT]")
    from dind.daemon.addresses import canonical_ip, dns_problem

    problem = None if canonical_ip(parts.hostname) else dns_problem(parts.hostname)
    if problem is not None:
        raise UsageError(f"DOCKER_HOST={shown(host)}: not HOST[:PORT] ({problem})")
    return netloc if port is not None else f"{netloc}:{default_port}"


def preload() -> None:
    """Import what ``ping`` needs, and exercise it once on nothing: httpx loads parts of
    itself (and idna, h11...) at the first request, after dind's mounts may cover them."""
    import ssl  # noqa: F401

    import httpx  # noqa: F401

    ping(Endpoint("http://docker", socket="/nonexistent/dind-preload.sock"), 0.1)


def _pem(path: str) -> bytes:
    """A certificate or key file, read as the tls step reads its own (never blocking)."""
    return read_file(path, MAX_PEM)


def _load_cert_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``load_cert_chain`` from the bytes read, through a memfd: OpenSSL opens only a
    file dind made, never a path someone else may have turned into a FIFO."""
    fd = os.memfd_create("dind-client-cert", os.MFD_CLOEXEC)
    try:
        data = memoryview(_pem(cert) + b"\n" + _pem(key))
        while data:
            data = data[os.write(fd, data) :]
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _tls_context(target: Endpoint) -> ssl.SSLContext | bool:
    import ssl

    if isinstance(target.verify, str):
        context = ssl.create_default_context(cadata=_pem(target.verify).decode("ascii"))
        context.check_hostname = False  # docker clients pin the CA, as docker:dind's certs expect
        # Python 3.13 (Debian 13's, the image's) verifies strictly by default: a user's
        # chain without Authority Key Identifiers, which docker clients (Go) and dockerd
        # accept, would fail here alone and the health check with it.
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    elif target.cert is not None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        return False
    if target.cert is not None:
        _load_cert_chain(context, *target.cert)
    return context


def ping(target: Endpoint, timeout: float) -> str | None:
    """None when ``GET /_ping`` answers ``OK`` within ``timeout``; else why not, in words."""
    import ssl

    import httpx

    try:
        verify = _tls_context(target)
    except (OSError, ValueError, ssl.SSLError) as err:
        where = getattr(err, "filename", None)
        what = f"{printable(where)}: " if where else ""
        return f"TLS files: {what}{clipped(getattr(err, 'reason', None) or str(err))}"
    transport = httpx.HTTPTransport(uds=target.socket, verify=verify)
    try:
        with httpx.Client(transport=transport, timeout=timeout, verify=verify) as client:
            response = client.get(f"{target.base}/_ping")
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {clipped(str(err))}" if str(err) else type(err).__name__
    if response.status_code != 200 or response.text.strip() != "OK":
        return f"HTTP {response.status_code}: {shown(response.text.strip(), 80)}"
    return None


def wait_ready(
    target: Endpoint, deadline: float, alive: Callable[[], bool] | None = None
) -> str | None:
    """Ping until the daemon answers or ``deadline`` (monotonic) passes; None when it answered.

    ``alive`` is asked between attempts: a daemon that died is not waited for. A
    terminating signal ends the wait (its number is pending for the caller).
    """
    why = "not tried"
    while True:
        left = deadline - time.monotonic()
        why = ping(target, max(0.05, min(ATTEMPT, left))) or ""
        if not why:
            return None
        if alive is not None and not alive():
            return f"the daemon exited ({why})"
        left = deadline - time.monotonic()
        if left <= 0:
            return why
        if signals.wait(min(INTERVAL, left)) is not None:
            return "interrupted"


def rootless_host(name: str) -> str | None:
    """The rootless daemon's socket (``DIND_ROOTLESS``): dind's own user's when not root,
    else DIND_ROOTLESS_USER's; None when /etc/passwd does not say."""
    from dind import paths, userdb
    from dind.procfile import try_read

    text, _ = try_read(paths.PASSWD, 4 << 20)
    users = userdb.parse_passwd(text or "")
    euid = os.geteuid()
    user = userdb.find_user(users, name if euid == 0 else euid)
    return None if user is None else paths.rootless_socket(user.uid)


def probe(settings: Settings, log: Log) -> int:
    """``dind --ready``: 0 when the daemon answers, 1 (one line) when it does not."""
    environ: Mapping[str, str] = os.environ
    if settings.rootless and not environ.get("DOCKER_HOST"):
        host = rootless_host(settings.rootless_user)
        if host is not None:
            environ = {**environ, "DOCKER_HOST": host}
    target = endpoint(environ)
    started = time.monotonic()
    if settings.timeout is None:
        why = ping(target, ATTEMPT)  # one attempt
    else:
        why = wait_ready(target, started + settings.timeout)
    if why is None:
        log.info(f"ready: {target} answered /_ping", target=str(target))
        return READY
    spent = time.monotonic() - started
    log.error(f"not ready: {target}: {why} (after {spent:.1f} s)", target=str(target))
    return NOT_READY
