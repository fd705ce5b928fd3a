"""The tls step, for real: files on disk, the kernel's own refusals, cryptography's verifier.

Failures are produced by the kernel, not by fakes: a read-only bind mount and a
tmpfs short of inodes (in a throwaway mount namespace), an immutable file that makes
one rename fail (``chattr +i``), symlinks planted where dind writes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import errno
import ipaddress
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dind.daemon import addresses, tls
from dind.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"
IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")
NINE = [f"{sub}/{name}" for sub, names in tls.LAYOUT for name in names]
ORDER = [
    "ca/key.pem",
    "ca/cert.pem",
    "server/ca.pem",
    "server/cert.pem",
    "server/key.pem",
    "client/ca.pem",
    "client/cert.pem",
    "client/key.pem",
]
"""The rename order of a fresh layout (the module's docstring says why)."""
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
SANS = ["DNS:docker", "DNS:localhost", "DNS:vm", "IP:10.0.0.1", "IP:127.0.0.1", "IP:::1"]
TEMP = re.compile(r"\..*\.dind-.*\.tmp\Z")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
E = TypeVar("E", bound=x509.ExtensionType)


# --- helpers ------------------------------------------------------------------------------


def read_tree(top: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``top``: relative path → (kind, mode, bytes or link target)."""
    found: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(top))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.fsencode(os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return found


def files_of(tree: dict[str, tuple[str, int, bytes]]) -> dict[str, bytes]:
    """The non-empty regular files of a tree (what dind counts as present)."""
    return {rel: data for rel, (kind, _, data) in tree.items() if kind == "file" and data}


def cert_of(files: dict[str, bytes], rel: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files[rel])


def key_of(files: dict[str, bytes], rel: str) -> PrivateKey:
    key = serialization.load_pem_private_key(files[rel], password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def spki(key: object) -> bytes:
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(files: dict[str, bytes], sub: str) -> bool:
    key = key_of(files, f"{sub}/key.pem")
    return spki(key.public_key()) == spki(cert_of(files, f"{sub}/cert.pem").public_key())


def assert_consistent(tree: dict[str, tuple[str, int, bytes]]) -> None:
    """What any interrupted run must leave: no key without its certificate, no lone CA cert."""
    files = files_of(tree)
    for sub in ("server", "client"):
        if f"{sub}/key.pem" in files:
            assert f"{sub}/cert.pem" in files, f"{sub}/key.pem without its certificate"
            assert key_matches(files, sub), f"{sub}/key.pem does not match {sub}/cert.pem"
    if "ca/cert.pem" in files:
        assert "ca/key.pem" in files, "ca/cert.pem without ca/key.pem"
    if {"server/ca.pem", "server/cert.pem", "server/key.pem"} <= files.keys():
        assert "ca/key.pem" in files, "server files without ca/key.pem: a user-managed CA"
    assert not [rel for rel in tree if TEMP.search(rel)], "temporary files left"


def general_names(sans: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        kind, _, value = san.partition(":")
        if kind == "IP":
            out.append(x509.IPAddress(ipaddress.ip_address(value)))
        else:
            out.append(x509.DNSName(value))
    return out


def assert_valid_layout(certdir: Path, sans: list[str], now: datetime.datetime = NOW) -> None:
    """All nine files, modes, chain (cryptography's verifier and openssl), SANs, usages."""
    tree = read_tree(certdir)
    files = files_of(tree)
    assert sorted(files) == sorted(NINE)
    for sub in ("ca", "server", "client"):
        assert tree[sub][:2] == ("dir", 0o755)
    modes = {rel: tree[rel][1] for rel in NINE}
    assert modes == {
        rel: (0o600 if rel in ("ca/key.pem", "server/key.pem") else 0o644) for rel in NINE
    }
    assert files["server/ca.pem"] == files["client/ca.pem"] == files["ca/cert.pem"]
    ca = cert_of(files, "ca/cert.pem")
    server = cert_of(files, "server/cert.pem")
    client = cert_of(files, "client/cert.pem")
    assert key_matches(files, "server") and key_matches(files, "client")
    assert spki(ca.public_key()) == spki(key_of(files, "ca/key.pem").public_key())

    store = verification.Store([ca])
    policy = verification.PolicyBuilder().store(store).time(now)
    for name in general_names(sans):
        assert isinstance(name, x509.DNSName | x509.IPAddress)
        chain = policy.build_server_verifier(name).verify(server, [])
        assert chain == [server, ca]
    # docker:dind's client certificate has no SAN (Go does not ask for one); webpki's does
    no_san = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    client_policy = policy.extension_policies(
        ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=no_san
    )
    verified = client_policy.build_client_verifier().verify(client, [])
    assert verified.chain == [client, ca]

    assert (
        ca.subject == ca.issuer == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, tls.CN_CA)])
    )
    assert server.subject.rfc4514_string() == "CN=docker:dind server"
    assert client.subject.rfc4514_string() == "CN=docker:dind client"
    for cert in (ca, server, client):
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
            days=825, minutes=5
        )
        assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc

    assert {e.oid for e in ca.extensions} == {
        x509.OID_BASIC_CONSTRAINTS,
        x509.OID_KEY_USAGE,
        x509.OID_SUBJECT_KEY_IDENTIFIER,
        x509.OID_AUTHORITY_KEY_IDENTIFIER,
    }
    assert ext(ca, x509.BasicConstraints).critical
    assert ext(ca, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    assert ext(ca, x509.KeyUsage).critical
    assert ext(ca, x509.KeyUsage).value == usage(sign_certs=True)
    for cert, purpose in (
        (server, ExtendedKeyUsageOID.SERVER_AUTH),
        (client, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(
            ca=False, path_length=None
        )
        assert ext(cert, x509.KeyUsage).value == usage()
        assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([purpose])
    assert ext(server, x509.SubjectAlternativeName).value == x509.SubjectAlternativeName(
        general_names(sans)
    )
    assert x509.OID_SUBJECT_ALTERNATIVE_NAME not in {e.oid for e in client.extensions}
    for rel in ("ca/key.pem", "server/key.pem", "client/key.pem"):
        key = key_of(files, rel)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert files[rel].startswith(b"-----BEGIN PRIVATE KEY-----\n")
    for cert in (ca, server, client):
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)

    if shutil.which("openssl"):
        for sub, check in (("server", "sslserver"), ("client", "sslclient")):
            at = str(int(now.timestamp()))
            result = subprocess.run(
                [
                    "openssl",
                    "verify",
                    "-attime",
                    at,
                    "-purpose",
                    check,
                    "-CAfile",
                    "ca.pem",
                    "cert.pem",
                ],
                cwd=certdir / sub,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.stdout.strip() == "cert.pem: OK", result.stdout + result.stderr


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def usage(*, sign_certs: bool = False, encipher: bool = False) -> x509.KeyUsage:
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


def both(certdir: Path, now: datetime.datetime | None = NOW) -> list[Callable[[], str]]:
    """The reading check and the real run: they must refuse alike."""
    return [
        partial(tls.layout_state, str(certdir)),
        partial(tls.make_certificates, str(certdir), SANS, now=now),
    ]


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def certdir(tmp_path: Path) -> Path:
    return tmp_path / "certs"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(b"victim\n")
    path.chmod(0o600)
    return path


# --- SANs ------------------------------------------------------------------------------------


def test_parse_sans_prefixes_bare_words_and_normalisation() -> None:
    text = "IP:10.0.0.1 DNS:Example.COM bare.example 192.0.2.9  2001:DB8:0::1,ip:::1"
    text += " *.svc.local my_svc"
    assert addresses.parse_sans(text) == [
        "IP:10.0.0.1",
        "DNS:example.com",
        "DNS:bare.example",
        "IP:192.0.2.9",
        "IP:2001:db8::1",
        "IP:::1",
        "DNS:*.svc.local",
        "DNS:my_svc",
    ]
    assert addresses.parse_sans("") == []
    assert addresses.parse_sans(" \n\t") == []
    assert addresses.parse_sans("DNS:a.example dns:A.example") == ["DNS:a.example"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("IP:999.1.1.1", "not an IPv4 or IPv6 address"),
        ("IP:", "not an IPv4 or IPv6 address"),
        ("IP:1.2.3", "not an IPv4 or IPv6 address"),
        ("IP:fe80::1%eth0", "not an IPv4 or IPv6 address"),
        ("IP:example.com", "not an IPv4 or IPv6 address"),
        ("DNS:", "empty DNS name"),
        ("DNS:bad name/with slash", "'name/with'"),
        ("DNS:a/b", "DNS label 'a/b'"),
        ("DNS:a\x01b", "control character"),
        ("ok.example DNS:x\x7f", "control character"),
        ("999.1.1.1", "not a valid IPv4 address"),
        ("1.2.3", "not a valid IPv4 address"),
        ("DNS:10.0.0.1", "numeric last label"),
        ("DNS:-bad.example", "DNS label '-bad'"),
        ("DNS:a..b", "DNS label ''"),
        ("DNS:example.com.", "ends with a dot"),
        ("DNS:caf\u00e9.example", "IDNA"),
        ("DNS:" + "a" * 64 + ".example", "1 to 63"),
        ("DNS:" + ".".join(["abcdefgh"] * 30), "longer than 253"),
        ("DNS:a.*.example", "DNS label '*'"),
        ("URI:https://example.com", "IP: and DNS:"),
        ("email:me@example.com", "IP: and DNS:"),
        ("fe80::zz", "IP: and DNS:"),
    ],
)
def test_parse_sans_refuses_garbage_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        addresses.parse_sans(text)
    message = one_line(caught.value)
    assert message.startswith("DOCKER_TLS_SAN: ")
    assert reason in message


def test_parse_sans_names_its_origin() -> None:
    with pytest.raises(UsageError, match=r"^--tls-san: 'IP:300\.0\.0\.1': "):
        addresses.parse_sans("IP:300.0.0.1", origin="--tls-san")


def test_server_sans_sorted_unique_with_docker_and_localhost() -> None:
    sans = addresses.server_sans(
        ["127.0.0.1", "::1", "172.17.0.2", "fe80::42:acff:fe11:2", "172.17.0.2"],
        ["d1ce", "d1ce", "Bad Host", "HOST.example"],
        addresses.parse_sans("IP:10.0.0.1 DNS:docker gitlab.example"),
    )
    assert sans == [
        "DNS:d1ce",
        "DNS:docker",
        "DNS:gitlab.example",
        "DNS:host.example",
        "DNS:localhost",
        "IP:10.0.0.1",
        "IP:127.0.0.1",
        "IP:172.17.0.2",
        "IP:::1",
        "IP:fe80::42:acff:fe11:2",
    ]
    assert addresses.server_sans([], [], []) == ["DNS:docker", "DNS:localhost"]


def test_server_paths() -> None:
    assert tls.server_paths("/certs") == (
        "/certs/server/ca.pem",
        "/certs/server/cert.pem",
        "/certs/server/key.pem",
    )
    assert tls.SERVER_FILES == ("ca.pem", "cert.pem", "key.pem")


# --- Addresses and hostnames -------------------------------------------------------------------


def ip_o_addr(text: str) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 addresses of an ``ip -o addr`` output, canonical."""
    v4 = [m for m in re.findall(r"\binet (\S+)/\d+", text)]
    v6 = [str(ipaddress.ip_address(m)) for m in re.findall(r"\binet6 (\S+)/\d+", text)]
    return v4, v6


@pytest.mark.parametrize("capture", ["host-vm", "netns-veth"])
def test_parsers_agree_with_ip_addr_on_real_captures(capture: str) -> None:
    folder = FIXTURES / capture
    v4, v6 = ip_o_addr((folder / "ip-o-addr").read_text())
    got4 = addresses.parse_fib_trie_local((folder / "fib_trie").read_text())
    got6 = addresses.parse_if_inet6((folder / "if_inet6").read_text())
    assert sorted(got4) == sorted(v4)
    assert len(got4) == len(set(got4))
    assert sorted(got6) == sorted(v6)


def test_netns_capture_has_secondary_slash32_and_down_interface() -> None:
    got = addresses.parse_fib_trie_local((FIXTURES / "netns-veth" / "fib_trie").read_text())
    assert got == ["10.1.1.1", "10.9.8.7", "10.9.8.8", "127.0.0.1", "203.0.113.5"]


def test_parse_if_inet6_skips_dad_failed_and_junk() -> None:
    text = (
        "20010db8000000000000000000000005 03 40 00 88       v0\n"  # dadfailed|permanent
        "20010db8000000000000000000000006 03 40 00 c0       v0\n"  # tentative: counts
        "garbage\n"
        "zz010db8000000000000000000000006 03 40 00 80       v0\n"
        "\n"
    )
    assert addresses.parse_if_inet6(text) == ["2001:db8::6"]
    assert addresses.parse_if_inet6("") == []
    assert addresses.parse_fib_trie_local("") == []


def test_parse_fib_trie_ignores_networks_and_broadcasts() -> None:
    text = (
        "Local:\n"
        "  +-- 10.0.0.0/8 2 0 2\n"
        "     |-- 10.0.0.0\n"
        "        /8 link UNICAST\n"
        "     |-- 10.0.0.5\n"
        "        /32 host LOCAL tos=4\n"
        "     |-- 10.255.255.255\n"
        "        /32 link BROADCAST\n"
        "     |-- 999.0.0.1\n"
        "        /32 host LOCAL\n"
    )
    assert addresses.parse_fib_trie_local(text) == ["10.0.0.5"]


@root_only
def test_interface_addresses_live_in_a_throwaway_netns() -> None:
    if not shutil.which("ip") or not shutil.which("unshare"):
        pytest.fail("needs ip (iproute2) and unshare (util-linux); .ci/run installs them")
    script = (
        "set -e; ip link set lo up; ip addr add 10.9.8.7/24 dev lo;"
        " ip addr add 203.0.113.5/32 dev lo; ip addr add 2001:db8::5/128 dev lo;"
        ' ip -o addr; echo ---; exec "$0" -c'
        ' "import json; from dind.daemon import addresses as a;'
        ' print(json.dumps(a.interface_addresses()))"'
    )
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, sys.executable],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    shown, _, printed = result.stdout.partition("---\n")
    got = json.loads(printed)
    v4, v6 = ip_o_addr(shown)
    assert sorted(got) == sorted(v4 + v6)
    assert set(got) == {"10.9.8.7", "127.0.0.1", "203.0.113.5", "::1", "2001:db8::5"}


def test_interface_addresses_here_match_ip_addr() -> None:
    if not shutil.which("ip"):
        pytest.fail("needs ip (iproute2); .ci/run installs it")
    shown = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    v4, v6 = ip_o_addr(shown.stdout)
    assert sorted(addresses.interface_addresses()) == sorted(v4 + v6)


def test_hostnames_without_dns() -> None:
    names = addresses.hostnames()
    own = socket.gethostname().lower()
    assert own in names or addresses.dns_problem(own) is not None
    assert own.split(".")[0] in names or addresses.dns_problem(own) is not None
    assert len(names) == len(set(names))
    assert all(addresses.dns_problem(name) is None for name in names)
    assert addresses.parse_hostname_file("# comment\n\n  box.example  \nother\n") == "box.example"
    assert addresses.parse_hostname_file("") == ""


# --- A fresh layout, a restart -------------------------------------------------------------------


def test_fresh_layout_in_missing_parents(tmp_path: Path) -> None:
    certdir = tmp_path / "a" / "b" / "certs"
    assert tls.layout_state(str(certdir)) == "new"
    line = tls.make_certificates(str(certdir), SANS, now=NOW)
    assert line == (
        f"{certdir}: new CA, server and client keys; new CA, server and client"
        f" certificates (SANs: {', '.join(SANS)})"
    )
    assert_valid_layout(certdir, SANS)
    for made in (tmp_path / "a", tmp_path / "a" / "b", certdir):
        assert stat.S_IMODE(made.stat().st_mode) == 0o755
    assert tls.layout_state(str(certdir)) == "managed"


def test_modes_do_not_depend_on_the_umask(certdir: Path) -> None:
    old = os.umask(0o077)
    try:
        tls.make_certificates(str(certdir), SANS, now=NOW)
    finally:
        os.umask(old)
    assert_valid_layout(certdir, SANS)


def test_restart_reuses_keys_and_signs_new_certificates(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    first = files_of(read_tree(certdir))
    later = NOW + datetime.timedelta(days=400)
    sans = [*SANS, "IP:10.0.0.2"]
    line = tls.make_certificates(str(certdir), sans, now=later)
    assert line.startswith(f"{certdir}: CA, server and client keys reused; new CA, server")
    second = files_of(read_tree(certdir))
    assert_valid_layout(certdir, sans, later)
    for rel in ("ca/key.pem", "server/key.pem", "client/key.pem"):
        assert second[rel] == first[rel], rel
    for rel in ("ca/cert.pem", "server/cert.pem", "client/cert.pem"):
        assert second[rel] != first[rel], rel
        assert cert_of(second, rel).serial_number != cert_of(first, rel).serial_number
    old_ca, new_ca = cert_of(first, "ca/cert.pem"), cert_of(second, "ca/cert.pem")
    assert old_ca.subject == new_ca.subject
    assert spki(old_ca.public_key()) == spki(new_ca.public_key())
    assert new_ca.not_valid_after_utc > old_ca.not_valid_after_utc  # never expires on restarts
    # a client still holding the first ca.pem trusts the new server certificate
    policy = verification.PolicyBuilder().store(verification.Store([old_ca])).time(later)
    server = cert_of(second, "server/cert.pem")
    assert policy.build_server_verifier(x509.DNSName("docker")).verify(server, [])[0] == server


def test_missing_server_key_is_made_others_reused(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    first = files_of(read_tree(certdir))
    (certdir / "server" / "key.pem").unlink()
    (certdir / "client" / "key.pem").write_bytes(b"")  # empty counts as missing (-s)
    line = tls.make_certificates(str(certdir), SANS, now=NOW)
    assert ": CA key reused, new server and client keys;" in line
    second = files_of(read_tree(certdir))
    assert second["ca/key.pem"] == first["ca/key.pem"]
    assert second["server/key.pem"] != first["server/key.pem"]
    assert_valid_layout(certdir, SANS)


def test_new_ca_for_existing_leaf_keys(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    first = files_of(read_tree(certdir))
    shutil.rmtree(certdir / "ca")
    assert tls.layout_state(str(certdir)) == "user-ca"  # server files alone: the user's own
    (certdir / "server" / "ca.pem").unlink()
    assert tls.layout_state(str(certdir)) == "new"
    line = tls.make_certificates(str(certdir), SANS, now=NOW)
    assert ": server and client keys reused, new CA key;" in line
    second = files_of(read_tree(certdir))
    assert second["server/key.pem"] == first["server/key.pem"]
    assert second["ca/key.pem"] != first["ca/key.pem"]
    assert_valid_layout(certdir, SANS)


def test_docker_dind_rsa_layout_is_taken_over(certdir: Path) -> None:
    """A volume docker:dind filled: RSA keys (PKCS#8 and the older PKCS#1), client key 0600."""
    for sub in ("ca", "server", "client"):
        (certdir / sub).mkdir(parents=True)
    pkcs8 = serialization.PrivateFormat.PKCS8
    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL
    for sub, form in (("ca", pkcs8), ("server", pkcs1), ("client", pkcs8)):
        key = rsa.generate_private_key(65537, 2048)
        pem = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())
        (certdir / sub / "key.pem").write_bytes(pem)
        (certdir / sub / "key.pem").chmod(0o600)
    before = files_of(read_tree(certdir))
    assert tls.layout_state(str(certdir)) == "managed"
    tls.make_certificates(str(certdir), SANS, now=NOW)
    tree = read_tree(certdir)
    after = files_of(tree)
    for rel in ("ca/key.pem", "server/key.pem", "client/key.pem"):
        assert after[rel] == before[rel]
    assert tree["client/key.pem"][1] == 0o644  # docker:dind's chmod at every start
    assert tree["server/key.pem"][1] == 0o600
    server = cert_of(after, "server/cert.pem")
    ca = cert_of(after, "ca/cert.pem")
    assert isinstance(server.signature_hash_algorithm, hashes.SHA256)
    assert server.extensions.get_extension_for_class(x509.KeyUsage).value == usage(encipher=True)
    policy = verification.PolicyBuilder().store(verification.Store([ca])).time(NOW)
    assert policy.build_server_verifier(x509.DNSName("docker")).verify(server, [])
    assert key_matches(after, "server") and key_matches(after, "client")


# --- A user-managed CA ---------------------------------------------------------------------------


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str,
    key: PrivateKey,
    issuer_cn: str,
    issuer_key: PrivateKey,
    *,
    ca: bool | None = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    start: datetime.timedelta = datetime.timedelta(days=-1),
    end: datetime.timedelta = datetime.timedelta(days=30),
) -> x509.Certificate:
    """A certificate like a user's own tooling makes, valid around the real clock."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + start)
        .not_valid_after(now + end)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("docker")]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    protect: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protect)


def user_ca(certdir: Path, case: str = "good") -> None:
    """server/{ca,cert,key}.pem from the user's own CA, broken as ``case`` says."""
    server = certdir / "server"
    server.mkdir(parents=True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    key: PrivateKey = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue("Corp Root", ca_key, "Corp Root", ca_key, ca=True)
    anchors = [ca_cert]
    eku = [ExtendedKeyUsageOID.SERVER_AUTH]
    chain: list[x509.Certificate] = []
    start, end = datetime.timedelta(days=-1), datetime.timedelta(days=30)
    signer, signer_cn = ca_key, "Corp Root"
    if case == "intermediate":
        inter_key = ec.generate_private_key(ec.SECP256R1())
        chain = [issue("Corp Issuing", inter_key, "Corp Root", ca_key, ca=True)]
        signer, signer_cn = inter_key, "Corp Issuing"
    if case == "intermediate-not-ca":
        inter_key = ec.generate_private_key(ec.SECP256R1())
        chain = [issue("Corp Issuing", inter_key, "Corp Root", ca_key, ca=False)]
        signer, signer_cn = inter_key, "Corp Issuing"
    if case == "other-ca":
        other = ec.generate_private_key(ec.SECP256R1())
        anchors = [issue("Corp Root", other, "Corp Root", other, ca=True)]
    if case == "anchor-not-ca":
        anchors = [issue("Corp Root", ca_key, "Corp Root", ca_key, ca=False)]
    if case == "ca-expired":
        past, gone = datetime.timedelta(days=-60), datetime.timedelta(days=-2)
        anchors = [issue("Corp Root", ca_key, "Corp Root", ca_key, ca=True, start=past, end=gone)]
    if case == "expired":
        start, end = datetime.timedelta(days=-60), datetime.timedelta(days=-1)
    if case == "not-yet":
        start, end = datetime.timedelta(days=1), datetime.timedelta(days=60)
    if case == "client-only":
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if case == "no-eku":
        eku = []
    if case == "rsa":
        key = rsa.generate_private_key(65537, 2048)
    leaf = issue("docker", key, signer_cn, signer, eku=eku, start=start, end=end)
    if case == "bundle":
        anchors = [issue("Other Root", key, "Other Root", key, ca=True), ca_cert]
    (server / "ca.pem").write_bytes(b"".join(pem(c) for c in anchors))
    (server / "cert.pem").write_bytes(b"".join(pem(c) for c in [leaf, *chain]))
    key_bytes = key_pem(key)
    if case == "key-mismatch":
        key_bytes = key_pem(ec.generate_private_key(ec.SECP256R1()))
    if case == "encrypted-key":
        key_bytes = key_pem(key, b"secret")
    if case == "garbage-key":
        key_bytes = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    (server / "key.pem").write_bytes(key_bytes)
    if case == "garbage-cert":
        (server / "cert.pem").write_bytes(b"not a certificate\n")
    (server / "key.pem").chmod(0o600)


@pytest.mark.parametrize("case", ["good", "intermediate", "no-eku", "rsa", "bundle"])
def test_user_managed_ca_is_verified_and_kept_byte_for_byte(certdir: Path, case: str) -> None:
    user_ca(certdir, case)
    before = read_tree(certdir)
    assert tls.layout_state(str(certdir)) == "user-ca"
    line = tls.make_certificates(str(certdir), SANS)
    assert line.startswith(f"{certdir}: user-managed CA: server/cert.pem verified")
    assert line.endswith("; nothing written")
    assert read_tree(certdir) == before  # no ca/, no client/, nothing touched


@pytest.mark.parametrize(
    ("case", "where", "reason"),
    [
        ("other-ca", "server/cert.pem", "not signed by the CA in"),
        ("anchor-not-ca", "server/cert.pem", "not signed by the CA in"),
        ("intermediate-not-ca", "server/cert.pem", "intermediate 'CN=Corp Issuing' is not a CA"),
        ("ca-expired", "server/ca.pem", "expired on"),
        ("expired", "server/cert.pem", "expired on"),
        ("not-yet", "server/cert.pem", "not valid before"),
        ("client-only", "server/cert.pem", "extendedKeyUsage (clientAuth) lacks serverAuth"),
        ("key-mismatch", "server/key.pem", "does not match the certificate in"),
        ("encrypted-key", "server/key.pem", "encrypted"),
        ("garbage-key", "server/key.pem", "not a PEM private key"),
        ("garbage-cert", "server/cert.pem", "not a PEM certificate"),
    ],
)
def test_bad_user_managed_ca_is_refused_in_one_line(
    certdir: Path, case: str, where: str, reason: str
) -> None:
    user_ca(certdir, case)
    before = read_tree(certdir)
    with pytest.raises(tls.TLSError) as caught:
        tls.make_certificates(str(certdir), SANS)
    message = one_line(caught.value)
    assert message.startswith(f"{certdir}/{where}: "), message
    assert reason in message
    assert caught.value.step == "tls"
    assert read_tree(certdir) == before


def test_lone_ca_certificate_is_refused(certdir: Path) -> None:
    (certdir / "ca").mkdir(parents=True)
    (certdir / "ca" / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    for call in both(certdir, now=None):
        with pytest.raises(tls.TLSError, match=r"a CA certificate without ca/key\.pem") as caught:
            call()
        one_line(caught.value)
    assert sorted(read_tree(certdir)) == ["ca", "ca/cert.pem"]


# --- Symlinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", NINE)
@pytest.mark.parametrize("when", ["fresh", "existing"])
@pytest.mark.parametrize("target", ["victim", "dangling"])
def test_symlink_at_any_of_the_nine_names_is_refused_never_followed(
    certdir: Path, victim: Path, tmp_path: Path, rel: str, when: str, target: str
) -> None:
    if when == "existing":
        tls.make_certificates(str(certdir), SANS, now=NOW)
    else:
        for sub in ("ca", "server", "client"):
            (certdir / sub).mkdir(parents=True)
    link = certdir / rel
    link.unlink(missing_ok=True)
    pointed = victim if target == "victim" else tmp_path / "made-through-the-link"
    link.symlink_to(pointed)
    before = read_tree(certdir)
    for call in both(certdir):
        with pytest.raises(tls.TLSError) as caught:
            call()
        assert one_line(caught.value) == (
            f"{link}: is a symlink; dind follows no symlink in DOCKER_TLS_CERTDIR"
            " (put the file itself there)"
        )
    assert read_tree(certdir) == before
    assert victim.read_bytes() == b"victim\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (tmp_path / "made-through-the-link").exists()


@pytest.mark.parametrize("where", ["certdir", "parent", "ca", "server", "client"])
def test_symlinked_directory_is_refused(tmp_path: Path, where: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    certdir = tmp_path / "certs"
    if where == "certdir":
        certdir.symlink_to(elsewhere)
    elif where == "parent":
        (tmp_path / "link").symlink_to(elsewhere)
        certdir = tmp_path / "link" / "certs"
    else:
        certdir.mkdir()
        (certdir / where).symlink_to(elsewhere)
    for call in both(certdir):
        with pytest.raises(tls.TLSError) as caught:
            call()
        message = one_line(caught.value)
        assert message.startswith(f"{certdir}: ") or message.startswith(f"{certdir}/{where}: ")
        assert "symlink" in message and "dind follows no symlink" in message
    assert list(elsewhere.iterdir()) == []


def test_stale_temporary_files_are_removed_links_not_followed(certdir: Path, victim: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    stale = certdir / "server" / f".key.pem.dind-{os.getpid()}-0123456789abcdef.tmp"
    stale.symlink_to(victim)
    crashed = certdir / "client" / ".cert.pem.dind-1-fedcba9876543210.tmp"
    crashed.write_bytes(b"half")
    foreign = certdir / "client" / ".cert.pem.someone-else.tmp"
    foreign.write_bytes(b"not ours")
    tls.make_certificates(str(certdir), SANS, now=NOW)
    assert not stale.is_symlink() and not crashed.exists()
    assert foreign.read_bytes() == b"not ours"
    assert victim.read_bytes() == b"victim\n"
    foreign.unlink()
    assert_valid_layout(certdir, SANS)


# --- Bad files, bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "content", "reason"),
    [
        ("ca/key.pem", b"garbage\n", "not a PEM private key"),
        ("server/key.pem", b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
         "not a PEM private key"),
        ("client/key.pem", b"x" * (tls.MAX_PEM + 1), "larger than"),
    ],
)  # fmt: skip
def test_corrupt_existing_key_is_one_line_and_nothing_changes(
    certdir: Path, rel: str, content: bytes, reason: str
) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    (certdir / rel).write_bytes(content)
    before = read_tree(certdir)
    with pytest.raises(tls.TLSError) as caught:
        tls.make_certificates(str(certdir), SANS, now=NOW)
    message = one_line(caught.value)
    assert message.startswith(f"{certdir / rel}: ") and reason in message
    assert read_tree(certdir) == before


def test_a_key_error_is_cut_at_a_word(certdir: Path) -> None:
    """Issue 21, item 6: cryptography's long reason was cut mid-word at 120 characters."""
    bad = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
    with pytest.raises(ValueError) as library:
        serialization.load_pem_private_key(bad, password=None)
    full = str(library.value).splitlines()[0]
    assert len(full) > 120  # the premise: a reason longer than dind shows
    tls.make_certificates(str(certdir), SANS, now=NOW)
    (certdir / "server" / "key.pem").write_bytes(bad)
    with pytest.raises(tls.TLSError) as caught:
        tls.make_certificates(str(certdir), SANS, now=NOW)
    reason = one_line(caught.value).split("not a PEM private key (", 1)[1].removesuffix(")")
    assert reason.endswith("...") and len(reason) <= 123
    assert (full + " ").startswith(reason.removesuffix("...") + " "), reason  # a whole word


def test_a_hard_linked_client_key_is_refused_and_the_other_file_keeps_its_mode(
    certdir: Path, tmp_path: Path
) -> None:
    """Issue 21, item 2: client/key.pem hard-linked to a 0600 key elsewhere was reused,
    and chmod 0644 (meant for the client key) made the other file world-readable."""
    tls.make_certificates(str(certdir), SANS, now=NOW)
    other = tmp_path / "elsewhere.key"
    other.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    other.chmod(0o600)
    (certdir / "client" / "key.pem").unlink()
    os.link(other, certdir / "client" / "key.pem")
    before = read_tree(certdir)
    with pytest.raises(tls.TLSError) as caught:
        tls.make_certificates(str(certdir), SANS, now=NOW)
    message = one_line(caught.value)
    assert message.startswith(f"{certdir}/client/key.pem: has 2 hard links; ")
    assert stat.S_IMODE(other.stat().st_mode) == 0o600
    assert read_tree(certdir) == before  # refused before anything was written
    assert caught.value.errno == errno.EMLINK


def test_encrypted_and_unsupported_keys(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    (certdir / "ca" / "key.pem").write_bytes(key_pem(key, b"pw"))
    with pytest.raises(tls.TLSError, match=r"/ca/key.pem: the key is encrypted"):
        tls.make_certificates(str(certdir), SANS, now=NOW)
    koblitz = ec.generate_private_key(ec.SECP256K1())
    (certdir / "ca" / "key.pem").write_bytes(key_pem(koblitz))
    with pytest.raises(tls.TLSError, match=r"/ca/key.pem: EC curve secp256k1 is not one"):
        tls.make_certificates(str(certdir), SANS, now=NOW)


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_non_file_at_a_name_is_refused_without_blocking(certdir: Path, kind: str) -> None:
    (certdir / "server").mkdir(parents=True)
    target = certdir / "server" / "key.pem"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(tls.TLSError, match=r"/server/key.pem: not a regular file$"):
        tls.make_certificates(str(certdir), SANS, now=NOW)
    with pytest.raises(tls.TLSError, match=r"/server/key.pem: not a regular file$"):
        tls.layout_state(str(certdir))


def test_garbage_sans_are_a_usage_error_and_nothing_is_written(certdir: Path) -> None:
    with pytest.raises(UsageError, match=r"^server SANs: 'IP:999.1.1.1': "):
        tls.make_certificates(str(certdir), ["DNS:docker", "IP:999.1.1.1"], now=NOW)
    assert not certdir.exists()


def test_certdir_with_dotdot_or_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(tls.TLSError, match=r"without '\.\.'"):
        tls.make_certificates(f"{tmp_path}/x/../certs", SANS, now=NOW)
    (tmp_path / "file").write_text("")
    with pytest.raises(tls.TLSError, match=r"/file: Not a directory \[ENOTDIR\]$"):
        tls.make_certificates(str(tmp_path / "file"), SANS, now=NOW)
    with pytest.raises(tls.TLSError, match="DOCKER_TLS_CERTDIR is empty"):
        tls.make_certificates("", SANS, now=NOW)


def test_relative_certdir_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = tls.make_certificates("./certs", SANS, now=NOW)
    assert line.startswith(f"{tmp_path}/certs: ")
    assert_valid_layout(tmp_path / "certs", SANS)


# --- Concurrency ---------------------------------------------------------------------------------


def test_concurrent_runs_end_in_one_consistent_layout(certdir: Path) -> None:
    code = (
        "import sys; from dind.daemon import tls;"
        " print(tls.make_certificates(sys.argv[1], sys.argv[2:]))"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(certdir), *SANS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    lines = sorted(out for out, _ in outputs)
    assert lines[0].startswith(f"{certdir}: CA, server and client keys reused")
    assert lines[-1].startswith(f"{certdir}: new CA, server and client keys")
    assert_valid_layout(certdir, SANS, datetime.datetime.now(datetime.UTC))


# --- Failures made by the kernel: read-only mounts, no inodes, a rename refused ------------------

RUNNER = """
import base64, json, os, stat, subprocess, sys
from dind.daemon import tls
from dind.errors import DindError

def tree(top):
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
            data = b"" if kind == "dir" else open(path, "rb").read()
            found[os.path.relpath(path, top)] = [kind, stat.S_IMODE(st.st_mode),
                                                  base64.b64encode(data).decode()]
    return found

results = []
for step in json.loads(sys.argv[1]):
    if "sh" in step:
        subprocess.run(step["sh"], shell=True, check=True)
    elif "inodes" in step:  # tmpfs at step["inodes"] limited to its used inodes + extra
        st = os.statvfs(step["inodes"])
        used = st.f_files - st.f_ffree
        subprocess.run(["mount", "-o", f"remount,nr_inodes={used + step['extra']}",
                        step["inodes"]], check=True)
    elif "make" in step:
        try:
            results.append({"ok": tls.make_certificates(step["make"], step["sans"])})
        except DindError as err:
            results.append({"error": str(err), "type": type(err).__name__})
    elif "tree" in step:
        results.append({"tree": tree(step["tree"])})
print(json.dumps(results))
"""


def in_mount_namespace(steps: list[dict[str, object]]) -> list[dict[str, object]]:
    """Run ``steps`` (shell, make, tree) in a throwaway private mount namespace."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        pytest.fail("needs unshare and mount (util-linux, essential on Debian)")
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", RUNNER]
    result = subprocess.run(
        [*argv, json.dumps(steps)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    outcome: list[dict[str, object]] = json.loads(result.stdout)
    return outcome


def decoded(raw: object) -> dict[str, tuple[str, int, bytes]]:
    assert isinstance(raw, dict)
    return {rel: (kind, mode, base64.b64decode(data)) for rel, (kind, mode, data) in raw.items()}


def read_only(path: Path) -> dict[str, object]:
    return {"sh": f"mount --bind '{path}' '{path}' && mount -o remount,bind,ro '{path}'"}


def assert_read_only_error(outcome: dict[str, object], path: Path) -> None:
    assert outcome.get("type") == "TLSError", outcome
    message = str(outcome["error"])
    assert "\n" not in message
    assert message.startswith(f"{path}")
    assert "Read-only file system [EROFS]: the certificate directory is read-only" in message


@root_only
def test_read_only_fresh_directory_fails_in_one_line_and_writes_nothing(certdir: Path) -> None:
    certdir.mkdir()
    made, listing = in_mount_namespace(
        [read_only(certdir), {"make": str(certdir), "sans": SANS}, {"tree": str(certdir)}]
    )
    assert_read_only_error(made, certdir)
    assert decoded(listing["tree"]) == {}


@root_only
def test_read_only_parent_of_a_missing_certdir(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    make: dict[str, object] = {"make": str(parent / "a" / "certs"), "sans": SANS}
    made, listing = in_mount_namespace([read_only(parent), make, {"tree": str(parent)}])
    assert_read_only_error(made, parent / "a")
    assert decoded(listing["tree"]) == {}


@root_only
def test_read_only_managed_layout_is_left_byte_for_byte(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    before = read_tree(certdir)
    made, listing = in_mount_namespace(
        [read_only(certdir), {"make": str(certdir), "sans": SANS}, {"tree": str(certdir)}]
    )
    assert_read_only_error(made, certdir)
    assert decoded(listing["tree"]) == before
    assert read_tree(certdir) == before


@root_only
def test_read_only_user_managed_ca_is_fine(certdir: Path) -> None:
    user_ca(certdir)
    (made,) = in_mount_namespace([read_only(certdir), {"make": str(certdir), "sans": SANS}])
    assert str(made.get("ok", made)).startswith(f"{certdir}: user-managed CA:")


@root_only
@pytest.mark.parametrize("extra", range(12))
def test_no_inodes_mid_way_leaves_nothing_half_written(tmp_path: Path, extra: int) -> None:
    """A tmpfs with ``extra`` free inodes: each staging point of a fresh run and a restart."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    certdir = mnt / "certs"
    fresh: dict[str, object] = {"make": str(certdir), "sans": SANS}
    outcome = in_mount_namespace(
        [
            {"sh": f"mount -t tmpfs -o size=1m,nr_inodes=100 tmpfs '{mnt}'"},
            {"inodes": str(mnt), "extra": extra},
            fresh,
            {"tree": str(mnt)},
            {"sh": f"mount -o remount,nr_inodes=100 '{mnt}'"},
            fresh,
            {"tree": str(certdir)},
            {"inodes": str(mnt), "extra": extra},
            {"make": str(certdir), "sans": [*SANS, "IP:10.0.0.9"]},
            {"tree": str(certdir)},
        ]
    )
    first, first_tree, repair, repaired, second, second_tree = outcome
    # a fresh run needs 12 inodes (certs, ca, server, client, then 8 staged files)
    assert first.get("type") == "TLSError", first
    assert "No space left on device [ENOSPC]" in str(first["error"])
    tree = decoded(first_tree["tree"])
    assert not files_of(tree), "a file was left by a failed run"
    assert all(kind == "dir" for kind, _, _ in tree.values())
    assert "ok" in repair, repair
    layout = decoded(repaired["tree"])
    assert_consistent(layout)
    assert sorted(files_of(layout)) == sorted(NINE)
    # a restart stages 5 certificates (keys are reused): short of that, nothing changes
    if extra < 5:
        assert "No space left on device [ENOSPC]" in str(second["error"])
        assert decoded(second_tree["tree"]) == layout
    else:
        assert "ok" in second, second
        assert_consistent(decoded(second_tree["tree"]))


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: the kernel then refuses to rename anything onto ``path`` (EPERM)."""
    if not shutil.which("chattr"):
        pytest.fail("needs chattr (e2fsprogs, required on Debian)")
    set_flag = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if set_flag.returncode != 0:
        pytest.fail(f"chattr +i {path}: {set_flag.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@root_only
@pytest.mark.parametrize("index", range(len(ORDER)))
def test_a_rename_refused_mid_way_never_leaves_a_key_without_its_certificate(
    certdir: Path, index: int
) -> None:
    """Rename number ``index`` fails (an immutable empty file, which counts as missing)."""
    for sub in ("ca", "server", "client"):
        (certdir / sub).mkdir(parents=True)
    blocked = certdir / ORDER[index]
    blocked.write_bytes(b"")
    with immutable(blocked):
        with pytest.raises(tls.TLSError) as caught:
            tls.make_certificates(str(certdir), SANS, now=NOW)
        assert one_line(caught.value) == f"{blocked}: Operation not permitted [EPERM]"
        tree = read_tree(certdir)
    assert_consistent(tree)
    assert sorted(files_of(tree)) == sorted(ORDER[:index])  # renamed up to the refused one
    assert tls.layout_state(str(certdir)) in ("new", "managed")
    tls.make_certificates(str(certdir), SANS, now=NOW)  # the next start repairs
    assert_valid_layout(certdir, SANS)


@root_only
def test_a_restart_stopped_between_renames_keeps_a_working_server_pair(certdir: Path) -> None:
    tls.make_certificates(str(certdir), SANS, now=NOW)
    old = files_of(read_tree(certdir))
    later = NOW + datetime.timedelta(days=1)
    with immutable(certdir / "server" / "cert.pem"):
        with pytest.raises(tls.TLSError, match=r"/server/cert.pem: Operation not permitted"):
            tls.make_certificates(str(certdir), SANS, now=later)
        tree = read_tree(certdir)
    assert_consistent(tree)
    now = files_of(tree)
    assert now["server/ca.pem"] != old["server/ca.pem"]  # renamed before the refusal
    assert now["server/cert.pem"] == old["server/cert.pem"]
    # the old server certificate still verifies against the re-issued CA certificate
    ca = cert_of(now, "server/ca.pem")
    policy = verification.PolicyBuilder().store(verification.Store([ca])).time(later)
    server = cert_of(now, "server/cert.pem")
    assert policy.build_server_verifier(x509.DNSName("docker")).verify(server, [])[0] == server
