"""``dind --ready``'s reading of DOCKER_HOST: what a docker client would reach, or a
usage error (exit 2, one line) for an address no client could use; and its TLS
verification, as lenient as a docker client's and no more."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dind.daemon.ready import endpoint, ping
from dind.errors import UsageError


@pytest.mark.parametrize(
    ("environ", "base"),
    [
        ({"DOCKER_HOST": "tcp://10.0.0.1:2376"}, "http://10.0.0.1:2376"),
        ({"DOCKER_HOST": "tcp://docker/"}, "http://docker:2375"),
        ({"DOCKER_HOST": "tcp://docker", "DOCKER_TLS_VERIFY": "1"}, "https://docker:2376"),
        ({"DOCKER_HOST": "tcp://[::1]"}, "http://[::1]:2375"),
        ({"DOCKER_HOST": "tcp://[::1]:12"}, "http://[::1]:12"),
    ],
)
def test_a_tcp_host_gets_the_docker_clients_default_port(
    environ: dict[str, str], base: str
) -> None:
    assert endpoint(environ).base == base


def test_a_unix_host_is_its_socket() -> None:
    target = endpoint({"DOCKER_HOST": "unix:///run/x.sock"})
    assert (target.socket, str(target)) == ("/run/x.sock", "unix:///run/x.sock")
    assert endpoint({}).socket == "/var/run/docker.sock"


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("tcp://[::1", "not HOST[:PORT]"),
        ("tcp://host:99999", "not HOST[:PORT]"),
        ("tcp://host:port", "not HOST[:PORT]"),
        ("tcp://:2375", "not HOST[:PORT]"),
        ("tcp://h:1/path", "not HOST[:PORT]"),
        ("tcp://u@h:1", "not HOST[:PORT]"),
        ("tcp://a..b:1", "DNS label ''"),  # httpx's IDNA encoding raised
        ("tcp://" + "a" * 64 + ":1", "is not 1 to 63 letters"),
        ("tcp://ex ample:1", "is not 1 to 63 letters"),
        ("tcp://\u00e9:1", "not ASCII"),
        ("unix://", "no socket path"),
        ("tcp://a\nb:2376", "control character '\\n'"),  # issue 21: was 125, InvalidURL
        ("tcp://a\tb:2376", "control character '\\t'"),
        ("tcp://a:2376\r", "control character '\\r'"),
        ("unix:///x\ny", "control character '\\n'"),  # was a two-line error
        ("tcp://a\x1b[2J:1", "control character '\\x1b'"),
        ("ftp://x", "speaks to unix:// and tcp://"),
        ("docker", "speaks to unix:// and tcp://"),
    ],
)
def test_an_unusable_docker_host_is_a_usage_error(host: str, said: str) -> None:
    with pytest.raises(UsageError, match=re.escape(said)):
        endpoint({"DOCKER_HOST": host})


def test_dind_ready_says_so_in_one_line_with_status_2() -> None:
    """Before: ``tcp://[::1`` was exit 125, "internal error: InvalidURL"."""
    result = subprocess.run(
        [sys.executable, "-m", "dind", "--ready"],
        env={**os.environ, "DOCKER_HOST": "tcp://[::1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not HOST[:PORT]" in result.stderr, result.stderr


def ready(host: str | bytes, **extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {k.encode(): v.encode() for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env[b"DOCKER_HOST"] = host if isinstance(host, bytes) else host.encode()
    env.update({k.encode(): v.encode() for k, v in extra.items()})
    return subprocess.run(
        [sys.executable, "-m", "dind", "--ready"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("host", ["tcp://a\nb:2376", "tcp://a\tb:2376", "tcp://a\rb:2376"])
def test_a_control_character_in_docker_host_is_a_usage_error(host: str) -> None:
    """Issue 21, item 5: before, exit 125 and "internal error: InvalidURL"."""
    result = ready(host)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("dind: error: DOCKER_HOST=") and "control character" in line


def test_a_hostile_value_is_cut_and_its_length_said() -> None:
    """Issue 21, item 6: a 100 KB DOCKER_HOST was echoed whole in one error line."""
    host = "tcp://" + "a" * 100_000 + ":2376"
    result = ready(host)
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert len(line) < 400, len(line)
    assert f"({len(host)} characters)" in line


def test_bytes_that_are_not_utf8_are_escaped_not_echoed_raw(tmp_path: Path) -> None:
    """Issue 21, item 6: an undecodable socket path reached stderr as raw bytes."""
    result = ready(b"unix://" + os.fsencode(str(tmp_path)) + b"/\xff\xfe.sock")
    assert result.returncode == 1
    assert b"\xff" not in result.stderr and b"\xfe" not in result.stderr
    (line,) = result.stderr.decode("utf-8").splitlines()
    assert line.startswith(f"dind: error: not ready: unix://{tmp_path}/\\udcff\\udcfe.sock: ")


# --- TLS: a user's chain is judged as docker clients judge it -------------------------


def _chain_without_key_identifiers(directory: Path) -> None:
    """ca.pem, and cert.pem/key.pem for 127.0.0.1 signed by it, with no Subject or
    Authority Key Identifier: what older openssl recipes make, and what dockerd and
    the docker CLI (Go) accept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def signed(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> bytes:
        cert = (
            builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.CertificateBuilder().subject_name(name("user CA")).issuer_name(name("user CA"))
    ca = ca.public_key(ca_key.public_key())
    ca = ca.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    (directory / "ca.pem").write_bytes(signed(ca, ca_key))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = x509.CertificateBuilder().subject_name(name("daemon")).issuer_name(name("user CA"))
    leaf = leaf.public_key(key.public_key()).add_extension(
        x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
        critical=False,
    )
    (directory / "cert.pem").write_bytes(signed(leaf, ca_key))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def tls_daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS server on loopback answering ``/_ping`` with OK, its certificate from
    :func:`_chain_without_key_identifiers`: (DOCKER_HOST, the directory of the files)."""
    _chain_without_key_identifiers(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", tmp_path
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_chain_without_key_identifiers_is_ready_under_strict_defaults(
    tls_daemon: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.13 (the image's) sets VERIFY_X509_STRICT in every default context, and
    OpenSSL then refuses a chain without key identifiers ("Missing Authority Key
    Identifier"), which docker clients accept: the health check of a daemon with a
    user-managed CA failed alone. Here 3.13's default is reproduced on any Python;
    the CA is still verified (a wrong one fails)."""
    default_context = ssl.create_default_context

    def strict_default(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = default_context(*args, **kwargs)
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        return context

    monkeypatch.setattr(ssl, "create_default_context", strict_default)
    host, certs = tls_daemon
    environ = {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    assert ping(endpoint(environ), 5) is None
    other = certs / "other"
    other.mkdir()
    _chain_without_key_identifiers(other)
    (certs / "ca.pem").write_bytes((other / "ca.pem").read_bytes())
    refused = ping(endpoint(environ), 5)
    assert refused is not None and "certificate verify failed" in refused, refused
