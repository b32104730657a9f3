"""A guard: only models/windows.py reads or writes a window's keys, only models/useritem.py a user vector's.

The keys are the stored format (workers restore the tables from their
changelogs), so code that indexes them elsewhere ties itself to that format;
everyone else calls the accessors those modules define. The scan is by
syntax: a string subscript (`x["oh"]`), `x.get("cat")` / `setdefault` / `pop`,
`"promos" in x`, and a dict literal made of these keys only, over salescast/
and stream/. A key added to `Window` or `UserVector` is guarded at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

from salescast.models.useritem import UserVector
from salescast.models.windows import Window

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("salescast", "stream")
STATE_KEYS = Window.__required_keys__ | Window.__optional_keys__ | UserVector.__required_keys__ | \
    UserVector.__optional_keys__
KEY_METHODS = {"get", "setdefault", "pop"}


def _is_key(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value in STATE_KEYS


def state_key_uses(source: str) -> list[tuple[int, str]]:
    """(line, code) of each place in `source` that reads or writes a window's or a vector's key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            hit = _is_key(node.slice)
        elif isinstance(node, ast.Call):
            hit = isinstance(node.func, ast.Attribute) and node.func.attr in KEY_METHODS and bool(node.args) \
                and _is_key(node.args[0])
        elif isinstance(node, ast.Compare):
            hit = _is_key(node.left) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
        elif isinstance(node, ast.Dict):
            hit = bool(node.keys) and all(_is_key(key) for key in node.keys)
        else:
            continue
        if hit:
            found.append((node.lineno, ast.get_source_segment(source, node) or ""))
    return found


def test_the_scan_finds_each_way_of_touching_a_key():
    source = 'a = w["oh"]\nb = w.get("cat")\nw.setdefault("promos", [])\nc = "a" in v\nd = {"t": 0, "w": {}}\n' \
             'e = record["sku"]\nf = {"sku": "x", "t": 1}\n'
    assert [line for line, _ in state_key_uses(source)] == [1, 2, 3, 4, 5]


def test_no_module_outside_windows_and_useritem_touches_their_keys():
    touches = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, code in state_key_uses(path.read_text()):
                touches.append(f"{path.relative_to(ROOT)}:{line}: {code}")
    assert not touches, ("read and write windows and user vectors through salescast.models.windows and "
                         "salescast.models.useritem (add an accessor there if none fits):\n" + "\n".join(touches))
