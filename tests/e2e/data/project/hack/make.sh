#!/bin/sh
# Stand-in for moby's hack/make.sh, run as `docker run --privileged IMAGE
# hack/make.sh binary` with bundles/ bind-mounted (what `make binary` did).
# Like the real integration bundles it starts its own dockerd inside the dev
# container, then runs each named bundle script from hack/make/.
set -eu
cd "$(dirname "$0")/.."
export VERSION
VERSION=$(cat VERSION)
export DEST_ROOT="$PWD/bundles/$VERSION"
mkdir -p "$DEST_ROOT"

dockerd >"$DEST_ROOT/dockerd.log" 2>&1 &
dockerd_pid=$!
trap 'kill "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" || true' EXIT
tries=0
until docker version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "make.sh: dockerd did not start" >&2
        exit 1
    fi
    sleep 0.2
done
# The build image: no registry here, so a saved one (mounted by the caller).
docker load -q -i "${BUILD_IMAGE_TAR:-/images/base.tar}" >/dev/null
BUILD_IMAGE=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | head -n 1)
export BUILD_IMAGE

for bundle in "$@"; do
    echo "---> Making bundle: $bundle (in $DEST_ROOT/$bundle)"
    DEST="$DEST_ROOT/$bundle"
    export DEST
    mkdir -p "$DEST"
    sh "hack/make/$bundle"
done
