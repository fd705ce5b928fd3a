"""What the daemon steps decide from: the evidence read (raw) and the facts made of it (parsed).

Like the kernel steps' ``dind.facts``: ``DaemonEvidence`` is what
``dind.daemon.detect`` read, serialisable into a ``--check`` capture;
``daemon_facts`` is pure.
"""

from __future__ import annotations

from dind import steps
from dind.daemon.flags import Directives, config_path, parse_config, parse_flags
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dind.settings import Settings


class PidFile(Record):
    """What stands where a pid file is (its directory's symlinks resolved, never its own).

    ``kind`` is ``file`` (a regular file: ``pid`` is its PID when the content is a
    PID and nothing else, else None; ``comm`` that process's name, None when it is
    gone), ``symlink`` (``target`` says where to) or ``other`` (a directory, a FIFO...).
    """

    __slots__ = ("comm", "kind", "path", "pid", "target")

    def __init__(
        self,
        path: str,
        pid: int | None,
        comm: str | None,
        kind: str = "file",
        target: str | None = None,
    ) -> None:
        self.path = path
        self.pid = pid
        self.comm = comm
        self.kind = kind
        self.target = target

    def owner(self) -> str:
        """The daemon that writes it: ``containerd`` for containerd*.pid, else ``dockerd``."""
        base = self.path.rsplit("/", 1)[-1]
        return "containerd" if base.startswith("containerd") else "dockerd"

    @property
    def alive(self) -> bool:
        """Its process runs and is that daemon (a recycled PID after a restart is not)."""
        return self.comm is not None and self.comm.startswith(self.owner())


class Backend(Record):
    """One iptables backend as seen here: its tools, the rules it holds, whether NAT works."""

    __slots__ = ("nat", "rules", "tools")

    def __init__(self, tools: dict[str, str], rules: int | None, nat: str | None) -> None:
        self.tools = tools
        self.rules = rules
        self.nat = nat
        """None when NAT works, else the error the backend printed (or "not probed")."""


class DaemonEvidence(Record):
    """What detection read for the daemon steps, uninterpreted."""

    __slots__ = (
        "addresses",
        "config_error",
        "config_text",
        "data_root_fs",
        "dockerd_version",
        "hostnames",
        "iptables",
        "mtus",
        "pidfiles",
        "route",
        "tls_state",
    )

    def __init__(
        self,
        *,
        config_text: str | None = None,
        config_error: str | None = None,
        pidfiles: list[PidFile] | None = None,
        tls_state: str | None = None,
        addresses: list[str] | None = None,
        hostnames: list[str] | None = None,
        iptables: dict[str, Backend] | None = None,
        route: str | None = None,
        mtus: dict[str, int] | None = None,
        dockerd_version: str | None = None,
        data_root_fs: str | None = None,
    ) -> None:
        self.config_text = config_text
        self.config_error = config_error
        self.pidfiles = pidfiles or []
        self.tls_state = tls_state
        self.addresses = addresses or []
        self.hostnames = hostnames or []
        self.iptables = iptables or {}
        self.route = route
        self.mtus = mtus or {}
        self.dockerd_version = dockerd_version
        self.data_root_fs = data_root_fs

    def to_json(self) -> dict[str, object]:
        return {
            "config_text": self.config_text,
            "config_error": self.config_error,
            "pidfiles": [[p.path, p.pid, p.comm, p.kind, p.target] for p in self.pidfiles],
            "tls_state": self.tls_state,
            "addresses": self.addresses,
            "hostnames": self.hostnames,
            "iptables": {
                k: {"tools": b.tools, "rules": b.rules, "nat": b.nat}
                for k, b in self.iptables.items()
            },
            "route": self.route,
            "mtus": self.mtus,
            "dockerd_version": self.dockerd_version,
            "data_root_fs": self.data_root_fs,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> DaemonEvidence:
        """Read back what ``to_json`` wrote (a capture); absent keys read as unknown."""
        backends = {
            str(name): Backend(dict(b["tools"]), b["rules"], b["nat"])
            for name, b in (doc.get("iptables") or {}).items()
        }
        return cls(
            config_text=doc.get("config_text"),
            config_error=doc.get("config_error"),
            pidfiles=[PidFile(str(p[0]), *p[1:5]) for p in doc.get("pidfiles") or []],
            tls_state=doc.get("tls_state"),
            addresses=list(doc.get("addresses") or []),
            hostnames=list(doc.get("hostnames") or []),
            iptables=backends,
            route=doc.get("route"),
            mtus=dict(doc.get("mtus") or {}),
            dockerd_version=doc.get("dockerd_version"),
            data_root_fs=doc.get("data_root_fs"),
        )


class DaemonFacts(Record):
    """The evidence with dockerd's own directives parsed: what the daemon steps plan from."""

    __slots__ = ("config_path", "directives", "evidence")

    def __init__(self, evidence: DaemonEvidence, directives: Directives, config_path: str) -> None:
        self.evidence = evidence
        self.directives = directives
        self.config_path = config_path


def directives_of(settings: Settings, config_text: str | None) -> tuple[Directives, str]:
    """dockerd's directives from its arguments and its configuration file."""
    flags = parse_flags(settings.dockerd_argv[1:])
    path = config_path(flags)
    return Directives(flags, parse_config(config_text, path)), path


def daemon_facts(evidence: DaemonEvidence, settings: Settings) -> DaemonFacts:
    """Pure; raises UsageError/SetupError for dockerd flags or a daemon.json dind cannot read."""
    from dind.errors import SetupError

    directives, path = directives_of(settings, evidence.config_text)
    if evidence.config_error:
        raise SetupError(f"cannot read {path}: {evidence.config_error}", step=steps.HOSTS)
    return DaemonFacts(evidence, directives, path)
