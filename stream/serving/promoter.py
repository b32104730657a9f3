"""The worker's promotion step: at a SKU's bucket close, propose a trigger; measure the triggers it runs.

A proposal is made where the SKU's window closes (that worker holds its
window and its candidate users), then goes through the guardrails on the one
worker that owns the proposals topic's single partition; an admitted trigger
is emitted on `promo-triggers` and registered back with the SKU's window,
whose sales from then on are attributed to it (salescast.models.promo.attribution).
Without a promotion model (none trained yet) nothing is proposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from salescast.models import windows
from salescast.models.cf import candidates
from salescast.models.promo import attribution, guardrails
from salescast.models.promo.audience import split_holdout
from salescast.models.promo.elasticity import ElasticityModel
from salescast.models.promo.policy import PromoPolicy, Signals, choose_discount, reason_for
from salescast.models.store import StoredModel
from salescast.stream.core.state import SkuUpdate
from salescast.stream.core.settings import Settings
from salescast.models.timeunits import DAY_MS

MODEL_NAME = "promo"
RECENT_DAYS = 7


@dataclass
class PromoModel:
    """What a decision needs from training: elasticities, and how much a candidate user buys unprompted."""

    elasticity: ElasticityModel
    base_rates: dict[str, float]  # category ("" for all) -> units a candidate user buys of a SKU per day
    version: str
    # realised / predicted incremental units of the finished promotions (salescast.training.promotions.calibration)
    calibration: float = 1.0

    def base_rate(self, category: str | None) -> float | None:
        return self.base_rates.get(category or "", self.base_rates.get(""))

    def smoke_test(self) -> None:
        """Every elasticity and base rate must be a finite number: a version that holds others is refused
        before it decides anything (ValueError)."""
        elasticity = self.elasticity
        estimates = [elasticity.overall, *elasticity.categories.values(), *elasticity.skus.values()]
        values = [v for e in estimates if e is not None for v in (e.elasticity, e.se)] + list(self.base_rates.values())
        values.append(self.calibration)
        if not np.isfinite(values).all():
            raise ValueError(f"{self.version} holds non-finite elasticities or base rates")


def promo_model_from_stored(stored: StoredModel) -> PromoModel:
    """A stored promotion model; ValueError (or KeyError) when its files do not make one. Not yet
    smoke-tested: salescast.stream.serving.registry.load_version runs `smoke_test`."""
    config = stored.config
    return PromoModel(ElasticityModel.from_stored(config["elasticity"], stored.weights),
                      {str(k): float(v) for k, v in config["base_rates"].items()}, stored.version,
                      float(config.get("calibration", 1.0)))


def signals(window: windows.Window, forecast: dict, entry: Callable[[], dict | None], settings: Settings
            ) -> Signals:
    """`entry` gives the SKU's candidate entry when a rule needs it (reading it costs a table read)."""
    last_closed = forecast["ts"] // settings.time.bucket_ms
    recent = max(1, int(round(RECENT_DAYS * DAY_MS / settings.time.bucket_ms)))
    first_recent = last_closed - recent + 1
    return Signals(
        on_hand=windows.stock_now(window, settings.time.bucket_ms),
        horizon_p50=[h["p50"] for h in forecast["horizon"]],
        bucket_days=settings.time.bucket_ms / DAY_MS,
        last_units=windows.units_between(window, last_closed, last_closed),
        last_p10=windows.p10_forecast(window, last_closed),
        last_in_stock=windows.in_stock_at(window, last_closed),
        recent_units=float(windows.units_between(window, first_recent, last_closed)),
        recent_clicks=float(windows.clicks_between(window, first_recent, last_closed)),
        candidates=lambda: candidates.user_count(entry()),
    )


def trigger_id(sku: str, ts: int) -> str:
    """One decision per SKU per bucket: the id is the SKU and the decision's event time."""
    return f"{sku}@{ts}"


class Promoter:
    """`at_close` for close_buckets: finishes the SKU's ended triggers and may propose a new one."""

    def __init__(self, model: PromoModel | None, policy: PromoPolicy, settings: Settings,
                 candidates_of: Callable[[str], dict | None], model_versions: Callable[[], dict[str, str]]):
        self.model, self.policy, self.settings = model, policy, settings
        self.candidates_of = candidates_of
        self.model_versions = model_versions

    def at_close(self, sku: str, window: windows.Window, forecast: dict | None, now: int, propose: bool = True
                 ) -> tuple[dict | None, list[tuple[str, dict]]]:
        """`forecast` is the one made at this close (None: the SKU is not live); `propose` False: the
        bucket closed too long ago for a promotion (salescast.stream.core.close.promotions_allowed)."""
        outcomes = finish(sku, window, now)
        if not propose or forecast is None or self.model is None or \
                any(state["until"] > now for state in windows.promotions(window)):
            return None, outcomes
        return self.propose(sku, window, forecast, now), outcomes

    def propose(self, sku: str, window: windows.Window, forecast: dict, now: int) -> dict | None:
        """A proposal: the trigger record and what the guardrails weigh; None when no rule or no depth holds."""
        policy = self.policy
        read: list[dict | None] = []

        def entry() -> dict | None:
            if not read:
                read.append(self.candidates_of(sku))
            return read[0]

        reason = reason_for(signals(window, forecast, entry, self.settings), policy)
        if reason is None:
            return None
        category = windows.category(window)
        estimate = self.model.elasticity.elasticity(sku, category)
        rate = self.model.base_rate(category)
        ranked = candidates.ranked(entry(), policy.max_targets, self.settings.recommendations.interaction_half_life_ms)
        list_price = windows.list_price(window)
        if estimate is None or rate is None or len(ranked) < 2 or not list_price:
            return None
        identity = trigger_id(sku, now)
        scores = dict(ranked)
        targets, holdout = split_holdout(identity, [user for user, _ in ranked], policy.holdout_fraction)
        baseline = rate * policy.validity_ms / DAY_MS * len(targets)
        depth = choose_discount(list_price, windows.unit_cost(window), estimate.elasticity, baseline, policy)
        if depth is None:
            return None
        trigger = {
            "trigger_id": identity, "ts": now, "sku": sku, "reason": reason, "discount": depth.discount,
            "targets": [{"user_id": user, "score": scores[user]} for user in targets], "holdout": holdout,
            "valid_until": now + policy.validity_ms,
            "forecast_units": round(float(np.sum([h["p50"] for h in forecast["horizon"]])), 4),
            "on_hand": windows.stock_now(window, self.settings.time.bucket_ms),
            "expected_incremental_units": round(depth.expected_incremental_units * self.model.calibration, 4),
            "expected_incremental_revenue": round(depth.expected_incremental_revenue * self.model.calibration, 4),
            "calibration": self.model.calibration,
            "models": {forecast["model"]["name"]: forecast["model"]["version"], **self.model_versions(),
                       MODEL_NAME: self.model.version},
        }
        return {"trigger": trigger, "cost": round(depth.expected_discount_cost, 4), "category": category,
                "elasticity": round(estimate.elasticity, 4)}


def admit(state: dict, sku_state: dict, proposal: dict, policy: PromoPolicy) -> str:
    """`state`: the guardrails' shared value; `sku_state`: the proposing SKU's (salescast.models.promo.guardrails)."""
    trigger = proposal["trigger"]
    return guardrails.admit(state, sku_state, trigger["trigger_id"], trigger["ts"], trigger["valid_until"],
                            proposal["cost"], policy)


def registration(trigger: dict, source: str, offset: int) -> SkuUpdate:
    """The update that opens an admitted trigger's attribution in its SKU's window."""
    return SkuUpdate("promo", trigger["sku"], trigger["ts"], source, offset, trigger=trigger)


def finish(sku: str, window: windows.Window, now: int) -> list[tuple[str, dict]]:
    """(reason, final outcome record) of the SKU's triggers whose window ended by event time `now`; they
    leave the window."""
    states = windows.promotions(window)
    ended = [state for state in states if state["until"] <= now]
    if not ended:
        return []
    windows.set_promotions(window, [state for state in states if state["until"] > now])
    return [(state["reason"], attribution.outcome_record(state, sku, state["until"], final=True)) for state in ended]


def outcome_updates(sku: str, window: windows.Window) -> list[dict]:
    """Interim outcome records of the SKU's triggers that attributed a sale since the last ones."""
    records = []
    for state in windows.promotions(window):
        if state.get("dirty"):
            state["dirty"] = False
            records.append(attribution.outcome_record(state, sku, state.get("at", state["ts"]), final=False))
    return records
