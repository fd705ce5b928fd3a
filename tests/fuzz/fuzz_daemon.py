"""Fuzz target for what a daemon's user (or a hostile volume's) hands dind as text:
``DOCKER_HOST`` (``dind.daemon.ready.endpoint``) and ``DOCKER_TLS_SAN``
(``dind.daemon.addresses.parse_sans``).

Contract: an address is usable or a ``UsageError`` whose message is one line of
bounded length (a control character, a 1 MB value, bytes that were not UTF-8 are
escaped and cut, never echoed); what is accepted holds no control character, so the
value checked is the value used (issue 21).
"""

from __future__ import annotations

from dind.daemon.addresses import parse_sans
from dind.daemon.ready import endpoint
from dind.errors import UsageError, control
from tests.fuzz.runner import Target

MAX_LINE = 1000
"""A generous bound on one error line: the value is cut at 120 characters."""


def _one_line(err: UsageError) -> None:
    text = str(err)
    assert "\n" not in text and "\r" not in text, text[:200]
    assert len(text) < MAX_LINE, len(text)


def check(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    for host in (text, f"tcp://{text}", f"unix://{text}", f"tcp://{text}:2376"):
        for tls in ({}, {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs/client"}):
            try:
                target = endpoint({"DOCKER_HOST": host, **tls})
            except UsageError as err:
                _one_line(err)
                continue
            assert not any(control(c) for c in host), repr(host[:200])
            shown = str(target)
            assert shown.isprintable(), repr(shown[:200])
    try:
        sans = parse_sans(text)
    except UsageError as err:
        _one_line(err)
    else:
        assert all(not any(control(c) for c in san) for san in sans)


SEEDS = [
    "tcp://10.0.0.1:2376", "tcp://docker", "tcp://[::1]:12", "unix:///var/run/docker.sock",
    "tcp://a\nb:2376", "tcp://a\tb:2376", "tcp://a\rb:2376", "unix:///x\ny", "tcp://a\x1b[2J:1",
    "tcp://a\x00b", "tcp://a\u2028b", "tcp://a\x85b", "tcp://\u00e9:1", "tcp://a..b:1",
    "IP:10.0.0.1 DNS:docker, gitlab.example", "IP:300.0.0.1", "DNS:a\nb",
]  # fmt: skip


TARGETS = {
    "docker-host": Target(
        check=check,
        seeds=lambda: [s.encode("utf-8", "surrogateescape") for s in SEEDS] + [b"tcp://\xff:1"],
        big=lambda: [
            b"tcp://" + b"a" * (1 << 20),
            b"unix://" + b"\n" * (1 << 20),
            b"a " * (1 << 19),
        ],
    ),
}
