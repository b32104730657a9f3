"""Promotions: the rules, the depth, the holdout draw, the guardrails, attribution and the elasticity estimate."""

import numpy as np
import orjson
import pytest

from salescast.models import windows
from salescast.models.promo import attribution, guardrails
from salescast.models.promo.audience import split_holdout
from salescast.models.promo.elasticity import ElasticityModel, PricePanel, implied_elasticity, panel_from_series, price_ratios
from salescast.models.promo.policy import PromoPolicy, Signals, choose_discount, reason_for
from salescast.stream.core.contract import validator
from salescast.stream.core.state import SkuUpdate, apply_sku_update
from salescast.stream.serving.promoter import Promoter, PromoModel, finish, outcome_updates, registration
from salescast.stream.core.settings import Settings

DAY = 86_400_000
T0 = 20_000 * DAY
POLICY = PromoPolicy()


def signals(**changes):
    base = dict(on_hand=100, horizon_p50=[1.0] * 7, bucket_days=1.0, last_units=1, last_p10=0.5,
                last_in_stock=True, recent_units=7, recent_clicks=70, candidates=10)
    merged = {**base, **changes}
    count = merged["candidates"]
    merged["candidates"] = lambda: count
    return Signals(**merged)


def test_overstock_when_stock_covers_more_days_than_the_threshold():
    assert reason_for(signals(on_hand=61), POLICY) == "overstock"  # 61 days of 1 unit a day
    assert reason_for(signals(on_hand=59), POLICY) is None


def test_never_when_stock_is_short_of_the_forecast_demand_or_unknown():
    short = signals(on_hand=6, last_units=0, last_p10=2.0, candidates=500, recent_units=0)  # every other rule holds
    assert reason_for(short, POLICY) is None
    assert reason_for(signals(on_hand=None, last_units=0), POLICY) is None


def test_demand_drop_when_the_closed_bucket_sold_below_its_p10_but_not_when_it_sold_out():
    assert reason_for(signals(on_hand=30, last_units=0, last_p10=0.5), POLICY) == "demand_drop"
    assert reason_for(signals(on_hand=30, last_units=0, last_p10=0.5, last_in_stock=False), POLICY) is None
    assert reason_for(signals(on_hand=30, last_units=1, last_p10=0.5), POLICY) is None


def test_affinity_when_many_candidates_but_few_units_per_click():
    assert reason_for(signals(on_hand=30, candidates=50, recent_units=1, recent_clicks=100), POLICY) == "affinity"
    assert reason_for(signals(on_hand=30, candidates=49, recent_units=1, recent_clicks=100), POLICY) is None
    assert reason_for(signals(on_hand=30, candidates=50, recent_units=5, recent_clicks=100), POLICY) is None


def test_the_depth_maximises_net_revenue_within_the_margin_floor_and_the_maximum():
    depth = choose_discount(10.0, 7.0, -2.0, 10.0, POLICY)
    # the floor: 10 (1 - d) >= 7 x 1.1 = 7.7 allows d <= 0.23 -> 0.2 on the 0.05 grid
    assert depth.discount == 0.2
    lift = 0.8 ** -2.0
    assert depth.expected_incremental_units == pytest.approx(10 * (lift - 1))
    assert depth.expected_incremental_revenue == pytest.approx(10 * lift * 8.0 - 10 * 10.0)
    assert depth.expected_discount_cost == pytest.approx(10 * lift * 0.2 * 10.0)
    assert choose_discount(10.0, 2.0, -2.0, 10.0, POLICY).discount == POLICY.max_discount
    assert choose_discount(10.0, 2.0, -0.8, 10.0, POLICY) is None  # inelastic: a discount only loses revenue
    assert choose_discount(10.0, 9.5, -3.0, 10.0, POLICY) is None  # no depth keeps the margin
    assert choose_discount(10.0, None, -2.0, 10.0, POLICY) is None  # unknown cost: no margin check, no promotion


def test_the_holdout_is_reproducible_from_the_trigger_id_and_disjoint_from_the_targets():
    users = [f"u{i}" for i in range(100)]
    targets, holdout = split_holdout("sku-1@123", users, 0.1)
    assert len(holdout) == 10 and len(targets) == 90
    assert set(targets).isdisjoint(holdout) and set(targets) | set(holdout) == set(users)
    assert targets == [u for u in users if u not in holdout]  # the targets keep their rank order
    assert split_holdout("sku-1@123", users, 0.1) == (targets, holdout)
    assert split_holdout("sku-1@124", users, 0.1)[1] != holdout
    assert split_holdout("t", ["a", "b"], 0.1)[1] and split_holdout("t", ["a"], 0.1) == (["a"], [])
    assert split_holdout("t", users, 0.0) == (users, [])


def test_guardrails_cooldown_open_triggers_and_daily_budget():
    policy = PromoPolicy(cooldown_ms=7 * DAY, max_open=2, daily_budget=100.0, validity_ms=3 * DAY)
    state = guardrails.new_state()
    skus = {}

    def propose(tid, sku, ts, cost=10.0):
        sku_state = skus.setdefault(sku, guardrails.new_sku_state())
        return guardrails.admit(state, sku_state, tid, ts, ts + policy.validity_ms, cost, policy)

    assert propose("a@1", "a", T0) == guardrails.ADMITTED
    assert propose("b@1", "b", T0, cost=95.0) == "budget"  # 10 + 95 > 100 on the same day
    assert propose("b@2", "b", T0) == guardrails.ADMITTED
    assert propose("c@1", "c", T0) == "max_open"
    assert propose("c@2", "c", T0 + 3 * DAY) == guardrails.ADMITTED  # the first two have closed
    assert propose("a@2", "a", T0 + 6 * DAY) == "cooldown"
    assert propose("b@1", "b", T0 + 6 * DAY) == "budget"  # a re-read proposal gets its first verdict
    assert propose("a@3", "a", T0 + 7 * DAY) == guardrails.ADMITTED
    assert state["open"] == {str(T0 + 10 * DAY): 1}
    assert all(int(day) >= (T0 + 7 * DAY) // DAY for day in state["spent"])


def test_no_guardrail_value_grows_with_the_catalogue_at_a_million_skus():
    """Every SKU of a million proposes and is admitted (no cap, no budget: the worst case), 100,000 at
    each daily close. The largest value stays a few kilobytes: one value for all grew by ~60 bytes a
    SKU, past the broker's 1 MB at ~20,000 SKUs in cooldown (issue 17.2)."""
    policy = PromoPolicy(cooldown_ms=7 * DAY, max_open=10**9, daily_budget=float("inf"), validity_ms=3 * DAY)
    state, skus = guardrails.new_state(), {}
    largest_shared = largest_sku = 0
    for i in range(1_000_000):
        sku = f"sku-{i:07d}"
        ts = T0 + (i // 100_000) * DAY
        skus[sku] = guardrails.new_sku_state()
        assert guardrails.admit(state, skus[sku], f"{sku}@{ts}", ts, ts + policy.validity_ms, 1.0, policy) == \
            guardrails.ADMITTED
        if i % 10_000 == 0:
            largest_shared = max(largest_shared, len(orjson.dumps(state)))
    largest_shared = max(largest_shared, len(orjson.dumps(state)))
    assert sum(state["open"].values()) == 300_000  # the last three closes' triggers are open, counted
    # one SKU proposing at every close for two weeks: its verdicts are kept for the cooldown only
    sku_state = skus["sku-0000000"]
    for day in range(1, 15):
        ts = T0 + day * DAY
        guardrails.admit(state, sku_state, f"sku-0000000@{ts}", ts, ts + policy.validity_ms, 1.0, policy)
        largest_sku = max(largest_sku, len(orjson.dumps(sku_state)))
    assert largest_shared < 1_000, largest_shared
    assert largest_sku < 1_000, largest_sku
    assert max(len(orjson.dumps(value)) for value in skus.values()) < 1_000


def test_the_single_value_of_earlier_versions_is_split_with_its_cooldowns_and_verdicts():
    policy = PromoPolicy(cooldown_ms=7 * DAY, max_open=2, daily_budget=100.0, validity_ms=3 * DAY)
    single = {"last": {"a": T0}, "open": {"a@1": T0 + 3 * DAY, "b@9": T0 + 3 * DAY},
              "spent": {str(T0 // DAY): 20.0}, "decided": {"a@1": ["admitted", T0], "sku@x@2": ["budget", T0]}}
    assert guardrails.is_single_value(single) and not guardrails.is_single_value(guardrails.new_state())
    state, skus = guardrails.split_single_value(single)
    assert state == {"open": {str(T0 + 3 * DAY): 2}, "spent": {str(T0 // DAY): 20.0}}
    assert skus["a"] == {"last": T0, "decided": {"a@1": ["admitted", T0]}}
    assert skus["sku@x"]["decided"] == {"sku@x@2": ["budget", T0]}
    assert guardrails.admit(state, skus["a"], "a@1", T0, T0 + 3 * DAY, 1.0, policy) == "admitted"  # re-read
    assert guardrails.admit(state, guardrails.new_sku_state(), "c@1", T0, T0 + 3 * DAY, 1.0, policy) == "max_open"
    assert guardrails.admit(state, skus["a"], "a@5", T0 + 4 * DAY, T0 + 7 * DAY, 1.0, policy) == "cooldown"


def test_attribution_counts_members_purchases_within_the_window_and_the_uplift():
    state = attribution.open_attribution("s@0", T0, T0 + 3 * DAY, ["t1", "t2", "t3", "t4"], ["h1", "h2"], "overstock")
    assert attribution.attribute(state, "t1", 2, T0 + 1, None)
    assert attribution.attribute(state, "t1", 1, T0 + 2, "s@0")
    assert attribution.attribute(state, "h1", 1, T0 + DAY, None)
    assert not attribution.attribute(state, "t2", 1, T0 - 1, None)  # before the trigger
    assert not attribution.attribute(state, "t2", 1, T0 + 3 * DAY + 1, None)  # after it closed
    assert not attribution.attribute(state, "x", 1, T0 + 5, None)  # not in the experiment
    assert attribution.attribute(state, "x", 1, T0 + 5, "s@0") and state["promo_orders"] == 1
    record = attribution.outcome_record(state, "s", T0 + 3 * DAY, final=True)
    validator("promo_outcomes")(record)
    assert (record["targets"], record["holdout"], record["target_buyers"], record["holdout_buyers"]) == (4, 2, 1, 1)
    assert (record["target_units"], record["holdout_units"]) == (3.0, 1.0)
    assert record["uplift"] == pytest.approx(1 / 4 - 1 / 2)
    assert attribution.counts(state).incremental_units == pytest.approx(3.0 - 1.0 * 4 / 2)
    empty = attribution.open_attribution("e", T0, T0 + DAY, ["t1"], [])
    assert attribution.outcome_record(empty, "s", T0, final=False)["uplift"] is None


def test_uplift_interval_is_newcombe_s_hybrid_score_interval():
    # Newcombe (1998), Table II, example (a): 56/70 vs 48/80 -> 0.2000, 95% CI 0.0524 to 0.3339
    value, low, high = attribution.uplift_interval(56, 70, 48, 80)
    assert (round(value, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    # with no holdout buyer the interval still has width on the holdout side (Wald's would be one-sided)
    value, low, high = attribution.uplift_interval(10, 900, 0, 100)
    assert low < 0 < value < high
    assert attribution.uplift_interval(1, 10, 0, 0) is None


def test_a_zero_sale_bucket_takes_a_price_only_when_its_neighbours_agree():
    units = np.array([2, 0, 2, 3, 0, 3, 0, 1, 1, 3, 3])
    list_price = 10.0
    paid = np.array([10, 0, 10, 8, 0, 8, 0, 10, 10, 8, 8]) * units
    ratio = price_ratios(units, paid, list_price)
    assert ratio[1] == 1.0  # between two regular days
    assert ratio[4] == pytest.approx(0.8)  # inside a promotion
    assert np.isnan(ratio[6])  # after a promotion: maybe still on it
    assert np.isnan(ratio[3]) and np.isnan(ratio[5])  # a run's first and last sold bucket select for sales
    assert np.isnan(ratio[9]) and np.isnan(ratio[10])
    assert ratio[0] == 1.0 and ratio[7] == 1.0


def simulated_panel(elasticities: dict[str, float], skus_per_category=60, days=120, seed=1) -> PricePanel:
    """Units ~ Poisson(base x weekly x ratio ** elasticity), promotions of 3-6 days at 10-30% off."""
    rng = np.random.default_rng(seed)
    series = []
    weekly = rng.uniform(0.8, 1.2, 7)
    for category, elasticity in elasticities.items():
        for k in range(skus_per_category):
            base = rng.lognormal(0.5, 0.5)
            ratio = np.ones(days)
            for start in rng.choice(days - 7, 3, replace=False):
                ratio[start:start + rng.integers(3, 7)] = 1 - rng.uniform(0.1, 0.3)
            units = rng.poisson(base * weekly[np.arange(days) % 7] * ratio ** elasticity)
            series.append((f"{category}-{k}", category, 0, units, units * 10.0 * ratio, np.full(days, 50), 10.0, None))
    return panel_from_series(series)


def test_the_elasticity_estimate_recovers_a_known_answer_per_category():
    truth = {"toys": -1.5, "books": -2.5}
    model = ElasticityModel().fit(simulated_panel(truth))
    for category, value in truth.items():
        estimate = model.categories[category]
        assert abs(estimate.elasticity - value) < 3 * estimate.se and abs(estimate.elasticity / value - 1) < 0.2
        assert 0 < estimate.se < 0.25
    assert model.elasticity("toys-0", "toys").source in ("sku", "category")
    assert model.elasticity("new", "toys") == model.categories["toys"]
    assert model.elasticity("new", "unknown") == model.overall


def test_the_stored_model_round_trips_and_outcomes_merge_by_inverse_variance():
    model = ElasticityModel().fit(simulated_panel({"toys": -2.0}, skus_per_category=20))
    again = ElasticityModel.from_stored(model.to_config(), model.sku_arrays())
    assert again.categories["toys"].elasticity == pytest.approx(model.categories["toys"].elasticity, abs=1e-6)
    assert set(again.skus) == set(model.skus)
    # 1,000 targets at 0.8 ** -2 the holdout's rate: an implied elasticity of -2
    outcome = {"category": "toys", "discount": 0.2, "targets": 10_000, "holdout": 10_000,
               "target_buyers": round(1000 * 0.8 ** -2), "holdout_buyers": 1000}
    implied, variance = implied_elasticity([outcome])
    assert implied == pytest.approx(-2.0, abs=0.01)
    before = model.categories["toys"]
    model.with_outcomes([outcome])
    after = model.categories["toys"]
    weight = (1 / before.se ** 2) / (1 / before.se ** 2 + 1 / variance)
    assert after.elasticity == pytest.approx(weight * before.elasticity + (1 - weight) * implied)
    assert after.se < before.se and after.source == "category+outcomes"


@pytest.fixture
def settings():
    return Settings.from_env({"SALESCAST_HORIZON": "7"})


def window_with_stock(settings, on_hand=1000):
    window, _ = apply_sku_update(None, SkuUpdate("inventory", "s", T0, "i0", 1, on_hand=on_hand, list_price=10.0,
                                                 category="toys", unit_cost=4.0), settings)
    for day in range(14):
        window, _ = apply_sku_update(window, SkuUpdate("sale", "s", T0 + day * DAY, "o0", 10 + day, units=1,
                                                       revenue=10.0, user=f"u{day}"), settings)
    return window


def forecast_for(ts, p50=1.0):
    return {"sku": "s", "ts": ts, "horizon": [{"start": ts + (i + 1) * DAY, "p10": 0.5, "p50": p50, "p90": 2.0}
                                              for i in range(7)], "model": {"name": "seasonal_naive", "version": "v"}}


def test_the_promoter_proposes_a_valid_trigger_and_the_window_measures_it(settings):
    model = PromoModel(ElasticityModel().fit(simulated_panel({"toys": -2.0}, skus_per_category=10)),
                       {"": 0.01}, "promo-v1")
    entry = {"u": {f"c{i}": [1.0 - i / 100, T0] for i in range(40)}}
    reads = []
    promoter = Promoter(model, settings.promo, settings, lambda sku: reads.append(sku) or entry,
                        lambda: {"cf": "cf-v1"})
    window = window_with_stock(settings)
    now = T0 + 14 * DAY
    proposal, outcomes = promoter.at_close("s", window, forecast_for(now - DAY), now)
    assert outcomes == []
    trigger = proposal["trigger"]
    validator("promo_triggers")(trigger)
    assert trigger["reason"] == "overstock" and trigger["ts"] == now and trigger["valid_until"] == now + 3 * DAY
    assert len(trigger["holdout"]) == 4 and len(trigger["targets"]) == 36
    assert 10.0 * (1 - trigger["discount"]) >= 4.0 * 1.1 and trigger["discount"] <= 0.3
    assert trigger["expected_incremental_units"] > 0 and proposal["cost"] > 0
    assert trigger["models"] == {"seasonal_naive": "v", "cf": "cf-v1", "promo": "promo-v1"}
    assert reads == ["s"]  # read once, for the targets
    short = window_with_stock(settings, on_hand=5)
    assert promoter.at_close("s", short, forecast_for(now - DAY), now) == (None, [])
    assert reads == ["s"]  # no rule could hold: the candidate entry was not read

    target, held = trigger["targets"][0]["user_id"], trigger["holdout"][0]
    window, changed = apply_sku_update(window, registration(trigger, "p0", 7), settings)
    assert changed and apply_sku_update(window, registration(trigger, "p0", 7), settings)[1] is False
    sale = SkuUpdate("sale", "s", now + DAY, "o1", 500, units=2, revenue=16.0, user=target, promo_id=trigger["trigger_id"])
    window, _ = apply_sku_update(window, sale, settings)
    window, changed = apply_sku_update(window, sale, settings)  # re-read after a crash: counted once
    assert not changed
    window, _ = apply_sku_update(window, SkuUpdate("sale", "s", now + DAY, "o1", 501, units=1, revenue=10.0,
                                                   user=held), settings)
    interim = outcome_updates("s", window)
    assert [(o["target_buyers"], o["holdout_buyers"], o["final"]) for o in interim] == [(1, 1, False)]
    assert outcome_updates("s", window) == []  # nothing new since
    # no new proposal while the trigger is open; at its end, the final outcome
    assert promoter.at_close("s", window, forecast_for(now), now + DAY) == (None, [])
    proposal, outcomes = promoter.at_close("s", window, forecast_for(now + 2 * DAY), now + 3 * DAY)
    ((reason, final),) = outcomes
    validator("promo_outcomes")(final)
    assert reason == "overstock" and final["final"] and final["ts"] == now + 3 * DAY
    assert (final["target_units"], final["holdout_units"]) == (2.0, 1.0)
    assert final["uplift"] == pytest.approx(1 / 36 - 1 / 4)
    assert windows.promotions(window) == [] and finish("s", window, now + 9 * DAY) == []


def test_buckets_under_a_targeted_promotion_leave_the_price_regression(settings):
    from salescast.training.promotions import targeted_buckets

    window = windows.new_window(T0 // DAY)
    for bucket in range(T0 // DAY, T0 // DAY + 10):
        windows.add_sale(window, bucket, 1, 1.0, history=10)
    trigger = {"sku": "s", "ts": T0 + 3 * DAY, "valid_until": T0 + 6 * DAY}
    mask = targeted_buckets({"s": window}, [trigger, {**trigger, "sku": "unknown"}], DAY)["s"]
    assert mask.tolist() == [False] * 3 + [True] * 3 + [False] * 4
    units = np.array([2, 2, 2, 5, 5, 5, 2, 2, 2, 2])
    panel = panel_from_series([("s", "toys", 0, units, units * 10.0, np.full(10, 9), 10.0, mask)])
    assert panel.bucket.tolist() == [0, 1, 2, 6, 7, 8, 9]


def test_the_uplift_gauge_pools_the_finished_triggers_of_a_reason():
    from salescast.stream import metrics

    for outcome in ({"targets": 4, "holdout": 2, "target_buyers": 1, "holdout_buyers": 1},
                    {"targets": 6, "holdout": 2, "target_buyers": 3, "holdout_buyers": 0}):
        metrics.record_final_outcome("unit-test", outcome)
    value = [s.value for m in metrics.PROMO_UPLIFT.collect() for s in m.samples if s.labels["reason"] == "unit-test"]
    assert value == [pytest.approx(4 / 10 - 1 / 4)]


def test_the_margin_objective_offers_only_a_depth_that_pays_for_the_goods_it_moves():
    from dataclasses import replace

    margin = replace(POLICY, objective="margin")
    by_revenue = choose_discount(10.0, 7.0, -2.0, 10.0, POLICY)
    assert by_revenue is not None and by_revenue.expected_incremental_margin < 0  # revenue up, margin down
    assert choose_discount(10.0, 7.0, -2.0, 10.0, margin) is None
    cheap = choose_discount(10.0, 2.0, -2.0, 10.0, margin)
    # margin-optimal price for elasticity -2 is 2 x cost = 4: as deep as allowed
    assert cheap.discount == POLICY.max_discount
    units = 10.0 * (1 - cheap.discount) ** -2.0
    assert cheap.expected_incremental_margin == pytest.approx(units * (7.0 - 2.0) - 10.0 * (10.0 - 2.0))


def test_the_objective_is_a_validated_setting():
    from salescast.stream.core.settings import Settings, SettingsError

    assert Settings.from_env({"SALESCAST_PROMO_OBJECTIVE": "margin"}).promo.objective == "margin"
    assert Settings.from_env({}).promo.objective == "revenue"
    with pytest.raises(SettingsError, match="SALESCAST_PROMO_OBJECTIVE='profit' is not one of revenue, margin"):
        Settings.from_env({"SALESCAST_PROMO_OBJECTIVE": "profit"})


def test_finished_promotions_calibrate_the_predicted_incremental_units(settings):
    """Issue 18.4: realised / predicted over finished promotions, pulled toward 1 while there are few."""
    from salescast.training.promotions import CALIBRATION_PRIOR_UNITS, calibration

    def outcome(predicted, target_units, holdout_units, factor=None):
        return {"targets": 90, "holdout": 10, "target_units": target_units, "holdout_units": holdout_units,
                "expected_incremental_units": predicted, "calibration": factor}

    assert calibration([]) == 1.0
    # 20 triggers each predicted 10 units; each realised 23 - 2 x 90 / 10 = 5
    finished = [outcome(10.0, 23.0, 2.0) for _ in range(20)]
    assert calibration(finished) == pytest.approx((100 + CALIBRATION_PRIOR_UNITS) / (200 + CALIBRATION_PRIOR_UNITS),
                                                  abs=1e-4)
    # a prediction already scaled by 0.5 is compared unscaled: the factor does not compound
    assert calibration([outcome(5.0, 23.0, 2.0, factor=0.5) for _ in range(20)]) == calibration(finished)
    assert calibration([outcome(100.0, 0.0, 9.0) for _ in range(50)]) == 0.25  # bounded

    model = PromoModel(ElasticityModel().fit(simulated_panel({"toys": -2.0}, skus_per_category=10)),
                       {"": 0.01}, "promo-v1")
    entry = {"u": {f"c{i}": [1.0 - i / 100, T0] for i in range(40)}}
    now = T0 + 14 * DAY

    def proposed(factor):
        model.calibration = factor
        promoter = Promoter(model, settings.promo, settings, lambda sku: entry, lambda: {"cf": "cf-v1"})
        return promoter.at_close("s", window_with_stock(settings), forecast_for(now - DAY), now)[0]["trigger"]

    plain, scaled = proposed(1.0), proposed(0.5)
    validator("promo_triggers")(scaled)
    assert scaled["discount"] == plain["discount"] and scaled["calibration"] == 0.5
    assert scaled["expected_incremental_units"] == pytest.approx(plain["expected_incremental_units"] * 0.5, abs=1e-4)
    assert scaled["expected_incremental_revenue"] == pytest.approx(plain["expected_incremental_revenue"] * 0.5,
                                                                   abs=1e-4)


def test_power_matches_the_textbook_two_proportion_figures():
    from salescast.models.promo.power import holdout_fraction_for, power

    # 3,841 per group detect 10% -> 12% with 80% power at 5% (the usual calculators' figure, unpooled)
    assert power(0.12, 0.10, 3841, 3841) == pytest.approx(0.80, abs=0.005)
    assert power(0.12, 0.10, 1000, 1000) < 0.5 < power(0.12, 0.10, 5000, 5000)
    assert power(0.10, 0.10, 10**6, 10**6) == pytest.approx(0.05, abs=1e-9)  # no uplift: the test's level
    assert power(0.2, 0.1, 0, 50) == 0.0
    # a campaign of 20,000 members: the smallest holdout share reaching 80%, and it does reach it
    fraction = holdout_fraction_for(0.10, 0.02, 20_000)
    holdout = round(fraction * 20_000)
    assert power(0.12, 0.10, 20_000 - holdout, holdout) >= 0.8
    smaller = round((fraction - 0.01) * 20_000)
    assert power(0.12, 0.10, 20_000 - smaller, smaller) < 0.8
    assert holdout_fraction_for(0.10, 0.02, 2_000) is None  # too small even split in half
    assert holdout_fraction_for(0.10, 0.0, 20_000) is None
    # a holdout that would expect fewer than 5 buyers gives no figure: the normal approximation fails there
    assert holdout_fraction_for(0.0, 0.013, 800) is None
    from salescast.models.promo.power import campaigns_to_pool

    weeks = campaigns_to_pool(0.10, 0.02, 5_000, 0.1)  # 10% held out of 5,000 a week: pool some weeks
    held = round(0.1 * 5_000 * weeks)
    assert weeks > 1 and power(0.12, 0.10, 5_000 * weeks - held, held) >= 0.8
    held = round(0.1 * 5_000 * (weeks - 1))
    assert power(0.12, 0.10, 5_000 * (weeks - 1) - held, held) < 0.8
    assert campaigns_to_pool(0.10, -0.01, 5_000, 0.1) is None
