"""Targets that break on purpose, so the tests can show the runner catches each kind
of failure (an exception, a hang, a quadratic parser) and names the input."""

from __future__ import annotations

from tests.fuzz.runner import Target


def crash(data: bytes) -> None:
    if data.startswith(b"FU"):
        raise KeyError(data)


def hang(data: bytes) -> None:
    while data.startswith(b"HANG"):
        pass


def quadratic(data: bytes) -> None:
    """Fine on fuzz-sized inputs; hours on 1 MB."""
    text = data.decode("latin-1")
    for i in range(len(text)):
        text.count(text[i])


TARGETS = {
    "selftest-crash": Target(check=crash, seeds=lambda: [b"FUZZ"]),
    "selftest-hang": Target(check=hang, seeds=lambda: [b"HANG"]),
    "selftest-quadratic": Target(check=quadratic, seeds=lambda: [b"abc"]),
}
