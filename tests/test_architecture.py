"""The package's shape, as issue 19 and docs/architecture.md state it: the top of pycore/ keeps the
entry points and the ground floor, no import climbs a layer, no import cycle, functions fit on a
screen and no page module outgrows one file's reading.

The limits are the issue's (at most 8 top-level modules, one function over 80 lines, 400 lines per web
file); the layers are the ones docs/architecture.md draws."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "pycore"

# docs/architecture.md: the floor each package stands on. A module may import its own floor or below.
FLOORS = {
    "errors": 0, "units": 0, "schema": 0, "versions": 0,
    "model": 1, "data": 1, "accuracy": 1,
    "training": 2, "parallel": 3, "serving": 4,
    "estimate": 5,
    "plan": 6,
    "check": 7, "request": 7, "commands": 7, "runconfig": 7,
    "api": 8,
    "cli": 9, "integrations": 9, "__main__": 10,
}
MAX_TOP_MODULES = 8
MAX_FUNCTION_LINES = 80
MAX_LONG_FUNCTIONS = 1
MAX_WEB_FILE_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in CORE.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of other pycore modules, at any depth (lazy imports included)."""
    edges = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                found.update(subs or ([target] if target in mods else []))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in mods)
        edges[name] = found - {name}
    return edges


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 else FLOORS["api"]  # pycore/__init__ exports like api


def test_the_top_of_pycore_keeps_only_entry_points_and_the_ground_floor():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_every_package_has_a_floor():
    packages = {p.parent.name if p.name == "__init__.py" else p.stem
                for p in CORE.glob("*/__init__.py")} | {p.stem for p in CORE.glob("*.py") if p.stem != "__init__"}
    assert packages <= set(FLOORS), sorted(packages - set(FLOORS))


def test_no_import_climbs_a_layer():
    edges = _imports(_modules())
    up = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                if a != "pycore" and _floor(b) > _floor(a))
    assert up == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    state, stack, cycles = {}, [], []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                cycles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v)
    return cycles


def test_no_import_cycle():
    assert _cycles(_imports(_modules())) == []


def test_functions_fit_on_a_screen():
    long = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert len(long) <= MAX_LONG_FUNCTIONS, long


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "web").glob("*")
                                        if p.suffix in (".js", ".mjs", ".css", ".html")))
def test_no_web_file_outgrows_one_reading(path):
    assert len((ROOT / path).read_text().splitlines()) <= MAX_WEB_FILE_LINES


def test_the_checks_can_fail():
    """A made-up graph with a cycle is caught, and a plan module sits above a model module."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _floor("pycore.model.spec") < _floor("pycore.plan.fit") < _floor("pycore.api")
