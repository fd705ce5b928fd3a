"""``dind --check``: what is this environment, and will nested Docker work here?

gather (read the system into a ``Snapshot``) → analyse (pure: ``Report``) → render
(text, or one JSON document). Changes nothing. The exit status is decided here
alone: 0 when nothing blocks dind and a nested dockerd, 1 when something does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.log import Log
    from dind.settings import Settings

WORKS = 0
BLOCKED = 1


def check(settings: Settings, log: Log) -> tuple[str, int]:
    """The report for stdout (logs stay on stderr), and the exit status."""
    from dind.check.analyse import analyse
    from dind.check.gather import gather
    from dind.check.report import render_json, render_text

    snapshot = gather(settings)
    for path, error in sorted(snapshot.errors.items()):
        log.debug(f"--check: cannot read {path}: {error}", path=path)
    report = analyse(snapshot, settings)
    render = render_json if settings.log_format == "json" else render_text
    return render(report), WORKS if report.ok else BLOCKED


__all__ = ["BLOCKED", "WORKS", "check"]
