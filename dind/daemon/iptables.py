"""Which iptables backend the nested dockerd must use: the one the rules here already use.

A dockerd programming nf_tables while the network namespace's rules are in the
legacy tables (or the reverse) breaks NAT ("failed to create NAT chain DOCKER",
"table nat does not exist"). As kind's entrypoint and kubernetes-sigs'
iptables-wrappers do: count the rules each backend's own ``*-save`` prints,
whichever holds rules wins; with none, nf_tables if it works here, else legacy.
The choice is applied without changing the image: a directory of links to that
backend's tools, first on the PATH dind gives dockerd.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.daemon.facts import Backend

BACKENDS = ("nft", "legacy")
TOOLS = (
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
)
"""What dockerd runs (by PATH lookup); each has a ``-nft`` and a ``-legacy`` variant."""
NAMES = {"nft": "nf_tables", "legacy": "legacy"}


def variant(tool: str, backend: str) -> str:
    """``iptables-save`` of ``legacy`` is ``iptables-legacy-save``."""
    family, _, action = tool.partition("-")
    return f"{family}-{backend}" + (f"-{action}" if action else "")


def count_rules(save_output: str) -> int:
    """Rules in ``iptables-save`` output: the lines that append to a chain (``-A``)."""
    return sum(1 for line in save_output.splitlines() if line.startswith("-"))


def decide(choice: str, backends: dict[str, Backend], origin: str) -> tuple[str | None, str]:
    """The backend for dockerd, and why in words; None when neither works here."""
    if choice in BACKENDS:
        return choice, f"{origin}={choice}"
    nft, legacy = backends.get("nft"), backends.get("legacy")
    n_nft = nft.rules if nft is not None else None
    n_legacy = legacy.rules if legacy is not None else None
    if n_legacy and n_legacy > (n_nft or 0):
        return "legacy", f"{n_legacy} rule(s) in the legacy tables, {n_nft or 0} in nf_tables"
    if n_nft and n_nft >= (n_legacy or 0):
        return "nft", f"{n_nft} rule(s) in nf_tables, {n_legacy or 0} in the legacy tables"
    for name in BACKENDS:
        backend = backends.get(name)
        if backend is not None and backend.tools and backend.nat is None:
            return name, f"no rules in either backend; the kernel's {NAMES[name]} works here"
    return None, "no rules in either backend, and neither backend's NAT table works here"
