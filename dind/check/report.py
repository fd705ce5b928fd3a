"""The ``--check`` report: findings plus per-area facts, printed as text or one JSON document.

The JSON keys are a stable interface (README, "--check"): CI asserts on them.
"""

from __future__ import annotations

from dind.record import Record

OK = "ok"
WARNING = "warning"
BLOCKER = "blocker"
LEVELS = (OK, WARNING, BLOCKER)

AREAS = (
    "runtime",
    "cgroup",
    "namespaces",
    "privilege",
    "mounts",
    "plan",
    "processes",
    "network",
    "daemon",
    "rootless",
    "lsm",
)
"""Report sections, in the order they are printed and keyed in JSON."""


class Finding(Record):
    """One conclusion: what was found (``value``), what it means, and how to fix it."""

    __slots__ = ("area", "fix", "level", "meaning", "name", "value")

    def __init__(
        self, area: str, name: str, level: str, value: str, meaning: str, fix: str = ""
    ) -> None:
        self.area = area
        self.name = name
        self.level = level
        self.value = value
        self.meaning = meaning
        self.fix = fix

    def to_json(self) -> dict[str, str]:
        return {
            "area": self.area,
            "name": self.name,
            "level": self.level,
            "value": self.value,
            "meaning": self.meaning,
            "fix": self.fix,
        }


class Findings:
    """The findings of one area, in the order they are added."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.items: list[Finding] = []

    def add(self, level: str, name: str, value: str, meaning: str, fix: str = "") -> None:
        self.items.append(Finding(self.area, name, level, value, meaning, fix))

    def ok(self, name: str, value: str, meaning: str) -> None:
        self.add(OK, name, value, meaning)

    def warning(self, name: str, value: str, meaning: str, fix: str = "") -> None:
        self.add(WARNING, name, value, meaning, fix)

    def blocker(self, name: str, value: str, meaning: str, fix: str) -> None:
        self.add(BLOCKER, name, value, meaning, fix)


class Report(Record):
    """Sections (JSON-ready facts per area) and the findings drawn from them."""

    __slots__ = ("findings", "sections")

    def __init__(self, sections: dict[str, object], findings: list[Finding]) -> None:
        self.sections = sections
        self.findings = findings

    @property
    def ok(self) -> bool:
        """Nested Docker can work here: nothing blocks it (warnings only limit it)."""
        return not self.blockers

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.level == BLOCKER]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    def find(self, area: str, name: str) -> Finding | None:
        for f in self.findings:
            if f.area == area and f.name == name:
                return f
        return None

    def document(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "ok": self.ok,
            "blockers": len(self.blockers),
            "warnings": len(self.warnings),
        }
        for area in AREAS:
            doc[area] = self.sections.get(area)
        doc["findings"] = [f.to_json() for f in self.findings]
        return doc


def verdict(report: Report) -> str:
    n, w = len(report.blockers), len(report.warnings)
    counts = f"{n} blocker{'s' * (n != 1)}, {w} warning{'s' * (w != 1)}"
    if report.ok:
        return f"nested Docker can work here ({counts})"
    names = "; ".join(
        f"{f.area}: {f.value if f.name == 'cap_sys_admin' else f.name}" for f in report.blockers
    )
    return f"nested Docker cannot work here ({counts}: {names})"


def render_json(report: Report) -> str:
    import json

    return json.dumps(report.document(), indent=2) + "\n"


def _wrap(text: str, indent: str, width: int = 100, hang: str = "") -> list[str]:
    import textwrap

    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_on_hyphens=False,
    )


def _nested(report: Report) -> dict[str, dict[str, object]] | None:
    section = report.sections.get("privilege")
    nested = section.get("nested") if isinstance(section, dict) else None
    return nested if isinstance(nested, dict) else None


def render_text(report: Report) -> str:
    """Findings grouped by area (each with meaning and fix), the plan, then the verdict."""
    lines: list[str] = []
    pad = " " * 12
    for area in AREAS:
        findings = [f for f in report.findings if f.area == area]
        plan = report.sections.get("plan") if area == "plan" else None
        if not findings and not plan:
            continue
        lines.append(area)
        for f in findings:
            lines.append(f"  {f.level:<9} {f.name}: {f.value}")
            lines += _wrap(f.meaning, pad)
            if f.fix:
                lines += _wrap("fix: " + f.fix, pad)
        nested = _nested(report) if area == "privilege" else None
        if nested:
            lines.append("  nested Docker at this level:")
            for name, ability in nested.items():
                can = ability.get("can")
                answer = "unknown" if can is None else "yes" if can else "no"
                lines += _wrap(
                    f"{name:<11} {answer:<8} {ability.get('why', '')}", "    ", hang=" " * 21
                )
        if isinstance(plan, list):
            lines.append("  plan (as --dry-run prints it), with the outcome expected here:")
            for row in plan:
                why = f"  # {row['why']}" if row.get("why") else ""
                lines.append(f"    {row['step']:<15} {row['outcome']:<11} {row['describe']}{why}")
        lines.append("")
    lines.append(f"result: {verdict(report)}")
    return "\n".join(lines) + "\n"
