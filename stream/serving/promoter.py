"""The worker's promotion step: at a SKU's bucket close, propose a trigger; measure the triggers it runs.

A proposal is made where the SKU's window closes (that worker holds its
window and its candidate users), then goes through the guardrails on the one
worker that owns the proposals topic's single partition; an admitted trigger
is emitted on `promo-triggers` and registered back with the SKU's window,
whose sales from then on are attributed to it (salescast.models.promo.attribution).
Without a promotion model (none trained yet) nothing is proposed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from salescast.models.cf import candidates
from salescast.models.promo import attribution, guardrails
from salescast.models.promo.audience import split_holdout
from salescast.models.promo.elasticity import ElasticityModel
from salescast.models.promo.policy import PromoPolicy, Signals, choose_discount, reason_for
from salescast.models.store import ModelStore, ModelStoreError, StoredModel
from salescast.stream.core.engine import SkuUpdate
from salescast.stream.core.settings import Settings

log = logging.getLogger(__name__)
MODEL_NAME = "promo"
DAY_MS = 86_400_000
RECENT_DAYS = 7


@dataclass
class PromoModel:
    """What a decision needs from training: elasticities, and how much a candidate user buys unprompted."""

    elasticity: ElasticityModel
    base_rates: dict[str, float]  # category ("" for all) -> units a candidate user buys of a SKU per day
    version: str

    def base_rate(self, category: str | None) -> float | None:
        return self.base_rates.get(category or "", self.base_rates.get(""))


def promo_model_from_stored(stored: StoredModel) -> PromoModel:
    """A stored promotion model ready to decide with; ValueError (or KeyError) when it cannot: every
    elasticity and base rate it holds must be a finite number."""
    config = stored.config
    model = PromoModel(ElasticityModel.from_stored(config["elasticity"], stored.weights),
                       {str(k): float(v) for k, v in config["base_rates"].items()}, stored.version)
    elasticity = model.elasticity
    estimates = [elasticity.overall, *elasticity.categories.values(), *elasticity.skus.values()]
    values = [v for e in estimates if e is not None for v in (e.elasticity, e.se)] + list(model.base_rates.values())
    if not np.isfinite(values).all():
        raise ValueError(f"{stored.version} holds non-finite elasticities or base rates")
    return model


def load_promo_model(settings: Settings) -> PromoModel | None:
    store = ModelStore(settings.model_store)
    if store.current(MODEL_NAME) is None:
        log.warning("no %s model in %s yet: no promotion is proposed until `salescast retrain` builds one",
                    MODEL_NAME, settings.model_store)
        return None
    try:
        model = promo_model_from_stored(store.load(MODEL_NAME))
    except (ModelStoreError, KeyError, ValueError) as exc:
        log.error("cannot use the current %s model, so no promotion is proposed: %s", MODEL_NAME, exc)
        return None
    log.warning("deciding promotions with %s %s", MODEL_NAME, model.version)
    return model


def signals(window: dict, forecast: dict, entry: Callable[[], dict | None], settings: Settings) -> Signals:
    """`entry` gives the SKU's candidate entry when a rule needs it (reading it costs a table read)."""
    last_closed = forecast["ts"] // settings.bucket_ms
    index = last_closed - window["b"]
    inside = 0 <= index < len(window["u"])
    recent = max(1, int(round(RECENT_DAYS * DAY_MS / settings.bucket_ms)))
    start = max(0, index - recent + 1)
    fp = window.get("fp")
    return Signals(
        on_hand=stock_now(window, settings),
        horizon_p50=[h["p50"] for h in forecast["horizon"]],
        bucket_days=settings.bucket_ms / DAY_MS,
        last_units=window["u"][index] if inside else 0,
        last_p10=fp[1] if fp and fp[0] == last_closed else None,
        last_in_stock=(window["s"][index] != 0) if inside and "s" in window else True,
        recent_units=float(sum(window["u"][start:index + 1])) if index >= 0 else 0.0,
        recent_clicks=float(sum(window["c"][start:index + 1])) if index >= 0 else 0.0,
        candidates=lambda: len((entry() or {"u": ()})["u"]),
    )


def stock_now(window: dict, settings: Settings) -> int | None:
    """The last stock report minus the units sold since the start of its bucket.

    Reports come now and then (the generator's once a day); the sales since
    are known, so the stock a decision sees is not a day stale. Sales earlier
    in the report's bucket count too: the estimate errs low, the safe side
    for "never promote short stock".
    """
    if window["oh"] is None:
        return None
    since = window["oh_ts"] // settings.bucket_ms - window["b"]
    return max(0, int(window["oh"] - sum(window["u"][max(0, since):])))


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

    def at_close(self, sku: str, window: dict, forecast: dict | None, now: int, propose: bool = True
                 ) -> tuple[dict | None, list[tuple[str, dict]]]:
        """`forecast` is the one made at this close (None: the SKU is not live); `propose` False: the
        bucket closed too long ago for a promotion (salescast.stream.core.engine.promotions_allowed)."""
        outcomes = finish(sku, window, now)
        if not propose or forecast is None or self.model is None or \
                any(state["until"] > now for state in window.get("promos", ())):
            return None, outcomes
        return self.propose(sku, window, forecast, now), outcomes

    def propose(self, sku: str, window: dict, forecast: dict, now: int) -> dict | None:
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
        category = window.get("cat")
        estimate = self.model.elasticity.elasticity(sku, category)
        rate = self.model.base_rate(category)
        ranked = candidates.ranked(entry(), policy.max_targets, self.settings.interaction_half_life_ms)
        if estimate is None or rate is None or len(ranked) < 2 or not window.get("lp"):
            return None
        identity = trigger_id(sku, now)
        scores = dict(ranked)
        targets, holdout = split_holdout(identity, [user for user, _ in ranked], policy.holdout_fraction)
        baseline = rate * policy.validity_ms / DAY_MS * len(targets)
        depth = choose_discount(window["lp"], window.get("uc"), estimate.elasticity, baseline, policy)
        if depth is None:
            return None
        trigger = {
            "trigger_id": identity, "ts": now, "sku": sku, "reason": reason, "discount": depth.discount,
            "targets": [{"user_id": user, "score": scores[user]} for user in targets], "holdout": holdout,
            "valid_until": now + policy.validity_ms,
            "forecast_units": round(float(np.sum([h["p50"] for h in forecast["horizon"]])), 4),
            "on_hand": stock_now(window, self.settings),
            "expected_incremental_units": round(depth.expected_incremental_units, 4),
            "expected_incremental_revenue": round(depth.expected_incremental_revenue, 4),
            "models": {forecast["model"]["name"]: forecast["model"]["version"], **self.model_versions(),
                       MODEL_NAME: self.model.version},
        }
        return {"trigger": trigger, "cost": round(depth.expected_discount_cost, 4), "category": category,
                "elasticity": round(estimate.elasticity, 4)}


def admit(state: dict, proposal: dict, policy: PromoPolicy) -> str:
    trigger = proposal["trigger"]
    return guardrails.admit(state, trigger["trigger_id"], trigger["sku"], trigger["ts"], trigger["valid_until"],
                            proposal["cost"], policy)


def registration(trigger: dict, source: str, offset: int) -> SkuUpdate:
    """The update that opens an admitted trigger's attribution in its SKU's window."""
    return SkuUpdate("promo", trigger["sku"], trigger["ts"], source, offset, trigger=trigger)


def finish(sku: str, window: dict, now: int) -> list[tuple[str, dict]]:
    """(reason, final outcome record) of the SKU's triggers whose window ended by event time `now`; they
    leave the window."""
    states = window.get("promos")
    if not states:
        return []
    ended = [state for state in states if state["until"] <= now]
    if not ended:
        return []
    window["promos"] = [state for state in states if state["until"] > now]
    return [(state["reason"], attribution.outcome_record(state, sku, state["until"], final=True)) for state in ended]


def outcome_updates(sku: str, window: dict) -> list[dict]:
    """Interim outcome records of the SKU's triggers that attributed a sale since the last ones."""
    records = []
    for state in window.get("promos", ()):
        if state.get("dirty"):
            state["dirty"] = False
            records.append(attribution.outcome_record(state, sku, state.get("at", state["ts"]), final=False))
    return records
