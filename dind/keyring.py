"""Can this process join a new session keyring? runc does at every container start.

systemd-nspawn's default seccomp filter (and docker's default profile) deny the
keyring calls: runc then fails with "unable to join session keyring". Only the
outer runtime can allow them, so ``--check`` probes it and names that runtime's
option. The probe runs in a forked child: joining changes the caller's keyrings.
"""

from __future__ import annotations

import ctypes
import os

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
"""keyctl(2) by machine (``uname -m``); the numbers differ between architectures."""


def _join() -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) in this process: 0 or the errno."""
    number = SYS_KEYCTL[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(
        ctypes.c_long(number), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_void_p(None)
    )
    return 0 if result >= 0 else ctypes.get_errno()


def probe_session_keyring() -> str | None:
    """``ok``, the errno name the kernel answered, or None when it cannot be probed here."""
    if os.uname().machine not in SYS_KEYCTL:
        return None
    from dind.probes import in_child

    return in_child(_join)
