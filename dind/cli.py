"""The click command line: only imported when the arguments start with an option.

``dind CMD...`` and ``dind -- CMD...`` carry no dind option, so ``dind.main``
builds their settings without importing click (tens of milliseconds saved on
every container start). Everything else, ``--help`` included, comes here.
"""

from __future__ import annotations

import click

from dind import __version__, steps
from dind.errors import EarlyExit, UsageError
from dind.log import FORMATS
from dind.settings import PRINTS, Settings, from_sources

EPILOG = """\b
Steps, in order (each can be skipped with --skip):
  securityfs      mount securityfs on /sys/kernel/security (best effort)
  tmp             mount a tmpfs (mode 1777) on /tmp if it is no mount point (best effort)
  cgroup-confine  unshare the cgroup namespace when dind's own cgroup is not the root
                  of what it sees, so nested cgroups stay inside it (best effort)
  cgroup-mounts   mount each cgroup v1 hierarchy of /proc/1/cgroup under the
                  cgroup root, cgroup2 on ROOT/unified (hybrid) or on ROOT (pure v2)
                  (required)
  cgroup-remount  remount read-only cgroups under /sys/fs/cgroup read-write (best effort)
  cgroup-nesting  when /sys/fs/cgroup is cgroup2: move every process into init/ and
                  enable all controllers in cgroup.subtree_control (best effort)
  net-sysctls     when /proc/sys is read-only: bind /proc/sys/net onto itself read-write
                  (the container's own network namespace; skipped in the host's)
                  (best effort)
  rshared         make / recursively shared (best effort)
Daemon steps (COMMAND is dockerd, or --with-dockerd):
  stale-pid       remove docker/containerd pid files of processes that are gone
  data-root       refuse a data root on overlayfs (required)
  tls             certificates in $DOCKER_TLS_CERTDIR, docker:dind's layout (required)
  hosts           -H unix:///var/run/docker.sock, and tcp 2376 (TLS) or 2375 (required)
  iptables        the iptables backend the rules here use (best effort)
  mtu             --mtu of the default route's interface when below 1500 (best effort)
With --rootless (DIND_ROOTLESS):
  rootless        the user, its subordinate IDs, newuidmap/newgidmap, /dev/net/tun, a
                  fully visible /proc; its runtime directory, data root, certificates
                  and /dev/net/tun given to it (required; cannot be skipped)
  cgroup-delegate cgroup v2: a subtree with the controllers given to the user, so
                  nested containers get limits; otherwise limits are off (required)
then container=docker is exported (unless container is set) and COMMAND is exec'd
(dockerd: run as dind's child, dind staying as init).

\b
Environment: DIND_CGROUP_ROOT, DIND_SKIP (comma-separated), DIND_STRICT,
DIND_DRY_RUN, DIND_LOG_FORMAT, DIND_INIT, DIND_INIT_GROUP, DIND_CHECK,
DIND_ALLOW_HOST, DIND_WITH_DOCKERD, DIND_DOCKERD_LOG, DIND_DOCKERD_STOP_TIMEOUT,
DIND_TIMEOUT, DIND_DEFAULT_COMMAND, DIND_IPTABLES (auto/nft/legacy),
DOCKER_IPTABLES_LEGACY, DIND_MTU (auto/off/N), DIND_DATA_ROOT_CHECK,
DOCKER_TLS_CERTDIR, DOCKER_TLS_SAN, DIND_ROOTLESS, DIND_ROOTLESS_USER
(booleans: 1/0, true/false, yes/no, on/off).
Options override them.

\b
Exit status:
  the command's own  dind execs it (as init: its status, 128+N if killed by N)
  0                  --dry-run, --recipe, --seccomp-profile; --check: nested Docker can
                     work; --ready: answers
  1                  --check: something blocks it; --ready: no answer
  2                  usage error (bad option or variable, no command, ...)
  125                dind's own set-up failed, or its output could not be written
  126                COMMAND found but not executable
  127                COMMAND (or its interpreter) not found
  128+N              a terminating signal N arrived during set-up or --ready
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
    help=f"Skip a step; repeatable or comma-separated ({', '.join(steps.STEPS)}).",
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
    "--init/--no-init",
    default=None,
    help="Stay as init: fork COMMAND, forward signals, reap zombies (default for dockerd).",
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
@click.option(
    "--allow-host",
    is_flag=True,
    default=None,
    help="Run even in the host's own mount namespace (refused otherwise).",
)
@click.option(
    "--with-dockerd",
    is_flag=True,
    default=None,
    help="Start a nested dockerd, wait until it answers, run COMMAND, then stop dockerd.",
)
@click.option(
    "--rootless",
    is_flag=True,
    default=None,
    help="Run the nested dockerd as DIND_ROOTLESS_USER (default rootless) in rootlesskit.",
)
@click.option(
    "--dockerd-arg",
    multiple=True,
    metavar="ARG",
    help="An extra dockerd flag (repeatable).",
)
@click.option(
    "--dockerd-log", metavar="FILE", help="dockerd's output (default /var/log/dockerd.log)."
)
@click.option(
    "--dockerd-stop-timeout",
    metavar="S",
    help="Seconds between SIGTERM and SIGKILL when stopping dockerd (default 10).",
)
@click.option(
    "--timeout",
    metavar="S",
    help="Seconds to wait for the daemon to answer (--with-dockerd: default 60; --ready: retry).",
)
@click.option(
    "--ready",
    is_flag=True,
    default=None,
    help="Probe: exit 0 when the daemon at DOCKER_HOST answers GET /_ping, else 1.",
)
@click.option(
    "--recipe",
    metavar="RUNTIME",
    help="Print the least-privilege outer options for RUNTIME (docker, podman, lxc, nspawn, "
    "kubernetes) to run dind without a privileged container; runs anywhere.",
)
@click.option(
    "--seccomp-profile",
    is_flag=True,
    default=None,
    help="Print dind's seccomp profile (Docker's default plus what a nested runtime needs), "
    "for --security-opt seccomp=FILE.",
)
@click.version_option(__version__, prog_name="dind")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(**params: object) -> None:
    """Prepare a container for a nested Docker daemon, then run COMMAND.

    It needs CAP_SYS_ADMIN, not --privileged: --recipe RUNTIME prints the least options
    each runtime allows, --check says what this container allows.

    Options end at the first word that is not one: in `dind make.sh -v`, -v is
    make.sh's. `--` before COMMAND is optional.
    """


def _takes_value() -> dict[str, bool]:
    """Every spelling of dind's options, and whether it takes a value."""
    takes_value: dict[str, bool] = {"--version": False}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    return takes_value


def _options(args: list[str]) -> tuple[int, list[tuple[str, str | None]]]:
    """How many leading words are dind's own options, and those options with their values."""
    takes_value = _takes_value()
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name in takes_value:
            if takes_value[name] and not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            found.append((name, value if takes_value[name] else None))
            i += 1
        elif not arg.startswith("--") and all(f"-{c}" in takes_value for c in arg[1:]):
            i += 1  # a cluster of short flags: -vv
        else:
            break
    return i, found


def _known(args: list[str]) -> int:
    """How many leading words are dind's own options (with their values)."""
    return _options(args)[0]


def option_values(args: list[str], name: str) -> list[str]:
    """The values given to dind's option ``name`` among its leading options, in order."""
    return [value or "" for option, value in _options(args)[1] if option == name]


def parse(args: list[str], default_command: str = "") -> Settings:
    """Parse ``args`` with click; usage errors become UsageError, --help an EarlyExit.

    With ``default_command`` (``DIND_DEFAULT_COMMAND``), an option dind does not
    know begins that command's flags: ``dind --mtu 1400`` is ``dockerd --mtu 1400``.
    """
    rest: list[str] = []
    if default_command:
        n = _known(args)
        if n < len(args) and args[n].startswith("-") and args[n] not in ("-", "--"):
            args, rest = args[:n], [default_command, *args[n:]]
    try:
        ctx = command.make_context("dind", list(args))
    except click.exceptions.Exit as done:
        raise EarlyExit(done.exit_code) from None
    except click.UsageError as err:
        raise UsageError(err.format_message()) from None
    params = dict(ctx.params)
    argv = rest or [str(a) for a in params.pop("command") or ()]
    params.pop("command", None)
    if not argv and default_command and not any(params.get(name) for name in PRINTS):
        argv = [default_command]
    return from_sources(argv, params)
