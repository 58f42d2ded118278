"""The rooms of docs/design.md: the library rooms never import the clients or the file formats.

`spectracli/spectral/`, `spectracli/layers/` and `spectracli/hessian/` take tensors and return
dataclasses; they must not import `spectracli.cli`, `spectracli.report`, `spectracli.gate` or
`spectracli.io`. Beyond their own room they may import only the vocabulary modules, which import
nothing of the package but each other (:data:`VOCABULARY`), plus what :data:`EXTRA` names. The scan
is static (``ast``), so an import inside a function counts as much as one
at the top of a module, and relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spectracli

PACKAGE = Path(spectracli.__file__).parent
LIBRARY_ROOMS = ("spectral", "layers", "hessian")
FORBIDDEN = ("spectracli.cli", "spectracli.report", "spectracli.gate", "spectracli.io")
# Dependency-free modules every room may import: errors, the choices of every option, the
# stored dtype names, the report schema, attribute access to JSON (docs/design.md).
VOCABULARY = ("spectracli.errors", "spectracli.options", "spectracli.dtypes",
              "spectracli.schema", "spectracli.records")
EXTRA = {
    "spectral": (),
    "layers": (),
    # the package version and callable entry point, the process group helper
    "hessian": ("spectracli.__version__", "spectracli.api", "spectracli.distributed"),
    # formats, not math: the readers know names, shapes, dtypes and bytes
    "io": (),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth of the file."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # a module and an __init__ both resolve against their folder
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # ``from spectracli import io`` imports the room itself.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _is_forbidden(module: str) -> bool:
    return any(module == room or module.startswith(room + ".") for room in FORBIDDEN)


@pytest.mark.parametrize("room", LIBRARY_ROOMS)
def test_library_rooms_do_not_import_clients_or_readers(room):
    files = sorted((PACKAGE / room).rglob("*.py"))
    assert files, room
    bad = {
        f"{path.relative_to(PACKAGE.parent)}: {module}"
        for path in files
        for module in imported_modules(path)
        if _is_forbidden(module)
    }
    assert not bad, sorted(bad)


def test_the_scan_sees_function_level_and_relative_imports(monkeypatch):
    # The checker itself can fail: a nested relative import of ..io is found.
    room = PACKAGE / "hessian"
    probe = room / "_architecture_probe.py"
    src = "def f():\n    from ..io import tensor_data\n    import spectracli.report.numbers\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src)
    tree_names = imported_modules(probe)
    assert "spectracli.io" in tree_names and "spectracli.io.tensor_data" in tree_names
    assert "spectracli.report.numbers" in tree_names
    assert all(_is_forbidden(m) for m in tree_names)


def _outside_room(room: str, module: str) -> bool:
    allowed = (f"spectracli.{room}", *VOCABULARY, *EXTRA[room])
    if module == "spectracli" or not module.startswith("spectracli"):
        return False  # ``from spectracli import x`` is judged by its name ``spectracli.x``
    return not any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("room", sorted(EXTRA))
def test_library_rooms_import_only_themselves_and_the_vocabulary(room):
    bad = {
        f"{path.relative_to(PACKAGE.parent)}: {module}"
        for path in sorted((PACKAGE / room).rglob("*.py"))
        for module in imported_modules(path)
        if _outside_room(room, module)
    }
    assert not bad, sorted(bad)


def test_the_vocabulary_imports_nothing_else_of_the_package():
    for name in VOCABULARY:
        path = PACKAGE / f"{name.split('.')[-1]}.py"
        inside = {m for m in imported_modules(path) if m.startswith("spectracli")}
        assert all(any(m == v or m.startswith(v + ".") for v in VOCABULARY) for m in inside), (
            name, sorted(inside))


def test_the_room_check_refuses_a_module_outside_the_vocabulary():
    assert _outside_room("layers", "spectracli.results")
    assert _outside_room("layers", "spectracli.analyze_config.AnalyzeConfig")
    assert not _outside_room("layers", "spectracli.options.ConvView")
    assert not _outside_room("hessian", "spectracli.api.make_callable")
    assert _outside_room("spectral", "spectracli.api")
    assert _outside_room("io", "spectracli.layers")
