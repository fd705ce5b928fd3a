"""What nested Docker can do at the privilege found, and what is missing for the rest. Pure.

Each nested ability (run, build, published ports, resource limits, nested
``--privileged``) is yes/no/unknown with the reason and the requirements
(dind.requirements) whose absence explains a no; ``host`` marks what the host itself
prevents. The facts and the level are dind.privilege's.
"""

from __future__ import annotations

from dind import requirements
from dind.privilege import NONE, PRIVILEGED, USER_NAMESPACE, Privilege, level
from dind.record import Record

RUN = "run"
BUILD = "build"
PORTS = "ports"
LIMITS = "limits"
NESTED_PRIVILEGED = "privileged"
ABILITIES = (RUN, BUILD, PORTS, LIMITS, NESTED_PRIVILEGED)
"""What nested Docker can do, in the order ``--check`` says it."""

FILTER_REFUSES = ("EPERM", "EACCES", "ENOSYS")
"""How a seccomp filter answers a call it refuses (Docker: EPERM; Proxmox's keyctl: ENOSYS)."""


class Ability(Record):
    """One thing nested Docker may do: yes (True), no (False) or unknown (None), and why.

    ``missing`` are requirement keys (dind.requirements) whose grant would change a no;
    ``host`` says the host itself prevents it (no outer option helps).
    """

    __slots__ = ("can", "host", "missing", "name", "why")

    def __init__(
        self,
        name: str,
        can: bool | None,
        why: str,
        missing: tuple[str, ...] = (),
        host: bool = False,
    ) -> None:
        self.name = name
        self.can = can
        self.why = why
        self.missing = missing
        self.host = host

    @property
    def answer(self) -> str:
        return {True: "yes", False: "no", None: "unknown"}[self.can]


class Blocker(Record):
    """A missing piece: what is missing, what it breaks, and the requirement that grants it
    (``key``; empty when no outer grant is the fix), with the missing ``items`` where the
    requirement grants item by item (device rules)."""

    __slots__ = ("items", "key", "name", "what")

    def __init__(self, name: str, what: str, key: str, items: tuple[str, ...] = ()) -> None:
        self.name = name
        self.what = what
        self.key = key
        self.items = items


class Assessment(Record):
    """The level, its evidence, each ability, and what blocks a nested run."""

    __slots__ = ("abilities", "blockers", "level", "why")

    def __init__(
        self, level: str, why: str, abilities: list[Ability], blockers: list[Blocker]
    ) -> None:
        self.level = level
        self.why = why
        self.abilities = abilities
        self.blockers = blockers

    def ability(self, name: str) -> Ability:
        return next(a for a in self.abilities if a.name == name)


def _rule(text: str) -> tuple[str, str, str, str] | None:
    """A devices cgroup rule ``TYPE MAJOR:MINOR ACCESS`` as its four parts; None if odd."""
    words = text.split()
    if len(words) != 3 or ":" not in words[1]:
        return None
    major, _, minor = words[1].partition(":")
    return words[0], major, minor, words[2]


def covers(granted: str, wanted: str) -> bool:
    """Does the devices cgroup exception ``granted`` include all of ``wanted``? (v1: a child
    may only be given what one exception of its parent covers.)"""
    have, need = _rule(granted), _rule(wanted)
    if have is None or need is None:
        return False
    return (
        have[0] in ("a", need[0])
        and have[1] in ("*", need[1])
        and have[2] in ("*", need[2])
        and set(need[3]) <= set(have[3])
    )


def uncovered(devices: tuple[str, ...] | None, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The rules of ``wanted`` no line of a devices.list covers (none when it is unknown)."""
    if devices is None:
        return ()
    return tuple(w for w in wanted if not any(covers(line, w) for line in devices))


def refused(answer: str | None) -> bool:
    """A probe's answer says a filter refused the call."""
    return answer in FILTER_REFUSES


def _run_blockers(
    p: Privilege, apparmor_denies: bool, can_mount: bool | None, dockerd_stops: str | None
) -> list[Blocker]:
    """What stops every nested container (and so builds, ports and limits) from starting."""
    found: list[Blocker] = []
    if p.has("CAP_SYS_ADMIN") is False:
        found.append(
            Blocker("cap_sys_admin", "CAP_SYS_ADMIN is not effective", requirements.SYS_ADMIN.key)
        )
    if p.has("CAP_NET_ADMIN") is False:
        found.append(
            Blocker(
                "cap_net_admin",
                "CAP_NET_ADMIN is not effective: a nested dockerd exits at start",
                requirements.NET_ADMIN.key,
            )
        )
    if p.bounding is not None:
        lacking = [c for c in requirements.NESTED_CAPABILITIES if c not in p.bounding]
        if lacking:
            found.append(
                Blocker(
                    "nested_capabilities",
                    f"the bounding set lacks {' '.join(lacking)}, which nested containers get "
                    "by default: runc fails 'unable to apply caps'",
                    requirements.NESTED_CAPS.key,
                )
            )
    lacking_devices = uncovered(p.devices, requirements.NESTED_DEVICE_RULES)
    if lacking_devices and not p.user_ns:  # runc leaves the devices cgroup alone in one
        found.append(
            Blocker(
                "nested_devices",
                f"the devices cgroup lacks {', '.join(lacking_devices)}, which nested "
                "containers get by default: runc fails 'devices.allow: operation not permitted'",
                requirements.NESTED_DEVICES.key,
                lacking_devices,
            )
        )
    if p.keyring not in (None, "ok", "ENOSYS"):
        found.append(
            Blocker(
                "keyring",
                f"keyctl is refused ({p.keyring}): runc fails 'unable to join session keyring'",
                requirements.SECCOMP.key,
            )
        )
    if refused(p.pivot_root) and can_mount:  # EPERM without the right to mount says nothing
        found.append(
            Blocker(
                "pivot_root",
                f"pivot_root is refused ({p.pivot_root}): runc fails 'error jailing process "
                "inside rootfs'",
                requirements.SECCOMP.key,
            )
        )
    if apparmor_denies:
        found.append(
            Blocker(
                "apparmor",
                f"the AppArmor profile {p.label} denies mount(2)",
                requirements.APPARMOR.key,
            )
        )
    if dockerd_stops:
        found.append(
            Blocker(
                "ip_forward",
                f"{dockerd_stops}: a nested dockerd stops at start ('Enabling IP forwarding "
                "failed')",
                "",
            )
        )
    if p.user_ns and p.cgroup_owner not in (None, "0"):
        found.append(
            Blocker(
                "cgroup_delegation",
                f"this container's cgroups belong to UID {p.cgroup_owner} as seen here, not to "
                "its root: a nested runc cannot create groups ('mkdir /sys/fs/cgroup/...: "
                "permission denied')",
                requirements.CGROUP_DELEGATION.key,
            )
        )
    return found


def _listed(names: tuple[str, ...], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return " ".join(names[:shown]) + more


def _nested_privileged(p: Privilege, lvl: str, run: bool | None) -> Ability:
    """A nested ``--privileged`` container: every device (runc sets the devices cgroup first),
    every capability, a sysfs of its own."""
    if run is False:
        return Ability(NESTED_PRIVILEGED, False, "nested containers cannot run at all")
    unbounded = p.unbounded
    if p.user_ns:
        if unbounded:
            return Ability(
                NESTED_PRIVILEGED,
                False,
                f"the bounding set lacks {_listed(unbounded)}: runc fails 'unable to apply caps'",
                (requirements.ALL_CAPS.key,),
            )
        if p.net_owner == "ancestor":
            return Ability(
                NESTED_PRIVILEGED,
                False,
                "the network namespace belongs to an ancestor user namespace: sysfs cannot be "
                "mounted for the nested container ('mount sysfs: operation not permitted')",
            )
        return Ability(
            NESTED_PRIVILEGED,
            None if p.net_owner is None or unbounded is None else True,
            "privileged within this user namespace only: no host devices, no host-wide sysctls"
            + ("" if p.net_owner is not None else "; whether sysfs can be mounted is unknown"),
        )
    reasons: list[str] = []
    missing: list[str] = []
    if p.all_devices is False:
        reasons.append(
            "the devices cgroup does not allow every device: runc fails "
            "'devices.allow: operation not permitted'"
        )
        missing.append(requirements.ALL_DEVICES.key)
    host = False
    if unbounded:
        host = lvl == PRIVILEGED
        lacks = f"the bounding set lacks {_listed(unbounded)}: runc fails 'unable to apply caps'"
        if host:
            lacks = (
                "the host itself lacks capabilities: "
                + lacks
                + " (a nested runtime that drops them, such as a runc wrapper, works around it)"
            )
        else:
            missing.append(requirements.ALL_CAPS.key)
        reasons.append(lacks)
    if reasons:
        return Ability(NESTED_PRIVILEGED, False, "; then ".join(reasons), tuple(missing), host)
    if unbounded is None or p.all_devices is None:
        if lvl == PRIVILEGED:
            return Ability(
                NESTED_PRIVILEGED, True, "a privileged container (the devices cgroup is v2's)"
            )
        return Ability(
            NESTED_PRIVILEGED, None, "the bounding set or the devices cgroup could not be read"
        )
    return Ability(NESTED_PRIVILEGED, True, "every capability and every device are allowed")


def assess(
    p: Privilege,
    *,
    apparmor_denies: bool = False,
    limits: bool | None = True,
    can_mount: bool | None = None,
    dockerd_stops: str | None = None,
) -> Assessment:
    """The level and what nested Docker can do at it.

    ``apparmor_denies``: the AppArmor profile denies mount (dind.check.env decides it);
    ``limits``: a memory controller is there for nested containers (None: unknown);
    ``can_mount``: mount(2) is allowed at all (dind.check.env), so a refused pivot_root
    can only be a filter's doing; ``dockerd_stops``: why a nested dockerd cannot start for
    want of a network sysctl (dind.check.env), or None.
    """
    lvl, why = level(p)
    blockers = _run_blockers(p, apparmor_denies, can_mount, dockerd_stops)
    if blockers:
        run: bool | None = False
        run_why = "; ".join(b.what for b in blockers)
    elif p.effective is None:
        run, run_why = None, "the capabilities could not be read"
    else:
        run = True
        run_why = "CAP_SYS_ADMIN and CAP_NET_ADMIN, the nested default capabilities"
        if p.keyring is None or p.pivot_root is None:
            run_why += "; the seccomp filter was not probed"
        else:
            run_why += "; keyctl and pivot_root are allowed"
        if p.user_ns:
            run_why += "; this container's cgroups are its own"
    missing = tuple(dict.fromkeys(b.key for b in blockers if b.key))
    abilities = [
        Ability(RUN, run, run_why, missing),
        Ability(BUILD, run, "a build runs each step in a nested container", missing),
        Ability(
            PORTS,
            run,
            "a nested dockerd publishes with its NAT rules and docker-proxy"
            if run
            else "needs a nested dockerd that runs containers",
            missing,
        ),
    ]
    if run is False:
        abilities.append(Ability(LIMITS, False, "no nested container runs", missing))
    elif limits is False:
        abilities.append(
            Ability(LIMITS, False, "no memory controller is available to nested containers")
        )
    else:
        abilities.append(
            Ability(
                LIMITS,
                None if limits is None or run is None else True,
                "nested containers get their own groups under this container's",
            )
        )
    abilities.append(_nested_privileged(p, lvl, run))
    return Assessment(lvl, why, abilities, blockers)


def cannot(assessment: Assessment) -> list[str]:
    """What dind cannot fix from inside at this level, one phrase each (the start warning).

    Only for a container that runs nested Docker otherwise: a blocked run is ``--check``'s
    to explain, and a privileged container has nothing to say.
    """
    if assessment.level in (PRIVILEGED, NONE):
        return []
    if assessment.ability(RUN).can is False:
        return []
    said = []
    nested = assessment.ability(NESTED_PRIVILEGED)
    if nested.can is False:
        said.append(
            f"nested --privileged containers fail here: {nested.why} (dind --check says more)"
        )
    if assessment.level == USER_NAMESPACE:
        said.append(
            "this is a user namespace: nested containers get no host devices, no host-wide "
            "sysctls and no AppArmor profile"
        )
    return said


def said(assessment: Assessment) -> str:
    """The level and the nested answers in a few words (the start-up summary's ``privilege``)."""
    answers = ", ".join(f"{a.name} {a.answer}" for a in assessment.abilities)
    return f"{assessment.level} (nested {answers})"
