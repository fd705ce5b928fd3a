"""Progress on a terminal: one line per blob being downloaded, and a total line.

Drawn only when stderr is a terminal (never in CI logs), ten times a second,
with plain ANSI cursor movements. Log records are printed only before the downloads
start and after ``close`` has cleared the block, so the two never interleave.
"""

from __future__ import annotations

import threading
from typing import TextIO

INTERVAL = 0.1


def human(n: float) -> str:
    """Bytes in the units docker shows (decimal: kB, MB, GB)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Thread-safe byte counters per blob; draws itself when ``enabled``."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.sizes: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._last = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def expect(self, digest: str, size: int) -> None:
        with self._lock:
            self.sizes[digest] = size
            self.done.setdefault(digest, 0)

    def update(self, digest: str, delta: int) -> None:
        """The ``blobs.Progress`` callback."""
        with self._lock:
            self.done[digest] = self.done.get(digest, 0) + delta
            if self.enabled and self._ticker is None:
                # Redraws also while no byte arrives, so a stalled blob shows where it is.
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()

    def _tick(self) -> None:
        stop = self._stop
        while not stop.wait(INTERVAL):
            with self._lock:
                if self.enabled:
                    self._draw()

    def lines(self) -> list[str]:
        """The block as text (without drawing): active blobs, then the total."""
        active = [
            f"  {d.partition(':')[2][:12]}  {human(self.done[d])} / {human(size)}"
            for d, size in self.sizes.items()
            if 0 < self.done.get(d, 0) < size
        ]
        total = sum(self.sizes.values())
        have = sum(min(self.done.get(d, 0), s) for d, s in self.sizes.items())
        complete = sum(1 for d, s in self.sizes.items() if self.done.get(d, 0) >= s)
        return [
            *active,
            f"  total {human(have)} / {human(total)} ({complete}/{len(self.sizes)} blobs)",
        ]

    def _draw(self) -> None:
        self._clear()
        text = self.lines()
        self.stream.write("\n".join(text) + "\n")
        self.stream.flush()
        self._drawn = len(text)

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def pause(self) -> None:
        """Stop drawing and clear the block (log records may follow); ``update`` resumes."""
        self._stop.set()
        ticker = self._ticker
        if ticker is not None:
            ticker.join()
        with self._lock:
            if self.enabled:
                self._clear()
                self.stream.flush()
            self._ticker = None
            self._stop = threading.Event()

    def close(self) -> None:
        self.pause()
        with self._lock:
            self.enabled = False
