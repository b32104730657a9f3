"""When a SKU deserves a promotion, and how deep a discount pays.

The rules read a SKU's `Signals` (its stock, its forecast, how its last bucket
went against the forecast made for it, and how many users want it) and give a
reason or None. Stock short of the forecast demand rules every promotion out:
a discount would only sell out the SKU sooner.

The depth comes from a constant-elasticity demand curve: a discount d moves a
buyer's purchase probability by (1 - d) ** elasticity. Among the allowed
depths (at most `max_discount`, the price at least `min_margin` above unit
cost) the one with the largest expected gain is taken. The gain is, by the
`objective`: "revenue", what the extra units bring minus the discount given to
those who would have bought anyway; or "margin", the same net of the unit cost
of the extra units, so a promotion must pay for the goods it moves as well.
No depth with a positive gain, no promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from salescast.models.timeunits import DAY_MS

REASONS = ("overstock", "demand_drop", "affinity")
OBJECTIVES = ("revenue", "margin")


@dataclass(frozen=True)
class PromoPolicy:
    """Every promotion setting; built from SALESCAST_PROMO_* by salescast.stream.core.settings."""

    overstock_days: float = 60.0  # stock covering more days of forecast demand than this is overstock
    affinity_min_users: int = 50  # candidate users needed for an `affinity` promotion
    affinity_max_conversion: float = 0.02  # ... while the SKU sells fewer units per click than this
    max_discount: float = 0.3
    min_margin: float = 0.1  # the discounted price stays >= unit cost x (1 + min_margin)
    discount_step: float = 0.05  # depths tried: step, 2 step, ... up to max_discount
    validity_ms: int = 3 * DAY_MS  # a trigger's offer lasts this long (valid_until - ts)
    holdout_fraction: float = 0.1  # of the candidates, kept out of the promotion to measure it
    max_targets: int = 200  # candidates offered (targets and holdout together)
    cooldown_ms: int = 7 * DAY_MS  # no new trigger on a SKU this soon after its last one
    max_open: int = 20  # triggers valid at the same time, over all SKUs
    daily_budget: float = 5000.0  # expected discount cost admitted per day (event time), in money
    objective: str = "revenue"  # what a depth must gain: "revenue" or "margin" (the module docstring)
    # no promo trigger for a bucket that ended longer ago than this before "now" (history being loaded)
    max_age_ms: int = 2 * DAY_MS


@dataclass
class Signals:
    """What the rules read about one SKU at a bucket close."""

    on_hand: int | None
    horizon_p50: list[float]  # forecast units per bucket ahead
    bucket_days: float  # length of a bucket in days
    last_units: float  # units sold in the bucket just closed
    last_p10: float | None  # the P10 the previous forecast gave for that bucket
    last_in_stock: bool  # the bucket just closed was not sold out
    recent_units: float  # units over the last week
    recent_clicks: float  # clicks over the last week
    candidates: Callable[[], int]  # users in the SKU's candidate index; asked only by the last rule (a read)


def days_of_cover(signals: Signals) -> float:
    per_day = sum(signals.horizon_p50) / (len(signals.horizon_p50) * signals.bucket_days)
    return float("inf") if per_day <= 0 else (signals.on_hand or 0) / per_day


def reason_for(signals: Signals, policy: PromoPolicy) -> str | None:
    """The first rule that holds, in the order of REASONS; None when stock is short or unknown."""
    if signals.on_hand is None or signals.on_hand < sum(signals.horizon_p50):
        return None
    if days_of_cover(signals) > policy.overstock_days:
        return "overstock"
    if signals.last_p10 is not None and signals.last_in_stock and signals.last_units < signals.last_p10:
        return "demand_drop"
    if (signals.recent_clicks > 0 and signals.recent_units / signals.recent_clicks < policy.affinity_max_conversion
            and signals.candidates() >= policy.affinity_min_users):
        return "affinity"
    return None


@dataclass
class Depth:
    discount: float
    expected_incremental_units: float
    expected_incremental_revenue: float  # net of the discount given to buyers who would have bought anyway
    expected_discount_cost: float  # the discount handed out over all expected promoted units
    expected_incremental_margin: float = 0.0  # the revenue gain less the unit cost of the incremental units


def choose_discount(list_price: float, unit_cost: float | None, elasticity: float, baseline_units: float,
                    policy: PromoPolicy) -> Depth | None:
    """The allowed depth with the best expected gain (revenue or margin, by `policy.objective`) over
    `baseline_units` (the targets' purchases without a promotion); None when no depth gains or the margin
    floor leaves none."""
    if unit_cost is None or list_price <= 0 or baseline_units <= 0:
        return None
    floor = unit_cost * (1 + policy.min_margin)
    steps = np.arange(1, int(round(policy.max_discount / policy.discount_step)) + 1) * policy.discount_step
    steps = steps[(steps <= policy.max_discount + 1e-9) & (list_price * (1 - steps) >= floor - 1e-9)]
    if steps.size == 0:
        return None
    lift = (1 - steps) ** elasticity
    units = baseline_units * lift
    revenue = units * (1 - steps) * list_price - baseline_units * list_price
    margin = revenue - (units - baseline_units) * unit_cost
    gain = margin if policy.objective == "margin" else revenue
    best = int(np.argmax(gain))
    if gain[best] <= 0:
        return None
    d = float(round(steps[best], 4))
    return Depth(d, float(units[best] - baseline_units), float(revenue[best]), float(units[best] * d * list_price),
                 float(margin[best]))
