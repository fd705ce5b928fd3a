#!/bin/sh
# Runs as dind's COMMAND in a pure cgroup v2 view (tests/e2e/test_image.py):
# records what dind's nesting step left, then starts a nested dockerd, runs a
# nested container and records what it sees. Results go to $OUT for the host.
set -eu
out=${OUT:-/out}
cg=/sys/fs/cgroup

# Before anything else starts: which processes sit in the root group, which in init.
cat "$cg/cgroup.procs" >"$out/root.procs"
if [ -e "$cg/init/cgroup.procs" ]; then cat "$cg/init/cgroup.procs" >"$out/init.procs"; fi
cat "$cg/cgroup.controllers" >"$out/controllers"
cat "$cg/cgroup.subtree_control" >"$out/subtree_control"
cat /proc/self/mountinfo >"$out/mountinfo"

dockerd >"$out/dockerd.log" 2>&1 &
dockerd_pid=$!
tries=0
until docker version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "v2-check: nested dockerd did not start" >&2
        exit 1
    fi
    sleep 0.2
done
docker info --format '{{json .}}' >"$out/info.json"
docker load -q -i /images/base.tar >/dev/null
image=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | head -n 1)
docker run --rm "$image" sh -c 'ls /sys/fs/cgroup; echo; cat /proc/self/cgroup' \
    >"$out/nested.txt"
kill "$dockerd_pid"
wait "$dockerd_pid" || true
echo finished >"$out/status"
