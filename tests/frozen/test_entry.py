"""The console script's entry (dind.frozen.entry): it ends the process itself, skipping
the interpreter's teardown, so what the command wrote and returned must still arrive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSOLE = Path(sys.executable).with_name("dind-frozen-images")


def test_the_console_script_is_the_entry() -> None:
    assert "dind.frozen.entry" in CONSOLE.read_text()


def test_output_written_and_status_returned_arrive_through_pipes() -> None:
    """print() to a pipe is block-buffered: without the flush before os._exit it is lost.
    The collector is back on (and the loaded modules frozen) while the command runs."""
    program = (
        "import gc, dind.frozen.cli as cli\n"
        "cli.main = lambda: print(gc.isenabled(), gc.get_freeze_count() > 0) or 3\n"
        "from dind.frozen.entry import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 3
    assert done.stdout == "True True\n"
    assert done.stderr == ""


def test_the_real_command_through_the_entry(tmp_path: Path) -> None:
    shown = subprocess.run([str(CONSOLE), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert "--mirror" in shown.stdout and shown.stdout.endswith("\n")
    bad = subprocess.run(
        [str(CONSOLE), str(tmp_path / "out"), "example.com/x", "--jobs", "zero"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("dind-frozen-images: error: ")
    assert "Traceback" not in bad.stderr


def test_a_closed_stderr_changes_nothing_but_the_words(tmp_path: Path) -> None:
    """2>&-: the flush at exit meets no stream; the status is still the command's."""
    script = f'"$0" {tmp_path / "out"} example.com/x --jobs zero 2>&-; echo "status $?"'
    done = subprocess.run(
        ["bash", "-c", script, str(CONSOLE)], capture_output=True, text=True, check=False
    )
    assert done.stdout == "status 2\n"
    assert done.stderr == ""
