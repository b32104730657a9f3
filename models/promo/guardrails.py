"""Limits over all promotions: a cooldown per SKU, a cap on open triggers, a daily discount budget.

The state is a plain dict (one value in a one-partition table; every proposal
passes through the one worker that owns it, so the limits hold service-wide):

    {"last": {sku: ts of its last trigger}, "open": {trigger_id: valid_until},
     "spent": {day index: expected discount cost admitted}, "decided": {trigger_id: [verdict, ts]}}

Time is event time (the proposals' `ts`), so a replay decides as live did.
"""

from __future__ import annotations

from salescast.models.promo.policy import PromoPolicy
from salescast.models.timeunits import DAY_MS

ADMITTED = "admitted"


def new_state() -> dict:
    return {"last": {}, "open": {}, "spent": {}, "decided": {}}


def admit(state: dict, trigger_id: str, sku: str, ts: int, valid_until: int, cost: float,
          policy: PromoPolicy) -> str:
    """ADMITTED, or the guardrail that refused: "cooldown", "max_open" or "budget".

    A proposal seen before gets its first verdict again (a re-read after a crash).
    """
    if trigger_id in state["decided"]:
        return state["decided"][trigger_id][0]
    _forget_the_past(state, ts, policy)
    day = str(ts // DAY_MS)
    last = state["last"].get(sku)
    if last is not None and ts - last < policy.cooldown_ms:
        verdict = "cooldown"
    elif len(state["open"]) >= policy.max_open:
        verdict = "max_open"
    elif state["spent"].get(day, 0.0) + cost > policy.daily_budget:
        verdict = "budget"
    else:
        verdict = ADMITTED
        state["last"][sku] = ts
        state["open"][trigger_id] = valid_until
        state["spent"][day] = round(state["spent"].get(day, 0.0) + cost, 6)
    state["decided"][trigger_id] = [verdict, ts]
    return verdict


def _forget_the_past(state: dict, now: int, policy: PromoPolicy) -> None:
    """Keeps the state bounded: closed triggers, past days and cooled-down SKUs leave it."""
    state["open"] = {tid: until for tid, until in state["open"].items() if until > now}
    today = now // DAY_MS
    state["spent"] = {day: spent for day, spent in state["spent"].items() if int(day) >= today}
    state["last"] = {sku: ts for sku, ts in state["last"].items() if now - ts < policy.cooldown_ms}
    horizon = now - max(policy.cooldown_ms, policy.validity_ms, DAY_MS)
    state["decided"] = {tid: decided for tid, decided in state["decided"].items() if decided[1] >= horizon}
