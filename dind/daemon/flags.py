"""dockerd's command line and daemon.json, read for what dind's steps must know. Pure.

dind only adds a flag dockerd does not already have, from its arguments or its
configuration file: dockerd refuses a directive given both ways ("the following
directives are specified both as a flag and in the configuration file").
"""

from __future__ import annotations

import json

from dind import paths, steps
from dind.errors import SetupError, UsageError
from dind.record import Record

MAX_CONFIG = 1 << 20
MAX_DEPTH = 32
"""daemon.json is a flat object with a few nested maps; deeper is not a daemon.json."""

VALUE_FLAGS = {
    "-H": "host",
    "--host": "host",
    "-p": "pidfile",
    "--pidfile": "pidfile",
    "--data-root": "data-root",
    "-g": "data-root",
    "--graph": "data-root",
    "--exec-root": "exec-root",
    "--mtu": "mtu",
    "-s": "storage-driver",
    "--storage-driver": "storage-driver",
    "--config-file": "config-file",
    "--tlscacert": "tlscacert",
    "--tlscert": "tlscert",
    "--tlskey": "tlskey",
    "--cgroup-parent": "cgroup-parent",
    "--default-network-opt": "default-network-opt",
    "--exec-opt": "exec-opt",
    "--userland-proxy-path": "userland-proxy-path",
}
"""The flags dind reads, by dockerd's spellings, to the name of the directive they set."""
BOOL_FLAGS = {"--tls": "tls", "--tlsverify": "tlsverify", "--iptables": "iptables"}
CONFIG_KEYS = {
    "hosts": "host",
    "pidfile": "pidfile",
    "data-root": "data-root",
    "graph": "data-root",
    "exec-root": "exec-root",
    "mtu": "mtu",
    "storage-driver": "storage-driver",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "cgroup-parent": "cgroup-parent",
    "iptables": "iptables",
    "default-network-opts": "default-network-opt",
    "exec-opts": "exec-opt",
    "userland-proxy-path": "userland-proxy-path",
}
"""daemon.json keys, to the same directive names."""


class Directives(Record):
    """What dockerd was told, by flags and by daemon.json, under one vocabulary."""

    __slots__ = ("config", "flags")

    def __init__(self, flags: dict[str, list[str]], config: dict[str, object]) -> None:
        self.flags = flags
        self.config = config

    def given(self, name: str) -> bool:
        """Set by a flag or by daemon.json: dind must not add it."""
        return name in self.flags or any(CONFIG_KEYS.get(k) == name for k in self.config)

    def value(self, name: str) -> str | None:
        """The value dockerd will use (the last flag wins; daemon.json otherwise)."""
        if name in self.flags:
            return self.flags[name][-1]
        for key, directive in CONFIG_KEYS.items():
            if directive == name and key in self.config:
                value = self.config[key]
                if isinstance(value, list):
                    return str(value[-1]) if value else None
                return str(value).lower() if isinstance(value, bool) else str(value)
        return None


def parse_flags(args: list[str]) -> dict[str, list[str]]:
    """The directives dind cares about in dockerd's arguments (``args`` without argv[0]).

    pflag spellings: ``--name value``, ``--name=value``, ``-H value``, ``-Hvalue``;
    booleans ``--tls`` or ``--tls=false``. A value flag at the very end is a usage error.
    """
    found: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in BOOL_FLAGS:
            found.setdefault(BOOL_FLAGS[name], []).append(value.lower() if eq else "true")
            continue
        if name not in VALUE_FLAGS and len(arg) > 2 and arg[:2] in VALUE_FLAGS and arg[1] != "-":
            name, eq, value = arg[:2], "=", arg[2:].removeprefix("=")  # -Hunix:///x
        if name not in VALUE_FLAGS:
            continue
        if not eq:
            if i >= len(args):
                raise UsageError(f"dockerd flag {name} needs a value")
            value = args[i]
            i += 1
        found.setdefault(VALUE_FLAGS[name], []).append(value)
    return found


def _depth(value: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a decoded JSON value, stopping past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
    return deepest


def parse_config(text: str | None, path: str) -> dict[str, object]:
    """daemon.json as a dict ({} when absent); a malformed one stops dind with one line."""
    if text is None or not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise SetupError(f"{path}: not valid JSON: {err}", step=steps.HOSTS) from None
    if not isinstance(doc, dict):
        raise SetupError(f"{path}: not a JSON object", step=steps.HOSTS)
    if _depth(doc) > MAX_DEPTH:
        raise SetupError(f"{path}: nested deeper than {MAX_DEPTH} levels", step=steps.HOSTS)
    return doc


def config_path(flags: dict[str, list[str]]) -> str:
    given = flags.get("config-file")
    return given[-1] if given else paths.DAEMON_JSON
