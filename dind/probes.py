"""Privilege probes that are not files: what ``--check`` asks the kernel (the reader calls them).

Each answer is a short word kept in ``Evidence.probes`` (and in captures): what the
kernel said, interpreted nowhere here.

- ``pivot_root``: runc enters every container's root with pivot_root(2). Called with
  NULL paths it fails before doing anything: EFAULT when it may be called, the filter's
  errno (EPERM under Docker's default profile) when a seccomp filter refuses it.
- ``/dev/net/tun``, ``/dev/fuse``: ``char MAJ:MIN``, ``missing`` or ``other``.
- ``cgroup_owner``: the owner of this container's cgroup as this process sees it (65534,
  the overflow UID, when its owner is not mapped into this user namespace).
- ``keyring``: runc joins a new session keyring at every container start; Docker's
  default seccomp profile and systemd-nspawn's filter deny the keyring calls, and runc
  then fails with "unable to join session keyring". Only the outer runtime can allow
  them, so ``--check`` asks. Joining changes the caller's keyrings: the call is made
  in a forked child (``in_child``), as the rootless user-namespace probe is.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from dind import paths
from dind.syscalls import fs_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "riscv64": 41,
    "ppc64le": 203,
    "s390x": 217,
    "armv7l": 218,
    "i686": 217,
}
"""pivot_root(2) by machine (``uname -m``)."""
OK = "ok"


def in_child(call: Callable[[], int]) -> str | None:
    """``ok`` or the errno name that ``call`` (returning 0 or an errno) met in a forked child,
    so that what it changes (keyrings, namespaces, credentials) never reaches this
    process; None when the child gave no answer, or none could be started (a pids limit):
    a probe that cannot run is unknown, never dind's failure."""
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:
        code: int | None = None  # no answer if anything but the kernel failed
        try:
            os.close(read_end)
            code = call()
        except OSError as err:
            code = err.errno or errno.EIO
        finally:
            if code is not None:
                os.write(write_end, code.to_bytes(4, "little"))
            os._exit(0)
    os.close(write_end)
    try:
        data = os.read(read_end, 4)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if len(data) != 4:
        return None
    code = int.from_bytes(data, "little")
    return OK if code == 0 else errno.errorcode.get(code, str(code))


KEYCTL_JOIN_SESSION_KEYRING = 1
SYS_KEYCTL = {
    "x86_64": 250,
    "aarch64": 219,
    "riscv64": 219,
    "ppc64le": 271,
    "s390x": 280,
    "armv7l": 311,
    "i686": 288,
}
"""keyctl(2) by machine (``uname -m``)."""


def session_keyring() -> str | None:
    """``ok`` or the errno name keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) met in a child;
    None where the call's number is not known."""
    number = SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return None

    def join() -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        result = libc.syscall(
            ctypes.c_long(number), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_void_p(None)
        )
        return 0 if result >= 0 else ctypes.get_errno()

    return in_child(join)


def pivot_root() -> str | None:
    """``ok`` when pivot_root may be called (the kernel answered EFAULT), else the errno name;
    None where the call's number is not known."""
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(ctypes.c_long(number), ctypes.c_void_p(None), ctypes.c_void_p(None))
    code = 0 if result >= 0 else ctypes.get_errno()
    if code in (0, errno.EFAULT):
        return OK
    return errno.errorcode.get(code, str(code))


def device(path: str) -> str:
    """``char MAJ:MIN`` for a character device at ``path``, ``missing``, or ``other``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return "missing"
    if not stat.S_ISCHR(st.st_mode):
        return "other"
    return f"char {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def cgroup_owner() -> str | None:
    """The UID owning this container's cgroup (v1: the memory hierarchy; v2: the root)."""
    for path in (f"{paths.SYS_FS_CGROUP}/memory", paths.SYS_FS_CGROUP):
        if fs_type(path) in ("cgroup", "cgroup2"):
            try:
                return str(os.stat(path).st_uid)
            except OSError:
                return None
    return None


def probe_all() -> dict[str, str | None]:
    """Every probe, by its key in ``Evidence.probes``."""
    return {
        "keyring": session_keyring(),
        "pivot_root": pivot_root(),
        paths.DEV_NET_TUN: device(paths.DEV_NET_TUN),
        paths.DEV_FUSE: device(paths.DEV_FUSE),
        "cgroup_owner": cgroup_owner(),
    }
