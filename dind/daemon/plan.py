"""Planning the daemon steps: actions, and the dockerd command line they make. Pure.

Each step decides from evidence and says so: the flag it adds, or why it adds
nothing. Flags are only added when dockerd was not already given that directive
(by a flag or by daemon.json).
"""

from __future__ import annotations

from dind import confine, paths, steps
from dind.actions import CONFLICT, PENDING, REFUSED, SATISFIED, Action, Decision, RemoveFile
from dind.daemon import iptables, mtu
from dind.daemon.actions import LinkTools, MakeCertificates
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.daemon.facts import DaemonFacts
    from dind.facts import Facts
    from dind.launch import Launch
    from dind.settings import Settings

TLS_PORT = 2376
PLAIN_PORT = 2375


def _stale_pid(d: DaemonFacts) -> tuple[list[Action], list[str]]:
    """Pid files of daemons that are gone go; what is not such a file stays, said aloud.

    Only a regular file holding nothing but the PID of a process that is gone is
    removed. A symlink where a pid file belongs goes too (the link, never its
    target): dockerd would write its PID through it. Anything else (``--pidfile
    /etc/shadow``, a directory) is left alone with a warning. Removal is unlinkat
    in the directory that was looked at: whatever happens meanwhile, no other
    directory's entry, and no file's content, can be touched.
    """
    actions: list[Action] = []
    warnings: list[str] = []
    for p in d.evidence.pidfiles:
        if p.kind == "symlink":
            note = f"a symlink (to {p.target or 'unknown'}) where {p.owner()} writes its PID"
            actions.append(RemoveFile(steps.STALE_PID, p.path, note=note + ": the link goes"))
            warnings.append(f"{p.path} is {note}; removed, its target left alone")
        elif p.kind != "file" or p.pid is None:
            what = "not a regular file" if p.kind != "file" else "its content is not a PID alone"
            note = (
                f"not a pid file ({what}): left alone; {p.owner()} may refuse to start "
                "or write its PID over it"
            )
            actions.append(Decision(steps.STALE_PID, f"remove {p.path}", "", CONFLICT, note))
        elif p.alive:
            note = f"PID {p.pid} is {p.comm}, running"
            actions.append(Decision(steps.STALE_PID, f"keep {p.path}", "", SATISFIED, note))
        else:
            why = f"PID {p.pid} is not {p.owner()} running"
            actions.append(RemoveFile(steps.STALE_PID, p.path, note=why))
    if not actions:
        note = "no docker*.pid or containerd*.pid under /run"
        actions.append(Decision(steps.STALE_PID, "no stale pid file", "", SATISFIED, note))
    return actions, warnings


def _data_root(d: DaemonFacts, settings: Settings, default: str) -> Action:
    root = d.directives.value("data-root") or default
    fs = d.evidence.data_root_fs
    text = f"data root {root} not on overlayfs"
    driver = d.directives.value("storage-driver")
    if not settings.data_root_check:
        return Decision(steps.DATA_ROOT, text, fs or "", SATISFIED, "DIND_DATA_ROOT_CHECK=0")
    if driver:
        note = f"storage driver {driver} given explicitly ({root} is on {fs or 'unknown'})"
        return Decision(steps.DATA_ROOT, text, fs or "", SATISFIED, note)
    if fs == "overlay":
        why = (
            f"{root} is on overlayfs (the container's own root filesystem): dockerd's overlay2 "
            "cannot stack on it and falls back to the slow vfs driver, or fails at docker run; "
            f"give it a volume (docker run -v {root} ..., or a named volume; the image has "
            "both data roots as volumes), "
            "or set DIND_DATA_ROOT_CHECK=0"
        )
        return Decision(steps.DATA_ROOT, text, fs, REFUSED, why)
    return Decision(steps.DATA_ROOT, text, fs or "", SATISFIED, f"{root} is on {fs or 'unknown'}")


def _tls(d: DaemonFacts, settings: Settings) -> tuple[list[Action], list[str]]:
    """The tls step's action, and the dockerd flags that use its certificates."""
    certdir = settings.tls_certdir
    if certdir is None:
        note = "DOCKER_TLS_CERTDIR is not set: the unix socket only"
        return [Decision(steps.TLS, "no TLS", "off", SATISFIED, note)], []
    if not certdir:
        note = "DOCKER_TLS_CERTDIR is empty: TLS off, plain TCP on 2375 (--tls=false)"
        return [Decision(steps.TLS, "no TLS", "off", SATISFIED, note)], []
    from dind.daemon import tls
    from dind.daemon.addresses import server_sans

    sans = server_sans(d.evidence.addresses, d.evidence.hostnames, list(settings.tls_san))
    state = d.evidence.tls_state or "unknown"
    action = MakeCertificates(steps.TLS, certdir, tuple(sans), note=f"layout: {state}")
    if d.directives.given("tlsverify") or d.directives.given("tlscacert"):
        return [action], []
    ca, cert, key = tls.server_paths(certdir)
    return [action], ["--tlsverify", "--tlscacert", ca, "--tlscert", cert, "--tlskey", key]


def _tcp_port(host: str) -> str | None:
    """The port of a ``tcp://HOST:PORT`` address (ASCII digits), else None."""
    if not host.startswith("tcp://"):
        return None
    port = host.rstrip("/").rpartition(":")[2]
    return port if port.isascii() and port.isdigit() and 0 < int(port) < 65536 else None


def _hosts(
    d: DaemonFacts, settings: Settings, tls_flags: list[str], socket: str
) -> tuple[Action, list[str], list[int]]:
    """The hosts step's action, dockerd's flags, and the TCP ports dind made it listen on."""
    if d.directives.given("host"):
        given = d.directives.flags.get("host") or [str(d.directives.value("host"))]
        tcp = any(h.startswith("tcp://") for h in given)
        flags = tls_flags if tcp else []
        note = "dockerd's own -H" + (" (TLS flags added for its tcp:// hosts)" if flags else "")
        ports = [int(port) for port in map(_tcp_port, given) if port is not None]
        return Decision(steps.HOSTS, f"hosts {' '.join(given)}", "", SATISFIED, note), flags, ports
    flags = ["-H", socket]
    ports = []
    if tls_flags:
        flags += ["-H", f"tcp://0.0.0.0:{TLS_PORT}", *tls_flags]
        ports = [TLS_PORT]
    elif settings.tls_certdir == "":
        flags += ["-H", f"tcp://0.0.0.0:{PLAIN_PORT}"]
        ports = [PLAIN_PORT]
        if not d.directives.given("tls"):
            flags += ["--tls=false"]  # said explicitly, dockerd skips its 15-second warning sleep
    return Decision(steps.HOSTS, "dockerd " + " ".join(flags), "", PENDING), flags, ports


def _iptables(d: DaemonFacts, settings: Settings) -> tuple[list[Action], list[str]]:
    """The iptables step's actions, and its warnings (NAT missing: said before dockerd runs)."""
    if d.directives.value("iptables") == "false":
        note = "dockerd runs with --iptables=false"
        return [Decision(steps.IPTABLES, "no iptables", "off", SATISFIED, note)], []
    backend, why = iptables.decide(settings.iptables, d.evidence.iptables, "DIND_IPTABLES")
    if backend is None:
        note = f"{why}: dockerd keeps the image's default iptables"
        action = Decision(steps.IPTABLES, "iptables backend", "", CONFLICT, note)
        return [action], [
            f"the kernel has no working NAT table ({why}); dockerd will fail to "
            "create its NAT chains: start it with --iptables=false, or load "
            "the nat modules on the host"
        ]
    found = d.evidence.iptables.get(backend)
    tools = found.tools if found is not None else {}
    warnings = []
    if found is not None and found.nat is not None and found.rules is not None:
        warnings.append(
            f"iptables-{backend} -t nat fails here ({found.nat}): this kernel lacks NAT "
            "support for it; dockerd will fail to create its NAT chains"
        )
    name = iptables.NAMES[backend]
    if "iptables" not in tools:
        note = f"{why}, but iptables-{backend} is not installed in this image"
        return [
            Decision(steps.IPTABLES, f"iptables backend {name}", backend, CONFLICT, note)
        ], warnings
    links = tuple((tool, path) for tool, path in tools.items())
    return [LinkTools(steps.IPTABLES, paths.IPTABLES_DIR, links, note=f"{name}: {why}")], warnings


def _mtu(d: DaemonFacts, settings: Settings) -> tuple[Action, list[str]]:
    step = steps.MTU
    if settings.mtu == "off":
        return Decision(step, "MTU", "", SATISFIED, "DIND_MTU=off"), []
    if d.directives.given("mtu"):
        given = str(d.directives.value("mtu"))
        return Decision(step, "MTU", given, SATISFIED, f"dockerd's own --mtu {given}"), []
    if settings.mtu != "auto":
        value, why = int(settings.mtu), f"DIND_MTU={settings.mtu}"
    else:
        if not d.evidence.mtus:
            return Decision(step, "MTU", "", SATISFIED, "no IPv4 default route: MTU left alone"), []
        iface, value = next(iter(d.evidence.mtus.items()))
        why = f"the default route leaves by {iface}, MTU {value}"
        if value >= mtu.DEFAULT:
            return Decision(
                step, "MTU", str(value), SATISFIED, f"{why}: dockerd's default fits"
            ), []
    flags = ["--mtu", str(value)]
    known = mtu.version(d.evidence.dockerd_version)
    if (
        known is not None
        and known >= mtu.NETWORK_OPTS_SINCE
        and not d.directives.given("default-network-opt")
    ):
        flags += ["--default-network-opt", f"bridge=com.docker.network.driver.mtu={value}"]
        why += "; also the default of user-defined bridge networks"
    return Decision(step, "dockerd " + " ".join(flags), str(value), PENDING, why), flags


class DaemonPlan(Record):
    """The daemon steps' actions and warnings, dockerd's command line, and what goes first
    on its PATH; ``dind.plan`` puts them into the whole plan. A rootless daemon adds how it
    starts (``launch``) and what planning decided for the start-up summary (``decided``)."""

    __slots__ = ("actions", "argv", "decided", "launch", "path", "warnings")

    def __init__(
        self,
        actions: list[Action],
        warnings: list[tuple[str, str]],
        argv: list[str],
        path: list[str],
        launch: Launch | None = None,
        decided: dict[str, str] | None = None,
    ) -> None:
        self.actions = actions
        self.warnings = warnings
        self.argv = argv
        self.path = path
        self.launch = launch
        self.decided = decided or {}


def _network(
    d: DaemonFacts, settings: Settings, argv: list[str]
) -> tuple[list[Action], list[tuple[str, str]], list[str]]:
    """The iptables and mtu steps (their flags added to ``argv``), their warnings, and what
    goes first on dockerd's PATH. A rootless dockerd runs in rootlesskit's own network
    namespace, behind slirp4netns: unless told otherwise, neither the rules nor the MTU of
    this one concern it."""
    actions: list[Action] = []
    warnings: list[tuple[str, str]] = []
    path: list[str] = []
    if steps.IPTABLES not in settings.skip:
        if settings.rootless and settings.iptables == "auto":
            from dind.rootless.plan import iptables_decision

            actions.append(iptables_decision())
        else:
            more, found = _iptables(d, settings)
            actions += more
            warnings += [(steps.IPTABLES, w) for w in found]
            if any(isinstance(a, LinkTools) for a in more):
                path = [paths.IPTABLES_DIR]
    if steps.MTU not in settings.skip:
        if settings.rootless and settings.mtu == "auto" and not d.directives.given("mtu"):
            from dind.rootless.plan import mtu_decision

            actions.append(mtu_decision())
        else:
            action, flags = _mtu(d, settings)
            actions.append(action)
            argv += flags
    return actions, warnings, path


def plan_daemon(facts: Facts, settings: Settings, kernel: list[Action]) -> DaemonPlan:
    """The daemon steps, and dockerd's command line as they make it. ``kernel`` is what the
    kernel steps planned (a rootless daemon's cgroup delegation follows from it)."""
    assert facts.daemon is not None
    d = facts.daemon
    skip = settings.skip
    argv = settings.dockerd_argv
    actions: list[Action] = []
    warnings: list[tuple[str, str]] = []
    rootless = None
    if settings.rootless:
        from dind.rootless import plan as rootless_plan

        rootless = rootless_plan.context(facts.rootless, settings)
        actions += rootless_plan.checks(facts, settings, rootless)
    socket = paths.DOCKER_SOCKET if rootless is None else rootless.socket
    if steps.STALE_PID not in skip:
        stale, said = _stale_pid(d)
        actions += stale
        warnings += [(steps.STALE_PID, w) for w in said]
    if steps.DATA_ROOT not in skip:
        default = paths.DATA_ROOT if rootless is None else rootless.data_root
        actions.append(_data_root(d, settings, default))
    tls_flags: list[str] = []
    if steps.TLS not in skip:
        tls_actions, tls_flags = _tls(d, settings)
        actions += tls_actions
    ports: list[int] = []
    if steps.HOSTS not in skip:
        action, flags, ports = _hosts(d, settings, tls_flags, socket)
        actions.append(action)
        argv += flags
    more, said_network, path = _network(d, settings, argv)
    actions += more
    warnings += said_network
    if (
        not settings.rootless
        and steps.CGROUP_CONFINE not in skip
        and not facts.cgroupns
        and not d.directives.given("cgroup-parent")
    ):
        parent = confine.cgroup_parent(facts)
        if parent is not None:
            note = "no cgroup namespaces here: nested containers go below this container's group"
            actions.append(
                Decision(
                    steps.CGROUP_CONFINE, f"dockerd --cgroup-parent {parent}", parent, PENDING, note
                )
            )
            argv += ["--cgroup-parent", parent]
    daemon = DaemonPlan(actions, warnings, argv, path)
    if rootless is not None and not any(a.status == REFUSED for a in actions):
        from dind.rootless.plan import plan_rootless

        certdir = settings.tls_certdir if tls_flags else None
        rl = plan_rootless(facts, settings, rootless, argv, certdir, ports, kernel)
        daemon.actions += rl.actions
        daemon.warnings += rl.warnings
        daemon.argv = rl.argv
        daemon.launch = rl.launch
        daemon.decided = rl.decided
    return daemon
