"""dind's plan for the snapshot, and the outcome this environment predicts for each action.

The plan is ``make_plan``'s, from the ``Facts`` that ``dind.facts.from_evidence``
makes of the snapshot's evidence: the plan ``--dry-run`` prints. Its actions go
through ``dind.policy.walk``, the walk ``apply`` acts by, with a prediction in
place of each execution: what a failure means here is decided by the same code.
"""

from __future__ import annotations

import errno as errnos
import posixpath

from dind import procfs, requirements, steps
from dind.actions import SKIPPED as PLANNED_SKIP
from dind.actions import (
    Action,
    Bind,
    Decision,
    MakeDir,
    Mount,
    NestCgroup2,
    Propagation,
    Remount,
    RemoveFile,
    SetEnv,
    Symlink,
    Umount,
    UnshareCgroup,
)
from dind.check.env import Env, denies_mount
from dind.check.report import Findings
from dind.daemon.actions import LinkTools, MakeCertificates
from dind.errors import DindError, SetupError
from dind.facts import from_evidence
from dind.plan import Plan, make_plan
from dind.policy import DID, DONE, FAILED, LEFT, MOUNT_HINT, NOT_REACHED, SKIPPED, walk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from dind.policy import Result
    from dind.settings import Settings

WILL = "will-do"
FAILS = "fails"
MAY_FAIL = "may-fail"
OUTCOMES = (WILL, DONE, FAILS, MAY_FAIL, LEFT, SKIPPED, NOT_REACHED)
_OUTCOME = {
    DID: WILL,
    DONE: DONE,
    FAILED: FAILS,
    LEFT: LEFT,
    SKIPPED: SKIPPED,
    NOT_REACHED: NOT_REACHED,
}
"""The policy's words for what happened, as the report names what is expected."""


class Prediction:
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


def _writable_parent(env: Env, path: str) -> bool | None:
    """access(W_OK) of the nearest probed directory above ``path``."""
    probe = posixpath.dirname(path)
    while probe not in env.snap.writable:
        if probe == "/":
            return None
        probe = posixpath.dirname(probe)
    return env.snap.writable[probe]


NEW_CGROUPNS = "(a cgroup namespace of its own)"
"""Kept among ``fresh`` once confinement's unshare is predicted to work: later cgroup mounts
are then in a cgroup namespace this user namespace owns."""


def _mount(action: Action, env: Env, fresh: list[str]) -> Prediction:
    can, why = env.can_mount()
    if can is False:
        fix = env.fix(requirements.SYS_ADMIN.key) if env.sys_admin is False else ""
        return Prediction(FAILS, "EPERM", why, everywhere=True, fix=fix)
    if denies_mount(env.apparmor_profile):
        profile = env.apparmor_profile
        return Prediction(
            FAILS,
            "EACCES",
            f"the AppArmor profile {profile} denies it",
            True,
            fix=env.fix(requirements.APPARMOR.key),
        )
    fstype = action.fstype if isinstance(action, Mount) else None
    if fstype is not None and env.filesystems is not None and fstype not in env.filesystems:
        return Prediction(FAILS, "ENODEV", f"the kernel has no {fstype} (/proc/filesystems)")
    if fstype == "securityfs" and env.user_ns:
        return Prediction(FAILS, "EPERM", "securityfs cannot be mounted in a user namespace")
    owner = "ours" if NEW_CGROUPNS in fresh else env.owner("cgroup")
    if fstype in ("cgroup", "cgroup2") and env.user_ns and owner == "ancestor":
        return Prediction(
            FAILS,
            "EPERM",
            "the cgroup namespace belongs to an ancestor user namespace",
            fix="do not --skip cgroup-confine (its unshare gives this user namespace a cgroup "
            "namespace of its own), or create the container's cgroup namespace inside its "
            "user namespace",
        )
    if can is None:
        return Prediction(MAY_FAIL, None, why)
    if fstype in ("cgroup", "cgroup2") and env.user_ns and owner is None:
        return Prediction(MAY_FAIL, None, "the owner of the cgroup namespace is unknown")
    if fstype == "tmpfs" and isinstance(action, Mount):
        fresh.append(action.target)
    if isinstance(action, UnshareCgroup):
        fresh.append(NEW_CGROUPNS)  # created now, in (and owned by) this user namespace
    return Prediction(WILL)


def _path(path: str, env: Env, fresh: list[str]) -> Prediction:
    if any(path.startswith(t + "/") for t in fresh):
        return Prediction(WILL)  # inside a tmpfs this plan mounts first
    parent = posixpath.dirname(path)
    writable = _writable_parent(env, path)
    if writable is None:
        return Prediction(MAY_FAIL, None, f"whether {parent} is writable is unknown")
    if writable:
        return Prediction(WILL)
    covering = None if env.mounts is None else env.mounts.covering(parent)
    fix = "choose a writable --cgroup-root (under a tmpfs, say), or a writable root filesystem"
    if covering is not None and "ro" in covering.mount_options.split(","):
        return Prediction(FAILS, "EROFS", f"{parent} is on a read-only mount", fix=fix)
    return Prediction(FAILS, "EACCES", f"{parent} is not writable", fix=fix)


def _nest(action: NestCgroup2, env: Env) -> Prediction:
    if env.snap.writable.get(action.path) is False:
        fix = env.fix(requirements.SYS_ADMIN.key) + ", and do not --skip cgroup-remount"
        return Prediction(FAILS, "EROFS", f"{action.path} is read-only", fix=fix)
    procs = procfs.words(env.snap.text(f"{action.path}/cgroup.procs"))
    outside = procs.count("0")
    if outside and action.controllers != ():
        return Prediction(
            FAILS,
            "EBUSY",
            f"{outside} process(es) outside this PID namespace (pid 0 in cgroup.procs) "
            "sit in the root group and cannot be moved from here",
        )
    whose = "of the host's root group " if env.cgroupns == "host" else ""
    return Prediction(WILL, None, f"moves {len(procs)} process(es) {whose}into {action.group}/")


def predict(action: Action, env: Env, fresh: list[str]) -> Prediction:
    """The expected result of a pending action; ``fresh`` collects tmpfs mounted before it
    (and whether a cgroup namespace was made)."""
    if isinstance(action, Mount | Bind | Propagation | Remount | Umount | UnshareCgroup):
        return _mount(action, env, fresh)
    if isinstance(action, MakeDir):
        return _path(action.path, env, fresh)
    if isinstance(action, Symlink | RemoveFile):
        return _path(action.path, env, fresh)
    if isinstance(action, NestCgroup2):
        return _nest(action, env)
    if isinstance(action, SetEnv | Decision):
        return Prediction(WILL)
    if isinstance(action, MakeCertificates):
        daemon = env.snap.evidence.daemon
        state = None if daemon is None else daemon.tls_state
        if state is not None and state.startswith("error: "):
            return Prediction(FAILS, "EINVAL", state.removeprefix("error: "))
        return Prediction(WILL, None, f"layout {state or 'unknown'}")
    if isinstance(action, LinkTools):
        return Prediction(WILL, None, action.note)
    return Prediction(MAY_FAIL, None, f"no prediction for {action.kind} actions")


def _judge(
    action: Action,
    result: Prediction,
    fatal: bool,
    first_privileged: bool,
    strict: bool,
    found: Findings,
) -> None:
    """Add the finding for a failing or doubtful action, as the policy decided it."""
    required = action.step in steps.REQUIRED
    what = f"{action.describe()}: {result.errno or 'may fail'}: {result.why}"
    if fatal:
        if required:
            meaning = "a required step fails: dind stops (exit 125)"
        elif first_privileged and result.errno in ("EPERM", "EACCES"):
            meaning = (
                "EPERM/EACCES on the first mount: dind takes it for an unprivileged "
                "container and stops (exit 125)"
            )
        else:
            meaning = "--strict makes this failure fatal: dind stops (exit 125)"
        fix = result.fix or MOUNT_HINT
        if not required and not result.everywhere:
            fix = f"--skip {action.step}, or {fix}"
        found.blocker(action.step, what, meaning, fix)
        return
    consequence = steps.CONSEQUENCE.get(action.step, "")
    if result.outcome == MAY_FAIL:
        stops = required or strict or first_privileged
        found.warning(
            action.step,
            what,
            "this could not be predicted; if it fails, "
            + ("dind stops (exit 125)" if stops else f"dind warns and goes on: {consequence}"),
            "run the check where /proc and /sys are readable"
            + ("" if required else f", or --skip {action.step}"),
        )
        return
    found.warning(
        action.step,
        what,
        f"best effort: dind warns and goes on; {consequence}",
        result.fix or f"--skip {action.step} if that is acceptable",
    )


def _rows(
    results: Iterator[Result],
    predictions: dict[int, Prediction],
    strict: bool,
    found: Findings,
) -> list[dict[str, object]]:
    """One row per action (its fields, ``describe``, ``outcome``, ``why``), and the findings:
    one per step (its first doubtful action), the rows showing them all."""
    rows: list[dict[str, object]] = []
    reported: set[str] = set()
    stopped = ""
    for result in results:
        action = result.action
        prediction = predictions.get(id(action))
        outcome = _OUTCOME[result.outcome]
        why = action.note
        if prediction is not None:
            outcome = MAY_FAIL if prediction.outcome == MAY_FAIL else outcome
            why = prediction.why or why
        elif result.outcome == SKIPPED and action.status != PLANNED_SKIP:
            why = "after an earlier failure in this step"
        if result.outcome == NOT_REACHED:
            why = f"dind stops at {stopped}"
        elif result.fatal:
            stopped = action.step
        quiet = Findings(found.area) if action.step in reported else found
        if outcome == LEFT:
            reported.add(action.step)
            quiet.warning(
                action.step,
                f"not done: {action.describe()}",
                f"{action.note}; dind warns and leaves it",
                "remove what is in the way, or choose another --cgroup-root",
            )
        elif result.outcome == FAILED and prediction is None:  # a refusal
            reported.add(action.step)
            found.blocker(action.step, action.describe(), action.note, "see the message")
        elif outcome in (FAILS, MAY_FAIL) and prediction is not None:
            reported.add(action.step)
            _judge(action, prediction, result.fatal, result.first_privileged, strict, quiet)
        row = action.fields()
        row["describe"] = action.describe()
        row["outcome"] = outcome
        if prediction is not None and prediction.errno and outcome == FAILS:
            row["errno"] = prediction.errno
        row["why"] = why
        rows.append(row)
    return rows


def plan_area(
    env: Env, found: Findings, settings: Settings
) -> tuple[list[dict[str, object]] | None, Plan | None]:
    """The plan's rows (action fields, ``describe``, ``outcome``, ``why``) and its findings."""
    if env.hierarchies is None or env.mounts is None:
        return None, None  # a blocker of the cgroup or mounts area: nothing to plan from
    try:
        plan = make_plan(from_evidence(env.snap.evidence, settings), settings)
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

    predictions: dict[int, Prediction] = {}
    fresh: list[str] = []

    def attempt(action: Action) -> SetupError | None:
        result = predict(action, env, fresh)
        predictions[id(action)] = result
        if result.outcome != FAILS:
            return None
        code = getattr(errnos, result.errno or "", None)
        return SetupError(result.why, step=action.step, errno=code)

    rows = _rows(walk(plan, attempt, settings.strict), predictions, settings.strict, found)
    if not found.items:
        todo = sum(r["outcome"] == WILL for r in rows)
        done = sum(r["outcome"] == DONE for r in rows)
        found.ok("plan", f"{todo} to do, {done} already done", "every action is expected to work")
    return rows, plan
