"""What nested Docker can do inside an outer container: one probe, run there, read back.

``PROBE`` is a shell script for the outer container, run once a nested dockerd is
expected (it waits for it): it loads the base image from /images/base.tar, then
tries each thing the privilege levels differ in and reports one ``@@key=value``
line each:

- ``run``: ``docker run --rm IMG true``;
- ``build``: ``docker build`` of a one-step Dockerfile (a RUN in a nested container);
- ``ports``: a nested HTTP server published with ``-p 8080:80``, fetched from the outer
  container at 127.0.0.1:8080;
- ``limit``: ``memory.limit_in_bytes`` (or ``memory.max``) a ``-m 64m`` container sees,
  and ``oom``: the exit status of a 120 MB allocation under ``-m 64m`` and the kernel's
  ``oom_kill`` count of that container's memory cgroup, read inside it afterwards (not
  Docker's OOMKilled: it comes from an event that can land after the exit is recorded,
  and was ``false`` once with exit 137 under load);
- ``privileged``: ``docker run --rm --privileged IMG true``;
- the nested engine's error lines (``@@error=``), for the reason of a failure.

Used by tests/e2e/test_privilege.py (Docker) and tests/runtimes/test_userns.py (LXC,
podman), so every configuration is measured the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NESTED_BASE_TAR = "/images/base.tar"
LIMIT_BYTES = 64 * 1024 * 1024

PROBE = r"""
set +e
tries=0
until docker version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then echo "@@dockerd=no"; exit 0; fi
    sleep 0.5
done
echo "@@dockerd=yes"
img=$(docker load -q -i /images/base.tar | sed -n 's/^Loaded image: //p' | head -n 1)
report() {
    key=$1; shift
    out=$("$@" 2>&1); rc=$?
    echo "@@$key=$rc"
    printf '%s\n' "$out" | grep -E '^(docker: )?Error|error' | head -n 2 |
        sed "s/^/@@error=$key: /"
}
report run docker run --rm "$img" true
mkdir -p /tmp/nested-build
printf 'FROM %s\nRUN echo built > /built\n' "$img" > /tmp/nested-build/Dockerfile
report build docker build -q -t nested-built /tmp/nested-build
cid=$(docker run -d -p 8080:80 "$img" perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 5, ReuseAddr => 1) or die "$!";
    while (my $c = $s->accept) {
        <$c>; print $c "HTTP/1.0 200 OK\r\n\r\nnested-port-ok\n"; close $c
    }' 2>&1)
echo "@@ports_started=$?"
python3 -c '
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        s = socket.create_connection(("127.0.0.1", 8080), 3)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        print("@@ports=" + ("ok" if b"nested-port-ok" in data else "bad-answer"))
        break
    except OSError as err:
        if time.monotonic() > deadline:
            print(f"@@ports=no ({err})")
            break
        time.sleep(0.3)
'
docker rm -f "$cid" >/dev/null 2>&1
limit=$(docker run --rm -m 64m "$img" sh -c \
    'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null ||
     cat /sys/fs/cgroup/memory.max' 2>&1)
echo "@@limit=$(echo "$limit" | tail -n 1)"
oom=$(docker run --rm -m 64m "$img" sh -c '
    dd if=/dev/zero of=/dev/null bs=120M count=1 >/dev/null 2>&1
    status=$?
    kills=$(cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events \
        2>/dev/null | sed -n "s/^oom_kill //p")
    echo "$status $kills"' 2>&1)
echo "@@oom=$(echo "$oom" | tail -n 1)"
report privileged docker run --rm --privileged "$img" true
"""
MARKER = re.compile(r"^@@(\w+)=(.*)$", re.M)


@dataclass
class Nested:
    """The probe's answers (``values``) and the nested engine's error lines by what failed."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    output: str = ""

    @classmethod
    def parse(cls, output: str) -> Nested:
        found = cls(output=output)
        for key, value in MARKER.findall(output):
            if key == "error":
                what, _, line = value.partition(": ")
                found.errors.setdefault(what, []).append(line)
            else:
                found.values.setdefault(key, value)
        return found

    @property
    def dockerd(self) -> bool:
        return self.values.get("dockerd") == "yes"

    @property
    def run(self) -> bool:
        return self.values.get("run") == "0"

    @property
    def build(self) -> bool:
        return self.values.get("build") == "0"

    @property
    def ports(self) -> bool:
        return self.values.get("ports") == "ok"

    @property
    def limits(self) -> bool:
        """``-m 64m`` set the limit and it held: the kernel OOM-killed the 120 MB allocation."""
        return self.values.get("limit") == str(LIMIT_BYTES) and self.values.get("oom") == "137 1"

    @property
    def privileged(self) -> bool:
        return self.values.get("privileged") == "0"

    def answers(self) -> dict[str, bool]:
        """Each ability as dind.privilege names it (its ``nested`` keys in --check's JSON)."""
        return {
            "run": self.run,
            "build": self.build,
            "ports": self.ports,
            "limits": self.limits,
            "privileged": self.privileged,
        }

    def why(self, what: str) -> str:
        return "; ".join(self.errors.get(what, [])) or self.output[-1500:]
