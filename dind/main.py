"""The entrypoint, top to bottom: arguments → detect → plan → apply → run. Exit codes decided here.

Imports are deliberately few and late: this runs at every container start.
"""

from __future__ import annotations

import os
import sys

from dind import signals
from dind.errors import (
    SETUP_FAILED,
    CommandError,
    DindError,
    EarlyExit,
    SetupError,
    UsageError,
)
from dind.log import DEBUG, Log
from dind.settings import Settings, from_sources

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.facts import Facts
    from dind.plan import Plan

USAGE = 2


def parse_args(args: list[str]) -> Settings:
    """Settings from argv and DIND_* variables.

    When the first word is not an option there is nothing for click to parse, so
    the common ``dind CMD...`` start skips importing it. With
    ``DIND_DEFAULT_COMMAND=dockerd`` (docker:dind's convention), no arguments
    mean ``dockerd``; an option dind does not know starts dockerd's flags.
    """
    default = os.environ.get("DIND_DEFAULT_COMMAND", "")
    if not args and default:
        return from_sources([default], {})
    first = args[0] if args else "-"
    if first == "--" or not first.startswith("-") or first == "-":
        return from_sources(args[1:] if first == "--" else args, {})
    from dind.cli import parse

    return parse(args, default)


def log_format_asked(args: list[str]) -> str:
    """The log format asked for, for errors met before the options parse: the last
    ``--log-format`` among dind's own options, else ``DIND_LOG_FORMAT``."""
    given = None
    if args and args[0].startswith("-"):
        from dind.cli import option_values

        given = option_values(args, "--log-format")
    value = given[-1] if given else os.environ.get("DIND_LOG_FORMAT", "text")
    return "json" if value == "json" else "text"


def write_out(text: str, log: Log) -> bool:
    """Write the plan or report on stdout; False (and one line) when stdout cannot take it."""
    stream = sys.stdout
    reason = "stdout is closed"
    if stream is not None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as err:
            reason = getattr(err, "strerror", None) or str(err)
        else:
            return True
    log.error(f"cannot write to stdout: {reason}")
    sys.stdout = None  # nothing left to flush at exit
    return False


def interrupted(log: Log, during: str = "") -> int | None:
    """A terminating signal that came while it was held: one line, and its exit status.

    ``during`` names what it interrupted; empty for set-up, which is finished first.
    """
    sig = signals.arrived()
    if sig is None:
        return None
    if during:
        log.error(f"{signals.name(sig)} during {during}")
    else:
        log.error(f"{signals.name(sig)} during set-up: set-up finished, the command is not started")
    return 128 + sig


def run(args: list[str], mask: set[int] | None = None) -> int:
    """Do dind's job; returns the exit status (when nothing was exec'd).

    ``mask`` is the signal mask dind started with, when the terminating signals were
    already held by ``dind.entry``.
    """
    if mask is None:
        mask = signals.hold()
    try:
        settings = parse_args(args)
    except EarlyExit as done:
        return done.status
    except UsageError as err:
        Log(fmt=log_format_asked(args)).error(f"{err} (see 'dind --help')")
        return USAGE
    except OSError as err:  # --help or --version on a full or closed stdout
        Log(fmt=log_format_asked(args)).error(f"cannot write to stdout: {err.strerror or err}")
        return SETUP_FAILED

    log = Log(settings.log_level, settings.log_format)
    try:
        if settings.recipe or settings.seccomp_profile:
            return printed(settings, log)
        if settings.ready:
            from dind.daemon.ready import probe

            try:
                signals.answer()  # a probe waits on the network and on others' files
                return probe(settings, log)
            except signals.Interrupted as stop:
                log.error(f"{signals.name(stop.signum)} during --ready")
                return 128 + stop.signum
        if settings.check:
            from dind.check import check

            text, status = check(settings, log)
            if not write_out(text, log):
                return SETUP_FAILED
            return interrupted(log, "--check") or status
        return setup_and_run(settings, log, mask)
    except CommandError as err:
        log.error(str(err), errno=err.errno)
        return err.status
    except UsageError as err:
        log.error(str(err))
        return USAGE
    except DindError as err:
        log.error(
            str(err), step=getattr(err, "step", None) or None, errno=getattr(err, "errno", None)
        )
        return SETUP_FAILED
    except OSError as err:
        log.error(f"{err.filename or 'dind'}: {err.strerror or err}", errno=err.errno)
        return SETUP_FAILED
    except Exception as err:  # a bug must still end as one line and 125
        log.error(f"internal error: {type(err).__name__}: {err} (-vv shows the traceback)")
        if log.enabled(DEBUG):
            import traceback

            log.debug(traceback.format_exc())
        return SETUP_FAILED


def printed(settings: Settings, log: Log) -> int:
    """``--recipe RUNTIME`` or ``--seccomp-profile``: text on stdout, nothing looked at."""
    if settings.recipe:
        from dind.recipe import render

        text = render(settings.recipe, settings.rootless)
    else:
        from dind.seccomp import render as render_profile

        text = render_profile()
    return 0 if write_out(text, log) else SETUP_FAILED


def _planned(settings: Settings, log: Log) -> tuple[Facts, Plan]:
    """Detect, then plan; what this container's privilege rules out is said here, once
    (dind.privilege, from the facts; the facts are returned for the start-up summary)."""
    from dind import detect
    from dind.facts import from_evidence
    from dind.plan import make_plan

    evidence = detect.read(settings)
    if settings.rootless:
        from dind.rootless.detect import read_rootless

        evidence.rootless = read_rootless(settings)
    if settings.daemon_mode:
        from dind.daemon.detect import read_daemon

        evidence.daemon = read_daemon(settings, evidence.rootless)
    facts = from_evidence(evidence, settings)
    if facts.privilege is not None and not settings.rootless:  # its own plan says its limits
        from dind.privilege import CAPABILITIES, USER_NAMESPACE, level

        if level(facts.privilege)[0] in (CAPABILITIES, USER_NAMESPACE):
            from dind.abilities import assess, cannot

            for limit in cannot(assess(facts.privilege)):
                log.warning(limit, privilege=True)
    return facts, make_plan(facts, settings)


def setup_and_run(settings: Settings, log: Log, mask: set[int]) -> int:
    """Serialise with other dind runs, plan, apply, then exec or supervise the command."""
    from dind.syscalls import lock

    # Two dind runs at once (an entrypoint and a `docker exec dind ...`) would both
    # see nothing mounted and mount everything twice: the second waits, then
    # re-detects. flock on / needs no file; exec closes it (O_CLOEXEC).
    guard = -1
    if not settings.dry_run:
        guard = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        lock(guard)
    _facts, plan = _planned(settings, log)
    if settings.dry_run:
        return dry_run(plan, settings, log)

    # Load all that the rest of the run needs before mounting anything: the tmpfs
    # on /tmp (or any mount) may cover the directory dind was imported from.
    from dind.apply import apply
    from dind.command import exec_command
    from dind.syscalls import LinuxKernel

    if settings.runs_init or settings.with_dockerd:
        from dind.init import run_init
    if settings.with_dockerd:
        from dind.daemon.ready import preload
        from dind.daemon.supervise import run_with_dockerd

        preload()
    decided: dict[str, str] = {}
    if settings.daemon_mode:
        from dind.summary import decisions, line

        decided = decisions(plan)
    for action in plan.actions:
        action.prepare()
    log.prepare()

    refused = plan.refused
    if refused is not None:
        raise SetupError(refused.note, step=refused.step)
    apply(plan, LinuxKernel(), log, settings.strict)
    os.close(guard)
    if (stopped := interrupted(log)) is not None:
        return stopped
    if decided:  # what dind decided for the daemon, before it starts (dind.summary)
        log.notice(line(decided), event="decisions", **decided)
    if plan.dockerd_path and not settings.with_dockerd:
        os.environ["PATH"] = ":".join([*plan.dockerd_path, os.environ.get("PATH", "")])
    env = None if plan.launch is None else {**os.environ, **plan.launch.env}
    if settings.with_dockerd:
        status = run_with_dockerd(plan, settings, log, mask)
    elif settings.runs_init:
        status = run_init(
            plan.command, group=settings.init_group, log=log, mask=mask, env=env, launch=plan.launch
        )
    else:
        log.flush()
        exec_command(plan.command, mask, env, plan.launch)
        return SETUP_FAILED  # exec_command returns only by raising
    log.flush()
    _flush_stdout()
    os._exit(status)  # no interpreter teardown: 20-30 ms less `docker stop` latency


def dry_run(plan: Plan, settings: Settings, log: Log) -> int:
    """``--dry-run``: the plan on stdout, its warnings (and a refusal to come) on stderr."""
    from dind.plan import render

    for step, warning in plan.warnings:
        log.warning(warning, step=step)
    refused = plan.refused
    if refused is not None:
        log.warning(f"a real run would refuse: {refused.note}", step=refused.step)
    if not write_out(render(plan, settings.log_format), log):
        return SETUP_FAILED
    return interrupted(log, "--dry-run") or 0


def _flush_stdout() -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        pass


def main(mask: set[int] | None = None) -> None:
    """Console-script entry point; a closed or full stdout never turns into a traceback."""
    status = run(sys.argv[1:], mask)
    _flush_stdout()
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(status)
