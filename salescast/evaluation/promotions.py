"""`salescast evaluate --promo`: promotions in a closed loop with the synthetic shop, against its truth.

The shop (salescast.sim.generator) runs day by day; every event goes through the
worker's own code (salescast.stream.core.local: ingest, windows, user vectors,
candidate index, bucket close, guardrails, attribution). After a
warm-up the recommender and the promotion model are trained as `salescast
retrain` trains them, and again every week on everything so far, finished
promotions included (the feedback). Each day's close runs the promotion step
and the guardrails; the shop acts on every admitted trigger: its targets see
the discount, its holdout does not, and the shop keeps each member's exact
chance to buy with and without it, so each trigger's true uplift is known.

The report: triggers by reason, predicted vs realised incremental units,
the measured uplift with its 95% interval against the true uplift, the
elasticities against the shop's, and a check that no trigger met short stock.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import orjson

from salescast.models import windows
from salescast.models.promo.attribution import uplift_interval
from salescast.models.store import ModelStore
from salescast.sim.generator import CATEGORIES, Shop, ShopConfig
from salescast.stream.core.local import Emitted, LocalPipeline
from salescast.stream.serving.registry import CF, PROMO, load_current
from salescast.stream.core.settings import Settings
from salescast.models.timeunits import DAY_MS

RETRAIN_EVERY_DAYS = 7
ENOUGH_CUT_PRICE_BUCKETS = 40  # a category with at least this many is held to the +-20% elasticity target


@dataclass
class Simulation:
    shop: Shop
    triggers: list[dict] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, dict] = field(default_factory=dict)  # trigger id -> final outcome
    short_stock: int = 0  # triggers whose SKU had less true stock than its forecast demand
    models: list[dict] = field(default_factory=list)  # promo model facts after each training
    elasticity_before_feedback: dict = field(default_factory=dict)
    elasticity_after_feedback: dict = field(default_factory=dict)
    cut_price: dict = field(default_factory=dict)  # category -> cut-price buckets the last training saw
    sku_elasticities: dict = field(default_factory=dict)  # SKU -> its own elasticity at the last training
    information: dict = field(default_factory=dict)  # SKU -> how much its prices say about its elasticity


def simulate(config: ShopConfig, warmup_days: int, settings: Settings, log: Callable[[str], None]) -> Simulation:
    """The closed loop, with its models in a model store of its own that is removed afterwards.

    The shop's event time is the clock (SALESCAST_CLOCK=events): its days are
    simulated faster than real time, and its promotions are decided as they close.
    """
    with tempfile.TemporaryDirectory(prefix="salescast-promo-eval-") as store_dir:
        settings = replace(settings, store=replace(settings.store, path=Path(store_dir)),
                           time=replace(settings.time, clock="events"),
                           forecasting=replace(settings.forecasting,
                                               history_buckets=max(settings.forecasting.history_buckets,
                                                                   config.days + 1)))
        return _simulate(config, warmup_days, settings, log)


def _simulate(config: ShopConfig, warmup_days: int, settings: Settings, log: Callable[[str], None]) -> Simulation:
    from salescast.training import retrain as training

    shop = Shop(config)
    sim = Simulation(shop)
    pipeline = LocalPipeline(settings, recommender=load_current(CF, settings))
    last_offer_day = config.days - settings.promo.validity_ms // DAY_MS

    def train(day: int) -> None:
        store = ModelStore(settings.store.path)
        finished = _joined_outcomes(sim)
        inputs = training.TrainingInput("simulation", pipeline.windows, pipeline.open_bucket - 1, pipeline.vectors,
                                        promotions=lambda: (sim.triggers, finished))
        for name in (CF, PROMO):
            saved = training.TRAINERS[name].train(settings, inputs, training.TrainOptions(seed=config.seed), log)
            store.set_current(saved["name"], saved["version"])
        pipeline.recommender = load_current(CF, settings)
        model = pipeline.promo_model = load_current(PROMO, settings)
        sim.models.append({"day": day, "outcomes": len(finished), **model.elasticity.facts})
        sim.cut_price = model.elasticity.facts.get("discounted_rows_by_category", {})
        sim.sku_elasticities = {sku: e.elasticity for sku, e in model.elasticity.skus.items()}
        if not sim.elasticity_before_feedback:
            sim.elasticity_before_feedback = _elasticities(model)
        sim.elasticity_after_feedback = _elasticities(model)
        pipeline.refresh_candidates(every_user=True)  # the new recommender scores everyone afresh

    def act(emitted: list[Emitted]) -> None:
        for item in emitted:
            if item.topic == "promo_outcomes" and item.record["final"]:
                sim.outcomes[item.record["trigger_id"]] = item.record
            elif item.topic == "promo_triggers":
                trigger = item.record
                if shop.on_hand[shop.sku_index[trigger["sku"]]] < trigger["forecast_units"]:
                    sim.short_stock += 1
                sim.triggers.append({**trigger, "elasticity": item.proposal["elasticity"],
                                     "category": item.proposal["category"]})
                shop.offer(trigger)

    started = time.monotonic()
    for day in range(config.days):
        if day >= warmup_days and (day - warmup_days) % RETRAIN_EVERY_DAYS == 0 and day < last_offer_day:
            train(day)
        if day == last_offer_day:
            pipeline.promo_model = None  # no offer the simulation cannot follow to its end
        for topic, record in shop.day(day):
            act(pipeline.feed(topic, orjson.dumps(record), record=record))
        act(pipeline.close((config.start_ms + (day + 1) * DAY_MS) // settings.time.bucket_ms))
        if day % 10 == 9:
            log(f"day {day + 1}/{config.days}: {len(sim.triggers)} triggers, {len(sim.outcomes)} finished "
                f"({time.monotonic() - started:.0f}s)")
    sim.refused = dict(pipeline.counts.refused)
    for window in pipeline.windows.values():
        for state in windows.promotions(window):
            log(f"trigger {state['id']} still open at the end; left out")
    sim.information = _price_information(pipeline.windows, sim.triggers, settings)
    return sim


def _price_information(sku_windows: dict[str, windows.Window], triggers: list[dict],
                       settings: Settings) -> dict[str, float]:
    """What each SKU's prices tell the regression about its elasticity: the sum over its buckets of
    units x (log price ratio - the SKU's mean)^2, as the fit sees them (same rows, same price inference).
    A pooled estimate is an average of the SKUs' elasticities weighted about so."""
    from salescast.models.promo.elasticity import panel_from_series
    from salescast.training.promotions import price_series, targeted_buckets

    targeted = targeted_buckets(sku_windows, triggers, settings.time.bucket_ms)
    information = {}
    for sku, window in sku_windows.items():
        panel = panel_from_series([price_series(sku, "", window, targeted.get(sku))])
        if len(panel.units):
            x = np.log(panel.price_ratio)
            information[sku] = float(np.sum(panel.units * (x - np.average(x, weights=panel.units + 1e-9)) ** 2))
    return information


def _joined_outcomes(sim: Simulation) -> list[dict]:
    from salescast.training.promotions import join_outcomes

    return join_outcomes(sim.outcomes.values(), sim.triggers)


def _elasticities(model) -> dict:
    """category -> (served estimate, its se, the category's own fit or None)."""
    raw = model.elasticity.raw_categories
    return {category: (estimate.elasticity, estimate.se, raw.get(category))
            for category, estimate in model.elasticity.categories.items()}


def report(sim: Simulation, config: ShopConfig, warmup_days: int) -> tuple[str, dict]:
    truth = sim.shop.ground_truth()
    lines = [f"Shop: {config.skus} SKUs, {config.users} users, {config.days} days (seed {config.seed}); "
             f"warm-up {warmup_days} days, then promotions decided at every daily close, the models retrained "
             f"every {RETRAIN_EVERY_DAYS} days. Expected conversions are the shop's exact chances to buy given "
             "the views each member made (with the offer for targets, without for the holdout); the true "
             "uplift is their mean difference with and without the offer over all members.", ""]
    finished = [(t, sim.outcomes[t["trigger_id"]]) for t in sim.triggers if t["trigger_id"] in sim.outcomes]
    figures: dict = {"triggers": len(sim.triggers), "finished": len(finished), "refused": dict(sim.refused),
                     "short_stock": sim.short_stock}
    lines += ["| reason | triggers | targets | holdout | target conv. (expected) | holdout conv. (expected) | "
              "uplift [95% CI] | true uplift | predicted incr. units | realised incr. units |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    rows = {}
    for reason in ("overstock", "demand_drop", "affinity", "all"):
        group = [(t, o) for t, o in finished if reason == "all" or t["reason"] == reason]
        if not group:
            continue
        nt = sum(o["targets"] for _, o in group)
        nh = sum(o["holdout"] for _, o in group)
        bt = sum(o["target_buyers"] for _, o in group)
        bh = sum(o["holdout_buyers"] for _, o in group)
        interval = uplift_interval(bt, nt, bh, nh)
        offers = [truth["offers"][t["trigger_id"]] for t, _ in group]
        true_uplift = (sum(o["uplift"] * o["members"] for o in offers if o["uplift"] is not None)
                       / max(1, sum(o["members"] for o in offers if o["uplift"] is not None)))
        predicted = sum(t["expected_incremental_units"] for t, _ in group)
        realised = sum(o["target_units"] - o["holdout_units"] * o["targets"] / o["holdout"]
                       for _, o in group if o["holdout"])
        rows[reason] = {"triggers": len(group), "targets": nt, "holdout": nh, "uplift": interval,
                        "true_uplift": true_uplift, "predicted_units": predicted, "realised_units": realised}
        uplift_text = "n/a" if interval is None else f"{interval[0]:+.4f} [{interval[1]:+.4f}, {interval[2]:+.4f}]"
        expected_t = sum(o["targets_buying"] for o in offers) / nt
        expected_h = sum(o["holdout_buying"] for o in offers) / max(nh, 1)
        lines.append(f"| {reason} | {len(group)} | {nt} | {nh} | {bt / nt:.4f} ({expected_t:.4f}) | "
                     f"{bh / max(nh, 1):.4f} ({expected_h:.4f}) | "
                     f"{uplift_text} | {true_uplift:+.4f} | {predicted:.1f} | {realised:.1f} |")
    figures["by_reason"] = rows
    money = money_by_audience(sim, {t["trigger_id"] for t, _ in finished})
    figures["money"] = money
    figures["calibration"] = calibration_check(sim, finished)
    lines += ["", "Predicted incremental units against the shop's true expected ones (the targets' exact chances to "
              "buy with and without the offer), for triggers made before any promotion had finished (calibration "
              "1) and after (scaled by realised / predicted of the finished ones):", "",
              "| triggers | count | calibration applied | predicted | true | true / predicted |",
              "|---|---:|---:|---:|---:|---:|"]
    for label, check in figures["calibration"].items():
        ratio = check["true"] / check["predicted"] if check["predicted"] else float("nan")
        lines.append(f"| {label} | {check['triggers']} | {check['mean_calibration']:.3f} | {check['predicted']:.1f} | "
                     f"{check['true']:.1f} | {ratio:.2f} |")
    lines += ["", "What the finished triggers earned, against what the same offers would have earned sent elsewhere "
              "(the shop's exact expected purchases given the views made in each offer's window; margin is net of "
              "the discount, which buyers who would have bought anyway get too; no promotion earns 0 of each):", "",
              "| audience | offers sent | incremental units | incremental revenue | incremental margin | "
              "discount given |", "|---|---:|---:|---:|---:|---:|"]
    for audience, label in AUDIENCES.items():
        m = money[audience]
        lines.append(f"| {label} | {m['offered']} | {m['units']:+.1f} | {m['revenue']:+.2f} | {m['margin']:+.2f} | "
                     f"{m['discount_cost']:.2f} |")
    members = sum(o["targets"] + o["holdout"] for _, o in finished)
    fraction_now = sum(o["holdout"] for _, o in finished) / members if members else 0.0
    figures["holdout_power"] = power_rows = holdout_power(finished, fraction_now)
    lines += ["", "Holdout power: a campaign is every finished trigger of one reason in one week (by trigger time). "
              "Power is that of the two-sided 5% test of its uplift, for the median campaign, at the uplift the "
              "model predicted (incremental units over targets, at the units per buying target seen) and the "
              "holdout conversion seen; 'CI excludes 0' is how many campaigns' 95% interval did:", "",
              "| reason | campaigns | median members | holdout conv. | predicted uplift | power now "
              f"({fraction_now:.0%} held out) | CI excludes 0 | holdout share for 80% power | "
              "weeks to pool for 80% at today's share |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for reason, row in power_rows.items():
        needed = "not reachable (pool weeks)" if row["fraction_for_80"] is None else f"{row['fraction_for_80']:.0%}"
        weeks = "over 52" if row["weeks_for_80"] is None else row["weeks_for_80"]
        power_now = "n/a (< 5 expected holdout buyers)" if row["power_now"] is None else f"{row['power_now']:.2f}"
        lines.append(f"| {reason} | {row['campaigns']} | {row['median_members']:.0f} | {row['holdout_conversion']:.4f} | "
                     f"{row['predicted_uplift']:+.4f} | {power_now} | {row['significant']} of "
                     f"{row['campaigns']} | {needed} | {weeks} |")
    overall = rows.get("all")
    if overall and overall["uplift"]:
        value, low, high = overall["uplift"]
        figures["uplift_positive"] = value > 0
        figures["truth_within_interval"] = low <= overall["true_uplift"] <= high
        lines += ["", f"Measured uplift {value:+.4f} (95% CI {low:+.4f} to {high:+.4f}); true uplift "
                      f"{overall['true_uplift']:+.4f}: {'inside' if figures['truth_within_interval'] else 'OUTSIDE'} "
                      f"the interval. Triggers on SKUs with less stock than their forecast demand: {sim.short_stock}."]
    lines += ["", f"Refused by the guardrails: {sim.refused or 'none'}.", "",
              "Elasticities: the shop's truth is the mean over the category's SKUs that it promoted. Each "
              "category's own fit is shrunk toward the fit of all categories by how much the categories "
              "really differ (empirical Bayes), and finished promotions are merged in: that is what serves.", "",
              "| category | true: mean | true: weighted as the fit weighs SKUs | own fit, history only | "
              "own fit, last training | served (shrunk, with feedback) | error vs mean | error vs weighted | "
              "cut-price buckets |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    promoted = {p["sku"] for p in truth["promotions"]}
    elasticity_rows = {}

    def fit_text(entry) -> str:
        return "n/a" if entry is None or entry[2] is None else f"{entry[2].elasticity:.3f} ± {entry[2].se:.3f}"

    for category in CATEGORIES:
        skus = [s for s, v in truth["skus"].items() if v["category"] == category and s in promoted]
        after = sim.elasticity_after_feedback.get(category)
        before = sim.elasticity_before_feedback.get(category)
        if not skus or after is None:
            continue
        true_value = float(np.mean([truth["skus"][s]["elasticity"] for s in skus]))
        weights = [sim.information.get(s, 0.0) for s in skus]
        weighted = float(np.average([truth["skus"][s]["elasticity"] for s in skus], weights=weights)) \
            if sum(weights) > 0 else true_value
        error = after[0] / true_value - 1
        own = after[2]
        cut = int(sim.cut_price.get(category, 0))
        elasticity_rows[category] = {"truth": true_value, "truth_weighted": weighted, "served": after[0],
                                     "se": after[1], "error": error, "error_weighted": after[0] / weighted - 1,
                                     "own_fit": None if own is None else own.elasticity,
                                     "own_fit_error": None if own is None else own.elasticity / true_value - 1,
                                     "cut_price_buckets": cut, "held_to_target": cut >= ENOUGH_CUT_PRICE_BUCKETS}
        few = "" if cut >= ENOUGH_CUT_PRICE_BUCKETS else " (few)"
        lines.append(f"| {category} | {true_value:.3f} | {weighted:.3f} | {fit_text(before)} | {fit_text(after)} | "
                     f"{after[0]:.3f} ± {after[1]:.3f} | {_flagged(error)} | {_flagged(after[0] / weighted - 1)} | "
                     f"{cut}{few} |")
    held = [row for row in elasticity_rows.values() if row["held_to_target"]]
    if held:
        figures["within_20pct_of_mean"] = sum(abs(row["error"]) <= 0.2 for row in held)
        figures["within_20pct_of_weighted"] = sum(abs(row["error_weighted"]) <= 0.2 for row in held)
        lines += ["", f"Within 20% of the truth, of the {len(held)} categories with at least "
                      f"{ENOUGH_CUT_PRICE_BUCKETS} cut-price buckets: {figures['within_20pct_of_mean']} against the "
                      f"plain mean, {figures['within_20pct_of_weighted']} against the weighted one (errors over 20% "
                      "are marked *)."]
    sku_errors = [(sim.sku_elasticities[s] / truth["skus"][s]["elasticity"] - 1) for s in sim.sku_elasticities]
    if sku_errors:
        figures["sku_elasticity_median_abs_error"] = float(np.median(np.abs(sku_errors)))
        lines += ["", f"SKUs with an elasticity of their own: {len(sku_errors)}; median absolute error against "
                      f"their true elasticity {figures['sku_elasticity_median_abs_error']:.1%}."]
    figures["elasticities"] = elasticity_rows
    figures["models"] = sim.models
    return "\n".join(lines) + "\n", figures


def holdout_power(finished: list[tuple[dict, dict]], fraction_now: float) -> dict[str, dict]:
    """Per reason, campaigns (its finished triggers in one week) and how well their uplift can be measured
    (salescast.models.promo.power): with today's holdout share, and the share 80% power would take."""
    from salescast.models.promo.power import approximation_holds, campaigns_to_pool, holdout_fraction_for, power

    week_ms = 7 * DAY_MS
    rows = {}
    for reason in ("overstock", "demand_drop", "affinity"):
        campaigns: dict[int, list[tuple[dict, dict]]] = {}
        for trigger, outcome in finished:
            if trigger["reason"] == reason:
                campaigns.setdefault(trigger["ts"] // week_ms, []).append((trigger, outcome))
        if not campaigns:
            continue
        outcomes = [o for group in campaigns.values() for _, o in group]
        targets, holdout = sum(o["targets"] for o in outcomes), sum(o["holdout"] for o in outcomes)
        buyers = sum(o["target_buyers"] for o in outcomes)
        units_per_buyer = sum(o["target_units"] for o in outcomes) / buyers if buyers else 1.0
        p_holdout = sum(o["holdout_buyers"] for o in outcomes) / max(holdout, 1)
        predicted = sum(t["expected_incremental_units"] for group in campaigns.values() for t, _ in group)
        uplift = predicted / units_per_buyer / max(targets, 1)
        members = sorted(sum(o["targets"] + o["holdout"] for _, o in group) for group in campaigns.values())
        median_members = members[len(members) // 2]
        held = round(fraction_now * median_members)
        significant = 0
        for group in campaigns.values():
            interval = uplift_interval(sum(o["target_buyers"] for _, o in group), sum(o["targets"] for _, o in group),
                                       sum(o["holdout_buyers"] for _, o in group), sum(o["holdout"] for _, o in group))
            significant += bool(interval and (interval[1] > 0 or interval[2] < 0))
        rows[reason] = {"campaigns": len(campaigns), "median_members": median_members,
                        "holdout_conversion": p_holdout, "predicted_uplift": uplift,
                        "power_now": power(min(p_holdout + uplift, 1.0), p_holdout, median_members - held, held)
                        if approximation_holds(p_holdout, held) else None,
                        "significant": significant,
                        "fraction_for_80": holdout_fraction_for(p_holdout, uplift, median_members),
                        "weeks_for_80": campaigns_to_pool(p_holdout, uplift, median_members, fraction_now)}
    return rows


AUDIENCES = {"policy": "the policy's targets", "random": "random users, as many (the same budget)",
             "everyone": "everyone who viewed the SKU (the same discount for all)"}


def money_by_audience(sim: Simulation, trigger_ids: set[str]) -> dict[str, dict[str, float]]:
    """Per audience, the sums of salescast.sim.generator.Offer.money over the offers of `trigger_ids`."""
    totals = {audience: {"offered": 0, "units": 0.0, "revenue": 0.0, "margin": 0.0, "discount_cost": 0.0}
              for audience in AUDIENCES}
    for offers in sim.shop.offers.values():
        for offer in offers:
            if offer.trigger_id not in trigger_ids:
                continue
            for audience, total in totals.items():
                for key, value in offer.money(audience).items():
                    if key in total:
                        total[key] += value
    return totals


def calibration_check(sim: Simulation, finished: list[tuple[dict, dict]]) -> dict[str, dict]:
    """Predicted against true incremental units of the finished triggers, split by whether their promotion
    model was calibrated by earlier outcomes."""
    truth = {offer.trigger_id: offer.money("policy")["units"] for offers in sim.shop.offers.values() for offer in offers}
    groups: dict[str, dict] = {}
    for trigger, _ in finished:
        factor = trigger.get("calibration") or 1.0
        label = "uncalibrated (no promotion finished yet)" if factor == 1.0 else "calibrated"
        group = groups.setdefault(label, {"triggers": 0, "predicted": 0.0, "true": 0.0, "calibration_sum": 0.0})
        group["triggers"] += 1
        group["predicted"] += trigger["expected_incremental_units"]
        group["true"] += truth.get(trigger["trigger_id"], 0.0)
        group["calibration_sum"] += factor
    for group in groups.values():
        group["mean_calibration"] = group.pop("calibration_sum") / group["triggers"]
    return groups


def _flagged(error: float) -> str:
    return f"{error:+.1%}{' *' if abs(error) > 0.2 else ''}"


def plot(sim: Simulation, figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [(t, sim.outcomes[t["trigger_id"]]) for t in sim.triggers if t["trigger_id"] in sim.outcomes]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    pairs = sorted((t["expected_incremental_units"],
                    o["target_units"] - o["holdout_units"] * o["targets"] / o["holdout"])
                   for t, o in finished if o["holdout"])
    bins = np.array_split(np.array(pairs), min(8, max(1, len(pairs) // 20))) if pairs else []
    x = [b[:, 0].mean() for b in bins]
    y = [b[:, 1].mean() for b in bins]
    err = [1.96 * b[:, 1].std(ddof=1) / np.sqrt(len(b)) if len(b) > 1 else 0.0 for b in bins]
    left.errorbar(x, y, yerr=err, fmt="o", color="tab:blue", capsize=3,
                  label=f"mean realised per bin of ~{len(pairs) // max(1, len(bins))} triggers, 95% CI")
    limit = max([1.0] + x)
    left.plot([0, limit], [0, limit], color="0.4", lw=1, ls="--", label="predicted = realised")
    left.set_xlabel("predicted incremental units per trigger (bin mean)")
    left.set_ylabel("realised: targets' units - holdout's rate x targets")
    left.legend(fontsize=8)
    left.set_title("Incremental units: predicted vs realised")
    reasons = [r for r in ("overstock", "demand_drop", "affinity", "all") if r in figures["by_reason"]]
    for k, reason in enumerate(reasons):
        row = figures["by_reason"][reason]
        if row["uplift"] is None:
            continue
        value, low, high = row["uplift"]
        right.errorbar([k], [value], yerr=[[value - low], [high - value]], fmt="o", color="black", capsize=4,
                       label="measured, 95% CI" if k == 0 else None)
        right.scatter([k], [row["true_uplift"]], marker="x", s=60, color="tab:red",
                      label="truth" if k == 0 else None)
    right.axhline(0, color="0.6", lw=1)
    right.set_xticks(range(len(reasons)), reasons)
    right.set_ylabel("conversion uplift (targets - holdout)")
    right.set_title("Uplift by reason")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@dataclass(frozen=True)
class PromotionEvaluation:
    """`salescast evaluate --promo`: a simulated shop whose promotions start after `warmup` days."""

    seed: int = 7
    skus: int = 300
    users: int = 20_000
    days: int = 90
    warmup: int = 45
    report: str | None = None
    plot: str | None = "promo-evaluation.png"


def run(options: PromotionEvaluation, settings: Settings) -> int:
    config = ShopConfig(seed=options.seed, skus=options.skus, users=options.users, days=options.days)
    warmup = options.warmup
    if not 14 <= warmup < config.days - 7:
        print(f"salescast evaluate --promo: --warmup {warmup} must be at least 14 and leave a week of the "
              f"{config.days} days", file=sys.stderr)
        return 2
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    log(f"simulating {config.days} days of a shop of {config.skus} SKUs and {config.users} users (seed "
        f"{config.seed}), promotions from day {warmup}")
    sim = simulate(config, warmup, settings, log)
    text, figures = report(sim, config, warmup)
    print(text)
    if options.report:
        Path(options.report).write_text(text)
    if options.plot:
        plot(sim, figures, options.plot)
        log(f"plot written to {options.plot}")
    return 0
