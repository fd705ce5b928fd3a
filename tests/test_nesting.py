"""The cgroup v2 nesting algorithm against a cgroup2 root that enforces "no internal processes"."""

from __future__ import annotations

import errno

import pytest

from dind.kernel import Kernel
from dind.nesting import ATTEMPTS, NestingError
from dind.nesting import nest as nest_in
from tests.fakes import FakeCgroup2


def nest(kernel: Kernel, root: str, attempts: int = ATTEMPTS) -> None:
    nest_in(kernel, root, "init", "cgroup-nesting", attempts)


def test_moves_every_process_one_per_write_then_enables_all() -> None:
    cg = FakeCgroup2([1, 7, 42], ["cpu", "memory", "hugetlb"])
    nest(cg, "/cg")
    assert cg.root_procs == [] and cg.child_procs == [1, 7, 42]
    writes = [c for c in cg.calls if c[0] == "write"]
    assert writes == [
        ("write", "/cg/init/cgroup.procs", "1"),
        ("write", "/cg/init/cgroup.procs", "7"),
        ("write", "/cg/init/cgroup.procs", "42"),
        ("write", "/cg/cgroup.subtree_control", "+cpu +memory +hugetlb"),
    ]
    assert cg.subtree == ["cpu", "memory", "hugetlb"]
    assert ("mkdir", "/cg/init") in cg.calls


def test_processes_that_exit_meanwhile_are_fine() -> None:
    cg = FakeCgroup2([1, 5, 9], ["pids"], exited=frozenset({5}))
    nest(cg, "/cg")
    assert cg.child_procs == [1, 9] and cg.subtree == ["pids"]


def test_processes_arriving_meanwhile_are_retried_a_bounded_number_of_times() -> None:
    cg = FakeCgroup2([1], ["pids"], arrivals=[[100], [101]])
    nest(cg, "/cg")
    assert cg.child_procs == [1, 100, 101] and cg.subtree == ["pids"]
    assert sum(1 for c in cg.calls if c[0] == "sleep") == 2


def test_endless_arrivals_give_up_with_a_reason() -> None:
    cg = FakeCgroup2([1], ["pids"], arrivals=[[100 + i] for i in range(50)])
    with pytest.raises(NestingError) as err:
        nest(cg, "/cg", attempts=4)
    assert str(err.value) == (
        "cannot enable pids in /cg/cgroup.subtree_control: still EBUSY after 4 attempts: "
        "processes kept joining the root group while dind moved them"
    )
    assert err.value.errno == errno.EBUSY
    assert sum(1 for c in cg.calls if c[0] == "sleep") == 4


def test_pid_zero_outside_the_pid_namespace_is_explained() -> None:
    cg = FakeCgroup2([0, 1], ["hugetlb"])
    with pytest.raises(NestingError) as err:
        nest(cg, "/cg", attempts=3)
    message = str(err.value)
    assert message.startswith("cannot enable hugetlb in /cg/cgroup.subtree_control: still EBUSY")
    assert "outside this PID namespace (pid 0 in cgroup.procs)" in message
    assert cg.child_procs == [1]


def test_unmovable_processes_are_named() -> None:
    cg = FakeCgroup2([1, 33], ["memory"], unmovable=frozenset({33}))
    with pytest.raises(NestingError, match=r"could not be moved: 33 \(EINVAL\)"):
        nest(cg, "/cg", attempts=2)


def test_refused_controllers_are_named_one_by_one() -> None:
    cg = FakeCgroup2([1], ["cpu", "rdma", "memory"], refused=frozenset({"rdma"}))
    with pytest.raises(NestingError) as err:
        nest(cg, "/cg")
    assert str(err.value) == "cannot enable rdma (Invalid argument) in /cg/cgroup.subtree_control"
    assert cg.subtree == ["cpu", "memory"]  # the others were enabled on the way


def test_no_controllers_still_moves_processes() -> None:
    cg = FakeCgroup2([1, 2], [])
    nest(cg, "/cg")
    assert cg.child_procs == [1, 2]
    assert not [c for c in cg.calls if c[:2] == ("write", "/cg/cgroup.subtree_control")]


def test_existing_group_is_reused_but_a_file_in_its_place_is_an_error() -> None:
    cg = FakeCgroup2([1], ["pids"])
    cg.kinds["/cg/init"] = "dir"
    nest(cg, "/cg")
    assert ("mkdir", "/cg/init") not in cg.calls
    cg = FakeCgroup2([1], ["pids"])
    cg.kinds["/cg/init"] = "other"
    with pytest.raises(NestingError, match="exists and is not a directory"):
        nest(cg, "/cg")
