"""``--check --rootless``: will the rootless nested daemon work here, and with limits?

The rootless area of the report, judged by the same verdicts the real run refuses
by (``dind.rootless.facts``) and the same plan it makes (the limits decision of
``cgroup-delegate``): user namespaces, the user and its subordinate ranges,
``newuidmap``/``newgidmap`` (setuid root versus file capabilities, under
``no_new_privs``), ``/dev/net/tun``, a fully visible /proc, the tools, cgroup
delegation. Each missing piece names the outer option that gives it (``NEEDS``,
also the recipe's source).

The fixes are dind.requirements' grants in the words of the runtime seen here, and
``recipe()`` is ``dind --recipe docker --rootless``'s line: one source for both.
"""

from __future__ import annotations

from dind import paths, requirements, steps
from dind.actions import Decision
from dind.errors import DindError
from dind.rootless import facts as rf

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.check.env import Env
    from dind.check.report import Findings
    from dind.settings import Settings

AREA = "rootless"


def recipe() -> list[str]:
    """The least outer options (``docker run``) of the rootless daemon, as
    ``dind --recipe docker --rootless`` prints them (without ``-e DIND_ROOTLESS=1``)."""
    return [r.option(requirements.DOCKER) or r.what for r in requirements.ROOTLESS]


def _judge(found: Findings, verdict: rf.Verdict, runtime: str) -> str:
    if verdict.ok is False:
        fix = requirements.fix(runtime, (verdict.key,)) if verdict.key else verdict.fix
        found.blocker(verdict.name, verdict.value, verdict.why, fix)
    elif verdict.ok is None:
        found.warning(verdict.name, verdict.value, verdict.why, verdict.fix or "see the message")
    else:
        found.ok(verdict.name, verdict.value, verdict.why)
    return verdict.value


def _limits(env: Env, settings: Settings) -> tuple[str, str, list[str] | None]:
    """The plan a real ``dind dockerd`` would make here: its limits decision and command."""
    from dind.facts import from_evidence
    from dind.plan import make_plan

    daemon = settings.replace(command=["dockerd", *settings.dockerd_args], dockerd_args=())
    try:
        plan = make_plan(from_evidence(env.snap.evidence, daemon, everything=True), daemon)
    except DindError as err:
        return "unknown", str(err), None
    delegate = [a for a in plan.actions if a.step == steps.CGROUP_DELEGATE]
    if not delegate:
        why = "not planned" if plan.refused is None else "the daemon cannot start here (a blocker)"
        return "unknown", why, None
    action = delegate[0]
    limits = action.value if isinstance(action, Decision) else "on"
    return limits, action.note, plan.command or plan.dockerd


def rootless_area(env: Env, found: Findings, settings: Settings) -> dict[str, object] | None:
    """The section (None unless ``--rootless``), and its findings in ``found``."""
    ev = env.snap.evidence.rootless
    if ev is None or not settings.rootless:
        return None
    from dind import userdb

    user, problem = rf.find_user(ev, settings.rootless_user)
    section: dict[str, object] = {
        "user": None if user is None else user.name,
        "uid": None if user is None else user.uid,
        "started_as": "root" if ev.euid == 0 else f"uid {ev.euid}",
        "recipe": recipe(),
    }
    if user is None:
        found.blocker(
            "user", settings.rootless_user, problem, "DIND_ROOTLESS_USER=an existing user"
        )
        return section
    found.ok(
        "user", f"{user.name} (uid {user.uid})", f"the daemon runs as this user; home {user.home}"
    )
    for path, key in ((paths.SUBUID, "subuid"), (paths.SUBGID, "subgid")):
        ranges, why = rf.subordinate(ev, user, path)
        section[key] = [str(r) for r in ranges]
        if why:
            found.blocker(
                key,
                "none",
                f"{why}: rootlesskit maps them into its user namespace",
                f"a line {user.name}:100000:65536 in {path} (the image has one)",
            )
        else:
            found.ok(key, ", ".join(map(str, ranges)), f"subordinate IDs of {user.name}")
    for name in rf.HELPERS:
        section[name] = _judge(found, rf.helper_verdict(ev, name), env.runtime)
    section["user_namespaces"] = _judge(found, rf.userns_verdict(ev), env.runtime)
    groups = userdb.supplementary_gids(ev.files.get(paths.GROUP, ""), user)
    section["tun"] = _judge(found, rf.tun_verdict(ev, user, groups), env.runtime)
    section["proc"] = _judge(found, rf.proc_verdict(env.mounts), env.runtime)
    for tool in ("rootlesskit", "slirp4netns"):
        if ev.tools.get(tool) is None:
            found.blocker(tool, "not found", f"{tool} is not on PATH", "apt-get install " + tool)
    limits, why, command = _limits(env, settings)
    section["limits"] = limits
    section["limits_why"] = why
    section["dockerd"] = command
    if limits == "on":
        found.ok("limits", "on", why)
    elif limits == "off":
        found.warning(
            "limits",
            "off",
            f"{why}: docker run --memory, --cpus and --pids-limit are discarded for nested "
            "containers",
            "a cgroup v2 host, with dind started as root in a privileged container "
            "(--privileged --cgroupns private): dind delegates a subtree to the user",
        )
    elif plan_known(why):
        found.warning("limits", "unknown", why, "see the message")
    return section


def plan_known(why: str) -> bool:
    """Whether an unknown limits decision is worth its own finding (not when a blocker
    already stops the daemon)."""
    return not why.startswith("the daemon cannot start")
