"""The entrypoint: arguments → detect → plan → apply → exec. Exit codes are decided here.

Imports are deliberately few and late: this runs at every container start.
"""

from __future__ import annotations

import os
import sys

from dind.errors import CommandError, DindError, EarlyExit, UsageError
from dind.log import DEBUG, Log
from dind.settings import Settings, from_sources

USAGE = 2
SETUP_FAILED = 125


def parse_args(args: list[str]) -> Settings:
    """Settings from argv and DIND_* variables.

    When the first word is not an option there is nothing for click to parse, so
    the common ``dind CMD...`` start skips importing it.
    """
    first = args[0] if args else "-"
    if first == "--" or not first.startswith("-") or first == "-":
        return from_sources(args[1:] if first == "--" else args, {})
    from dind.cli import parse

    return parse(args)


def run(args: list[str]) -> int:
    """Do dind's job; returns the exit status (when no command was exec'd)."""
    try:
        settings = parse_args(args)
    except EarlyExit as done:
        return done.status
    except UsageError as err:
        fmt = "json" if os.environ.get("DIND_LOG_FORMAT") == "json" else "text"
        Log(fmt=fmt).error(f"{err} (see 'dind --help')")
        return USAGE

    log = Log(settings.log_level, settings.log_format)
    try:
        if settings.check:
            from dind.check import check

            return check(settings, log)

        from dind.detect import detect
        from dind.plan import make_plan

        plan = make_plan(detect(settings), settings.skip)
        if settings.dry_run:
            from dind.plan import render

            for step, warning in plan.warnings:
                log.warning(warning, step=step)
            sys.stdout.write(render(plan, settings.command, settings.log_format))
            sys.stdout.flush()
            return 0

        # Load all that the rest of the run needs before mounting anything: the tmpfs
        # on /tmp (or any mount) may cover the directory dind was imported from.
        from dind.apply import apply
        from dind.command import exec_command
        from dind.syscalls import Kernel

        if settings.init:
            from dind.init import run_init
        log.prepare()

        apply(plan, Kernel(), log, settings.strict)
        if settings.init:
            status = run_init(settings.command, group=settings.init_group, log=log)
            log.flush()
            sys.stdout.flush()
            os._exit(status)  # no interpreter teardown: 20-30 ms less `docker stop` latency
        log.flush()
        exec_command(settings.command)
    except CommandError as err:
        log.error(str(err), errno=err.errno)
        return err.status
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
    return SETUP_FAILED  # exec_command returns only by raising


def main() -> None:
    """Console-script entry point."""
    status = run(sys.argv[1:])
    sys.stdout.flush()
    sys.exit(status)
