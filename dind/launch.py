"""How the daemon's process starts when it is not like dind's own: the rootless daemon's
user, environment, cgroup and socket. Planned by ``dind.rootless.plan``, used by
``dind.init``/``dind.command`` (``become``) and ``dind.daemon.supervise``."""

from __future__ import annotations

from dind.record import Record


class Launch(Record):
    """How the daemon's process starts when it is not like dind's own (the rootless daemon):
    as ``user`` (uid, gid, groups; None: dind is that user already), with ``env`` added,
    moved into the cgroup ``cgroup`` first; it answers at ``socket``."""

    __slots__ = ("cgroup", "env", "gid", "groups", "socket", "uid", "user")

    def __init__(
        self,
        *,
        user: str | None,
        uid: int,
        gid: int,
        groups: tuple[int, ...],
        env: dict[str, str],
        cgroup: str | None,
        socket: str,
    ) -> None:
        self.user = user
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.env = env
        self.cgroup = cgroup
        self.socket = socket

    def describe(self) -> str:
        who = f"as {self.user} (uid {self.uid})" if self.user else f"as uid {self.uid}"
        where = f", in the cgroup {self.cgroup}" if self.cgroup else ""
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"{who}{where}, with {env}"

    def fields(self) -> dict[str, object]:
        return {
            "user": self.user,
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "env": self.env,
            "cgroup": self.cgroup,
            "socket": self.socket,
        }
