"""The interface apply acts through: the few operations a plan's actions need.

Only imported for type checking (``typing`` is not loaded at container start).
``dind.syscalls.LinuxKernel`` is the real one; the tests have a full fake that
records calls and fails on demand, and test the real one in namespaces.
"""

from __future__ import annotations

from typing import Protocol


class Kernel(Protocol):
    """Path-based operations; implementations never follow a symlink in ``path``."""

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...

    def umount(self, target: str) -> None: ...

    def unshare(self, flags: int) -> None: ...

    def mkdir(self, path: str, mode: int = 0o755) -> None: ...

    def symlink(self, link_target: str, path: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def kind(self, path: str) -> str | None: ...

    def read(self, path: str) -> str: ...

    def write(self, path: str, data: str) -> None: ...

    def sleep(self, seconds: float) -> None: ...
