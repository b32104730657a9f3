"""Limits over all promotions: a cooldown per SKU, a cap on open triggers, a daily discount budget.

Every proposal passes through the one worker that owns the one-partition
proposals topic, so the limits hold service-wide. The state is split so that
no value grows with the catalogue (a value over the broker's 1 MB limit could
not reach its changelog):

* one shared value, `{"open": {valid_until: triggers open until then},
  "spent": {day index: expected discount cost admitted}}`: its entries are the
  distinct end times of open triggers and the days from today on, bounded by
  time, not by the number of SKUs or triggers;
* one value per SKU, `{"last": ts of its last trigger or None,
  "decided": {trigger_id: [verdict, ts]}}`: a proposal's verdict, kept for a
  re-read after a crash, with the decisions of the last
  max(cooldown, validity, one day), at most one per bucket close.

Time is event time (the proposals' `ts`), so a replay decides as live did.
"""

from __future__ import annotations

from salescast.models.promo.policy import PromoPolicy
from salescast.models.timeunits import DAY_MS

ADMITTED = "admitted"


def new_state() -> dict:
    """The shared value: open triggers and budget spent."""
    return {"open": {}, "spent": {}}


def new_sku_state() -> dict:
    return {"last": None, "decided": {}}


def admit(state: dict, sku_state: dict, trigger_id: str, ts: int, valid_until: int, cost: float,
          policy: PromoPolicy) -> str:
    """ADMITTED, or the guardrail that refused: "cooldown", "max_open" or "budget". `sku_state` is the
    proposing SKU's own value; both are updated in place.

    A proposal seen before gets its first verdict again (a re-read after a crash).
    """
    decided = sku_state["decided"].get(trigger_id)
    if decided is not None:
        return decided[0]
    _forget_the_past(state, sku_state, ts, policy)
    day = str(ts // DAY_MS)
    last = sku_state["last"]
    if last is not None and ts - last < policy.cooldown_ms:
        verdict = "cooldown"
    elif sum(state["open"].values()) >= policy.max_open:
        verdict = "max_open"
    elif state["spent"].get(day, 0.0) + cost > policy.daily_budget:
        verdict = "budget"
    else:
        verdict = ADMITTED
        sku_state["last"] = ts
        until = str(valid_until)
        state["open"][until] = state["open"].get(until, 0) + 1
        state["spent"][day] = round(state["spent"].get(day, 0.0) + cost, 6)
    sku_state["decided"][trigger_id] = [verdict, ts]
    return verdict


def _forget_the_past(state: dict, sku_state: dict, now: int, policy: PromoPolicy) -> None:
    """Closed triggers, past days, a cooled-down SKU's last trigger and old verdicts leave the state."""
    state["open"] = {until: count for until, count in state["open"].items() if int(until) > now}
    today = now // DAY_MS
    state["spent"] = {day: spent for day, spent in state["spent"].items() if int(day) >= today}
    if sku_state["last"] is not None and now - sku_state["last"] >= policy.cooldown_ms:
        sku_state["last"] = None
    horizon = now - max(policy.cooldown_ms, policy.validity_ms, DAY_MS)
    sku_state["decided"] = {tid: decided for tid, decided in sku_state["decided"].items() if decided[1] >= horizon}


def split_single_value(state: dict) -> tuple[dict, dict[str, dict]]:
    """The state as earlier versions kept it, one value for everything (`last`, `open` by trigger id,
    `spent`, `decided`), as the shared value and the SKUs' own: a worker upgraded in place goes on with
    the cooldowns and verdicts it had."""
    shared = new_state()
    for until in state.get("open", {}).values():
        shared["open"][str(until)] = shared["open"].get(str(until), 0) + 1
    shared["spent"] = dict(state.get("spent", {}))
    skus: dict[str, dict] = {}
    for sku, ts in state.get("last", {}).items():
        skus.setdefault(sku, new_sku_state())["last"] = ts
    for trigger_id, decided in state.get("decided", {}).items():
        sku = trigger_id.rsplit("@", 1)[0]  # stream.serving.promoter.trigger_id: "<sku>@<ts>"
        skus.setdefault(sku, new_sku_state())["decided"][trigger_id] = decided
    return shared, skus


def is_single_value(state: dict) -> bool:
    return "decided" in state
