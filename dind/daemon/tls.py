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
following any symlink (``dind.safepath.Dir``, made with mode 0755 if missing),
``ca``/``server``/``client`` and every file are opened or created relative to their
parent's descriptor with ``O_NOFOLLOW``, and a symlink at any of the nine names is
an error, never followed. Renames replace a name, never write through it. A reused
client key with other hard links is refused before anything is written: its mode
becomes 0644, and a link to another key would hand that key to every client.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import time

from dind import steps
from dind.daemon.addresses import one_san
from dind.errors import SetupError, clipped, shown
from dind.safepath import LINKED, SYMLINK, TOO_LARGE, Dir, Refused, first_symlink

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
LOCK_WAIT = 30.0
MAX_CHAIN = 8
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
"""The curves Go's crypto/tls (dockerd, docker) accepts."""

_TEMP = re.compile(r"\.(?:ca|cert|key)\.pem\.dind-[0-9]+-[0-9a-f]{16}\.tmp\Z")
_NO_SYMLINKS = "dind follows no symlink in DOCKER_TLS_CERTDIR"


class TLSError(SetupError):
    """The certificates could not be made or verified: one line naming the file and why."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, step=steps.TLS, errno=code)


def server_paths(certdir: str) -> tuple[str, str, str]:
    """(ca, cert, key) under DIR/server, as ``--tlscacert``/``--tlscert``/``--tlskey`` take them."""
    ca, cert, key = (os.path.join(certdir, "server", name) for name in SERVER_FILES)
    return ca, cert, key


# --- The directory, through dind.safepath ------------------------------------------------


def _failed(err: OSError) -> TLSError:
    """An OSError or a refusal as one line: which file, why, and a hint when one helps."""
    path = err.filename or "DOCKER_TLS_CERTDIR"
    if isinstance(err, Refused):
        if err.kind == SYMLINK:
            return TLSError(
                f"{path}: is a symlink; {_NO_SYMLINKS} (put the file itself there)",
                code=errno.ELOOP,
            )
        if err.kind == TOO_LARGE:
            return TLSError(f"{path}: larger than {MAX_PEM} bytes; not a PEM file")
        if err.kind == LINKED:
            return TLSError(
                f"{path}: {err.reason}; dind changes no file that is also another one"
                " (a hard link): put a file of its own there",
                code=errno.EMLINK,
            )
        return TLSError(f"{path}: {err.reason.removeprefix('is ')}", code=err.errno)
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


def _present(directory: Dir, name: str) -> bool:
    """True when ``name`` is a non-empty regular file; an error when it is something else."""
    st = directory.regular(name)
    return st is not None and st.st_size > 0


def _read(directory: Dir, name: str) -> bytes:
    data = directory.read(name, MAX_PEM)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), directory.where(name))
    return data


def _sweep(directory: Dir) -> None:
    """Remove stale temporary files of dind's pattern (unlink drops a link, not its target)."""
    for name in directory.names():
        if _TEMP.match(name):
            directory.discard(name)


def _absolute(certdir: str) -> str:
    if not certdir:
        raise TLSError("DOCKER_TLS_CERTDIR is empty: no directory for the certificates")
    if ".." in certdir.split("/") or "\0" in certdir:
        raise TLSError(f"DOCKER_TLS_CERTDIR={shown(certdir)}: give a plain path, without '..'")
    return os.path.abspath(certdir)


def _open_certdir(path: str, *, create: bool) -> Dir | None:
    """DIR opened without symlinks; made (0755, parents too) when missing and ``create``.

    None when it is missing and not ``create``.
    """
    try:
        return Dir.open(path, create=create, mode=DIR_MODE)
    except FileNotFoundError:
        if create:
            raise
        return None


def _lock(root: Dir) -> int:
    """flock(LOCK_EX) on DIR, waiting at most LOCK_WAIT; released when the fd closes.

    A filesystem without locks (ENOLCK, some network mounts) goes on unlocked.
    """
    import fcntl

    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root.fd)
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
            raise _failed(OSError(err.errno, err.strerror, root.path)) from None
        else:
            return fd


def _inventory(root: Dir) -> dict[str, set[str]]:
    """The non-empty files of the layout, by directory; an error for a symlink or a non-file."""
    have: dict[str, set[str]] = {}
    for sub, files in LAYOUT:
        directory = root.subdir(sub)
        have[sub] = set()
        if directory is not None:
            with directory:
                have[sub] = {name for name in files if _present(directory, name)}
    return have


def _state(root: Dir, have: dict[str, set[str]]) -> str:
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
    try:
        root = _open_certdir(path, create=False)
        if root is None:
            return NEW
        with root:
            return _state(root, _inventory(root))
    except OSError as err:
        raise _failed(err) from None


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
        reason = clipped(str(err)) if str(err).strip() else type(err).__name__
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
        kind, _, value = one_san(word, "server SANs").partition(":")
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
    try:
        root = _open_certdir(path, create=True)
        assert root is not None
        with root:
            lock = _lock(root)
            try:
                have = _inventory(root)
                if _state(root, have) == USER_CA:
                    return _use_user_ca(root, when)
                return _manage(root, have, sans, names, when)
            finally:
                os.close(lock)
    except OSError as err:
        raise _failed(err) from None


def _aware(when: datetime.datetime) -> datetime.datetime:
    """A naive datetime is taken as UTC, as ``cryptography`` takes it."""
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def _manage(
    root: Dir,
    have: dict[str, set[str]],
    sans: list[str],
    names: list[x509.GeneralName],
    when: datetime.datetime,
) -> str:
    """New or managed layout: keys loaded or made, everything signed, then staged and renamed."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    dirs: dict[str, Dir] = {}
    try:
        for sub, _ in LAYOUT:
            made = root.subdir(sub, create=True, mode=DIR_MODE)
            assert made is not None
            dirs[sub] = made
            _sweep(made)
        ca, server, client = dirs["ca"], dirs["server"], dirs["client"]
        keys: dict[str, SigningKey] = {}
        new: dict[str, bool] = {}
        for sub, directory in dirs.items():
            new[sub] = "key.pem" not in have[sub]
            where = directory.where("key.pem")
            keys[sub] = _new_key() if new[sub] else _load_key(_read(directory, "key.pem"), where)
        if not new["client"]:
            _own_file(client, "key.pem")  # before anything is written: its mode will change
        ca_pem = _pem(_certificate(CN_CA, keys["ca"], keys["ca"], when, None, []))
        server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
        server_pem = _pem(
            _certificate(CN_SERVER, keys["server"], keys["ca"], when, server_auth, names)
        )
        client_pem = _pem(
            _certificate(CN_CLIENT, keys["client"], keys["ca"], when, client_auth, [])
        )

        writes: list[tuple[Dir, str, bytes, int]] = []
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
            client.chmod("key.pem", CLIENT_KEY_MODE)  # docker:dind's chmod at every start
    finally:
        for directory in dirs.values():
            directory.close()
    certificates = f"new CA, server and client certificates (SANs: {', '.join(sans)})"
    return f"{root.path}: {_keys_phrase(new)}; {certificates}"


def _own_file(directory: Dir, name: str) -> None:
    """``name`` is a file of its own: a hard link to a file elsewhere is refused (a mode
    meant for it would reach the other file)."""
    fd = directory.open_file(name, single_link=True)
    if fd is not None:
        os.close(fd)


def _write_all(writes: list[tuple[Dir, str, bytes, int]]) -> None:
    """Stage every file, then rename them in list order, fsyncing each directory after its turn."""
    staged: list[tuple[Dir, str, str]] = []
    try:
        for directory, name, data, mode in writes:
            staged.append((directory, directory.stage(name, data, mode), name))
        while staged:
            directory, temp, name = staged[0]
            directory.rename(temp, directory, name)
            staged.pop(0)
            if not staged or staged[0][0] is not directory:
                directory.fsync()
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


def _use_user_ca(root: Dir, when: datetime.datetime) -> str:
    from cryptography import x509

    server = root.subdir("server")
    assert server is not None
    try:
        ca_where, cert_where, key_where = (server.where(name) for name in SERVER_FILES)
        anchors = _load_certificates(_read(server, "ca.pem"), ca_where)
        chain = _load_certificates(_read(server, "cert.pem"), cert_where)
        key = _load_key(_read(server, "key.pem"), key_where)
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
        reason = clipped(str(err)) if str(err).strip() else "no certificate"
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
