"""The start-up summary: what dind decided for the daemon it starts, in one line. Pure.

A CI job's service log shows dockerd's own lines; a user debugging a failed job
should not have to guess what dind chose. In dockerd mode and with
``--with-dockerd``, once set-up is done and before dockerd starts, dind says each
decision with its evidence in a few words: TLS, the iptables backend, the MTU, the
data root's filesystem, where nested cgroups land, and what planning added to
``Plan.decided`` (the privilege level, the rootless daemon). Everything here is
read off the plan, which decided it: nothing is decided twice. ``-q`` drops the line;
``--log-format json`` makes it one object with one field per decision.
"""

from __future__ import annotations

from dind import steps
from dind.actions import CONFLICT, PENDING, SATISFIED, Action, Decision, UnshareCgroup
from dind.daemon.plan import TLS_PORT
from dind.daemon.tls import MANAGED, NEW, USER_CA

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.plan import Plan

DOCKERD_DEFAULT = "dockerd's default"
LAYOUT_WORDS = {
    NEW: "a new CA and keys",
    MANAGED: "keys kept, certificates renewed",
    USER_CA: "the user's own CA, verified",
}
LABELS = {
    "tls": "TLS",
    "iptables": "iptables",
    "mtu": "MTU",
    "data_root": "data root",
    "nested_cgroups": "nested cgroups",
}
"""JSON field → its words in the text line; fields planning adds keep their own name."""


def _last(actions: list[Action], step: str) -> Action | None:
    found = [a for a in actions if a.step == step]
    return found[-1] if found else None


def _tls(action: Action) -> str:
    certdir = getattr(action, "certdir", None)
    if certdir is not None:
        state = action.note.removeprefix("layout: ")
        return f"on {TLS_PORT}, {certdir} ({LAYOUT_WORDS.get(state, state)})"
    return f"off ({action.note})"


def _iptables(action: Action) -> str:
    if isinstance(action, Decision):
        return f"{action.value or 'unchanged'} ({action.note})"
    backend, _, why = action.note.partition(": ")
    return f"{backend} ({why})" if why else action.note


def _mtu(action: Action) -> str:
    value = action.value if isinstance(action, Decision) else ""
    return f"{value or DOCKERD_DEFAULT} ({action.note})"


def _data_root(action: Action) -> str:
    """``ROOT on FS``, and why it was let be when that was not by its filesystem."""
    assert isinstance(action, Decision)
    root = action.text.removeprefix("data root ").removesuffix(" not on overlayfs")
    said = f"{root} on {action.value or 'an unknown filesystem'}"
    return said if action.note.startswith(f"{root} is on") else f"{said} ({action.note})"


def _nested_cgroups(actions: list[Action]) -> str:
    """Where nested containers' cgroups land, as cgroup-confine decided it."""
    confine = [a for a in actions if a.step == steps.CGROUP_CONFINE]
    parent = next((a for a in confine if isinstance(a, Decision)), None)
    if parent is not None:
        return f"inside (dockerd --cgroup-parent {parent.value})"
    unshare = next((a for a in confine if isinstance(a, UnshareCgroup)), None)
    if unshare is None:
        return f"not looked at (--skip {steps.CGROUP_CONFINE})"
    if unshare.status == PENDING:
        return f"inside (a cgroup namespace of dind's own: {unshare.note})"
    if unshare.status == SATISFIED:
        return f"inside ({unshare.note})"
    assert unshare.status == CONFLICT
    return f"maybe outside ({unshare.note})"


def decisions(plan: Plan) -> dict[str, str]:
    """Each decision for the daemon and its evidence, by JSON field name, in line order."""
    found: dict[str, str] = {}
    actions = plan.actions
    for step, field, word in (
        (steps.TLS, "tls", _tls),
        (steps.IPTABLES, "iptables", _iptables),
        (steps.MTU, "mtu", _mtu),
        (steps.DATA_ROOT, "data_root", _data_root),
    ):
        action = _last(actions, step)
        found[field] = word(action) if action is not None else f"not decided (--skip {step})"
    found["nested_cgroups"] = _nested_cgroups(actions)
    found.update(plan.decided)
    return found


def line(decided: dict[str, str]) -> str:
    """``dockerd: TLS ...; iptables ...; ...``: the text form of ``decisions``."""
    parts = [
        f"{LABELS.get(field, field.replace('_', ' '))} {said}" for field, said in decided.items()
    ]
    return "dockerd: " + "; ".join(parts)
