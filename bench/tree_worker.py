"""`salescast worker` run from the source tree given, whatever its layout (bench/compare_trees.py's workers).

    python bench/tree_worker.py /tmp/before worker

The editable install maps `salescast.stream` and `salescast.models` to this
checkout's folders (a meta path finder consulted after the path finder), so a
worker started in another tree's folder would take those two packages from
here. This maps each package to the tree's own folder instead, as the tree's
pyproject.toml says ([tool.setuptools.package-dir]); a tree from before that
mapping (top-level `stream` and `models`) runs from its folder as it is.
"""

from __future__ import annotations

import runpy
import sys
import tomllib
from importlib.util import spec_from_file_location
from pathlib import Path


class _TreeFinder:
    def __init__(self, packages: dict[str, Path]) -> None:
        self.packages = packages

    def find_spec(self, fullname: str, path=None, target=None):
        folder = self.packages.get(fullname)
        if folder is None:
            return None  # submodules: found through the package's __path__, the tree's folder
        return spec_from_file_location(fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


def main() -> None:
    tree = Path(sys.argv[1]).resolve()
    config = tomllib.loads((tree / "pyproject.toml").read_text())
    package_dir = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    sys.meta_path[:] = [finder for finder in sys.meta_path
                        if "editable" not in getattr(finder, "__name__", type(finder).__name__).lower()]
    sys.meta_path.insert(0, _TreeFinder({name: tree / folder for name, folder in package_dir.items() if name}))
    sys.path.insert(0, str(tree))
    sys.argv = ["salescast", *sys.argv[2:]]
    runpy.run_module("salescast.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
