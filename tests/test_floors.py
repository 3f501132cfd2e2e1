"""traces/ is built in floors that only import downwards, with no circles (see CONTRIBUTING.md).

Every ``import`` in every module of the package is read, at any depth (a function
body's too: an import moved into a function still runs), and checked against the
floors below. An ``if TYPE_CHECKING:`` import never runs, so it may not close a
circle, but it too must point down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRACES = Path(__file__).resolve().parent.parent / "traces"

# The floors, bottom up. A module imports from its own floor or from the floors below it.
FLOORS = {
    "basics": 0,  # where things are, and saving bytes whole
    "below": 1,  # knowledge below Python, read from the installed wheel
    "data": 2,  # the plain data of a run: tensors, nodes, the Trace
    "recorders": 3,  # what watches a run and fills in a Trace
    "mirror": 3,  # the engine in Python, beside the recorders
    "render": 4,  # what reads a finished Trace: terminal, JSON, pictures, the page, files
}
FACE = 5  # traces/__init__.py, __main__.py, _starting.py: the package's face


def module_name(path: Path) -> str:
    parts = list(path.relative_to(TRACES.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in TRACES.rglob("*.py") if "recorded" not in path.parts}


def floor_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and (TRACES / f"{parts[1]}.py").exists()):
        return FACE
    return FLOORS[parts[1]]


def under_type_checking(tree: ast.AST) -> set[ast.AST]:
    """The import statements inside ``if TYPE_CHECKING:`` blocks."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                found.update(n for n in ast.walk(statement) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return found


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported module of this package, line, only for type checking) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    typing_only = under_type_checking(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            # ``from traces.mirror import engine`` imports the module traces.mirror.engine
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target == "traces" or target.startswith("traces."):
                while target not in MODULES:  # ``import traces.data.graph as g`` style names
                    target = target.rsplit(".", 1)[0]
                found.append((target, node.lineno, node in typing_only))
    return found


def upward_imports() -> list[str]:
    return [
        f"{module}:{line} imports {target} (floor {floor_of(target)} > {floor_of(module)})"
        for module in MODULES
        for target, line, _ in imports_of(module)
        if floor_of(target) > floor_of(module)
    ]


def circles() -> list[list[str]]:
    """Every circle among the imports that run (a depth-first search for back edges)."""
    edges = {m: sorted({t for t, _, typing in imports_of(m) if not typing and t != m}) for m in MODULES}
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in edges[module]:
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    return found


def test_every_folder_of_traces_is_a_floor():
    folders = {p.name for p in TRACES.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FLOORS)


def test_every_module_imports_only_from_its_floor_or_below():
    assert upward_imports() == []


def test_no_import_circle_even_through_a_function_body():
    assert circles() == []


def test_the_check_sees_an_upward_import_in_a_function_body(monkeypatch, tmp_path):
    """The checks above can fail: a renderer imported inside a function of the data floor is caught,
    and so is the circle it closes (the terminal imports the trace)."""
    fake = tmp_path / "trace.py"
    fake.write_text(MODULES["traces.data.trace"].read_text() + "\n\ndef show(trace):\n    from traces.render.terminal import render_trace\n")
    monkeypatch.setitem(MODULES, "traces.data.trace", fake)
    line = len(fake.read_text().splitlines())
    assert upward_imports() == [f"traces.data.trace:{line} imports traces.render.terminal (floor 4 > 2)"]
    assert any({"traces.data.trace", "traces.render.terminal"} <= set(circle) for circle in circles())


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_each_floor_says_what_it_holds(floor):
    docstring = ast.get_docstring(ast.parse((TRACES / floor / "__init__.py").read_text()))
    assert docstring is not None and docstring.startswith(f"Floor {FLOORS[floor]}"), docstring


def test_every_floor_and_its_files_go_into_the_installed_package():
    """A non-editable install gets every floor and the page's script and template."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((TRACES.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(find_packages(where=TRACES.parent, include=config["packages"]["find"]["include"]))
    assert {f"traces.{floor}" for floor in FLOORS} <= packages
    assets = [
        path.relative_to(TRACES)
        for path in TRACES.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and not {"recorded", "__pycache__"} & set(path.parts)
    ]
    assert sorted(map(str, assets)) == ["render/page.js", "render/page_template.html"]
    for asset in assets:
        assert asset.name in config["package-data"][".".join(("traces", *asset.parent.parts))]
