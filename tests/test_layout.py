"""The code's shape, as docs/training.md describes it: no import cycle between our modules,
a small train.py that knows no task by name, and no function so long it hides several
concepts (modeling/ excepted: its forward passes read top to bottom)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unispeech"
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports when it is imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in known}
    return found


def test_no_import_cycle_between_our_modules():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: top_level_imports(path, set(paths)) - {name} for name, path in paths.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(trail + [name, dep])
            if dep not in state:
                visit(dep, trail + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_train_py_is_small_and_names_no_task():
    source = (PACKAGE / "train.py").read_text()
    assert len(source.splitlines()) <= 120
    code = ast.parse(source)
    strings = {n.value for n in ast.walk(code) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    docstring = ast.get_docstring(code)
    assert not {s for s in strings - {docstring} if s in ("pretrain", "ctc", "classification")}


def test_no_function_over_60_lines_outside_modeling():
    long = []
    for path in PACKAGE.rglob("*.py"):
        if "modeling" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long
