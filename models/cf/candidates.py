"""The users with the strongest affinity for one SKU: a bounded index kept as affinities change.

The worker that owns a user scores the user's affinities when their events
arrive and sends the changes (`affinity_changes`) to the worker that owns each
SKU, which folds them in here. An entry is

    {"u": {user_id: [score, ts]}}

where `score` was computed from the user's interactions decayed to event time
`ts`. Scores made at different times are compared decayed to one time, with
the same half-life as the interactions. A change carries its `ts`: one older
than the stored score is ignored, so a re-read change never undoes a newer
one and applying the same change twice is harmless. Past `cap` users the
weakest are dropped: the index stays bounded however many users a SKU draws.
It is trimmed back to `cap` once it holds a quarter more (TRIM_SLACK), not at
every user over it: each trim ranks all its users, and a popular SKU at its cap
gains one more with almost every batch. Between trims it holds up to 25% more
of the weakest; `ranked` always gives the strongest.
"""

from __future__ import annotations

import numpy as np

from salescast.models.useritem import decay_factor

TRIM_SLACK = 1.25


def new_entry() -> dict:
    return {"u": {}}


def affinity_changes(previous: dict[str, float], current: dict[str, float],
                     tolerance: float = 0.1) -> tuple[list[tuple[str, float | None]], dict[str, float]]:
    """What to send when a user's top affinities go from `previous` (as last sent) to `current`.

    New SKUs and scores that moved by more than `tolerance` (relative) are sent
    with their score; SKUs that left the top are sent with None (remove).
    Also returns the scores as sent now, to compare the next change against:
    a score that moved less than `tolerance` keeps its last sent value, so
    small drifts add up until they are worth sending.
    """
    changes: list[tuple[str, float | None]] = []
    sent: dict[str, float] = {}
    new = 0
    for sku, score in current.items():
        before = previous.get(sku)
        if before is None:
            new += 1
        if before is None or abs(score - before) > tolerance * abs(before):
            changes.append((sku, score))
            sent[sku] = score
        else:
            sent[sku] = before
    if len(previous) > len(current) - new:  # some SKUs left the top
        changes.extend((sku, None) for sku in previous if sku not in current)
    return changes, sent


def apply_changes(entry: dict | None, changes: list[tuple[str, float | None, int]], cap: int,
                  half_life_ms: float) -> dict:
    """Fold (user, score or None, ts) changes into a SKU's entry; past `cap` × TRIM_SLACK users, keep the
    `cap` strongest."""
    entry = entry or new_entry()
    users = entry["u"]
    for user, score, ts in changes:
        stored = users.get(user)
        if stored is not None and stored[1] > ts:
            continue
        if score is None:
            users.pop(user, None)
        else:
            users[user] = [round(float(score), 6), int(ts)]
    if len(users) > cap * TRIM_SLACK:
        strongest = ranked(entry, len(users), half_life_ms)[:cap]
        entry["u"] = {user: users[user] for user, _ in strongest}
    return entry


def user_count(entry: dict | None) -> int:
    """How many candidate users the SKU's entry holds (None: no entry yet)."""
    return len(entry["u"]) if entry else 0


def ranked(entry: dict | None, n: int, half_life_ms: float) -> list[tuple[str, float]]:
    """The n strongest (user, score), scores decayed to the newest change's time."""
    if not entry or not entry["u"]:
        return []
    users = entry["u"]
    now = max(ts for _, ts in users.values())
    scored = [(user, score * decay_factor(now - ts, half_life_ms)) for user, (score, ts) in users.items()]
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored[:n]


def category_audiences(X, popular_by_category: dict[str, list[int]],
                       n: int) -> dict[str, tuple[list[int], list[float]]]:
    """Per category, the n users (row indices) with the most weight on its popular items.

    The candidates offered for a SKU no user has shown affinity for yet: the
    audience of its category's popular neighbours.
    """
    audiences = {}
    for category, items in popular_by_category.items():
        weight = np.asarray(X[:, items].sum(axis=1)).ravel() if len(items) else np.zeros(X.shape[0])
        users = np.flatnonzero(weight > 0)
        top = users[np.lexsort((users, -weight[users]))[:n]]
        audiences[category] = (top.tolist(), weight[top].tolist())
    return audiences
