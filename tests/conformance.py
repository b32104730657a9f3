"""Conformance checks that every forecaster and every recommender must pass.

In the spirit of River's `check_estimator` and scikit-learn's
`parametrize_with_checks`: a model enters as a *case*, a thin adapter onto its
real API (nothing here changes what a model answers), and every check runs
on every case. tests/models/test_conformance.py builds the cases (training the
small models once per module) and parametrises the checks over them.

A check raises AssertionError when the model breaks the property, and calls
`pytest.skip` when the property does not apply to that kind of model (a
baseline is not stored, so it has no store round trip).

Forecaster properties: quantiles ordered (P10 <= P50 <= P90), non-negative and
finite; as many buckets as the horizon asked (and a model trained for one
horizon refuses another); one forecast per history, the same whether a SKU is
scored alone or in a batch; the cold-start flag set exactly for histories
shorter than the model needs (or, for the bare models without a flag, such
histories refused); the same answer twice; the histories left unchanged; the
contract's forecast record; the same forecasts after a round trip through
the model store.

Recommender properties: at most n answers, no duplicates, scores finite and
sorted descending, only ids the model knows, items the user already has
left out (for_user: "top-n SKUs they have not interacted with yet"), the
documented fallback for a user (or SKU) the model knows nothing about, known
users answered by the model, the fallback flag the same whatever n, the same answer twice (and whatever order the
vector's SKUs come in), the contract's recommendations record, and the same
answers after a round trip through the model store.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from salescast.models.baseline import Forecast
from salescast.models.forecast.features import History
from salescast.stream.core.close import forecast_record
from salescast.stream.core.contract import validate
from salescast.stream.core.settings import Settings

# ---------------------------------------------------------------------------------------------- histories

FIRST_BUCKET = 20_000


def history(units, promo=None, on_hand=None, first: int = FIRST_BUCKET) -> History:
    units = np.asarray(units, dtype=np.float64)
    n = len(units)
    promo = np.zeros(n) if promo is None else np.asarray(promo, dtype=np.float64)
    on_hand = np.full(n, -1.0) if on_hand is None else np.asarray(on_hand, dtype=np.float64)
    return History(first, units, promo, on_hand)


def panel(seed: int = 3) -> dict[str, History]:
    """Histories of many shapes and lengths, from empty to long: the inputs every check reads."""
    rng = np.random.default_rng(seed)

    def weekly(n, level):
        return rng.poisson(level * (1 + 0.4 * np.sin(2 * np.pi * np.arange(n) / 7))).astype(float)

    out = {
        "weekly": history(weekly(42, 5.0)),
        "long": history(weekly(150, 12.0)),
        "zeros": history(np.zeros(30)),
        "spike": history(np.where(np.arange(30) == 25, 500.0, 0.0)),
        "intermittent": history((rng.random(35) < 0.15).astype(float)),
        "high_volume": history(weekly(28, 5_000.0)),
        "constant": history(np.full(21, 4.0)),
        "promoted": history(weekly(30, 6.0), promo=(np.arange(30) % 9 == 0) * 3.0),
        "sold_out_lately": history(np.r_[weekly(24, 8.0), np.zeros(6)],
                                   on_hand=np.r_[np.full(24, 20.0), np.zeros(6)]),
        "other_phase": history(weekly(33, 3.0), first=FIRST_BUCKET + 3),
    }
    for n in (0, 1, 2, 5, 7, 8, 9, 13, 14, 15, 27):  # around every model's threshold
        out[f"length_{n}"] = history(weekly(n, 4.0))
    return out


# ---------------------------------------------------------------------------------------------- forecasters

ForecastFn = Callable[[list[History], int], list[Forecast]]


@dataclass
class ForecasterCase:
    """A forecaster as the checks see it: histories and a horizon in, one `Forecast` per history out."""

    name: str
    forecast: ForecastFn
    horizons: tuple[int, ...]  # horizons it forecasts
    cold_below: int  # histories shorter than this are cold ...
    flags_cold: bool  # ... and forecast with `cold_start` set (True), or refused with ValueError (False)
    takes_horizon: bool = True  # False: the horizon is the trained one, the API has no horizon argument
    refuses_other_horizons: bool = False  # a horizon it was not trained for raises ValueError
    record_model: tuple[str, str] = ("", "")  # (name, version) for the contract record
    # publish to a model store rooted at the path, load it back the way the code does, and forecast
    # with what was loaded; None: this kind of model is not stored
    round_trip: Callable[[Path], ForecastFn] | None = None

    def accepts(self, h: History) -> bool:
        return self.flags_cold or len(h) >= self.cold_below

    def usable(self) -> dict[str, History]:
        return {key: h for key, h in panel().items() if self.accepts(h)}


def fit_predict(make: Callable[[], Any]) -> ForecastFn:
    """A `salescast.models.baseline` forecaster, fitted on each history (scikit-learn shape)."""
    return lambda histories, horizon: [make().fit(h.units).predict(horizon) for h in histories]


def served(forecaster) -> ForecastFn:
    """The engine's `Forecaster` protocol: forecast_many -> (forecast, name, version) per history."""
    def forecast(histories: list[History], horizon: int) -> list[Forecast]:
        results = forecaster.forecast_many(histories, horizon)
        for result in results:
            assert len(result) == 3 and isinstance(result[1], str) and isinstance(result[2], str), result
        return [f for f, _, _ in results]
    return forecast


def scaled(features, predict_scaled) -> ForecastFn:
    """A model answering in scaled units (the LSTM kernel, LightGBM), as the backtest serves it."""
    from salescast.models.forecast.backtest import scaled_model

    run = scaled_model(features, predict_scaled)

    def forecast(histories: list[History], horizon: int) -> list[Forecast]:
        q = np.asarray(run(histories))
        return [Forecast(row[:, 0], row[:, 1], row[:, 2], False) for row in q]
    return forecast


def _quantiles(f: Forecast) -> np.ndarray:
    return np.stack([np.asarray(f.p10, dtype=np.float64), np.asarray(f.p50, dtype=np.float64),
                     np.asarray(f.p90, dtype=np.float64)])


def _assert_same(a: list[Forecast], b: list[Forecast], exact: bool = True, what: str = "") -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        if exact:
            np.testing.assert_array_equal(_quantiles(x), _quantiles(y), err_msg=f"{what} #{i}")
        else:
            np.testing.assert_allclose(_quantiles(x), _quantiles(y), rtol=1e-5, atol=1e-6, err_msg=f"{what} #{i}")
        assert bool(x.cold_start) == bool(y.cold_start), f"{what} #{i}: cold_start"


def check_quantiles_ordered_and_non_negative(case: ForecasterCase) -> None:
    histories = case.usable()
    for horizon in case.horizons:
        for key, f in zip(histories, case.forecast(list(histories.values()), horizon)):
            q = _quantiles(f)
            assert np.isfinite(q).all(), f"{key}: non-finite quantiles {q.tolist()}"
            assert (q >= 0).all(), f"{key}: negative quantiles {q.tolist()}"
            assert (q[0] <= q[1]).all() and (q[1] <= q[2]).all(), f"{key}: crossed quantiles {q.tolist()}"


def check_horizon_length(case: ForecasterCase) -> None:
    histories = case.usable()
    for horizon in case.horizons:
        for key, f in zip(histories, case.forecast(list(histories.values()), horizon)):
            for name in ("p10", "p50", "p90"):
                assert np.shape(getattr(f, name)) == (horizon,), f"{key}: {name} {np.shape(getattr(f, name))}"


def check_other_horizons_refused(case: ForecasterCase) -> None:
    if not (case.takes_horizon and case.refuses_other_horizons):
        pytest.skip("forecasts any horizon asked" if case.takes_horizon else "the API takes no horizon")
    trained = case.horizons[0]
    for other in (1, trained + 1, 2 * trained + 3):
        if other in case.horizons:
            continue
        with pytest.raises(ValueError):
            case.forecast([panel()["weekly"]], other)


def check_one_forecast_per_history_in_any_batch(case: ForecasterCase) -> None:
    histories = list(case.usable().values())
    horizon = case.horizons[0]
    batch = case.forecast(histories, horizon)
    assert len(batch) == len(histories)
    alone = [case.forecast([h], horizon)[0] for h in histories]
    _assert_same(batch, alone, exact=False, what="batch vs one at a time")
    backwards = case.forecast(histories[::-1], horizon)[::-1]
    _assert_same(batch, backwards, exact=False, what="batch vs reversed batch")
    # a batch big enough for the LSTM kernel to cut into blocks on threads
    big = histories * (1100 // len(histories) + 1)
    _assert_same(case.forecast(big, horizon)[: len(histories)], batch, exact=False, what="big batch")


def check_cold_start(case: ForecasterCase) -> None:
    histories = panel()
    for horizon in case.horizons:
        for key, h in histories.items():
            if case.flags_cold:
                f = case.forecast([h], horizon)[0]
                assert bool(f.cold_start) == (len(h) < case.cold_below), \
                    f"{key} ({len(h)} buckets): cold_start={f.cold_start}, cold below {case.cold_below}"
                assert np.shape(f.p50) == (horizon,)
            elif len(h) < case.cold_below:
                with pytest.raises(ValueError):
                    case.forecast([h], horizon)
            else:
                assert not case.forecast([h], horizon)[0].cold_start


def check_forecasts_deterministic(case: ForecasterCase) -> None:
    histories = list(case.usable().values())
    for horizon in case.horizons:
        _assert_same(case.forecast(histories, horizon), case.forecast(histories, horizon), what="twice")


def check_histories_unchanged(case: ForecasterCase) -> None:
    histories = list(case.usable().values())
    before = copy.deepcopy(histories)
    case.forecast(histories, case.horizons[0])
    for h, b in zip(histories, before):
        assert h.first_bucket == b.first_bucket
        for name in ("units", "promo_units", "on_hand"):
            np.testing.assert_array_equal(getattr(h, name), getattr(b, name), err_msg=name)


def check_forecast_record(case: ForecasterCase) -> None:
    """The contract's forecast record made from each forecast: valid, horizon long, cold flag carried."""
    settings = Settings.from_env({})
    name, version = case.record_model
    histories = case.usable()
    horizon = case.horizons[0]
    for key, f in zip(histories, case.forecast(list(histories.values()), horizon)):
        record = forecast_record(key, FIRST_BUCKET + 100, f, name, version, settings)
        validate("forecasts", record)
        assert len(record["horizon"]) == horizon
        assert record["cold_start"] is bool(f.cold_start)
        for bucket in record["horizon"]:
            assert 0 <= bucket["p10"] <= bucket["p50"] <= bucket["p90"], (key, bucket)


def check_forecaster_store_round_trip(case: ForecasterCase, root: Path) -> None:
    if case.round_trip is None:
        pytest.skip(f"{case.name} is not kept in the model store")
    loaded = case.round_trip(root)
    histories = list(panel().values()) if case.flags_cold else list(case.usable().values())
    for horizon in case.horizons:
        _assert_same(case.forecast(histories, horizon), loaded(histories, horizon), what="stored vs in memory")


FORECASTER_CHECKS = [check_quantiles_ordered_and_non_negative, check_horizon_length, check_other_horizons_refused,
                     check_one_forecast_per_history_in_any_batch, check_cold_start, check_forecasts_deterministic,
                     check_histories_unchanged, check_forecast_record, check_forecaster_store_round_trip]


# ---------------------------------------------------------------------------------------------- recommenders


@dataclass
class Answer:
    """What a recommender answered: (id, score) best first, and whether it is a fallback list."""

    items: list[tuple[str, float]]
    fallback: bool

    @property
    def ids(self) -> list[str]:
        return [item for item, _ in self.items]


AskFn = Callable[[Any, int], Answer]


@dataclass
class RecommenderCase:
    """A recommender as the checks see it: a query (a user's vector, a SKU's candidate entry) and n in."""

    name: str
    ask: AskFn
    ids: set[str]  # every id it may answer (SKUs for users, users for SKUs)
    known: list[Any]  # queries about users (or SKUs) the model knows
    answers_from_model: bool  # known queries get a model answer (fallback False)
    seen: Callable[[Any], set[str]]  # ids a query must not get back (what the user already has)
    unknown: list[Any]  # queries the model knows nothing about ...
    fallback_ids: Callable[[Any, int], list[str]]  # ... and the documented fallback answer for them
    reorder: Callable[[Any], Any] | None = None  # the same query written in another order
    record: Callable[[Any, Answer], dict] | None = None  # the contract's recommendations record
    round_trip: Callable[[Path], AskFn] | None = None  # publish to a store, load it back the way the code does
    sizes: tuple[int, ...] = field(default=(0, 1, 3, 10, 1000))

    def queries(self) -> list[Any]:
        return [*self.known, *self.unknown]


def check_at_most_n(case: RecommenderCase) -> None:
    for query in case.queries():
        for n in case.sizes:
            answer = case.ask(query, n)
            assert len(answer.items) <= n, f"{len(answer.items)} answers for n={n}"


def check_no_duplicates(case: RecommenderCase) -> None:
    for query in case.queries():
        for n in case.sizes:
            ids = case.ask(query, n).ids
            assert len(ids) == len(set(ids)), f"duplicates in {ids}"


def check_scores_sorted_descending(case: RecommenderCase) -> None:
    for query in case.queries():
        for n in case.sizes:
            scores = [score for _, score in case.ask(query, n).items]
            assert np.isfinite(scores).all(), scores
            assert all(a >= b for a, b in zip(scores, scores[1:])), f"not sorted descending: {scores}"


def check_only_known_ids(case: RecommenderCase) -> None:
    for query in case.queries():
        unknown = set(case.ask(query, 1000).ids) - case.ids
        assert not unknown, f"answered ids the model does not know: {sorted(unknown)}"


def check_seen_items_left_out(case: RecommenderCase) -> None:
    for query in case.queries():
        seen = case.seen(query)
        for n in case.sizes:
            again = seen & set(case.ask(query, n).ids)
            assert not again, f"recommended what the user already has: {sorted(again)}"


def check_unknown_gets_the_fallback(case: RecommenderCase) -> None:
    for query in case.unknown:
        for n in case.sizes:
            answer = case.ask(query, n)
            assert answer.fallback is True, f"{query!r}: fallback={answer.fallback}"
            assert answer.ids == case.fallback_ids(query, n), f"{query!r}, n={n}"


def check_known_get_a_model_answer(case: RecommenderCase) -> None:
    assert case.known, "no known queries to ask"
    for query in case.known:
        answer = case.ask(query, 5)
        if case.answers_from_model:
            assert answer.fallback is False and answer.items, f"{query!r}: {answer}"
        else:
            assert answer.fallback is True, f"{query!r}: {answer}"


def check_fallback_flag_whatever_n(case: RecommenderCase) -> None:
    """Whether an answer is a fallback depends on the query, not on how many answers were asked for
    (n >= 1: the HTTP views refuse n = 0)."""
    for query in case.queries():
        flags = {n: case.ask(query, n).fallback for n in case.sizes if n >= 1}
        assert len(set(flags.values())) == 1, f"{query!r}: fallback by n {flags}"


def check_recommendations_deterministic(case: RecommenderCase) -> None:
    for query in case.queries():
        for n in case.sizes:
            first = case.ask(query, n)
            assert case.ask(copy.deepcopy(query), n) == first
            if case.reorder is not None:
                assert case.ask(case.reorder(query), n) == first, f"{query!r}: depends on the order of its keys"


def check_query_unchanged(case: RecommenderCase) -> None:
    for query in case.queries():
        before = copy.deepcopy(query)
        case.ask(query, 5)
        assert query == before


def check_recommendations_record(case: RecommenderCase) -> None:
    if case.record is None:
        pytest.skip(f"{case.name} makes no contract record")
    for query in case.queries():
        answer = case.ask(query, 5)
        record = validate("recommendations", case.record(query, answer))
        assert [item["id"] for item in record["items"]] == answer.ids
        assert record["fallback"] is answer.fallback


def check_recommender_store_round_trip(case: RecommenderCase, root: Path) -> None:
    if case.round_trip is None:
        pytest.skip(f"{case.name} is not kept in the model store")
    loaded = case.round_trip(root)
    for query in case.queries():
        for n in case.sizes:
            assert loaded(query, n) == case.ask(query, n), f"{query!r}, n={n}"


RECOMMENDER_CHECKS = [check_at_most_n, check_no_duplicates, check_scores_sorted_descending, check_only_known_ids,
                      check_seen_items_left_out, check_unknown_gets_the_fallback, check_known_get_a_model_answer,
                      check_fallback_flag_whatever_n,
                      check_recommendations_deterministic, check_query_unchanged, check_recommendations_record,
                      check_recommender_store_round_trip]
