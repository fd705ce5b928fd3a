"""Hostile input (issue 13): a registry or an output directory that tries to hurt.

The tool runs as root, so a symlink planted in its output directory must never
redirect a write; and whatever a registry or a local ``manifest.json`` holds (tags
outside the grammar, endless bodies, JSON nested 100000 deep), the answer is one
line on stderr and a documented exit status, never a traceback or unbounded memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dind.frozen.manifest import DOCKER_MANIFEST, MAX_CONFIG_BYTES
from tests.frozen import images
from tests.frozen.conftest import Run, partial
from tests.frozen.server import Fault, RegistryServer
from tests.frozen.test_download import APP_IMG, BASE, BASE_IMG, FAST, TOP, check_layout

Freeze = Callable[..., Run]
CONSOLE = Path(sys.executable).with_name("dind-frozen-images")
DEEP = b"[" * 100_000 + b"]" * 100_000
PRECIOUS = b"precious, must not change\n"


@pytest.fixture
def hub(fake: RegistryServer) -> RegistryServer:
    images.publish(fake.content, "library/base", "latest", BASE_IMG)
    images.publish(fake.content, "library/app", "1.0", APP_IMG)
    return fake


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the output directory that a planted link points to."""
    path = tmp_path / "victim"
    path.write_bytes(PRECIOUS)
    return path


def one_error(run: Run, status: int, *fragments: str) -> str:
    """The run failed with ``status`` and exactly one error line holding ``fragments``."""
    assert run.status == status, run.err
    assert "Traceback" not in run.err
    (error,) = run.errors
    for fragment in fragments:
        assert fragment in error, error
    return error


# -- item 3: nothing inside the output directory is followed ----------------------------


@pytest.mark.parametrize("name", [".manifest.json.tmp", ".repositories.tmp"])
def test_planted_temporary_file_link_does_not_redirect_the_write(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, victim: Path, name: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    run = freeze(out, "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    assert victim.read_bytes() == PRECIOUS
    for written in ("manifest.json", "repositories"):
        assert (out / written).is_file() and not (out / written).is_symlink()
    # staged under names of its own (dind.safepath): the planted one is never opened
    assert (out / name).is_symlink() and (out / name).readlink() == victim
    assert not list(out.glob(".*.dind-*.tmp"))
    check_layout(out)


@pytest.mark.parametrize("planted", ["blobs", "blobs/sha256", ".incomplete"])
def test_symlinked_directory_inside_is_refused(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, planted: str
) -> None:
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / planted).parent.mkdir(parents=True)
    (out / planted).symlink_to(elsewhere, target_is_directory=True)
    run = freeze(out, "base", "--registry", hub.url, *FAST)
    one_error(run, 1, f"{out / planted} is a symbolic link", "refusing to follow it")
    assert list(elsewhere.iterdir()) == []
    assert not (out / "manifest.json").exists()


def test_planted_partial_link_or_hard_link_is_not_written_through(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, victim: Path
) -> None:
    """A partial file looks like a download to resume: appending to it must not reach
    the file it is linked to (symbolic or hard link)."""
    out = tmp_path / "out"
    (out / ".incomplete").mkdir(parents=True)
    partial(out, BASE.digest, hub.url).symlink_to(victim)
    os.link(victim, partial(out, BASE_IMG.config_digest, hub.url))
    run = freeze(out, "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    assert victim.read_bytes() == PRECIOUS
    assert [g.headers.get("Range") for g in hub.blob_gets()] == [None, None]
    check_layout(out)


def test_blob_that_is_a_link_is_replaced_by_the_real_file(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    """Even with the right content elsewhere, a link is not a blob: ``tar`` would pack
    the link and ``docker load`` would miss the layer."""
    out = tmp_path / "out"
    (out / "blobs/sha256").mkdir(parents=True)
    elsewhere = tmp_path / "layer"
    elsewhere.write_bytes(BASE.blob)
    (out / "blobs/sha256" / BASE.digest[7:]).symlink_to(elsewhere)
    run = freeze(out, "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    layer = out / "blobs/sha256" / BASE.digest[7:]
    assert layer.is_file() and not layer.is_symlink()
    assert elsewhere.read_bytes() == BASE.blob
    check_layout(out)


def test_symlinked_manifest_is_not_read_through(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, victim: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim.write_text("[]")
    (out / "manifest.json").symlink_to(victim)
    run = freeze(out, "base", "--registry", hub.url, *FAST)
    one_error(run, 1, f"{out / 'manifest.json'} is a symbolic link", "refusing to follow it")
    assert victim.read_text() == "[]"
    assert (out / "manifest.json").is_symlink()


def test_planted_fifo_does_not_hang_the_run(hub: RegistryServer, tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; files are opened
    O_NONBLOCK and must be regular."""
    os.mkfifo(tmp_path / "manifest.json")
    (tmp_path / ".incomplete").mkdir()
    os.mkfifo(partial(tmp_path, BASE.digest, hub.url))
    status, err, peak = run_bounded(tmp_path, "base", "--registry", hub.url, *FAST)
    assert_one_line_exit_1(status, err, peak, f"{tmp_path / 'manifest.json'} is not a regular")
    (tmp_path / "manifest.json").unlink()
    status, err, _ = run_bounded(tmp_path, "base", "--registry", hub.url, *FAST)
    assert status == 0, err
    check_layout(tmp_path)


def test_the_output_directory_itself_may_be_a_symlink(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    """The user chose it: only what is inside is never followed."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    run = freeze(tmp_path / "link", "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    check_layout(real)


# -- item 5: references and existing entries follow docker's rules -----------------------


@pytest.mark.parametrize("tag", ["café", "\uff11", "\u0663", "x\u212a"])
def test_tag_outside_the_grammar_is_a_usage_error(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, tag: str
) -> None:
    """``\\w`` matched any Unicode letter or digit; the grammar is ASCII only."""
    # Served under the percent-encoded name as well, as a registry could: no request
    # may even be sent.
    encoded = "".join(c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode()) for c in tag)
    for name in (tag, encoded):
        hub.content.add_manifest("library/base", name, DOCKER_MANIFEST, BASE_IMG.manifest)
    run = freeze(tmp_path / "out", f"base:{tag}", "--registry", hub.url, *FAST)
    one_error(run, 2, f"bad tag {tag!r}")
    assert len(run.lines) == 1
    assert hub.requests == []
    assert not (tmp_path / "out" / "manifest.json").exists()


def _existing(out: Path, entry: dict[str, object]) -> bytes:
    """An output directory from an earlier run (base) plus one more entry."""
    entries = json.loads((out / "manifest.json").read_text())
    text = json.dumps([*entries, entry]).encode()
    (out / "manifest.json").write_bytes(text)
    return text


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"RepoTags": ["base:café"]}, "tag 'base:café' is not a valid"),
        ({"RepoTags": ["base"]}, "tag 'base' is not a valid"),
        ({"RepoTags": "base:1"}, "RepoTags is not a list"),
        ({"Layers": ["blobs/sha256/" + "0" * 64]}, f"blobs/sha256/{'0' * 64} is missing"),
        ({"Config": "../../victim"}, "'../../victim' is not a path inside the directory"),
        ({"Config": "/etc/passwd"}, "'/etc/passwd' is not a path inside the directory"),
        ({"Layers": "blobs"}, "Layers is not a list"),
    ],
)
def test_broken_entry_in_existing_manifest_is_named_not_kept(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, entry: dict[str, object], problem: str
) -> None:
    out = tmp_path / "out"
    assert freeze(out, "base", "--registry", hub.url, *FAST).status == 0
    good = json.loads((out / "manifest.json").read_text())[0]
    before = _existing(out, {**good, "RepoTags": ["other:1"], **entry})
    hub.requests.clear()
    run = freeze(out, "app:1.0", "--registry", hub.url, *FAST)
    one_error(run, 1, f"{out / 'manifest.json'}: entry 2", problem)
    assert (out / "manifest.json").read_bytes() == before
    assert hub.blob_gets() == []  # refused before downloading anything


# -- item 11: every body read is bounded --------------------------------------------------


# Sets an address-space limit, then becomes the console script.
LIMITED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def run_bounded(*args: str | Path, memory: int = 1 << 30) -> tuple[int, str, int]:
    """The console script as its own process under an address-space limit.

    Returns (exit status, stderr, peak RSS in kB): an unbounded read dies of
    MemoryError (a traceback) under the limit instead of eating the machine.
    """
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    argv = [sys.executable, "-c", LIMITED, str(memory), str(CONSOLE), *map(str, args)]
    with subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env) as proc:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode()
    return proc.returncode, err, usage.ru_maxrss


def assert_one_line_exit_1(status: int, err: str, peak_kb: int, *fragments: str) -> None:
    assert status == 1, err[-2000:]
    assert "Traceback" not in err and "MemoryError" not in err
    errors = [line for line in err.splitlines() if line.startswith("dind-frozen-images: error:")]
    assert len(errors) == 1, err[-2000:]
    for fragment in fragments:
        assert fragment in errors[0]
    assert peak_kb < 200_000, f"peak RSS {peak_kb} kB"


def test_endless_error_body_is_not_read_to_the_end(hub: RegistryServer, tmp_path: Path) -> None:
    hub.fault(Fault("/manifests/latest", "endless", status=404, body=b'{"errors":[' * 4096))
    status, err, peak = run_bounded(tmp_path, "base", "--registry", hub.url, *FAST)
    assert_one_line_exit_1(status, err, peak, "manifest library/base:latest: not found (404")


def test_endless_token_answer_is_not_read_to_the_end(tmp_path: Path) -> None:
    with RegistryServer(token_auth=True) as server:
        images.publish(server.content, "library/base", "latest", BASE_IMG)
        server.fault(Fault("/token", "endless", status=200, times=10))
        status, err, peak = run_bounded(
            tmp_path, f"{server.hostport}/library/base", "--insecure", "--retries", "1"
        )
    assert_one_line_exit_1(status, err, peak, f"token from {server.url}/token", "larger than")


def test_endless_redirect_body_is_not_read(hub: RegistryServer, tmp_path: Path) -> None:
    """httpx reads a redirect's body before following it; ours is never read."""
    with RegistryServer() as cdn:
        cdn.content.add_blob(TOP.blob)
        hub.fault(Fault(f"/blobs/{TOP.digest}", "endless", status=307, location=cdn.url))
        status, err, peak = run_bounded(tmp_path, "app:1.0", "--registry", hub.url, *FAST)
    assert status == 0, err[-2000:]
    assert peak < 200_000, f"peak RSS {peak} kB"
    assert len(cdn.blob_gets(TOP.digest)) == 1
    check_layout(tmp_path)


def test_config_too_large_to_hold_is_refused_before_download(
    fake: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    """Configs are read into memory, so their size is bounded too (before fetching)."""
    img = images.image([BASE])
    doc = json.loads(img.manifest)
    doc["config"]["size"] = MAX_CONFIG_BYTES + 1
    images.publish(fake.content, "library/big", None, img)
    fake.content.add_manifest("library/big", "latest", DOCKER_MANIFEST, json.dumps(doc).encode())
    run = freeze(tmp_path, "big", "--registry", fake.url, *FAST)
    one_error(run, 1, f"big:latest: the image config is {MAX_CONFIG_BYTES + 1} bytes, more than")
    assert fake.blob_gets() == []


def test_registry_text_cannot_add_lines_or_escape_sequences(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    message = "first\nsecond\x1b[2J\u2028third"
    body = json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode()
    hub.fault(Fault("/manifests/latest", "body", status=403, body=body))
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST)
    error = one_error(run, 1, "DENIED: first\\nsecond\\x1b[2J\\u2028third")
    assert run.lines == [error]


# -- item 12: JSON nested 100000 deep -----------------------------------------------------


def test_deep_manifest_from_the_registry(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.content.add_manifest("library/deep", "latest", DOCKER_MANIFEST, DEEP)
    run = freeze(tmp_path, "deep", "--registry", hub.url, *FAST)
    one_error(run, 1, "deep:latest: manifest is not valid JSON", "nested deeper than")


def test_deep_image_config(fake: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    img = images.image([BASE])
    doc = json.loads(img.manifest)
    doc["config"] = {"mediaType": images.DOCKER_CONFIG, "digest": fake.content.add_blob(DEEP)}
    doc["config"]["size"] = len(DEEP)
    body = json.dumps(doc).encode()
    fake.content.add_blob(BASE.blob)
    fake.content.add_manifest("library/deep", "latest", DOCKER_MANIFEST, body)
    run = freeze(tmp_path, "deep", "--registry", fake.url, *FAST)
    one_error(run, 1, "deep:latest: malformed image config", "nested deeper than")


def test_deep_error_body(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    hub.fault(Fault("/manifests/latest", "body", status=404, body=DEEP))
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST)
    one_error(run, 1, "manifest library/base:latest: not found (404")


def test_deep_token_answer(freeze: Freeze, tmp_path: Path) -> None:
    with RegistryServer(token_auth=True) as server:
        images.publish(server.content, "library/base", "latest", BASE_IMG)
        server.fault(Fault("/token", "body", status=200, body=b'{"token":' + DEEP + b"}"))
        run = freeze(tmp_path, f"{server.hostport}/library/base", *FAST, "--retries", "1")
    one_error(run, 1, f"token from {server.url}/token", "nested deeper than")


def test_deep_local_manifest(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(DEEP)
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST)
    one_error(run, 1, f"{tmp_path / 'manifest.json'} is unreadable", "nested deeper than")
    assert (tmp_path / "manifest.json").read_bytes() == DEEP


def test_deep_json_as_a_separate_process(hub: RegistryServer, tmp_path: Path) -> None:
    """The installed command, not only ``main()``: one line on stderr, exit 1."""
    (tmp_path / "manifest.json").write_bytes(DEEP)
    status, err, peak = run_bounded(tmp_path, "base", "--registry", hub.url, *FAST)
    assert_one_line_exit_1(status, err, peak, "nested deeper than")


@pytest.mark.parametrize("registry", ["https://[::1", "http://a.example:99999", "a.example:port"])
def test_a_malformed_registry_is_a_usage_error(
    freeze: Freeze, tmp_path: Path, registry: str
) -> None:
    run = freeze(tmp_path, "x/y", "--registry", registry, "--insecure")
    assert run.status == 2, run.err
    assert len(run.errors) == 1 and run.errors[0].startswith(
        f"dind-frozen-images: error: --registry {registry}: "
    ), run.err
    assert "Traceback" not in run.err


def test_a_body_that_claims_gzip_and_is_not_is_the_registrys_error() -> None:
    """Asked for ``identity``, a registry answers ``Content-Encoding: gzip`` with bytes that
    are not gzip: one RegistryError (one line, exit 1), not httpx's DecodingError."""
    from dind.frozen.errors import RegistryError
    from dind.frozen.registry import read_body

    def garbled(_: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"not gzip"))

    with (
        httpx.Client(transport=httpx.MockTransport(garbled)) as client,
        client.stream("GET", "http://registry.example/v2/x/manifests/1") as response,
        pytest.raises(RegistryError, match=r"^manifest: DecodingError: "),
    ):
        read_body(response, 1 << 20, "manifest")
