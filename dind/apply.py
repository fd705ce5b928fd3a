"""Applying a plan: run pending actions in order, with the step's failure policy.

``cgroup-mounts`` is required: its failure stops dind. The other steps are best
effort (a warning, the rest of that step skipped) unless ``--strict``. One
exception: EPERM/EACCES on the very first mount means the container is not
privileged, so every later mount would fail too: that is fatal at once.
"""

from __future__ import annotations

import errno
import os

from dind.actions import CONFLICT, SATISFIED, Mount, Propagation
from dind.errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.actions import Action
    from dind.log import Log
    from dind.plan import Plan
    from dind.syscalls import Kernel

REQUIRED_STEPS = frozenset({"cgroup-mounts"})
PRIVILEGED_HINT = "run the container with --privileged"

_HINTS = {
    errno.EPERM: PRIVILEGED_HINT,
    errno.EACCES: PRIVILEGED_HINT + " (or an AppArmor/SELinux profile forbids it)",
    errno.ENODEV: "this kernel does not support that filesystem type",
    errno.EBUSY: "the target is busy (for cgroup v1: that hierarchy exists with other options)",
    errno.EINVAL: "the kernel rejected these mount options",
    errno.ENOENT: "the path does not exist",
}


def explain(action: Action, err: OSError) -> SetupError:
    """One line: what was attempted, the errno, and what to do about it."""
    code = err.errno or 0
    name = errno.errorcode.get(code, str(code))
    hint = _HINTS.get(code, "")
    if code == errno.EROFS:
        path = err.filename or ""
        hint = (
            "/sys is read-only: " + PRIVILEGED_HINT
            if str(path).startswith("/sys/")
            else "a read-only filesystem: choose a --cgroup-root on a writable one "
            "(e.g. under /run) or --skip cgroup-mounts"
        )
    where = f" ({err.filename})" if err.filename and err.filename not in action.describe() else ""
    return SetupError(
        f"{action.describe()}{where}: {os.strerror(code)} [{name}]" + (f": {hint}" if hint else ""),
        step=action.step,
        errno=code,
    )


def apply(plan: Plan, kernel: Kernel, log: Log, strict: bool = False) -> None:
    """Execute the plan's pending actions; raise SetupError when dind must stop."""
    failed: set[str] = set()
    applied: dict[str, int] = {}
    mounted = False
    warned: set[str] = set()
    for action in plan.actions:
        fields = action.fields()
        if action.step not in warned:
            warned.add(action.step)
            for step, warning in plan.warnings:
                if step == action.step:
                    log.warning(warning, step=step)
        if action.step in failed:
            log.debug(f"skipped after an earlier failure: {action.describe()}", **fields)
            continue
        if action.status == SATISFIED:
            note = f" ({action.note})" if action.note else ""
            log.debug(f"already done: {action.describe()}{note}", **fields)
            continue
        if action.status == CONFLICT:
            log.warning(f"not done: {action.describe()}: {action.note}", **fields)
            continue
        first_mount = not mounted and isinstance(action, Mount | Propagation)
        mounted = mounted or first_mount
        try:
            action.execute(kernel)
        except OSError as err:
            error = explain(action, err)
        except SetupError as err:
            error = err
        else:
            log.info(action.describe(), **fields)
            applied[action.step] = applied.get(action.step, 0) + 1
            continue
        privileged = first_mount and error.errno in (errno.EPERM, errno.EACCES)
        if action.step in REQUIRED_STEPS or strict or privileged:
            done = applied.get(action.step, 0)
            if done:
                # Say so rather than leave a half-done step unmentioned.
                error.args = (f"{error} ({done} earlier action(s) of {action.step} stay applied)",)
            raise error
        log.warning(
            f"{error} (best effort, continuing; --strict makes this fatal)",
            **fields,
            errno=error.errno,
        )
        failed.add(action.step)
