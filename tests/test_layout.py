"""The architecture as a test: imports flow one way, salescast -> salescast.stream -> salescast.models, and
nothing is installed under a generic top-level name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> the import name it is installed as (pyproject.toml's package-dir)
FOLDERS = {"salescast": "salescast", "stream": "salescast.stream", "models": "salescast.models"}
LAYER = {"salescast": 0, "salescast.stream": 1, "salescast.models": 2}


def _layer_of(module: str) -> str | None:
    for name in ("salescast.models", "salescast.stream", "salescast"):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            # `from salescast import stream` names a subpackage, not an attribute
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def import_graph() -> dict[tuple[str, str], int]:
    """(importing package, imported package) -> number of import statements, over the three folders."""
    graph: dict[tuple[str, str], int] = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            for _, module in _imports(path):
                target = _layer_of(module)
                if target is not None and target != package:
                    graph[(package, target)] = graph.get((package, target), 0) + 1
    return graph


def test_imports_flow_one_way():
    upward = []
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            for line, module in _imports(path):
                target = _layer_of(module)
                if target is not None and LAYER[target] < LAYER[package]:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, "imports must flow salescast -> salescast.stream -> salescast.models:\n" + "\n".join(upward)


def test_no_generic_top_level_import_names():
    generic = []
    for path in [*ROOT.joinpath("salescast").rglob("*.py"), *ROOT.joinpath("stream").rglob("*.py"),
                 *ROOT.joinpath("models").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py"),
                 *ROOT.joinpath("bench").rglob("*.py")]:
        for line, module in _imports(path):
            if module.split(".")[0] in ("stream", "models"):
                generic.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not generic, "use the installed names salescast.stream and salescast.models:\n" + "\n".join(generic)


def test_every_package_folder_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"] == {package: folder for folder, package in FOLDERS.items()}
    installed = set(project["packages"])
    on_disk = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((package, *relative)))
    assert on_disk == installed, f"pyproject.toml's packages differ from the folders: {on_disk ^ installed}"
