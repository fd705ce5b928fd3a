"""dind.safepath, the one door for files dind reads and writes, on the real filesystem.

Everything a hostile writer of a shared directory can plant is planted here: a
symlink where a file or directory belongs, a FIFO where a certificate belongs, a
hard link to a file elsewhere, a file too large to be what it claims.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dind import safepath
from dind.safepath import Dir, Refused
from tests.conftest import root_only

SECRET = b"-----BEGIN PRIVATE KEY-----\nsecret\n"


def refused(kind: str, call: Callable[..., object], *args: object, **kw: object) -> Refused:
    with pytest.raises(Refused) as caught:
        call(*args, **kw)
    assert caught.value.kind == kind, caught.value
    return caught.value


def test_open_refuses_a_symlink_anywhere_in_the_path(tmp_path: Path) -> None:
    (tmp_path / "real" / "inside").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for path in (tmp_path / "link", tmp_path / "link" / "inside"):
        with pytest.raises(OSError) as caught:
            Dir.open(str(path))
        assert caught.value.errno == errno.ELOOP, path
    with Dir.open(str(tmp_path / "real" / "inside")) as found:
        assert found.path == str(tmp_path / "real" / "inside")


def test_open_creates_missing_directories_with_their_mode_whatever_the_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0o077)
    try:
        with Dir.open(str(tmp_path / "a" / "b" / "c"), create=True, mode=0o755):
            pass
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    with pytest.raises(FileNotFoundError):
        Dir.open(str(tmp_path / "missing"))


def test_subdir_refuses_a_symlink_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "file").write_bytes(b"")
    with Dir.open(str(tmp_path)) as top:
        error = refused(safepath.SYMLINK, top.subdir, "link")
        assert str(error) == f"{tmp_path}/link is a symlink"
        refused(safepath.SYMLINK, top.subdir, "link", create=True)
        refused(safepath.NOT_DIRECTORY, top.subdir, "file")
        assert top.subdir("absent") is None
        for name in ("..", ".", "a/b", ""):
            refused(safepath.NOT_A_NAME, top.subdir, name)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_fifo_is_refused_at_once_never_waited_on(tmp_path: Path) -> None:
    """A reader that opened a planted FIFO would block until a writer came: forever."""
    os.mkfifo(tmp_path / "ca.pem")
    outcome: list[object] = []

    def read() -> None:
        try:
            with Dir.open(str(tmp_path)) as top:
                top.read("ca.pem", 1 << 20)
        except Refused as err:
            outcome.append(err.kind)
        try:
            safepath.read_file(str(tmp_path / "ca.pem"), 1 << 20)
        except Refused as err:
            outcome.append(err.kind)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "blocked on the FIFO"
    assert outcome == [safepath.NOT_REGULAR, safepath.NOT_REGULAR]


def test_reads_are_bounded_and_never_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "exact").write_bytes(b"x" * 100)
    (tmp_path / "big").write_bytes(b"x" * 101)
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    with Dir.open(str(tmp_path)) as top:
        assert top.read("exact", 100) == b"x" * 100
        refused(safepath.TOO_LARGE, top.read, "big", 100)
        refused(safepath.SYMLINK, top.read, "link", 100)
        assert top.read("absent", 100) is None
    assert safepath.read_file(str(tmp_path / "exact"), 100) == b"x" * 100
    refused(safepath.TOO_LARGE, safepath.read_file, str(tmp_path / "big"), 100)
    with pytest.raises(OSError) as caught:
        safepath.read_file(str(tmp_path / "link"), 100)
    assert caught.value.errno == errno.ELOOP


def test_chmod_of_a_hard_link_is_refused_and_the_other_file_keeps_its_mode(
    tmp_path: Path,
) -> None:
    """Issue 21, item 2: client/key.pem hard-linked to a 0600 key elsewhere."""
    victim = tmp_path / "victim.key"
    victim.write_bytes(SECRET)
    victim.chmod(0o600)
    (tmp_path / "client").mkdir()
    os.link(victim, tmp_path / "client" / "key.pem")
    with Dir.open(str(tmp_path / "client")) as client:
        error = refused(safepath.LINKED, client.chmod, "key.pem", 0o644)
        assert error.reason == "has 2 hard links"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    (tmp_path / "own").write_bytes(b"")
    (tmp_path / "own").chmod(0o600)
    with Dir.open(str(tmp_path)) as top:
        top.chmod("own", 0o644)
    assert stat.S_IMODE((tmp_path / "own").stat().st_mode) == 0o644


@root_only
def test_chown_of_a_hard_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(SECRET)
    os.link(victim, tmp_path / "data")
    with Dir.open(str(tmp_path)) as top:
        refused(safepath.LINKED, top.chown, "data", 1000, 1000)
        (tmp_path / "own").write_bytes(b"")
        top.chown("own", 1000, 1000)
    assert (victim.stat().st_uid, (tmp_path / "own").stat().st_uid) == (0, 1000)


def test_writes_replace_a_planted_symlink_never_write_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(SECRET)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").symlink_to(victim)
    (out / "partial").symlink_to(victim)
    with Dir.open(str(out)) as top:
        top.write_atomic("manifest.json", b"[]", 0o644)
        fd = top.create("partial")
        os.write(fd, b"new")
        os.close(fd)
    assert victim.read_bytes() == SECRET
    assert (out / "manifest.json").read_bytes() == b"[]"
    assert not (out / "manifest.json").is_symlink()
    assert (out / "partial").read_bytes() == b"new"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "partial"]


def test_a_failed_rename_names_what_it_would_have_replaced(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "busy").mkdir()
    (tmp_path / "target" / "busy" / "inside").write_bytes(b"")
    with Dir.open(str(tmp_path)) as top, Dir.open(str(tmp_path / "target")) as target:
        temp = top.stage("file", b"data", 0o600)
        with pytest.raises(OSError) as caught:
            top.rename(temp, target, "busy")
        assert caught.value.filename == f"{tmp_path}/target/busy"
        assert caught.value.filename2 == f"{tmp_path}/{temp}"
        top.discard(temp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
