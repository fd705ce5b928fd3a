"""dind's plan for the snapshot, and the outcome this environment predicts for each action.

The plan is ``make_plan``'s, from ``Facts`` built the way ``dind.detect`` builds them,
so it is the plan ``--dry-run`` prints. Outcomes follow apply's policy:
``cgroup-mounts`` is required, the other steps are best effort unless ``--strict``,
a best-effort failure skips the rest of its step, and EPERM/EACCES on the first
mount stops dind at once (it takes it for an unprivileged container).
"""

from __future__ import annotations

import posixpath

from dind import detect
from dind.actions import (
    CONFLICT,
    SATISFIED,
    Action,
    MakeDir,
    Mount,
    NestCgroup2,
    Propagation,
    SetEnv,
    Symlink,
)
from dind.check import procfs
from dind.check.env import Env, denies_mount
from dind.check.report import Findings
from dind.check.snapshot import SYS_FS_CGROUP, Snapshot
from dind.errors import DindError
from dind.plan import Facts, Plan, make_plan

WILL = "will-do"
DONE = "done"
FAILS = "fails"
MAY_FAIL = "may-fail"
NOT_DONE = "conflict"
SKIPPED = "skipped"
NOT_REACHED = "not-reached"
OUTCOMES = (WILL, DONE, FAILS, MAY_FAIL, NOT_DONE, SKIPPED, NOT_REACHED)

PRIVILEGED = "run the container with --privileged"
ALL_MOUNT_STEPS = ("securityfs", "tmp", "cgroup-mounts", "rshared")
CONSEQUENCE = {
    "securityfs": "nested containers get no AppArmor profile",
    "tmp": "/tmp stays on the container's root filesystem",
    "cgroup-nesting": "nested containers get no cgroup v2 controllers (no resource limits)",
    "rshared": "rshared volume mounts fail in nested containers",
}


def facts_from(snap: Snapshot, env: Env, skip: frozenset[str]) -> Facts:
    """The ``Facts`` a real run would plan with, by dind.detect's own rules."""
    assert env.hierarchies is not None and env.mounts is not None
    return detect.facts_from(
        skip,
        hierarchies=env.hierarchies,
        mounts=env.mounts,
        proc_cgroup=snap.proc_cgroup_source,
        sys_fs_cgroup=env.sys_fs_cgroup,
        controllers=snap.text(f"{SYS_FS_CGROUP}/cgroup.controllers"),
        subtree=snap.text(f"{SYS_FS_CGROUP}/cgroup.subtree_control"),
        cgroup_root=snap.cgroup_root,
        root_entries=snap.root_entries,
        securityfs_dir=snap.securityfs_dir,
        tmp_entries=snap.tmp_entries,
        container=snap.container,
    )


class Outcome:
    """The expected result of one action: an outcome word, the errno name, and why.

    ``everywhere`` marks a failure every mount would share (no privilege to mount at
    all), which skipping this one step cannot avoid; ``fix`` replaces the usual
    advice (--privileged) when it would not help.
    """

    __slots__ = ("errno", "everywhere", "fix", "outcome", "why")

    def __init__(
        self,
        outcome: str,
        errno: str | None = None,
        why: str = "",
        everywhere: bool = False,
        fix: str = "",
    ) -> None:
        self.outcome = outcome
        self.errno = errno
        self.why = why
        self.everywhere = everywhere
        self.fix = fix


def _writable_parent(snap: Snapshot, path: str) -> bool | None:
    """access(W_OK) of the nearest probed directory above ``path``."""
    probe = posixpath.dirname(path)
    while probe not in snap.writable:
        if probe == "/":
            return None
        probe = posixpath.dirname(probe)
    return snap.writable[probe]


def _mount(action: Mount | Propagation, env: Env, fresh: list[str]) -> Outcome:
    can, why = env.can_mount()
    if can is False:
        return Outcome(FAILS, "EPERM", why, everywhere=True)
    if denies_mount(env.apparmor_profile):
        profile = env.apparmor_profile
        return Outcome(FAILS, "EACCES", f"the AppArmor profile {profile} denies it", True)
    fstype = action.fstype if isinstance(action, Mount) else None
    if fstype is not None and env.filesystems is not None and fstype not in env.filesystems:
        return Outcome(FAILS, "ENODEV", f"the kernel has no {fstype} (/proc/filesystems)")
    if fstype == "securityfs" and env.user_ns:
        return Outcome(FAILS, "EPERM", "securityfs cannot be mounted in a user namespace")
    owner = env.owner("cgroup")
    if fstype in ("cgroup", "cgroup2") and env.user_ns and owner == "ancestor":
        return Outcome(FAILS, "EPERM", "the cgroup namespace belongs to an ancestor user namespace")
    if can is None:
        return Outcome(MAY_FAIL, None, why)
    if fstype in ("cgroup", "cgroup2") and env.user_ns and owner is None:
        return Outcome(MAY_FAIL, None, "the owner of the cgroup namespace is unknown")
    if fstype == "tmpfs":
        fresh.append(action.target)
    return Outcome(WILL)


def _path(action: MakeDir | Symlink, env: Env, fresh: list[str]) -> Outcome:
    path = action.path
    if any(path.startswith(t + "/") for t in fresh):
        return Outcome(WILL)  # inside a tmpfs this plan mounts first
    parent = posixpath.dirname(path)
    writable = _writable_parent(env.snap, path)
    if writable is None:
        return Outcome(MAY_FAIL, None, f"whether {parent} is writable is unknown")
    if writable:
        return Outcome(WILL)
    covering = None if env.mounts is None else env.mounts.covering(parent)
    fix = "choose a writable --cgroup-root (under a tmpfs, say), or a writable root filesystem"
    if covering is not None and "ro" in covering.mount_options.split(","):
        return Outcome(FAILS, "EROFS", f"{parent} is on a read-only mount", fix=fix)
    return Outcome(FAILS, "EACCES", f"{parent} is not writable", fix=fix)


def _nest(action: NestCgroup2, env: Env) -> Outcome:
    if env.snap.writable.get(action.path) is False:
        return Outcome(FAILS, "EROFS", f"{action.path} is read-only", fix=PRIVILEGED)
    procs = procfs.words(env.snap.text(f"{action.path}/cgroup.procs"))
    outside = procs.count("0")
    if outside and action.controllers != ():
        return Outcome(
            FAILS,
            "EBUSY",
            f"{outside} process(es) outside this PID namespace (pid 0 in cgroup.procs) "
            "sit in the root group and cannot be moved from here",
        )
    whose = "of the host's root group " if env.cgroupns == "host" else ""
    return Outcome(WILL, None, f"moves {len(procs)} process(es) {whose}into {action.group}/")


def predict(action: Action, env: Env, fresh: list[str]) -> Outcome:
    """The expected result of a pending action; ``fresh`` collects tmpfs mounted before it."""
    if isinstance(action, Mount | Propagation):
        return _mount(action, env, fresh)
    if isinstance(action, MakeDir | Symlink):
        return _path(action, env, fresh)
    if isinstance(action, NestCgroup2):
        return _nest(action, env)
    if isinstance(action, SetEnv):
        return Outcome(WILL)
    return Outcome(MAY_FAIL, None, f"no prediction for {action.kind} actions")


def _judge(
    action: Action, result: Outcome, first_mount: bool, strict: bool, found: Findings
) -> bool:
    """Add the finding for a failing action; True when dind would stop there (exit 125)."""
    from dind.apply import REQUIRED_STEPS

    privileged = first_mount and result.errno in ("EPERM", "EACCES")
    required = action.step in REQUIRED_STEPS
    what = f"{action.describe()}: {result.errno or 'may fail'}: {result.why}"
    if result.outcome == FAILS and (required or strict or privileged):
        if required:
            meaning = "a required step fails: dind stops (exit 125)"
        elif privileged:
            meaning = (
                "EPERM/EACCES on the first mount: dind takes it for an unprivileged "
                "container and stops (exit 125)"
            )
        else:
            meaning = "--strict makes this failure fatal: dind stops (exit 125)"
        fix = result.fix or PRIVILEGED
        if not required and not result.everywhere:
            fix = f"--skip {action.step}, or {fix}"
        found.blocker(action.step, what, meaning, fix)
        return True
    consequence = CONSEQUENCE.get(action.step, "")
    if result.outcome == MAY_FAIL:
        stops = required or strict or first_mount
        found.warning(
            action.step,
            what,
            "this could not be predicted; if it fails, "
            + ("dind stops (exit 125)" if stops else f"dind warns and goes on: {consequence}"),
            "run the check where /proc and /sys are readable"
            + ("" if required else f", or --skip {action.step}"),
        )
        return False
    found.warning(
        action.step,
        what,
        f"best effort: dind warns and goes on; {consequence}",
        f"--skip {action.step} if that is acceptable",
    )
    return False


def plan_area(
    env: Env, found: Findings, skip: frozenset[str], strict: bool
) -> tuple[list[dict[str, object]] | None, Plan | None]:
    """The plan's rows (action fields, ``describe``, ``outcome``, ``why``) and its findings."""
    if env.hierarchies is None or env.mounts is None:
        return None, None  # a blocker of the cgroup or mounts area: nothing to plan from
    try:
        plan = make_plan(facts_from(env.snap, env, skip), skip)
    except DindError as err:
        found.blocker(
            "plan",
            "cannot be made",
            f"{err}: dind would stop before changing anything (exit 125)",
            "see the message; --cgroup-root chooses another cgroup root",
        )
        return None, None
    for step, warning in plan.warnings:
        found.warning(
            f"{step}-warning",
            warning,
            "dind warns about this when the step starts",
            f"--skip {step} avoids it",
        )

    rows: list[dict[str, object]] = []
    failed: set[str] = set()
    fresh: list[str] = []
    mounted = False
    stopped = ""
    reported: set[str] = set()
    for action in plan.actions:
        if stopped:
            result = Outcome(NOT_REACHED, None, f"dind stops at {stopped}")
        elif action.step in failed:
            result = Outcome(SKIPPED, None, "after an earlier failure in this step")
        elif action.status == SATISFIED:
            result = Outcome(DONE, None, action.note)
        elif action.status == CONFLICT:
            result = Outcome(NOT_DONE, None, action.note)
            quiet = Findings(found.area) if action.step in reported else found
            reported.add(action.step)
            quiet.warning(
                action.step,
                f"not done: {action.describe()}",
                f"{action.note}; dind warns and leaves it",
                "remove what is in the way, or choose another --cgroup-root",
            )
        else:
            first_mount = not mounted and isinstance(action, Mount | Propagation)
            mounted = mounted or first_mount
            result = predict(action, env, fresh)
            if result.outcome in (FAILS, MAY_FAIL):
                # One finding per step (its first doubtful action): the rows show them all.
                quiet = Findings(found.area) if action.step in reported else found
                reported.add(action.step)
                fatal = _judge(action, result, first_mount, strict, quiet)
                if fatal:
                    stopped = action.step
                elif result.outcome == FAILS:
                    failed.add(action.step)
        row = action.fields()
        row["describe"] = action.describe()
        row["outcome"] = result.outcome
        if result.errno:
            row["errno"] = result.errno
        row["why"] = result.why
        rows.append(row)
    if not found.items:
        todo = sum(r["outcome"] == WILL for r in rows)
        done = sum(r["outcome"] == DONE for r in rows)
        found.ok("plan", f"{todo} to do, {done} already done", "every action is expected to work")
    return rows, plan
