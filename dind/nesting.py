"""cgroup v2 nesting, executed: move a root group's processes into a child, then delegate.

In unified mode a cgroup may either hold processes or delegate controllers to
children, not both ("no internal processes"). A container's root group holds
every process, so a nested dockerd cannot enable controllers for its containers
until those processes move into a child group; the kernel answers EBUSY until
then. Planning (``dind.cgroup2``) decides whether this runs; this does it.
"""

from __future__ import annotations

import errno
import os

from dind.errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.kernel import Kernel

ATTEMPTS = 10
"""EBUSY retries: processes may join the root group meanwhile (``docker exec``)."""
RETRY_DELAY = 0.01


class NestingError(SetupError):
    """Controllers could not be delegated; the message says which and why."""


def _move_all(kernel: Kernel, root: str, child: str) -> list[tuple[int, int]]:
    """Move each process of ``root`` into ``child``, one pid per write.

    Returns the (pid, errno) pairs that stayed; pid 0 is a process outside this
    PID namespace, which nothing inside it can move. A process that exited
    meanwhile (ESRCH) is simply gone.
    """
    stuck: list[tuple[int, int]] = []
    for word in kernel.read(f"{root}/cgroup.procs").split():
        pid = int(word)
        if pid == 0:
            stuck.append((0, errno.ESRCH))
            continue
        try:
            kernel.write(f"{child}/cgroup.procs", word)
        except OSError as err:
            if err.errno != errno.ESRCH:
                stuck.append((pid, err.errno or 0))
    return stuck


def _why_busy(stuck: list[tuple[int, int]]) -> str:
    if any(pid == 0 for pid, _ in stuck):
        return (
            "a process outside this PID namespace (pid 0 in cgroup.procs) sits in the "
            "root group and cannot be moved from here; give the container its own PID "
            "namespace (no --pid=host) or move that process out from the host"
        )
    if stuck:
        shown = ", ".join(f"{pid} ({errno.errorcode.get(e, e)})" for pid, e in stuck[:5])
        return f"these processes could not be moved: {shown}"
    return "processes kept joining the root group while dind moved them"


def nest(
    kernel: Kernel,
    root: str,
    group: str,
    step: str,
    attempts: int = ATTEMPTS,
    delay: float = RETRY_DELAY,
) -> None:
    """Make ``root`` delegate all its controllers, moving its processes into ``root/group``."""
    child = f"{root}/{group}"
    kind = kernel.kind(child)
    if kind is None:
        try:
            kernel.mkdir(child)
        except FileExistsError:
            kind = kernel.kind(child)  # made meanwhile: just as good if a directory
    if kind not in (None, "dir"):
        raise NestingError(f"{child} exists and is not a directory", step=step)
    controllers = kernel.read(f"{root}/cgroup.controllers").split()
    control = f"{root}/cgroup.subtree_control"
    stuck: list[tuple[int, int]] = []
    for attempt in range(attempts):
        stuck = _move_all(kernel, root, child)
        if not controllers:
            return
        try:
            kernel.write(control, " ".join(f"+{c}" for c in controllers))
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise _per_controller(kernel, control, controllers, err, step) from None
        else:
            return
        kernel.sleep(delay * (attempt + 1))
    raise NestingError(
        f"cannot enable {' '.join(controllers)} in {control}: still EBUSY after "
        f"{attempts} attempts: {_why_busy(stuck)}",
        step=step,
        errno=errno.EBUSY,
    )


def _per_controller(
    kernel: Kernel, control: str, controllers: list[str], err: OSError, step: str
) -> NestingError:
    """Find which controllers the kernel refuses, so the error can name them."""
    refused: list[str] = []
    code = err.errno
    for name in controllers:
        try:
            kernel.write(control, f"+{name}")
        except OSError as one:
            code = one.errno
            refused.append(f"{name} ({os.strerror(one.errno or 0)})")
    what = ", ".join(refused) if refused else f"{' '.join(controllers)} ({os.strerror(code or 0)})"
    return NestingError(f"cannot enable {what} in {control}", step=step, errno=code)
