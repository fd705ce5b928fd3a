"""``dind --recipe RUNTIME``: the least-privilege outer options for a runtime, to paste.

Rendered from dind.requirements (what each requirement is, why, and each runtime's
words for it): docker and podman get one shell line of options, LXC its config keys,
systemd-nspawn a .nspawn file, Kubernetes a pod fragment. Comment lines (``#``) say
what the options give, the Pod Security level or policy they need, and what they
cannot give (nested privileged containers need every capability and every device:
no narrower grant exists). Runs anywhere: no detection, no root, no mounts.
"""

from __future__ import annotations

from dind import requirements
from dind.requirements import (
    APPARMOR,
    DOCKER,
    KUBERNETES,
    LXC,
    NESTED_CAPS,
    NESTED_DEVICES,
    NET_ADMIN,
    NSPAWN,
    PODMAN,
    SECCOMP,
    SECCOMP_FILE,
    SYS_ADMIN,
)


def _comment(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, 92, initial_indent="# ", subsequent_indent="# ")


def _profile_lines(where: str) -> list[str]:
    from dind.seccomp import ADDITIONS

    calls = ", ".join(name for extra in ADDITIONS for name in extra.names)
    return [
        *_comment(f"dind's seccomp profile is Docker's default plus {calls}; make it with"),
        f"#   docker run --rm IMAGE --seccomp-profile > {where}",
    ]


def _cannot() -> list[str]:
    return _comment(
        "Nested docker run, build, published ports and resource limits work. Nested privileged "
        "containers do not: they need every capability and every device, which only a "
        "privileged outer container has; dind --check says so inside, and dind warns at start."
    )


def _options(runtime: str, wanted: tuple[requirements.Requirement, ...]) -> str:
    parts = []
    for requirement in wanted:
        option = requirement.option(runtime)
        if option and option.startswith("--"):
            parts.append(option)
    return " ".join(parts)


def docker() -> list[str]:
    wanted = (SYS_ADMIN, NET_ADMIN, SECCOMP, APPARMOR)
    return [
        *_comment(
            "Docker, without a privileged container: root inside is root outside, but with "
            "CAP_SYS_ADMIN and CAP_NET_ADMIN added to Docker's default capabilities, Docker's "
            "seccomp filter plus the four calls a nested runtime makes, Docker's masked and "
            "read-only paths (dind makes /proc/sys/net writable: the container's own network "
            "namespace), and only Docker's default devices. apparmor=unconfined matters on "
            "AppArmor hosts only (docker-default denies mount); /var/lib/docker is the "
            "image's volume."
        ),
        *_profile_lines(SECCOMP_FILE),
        *_cannot(),
        _options(DOCKER, wanted),
    ]


def podman() -> list[str]:
    wanted = (SYS_ADMIN, NET_ADMIN, NESTED_CAPS, NESTED_DEVICES, SECCOMP, APPARMOR)
    return [
        *_comment(
            "podman (as root), without a privileged container: podman's default capabilities "
            f"lack {', '.join(requirements.PODMAN_DROPS)} and its devices cgroup "
            f"{', '.join(requirements.PODMAN_DEVICE_RULES)} (/dev/console), which nested "
            "containers get by default, so they are added with CAP_SYS_ADMIN and "
            "CAP_NET_ADMIN; Docker's seccomp filter plus the four calls a nested runtime "
            "makes; podman's masked and read-only paths; no host devices."
        ),
        *_profile_lines(SECCOMP_FILE),
        *_cannot(),
        _options(PODMAN, wanted),
    ]


LXC_KEYS = (
    "lxc.include = /usr/share/lxc/config/common.conf",
    "lxc.include = /usr/share/lxc/config/userns.conf",
    "lxc.idmap = u 0 100000 65536",
    "lxc.idmap = g 0 100000 65536",
    "lxc.apparmor.profile = generated",
    "lxc.apparmor.allow_nesting = 1",
    "lxc.mount.auto = sys:mixed",
)
"""An unprivileged container with nesting, as Proxmox VE makes one (unprivileged: 1,
features: nesting=1): the tested configuration."""


def lxc() -> list[str]:
    return [
        *_comment(
            "LXC: an unprivileged container (root inside is UID 100000 outside), nesting "
            "allowed as Proxmox VE sets it up (unprivileged: 1, features: nesting=1). LXC "
            "delegates the container's cgroup to it and its seccomp profile allows keyctl; "
            "the user namespace keeps every capability inside it. The rootfs must be owned "
            "by the mapped IDs."
        ),
        *_comment(
            "Nested docker run, build, published ports and resource limits work; nested "
            "privileged containers are privileged within the user namespace only: no host "
            "devices, no host-wide sysctls, no AppArmor profile (dind skips securityfs)."
        ),
        *LXC_KEYS,
    ]


def nspawn() -> list[str]:
    filter_option = SECCOMP.option(NSPAWN) or ""
    return [
        *_comment(
            "systemd-nspawn, with its default capabilities (CAP_SYS_ADMIN among them): "
            "--private-network gives CAP_NET_ADMIN over the container's own network, and "
            "nspawn's seccomp filter needs the keyring calls runc makes. nspawn mounts the "
            "cgroups and /proc/sys read-only: dind remounts the cgroups and /proc/sys/net. As "
            "a .nspawn file (/etc/systemd/nspawn/NAME.nspawn), or on the command line: "
            f"systemd-nspawn --private-network {filter_option} --bind=DIR:/var/lib/docker"
        ),
        *_cannot(),
        "[Exec]",
        "SystemCallFilter=" + filter_option.split("=", 1)[1],
        "[Network]",
        "Private=yes",
        "[Files]",
        "Bind=/srv/docker:/var/lib/docker",
    ]


def kubernetes() -> list[str]:
    caps = [c.removeprefix("CAP_") for c in (SYS_ADMIN.what, NET_ADMIN.what)]
    caps += list(requirements.PODMAN_DROPS)
    return [
        *_comment(
            "Kubernetes: a pod in a user namespace (hostUsers: false; root inside is not root "
            "outside), CAP_SYS_ADMIN and CAP_NET_ADMIN added within it (with the capabilities "
            "nested containers get by default, which CRI-O's default set lacks), dind's "
            "seccomp profile as a Localhost profile, AppArmor unconfined (docker-default "
            "denies mount). No privileged container, no host devices."
        ),
        *_comment(
            "Needs: Kubernetes >= 1.33 (user namespaces on by default; 1.30-1.32 with the "
            "UserNamespacesSupport feature gate), containerd >= 2.1 with runc >= 1.2, Linux "
            ">= 6.3, cgroup v2, and a RuntimeClass 'dind' whose containerd handler has "
            "cgroup_writable = true: runc gives a user-namespaced container its cgroup only "
            "when the cgroup filesystem is writable (without it every nested run fails, and "
            "dind --check in the pod says privilege/cgroup_delegation)."
        ),
        *_comment(
            "Pod Security: the namespace needs pod-security.kubernetes.io/enforce: privileged "
            "(added capabilities and AppArmor Unconfined are outside baseline), though the "
            "container is not privileged. Without user namespaces on the nodes, drop "
            "hostUsers and runtimeClassName: dind then remounts the cgroups itself (root "
            "inside is then root outside)."
        ),
        f"# On every node: dind --seccomp-profile > /var/lib/kubelet/seccomp/{SECCOMP_FILE}",
        *_cannot(),
        "spec:",
        "  hostUsers: false",
        "  runtimeClassName: dind",
        "  containers:",
        "    - name: dind",
        "      image: IMAGE",
        "      securityContext:",
        "        capabilities:",
        f"          add: [{', '.join(caps)}]",
        "        seccompProfile:",
        "          type: Localhost",
        f"          localhostProfile: {SECCOMP_FILE}",
        "        appArmorProfile:",
        "          type: Unconfined",
        "      volumeMounts: [{name: docker, mountPath: /var/lib/docker}]",
        "  volumes: [{name: docker, emptyDir: {}}]",
    ]


RECIPES = {DOCKER: docker, PODMAN: podman, LXC: lxc, NSPAWN: nspawn, KUBERNETES: kubernetes}
"""Each runtime's recipe."""


def rootless(runtime: str) -> list[str]:
    """The rootless daemon's recipe (``--recipe RUNTIME --rootless``, README "Rootless"):
    no added capability; what rootlesskit needs to make its namespaces as the user."""
    lines = [
        *_comment(
            "The rootless daemon (DIND_ROOTLESS=1): dockerd runs as uid 1000 in rootlesskit, "
            "so nested root is uid 1000 outside, and no capability is added. What rootlesskit "
            "needs as that user: namespaces and mounts (a seccomp filter that allows them "
            "without CAP_SYS_ADMIN), no AppArmor profile that denies mount (AppArmor hosts "
            "only), a fully visible /proc (nested PID namespaces mount their own), and "
            "/dev/net/tun for slirp4netns. Measured with Docker; dind --check --rootless "
            "says what is missing inside."
        ),
        *_comment(
            "Nested docker run, build and published ports work. Resource limits need a cgroup "
            "v2 host and a privileged container (dind gives the user a cgroup subtree); "
            "without them dind says so at start."
        ),
    ]
    if runtime in (DOCKER, PODMAN):
        return [*lines, f"{_options(runtime, requirements.ROOTLESS)} -e DIND_ROOTLESS=1"]
    for requirement in requirements.ROOTLESS:
        lines += _comment(f"{requirement.what}: {requirements.fix(runtime, (requirement.key,))}")
    return [*lines, *_comment("and DIND_ROOTLESS=1 in the container's environment")]


def render(runtime: str, rootless_daemon: bool = False) -> str:
    """The recipe for ``runtime`` (one of ``requirements.RUNTIMES``), as printed; with
    ``rootless_daemon``, the rootless daemon's (``--recipe RUNTIME --rootless``)."""
    if rootless_daemon:
        return "\n".join(rootless(runtime)) + "\n"
    return "\n".join(RECIPES[runtime]()) + "\n"
