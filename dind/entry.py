"""The console script's entry: terminating signals are held before the rest of dind loads.

A SIGINT while dind imports its own modules would otherwise end as a
KeyboardInterrupt traceback, a SIGTERM as a silent death; held, either is answered
once set-up is done (``dind.signals``). Kept apart from ``dind.main`` so that
importing that module (tests do) blocks nothing.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found,unused-ignore]

TERMINATING = {1, 2, 3, 15}
"""SIGHUP, SIGINT, SIGQUIT, SIGTERM (``dind.signals.TERMINATING``; not imported yet)."""


def main() -> None:
    mask = set(_signal.pthread_sigmask(_signal.SIG_BLOCK, TERMINATING))
    from dind.main import main as dind_main

    dind_main(mask)
