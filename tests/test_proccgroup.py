"""/proc/PID/cgroup parsing: real captures, documented layouts, the kernel's naming rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dind import proccgroup
from dind.errors import ParseError
from dind.proccgroup import Hierarchy
from tests.conftest import FIXTURES, fixture_text

CAPTURES = sorted(p.parent.name for p in FIXTURES.glob("*/proc_1_cgroup"))


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_parses(name: str) -> None:
    hierarchies = proccgroup.parse(fixture_text(name, "proc_1_cgroup"), name)
    assert hierarchies
    assert sum(h.unified for h in hierarchies) <= 1


def test_host_hybrid_lines_in_order() -> None:
    hs = proccgroup.parse(fixture_text("host-hybrid", "proc_1_cgroup"))
    assert [(h.hierarchy_id, h.options, h.directory) for h in hs] == [
        (9, "name=systemd", "systemd"),
        (8, "pids", "pids"),
        (7, "blkio", "blkio"),
        (6, "freezer", "freezer"),
        (5, "devices", "devices"),
        (4, "memory", "memory"),
        (3, "cpuset", "cpuset"),
        (2, "cpuacct", "cpuacct"),
        (1, "cpu", "cpu"),
        (0, "", ""),
    ]
    assert hs[0].name == "systemd" and hs[0].controllers == ()
    assert hs[-1].unified and hs[-1].path == "/"


def test_comounted_and_named_hierarchies() -> None:
    hs = proccgroup.parse(fixture_text("systemd-v1", "proc_1_cgroup"))
    by_id = {h.hierarchy_id: h for h in hs}
    assert by_id[3] == Hierarchy(
        hierarchy_id=3,
        options="net_cls,net_prio",
        controllers=("net_cls", "net_prio"),
        name=None,
        path="/",
        lineno=10,
    )
    assert by_id[2].controllers == ("cpu", "cpuacct") and by_id[2].path == "/init.scope"
    assert by_id[1].name == "systemd" and by_id[1].directory == "systemd"


def test_docker_paths_and_odd_bytes_in_the_path_are_kept() -> None:
    hs = proccgroup.parse(fixture_text("container-v1-hostns", "proc_1_cgroup"))
    assert all(h.path.startswith("/docker/3d04b60a") for h in hs)
    odd = "1:cpu:/a b:c\\d\t\udcff/../..\n0::/x:y\n"
    parsed = proccgroup.parse(odd)
    assert parsed[0].path == "/a b:c\\d\t\udcff/../.."
    assert parsed[1].path == "/x:y"


def test_name_with_controllers_keeps_the_list_as_directory() -> None:
    (h,) = proccgroup.parse("4:cpu,name=foo.bar-1:/\n")
    assert h.controllers == ("cpu",) and h.name == "foo.bar-1"
    assert h.directory == "cpu,name=foo.bar-1"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 0, "empty file"),
        ("1:cpu:/\ngarbage\n", 2, "hierarchy-ID:controller-list:path"),
        ("1:cpu\n", 1, "hierarchy-ID:controller-list:path"),
        ("x:cpu:/\n", 1, "not a number"),
        ("-1:cpu:/\n", 1, "not a number"),
        ("1:cpu:relative\n", 1, "does not start with /"),
        ("1:cpu:/\n1:memory:/\n", 2, "hierarchy 1 already listed on line 1"),
        ("1:cpu:/\n2:cpu,memory:/\n", 2, "'cpu' already listed on line 1"),
        ("0:cpu:/\n", 1, "cgroup2"),
        ("1::/\n", 1, "empty controller list"),
        ("1:cpu,,memory:/\n", 1, "empty controller name"),
        ("1:../../etc:/\n", 1, "is not [A-Za-z0-9_]+"),
        ("1:cpu/x:/\n", 1, "is not [A-Za-z0-9_]+"),
        ("1:name=..:/\n", 1, "outside the cgroup root"),
        ("1:name=.:/\n", 1, "outside the cgroup root"),
        ("1:name=:/\n", 1, "empty name= value"),
        ("1:name=a/b:/\n", 1, "is not [A-Za-z0-9_.-]+"),
        ("1:name=a b:/\n", 1, "is not [A-Za-z0-9_.-]+"),
        ("1:name=a,name=b:/\n", 1, "two name= values"),
        ("1:" + "c" * 65 + ":/\n", 1, "longer than 64"),
        ("1:name=" + "n" * 65 + ":/\n", 1, "longer than 64"),
        ("1:cpu\x00:/\n", 1, "NUL"),
        ("1:caf\u00e9:/\n", 1, "is not [A-Za-z0-9_]+"),
    ],
)
def test_bad_lines_are_errors_naming_file_and_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        proccgroup.parse(text, "/proc/1/cgroup")
    assert err.value.lineno == line
    assert reason in err.value.reason
    prefix = f"/proc/1/cgroup:{line}: " if line else "/proc/1/cgroup: "
    assert str(err.value).startswith(prefix)


def test_list_longer_than_a_directory_name_is_refused() -> None:
    names = ",".join(f"c{i:02d}" + "x" * 20 for i in range(12))
    with pytest.raises(ParseError, match="longer than 255"):
        proccgroup.parse(f"1:{names}:/\n")


@given(st.text())
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        hierarchies = proccgroup.parse(text, "fuzz")
    except ParseError as err:
        assert err.source == "fuzz"
    else:
        for h in hierarchies:
            d = h.directory
            assert h.unified or (d and "/" not in d and d not in (".", "..") and "\0" not in d)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.text(alphabet="abcn=,._-/", max_size=20),
            st.text(max_size=20),
        ),
        max_size=8,
    )
)
def test_line_shaped_input_never_yields_a_name_leaving_the_root(
    rows: list[tuple[int, str, str]],
) -> None:
    text = "".join(f"{i}:{c}:/{p}\n" for i, c, p in rows)
    try:
        hierarchies = proccgroup.parse(text, "fuzz")
    except ParseError:
        return
    for h in hierarchies:
        if not h.unified:
            assert "/" not in h.directory and h.directory not in ("", ".", "..")
