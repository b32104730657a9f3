"""Training the promotion model from the service's state: elasticities and base purchase rates.

The base rate is how many units of a SKU a candidate user buys per day without
a promotion: what a trigger's expected incremental units are a multiple of.
Finished triggers measure it directly (their holdouts' purchases); until a
category has MIN_HOLDOUT holdout users, it is estimated from the windows and
the user vectors: the SKUs' recent units per day over the users who have them
in their vectors. That prior counts every interested user, not the strongest
candidates, so it errs low; the outcomes correct it.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from salescast.models import useritem, windows
from salescast.models.promo.elasticity import ElasticityModel, panel_from_series
from salescast.stream.core.settings import Settings
from salescast.models.timeunits import DAY_MS

MIN_HOLDOUT = 100  # holdout users of a category's finished triggers before their rate replaces the prior
RECENT_BUCKETS = 28


def join_outcomes(finals: Iterable[dict], triggers: Iterable[dict]) -> list[dict]:
    """Each final outcome with its trigger's discount, window length, reason and prediction."""
    by_id = {trigger["trigger_id"]: trigger for trigger in triggers}
    joined = []
    for outcome in finals:
        trigger = by_id.get(outcome["trigger_id"])
        if trigger is None:
            continue
        joined.append({**outcome, "discount": trigger["discount"], "reason": trigger["reason"],
                       "days": (trigger["valid_until"] - trigger["ts"]) / DAY_MS,
                       "expected_incremental_units": trigger.get("expected_incremental_units"),
                       "calibration": trigger.get("calibration")})
    return joined


def fit(sku_windows: dict[str, windows.Window], vectors: dict[str, useritem.UserVector], triggers: list[dict],
        outcomes: list[dict], settings: Settings) -> tuple[ElasticityModel, dict[str, float], dict]:
    """`triggers`: every trigger emitted (their buckets leave the price regression); `outcomes`: the
    finished ones joined with their triggers (join_outcomes)."""
    categories = {sku: windows.category(window) or "" for sku, window in sku_windows.items()}
    outcomes = [{**outcome, "category": categories.get(outcome["sku"], "")} for outcome in outcomes]
    targeted = targeted_buckets(sku_windows, triggers, settings.time.bucket_ms)
    series = [price_series(sku, categories[sku], window, targeted.get(sku)) for sku, window in sku_windows.items()]
    model = ElasticityModel(season=settings.time.season).fit(panel_from_series(series)).with_outcomes(outcomes)
    rates = base_rates(sku_windows, categories, vectors, outcomes, settings)
    return model, rates, metrics(model, outcomes)


def price_series(sku: str, category: str, window: windows.Window, targeted: np.ndarray | None) -> tuple:
    """The SKU's row for elasticity.panel_from_series."""
    return (sku, category, windows.first_bucket(window), windows.units(window), windows.revenue(window),
            windows.stock_reports(window), windows.list_price(window), targeted)


def targeted_buckets(sku_windows: dict[str, windows.Window], triggers: list[dict],
                     bucket_ms: int) -> dict[str, np.ndarray]:
    """Per SKU, a mask over its window's buckets: True where one of its triggers ran."""
    masks: dict[str, np.ndarray] = {}
    for trigger in triggers:
        window = sku_windows.get(trigger["sku"])
        if window is None:
            continue
        mask = masks.setdefault(trigger["sku"], np.zeros(len(windows.units(window)), dtype=bool))
        first_held = windows.first_bucket(window)
        first = trigger["ts"] // bucket_ms - first_held
        last = (trigger["valid_until"] - 1) // bucket_ms - first_held
        mask[max(0, first):max(0, last + 1)] = True
    return masks


def base_rates(sku_windows: dict[str, windows.Window], categories: dict[str, str],
               vectors: dict[str, useritem.UserVector], outcomes: list[dict], settings: Settings) -> dict[str, float]:
    interested: dict[str, int] = {}
    for vector in vectors.values():
        for sku in useritem.weights(vector):
            interested[sku] = interested.get(sku, 0) + 1
    bucket_days = settings.time.bucket_ms / DAY_MS
    units: dict[str, float] = {}
    users: dict[str, float] = {}
    for sku, window in sku_windows.items():
        if not interested.get(sku):
            continue
        sold = windows.units(window)
        per_day = float(np.sum(sold[-RECENT_BUCKETS:])) / (min(RECENT_BUCKETS, len(sold)) * bucket_days)
        for key in (categories[sku], ""):
            units[key] = units.get(key, 0.0) + per_day
            users[key] = users.get(key, 0.0) + interested[sku]
    rates = {key: units[key] / users[key] for key in units if users[key] > 0}
    measured: dict[str, list[float]] = {}
    for outcome in outcomes:
        for key in (outcome["category"], ""):
            sums = measured.setdefault(key, [0.0, 0.0, 0])
            sums[0] += outcome.get("holdout_units") or 0.0
            sums[1] += outcome["holdout"] * outcome["days"]
            sums[2] += outcome["holdout"]
    for key, (holdout_units, user_days, holdout_users) in measured.items():
        if holdout_users >= MIN_HOLDOUT and holdout_units > 0:
            rates[key] = holdout_units / user_days
    return {key: round(rate, 9) for key, rate in rates.items()}


CALIBRATION_PRIOR_UNITS = 50.0  # predicted units' worth of belief that predictions are right, before outcomes
CALIBRATION_BOUNDS = (0.25, 2.0)


def realised_incremental_units(outcome: dict) -> float:
    """The targets' units less the holdout's, scaled to as many users: what the trigger added, as measured."""
    return (outcome.get("target_units") or 0) - (outcome.get("holdout_units") or 0) * outcome["targets"] / outcome["holdout"]


def calibration(outcomes: list[dict]) -> float:
    """How many incremental units a predicted one turned out to be, over the finished promotions: realised /
    predicted, pulled toward 1 by CALIBRATION_PRIOR_UNITS of predicted units (a few noisy outcomes move it
    little), within CALIBRATION_BOUNDS. The depth choice does not depend on it (a positive factor scales
    every depth's gain alike); the triggers' expected incremental units and revenue do."""
    measured = [o for o in outcomes if o["holdout"] and o.get("expected_incremental_units") is not None]
    predicted = sum(o["expected_incremental_units"] / (o.get("calibration") or 1.0) for o in measured)
    realised = sum(realised_incremental_units(o) for o in measured)
    factor = (realised + CALIBRATION_PRIOR_UNITS) / (predicted + CALIBRATION_PRIOR_UNITS)
    return round(float(min(max(factor, CALIBRATION_BOUNDS[0]), CALIBRATION_BOUNDS[1])), 4)


def metrics(model: ElasticityModel, outcomes: list[dict]) -> dict:
    """The model-version record's metrics: coverage, and predicted vs realised units of finished triggers."""
    values = [estimate.elasticity for estimate in model.categories.values()]
    out = {"categories": len(model.categories), "skus_with_own_elasticity": len(model.skus),
           "median_elasticity": round(float(np.median(values)), 4) if values else None,
           "finished_promotions": len(outcomes)}
    measured = [o for o in outcomes if o["holdout"] and o.get("expected_incremental_units") is not None]
    if measured:
        out["predicted_incremental_units"] = round(sum(o["expected_incremental_units"] for o in measured), 3)
        out["realised_incremental_units"] = round(sum(realised_incremental_units(o) for o in measured), 3)
    out["calibration"] = calibration(outcomes)
    return out
