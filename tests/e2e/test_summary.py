"""Issue 20 with the real engine: in dockerd mode the service's log says, in one line
before dockerd's own, what dind decided (TLS, iptables backend, MTU, data root, where
nested cgroups land), exactly as the plan decided it.

Each service first prints ``--dry-run``'s plan into a file, then execs ``dind
dockerd`` in the same container: the summary in ``docker logs`` is compared with that
plan's rows. The network has MTU 1400, so the MTU decision is not the default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Env, Outer
from tests.e2e.helpers import Network, logs, remove_all, run_rm, wait_ready

SUBNET = 22
"""Third octet of this module's network (each module of the suite has its own)."""
PLAN_THEN_START = (
    "dind --dry-run --log-format json dockerd >/plan.json && exec dind {options} dockerd"
)


@pytest.fixture(scope="module")
def services(e2e: Env) -> Iterator[dict[str, Outer]]:
    """The same service at the default verbosity, with -q, and with JSON logs."""
    net = Network.create(e2e, SUBNET, "-o", "com.docker.network.driver.mtu=1400")
    started: dict[str, Outer] = {}
    try:
        for name, options in (("text", ""), ("quiet", "-q"), ("json", "--log-format json")):
            script = PLAN_THEN_START.format(options=options)
            started[name] = Outer.start(
                e2e, "--network", net.name, "--entrypoint", "sh", command=("-c", script)
            )
        for outer in started.values():
            wait_ready(outer)
        yield started
    finally:
        remove_all(list(started.values()))
        net.remove()


def summaries(outer: Outer) -> list[str]:
    return [line for line in logs(outer, tail=400).splitlines() if "dockerd: TLS " in line]


def planned(outer: Outer) -> dict[str, dict[str, Any]]:
    """The last row of each step in the plan --dry-run printed before the start."""
    rows = [json.loads(line) for line in outer.exec("cat", "/plan.json").stdout.splitlines()]
    return {row["step"]: row for row in rows}


def test_the_summary_is_one_line_before_dockerd_and_says_what_the_plan_decided(
    services: dict[str, Outer],
) -> None:
    outer = services["text"]
    (said,) = summaries(outer)
    lines = logs(outer, tail=400).splitlines()
    dockerd_lines = [i for i, line in enumerate(lines) if "level=" in line]
    assert lines.index(said) < min(dockerd_lines)  # before dockerd's first line
    plan = planned(outer)
    tls, iptables, mtu = plan["tls"], plan["iptables"], plan["mtu"]
    assert said.startswith(f"dind: dockerd: TLS on 2376, {tls['target']} (a new CA and keys); ")
    backend, _, why = iptables["note"].partition(": ")
    assert f"; iptables {backend} ({why}); " in said
    assert mtu["decision"] == "1400"
    assert f"; MTU 1400 ({mtu['note']}); " in said
    assert "; nested cgroups inside (" in said


def test_quiet_drops_it_and_json_makes_it_one_object(services: dict[str, Outer]) -> None:
    assert summaries(services["quiet"]) == []
    (record_line,) = summaries(services["json"])
    record = json.loads(record_line)
    assert (record["level"], record["event"]) == ("NOTICE", "decisions")
    plan = planned(services["json"])
    assert record["mtu"] == f"1400 ({plan['mtu']['note']})"
    assert record["tls"] == f"on 2376, {plan['tls']['target']} (a new CA and keys)"
    assert record["message"] == "dockerd: " + "; ".join(
        f"{label} {record[field]}"
        for field, label in (
            ("tls", "TLS"),
            ("iptables", "iptables"),
            ("mtu", "MTU"),
            ("data_root", "data root"),
            ("nested_cgroups", "nested cgroups"),
            ("privilege", "privilege"),
        )
    )
    # --privileged here, and the host lacks CAP_SYS_RESOURCE (dind.abilities)
    assert record["privilege"] == (
        "privileged (nested run yes, build yes, ports yes, limits yes, privileged no)"
    )


def test_with_dockerd_says_it_too(e2e: Env) -> None:
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", "/var/lib/docker", e2e.image,
        "--with-dockerd", "--", "docker", "version", "--format", "{{.Server.Version}}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "dockerd: TLS " in line]
    assert len(said) == 1 and said[0].startswith("dind: dockerd: TLS on 2376, /certs ")
