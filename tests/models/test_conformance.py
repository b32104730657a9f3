"""Every forecaster and every recommender against the same conformance checks (tests/conformance.py).

scikit-learn's `parametrize_with_checks` and River's `check_estimator` in one
table: a test per (model, check). The models are the project's own, trained
small and once per module: the baselines, the LSTM (trained here in Keras for
an epoch, served by the numpy kernel, alone and in the worker's wrapper),
LightGBM when it is installed, and the item-kNN recommender as the worker
serves it (users for a SKU too), with and without a trained model.

A property a model is known to break stays in the table as a strict xfail
(KNOWN_VIOLATIONS), so the day it is fixed the suite says so.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from salescast.models.baseline import MovingAverage, SeasonalMean, SeasonalNaive
from salescast.models.cf import candidates
from salescast.models.store import ModelStore, StoredModel
from salescast.stream.core.close import BaselineForecaster
from salescast.stream.core.settings import Settings
from salescast.stream.serving import registry
from salescast.stream.serving.forecaster import forecaster_from_stored
from salescast.stream.serving.recommender import Recommendations, Recommender, recommendations_record
from tests import conformance as c
from tests.models.test_forecast_model import CONFIG, shop

SEASON = CONFIG.season
HALF_LIFE_MS = 7 * 86_400_000


def settings_for(root):
    return Settings.from_env({"SALESCAST_MODEL_STORE": str(root), "SALESCAST_HORIZON": str(CONFIG.horizon)})


def load_current(name: str, root):
    """The store's current `name` model as a worker loads it when it starts (checked, smoke-tested), or
    what serves without one."""
    return registry.load_current(name, settings_for(root))


def user_vector(weights: dict[str, float], ts: int = 5) -> dict:
    """A user's vector (salescast.models.useritem) holding `weights` as of event time `ts`."""
    from salescast.models import useritem

    if hasattr(useritem, "from_weights"):
        return useritem.from_weights(weights, ts)
    vector = useritem.new_vector()
    vector.update(t=ts, w=dict(weights))
    return vector


def vector_weights(vector) -> dict[str, float]:
    from salescast.models import useritem

    return useritem.weights(vector) if hasattr(useritem, "weights") else vector["w"]


def in_memory(name: str, config: dict, weights: dict) -> StoredModel:
    """What the store would hand back, without the store: the reference a round trip is compared with."""
    return StoredModel(name, "in-memory", config, {k: np.asarray(v) for k, v in weights.items()}, {})


# ---------------------------------------------------------------------------------------------- trained models


@pytest.fixture(scope="module")
def lstm_artifact():
    """A tiny LSTM trained for one epoch on the synthetic shop: (config as retrain stores it, weights).

    No validation split: Keras would trace a second graph for it, and these checks need a real
    artifact, not a good one (importing Keras and one epoch is most of this file's time)."""
    from salescast.models.forecast.features import make_samples
    from salescast.models.forecast.lstm import LSTMForecaster

    train = make_samples(shop(skus=6), CONFIG, stride=2)
    model = LSTMForecaster(CONFIG, units=(8, 6), dense=8, epochs=1, batch_size=128, verbose=0).fit(train)
    return {**model.config(), "bucket": settings_for("unused").time.bucket}, model.weights()


@pytest.fixture(scope="module")
def gbm_model():
    pytest.importorskip("lightgbm")
    from salescast.models.forecast.features import make_samples, split_by_time
    from salescast.models.forecast.gbm import GBMQuantileForecaster

    train, valid = split_by_time(make_samples(shop(skus=8), CONFIG), 20_050, CONFIG.horizon)
    return GBMQuantileForecaster(CONFIG, n_estimators=15, num_leaves=7).fit(train, valid)


CATEGORIES = ("shoes", "hats", "bags")


def fitted_cf(grid: tuple[dict, ...] | None = None) -> dict:
    """The recommender fitted the way `salescast retrain` fits it (choosing from `grid`, default the
    retrainer's), on a small synthetic shop.

    Three categories of eight SKUs; users mostly keep to one category. Two SKUs nobody
    touched: "hat-new" (category hats) and "mystery" (no category).
    """
    from salescast.models.cf import selection
    from salescast.training import recommender as cf_training

    rng = np.random.default_rng(11)
    skus = {f"{cat}-{i}": cat for cat in CATEGORIES for i in range(8)}
    by_category = {cat: [s for s, sc in skus.items() if sc == cat] for cat in CATEGORIES}
    vectors = {}
    for u in range(90):
        home = CATEGORIES[u % 3]
        count = int(rng.integers(2, 7))
        # popularity falls with the SKU's number, so the popular lists are clear
        picks = rng.choice(8, count, replace=False, p=np.arange(8, 0, -1) / 36)
        weights = {by_category[home][i]: round(float(rng.gamma(2.0, 1.0)), 3) for i in picks}
        if rng.random() < 0.3:
            other = CATEGORIES[(u + 1) % 3]
            weights[by_category[other][int(rng.integers(0, 8))]] = 1.0
        vectors[f"user-{u:03d}"] = user_vector(weights, 1_000)
    categories = {**skus, "hat-new": "hats", "mystery": ""}
    data = cf_training.matrix_from_vectors(vectors, categories)
    model, config, _ = cf_training.fit(data, grid=grid or selection.CANDIDATES)
    return {"data": data, "model": model, "config": config, "arrays": cf_training.artifact_arrays(model, data),
            "vectors": vectors}


@pytest.fixture(scope="module")
def cf():
    return fitted_cf()


# every family the retrainer can choose is served through the same checks
@pytest.fixture(scope="module")
def cf_rp3beta():
    return fitted_cf(({"family": "rp3beta", "rp3_alpha": 0.6, "rp3_beta": 0.4, "neighbours": 200,
                       "normalise": False},))


@pytest.fixture(scope="module")
def cf_ease():
    return fitted_cf(({"family": "ease", "ease_l2": 50.0, "neighbours": 500, "normalise": False},))


# ---------------------------------------------------------------------------------------------- forecaster cases


def case_seasonal_naive() -> c.ForecasterCase:
    model = SeasonalNaive(SEASON)
    return c.ForecasterCase("seasonal_naive", c.fit_predict(lambda: SeasonalNaive(SEASON)), horizons=(1, 3, 7, 10),
                            cold_below=2 * SEASON, flags_cold=True, record_model=(model.name, model.version))


def case_moving_average() -> c.ForecasterCase:
    model = MovingAverage(7)
    return c.ForecasterCase("moving_average", c.fit_predict(lambda: MovingAverage(7)), horizons=(1, 3, 7, 10),
                            cold_below=7, flags_cold=True, record_model=(model.name, model.version))


def case_seasonal_mean() -> c.ForecasterCase:
    model = SeasonalMean(SEASON)
    return c.ForecasterCase("seasonal_mean", c.fit_predict(lambda: SeasonalMean(SEASON)), horizons=(1, 3, 7, 10),
                            cold_below=4 * SEASON, flags_cold=True, record_model=(model.name, model.version))


def case_baseline_forecaster() -> c.ForecasterCase:
    """The engine's baseline; an empty model store loads as it (the documented fallback of loading without a model)."""
    forecaster = BaselineForecaster(SEASON)

    def from_empty_store(root):
        loaded = load_current("lstm", root)
        assert type(loaded).__name__ == "BaselineForecaster" and loaded.version == forecaster.version
        return c.served(loaded)

    return c.ForecasterCase("baseline_forecaster", c.served(forecaster), horizons=(1, 3, 7, 10),
                            cold_below=2 * SEASON, flags_cold=True,
                            record_model=(forecaster.name, forecaster.version), round_trip=from_empty_store)


def case_lstm_kernel(lstm_artifact) -> c.ForecasterCase:
    from salescast.models.forecast.kernel import LSTMKernel

    config, weights = lstm_artifact

    def through_store(root):
        store = ModelStore(root)
        version = store.save("lstm", config, weights, {"mase": 1.0})["version"]
        stored = store.load("lstm", version)
        return c.scaled(CONFIG, LSTMKernel(stored.config, stored.weights).predict)

    return c.ForecasterCase("lstm_kernel", c.scaled(CONFIG, LSTMKernel(config, weights).predict),
                            horizons=(CONFIG.horizon,), cold_below=CONFIG.input_length, flags_cold=False,
                            takes_horizon=False, record_model=("lstm", "in-memory"), round_trip=through_store)


def case_lstm_served(lstm_artifact) -> c.ForecasterCase:
    """The worker's LSTMServing: the kernel for SKUs with input_length buckets, the flagged baseline below."""
    config, weights = lstm_artifact
    forecaster = forecaster_from_stored(in_memory("lstm", config, weights), settings_for("unused"))
    forecaster.smoke_test()

    def through_store(root):
        store = ModelStore(root)
        store.set_current("lstm", store.save("lstm", config, weights, {"mase": 1.0})["version"])
        loaded = load_current("lstm", root)
        assert type(loaded) is type(forecaster), f"the store served {type(loaded).__name__}"
        return c.served(loaded)

    return c.ForecasterCase("lstm_served", c.served(forecaster), horizons=(CONFIG.horizon,),
                            cold_below=CONFIG.input_length, flags_cold=True, refuses_other_horizons=True,
                            record_model=(forecaster.name, forecaster.version), round_trip=through_store)


def case_lightgbm(gbm_model) -> c.ForecasterCase:
    return c.ForecasterCase("lightgbm", c.scaled(CONFIG, gbm_model.predict), horizons=(CONFIG.horizon,),
                            cold_below=CONFIG.input_length, flags_cold=False, takes_horizon=False,
                            record_model=(gbm_model.name, "in-memory"))


FORECASTERS = {"seasonal_naive": case_seasonal_naive, "moving_average": case_moving_average,
               "seasonal_mean": case_seasonal_mean,
               "baseline_forecaster": case_baseline_forecaster, "lstm_kernel": case_lstm_kernel,
               "lstm_served": case_lstm_served, "lightgbm": case_lightgbm}


# ---------------------------------------------------------------------------------------------- recommender cases


def user_queries(cf) -> tuple[list, list]:
    """(known users, users the model knows nothing of) as user-item vectors."""
    vectors = cf["vectors"]
    known = [vectors[u] for u in ("user-000", "user-001", "user-002", "user-047")]
    known += [user_vector({"shoes-0": 1.0, "bags-3": 2.5}),  # a new user with warm SKUs
              user_vector({"hats-1": 1.0, "not-in-the-model": 3.0}),  # ... and one SKU the model never saw
              user_vector({"hats-2": 1.0, "hat-new": 1.0})]  # ... and one nobody touched in training
    unknown = [None, user_vector({}), user_vector({"not-in-the-model": 1.0}),
               user_vector({"hat-new": 2.0}),  # only a cold SKU: its category's popular SKUs
               user_vector({"mystery": 2.0})]  # only a cold SKU of no category: overall popularity
    return known, unknown


def seen_skus(query) -> set[str]:
    return set(vector_weights(query)) if query else set()


def reorder_vector(query):
    return None if query is None else user_vector(dict(reversed(list(vector_weights(query).items()))), 5)


def popular_fallback(cf):
    """ItemKNN.recommend's documented fallback: popularity within the categories of the user's SKUs, else
    overall popularity, leaving out what the user has."""
    model, skus = cf["model"], cf["data"].skus
    index = {sku: i for i, sku in enumerate(skus)}

    def expected(query, n):
        seen = {index[s] for s in seen_skus(query) if s in index}
        categories = {str(model.categories[i]) for i in seen} - {""}
        ranked = model.popular_items(None, len(skus)).tolist()
        if categories and any(str(model.categories[i]) in categories for i in ranked):
            ranked = [i for i in ranked if str(model.categories[i]) in categories]
        return [skus[i] for i in ranked if i not in seen][:n]
    return expected


def case_itemknn(cf) -> c.RecommenderCase:
    """ItemKNN.recommend itself, asked with the user's SKUs as the model's item numbers."""
    from salescast.models.cf.itemknn import ItemKNN

    skus = cf["data"].skus
    index = {sku: i for i, sku in enumerate(skus)}

    def asker(model):
        def ask(query, n):
            w = {index[s]: v for s, v in (vector_weights(query) if query else {}).items() if s in index}
            items, scores, fallback = model.recommend(np.fromiter(w, np.int64, len(w)),
                                                      np.fromiter(w.values(), np.float64, len(w)), n)
            return c.Answer([(skus[i], float(s)) for i, s in zip(items, scores)], bool(fallback))
        return ask

    def through_store(root):
        store = ModelStore(root)
        version = store.save("cf", {"params": cf["model"].params()}, cf["model"].to_arrays(), {})["version"]
        stored = store.load("cf", version)
        return asker(ItemKNN.from_arrays(stored.config["params"], stored.weights))

    known, unknown = user_queries(cf)
    # the model as it is saved (similarities in float32): the store must give back exactly this
    reference = ItemKNN.from_arrays(cf["model"].params(), cf["model"].to_arrays())
    return c.RecommenderCase("itemknn", asker(reference), set(skus), known, True, seen_skus, unknown,
                             popular_fallback(cf), reorder=reorder_vector, round_trip=through_store)


def _answer(recommendations) -> c.Answer:
    return c.Answer(list(recommendations.items), recommendations.fallback)


def _save_cf(cf, root) -> None:
    store = ModelStore(root)
    store.set_current("cf", store.save("cf", cf["config"], cf["arrays"], {})["version"])


def served_recommender(cf):
    """The worker's Recommender over the fitted model, built from the arrays the store would hold."""
    recommender = Recommender(in_memory("cf", cf["config"], cf["arrays"]))
    if hasattr(recommender, "smoke_test"):
        recommender.smoke_test()
    return recommender


def case_recommender_for_user(cf) -> c.RecommenderCase:
    recommender = served_recommender(cf)
    record = recommendations_record

    def through_store(root):
        _save_cf(cf, root)
        loaded = load_current("cf", root)
        assert isinstance(loaded, Recommender) and loaded.model is not None
        return lambda query, n: _answer(loaded.for_user(query, n))

    def make_record(query, answer):
        return record("user-x", "skus_for_user", Recommendations(answer.items,
                                                                                       answer.fallback), recommender)

    known, unknown = user_queries(cf)
    return c.RecommenderCase("recommender_for_user", lambda query, n: _answer(recommender.for_user(query, n)),
                             set(recommender.skus), known, True, seen_skus, unknown, popular_fallback(cf),
                             reorder=reorder_vector, record=make_record, round_trip=through_store)


def sku_queries(recommender, cf) -> tuple[list, list]:
    """(SKUs with candidate users, SKUs with none yet) as (candidate entry, category) pairs."""
    users = sorted(cf["vectors"])
    affinities = recommender.affinities([cf["vectors"][u] for u in users], 10) if recommender.model else \
        [{"shoes-0": 1.0, "hats-0": 0.5} for _ in users]
    changes: dict[str, list] = {}
    for t, (user, top) in enumerate(zip(users, affinities)):
        for sku, score in top.items():
            changes.setdefault(sku, []).append((user, score, 1_000 + 1_000 * (t % 5)))
    known = [(candidates.apply_changes(None, changes[sku], 50, HALF_LIFE_MS), "shoes") for sku in ("shoes-0", "hats-0")]
    unknown = [(None, "hats"), (None, None), (None, "no-such-category"), ({"u": {}}, "bags")]
    return known, unknown


def audience_fallback(recommender):
    """for_sku's documented fallback: the audience of the SKU's category, else the global audience."""
    def expected(query, n):
        _, category = query
        audience = recommender.audiences.get(category or "") or recommender.audiences.get("", [])
        return [user for user, _ in audience[:n]]
    return expected


def reorder_entry(query):
    entry, category = query
    return (None if entry is None else {**entry, "u": dict(reversed(list(entry["u"].items())))}), category


def _sku_case(name, recommender, cf, known_answered: bool, round_trip) -> c.RecommenderCase:
    record = recommendations_record
    known, unknown = sku_queries(recommender, cf)

    def ask_with(r):
        return lambda query, n: _answer(r.for_sku(query[0], lambda: query[1], n, HALF_LIFE_MS))

    return c.RecommenderCase(name, ask_with(recommender), set(cf["vectors"]), known, known_answered,
                             lambda query: set(), unknown, audience_fallback(recommender), reorder=reorder_entry,
                             record=lambda query, answer: record("shoes-0", "users_for_sku", Recommendations(
                                 answer.items, answer.fallback), recommender),
                             round_trip=lambda root: ask_with(round_trip(root)))


def case_recommender_for_sku(cf) -> c.RecommenderCase:
    recommender = served_recommender(cf)

    def through_store(root):
        _save_cf(cf, root)
        return load_current("cf", root)

    return _sku_case("recommender_for_sku", recommender, cf, True, through_store)


def case_no_model_for_user(cf) -> c.RecommenderCase:
    """No model trained yet: every answer is an empty fallback; an empty store loads as this."""
    recommender = Recommender()
    known, unknown = user_queries(cf)

    def from_empty_store(root):
        loaded = load_current("cf", root)
        assert loaded.model is None
        return lambda query, n: _answer(loaded.for_user(query, n))

    return c.RecommenderCase("no_model_for_user", lambda query, n: _answer(recommender.for_user(query, n)), set(),
                             known, False, seen_skus, unknown, lambda query, n: [], reorder=reorder_vector,
                             record=lambda query, answer: recommendations_record(
                                 "user-x", "skus_for_user", Recommendations(
                                     answer.items, answer.fallback), recommender),
                             round_trip=from_empty_store)


def case_no_model_for_sku(cf) -> c.RecommenderCase:
    """No model: a SKU's candidate users still rank (they need no model), the fallback audience is empty."""
    recommender = Recommender()
    return _sku_case("no_model_for_sku", recommender, cf, True,
                     lambda root: load_current("cf", root))


def case_rp3beta_for_user(cf_rp3beta) -> c.RecommenderCase:
    assert cf_rp3beta["model"].family == "rp3beta"
    return case_recommender_for_user(cf_rp3beta)


def case_rp3beta_for_sku(cf_rp3beta) -> c.RecommenderCase:
    return case_recommender_for_sku(cf_rp3beta)


def case_ease_for_user(cf_ease) -> c.RecommenderCase:
    assert cf_ease["model"].family == "ease"
    return case_recommender_for_user(cf_ease)


def case_ease_for_sku(cf_ease) -> c.RecommenderCase:
    return case_recommender_for_sku(cf_ease)


RECOMMENDERS = {"itemknn": case_itemknn, "recommender_for_user": case_recommender_for_user,
                "recommender_for_sku": case_recommender_for_sku, "no_model_for_user": case_no_model_for_user,
                "no_model_for_sku": case_no_model_for_sku, "rp3beta_for_user": case_rp3beta_for_user,
                "rp3beta_for_sku": case_rp3beta_for_sku, "ease_for_user": case_ease_for_user,
                "ease_for_sku": case_ease_for_sku}


# ---------------------------------------------------------------------------------------------- the table

# (case, check) -> why the model breaks the property; each is a strict xfail
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def table(cases, checks):
    for case in cases:
        for check in checks:
            name = check.__name__.removeprefix("check_")
            reason = KNOWN_VIOLATIONS.get((case, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(case, check, id=f"{case}-{name}", marks=marks)


_built: dict[str, object] = {}


def build(request, builders: dict, name: str):
    """Each case once per module; its fixtures (trained models) come from pytest."""
    if name not in _built:
        builder = builders[name]
        arguments = {p: request.getfixturevalue(p) for p in inspect.signature(builder).parameters}
        _built[name] = builder(**arguments)
    return _built[name]


def run(check, case, tmp_path):
    if "root" in inspect.signature(check).parameters:
        return check(case, tmp_path / "store")
    return check(case)


@pytest.mark.parametrize("case, check", list(table(FORECASTERS, c.FORECASTER_CHECKS)))
def test_forecaster(request, tmp_path, case, check):
    run(check, build(request, FORECASTERS, case), tmp_path)


@pytest.mark.parametrize("case, check", list(table(RECOMMENDERS, c.RECOMMENDER_CHECKS)))
def test_recommender(request, tmp_path, case, check):
    run(check, build(request, RECOMMENDERS, case), tmp_path)


# every class that forecasts or recommends -> the case that checks it
COVERED = {"SeasonalNaive": "seasonal_naive", "MovingAverage": "moving_average", "SeasonalMean": "seasonal_mean",
           "BaselineForecaster": "baseline_forecaster", "LSTMKernel": "lstm_kernel", "LSTMServing": "lstm_served",
           "GBMQuantileForecaster": "lightgbm", "ItemKNN": "itemknn", "Recommender": "recommender_for_user"}
SERVES = ("predict", "forecast_many", "recommend", "for_user", "for_sku")


def test_every_forecaster_and_recommender_is_in_the_table():
    """A class that forecasts or recommends (it has predict, forecast_many, recommend, for_user or for_sku)
    and is not in the table fails here: add a case for it. The Keras LSTM (training only) is served
    by, and checked as, the kernel."""
    import importlib
    import pkgutil

    found = set()
    for package in ("salescast.models", "salescast.stream.serving", "salescast.stream.core"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if info.name.endswith((".lstm", ".promo")) or ".promo." in info.name:
                continue
            try:
                module = importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 (a module another change has half-moved is checked elsewhere)
                continue
            found |= {name for name, value in vars(module).items()
                      if inspect.isclass(value) and value.__module__ == module.__name__
                      and not getattr(value, "_is_protocol", False) and any(hasattr(value, m) for m in SERVES)}
    assert found - set(COVERED) == set(), "forecasters or recommenders without a conformance case"
    assert set(COVERED.values()) <= set(FORECASTERS) | set(RECOMMENDERS)


# ---------------------------------------------------------------------------------------------- the checks bite

def broken_forecaster(breakage: str) -> c.ForecasterCase:
    """The seasonal naive with one property broken, to show the check for it is not vacuous."""
    calls = []

    def forecast(histories, horizon):
        out = []
        calls.append(1)
        for h in histories:
            f = SeasonalNaive(SEASON).fit(h.units).predict(horizon)
            if breakage == "crossed":
                f = type(f)(f.p90 + 1, f.p50, f.p10, f.cold_start)
            elif breakage == "short":
                f = type(f)(f.p10[:-1], f.p50[:-1], f.p90[:-1], f.cold_start)
            elif breakage == "never_cold":
                f.cold_start = False
            elif breakage == "random":
                f = type(f)(f.p10, f.p50 + 1e-3 * len(calls), f.p90 + 1, f.cold_start)
            elif breakage == "mutates":
                h.units[:1] += 1
            out.append(f)
        return out

    return c.ForecasterCase(f"broken_{breakage}", forecast, horizons=(3, 7), cold_below=2 * SEASON, flags_cold=True,
                            record_model=("broken", "v0"))


@pytest.mark.parametrize("breakage, check", [
    ("crossed", c.check_quantiles_ordered_and_non_negative), ("short", c.check_horizon_length),
    ("never_cold", c.check_cold_start), ("random", c.check_forecasts_deterministic),
    ("mutates", c.check_histories_unchanged)])
def test_the_forecaster_checks_catch_a_broken_model(breakage, check):
    with pytest.raises(AssertionError):
        check(broken_forecaster(breakage))


def broken_recommender(breakage: str) -> c.RecommenderCase:
    skus = [f"s{i}" for i in range(12)]

    def ask(query, n):
        have = set(query or {})
        if breakage == "seen":
            items = [(s, 1.0 - i / 100) for i, s in enumerate(skus)][:n]
        else:
            items = [(s, 1.0 - i / 100) for i, s in enumerate(s for s in skus if s not in have)][:n]
        if breakage == "too_many":
            items = [(s, 1.0 - i / 100) for i, s in enumerate(skus)][:n + 1]
        elif breakage == "duplicates" and len(items) > 1:
            items = [items[0], *items[:-1]]
        elif breakage == "unsorted":
            items = items[::-1]
        return c.Answer(items, not query)

    return c.RecommenderCase(f"broken_{breakage}", ask, set(skus), [{"s1": 1.0}], True, lambda q: set(q or {}),
                             [None], lambda query, n: skus[:n])


@pytest.mark.parametrize("breakage, check", [
    ("too_many", c.check_at_most_n), ("duplicates", c.check_no_duplicates),
    ("unsorted", c.check_scores_sorted_descending), ("seen", c.check_seen_items_left_out)])
def test_the_recommender_checks_catch_a_broken_model(breakage, check):
    with pytest.raises(AssertionError):
        check(broken_recommender(breakage))
