"""``dind-rootlesskit-docker-proxy``: rootlesskit-docker-proxy, given back its state directory.

A rootless dockerd with delegated cgroups runs without ROOTLESSKIT_STATE_DIR (with
it, dockerd insists on its own rootless mode, whose cgroup driver is ``none``). The
port helper it starts for each published port needs that directory to ask
rootlesskit to listen in the outer network namespace: this wrapper, named by
``--userland-proxy-path``, restores it from DIND_ROOTLESSKIT_STATE_DIR and becomes
the real helper (same arguments, same descriptor 3 on which dockerd waits for
"0\\n" or "1\\n<error>").
"""

from __future__ import annotations

import contextlib
import os
import sys

REAL = "rootlesskit-docker-proxy"
VARIABLE = "DIND_ROOTLESSKIT_STATE_DIR"


def main() -> None:
    state = os.environ.get(VARIABLE)
    if not state:
        message = f"{VARIABLE} is not set: dind-rootlesskit-docker-proxy runs under dind only"
    else:
        os.environ["ROOTLESSKIT_STATE_DIR"] = state
        try:
            os.execvp(REAL, [REAL, *sys.argv[1:]])
        except OSError as err:
            message = f"{REAL}: {err.strerror}"
    with contextlib.suppress(OSError):
        os.write(3, f"1\n{message}".encode())  # what dockerd reads from its port helper
    sys.stderr.write(f"dind-rootlesskit-docker-proxy: {message}\n")
    sys.exit(1)


if __name__ == "__main__":
    main()
