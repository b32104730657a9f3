"""Whether a promotion worked: purchases of its SKU by its targets and its holdout, within its window.

A trigger's attribution is a plain dict kept with the SKU's window (so a sale
and its attribution are stored together, and a re-read sale counts once):

    {"id": trigger_id, "reason": why it was triggered, "ts": start, "until": valid_until, "m": {user: 0 target | 1 holdout},
     "units": {user: units bought}, "promo_orders": orders outside the lists that named the promotion,
     "dirty": changed since the last outcome record, "at": the newest attributed sale's ts}

Any purchase of the SKU by a member within [ts, until] counts, with or
without the promotion's id: the holdout's purchases are what the targets
would have done without it. The uplift is the targets' conversion (share
who bought) minus the holdout's.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET, HOLDOUT = 0, 1


def open_attribution(trigger_id: str, ts: int, valid_until: int, targets: list[str], holdout: list[str],
                     reason: str = "") -> dict:
    members = {user: TARGET for user in targets}
    members.update({user: HOLDOUT for user in holdout})
    return {"id": trigger_id, "reason": reason, "ts": ts, "until": valid_until, "m": members, "units": {},
            "promo_orders": 0, "dirty": False}


def attribute(state: dict, user: str, units: int, ts: int, promo_id: str | None) -> bool:
    """Count one order line of the SKU; True when it belongs to this trigger."""
    if not state["ts"] <= ts <= state["until"]:
        return False
    if user not in state["m"]:
        if promo_id == state["id"]:
            state["promo_orders"] += 1
            return True
        return False
    state["units"][user] = state["units"].get(user, 0) + units
    state["dirty"] = True
    state["at"] = max(ts, state.get("at", ts))
    return True


@dataclass
class Counts:
    targets: int
    holdout: int
    target_buyers: int
    holdout_buyers: int
    target_units: float
    holdout_units: float

    @property
    def uplift(self) -> float | None:
        if not self.holdout or not self.targets:
            return None
        return self.target_buyers / self.targets - self.holdout_buyers / self.holdout

    @property
    def incremental_units(self) -> float | None:
        """Units the targets bought beyond what the holdout's rate says they would have."""
        if not self.holdout:
            return None
        return self.target_units - self.holdout_units * self.targets / self.holdout


def counts(state: dict) -> Counts:
    members, units = state["m"], state["units"]
    targets = sum(1 for group in members.values() if group == TARGET)
    bought = {TARGET: [0, 0.0], HOLDOUT: [0, 0.0]}
    for user, n in units.items():
        bought[members[user]][0] += 1
        bought[members[user]][1] += n
    return Counts(targets, len(members) - targets, bought[TARGET][0], bought[HOLDOUT][0],
                  float(bought[TARGET][1]), float(bought[HOLDOUT][1]))


def outcome_record(state: dict, sku: str, ts: int, final: bool) -> dict:
    """The contract's promo-outcome record as of event time `ts`."""
    c = counts(state)
    uplift = c.uplift
    return {"trigger_id": state["id"], "sku": sku, "ts": int(ts), "targets": c.targets, "holdout": c.holdout,
            "target_buyers": c.target_buyers, "holdout_buyers": c.holdout_buyers, "target_units": c.target_units,
            "holdout_units": c.holdout_units, "uplift": None if uplift is None else round(uplift, 6),
            "final": final}


def uplift_interval(target_buyers: int, targets: int, holdout_buyers: int, holdout: int,
                    alpha: float = 0.05) -> tuple[float, float, float] | None:
    """(uplift, low, high): the difference of two conversion rates with Newcombe's hybrid score interval.

    Built from each rate's Wilson interval (Newcombe 1998, Statistics in
    Medicine 17:873, method 10), by statsmodels (an evaluation extra: only
    reports need it): unlike the plain normal approximation it keeps its
    coverage when a holdout has only a handful of buyers, the common case.
    """
    if not targets or not holdout:
        return None
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(target_buyers, targets, holdout_buyers, holdout, method="newcomb",
                                           compare="diff", alpha=alpha)
    return target_buyers / targets - holdout_buyers / holdout, float(low), float(high)
