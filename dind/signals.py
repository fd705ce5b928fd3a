"""Set-up is not torn half-way by a signal: terminating signals wait until it is done.

``hold`` blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT for the whole set-up (they
stay pending); afterwards ``arrived`` says whether one came, and dind then exits
128+N with one line instead of starting the command. ``wait`` sleeps while
still answering them. A probe that waits on the outside world (``--ready``: a
network, a file someone else controls) must not hold them: ``answer`` makes each
one interrupt whatever is waiting, as ``Interrupted``. ``_signal`` is the C module
behind ``signal``; the wrapper would cost an ``enum`` import at every container start.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found,unused-ignore]

SIGHUP, SIGINT, SIGQUIT, SIGTERM = 1, 2, 3, 15
TERMINATING = frozenset({SIGHUP, SIGINT, SIGQUIT, SIGTERM})
NAMES = {SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGTERM: "SIGTERM"}


def hold() -> set[int]:
    """Block the terminating signals; return the mask to give the command back."""
    old: set[int] = set(_signal.pthread_sigmask(_signal.SIG_BLOCK, TERMINATING))
    return old


def arrived() -> int | None:
    """A terminating signal that came while held (the lowest number), or None."""
    pending = sorted(set(_signal.sigpending()) & TERMINATING)
    return pending[0] if pending else None


def release(old: set[int]) -> None:
    """Give the command the mask dind started with.

    SIGINT goes back to its default first: unblocked with Python's handler still
    in place, a late one would surface as a KeyboardInterrupt traceback.
    """
    _signal.signal(SIGINT, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, old)


class Interrupted(BaseException):
    """A terminating signal arrived while dind was waiting on something outside itself.

    A BaseException, like KeyboardInterrupt: no ``except Exception`` of a library
    in between swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def answer() -> None:
    """Stop holding the terminating signals: from now on each raises ``Interrupted``
    (one already pending does so at once)."""
    for signum in TERMINATING:
        _signal.signal(signum, _interrupt)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, TERMINATING)


def wait(seconds: float) -> int | None:
    """Sleep up to ``seconds`` unless a held terminating signal arrives: its number, or None.

    The signal stays pending, so ``arrived`` still sees it afterwards.
    """
    if seconds <= 0:
        return arrived()
    info = _signal.sigtimedwait(TERMINATING, seconds)
    if info is None:
        return None
    import os

    os.kill(os.getpid(), info.si_signo)  # blocked: pending again
    return int(info.si_signo)


def name(signum: int) -> str:
    return NAMES.get(signum, f"signal {signum}")
