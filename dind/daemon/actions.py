"""The daemon steps' own operations (the rest of the vocabulary is ``dind.actions``)."""

from __future__ import annotations

from dind.actions import PENDING, Action, MakeDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.kernel import Kernel


class MakeCertificates(Action):
    """docker:dind's TLS layout in ``certdir``: CA, server and client certificates."""

    __slots__ = ("certdir", "sans")
    kind = "certificates"

    def __init__(
        self,
        step: str,
        certdir: str,
        sans: tuple[str, ...],
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.certdir = certdir
        self.sans = sans

    def describe(self) -> str:
        return f"make TLS certificates in {self.certdir} (server SANs: {', '.join(self.sans)})"

    def details(self) -> dict[str, object]:
        return {"target": self.certdir, "sans": list(self.sans)}

    def execute(self, kernel: Kernel) -> str | None:
        from dind.daemon.tls import make_certificates

        return make_certificates(self.certdir, list(self.sans))

    def prepare(self) -> None:
        from dind.daemon.tls import preload

        preload()


class LinkTools(Action):
    """A directory of links to one backend's tools (``iptables`` → ``iptables-legacy``...)."""

    __slots__ = ("directory", "links")
    kind = "links"

    def __init__(
        self,
        step: str,
        directory: str,
        links: tuple[tuple[str, str], ...],
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.directory = directory
        self.links = links

    def describe(self) -> str:
        shown = ", ".join(f"{name} -> {target}" for name, target in self.links[:2])
        more = f", ... ({len(self.links)} links)" if len(self.links) > 2 else ""
        return f"ln -s in {self.directory}: {shown}{more}"

    def details(self) -> dict[str, object]:
        return {"target": self.directory, "links": dict(self.links)}

    def execute(self, kernel: Kernel) -> str | None:
        MakeDir(self.step, self.directory).execute(kernel)
        for name, target in self.links:
            kernel.symlink(target, f"{self.directory}/{name}")
        return None
