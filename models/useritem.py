"""Incremental implicit-feedback vectors, one per user, with exponential time decay.

A user's vector is a dict {"t": last event ts, "w": {sku: weight}, "seen": {...}}.
All weights share one reference time `t`: when an event at a later time comes,
every weight is multiplied by 2 ** (-(ts - t) / half_life) once, so a purchase a
month ago counts half as much as one today (half_life = 30 days by default).
Events older than `t` are decayed to `t` instead. A vector keeps at most `cap`
SKUs; past that the weakest are pruned, which bounds the table in memory and on
disk whatever a user does.
"""

from __future__ import annotations

PRUNE_BELOW = 1e-3  # weights that decayed to nothing are dropped


def new_vector() -> dict:
    return {"t": None, "w": {}, "seen": {}}


def decay_factor(elapsed_ms: float, half_life_ms: float) -> float:
    return 0.5 ** (elapsed_ms / half_life_ms)


def learn_one(vector: dict, sku: str, weight: float, ts: int, half_life_ms: float, cap: int) -> None:
    """Add one interaction of `weight` at event time `ts`."""
    weights = vector["w"]
    reference = vector["t"]
    if reference is None:
        vector["t"] = reference = ts
    if ts > reference:
        factor = decay_factor(ts - reference, half_life_ms)
        for key in list(weights):
            decayed = weights[key] * factor
            if decayed < PRUNE_BELOW:
                del weights[key]
            else:
                weights[key] = decayed
        vector["t"] = ts
    else:
        weight *= decay_factor(reference - ts, half_life_ms)
    weights[sku] = round(weights.get(sku, 0.0) + weight, 9)
    if len(weights) > cap:
        for key in sorted(weights, key=weights.__getitem__)[: len(weights) - cap]:
            del weights[key]


def weights_at(vector: dict, ts: int, half_life_ms: float) -> dict[str, float]:
    """The vector's weights decayed to event time `ts` (for scoring)."""
    if vector["t"] is None:
        return {}
    factor = decay_factor(max(0, ts - vector["t"]), half_life_ms)
    return {sku: w * factor for sku, w in vector["w"].items()}
