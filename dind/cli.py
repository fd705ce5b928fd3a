"""The click command line: only imported when the arguments start with an option.

``dind CMD...`` and ``dind -- CMD...`` carry no dind option, so ``dind.main``
builds their settings without importing click (tens of milliseconds saved on
every container start). Everything else, ``--help`` included, comes here.
"""

from __future__ import annotations

import click

from dind import __version__
from dind.errors import EarlyExit, UsageError
from dind.log import FORMATS
from dind.settings import STEPS, Settings, from_sources

EPILOG = """\b
Steps, in order (each can be skipped with --skip, except the environment):
  securityfs      mount securityfs on /sys/kernel/security (best effort)
  tmp             mount a tmpfs (mode 1777) on /tmp if it is no mount point (best effort)
  cgroup-mounts   mount each cgroup v1 hierarchy of /proc/1/cgroup under the
                  cgroup root, cgroup2 on ROOT/unified (hybrid) or on ROOT (pure v2)
                  (required)
  cgroup-nesting  when /sys/fs/cgroup is cgroup2: move every process into init/ and
                  enable all controllers in cgroup.subtree_control (best effort)
  rshared         make / recursively shared (best effort)
then container=docker is exported (unless container is set) and COMMAND is exec'd.

\b
Environment: DIND_CGROUP_ROOT, DIND_SKIP (comma-separated), DIND_STRICT,
DIND_DRY_RUN, DIND_LOG_FORMAT, DIND_INIT, DIND_INIT_GROUP, DIND_CHECK
(booleans: 1/0, true/false, yes/no, on/off). Options override them.

\b
Exit status:
  the command's own  dind execs it (with --init: its status, 128+N if killed by N)
  0                  --dry-run
  2                  usage error (bad option or variable, no command, --check with one)
  125                dind's own set-up failed
  126                COMMAND found but not executable
  127                COMMAND not found
  --check: 0 nested Docker can work here, 1 something blocks it
"""


@click.command(
    context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
)
@click.option(
    "--cgroup-root", metavar="PATH", help="Where v1 hierarchies are mounted (default /cgroup)."
)
@click.option(
    "--skip",
    multiple=True,
    metavar="STEP",
    help=f"Skip a step; repeatable or comma-separated ({', '.join(STEPS)}).",
)
@click.option(
    "--strict", is_flag=True, default=None, help="Failures of best-effort steps become fatal."
)
@click.option(
    "--dry-run",
    is_flag=True,
    default=None,
    help="Print the plan on stdout; change nothing, run nothing.",
)
@click.option(
    "--proc-cgroup", metavar="FILE", help="Read FILE instead of /proc/1/cgroup (captures, tests)."
)
@click.option(
    "--mountinfo",
    metavar="FILE",
    help="Read FILE instead of /proc/self/mountinfo (captures, tests).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default=None,
    help="Logs on stderr as text (default) or one JSON object per line.",
)
@click.option("-v", "--verbose", count=True, help="Log each action (-vv: also skipped ones).")
@click.option("-q", "--quiet", is_flag=True, default=None, help="Only errors.")
@click.option(
    "--init",
    is_flag=True,
    default=None,
    help="Stay as init: fork COMMAND, forward signals, reap zombies.",
)
@click.option(
    "--init-group",
    is_flag=True,
    default=None,
    help="With --init, signal COMMAND's whole process group.",
)
@click.option(
    "--check",
    is_flag=True,
    default=None,
    help="Report whether nested Docker can work here (exit 0) or what blocks it (exit 1); "
    "changes nothing, takes no COMMAND; with --log-format json, one JSON document.",
)
@click.version_option(__version__, prog_name="dind")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(**params: object) -> None:
    """Prepare a --privileged container for a nested Docker daemon, then exec COMMAND.

    Options end at the first word that is not one: in `dind make.sh -v`, -v is
    make.sh's. `--` before COMMAND is optional.
    """


def parse(args: list[str]) -> Settings:
    """Parse ``args`` with click; usage errors become UsageError, --help an EarlyExit."""
    try:
        ctx = command.make_context("dind", list(args))
    except click.exceptions.Exit as done:
        raise EarlyExit(done.exit_code) from None
    except click.UsageError as err:
        raise UsageError(err.format_message()) from None
    params = dict(ctx.params)
    argv = [str(a) for a in params.pop("command") or ()]
    return from_sources(argv, params)
