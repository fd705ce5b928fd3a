"""Loading frozen images into a real engine, exactly as the README says to."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.dockerd import Dockerd


def load(d: Dockerd, directory: Path) -> str:
    """`tar -C DIR -c . | docker load`; returns docker's output."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        out = d.docker("load", stdin=tar.stdout).stdout
    finally:
        tar.stdout.close()
        assert tar.wait() == 0
    return out


def try_load(d: Dockerd, directory: Path) -> subprocess.CompletedProcess[str]:
    """The same, without raising: for what the engine refuses."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        done = d.docker("load", stdin=tar.stdout, check=False)
    finally:
        tar.stdout.close()
        tar.wait()
    return done
