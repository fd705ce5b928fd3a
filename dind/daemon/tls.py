"""The tls step: docker:dind's certificate layout in ``$DOCKER_TLS_CERTDIR`` (issue 8).

The layout is docker:dind's (``dockerd-entrypoint.sh``), so GitLab and compose set-ups
that share ``DIR/client`` with other containers keep working::

    DIR/ca/{cert,key}.pem    DIR/server/{ca,cert,key}.pem    DIR/client/{ca,cert,key}.pem

Which files dind manages (docker:dind's rules; a file counts when it is not empty,
like the shell's ``-s``):

- ``managed``: ``ca/key.pem`` is there. Every key is reused; the CA, server and
  client certificates are signed anew at every start (addresses change). The CA
  certificate keeps its subject and key, so a client's older copy of ``ca.pem``
  still verifies the new server certificate, and it never expires on a daemon
  restarted at least every 825 days.
- ``user-ca``: no ``ca/key.pem`` but ``server/{ca,cert,key}.pem``: the user manages
  the CA. The server files are verified (chain, validity, serverAuth, key matches
  certificate) and used; nothing is written, so a read-only mount is fine.
- ``new``: nothing of the above. A new CA; existing server and client keys are reused.
- ``ca/cert.pem`` without its key and without complete server files is refused:
  dind cannot sign with it, and docker:dind would start a daemon without certificates.

New keys are ECDSA P-256 (milliseconds, where docker:dind's RSA-4096 takes seconds);
existing keys may be RSA (docker:dind's own volumes), EC P-256/384/521 or Ed25519.

Writing, and why in this order. Every new file is first staged in its own directory
under ``.NAME.dind-PID-RANDOM.tmp`` (``O_EXCL|O_NOFOLLOW``, written, fsynced); only
when all are staged are they renamed into place, each directory fsynced after its
renames. A full disk, a quota or a read-only mount thus fail before anything
changed. The renames cannot be one atomic step (``client/`` is often a volume mount
point, so directories cannot be swapped), so their order keeps each state a crash
can leave safe, and the next start repairs it:

    ca/key.pem (if new), ca/cert.pem, server/ca.pem, server/cert.pem,
    server/key.pem (if new), client/ca.pem, client/cert.pem, client/key.pem (if new)

- A new server or client key is renamed after its certificate: ``server/`` and
  ``client/``, which dockerd and other containers read, never hold a key without
  the certificate made for it. A reused key keeps matching: only its certificate
  changes, in one rename.
- The CA key goes first, before its own certificate and every server file. The
  state a crash leaves, ``ca/key.pem`` without ``ca/cert.pem``, is the managed
  state, repaired by the next start (only dind reads the CA key). The other order
  could leave ``ca/cert.pem`` alone (refused, see above), and server files complete
  without ``ca/key.pem`` would be taken for a user-managed CA, never to be re-signed.

The function returns only after the last rename, so the client files are in place
before dockerd listens. A lock (``flock`` on DIR) serialises concurrent runs on a
shared directory; while it is held, temporary files of dind's pattern are stale
(a crashed run) and are removed.

This runs as root in a directory other containers may write: DIR is opened without
following any symlink (``dind.syscalls.open_path``, made with mode 0755 if missing),
``ca``/``server``/``client`` and every file are opened or created relative to their
parent's descriptor with ``O_NOFOLLOW``, and a symlink at any of the nine names is
an error, never followed. Renames replace a name, never write through it.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import re
import socket
import stat
import time

from dind import steps
from dind.errors import SetupError, UsageError
from dind.procfile import try_read
from dind.syscalls import first_symlink, open_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    SigningKey: TypeAlias = (
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    )

NEW = "new"
MANAGED = "managed"
USER_CA = "user-ca"

SERVER_FILES = ("ca.pem", "cert.pem", "key.pem")
CA_FILES = ("cert.pem", "key.pem")
LAYOUT = (("ca", CA_FILES), ("server", SERVER_FILES), ("client", SERVER_FILES))
"""The nine files, by directory."""

VALID_DAYS = 825
"""docker:dind's lifetime (https://github.com/FiloSottile/mkcert/issues/174)."""
BACKDATE = datetime.timedelta(minutes=5)
"""notBefore slack for a client whose clock is slightly behind."""
CN_CA = "docker:dind CA"
CN_SERVER = "docker:dind server"
CN_CLIENT = "docker:dind client"
DIR_MODE = 0o755
CERT_MODE = 0o644
KEY_MODE = 0o600
CLIENT_KEY_MODE = 0o644
"""docker:dind's: the client key is shared with arbitrary client containers."""

MAX_PEM = 1 << 20
"""Largest file read (a CA bundle in server/ca.pem included)."""
MAX_PROC = 8 << 20
LOCK_WAIT = 30.0
MAX_CHAIN = 8
IFA_F_DADFAILED = 0x08
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
"""The curves Go's crypto/tls (dockerd, docker) accepts."""

_TEMP = re.compile(r"\.(?:ca|cert|key)\.pem\.dind-[0-9]+-[0-9a-f]{16}\.tmp\Z")
_SEPARATORS = re.compile(r"[\s,]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z", re.IGNORECASE)
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SYMLINKS = "dind follows no symlink in DOCKER_TLS_CERTDIR"


class TLSError(SetupError):
    """The certificates could not be made or verified: one line naming the file and why."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, step=steps.TLS, errno=code)


# --- SANs: pure -----------------------------------------------------------------------


def parse_sans(text: str, origin: str = "DOCKER_TLS_SAN") -> list[str]:
    """``"IP:10.0.0.1 example.com"`` → ``["IP:10.0.0.1", "DNS:example.com"]``, in order, unique.

    Words are separated by spaces or commas (docker:dind joins the variable into
    openssl's comma-separated list, so both work there). ``IP:`` and ``DNS:``
    prefixes are accepted; a bare word that parses as an address is an IP SAN, any
    other a DNS name. Garbage is a UsageError naming ``origin`` and the word.
    """
    found: list[str] = []
    for word in _SEPARATORS.split(text):
        if word:
            san = _san(word, origin)
            if san not in found:
                found.append(san)
    return found


def server_sans(addresses: list[str], hostnames: list[str], extra: list[str]) -> list[str]:
    """The server certificate's SANs, sorted and unique: docker:dind's list.

    Every interface address, every hostname that is a valid DNS name (others cannot
    be SANs and are left out), ``docker``, ``localhost``, and ``extra`` (from
    ``parse_sans``).
    """
    found = {"DNS:docker", "DNS:localhost"}
    for address in addresses:
        found.add(_san(f"IP:{address}", "interface address"))
    for name in hostnames:
        if dns_problem(name) is None:
            found.add(f"DNS:{name.lower()}")
    for san in extra:
        found.add(_san(san, "DOCKER_TLS_SAN"))
    return sorted(found)


def _san(word: str, origin: str) -> str:
    """One word as a normalised ``IP:``/``DNS:`` SAN, or a UsageError."""
    bad = next((c for c in word if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"{origin}: {word!r}: control character {bad!r}")
    prefix, colon, value = word.partition(":")
    kind = prefix.upper() if colon else ""
    if kind == "IP":
        address = canonical_ip(value)
        if address is None:
            raise UsageError(f"{origin}: {word!r}: {value!r} is not an IPv4 or IPv6 address")
        return f"IP:{address}"
    if kind == "DNS":
        return f"DNS:{_dns(value, word, origin)}"
    address = canonical_ip(word)
    if address is not None:
        return f"IP:{address}"
    if all(label.isdigit() for label in word.split(".")):
        raise UsageError(f"{origin}: {word!r}: not a valid IPv4 address")
    if colon:
        raise UsageError(
            f"{origin}: {word!r}: not an IP address; the SAN prefixes accepted are IP: and DNS:"
        )
    return f"DNS:{_dns(word, word, origin)}"


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4 or IPv6 address (inet_pton's strict rules), else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def _dns(name: str, word: str, origin: str) -> str:
    problem = dns_problem(name)
    if problem is not None:
        raise UsageError(f"{origin}: {word!r}: {problem}")
    return name.lower()


def dns_problem(name: str) -> str | None:
    """Why ``name`` cannot be a DNS SAN (None if it can). ``*`` only as the leftmost label.

    Underscores are accepted: compose service names have them, and Go matches them.
    """
    if not name:
        return "empty DNS name"
    if not name.isascii():
        return "not ASCII; give an internationalised name in its IDNA form (xn--...)"
    if len(name) > 253:
        return "DNS name longer than 253 characters"
    labels = name.split(".")
    if labels[-1] == "":
        return "DNS name ends with a dot; give it without"
    for i, label in enumerate(labels):
        if label == "*" and i == 0 and len(labels) > 1:
            continue
        if not _LABEL.match(label):
            return (
                f"DNS label {label!r} is not 1 to 63 letters, digits, '-' or '_'"
                " (no '-' at either end)"
            )
    if labels[-1].isdigit():
        return "a numeric last label is not a DNS name (an IP address? give IP:...)"
    return None


def server_paths(certdir: str) -> tuple[str, str, str]:
    """(ca, cert, key) under DIR/server, as ``--tlscacert``/``--tlscert``/``--tlskey`` take them."""
    ca, cert, key = (os.path.join(certdir, "server", name) for name in SERVER_FILES)
    return ca, cert, key


# --- Addresses and hostnames: pure parsers, thin readers --------------------------------


def parse_fib_trie_local(text: str) -> list[str]:
    """IPv4 addresses of the namespace's interfaces, from ``/proc/net/fib_trie``.

    An address of this host is a trie leaf (``|-- 10.0.0.5``) with a ``/32 host LOCAL``
    route; other leaves are networks and broadcast addresses. Main and Local tables
    both list them: each address once, in the file's order. Lines not understood are
    skipped (the collection is best effort; the kernel's format is fixed).
    """
    found: list[str] = []
    leaf: str | None = None
    for line in text.splitlines():
        word = line.strip()
        if word.startswith("|-- "):
            leaf = word[4:].strip()
        elif word.startswith("+-- ") or word.endswith(":"):
            leaf = None
        elif leaf is not None and word.startswith("/"):
            fields = word.split()
            if fields[0] == "/32" and len(fields) > 2 and fields[2] == "LOCAL":
                address = _ipv4(leaf)
                if address is not None and address not in found:
                    found.append(address)
    return found


def _ipv4(text: str) -> str | None:
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        return None


def parse_if_inet6(text: str) -> list[str]:
    """IPv6 addresses from ``/proc/net/if_inet6`` (hex address, index, plen, scope, flags, name).

    Tentative addresses count (``ip addr`` shows them); those whose duplicate address
    detection failed do not (the kernel will never use them).
    """
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            packed = bytes.fromhex(fields[0])
            flags = int(fields[4], 16)
        except ValueError:
            continue
        address = socket.inet_ntop(socket.AF_INET6, packed)
        if not flags & IFA_F_DADFAILED and address not in found:
            found.append(address)
    return found


def interface_addresses() -> list[str]:
    """Every IPv4 then IPv6 address of this network namespace's interfaces, without ``ip``.

    A missing file (no IPv6, /proc not mounted) gives no addresses of that family.
    """
    fib, _ = try_read("/proc/net/fib_trie", MAX_PROC)
    inet6, _ = try_read("/proc/net/if_inet6", MAX_PROC)
    return parse_fib_trie_local(fib or "") + parse_if_inet6(inet6 or "")


def parse_hostname_file(text: str) -> str:
    """The name in an ``/etc/hostname`` text: its first line that is not a comment."""
    for line in text.splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            return name
    return ""


def hostnames() -> list[str]:
    """This host's names, lower case: ``gethostname()``, ``/etc/hostname``, their short forms.

    Never a DNS lookup (``hostname -f`` may hang at start without a resolver);
    names that are not valid DNS names are left out.
    """
    candidates = [socket.gethostname()]
    text, _ = try_read("/etc/hostname", 65536)
    if text:
        candidates.append(parse_hostname_file(text))
    found: list[str] = []
    for candidate in candidates:
        for name in (candidate, candidate.split(".", 1)[0]):
            lowered = name.lower()
            if dns_problem(lowered) is None and lowered not in found:
                found.append(lowered)
    return found


# --- Directories opened without symlinks ------------------------------------------------


def _failed(path: str, err: OSError) -> TLSError:
    """An OSError on ``path`` as one line: what, the errno, and a hint when one helps."""
    code = err.errno or errno.EIO
    name = errno.errorcode.get(code, str(code))
    hint = ""
    if code == errno.ELOOP:
        link = first_symlink(path) if path.startswith("/") else None
        if link == path:
            hint = f": is a symlink; {_NO_SYMLINKS}"
        else:
            hint = f": a symlink in the path{f' ({link})' if link else ''}; {_NO_SYMLINKS}"
    elif code == errno.EROFS:
        hint = (
            ": the certificate directory is read-only; mount it read-write, or provide"
            " server/{ca,cert,key}.pem (a user-managed CA is only read)"
        )
    elif code in (errno.ENOSPC, errno.EDQUOT):
        hint = ": no space for the certificates; nothing was replaced"
    return TLSError(f"{path}: {err.strerror or os.strerror(code)} [{name}]{hint}", code=code)


def _symlink(path: str) -> TLSError:
    return TLSError(
        f"{path}: is a symlink; {_NO_SYMLINKS} (put the file itself there)", code=errno.ELOOP
    )


class _Dir:
    """A directory held by an ``O_PATH`` descriptor; every operation is relative to it."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def where(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def close(self) -> None:
        os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise _failed(self.where(name), err) from None

    def present(self, name: str) -> bool:
        """True when ``name`` is a non-empty regular file; an error when it is not a file."""
        st = self.lstat(name)
        if st is None:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise _symlink(self.where(name))
        if not stat.S_ISREG(st.st_mode):
            raise TLSError(f"{self.where(name)}: not a regular file")
        return st.st_size > 0

    def subdir(self, name: str, *, create: bool) -> _Dir | None:
        """The directory ``name`` (made with mode 0755 when missing and ``create``)."""
        st = self.lstat(name)
        made = False
        if st is None:
            if not create:
                return None
            try:
                os.mkdir(name, DIR_MODE, dir_fd=self.fd)
                made = True
            except FileExistsError:
                pass  # made meanwhile: opened below like any other
            except OSError as err:
                raise _failed(self.where(name), err) from None
        elif stat.S_ISLNK(st.st_mode):
            raise _symlink(self.where(name))
        elif not stat.S_ISDIR(st.st_mode):
            raise TLSError(f"{self.where(name)}: not a directory")
        try:
            fd = os.open(name, os.O_PATH | os.O_DIRECTORY | _NOFOLLOW, dir_fd=self.fd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR) and self.lstat(name) is not None:
                raise _symlink(self.where(name)) from None
            raise _failed(self.where(name), err) from None
        child = _Dir(fd, self.where(name))
        if made:
            try:
                child.chmod_self(DIR_MODE)
            except BaseException:
                child.close()
                raise
        return child

    def _open_self(self) -> int:
        """A readable descriptor of this directory (``O_PATH`` allows no fsync, flock, listing)."""
        try:
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as err:
            raise _failed(self.path, err) from None

    def chmod_self(self, mode: int) -> None:
        """Exactly ``mode``, whatever the umask."""
        fd = self._open_self()
        try:
            os.fchmod(fd, mode)
        except OSError as err:
            raise _failed(self.path, err) from None
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        """The bytes of regular file ``name``: never through a symlink, never blocking, bounded."""
        where = self.where(name)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _NOFOLLOW, dir_fd=self.fd
            )
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _symlink(where) from None
            raise _failed(where, err) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TLSError(f"{where}: not a regular file")
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 65536):
                size += len(chunk)
                if size > MAX_PEM:
                    raise TLSError(f"{where}: larger than {MAX_PEM} bytes; not a PEM file")
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as err:
            raise _failed(where, err) from None
        finally:
            os.close(fd)

    def set_mode(self, name: str, mode: int) -> None:
        """chmod of regular file ``name``, through a descriptor opened without following."""
        where = self.where(name)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _NOFOLLOW, dir_fd=self.fd
            )
        except OSError as err:
            raise (_symlink(where) if err.errno == errno.ELOOP else _failed(where, err)) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
        except OSError as err:
            raise _failed(where, err) from None
        finally:
            os.close(fd)

    def stage(self, name: str, data: bytes, mode: int) -> str:
        """``data`` written and fsynced under a new temporary name; that name."""
        temp = f".{name}.dind-{os.getpid()}-{os.urandom(8).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        try:
            fd = os.open(temp, flags, mode, dir_fd=self.fd)
        except OSError as err:
            raise _failed(self.where(name), err) from None
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            self.discard(temp)
            raise _failed(self.where(name), err) from None
        finally:
            os.close(fd)
        return temp

    def commit(self, temp: str, name: str) -> None:
        try:
            os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as err:
            raise _failed(self.where(name), err) from None

    def discard(self, temp: str) -> None:
        """Best effort: a temporary file left behind is removed by the next run."""
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=self.fd)

    def sync(self) -> None:
        fd = self._open_self()
        try:
            os.fsync(fd)
        except OSError as err:
            raise _failed(self.path, err) from None
        finally:
            os.close(fd)

    def sweep(self) -> None:
        """Remove stale temporary files of dind's pattern (unlink drops a link, not its target)."""
        fd = self._open_self()
        try:
            names = os.listdir(fd)
        except OSError as err:
            raise _failed(self.path, err) from None
        finally:
            os.close(fd)
        for name in names:
            if _TEMP.match(name):
                self.discard(name)


def _absolute(certdir: str) -> str:
    if not certdir:
        raise TLSError("DOCKER_TLS_CERTDIR is empty: no directory for the certificates")
    if ".." in certdir.split("/") or "\0" in certdir:
        raise TLSError(f"DOCKER_TLS_CERTDIR={certdir!r}: give a plain path, without '..'")
    return os.path.abspath(certdir)


def _open_certdir(path: str, *, create: bool) -> _Dir | None:
    """DIR opened without symlinks; made (0755, parents too) when missing and ``create``.

    None when it is missing and not ``create``.
    """
    try:
        return _Dir(open_path(path, os.O_PATH | os.O_DIRECTORY), path)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise _failed(path, err) from None
        if not create:
            return None
    parts = [p for p in path.split("/") if p]
    missing: list[str] = []
    while True:
        missing.append(parts.pop())
        parent = "/" + "/".join(parts)
        try:
            current = _Dir(open_path(parent, os.O_PATH | os.O_DIRECTORY), parent)
            break
        except OSError as err:
            if err.errno != errno.ENOENT or not parts:
                raise _failed(parent, err) from None
    for name in reversed(missing):
        try:
            child = current.subdir(name, create=True)
        finally:
            current.close()
        assert child is not None
        current = child
    return current


def _lock(root: _Dir) -> int:
    """flock(LOCK_EX) on DIR, waiting at most LOCK_WAIT; released when the fd closes.

    A filesystem without locks (ENOLCK, some network mounts) goes on unlocked.
    """
    import fcntl

    fd = root._open_self()
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TLSError(
                    f"{root.path}: still locked after {LOCK_WAIT:.0f} s by another process"
                    " (another dind making certificates there?)",
                    code=errno.EWOULDBLOCK,
                ) from None
            time.sleep(0.05)
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return fd
            os.close(fd)
            raise _failed(root.path, err) from None
        else:
            return fd


def _inventory(root: _Dir) -> dict[str, set[str]]:
    """The non-empty files of the layout, by directory; an error for a symlink or a non-file."""
    have: dict[str, set[str]] = {}
    for sub, files in LAYOUT:
        directory = root.subdir(sub, create=False)
        have[sub] = set()
        if directory is not None:
            try:
                have[sub] = {name for name in files if directory.present(name)}
            finally:
                directory.close()
    return have


def _state(root: _Dir, have: dict[str, set[str]]) -> str:
    if "key.pem" in have["ca"]:
        return MANAGED
    if have["server"] == set(SERVER_FILES):
        return USER_CA
    if "cert.pem" in have["ca"]:
        lacking = ", ".join(sorted(set(SERVER_FILES) - have["server"]))
        raise TLSError(
            f"{root.where('ca/cert.pem')}: a CA certificate without ca/key.pem, and server/"
            f" lacks {lacking}: dind cannot sign with it; add server/{{ca,cert,key}}.pem"
            " signed by that CA, or remove ca/cert.pem"
        )
    return NEW


def preload() -> None:
    """Import now what ``make_certificates`` imports when it runs (before dind's mounts)."""
    import fcntl  # noqa: F401
    import ipaddress  # noqa: F401

    import cryptography.exceptions
    import cryptography.hazmat.primitives.asymmetric.ec
    import cryptography.hazmat.primitives.asymmetric.ed25519
    import cryptography.hazmat.primitives.asymmetric.rsa
    import cryptography.hazmat.primitives.hashes
    import cryptography.hazmat.primitives.serialization
    import cryptography.x509
    import cryptography.x509.oid  # noqa: F401
    from cryptography.hazmat.backends import default_backend

    default_backend()  # loads the OpenSSL bindings, which key generation would load later


def layout_state(certdir: str) -> str:
    """``new``, ``managed`` or ``user-ca`` (see the module's docstring); reads only.

    A TLSError when the layout is unusable: a symlink or a non-file at one of the
    nine names, a CA certificate alone. Keys and certificates are not parsed here
    (that needs ``cryptography``; ``make_certificates`` does it).
    """
    path = _absolute(certdir)
    root = _open_certdir(path, create=False)
    if root is None:
        return NEW
    try:
        return _state(root, _inventory(root))
    finally:
        root.close()


# --- Keys and certificates (cryptography, imported only here) ---------------------------


def _new_key() -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _load_key(data: bytes, where: str) -> SigningKey:
    """A PEM private key dind can sign with, or one line saying why not."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSError(f"{where}: the key is encrypted; dind needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise TLSError(f"{where}: not a PEM private key ({reason})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise TLSError(f"{where}: RSA key of {key.key_size} bits; Go refuses below 1024")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            raise TLSError(f"{where}: EC curve {key.curve.name} is not one Go's TLS accepts")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise TLSError(f"{where}: a {type(key).__name__} cannot sign TLS certificates")


def _key_pem(key: SigningKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _digest(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None  # Ed25519 hashes internally


def _spki(key: SigningKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _general_names(sans: list[str]) -> list[x509.GeneralName]:
    import ipaddress

    from cryptography import x509

    names: list[x509.GeneralName] = []
    for word in sans:
        kind, _, value = _san(word, "server SANs").partition(":")
        if kind == "IP":
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            names.append(x509.DNSName(value))
    return names


def _key_usage(*, sign_certs: bool, encipher: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certs,
        crl_sign=sign_certs,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    cn: str,
    key: SigningKey,
    ca_key: SigningKey,
    when: datetime.datetime,
    usage: x509.ObjectIdentifier | None,
    names: list[x509.GeneralName],
) -> x509.Certificate:
    """The CA certificate (``usage`` None: self-signed), else a server or client one."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    public = key.public_key()
    ca_public = ca_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN_CA)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - BACKDATE)
        .not_valid_after(when + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    if usage is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(_key_usage(sign_certs=True, encipher=False), True)
    else:
        rsa_key = isinstance(key, rsa.RSAPrivateKey)  # TLS 1.2 RSA key exchange enciphers
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(_key_usage(sign_certs=False, encipher=rsa_key), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, _digest(ca_key))


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


# --- The step ---------------------------------------------------------------------------


def make_certificates(
    certdir: str, sans: list[str], *, now: datetime.datetime | None = None
) -> str:
    """Make or verify the layout in ``certdir``; one line for the log.

    Returns only when every file is in place (see the module's docstring for the
    rules and the write order). ``now`` (default: the clock) dates the certificates
    and the user-managed CA's validity check. Errors: TLSError, one line naming
    the file; a UsageError for a malformed SAN.
    """
    when = _aware(now or datetime.datetime.now(datetime.UTC))
    path = _absolute(certdir)
    try:
        import cryptography  # noqa: F401  (a dependency; missing in a hand-made image)
    except ImportError:
        raise TLSError(
            "DOCKER_TLS_CERTDIR is set but the Python package 'cryptography' is missing;"
            " install it (pip install 'cryptography>=42') or unset DOCKER_TLS_CERTDIR"
        ) from None
    names = _general_names(sans)
    root = _open_certdir(path, create=True)
    assert root is not None
    lock = -1
    try:
        lock = _lock(root)
        have = _inventory(root)
        state = _state(root, have)
        if state == USER_CA:
            return _use_user_ca(root, when)
        return _manage(root, have, sans, names, when)
    finally:
        if lock >= 0:
            os.close(lock)
        root.close()


def _aware(when: datetime.datetime) -> datetime.datetime:
    """A naive datetime is taken as UTC, as ``cryptography`` takes it."""
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def _manage(
    root: _Dir,
    have: dict[str, set[str]],
    sans: list[str],
    names: list[x509.GeneralName],
    when: datetime.datetime,
) -> str:
    """New or managed layout: keys loaded or made, everything signed, then staged and renamed."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    dirs: dict[str, _Dir] = {}
    try:
        for sub, _ in LAYOUT:
            made = root.subdir(sub, create=True)
            assert made is not None
            dirs[sub] = made
            made.sweep()
        ca, server, client = dirs["ca"], dirs["server"], dirs["client"]
        keys: dict[str, SigningKey] = {}
        new: dict[str, bool] = {}
        for sub, directory in dirs.items():
            new[sub] = "key.pem" not in have[sub]
            where = directory.where("key.pem")
            keys[sub] = _new_key() if new[sub] else _load_key(directory.read("key.pem"), where)
        ca_pem = _pem(_certificate(CN_CA, keys["ca"], keys["ca"], when, None, []))
        server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
        server_pem = _pem(
            _certificate(CN_SERVER, keys["server"], keys["ca"], when, server_auth, names)
        )
        client_pem = _pem(
            _certificate(CN_CLIENT, keys["client"], keys["ca"], when, client_auth, [])
        )

        writes: list[tuple[_Dir, str, bytes, int]] = []
        if new["ca"]:
            writes.append((ca, "key.pem", _key_pem(keys["ca"]), KEY_MODE))
        writes.append((ca, "cert.pem", ca_pem, CERT_MODE))
        for directory, sub, cert_pem, key_mode in (
            (server, "server", server_pem, KEY_MODE),
            (client, "client", client_pem, CLIENT_KEY_MODE),
        ):
            writes.append((directory, "ca.pem", ca_pem, CERT_MODE))
            writes.append((directory, "cert.pem", cert_pem, CERT_MODE))
            if new[sub]:
                writes.append((directory, "key.pem", _key_pem(keys[sub]), key_mode))
        _write_all(writes)
        if not new["client"]:
            client.set_mode("key.pem", CLIENT_KEY_MODE)  # docker:dind's chmod at every start
    finally:
        for directory in dirs.values():
            directory.close()
    certificates = f"new CA, server and client certificates (SANs: {', '.join(sans)})"
    return f"{root.path}: {_keys_phrase(new)}; {certificates}"


def _write_all(writes: list[tuple[_Dir, str, bytes, int]]) -> None:
    """Stage every file, then rename them in list order, fsyncing each directory after its turn."""
    staged: list[tuple[_Dir, str, str]] = []
    try:
        for directory, name, data, mode in writes:
            staged.append((directory, directory.stage(name, data, mode), name))
        while staged:
            directory, temp, name = staged[0]
            directory.commit(temp, name)
            staged.pop(0)
            if not staged or staged[0][0] is not directory:
                directory.sync()
    finally:
        for directory, temp, _ in staged:
            directory.discard(temp)


def _keys_phrase(new: dict[str, bool]) -> str:
    label = {"ca": "CA", "server": "server", "client": "client"}
    reused = [label[sub] for sub, made in new.items() if not made]
    fresh = [label[sub] for sub, made in new.items() if made]
    parts = []
    if reused:
        parts.append(f"{_enumerate(reused)} key{'s' if len(reused) > 1 else ''} reused")
    if fresh:
        parts.append(f"new {_enumerate(fresh)} key{'s' if len(fresh) > 1 else ''}")
    return ", ".join(parts)


def _enumerate(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# --- A user-managed CA: verified, never written -----------------------------------------


def _use_user_ca(root: _Dir, when: datetime.datetime) -> str:
    from cryptography import x509

    server = root.subdir("server", create=False)
    assert server is not None
    try:
        ca_where, cert_where, key_where = (server.where(name) for name in SERVER_FILES)
        anchors = _load_certificates(server.read("ca.pem"), ca_where)
        chain = _load_certificates(server.read("cert.pem"), cert_where)
        key = _load_key(server.read("key.pem"), key_where)
    finally:
        server.close()
    leaf = chain[0]
    try:
        if _spki(key) != _public_der(leaf):
            raise TLSError(f"{key_where}: does not match the certificate in {cert_where}")
        _check_dates(leaf, when, cert_where)
        _check_server_auth(leaf, cert_where)
        _check_chain(leaf, chain[1:], anchors, when, cert_where, ca_where)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as err:
        raise TLSError(f"{cert_where}: cannot be verified: {err}") from None
    until = leaf.not_valid_after_utc.strftime("%Y-%m-%d")
    return (
        f"{root.path}: user-managed CA: server/cert.pem verified against server/ca.pem"
        f" (valid until {until}); nothing written"
    )


def _load_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as err:
        reason = str(err).splitlines()[0][:120] if str(err) else "no certificate"
        raise TLSError(f"{where}: not a PEM certificate ({reason})") from None


def _public_der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_dates(cert: x509.Certificate, when: datetime.datetime, where: str) -> None:
    if when < cert.not_valid_before_utc:
        raise TLSError(f"{where}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if when > cert.not_valid_after_utc:
        raise TLSError(f"{where}: expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _check_server_auth(cert: x509.Certificate, where: str) -> None:
    """serverAuth (or anyExtendedKeyUsage) when the certificate restricts its usage.

    No extendedKeyUsage means any usage, for Go and OpenSSL clients alike.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    allowed = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
    if not any(oid in allowed for oid in usages):
        known = {
            ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
            ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
            ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
        }
        shown = ", ".join(known.get(oid, oid.dotted_string) for oid in usages)
        raise TLSError(
            f"{where}: extendedKeyUsage ({shown}) lacks serverAuth; clients refuse it for a server"
        )


def _is_ca(cert: x509.Certificate, *, default: bool) -> bool:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return default


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: list[x509.Certificate],
    when: datetime.datetime,
    cert_where: str,
    ca_where: str,
) -> None:
    """``openssl verify -CAfile ca.pem cert.pem``'s question: a path from the leaf to an anchor.

    Intermediates may follow the leaf in cert.pem; each must be a CA, and every
    certificate on the path valid now. An anchor without basicConstraints counts as
    a CA (old v1 roots); one that says CA:FALSE does not.
    """
    current = leaf
    for _ in range(MAX_CHAIN):
        for anchor in anchors:
            if anchor == current or (_issued_by(current, anchor) and _is_ca(anchor, default=True)):
                _check_dates(anchor, when, ca_where)
                return
        for candidate in intermediates:
            if candidate != current and _issued_by(current, candidate):
                if not _is_ca(candidate, default=False):
                    raise TLSError(f"{cert_where}: intermediate {_cn(candidate)} is not a CA")
                _check_dates(candidate, when, cert_where)
                current = candidate
                break
        else:
            issuer = _cn(current, issuer=True)
            raise TLSError(f"{cert_where}: not signed by the CA in {ca_where} (issuer: {issuer})")
    raise TLSError(f"{cert_where}: no path to {ca_where} within {MAX_CHAIN} certificates")


def _cn(cert: x509.Certificate, *, issuer: bool = False) -> str:
    return repr((cert.issuer if issuer else cert.subject).rfc4514_string())
