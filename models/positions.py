"""Exactly-once counting by input position, shared by every keyed state (windows, user vectors).

Each input partition's records reach a key in offset order, so a state that
remembers the last (offset, line) it applied per source (e.g. "o3": orders
partition 3) can tell a record it already counted, re-read after a crash,
from a new one. The memory is a few entries per state: one per input
partition that ever touched the key.
"""

from __future__ import annotations


def already_applied(applied: dict[str, list[int]], source: str, position: tuple[int, int]) -> bool:
    """True when `position` of `source` was applied before; records it otherwise.

    `applied` is the state's own map, source -> [offset, line] (windows.applied_positions,
    useritem.applied_positions): each state module owns where it keeps it.
    """
    last = applied.get(source)
    if last is not None and (last[0], last[1]) >= position:
        return True
    applied[source] = [position[0], position[1]]
    return False
