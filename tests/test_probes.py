"""dind.probes.in_child: a probe's answer comes from a forked child, whose changes stay there.

The probes themselves meet seccomp filters in the end-to-end tests (Docker's default
profile: keyring EPERM); here they run for real on this machine, which filters nothing.
"""

from __future__ import annotations

import errno
import os

import pytest

from dind.probes import OK, in_child, session_keyring
from dind.rootless.detect import probe_userns


def test_the_answer_is_ok_or_the_errno_name() -> None:
    assert in_child(lambda: 0) == OK
    assert in_child(lambda: errno.ENOSYS) == "ENOSYS"


def test_an_oserror_in_the_child_is_its_errno() -> None:
    def refused() -> int:
        raise PermissionError(errno.EPERM, "refused")

    assert in_child(refused) == "EPERM"


def test_anything_else_failing_is_no_answer() -> None:
    def broken() -> int:
        raise KeyError("not the kernel")

    assert in_child(broken) is None


def test_what_the_child_changes_stays_in_the_child() -> None:
    before = os.umask(0o022)
    os.umask(before)

    def change() -> int:
        os.umask(0o077)
        return 0

    assert in_child(change) == OK
    assert os.umask(before) == before


def test_the_real_probes_on_this_machine() -> None:
    """No seccomp filter here and user namespaces on: both calls are allowed."""
    assert session_keyring() == OK
    assert probe_userns(None, ()) == OK


def test_a_child_that_cannot_be_started_is_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """fork(2) refused (EAGAIN under a pids limit): unknown, and no descriptor left open."""

    def refused() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", refused)
    assert in_child(lambda: 0) is None
    assert len(os.listdir("/proc/self/fd")) == before
