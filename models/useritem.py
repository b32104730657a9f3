"""Incremental implicit-feedback vectors, one per user, with exponential time decay.

A user's vector is a plain dict, typed `UserVector`; its short keys are the
stored format (workers restore vectors from the changelog), and only this
module reads or writes them (tests/models/test_state_access.py checks it).
All weights share one reference time `t`: when an event at a later time comes,
every weight is multiplied by 2 ** (-(ts - t) / half_life) once, so a purchase a
month ago counts half as much as one today (half_life = 30 days by default).
Events older than `t` are decayed to `t` instead. A vector keeps at most `cap`
SKUs; past that the weakest are pruned, which bounds the table in memory and on
disk whatever a user does.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

PRUNE_BELOW = 1e-3  # weights that decayed to nothing are dropped


class UserVector(TypedDict):
    """One user's vector as stored."""

    t: int | None  # the event time every weight is decayed to: the user's newest interaction; None: none yet
    w: dict[str, float]  # sku -> weight at `t`
    seen: dict[str, list[int]]  # source -> [offset, line] last applied (salescast.models.positions)
    a: NotRequired[dict[str, float]]  # sku -> affinity score last sent to the SKUs' owners (cf.candidates)


def new_vector() -> UserVector:
    return {"t": None, "w": {}, "seen": {}}


def from_weights(weights: dict[str, float], ts: int) -> UserVector:
    """A vector holding `weights` as of event time `ts` (a smoke test's input, a benchmark's users)."""
    return {"t": ts, "w": dict(weights), "seen": {}}


def decay_factor(elapsed_ms: float, half_life_ms: float) -> float:
    return 0.5 ** (elapsed_ms / half_life_ms)


def learn_one(vector: UserVector, sku: str, weight: float, ts: int, half_life_ms: float, cap: int) -> None:
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


def weights_at(vector: UserVector, ts: int, half_life_ms: float) -> dict[str, float]:
    """The vector's weights decayed to event time `ts` (for scoring)."""
    if vector["t"] is None:
        return {}
    factor = decay_factor(max(0, ts - vector["t"]), half_life_ms)
    return {sku: w * factor for sku, w in vector["w"].items()}


def weights(vector: UserVector) -> dict[str, float]:
    """sku -> weight as of `newest_ts` (undecayed since: `weights_at` decays them). The vector's own dict:
    read it, never change it."""
    return vector["w"]


def newest_ts(vector: UserVector) -> int | None:
    """The event time of the user's newest interaction, which the weights are decayed to."""
    return vector["t"]


def sent_affinities(vector: UserVector) -> dict[str, float]:
    """sku -> the affinity score last sent for this user (candidates.affinity_changes compares against it)."""
    return vector.get("a", {})


def set_sent_affinities(vector: UserVector, sent: dict[str, float]) -> None:
    vector["a"] = sent


def applied_positions(vector: UserVector) -> dict[str, list[int]]:
    """The last input position applied per source, for salescast.models.positions.already_applied."""
    return vector["seen"]
