"""The shared fuzz runner: ``python -m tests.fuzz.runner {fuzz|scale|list} [TARGET]``.

``fuzz TARGET --seconds S --work DIR`` runs atheris (libFuzzer, coverage-guided) on
one target for S seconds: seeds are written to DIR/seeds at run time (from
tests/fixtures and the test images; nothing is copied into the tree), new inputs
go to DIR/corpus, and an input that breaks the target's contract is saved under
DIR/crashes (``crash-*`` for an exception, ``timeout-*`` for a hang) and the run
exits non-zero with the traceback on stderr.

``scale TARGET --work DIR`` then grows the seeds and a sample of the corpus to about
1 MB each (the target says how: more lines, more layers, a longer name) and checks
that every call still keeps the contract and returns within ``SCALE_SECONDS``: a
quadratic parser passes kB-sized fuzz inputs and not these. A failing input is
saved under DIR/crashes (``slow-*`` or ``crash-*``).

A target's contract: it calls the parser and lets through only the exceptions the
parser documents (``check`` catches those); anything else, or a property that does
not hold (an ``assert`` in ``check``), is a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType

TOP = Path(__file__).resolve().parents[2]
FIXTURES = TOP / "tests" / "fixtures"
BIG = 1 << 20
"""Size the scale check grows inputs to."""
SCALE_SECONDS = 10.0
"""Longest one call may take on a ~1 MB input (linear parsers take well under 1 s)."""
INPUT_SECONDS = 10
"""libFuzzer's -timeout: one fuzz input (at most a few kB) running this long is a hang."""
MAX_LEN = 16384
"""libFuzzer's -max_len: room for a number longer than int()'s 4300-digit limit."""
SCALE_SAMPLE = 12
"""Corpus inputs grown by the scale check, besides every seed."""

# Target name -> harness module (one module per family). Listed here so that naming
# the targets imports no dind module: the fuzzing process must import dind only
# under atheris' instrumentation.
FAMILIES = {
    "cgroup": "tests.fuzz.fuzz_proc",
    "mountinfo": "tests.fuzz.fuzz_proc",
    "procfs": "tests.fuzz.fuzz_procfs",
    "docker-host": "tests.fuzz.fuzz_daemon",
    "manifest": "tests.fuzz.fuzz_frozen",
    "reference": "tests.fuzz.fuzz_frozen",
    "registry-text": "tests.fuzz.fuzz_frozen",
    "docker-config": "tests.fuzz.fuzz_frozen",
    "oci-index": "tests.fuzz.fuzz_frozen",
    "selftest-crash": "tests.fuzz.fuzz_selftest",
    "selftest-hang": "tests.fuzz.fuzz_selftest",
    "selftest-quadratic": "tests.fuzz.fuzz_selftest",
}
SELFTESTS = tuple(name for name in FAMILIES if name.startswith("selftest-"))
TARGETS = tuple(name for name in FAMILIES if name not in SELFTESTS)


@dataclass(frozen=True)
class Target:
    """One fuzz target: the contract check, its seeds, and how to grow an input."""

    check: Callable[[bytes], None]
    seeds: Callable[[], Iterable[bytes]]
    grow: Callable[[bytes], Iterable[bytes]] = field(default=lambda data: [repeat_lines(data)])
    big: Callable[[], Iterable[bytes]] = field(default=lambda: ())
    """Hand-made ~1 MB inputs for the scale check (deep nesting, one huge field...)."""


def fixture_files(*names: str) -> Iterator[bytes]:
    """The content of every file under tests/fixtures whose path ends with one of ``names``."""
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and any(path.as_posix().endswith(name) for name in names):
            yield path.read_bytes()


def repeat_lines(data: bytes, size: int = BIG) -> bytes:
    """``data`` repeated (as lines) until it is about ``size`` bytes."""
    unit = data if data.endswith(b"\n") else data + b"\n"
    return unit * max(1, size // len(unit))


def load(name: str) -> Target:
    module: ModuleType = importlib.import_module(FAMILIES[name])
    target = module.TARGETS[name]
    assert isinstance(target, Target)
    return target


def write_seeds(target: Target, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for data in target.seeds():
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        count += 1
    return count


def fuzz(name: str, seconds: int, work: Path) -> None:
    """Run atheris until ``seconds`` pass or the contract breaks (then exit non-zero)."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["dind"]):
        target = load(name)
    seeds = work / "seeds"
    count = write_seeds(target, seeds)
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    (work / "crashes").mkdir(parents=True, exist_ok=True)
    print(f"{name}: {count} seeds", file=sys.stderr, flush=True)
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={INPUT_SECONDS}",
        f"-max_len={MAX_LEN}",
        f"-artifact_prefix={work / 'crashes'}/",
        "-print_final_stats=1",
        str(work / "corpus"),
        str(seeds),
    ]
    atheris.Setup(argv, target.check)
    atheris.Fuzz()


class Slow(Exception):
    """A call ran past its time limit (raised from SIGALRM)."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Slow

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def scale(name: str, work: Path) -> int:
    """Grow seeds and a corpus sample to ~1 MB; every call must stay under SCALE_SECONDS."""
    target = load(name)
    inputs = list(target.seeds())
    corpus = sorted((work / "corpus").glob("*")) if (work / "corpus").is_dir() else []
    for path in random.Random(0).sample(corpus, min(SCALE_SAMPLE, len(corpus))):
        inputs.append(path.read_bytes())
    grown = [big for data in inputs for big in target.grow(data)] + list(target.big())
    slowest = 0.0
    (work / "crashes").mkdir(parents=True, exist_ok=True)
    for data in grown:
        started = time.monotonic()
        try:
            with deadline(SCALE_SECONDS):
                target.check(data)
        except Slow:
            return _save(work, "slow", data, f"took over {SCALE_SECONDS:.1f} s")
        except Exception:
            traceback.print_exc()
            return _save(work, "crash", data, "broke the contract (traceback above)")
        took = time.monotonic() - started
        if took > SCALE_SECONDS:
            return _save(work, "slow", data, f"took {took:.1f} s")
        slowest = max(slowest, took)
    print(
        f"{name}: {len(grown)} inputs of up to {max(map(len, grown), default=0)} bytes, "
        f"slowest {slowest:.2f} s",
        file=sys.stderr,
    )
    return 0


def _save(work: Path, kind: str, data: bytes, what: str) -> int:
    """Keep the input that failed the scale check where the test shows it."""
    path = work / "crashes" / f"{kind}-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    print(f"{kind}: an input of {len(data)} bytes {what}; saved as {path}", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["fuzz", "scale", "list"])
    parser.add_argument("target", nargs="?", choices=list(FAMILIES))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("fuzz-work"))
    args = parser.parse_args()
    if args.mode == "list":
        print("\n".join(TARGETS))
        return 0
    if args.target is None:
        parser.error("a target is needed")
    if args.mode == "scale":
        return scale(args.target, args.work)
    fuzz(args.target, args.seconds, args.work)
    return 0


if __name__ == "__main__":
    # Run as the importable module, not as __main__: the harnesses import Target from it.
    sys.exit(importlib.import_module("tests.fuzz.runner").main())
