"""Who gets a promotion: the SKU's candidate users, minus a holdout drawn at random.

The draw is seeded by the trigger id, so anyone can redraw it and a trigger
re-sent after a crash splits the same way.
"""

from __future__ import annotations

import hashlib

import numpy as np


def split_holdout(trigger_id: str, users: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(targets in their given order, holdout): disjoint, together `users`.

    The holdout is round(fraction x n) users, at least one when fraction > 0
    and there are two users or more, so every trigger can be measured.
    """
    n = len(users)
    size = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        size = max(1, size)
    size = min(size, n - 1) if n else 0
    seed = int.from_bytes(hashlib.sha256(trigger_id.encode()).digest()[:8], "big")
    chosen = set(np.random.default_rng(seed).choice(n, size=size, replace=False).tolist()) if size else set()
    targets = [user for i, user in enumerate(users) if i not in chosen]
    holdout = [users[i] for i in sorted(chosen)]
    return targets, holdout
