"""Planning the rootless daemon. Pure: facts in, decisions, actions and a command line out.

``context`` says who the daemon runs as and where its things are (the daemon
steps take their defaults from it: the socket, the data root). ``kernel_steps``
drops dind's own mount steps where dind holds no CAP_SYS_ADMIN (a rootless
dockerd mounts in rootlesskit's namespaces). ``plan_rootless`` adds the
``rootless`` step (its checks, each refusal naming the outer option that fixes
it; the root-only preparation) and ``cgroup-delegate`` (the limits decision),
then wraps dockerd in rootlesskit.

Two ways to run dockerd, decided by ``cgroup-delegate``:

- **limits off** (cgroup v1, or no cgroup2 subtree dind can give away): Docker's
  own rootless mode, as dockerd-rootless.sh runs it. Without systemd its cgroup
  driver is ``none`` (moby's ``cgroupDriver``): nested containers stay in the
  daemon's group and ``docker run -m`` is discarded.
- **limits on** (cgroup v2, dind root with a writable tree): dind gives the user a
  subtree with every controller it may enable, and dockerd runs in rootlesskit's
  user namespace in its standard mode (cgroupfs driver, ``--cgroup-parent`` in the
  subtree), the way Gitpod ran dockerd on cgroup v2. dockerd is started without
  ROOTLESSKIT_STATE_DIR (with it, dockerd insists on its rootless mode); the port
  helper gets it back through ``dind-rootlesskit-docker-proxy``.
"""

from __future__ import annotations

import stat

from dind import paths, procfs, steps, userdb
from dind.actions import REFUSED, SATISFIED, Action, Decision, RemoveFile, Symlink
from dind.launch import Launch
from dind.record import Record
from dind.rootless import facts as rf
from dind.rootless import proxy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.daemon.facts import DaemonFacts
    from dind.facts import Facts
    from dind.settings import Settings

MTU = 65520
"""slirp4netns's MTU (rootlesskit's default for it)."""
NET = "slirp4netns"
PORT_DRIVER = "builtin"
PROXY = "dind-rootlesskit-docker-proxy"
STATE_VARIABLE = proxy.VARIABLE
"""Where ``dind-rootlesskit-docker-proxy`` finds rootlesskit's state directory."""
DAEMON_GROUP = "daemon"
NESTED_GROUP = "docker"
LIMITS_ON = "on"
LIMITS_OFF = "off"


class Context(Record):
    """The daemon's user and places: what the daemon steps' defaults become."""

    __slots__ = ("as_root", "groups", "user")

    def __init__(self, user: userdb.User, groups: tuple[int, ...], as_root: bool) -> None:
        self.user = user
        self.groups = groups
        self.as_root = as_root
        """dind runs as root and drops to the user for rootlesskit (else it is the user)."""

    @property
    def runtime_dir(self) -> str:
        return paths.runtime_dir(self.user.uid)

    @property
    def socket(self) -> str:
        return paths.rootless_socket(self.user.uid)

    @property
    def home(self) -> str:
        return self.user.home.rstrip("/") or "/"

    @property
    def data_root(self) -> str:
        return f"{self.home.rstrip('/')}/{paths.ROOTLESS_DATA}"

    @property
    def state_dir(self) -> str:
        return f"{self.runtime_dir}/{paths.ROOTLESSKIT_STATE}"

    def data_chain(self) -> list[str]:
        """The data root and the directories between it and the home directory."""
        parts = paths.ROOTLESS_DATA.split("/")
        return [f"{self.home.rstrip('/')}/{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]


def context(ev: rf.RootlessEvidence | None, settings: Settings) -> Context | None:
    """Who the rootless daemon runs as; None when it cannot be told (the plan refuses)."""
    if ev is None or not settings.rootless:
        return None
    user, _ = rf.find_user(ev, settings.rootless_user)
    if user is None:
        return None
    groups = userdb.supplementary_gids(ev.files.get(paths.GROUP, ""), user)
    return Context(user, groups, ev.euid == 0)


def kernel_steps(
    ev: rf.RootlessEvidence, skip: frozenset[str]
) -> tuple[frozenset[str], list[Action]]:
    """Without CAP_SYS_ADMIN dind's mount steps cannot run, and a rootless dockerd does not
    need them: they are skipped, in one line. With it (--privileged) they run as usual."""
    eff, _ = rf.capabilities(ev)
    if eff is None or procfs.has_cap(eff, "CAP_SYS_ADMIN"):
        return skip, []
    who = f"runs as uid {ev.euid}" if ev.euid != 0 else "holds no CAP_SYS_ADMIN"
    note = (
        f"dind {who}: none of its mount steps (tmpfs, cgroups, rshared) can run, and a "
        "rootless dockerd does its mounts in rootlesskit's namespaces"
    )
    decision = Decision(steps.ROOTLESS, "kernel steps skipped", "skipped", SATISFIED, note)
    return skip | frozenset(steps.KERNEL_STEPS), [decision]


def _verdict(v: rf.Verdict, text: str) -> Decision:
    if v.ok is False:
        fix = f" ({v.fix})" if v.fix else ""
        note = f"rootless: {text}: {v.value}: {v.why}{fix}"
        return Decision(steps.ROOTLESS, text, v.value, REFUSED, note)
    return Decision(steps.ROOTLESS, text, v.value, SATISFIED, v.why)


def checks(facts: Facts, settings: Settings, ctx: Context | None) -> list[Action]:
    """The rootless step's verdicts, planned before every daemon step: a refusal stops
    dind before anything is done, and is the first thing it says."""
    ev = facts.rootless
    assert ev is not None
    user, problem = rf.find_user(ev, settings.rootless_user)
    if user is None or ctx is None:
        return [Decision(steps.ROOTLESS, "the daemon's user", "", REFUSED, problem)]
    out: list[Action] = []
    ranges = []
    for path in (paths.SUBUID, paths.SUBGID):
        found, problem = rf.subordinate(ev, user, path)
        if problem:
            why = (
                f"{problem}: rootlesskit maps the user's subordinate IDs into its user "
                f"namespace (e.g. a line {user.name}:100000:65536)"
            )
            return [Decision(steps.ROOTLESS, "subordinate IDs", "", REFUSED, why)]
        ranges.append(", ".join(str(r) for r in found))
    note = f"subordinate uids {ranges[0]}, gids {ranges[1]}; home {user.home}"
    if ctx.as_root:
        note += "; dind prepares as root, then runs rootlesskit as this user"
    else:
        note += (
            f"; dind runs as this user: it skips what needs root (giving it /dev/net/tun, "
            f"{paths.RUN_USER}, cgroup delegation, the /var/run/docker.sock link)"
        )
    text = f"the daemon runs as {user.name} (uid {user.uid}, gid {user.gid})"
    out.append(Decision(steps.ROOTLESS, text, str(user.uid), SATISFIED, note))
    for tool in ("rootlesskit", "slirp4netns"):
        if ev.tools.get(tool) is None:
            why = f"{tool} is not on PATH (Debian: apt-get install rootlesskit slirp4netns uidmap)"
            out.append(Decision(steps.ROOTLESS, tool, "", REFUSED, why))
    for name in rf.HELPERS:
        out.append(_verdict(rf.helper_verdict(ev, name), name))
    out.append(_verdict(rf.userns_verdict(ev), "user namespaces"))
    out.append(_verdict(rf.tun_verdict(ev, user, ctx.groups), paths.DEV_NET_TUN))
    out.append(_verdict(rf.proc_verdict(facts.mounts if facts.mounts.mounts else None), "/proc"))
    if ev.paths.get(ctx.home) is None:
        why = f"the home directory {user.home} of {user.name} does not exist"
        out.append(Decision(steps.ROOTLESS, "home directory", "", REFUSED, why))
    return out


def _owned(ev: rf.RootlessEvidence, path: str, uid: int) -> bool:
    info = ev.paths.get(path)
    return info is not None and info.is_dir and info.uid == uid


def _not_makeable(
    ev: rf.RootlessEvidence, entries: tuple[tuple[str, int, int, int], ...], uid: int
) -> str | None:
    """The first directory the user cannot have (missing in a directory not its own, or
    there but another's), when dind runs as that user."""
    for path, owner, _, _ in entries:
        if owner != uid or _owned(ev, path, uid):
            continue
        parent = path.rpartition("/")[0] or "/"
        if ev.paths.get(path) is not None or not (
            _owned(ev, parent, uid) or parent in {p for p, o, _, _ in entries if o == uid}
        ):
            return path
    return None


def _prepare(
    ev: rf.RootlessEvidence, ctx: Context, d: DaemonFacts, certdir: str | None, socket_link: bool
) -> list[Action]:
    """Root-only preparation: the user's runtime directory and data root, /dev/net/tun, the
    server certificate files, the /var/run/docker.sock link. Started as the user, dind
    makes what it may (its own directories) and leaves the rest (checked above)."""
    from dind.rootless.actions import GiveDevice, GiveFiles, UserDirs

    uid, gid = ctx.user.uid, ctx.user.gid
    step = steps.ROOTLESS
    out: list[Action] = []
    dirs: list[tuple[tuple[tuple[str, int, int, int], ...], str]] = [
        (((paths.RUN_USER, -1, -1, 0o755), (ctx.runtime_dir, uid, gid, 0o700)), "XDG_RUNTIME_DIR")
    ]
    if d.directives.value("data-root") is None:
        chain = ctx.data_chain()
        entries = tuple((p, uid, gid, 0o700 if p == chain[-1] else 0o755) for p in chain)
        dirs.append((entries, "the data root"))
    for entries, what in dirs:
        if all(_owned(ev, p, uid) for p, owner, _, _ in entries if owner == uid):
            note = f"{what}: there already, the user's"
            out.append(UserDirs(step, entries, ctx.as_root, SATISFIED, note))
            continue
        if not ctx.as_root:
            blocked = _not_makeable(ev, entries, uid)
            if blocked:
                why = (
                    f"{what}: {blocked} is missing or not uid {uid}'s, and dind, started as "
                    f"uid {uid}, cannot make it so: start the container as root (dind prepares "
                    "it), or prepare it in the image"
                )
                out.append(Decision(step, what, "", REFUSED, why))
                continue
        out.append(UserDirs(step, entries, ctx.as_root, note=what))
    if not ctx.as_root:
        return out
    if ev.tun is not None and ev.tun.uid == uid:
        out.append(GiveDevice(step, paths.DEV_NET_TUN, uid, gid, SATISFIED, "already the user's"))
    else:
        note = "slirp4netns opens it as the user (it is root's, mode 0600, on many hosts)"
        out.append(GiveDevice(step, paths.DEV_NET_TUN, uid, gid, note=note))
    if certdir:
        from dind.daemon.tls import server_paths

        files = server_paths(certdir)
        directory = files[0].rpartition("/")[0]
        names = tuple(f.rpartition("/")[2] for f in files)
        note = "dockerd reads its key as the user"
        out.append(GiveFiles(step, directory, names, uid, gid, note=note))
    if socket_link:
        link = rf.socket_link(ev.var_run)
        target = ctx.socket.removeprefix("unix://")
        info = ev.paths.get(link)
        if info is not None and not stat.S_ISLNK(info.mode):
            out.append(RemoveFile(step, link, note="a socket of an earlier daemon"))
        note = "docker clients in this container find the daemon without DOCKER_HOST"
        out.append(Symlink(step, link, target, note=note))
    return out


def _limits(
    facts: Facts, settings: Settings, ctx: Context, d: DaemonFacts, kernel: list[Action]
) -> tuple[str, str]:
    """``on`` or ``off``, and why."""
    from dind.actions import NestCgroup2, Remount

    ev = facts.rootless
    assert ev is not None
    if steps.CGROUP_DELEGATE in settings.skip:
        return LIMITS_OFF, "--skip cgroup-delegate"
    if facts.sys_fs_cgroup != "cgroup2":
        mode = "no cgroup" if facts.sys_fs_cgroup is None else "cgroup v1"
        return LIMITS_OFF, f"{mode} here: a rootless dockerd limits only on cgroup v2"
    if not ctx.as_root:
        return LIMITS_OFF, f"dind runs as uid {ev.euid}: only root can give a cgroup subtree"
    for given in ("cgroup-parent", "exec-opt", "userland-proxy-path"):
        if d.directives.given(given):
            return LIMITS_OFF, f"dockerd's own --{given}: dind delegates no cgroup"
    for tool in ("rootlesskit-docker-proxy", PROXY):
        if ev.tools.get(tool) is None:
            return LIMITS_OFF, f"{tool} is not on PATH (published ports need it)"
    nesting = [a for a in kernel if isinstance(a, NestCgroup2)]
    if not nesting:
        why = (
            "cgroup-nesting is skipped"
            if steps.CGROUP_NESTING in settings.skip
            else ("dind's cgroup steps do not run here")
        )
        return LIMITS_OFF, f"{why}: no controller can be enabled below this container's group"
    mount = facts.mounts.at(paths.SYS_FS_CGROUP)
    remounted = any(isinstance(a, Remount) and a.target == paths.SYS_FS_CGROUP for a in kernel)
    read_only = mount is not None and "ro" in mount.mount_options.split(",")
    if read_only and not remounted:
        return LIMITS_OFF, f"{paths.SYS_FS_CGROUP} is read-only and dind cannot remount it"
    controllers = list(facts.cgroup2_controllers or ())
    shown = " ".join(controllers) or "none"
    why = (
        f"cgroup v2: dind gives uid {ctx.user.uid} the subtree {paths.DELEGATED_CGROUP}/ with "
        f"the controllers it may enable ({shown}); nested containers go below it"
    )
    return LIMITS_ON, why


class RootlessPlan(Record):
    """What the rootless steps add to the daemon's plan: actions and warnings, the whole
    command line (rootlesskit, then dockerd), how it starts, and the summary's words."""

    __slots__ = ("actions", "argv", "decided", "launch", "warnings")

    def __init__(
        self,
        actions: list[Action],
        warnings: list[tuple[str, str]],
        argv: list[str],
        launch: Launch,
        decided: dict[str, str],
    ) -> None:
        self.actions = actions
        self.warnings = warnings
        self.argv = argv
        self.launch = launch
        self.decided = decided


def plan_rootless(
    facts: Facts,
    settings: Settings,
    ctx: Context,
    argv: list[str],
    certdir: str | None,
    ports: list[int],
    kernel: list[Action],
) -> RootlessPlan:
    """The rootless steps after the daemon's (``checks`` passed): the preparation, the
    limits decision, and dockerd ``argv`` wrapped in rootlesskit as the user.

    ``certdir`` is where the tls step writes the server's files (None without TLS);
    ``ports`` are dockerd's TCP ports to publish through rootlesskit's port driver;
    ``kernel`` the kernel steps' actions (delegation needs cgroup nesting).
    """
    from dind.rootless.actions import DelegateCgroup

    d = facts.daemon
    ev = facts.rootless
    assert d is not None and ev is not None
    socket_link = not d.directives.given("host") and ctx.as_root
    actions = _prepare(ev, ctx, d, certdir, socket_link)
    warnings: list[tuple[str, str]] = []
    if not ctx.as_root:
        warnings.append(
            (
                steps.ROOTLESS,
                f"dind runs as {ctx.user.name} (uid {ctx.user.uid}), not as root: it skips what "
                f"needs root (giving {paths.DEV_NET_TUN} and {paths.RUN_USER} to the user, cgroup "
                "delegation, the /var/run/docker.sock link); clients use "
                f"DOCKER_HOST={ctx.socket}",
            )
        )
    limits, why = _limits(facts, settings, ctx, d, kernel)
    step = steps.CGROUP_DELEGATE
    delegated = f"{paths.SYS_FS_CGROUP}/{paths.DELEGATED_CGROUP}"
    cgroup = None
    if limits == LIMITS_ON:
        actions.append(
            DelegateCgroup(step, delegated, ctx.user.uid, ctx.user.gid, (DAEMON_GROUP,), note=why)
        )
        cgroup = f"{delegated}/{DAEMON_GROUP}"
        nested = f"below {delegated}/{NESTED_GROUP}, the user's (dockerd's cgroupfs driver)"
    else:
        actions.append(Decision(step, "limits off", LIMITS_OFF, SATISFIED, why))
        warnings.append(
            (
                step,
                f"rootless nested containers get no resource limits ({why}): docker run "
                "--memory, --cpus and --pids-limit are discarded",
            )
        )
        nested = "in the daemon's own group (Docker's rootless mode, cgroup driver none)"

    flags = _dockerd_flags(ctx, d, limits, ev.tools.get(PROXY) or PROXY)
    kit = [
        "rootlesskit",
        f"--net={NET}",
        f"--mtu={MTU}",
        "--disable-host-loopback",
        f"--port-driver={PORT_DRIVER}",
        "--copy-up=/etc",
    ]
    etc_docker = ev.paths.get(paths.ETC_DOCKER)
    if limits == LIMITS_ON and etc_docker is not None and etc_docker.is_dir:
        # dockerd 20.10 in its standard mode writes /etc/docker/key.json: a private copy-up.
        kit.append(f"--copy-up={paths.ETC_DOCKER}")
    kit.append("--copy-up=/run")
    if any(a.step == steps.RSHARED for a in kernel):
        kit.append("--propagation=rslave")  # / is shared (dind's rshared step)
    kit.append(f"--state-dir={ctx.state_dir}")
    kit += [f"-p=0.0.0.0:{port}:{port}/tcp" for port in ports]
    env = {
        "HOME": ctx.home,
        "USER": ctx.user.name,
        "LOGNAME": ctx.user.name,
        "XDG_RUNTIME_DIR": ctx.runtime_dir,
    }
    inner = [*argv, *flags]
    if limits == LIMITS_ON:
        env[STATE_VARIABLE] = ctx.state_dir
        inner = ["env", "-u", "ROOTLESSKIT_STATE_DIR", *inner]
    given = [h for h in d.directives.flags.get("host", []) if h.startswith("unix://")]
    launch = Launch(
        user=ctx.user.name if ctx.as_root else None,
        uid=ctx.user.uid,
        gid=ctx.user.gid,
        groups=ctx.groups,
        env=env,
        cgroup=cgroup,
        socket=given[0] if given else ctx.socket,  # where dind waits for it to answer
    )
    shown_ports = ", ".join(map(str, ports)) or "none of its own"
    said = (
        (
            f"rootlesskit --net={NET} --mtu={MTU}",
            NET,
            "a user-mode network stack: the nested daemon's traffic leaves through this "
            "container's own sockets",
        ),
        (
            f"rootlesskit --port-driver={PORT_DRIVER}",
            PORT_DRIVER,
            f"ports the nested daemon publishes (and its own: {shown_ports}) listen in this "
            "container's network namespace",
        ),
    )
    for text, value, note in said:
        actions.append(Decision(steps.ROOTLESS, text, value, SATISFIED, note))
    who = f"{ctx.user.name} (uid {ctx.user.uid})"
    decided = {
        "rootless": (
            f"as {who} in rootlesskit, network {NET}, port driver {PORT_DRIVER}"
            + ("" if ctx.as_root else f"; dind itself runs as uid {ctx.user.uid}")
        ),
        "nested_cgroups": nested,
        "limits": limits if limits == LIMITS_OFF else f"{limits} ({why})",
    }
    return RootlessPlan(actions, warnings, [*kit, *inner], launch, decided)


def _dockerd_flags(ctx: Context, d: DaemonFacts, limits: str, proxy: str) -> list[str]:
    """The flags that put dockerd's files in the user's places (when not given already)."""
    flags: list[str] = []
    wanted = (
        ("data-root", ctx.data_root),
        ("exec-root", f"{ctx.runtime_dir}/docker"),
        ("pidfile", f"{ctx.runtime_dir}/docker.pid"),
    )
    for name, value in wanted:
        if not d.directives.given(name):
            flags += [f"--{name}", value]
    if d.evidence.config_text is not None and "config-file" not in d.directives.flags:
        flags += ["--config-file", d.config_path]  # read in both ways, as for a rootful daemon
    if limits == LIMITS_ON:
        flags += [
            "--cgroup-parent",
            f"/{paths.DELEGATED_CGROUP}/{NESTED_GROUP}",
            "--userland-proxy-path",
            proxy,  # dockerd execs it by this path, without a PATH search
        ]
    return flags


def iptables_decision() -> Decision:
    note = "rootlesskit's new network namespace holds no rule to follow"
    return Decision(steps.IPTABLES, "iptables backend", "default", SATISFIED, note)


def mtu_decision() -> Decision:
    note = "slirp4netns's: it re-originates connections, the outer MTU never reaches them"
    return Decision(steps.MTU, "MTU", str(MTU), SATISFIED, note)
