"""Coverage-guided fuzzing (atheris) of dind's parsers, a bounded run per target.

Each target runs in its own process for ``FUZZ_SECONDS`` (default 20), then its
seeds and a sample of what the fuzzer found are grown to ~1 MB and must still parse
in bounded time (see runner.py). A failure shows the input and the traceback; save
the input as a regression test next to the parser's own tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.runner import INPUT_SECONDS, SCALE_SECONDS, SELFTESTS, TARGETS, TOP

SECONDS = max(1, int(os.environ.get("FUZZ_SECONDS", "20")))  # 0 would mean no limit


def run(
    mode: str, target: str, work: Path, seconds: int = SECONDS
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.fuzz.runner", mode, target, "--work", str(work)]
    # One log: atheris prints the Python traceback on stdout, libFuzzer on stderr.
    return subprocess.run(
        [*argv, "--seconds", str(seconds)],
        cwd=TOP,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=seconds + 4 * INPUT_SECONDS + 600,
        check=False,
    )


def found(work: Path) -> list[Path]:
    folder = work / "crashes"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def failure(proc: subprocess.CompletedProcess[str], work: Path) -> str:
    """What a failed run found: each saved input (start of it) and the end of the log."""
    shown = [f"{p.name}: {p.read_bytes()[:400]!r} ({p.stat().st_size} bytes)" for p in found(work)]
    return "\n".join([f"exit status {proc.returncode}", *shown, proc.stdout[-6000:]])


def executions(log: str) -> int:
    """libFuzzer's closing 'Done N runs in S second(s)'."""
    match = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert match, log[-3000:]
    return int(match.group(1))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    fuzzed = run("fuzz", target, tmp_path)
    assert fuzzed.returncode == 0 and not found(tmp_path), failure(fuzzed, tmp_path)
    runs = executions(fuzzed.stdout)
    print(f"{target}: {runs} executions in {SECONDS} s")
    assert runs > 100  # it really ran
    grown = run("scale", target, tmp_path)
    assert grown.returncode == 0 and not found(tmp_path), failure(grown, tmp_path)
    print(grown.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("target", "mode", "artifact", "message"),
    [
        ("selftest-crash", "fuzz", "crash-", "KeyError: b'FU"),
        ("selftest-hang", "fuzz", "timeout-", "ALARM: working on the last Unit"),
        ("selftest-quadratic", "scale", "slow-", f"took over {SCALE_SECONDS:.1f} s"),
        ("selftest-crash", "scale", "crash-", "KeyError: b'FU"),
    ],
)
def test_runner_catches_and_names_the_input(
    target: str, mode: str, artifact: str, message: str, tmp_path: Path
) -> None:
    """The harness can fail: an exception, a hang and a quadratic parser are each
    caught, and the input is saved where the failure message shows it."""
    assert target in SELFTESTS
    proc = run(mode, target, tmp_path, seconds=5)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert [p.name[: len(artifact)] for p in found(tmp_path)] == [artifact], proc.stdout[-3000:]
    assert message in proc.stdout, proc.stdout[-3000:]
    assert artifact in failure(proc, tmp_path)
