"""mountinfo parsing on real captures, escapes, stacking, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dind import mountinfo
from dind.errors import ParseError
from tests.conftest import FIXTURES, fixture_text

CAPTURES = sorted(p.parent.name for p in FIXTURES.glob("*/mountinfo"))


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_parses_line_for_line(name: str) -> None:
    text = fixture_text(name, "mountinfo")
    mounts = mountinfo.parse(text, name)
    assert len(mounts) == len(text.strip("\n").split("\n"))
    assert all(m.mountpoint.startswith("/") for m in mounts)


def test_host_capture_entry_is_decoded_field_by_field() -> None:
    mounts = mountinfo.parse(fixture_text("host-hybrid", "mountinfo"))
    unified = next(m for m in mounts if m.mountpoint == "/sys/fs/cgroup/unified")
    assert unified == mountinfo.MountEntry(
        mount_id=41,
        parent_id=31,
        major=0,
        minor=38,
        root="/",
        mountpoint="/sys/fs/cgroup/unified",
        mount_options="rw,relatime",
        optional=(),
        fstype="cgroup2",
        source="cgroup2",
        super_options="rw",
    )
    docker = next(m for m in mounts if m.mountpoint == "/var/lib/docker")
    assert docker.optional == ("shared:1",)
    assert docker.shared and docker.propagation == "shared"
    assert not unified.shared and unified.propagation == "private"


def test_container_capture_has_slave_root_and_bind_roots() -> None:
    table = mountinfo.MountTable(mountinfo.parse(fixture_text("container-v1-hostns", "mountinfo")))
    root = table.at("/")
    assert root is not None and root.propagation == "slave" and root.fstype == "overlay"
    cpu = table.at("/sys/fs/cgroup/cpu")
    assert cpu is not None and cpu.root.startswith("/docker/")
    assert cpu.super_options == "rw,cpu"


def test_escaped_mountpoints_decode_to_the_real_names() -> None:
    mounts = mountinfo.parse(fixture_text("escaped-mountpoints", "mountinfo"))
    base = "/run/dind-escape-cap/"
    names = {m.mountpoint[len(base) :] for m in mounts if m.mountpoint.startswith(base)}
    raw = b"raw\xffbyte".decode("utf-8", "surrogateescape")
    assert names == {"with space", "tab\there", "back\\slash", "new\nline", "café", raw}
    spaced = next(m for m in mounts if m.mountpoint == base + "with space")
    assert spaced.source == "src with space"


def test_stacked_mount_on_top_is_the_visible_one() -> None:
    table = mountinfo.MountTable(mountinfo.parse(fixture_text("escaped-mountpoints", "mountinfo")))
    top = table.at("/run/dind-escape-cap/tab\there")
    assert top is not None and top.mount_id == 94  # the bind stacked on mount 92
    host = mountinfo.MountTable(mountinfo.parse(fixture_text("host-hybrid", "mountinfo")))
    pts = host.at("/dev/pts")
    assert pts is not None and pts.mount_id == 29  # 29 sits on 26


def test_covering_finds_the_longest_mounted_prefix() -> None:
    table = mountinfo.MountTable(mountinfo.parse(fixture_text("host-hybrid", "mountinfo")))
    m = table.covering("/sys/fs/cgroup/memory/some/group")
    assert m is not None and m.mountpoint == "/sys/fs/cgroup/memory"
    root = table.covering("/etc/passwd")
    assert root is not None and root.mountpoint == "/"
    assert table.at("/sys/fs/cgroup/memory/some") is None


def test_unescape_leaves_non_escapes_alone() -> None:
    assert mountinfo.unescape(r"a\040b") == "a b"
    assert mountinfo.unescape(r"a\09b") == r"a\09b"  # 9 is not octal
    assert mountinfo.unescape("trailing\\") == "trailing\\"
    assert mountinfo.unescape(r"\134040") == "\\040"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("1 2 0:3 / / rw - ext4 /dev/sda1 rw\n2 1 0:4 / /x rw ext4 src rw\n", "separator"),
        ("1 2 0:3 / / rw - ext4 /dev/sda1\n", "number of fields"),
        ("1 2 0:3 / / rw - ext4 /dev/sda1 rw extra\n", "number of fields"),
        ("x 2 0:3 / / rw - ext4 /dev/sda1 rw\n", "mount ID"),
        ("1 2 03 / / rw - ext4 /dev/sda1 rw\n", "major:minor"),
        ("1 2 0:3 / relative rw - ext4 /dev/sda1 rw\n", "absolute"),
        ("1 2 0:3 / / rw - ext4 /dev/sda1 rw\x00\n", "NUL"),
        ("1 2 0:3 / /" + "a" * 70000 + " rw - ext4 s rw\n", "longer than"),
    ],
)
def test_malformed_lines_name_file_and_line(text: str, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        mountinfo.parse(text, "captured/mountinfo")
    assert reason in str(err.value)
    assert str(err.value).startswith("captured/mountinfo")
    if text.strip() and "separator" in reason:
        assert err.value.lineno == 2


@given(st.text())
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        result = mountinfo.parse(text, "fuzz")
    except ParseError as err:
        assert err.source == "fuzz"
    else:
        assert all(isinstance(m, mountinfo.MountEntry) for m in result)


@given(st.lists(st.text(alphabet=" \t\n\\-/0123456789:abc", max_size=40), max_size=12))
def test_field_shaped_noise_parses_or_raises_parse_error(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        mounts = mountinfo.parse(text, "fuzz")
    except ParseError as err:
        assert err.source == "fuzz"
    else:
        assert all(m.mountpoint.startswith("/") for m in mounts)


def test_covering_a_relative_path_is_none_not_a_hang() -> None:
    """Found by fuzzing: ``rsplit`` never shortens a path without "/"."""
    table = mountinfo.MountTable(mountinfo.parse(fixture_text("host-hybrid", "mountinfo")))
    assert table.covering("abc") is None
    assert table.covering("/no/such/dir") is table.at("/")
