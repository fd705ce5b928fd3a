"""What a failure means, decided once: ``apply`` acts by it, ``--check`` predicts by it.

Required steps stop dind (exit 125) when they fail; the others are best effort: a
warning, and the rest of that step is skipped, unless ``--strict``. One exception
takes priority: EPERM/EACCES on the first privileged call (mount, unshare) means
the container is not privileged, so every later one would fail too: fatal at once.

``walk`` runs a plan through an ``attempt`` function (``apply`` executes the
action, ``--check`` predicts its result) and yields what happened to each action.
"""

from __future__ import annotations

import errno
import os

from dind import steps
from dind.actions import CONFLICT, REFUSED, SATISFIED
from dind.actions import SKIPPED as PLANNED_SKIP
from dind.errors import SetupError
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dind.actions import Action
    from dind.plan import Plan

MOUNT_HINT = (
    "give the container CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN; "
    "dind --recipe RUNTIME prints all nested Docker needs)"
)
"""The least grant that lets dind mount: not --privileged (dind --check names it in the
runtime's own words)."""

DID = "did"
"""Executed (apply) or expected to work (check)."""
DONE = "done"
"""Satisfied already: nothing to do."""
LEFT = "conflict"
"""Something else is in the way: warned about and left alone."""
FAILED = "failed"
SKIPPED = "skipped"
"""After an earlier failure in the same best-effort step, or planned so (it cannot work at the
privilege found: not attempted)."""
NOT_REACHED = "not-reached"
"""After a fatal failure: dind stopped before."""

_HINTS = {
    errno.EPERM: MOUNT_HINT,
    errno.EACCES: MOUNT_HINT + " (or an AppArmor/SELinux profile forbids it)",
    errno.ENODEV: "this kernel does not support that filesystem type",
    errno.EBUSY: "the target is busy (for cgroup v1: that hierarchy exists with other options)",
    errno.EINVAL: "the kernel rejected these mount options",
    errno.ENOENT: "the path does not exist",
    errno.ELOOP: "a symlink is in the way: dind never mounts, creates or writes through a symlink",
}


def is_fatal(step: str, code: int | None, first_privileged: bool, strict: bool) -> bool:
    """The policy: does a failure of an action of ``step`` with errno ``code`` stop dind?"""
    unprivileged = first_privileged and code in (errno.EPERM, errno.EACCES)
    return step in steps.REQUIRED or strict or unprivileged


def explain(action: Action, err: OSError) -> SetupError:
    """One line: what was attempted, the errno, and what to do about it."""
    code = err.errno or 0
    name = errno.errorcode.get(code, str(code))
    hint = _HINTS.get(code, "")
    if code == errno.EROFS:
        path = str(err.filename or "")
        hint = (
            "/sys is read-only: " + MOUNT_HINT
            if path.startswith("/sys/")
            else "a read-only filesystem: choose a --cgroup-root on a writable one "
            "(e.g. under /run) or --skip cgroup-mounts"
        )
    where = f" ({err.filename})" if err.filename and err.filename not in action.describe() else ""
    return SetupError(
        f"{action.describe()}{where}: {os.strerror(code)} [{name}]" + (f": {hint}" if hint else ""),
        step=action.step,
        errno=code,
    )


class Result(Record):
    """What happened to one action: an outcome, and for a failure its error and whether fatal."""

    __slots__ = ("action", "error", "fatal", "first_privileged", "outcome")

    def __init__(
        self,
        action: Action,
        outcome: str,
        error: SetupError | None = None,
        fatal: bool = False,
        first_privileged: bool = False,
    ) -> None:
        self.action = action
        self.outcome = outcome
        self.error = error
        self.fatal = fatal
        self.first_privileged = first_privileged


def walk(
    plan: Plan,
    attempt: Callable[[Action], SetupError | None],
    strict: bool,
    starting: Callable[[str], None] | None = None,
) -> Iterator[Result]:
    """Each action's result in plan order, following the policy.

    ``attempt`` runs (or predicts) a pending action and returns its error, or None.
    ``starting`` is told each step's name when its first action comes up. After a
    fatal result, the remaining actions are ``not-reached``.
    """
    failed: set[str] = set()
    privileged_seen = False
    stopped = False
    started: set[str] = set()
    for action in plan.actions:
        if starting is not None and action.step not in started:
            started.add(action.step)
            starting(action.step)
        if stopped:
            yield Result(action, NOT_REACHED)
            continue
        if action.status == REFUSED:
            stopped = True
            yield Result(action, FAILED, SetupError(action.note, step=action.step), fatal=True)
            continue
        if action.step in failed or action.status == PLANNED_SKIP:
            yield Result(action, SKIPPED)
            continue
        if action.status == SATISFIED:
            yield Result(action, DONE)
            continue
        if action.status == CONFLICT:
            yield Result(action, LEFT)
            continue
        first = action.privileged and not privileged_seen
        privileged_seen = privileged_seen or action.privileged
        error = attempt(action)
        if error is None:
            yield Result(action, DID, first_privileged=first)
            continue
        fatal = is_fatal(action.step, error.errno, first, strict)
        if fatal:
            stopped = True
        else:
            failed.add(action.step)
        yield Result(action, FAILED, error, fatal, first)
