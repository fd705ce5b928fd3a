"""Capture this environment for ``--check``: ``python -m dind.check.capture DIR``.

Writes what ``gather`` reads (files at their own paths under DIR, the rest in
DIR/probes.json), so a report can be reproduced elsewhere: the fixtures under
tests/fixtures/check/ were made this way, and a bug report can attach one.
Reads only; the capture holds process names and command lines, mount paths and
kernel options of this machine.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from dind.check.snapshot import gather, save
    from dind.settings import Settings

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m dind.check.capture DIR\n")
        return 2
    os.makedirs(args[0], exist_ok=True)
    save(gather(Settings(command=[], check=True)), args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
