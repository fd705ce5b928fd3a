"""``dind --ready``'s reading of DOCKER_HOST: what a docker client would reach, or a
usage error (exit 2, one line) for an address no client could use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dind.daemon.ready import endpoint
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
