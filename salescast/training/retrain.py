"""Training the forecaster on data, and judging it: the shared core of `retrain` and `evaluate`; and
`TRAINERS`, how `salescast retrain` trains each model kind (salescast.stream.serving.registry.KINDS).

Time is split three ways, oldest first:

    | train: targets end before `valid_start` | valid: early stopping | test: rolling origins |

so early stopping never sees the test buckets and no window's targets cross
a boundary (salescast.models.forecast.features.split_by_time).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import orjson

from salescast.models import lifecycle
from salescast.models import windows as sku_windows
from salescast.models.baseline import MovingAverage, SeasonalNaive
from salescast.models.forecast import backtest
from salescast.models.forecast.calendar import Calendar, shop_calendar
from salescast.models.forecast.features import FeatureConfig, History, make_samples, split_by_time
from salescast.models.forecast.kernel import LSTMKernel
from salescast.stream.core.names import SKU_WINDOWS_TABLE, USER_ITEMS_TABLE, changelog_topic
from salescast.stream.core.local import LocalPipeline
from salescast.replay import build_state
from salescast.stream.core.settings import Settings
from salescast.stream.kafka import KafkaUnavailable, publish_model_version
from salescast.stream.serving.registry import CF, KINDS, LSTM, PROMO


@dataclass
class TrainOptions:
    input_length: int = 28
    # real buckets a SKU needs for a training window or an LSTM forecast (the rest of input_length is padded,
    # salescast.models.forecast.features); with the held-out periods a shop needs min_history + 3 horizons
    min_history: int = 14
    units: tuple[int, ...] = (32, 32)
    dense: int = 32
    epochs: int = 40
    batch_size: int = 256
    max_samples: int = 120_000
    patience: int = 8
    seed: int = 7
    test_origins: int = 2  # horizons held out at the end to score the model
    valid_buckets: int | None = None  # before the test period, for early stopping; default 4 horizons
    verbose: int = 2


@dataclass
class Evaluation:
    model: object  # salescast.models.forecast.lstm.LSTMForecaster
    result: backtest.BacktestResult
    skus: list[str]
    facts: dict = field(default_factory=dict)


def state_from_events(path: str | Path, settings: Settings, users: bool = False) -> tuple[LocalPipeline, int]:
    """The tables a worker would hold after the whole events file (the replay format)."""
    with open(path, "rb") as lines:
        state, newest = state_from_lines(lines, settings, users)
    if newest is None:
        raise ValueError(f"{path} holds no usable events")
    return state, newest


def state_from_lines(lines: Iterable[bytes], settings: Settings,
                     users: bool = False) -> tuple[LocalPipeline, int | None]:
    """Every bucket of the file kept: training reads the whole history, not a worker's window of it."""
    whole = dataclasses.replace(settings.forecasting, history_buckets=10**7)
    return build_state(lines, dataclasses.replace(settings, forecasting=whole), users)


def histories_from_windows(windows: dict[str, dict], end_bucket: int) -> dict[str, History]:
    return {sku: sku_windows.history(window, end_bucket) for sku, window in windows.items()}


def histories_from_events(path: str | Path, settings: Settings) -> dict[str, History]:
    """Every SKU's whole history in an events file, up to the newest complete bucket."""
    state, newest = state_from_events(path, settings)
    return histories_from_windows(state.windows, newest - 1)


def histories_from_lines(lines: Iterable[bytes], settings: Settings) -> dict[str, History]:
    """Every SKU's whole history, up to the newest complete bucket (the newest may have been filling)."""
    state, newest = state_from_lines(lines, settings)
    return {} if newest is None else histories_from_windows(state.windows, newest - 1)


def read_table(settings: Settings, table: str, timeout_s: float = 30.0) -> dict[str, dict]:
    """A worker table's latest value per key, read from its changelog topic."""
    from salescast.stream.kafka import read_latest

    topic = changelog_topic(settings.kafka.app_id, table)
    latest = read_latest(settings, topic, timeout_s)
    if latest is None:
        raise ValueError(f"topic {topic} does not exist: no worker with SALESCAST_APP_ID={settings.kafka.app_id} has "
                         "kept any state yet. Start `salescast worker`, or train from a file with "
                         "`salescast retrain --events FILE`")
    return {key.decode(): orjson.loads(value) for key, value in latest.items()}


def fit_and_backtest(histories: dict[str, History], features: FeatureConfig, options: TrainOptions,
                     strong_baselines: bool = False, log: Callable[[str], None] = print,
                     others: dict[str, backtest.Predictor] | None = None,
                     calendar: Callable[[list[History]], Calendar] | None = None) -> Evaluation:
    """Trains the LSTM on the older data and scores it against the baselines on the newest.

    `strong_baselines` adds the moving average, LightGBM and the LSTM+LightGBM
    mean to the always-present seasonal naive; `others` are scored beside them
    (the live version, when retraining). `calendar` gives the LSTM the shop's
    calendar (`shop_calendar`): it reads the history before the test period only.
    """
    from salescast.models.forecast.lstm import LSTMForecaster

    horizon, needed = features.horizon, features.min_history
    end = max(h.end_bucket for h in histories.values())
    test_origins, valid_buckets = options.test_origins, options.valid_buckets or 4 * horizon
    longest = end - min(h.first_bucket for h in histories.values())
    if longest < needed + horizon + test_origins * horizon + valid_buckets:
        # a young shop: one horizon to stop on and one to test on, so 5 weeks of daily history train the LSTM
        test_origins, valid_buckets = 1, horizon
        log(f"young shop ({longest} buckets of history): holding out one horizon for validation and one for "
            "the test")
    test_start = end - test_origins * horizon
    valid_start = test_start - valid_buckets
    if calendar is not None:
        closures, holidays = calendar([h.until(test_start) for h in histories.values()])
        features = replace(features, closures=closures, holidays=holidays)
    samples = make_samples(list(histories.values()), features)
    before_test, _ = split_by_time(samples, test_start, horizon)
    train, valid = split_by_time(before_test, valid_start, horizon)
    if len(train) == 0:
        held_out = end - valid_start
        raise ValueError(f"too little history to train: a SKU needs {needed + horizon} buckets before the "
                         f"{held_out} held out at the end for validation and testing, so at least "
                         f"{needed + horizon + held_out} in all; give more history, or a smaller --min-history")
    log(f"training on {len(train)} windows from {len(histories)} SKUs, early stopping on {len(valid)}, "
        f"testing on the last {options.test_origins} x {horizon} buckets")
    started = time.monotonic()
    model = LSTMForecaster(features, options.units, options.dense, options.epochs, options.batch_size,
                           max_samples=options.max_samples, patience=options.patience, seed=options.seed,
                           verbose=options.verbose).fit(train, valid)
    fit_seconds = time.monotonic() - started
    kernel = LSTMKernel(model.config(), model.weights())
    tested = {sku: h for sku, h in histories.items() if h.first_bucket + needed <= test_start and h.end_bucket == end}
    season = features.season
    methods = {"seasonal_naive": backtest.baseline(lambda: SeasonalNaive(season), horizon),
               "lstm": backtest.scaled_model(features, kernel.predict)}
    if strong_baselines:
        from salescast.models.forecast.gbm import GBMQuantileForecaster

        gbm = GBMQuantileForecaster(features, seed=options.seed).fit(train, valid)
        methods["moving_average"] = backtest.baseline(lambda: MovingAverage(season), horizon)
        methods["lightgbm"] = backtest.scaled_model(features, gbm.predict)
        methods["lstm+lightgbm"] = backtest.mean_of(methods["lstm"], methods["lightgbm"])
    methods.update(others or {})
    origins = [test_start + i * horizon for i in range(test_origins)]
    result = backtest.run(list(tested.values()), origins, horizon, season, methods)
    facts = {"skus": len(histories), "tested_skus": len(tested), "train_windows": len(train),
             "valid_windows": len(valid), "epochs_run": len(model.history.get("loss", [])),
             "fit_seconds": round(fit_seconds, 1), "test_start_bucket": test_start,
             "valid_start_bucket": valid_start}
    return Evaluation(model, result, list(tested), facts)


def settings_calendar(settings: Settings, season: int, country: str | None = None,
                      known_closures: Iterable[int] = ()) -> Callable[[list[History]], Calendar]:
    """The shop's calendar from its history: its closures, joined by `known_closures` (the live version's),
    and the public holidays of `country` (default SALESCAST_HOLIDAYS_COUNTRY; "" none)."""
    holidays = settings.forecasting.holidays_country if country is None else country
    return lambda cut: shop_calendar(cut, season, settings.time.bucket_ms, holidays, known_closures)


def format_table(table: dict[str, dict[str, float]], baseline: str = "seasonal_naive") -> str:
    """The scores as a Markdown table, with each method's MASE relative to `baseline`. The mean's columns
    score the LSTM's own mean, and the P50 of the other methods (metrics.expected)."""
    lines = ["| method | MASE | vs seasonal naive | WAPE | pinball | P10-P90 coverage | mean: RMSE | mean: bias |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    reference = table[baseline]["mase"]
    for name, s in table.items():
        change = (s["mase"] / reference - 1.0) * 100.0
        lines.append(f"| {name} | {s['mase']:.3f} | {change:+.1f}% | {s['wape']:.3f} | {s['pinball']:.3f} | "
                     f"{s['coverage_p10_p90']:.1%} | {s['mean_rmse']:.3f} | {s['mean_bias']:+.1%} |")
    return "\n".join(lines)


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_metrics(evaluation: Evaluation) -> dict:
    """What the model-version record carries: the LSTM's holdout scores beside seasonal naive's."""
    table = evaluation.result.table()
    lstm, naive = table["lstm"], table["seasonal_naive"]
    return {"mase": round(lstm["mase"], 4), "baseline_mase": round(naive["mase"], 4),
            "wape": round(lstm["wape"], 4), "pinball": round(lstm["pinball"], 4),
            "coverage_p10_p90": round(lstm["coverage_p10_p90"], 4), **evaluation.facts}


@dataclass
class TrainingInput:
    """What one training run read, for every kind's trainer to take what it needs."""

    source: str  # where it came from, kept in each version's config
    windows: dict[str, dict]
    end_bucket: int  # the newest complete bucket
    vectors: dict[str, dict] = field(default_factory=dict)  # user vectors, read when a trainer needs them
    # the promo-triggers emitted and the finished ones joined with their outcomes, read when asked
    promotions: Callable[[], tuple[list[dict], list[dict]]] = lambda: ([], [])


@dataclass(frozen=True)
class Trainer:
    """How a new version of one model kind (salescast.stream.serving.registry.KINDS) is trained."""

    train: Callable[[Settings, TrainingInput, TrainOptions, Callable[[str], None]], dict]  # the saved manifest
    summary: Callable[[dict], str]  # a version's holdout scores for people, from its metrics
    reads_user_vectors: bool = False


def retrain(settings: Settings, events: str | None, options: TrainOptions, models: Iterable[str] | None = None,
            log: Callable[[str], None] = stderr_log) -> list[dict]:
    """One training run: for each kind in `models` (default: every kind), a new version in the model
    store, made live or rejected, and announced on model-versions. Returns their model-version records.
    """
    wanted = set(KINDS if models is None else models)
    if wanted - set(TRAINERS):
        raise ValueError(f"no model kind {', '.join(sorted(wanted - set(TRAINERS)))}; the kinds are "
                         f"{', '.join(TRAINERS)}")
    names = [name for name in KINDS if name in wanted]
    reads_users = any(TRAINERS[name].reads_user_vectors for name in names)
    if events:
        log(f"reading {events}")
        state, newest = state_from_events(events, settings, users=reads_users)
        inputs = TrainingInput(f"events file {Path(events).name}", state.windows, newest - 1, state.vectors)
    else:
        log(f"reading the worker's tables ({settings.kafka.app_id}) from Kafka")
        windows = read_table(settings, SKU_WINDOWS_TABLE)
        if not windows:
            raise ValueError(f"the {SKU_WINDOWS_TABLE} changelog holds no SKU windows yet")
        inputs = TrainingInput(f"service tables of {settings.kafka.app_id}", windows,
                               max(sku_windows.first_open(window) - 1 for window in windows.values()),
                               read_table(settings, USER_ITEMS_TABLE) if reads_users else {},
                               promotions=lambda: read_promotions(settings, log))
    from salescast.models.store import ModelStore

    records, failures = [], []
    for name in names:
        started = time.monotonic()
        try:  # one model's lack of data does not keep the others from their new versions
            saved = TRAINERS[name].train(settings, inputs, options, log)
        except ValueError as exc:
            failures.append(f"{name}: {exc}")
            continue
        saved = ModelStore(settings.store.path).update_metrics(saved["name"], saved["version"], {
            "retrain_seconds": round(time.monotonic() - started, 1)})
        records.append(publish(settings, saved, log))
    if failures:
        raise RetrainFailed(records, failures)
    return records


class RetrainFailed(ValueError):
    """Some models could not be trained (the message says why); `records` holds the versions the others
    published."""

    def __init__(self, records: list[dict], failures: list[str]):
        super().__init__("; ".join(failures))
        self.records = records


def live_version(settings: Settings, name: str, log: Callable[[str], None]):
    """The version of `name` live now, loaded as a worker serves it, to score beside a candidate; None
    without one (or when it no longer loads: the candidate is then judged alone)."""
    from salescast.models.store import ModelStore
    from salescast.stream.serving.registry import Refused, load_version

    store = ModelStore(settings.store.path)
    current = store.current(name)
    if current is None:
        return None
    try:
        return load_version(store, name, current, settings)
    except Refused as exc:
        log(f"the live {name} {current} cannot be scored ({exc}); the candidate is judged alone")
        return None


def judge(name: str, metrics: dict, live: str | None, live_scores: dict | None, margin: float) -> None:
    """Record in the candidate's metrics how it compares with the live version on the same held-out data,
    and the verdict (salescast.models.lifecycle). Kinds without a rule (promo) go live as trained."""
    rule = KINDS[name].release_rule
    if rule is None:
        return
    verdict, why = dataclasses.replace(rule, margin=margin).verdict(metrics, live_scores)
    metrics["vs_live"] = {"version": live, **(live_scores or {}), "verdict": verdict, "why": why}


def publish(settings: Settings, manifest: dict, log: Callable[[str], None]) -> dict:
    """Announce a trained version as a candidate, then make it live or reject it as `judge` decided, and
    announce that; returns the final model-version record."""
    from salescast.models.store import ModelStore

    store = ModelStore(settings.store.path)
    name, version = manifest["name"], manifest["version"]
    announce(settings, manifest, log)
    judged = manifest["metrics"].get("vs_live")
    if judged is None or judged["verdict"] == lifecycle.LIVE:
        store.set_current(name, version)
        log(f"{name} {version} is live" + (f" ({judged['why']})" if judged else ""))
    else:
        store.set_status(name, version, lifecycle.REJECTED)
        log(f"{name} {version} is rejected and {judged['version']} stays live: {judged['why']}")
    removed = store.retain(name, settings.store.keep)
    if removed:
        log(f"removed {len(removed)} old {name} version(s) (SALESCAST_MODEL_KEEP={settings.store.keep})")
    return announce(settings, store.manifest(name, version), log)


def train_lstm(settings: Settings, inputs: TrainingInput, options: TrainOptions, log: Callable[[str], None]
               ) -> dict:
    """The forecaster on every SKU's history, backtested beside seasonal naive and the live version."""
    from salescast.models.store import ModelStore

    histories, source = histories_from_windows(inputs.windows, inputs.end_bucket), inputs.source
    features = FeatureConfig(options.input_length, settings.forecasting.horizon, settings.time.season,
                             min(options.min_history, options.input_length), price=True)
    live = live_version(settings, LSTM, log)
    others = {}
    # the live version reads the same tested histories when it needs no more of them than the candidate
    if live is not None and live.features.min_history <= features.min_history:
        others["live"] = backtest.scaled_model(live.features, live.kernel.predict)
    # the live version's calendar is carried over: a worker's windows keep SALESCAST_HISTORY_BUCKETS buckets,
    # so last Christmas's closure reaches this training only through the version that saw it
    known = (live.features.closures or ()) if live is not None else ()
    evaluation = fit_and_backtest(histories, features, options, log=log, others=others,
                                  calendar=settings_calendar(settings, features.season, known_closures=known))
    config = {**evaluation.model.config(), "bucket": settings.time.bucket,
              "training": {"source": source, "seed": options.seed, **evaluation.facts}}
    metrics = model_metrics(evaluation)
    live_scores = evaluation.result.table().get("live")
    judge(LSTM, metrics, live.version if live else None,
          None if live_scores is None else {key: round(live_scores[key], 4) for key in ("mase", "wape", "pinball")},
          settings.store.margin)
    return ModelStore(settings.store.path).save(LSTM, config, evaluation.model.weights(), metrics)


def train_cf(settings: Settings, inputs: TrainingInput, options: TrainOptions, log: Callable[[str], None]) -> dict:
    """The item-kNN recommender on the user vectors, judged beside the live version on the same held-out items."""
    from salescast.models.store import ModelStore
    from salescast.training import recommender as cf_training

    vectors, windows, seed, source = inputs.vectors, inputs.windows, options.seed, inputs.source
    categories = {sku: category for sku, window in windows.items() if (category := sku_windows.category(window))}
    data = cf_training.matrix_from_vectors(vectors, categories)
    log(f"building the recommender from {data.matrix.nnz} interactions of {len(data.users)} users "
        f"over {len(data.skus)} SKUs")
    model, config, metrics = cf_training.fit(data, seed)
    live = live_version(settings, CF, log)
    judge(CF, metrics, live.version if live else None,
          None if live is None else cf_training.live_holdout_metrics(data, seed, live), settings.store.margin)
    config["training"] = {"source": source, "seed": seed}
    return ModelStore(settings.store.path).save(CF, config, cf_training.artifact_arrays(model, data), metrics)


def train_promo(settings: Settings, inputs: TrainingInput, options: TrainOptions, log: Callable[[str], None]
                ) -> dict:
    """Elasticities from the windows' prices and units, corrected by finished promotions; base rates."""
    from salescast.models.store import ModelStore
    from salescast.training import promotions as promo_training

    windows, vectors, source = inputs.windows, inputs.vectors, inputs.source
    triggers, outcomes = inputs.promotions()
    model, base_rates, metrics = promo_training.fit(windows, vectors, triggers, outcomes, settings)
    log(f"elasticities from {model.facts['rows']} SKU-buckets ({model.facts['discounted_rows']} at a cut price), "
        f"{len(model.categories)} categories and {len(model.skus)} SKUs of their own, "
        f"{model.facts.get('outcomes_used', 0)} finished promotions")
    config = {"elasticity": model.to_config(), "base_rates": base_rates, "calibration": metrics["calibration"],
              "training": {"source": source, "outcomes": len(outcomes)}}
    return ModelStore(settings.store.path).save(PROMO, config, model.sku_arrays(), metrics)


def lstm_summary(metrics: dict) -> str:
    if not {"mase", "baseline_mase", "coverage_p10_p90"} <= set(metrics):
        return json.dumps(metrics)
    return (f"holdout MASE {metrics['mase']:.3f} (seasonal naive {metrics['baseline_mase']:.3f}), "
            f"P10-P90 coverage {metrics['coverage_p10_p90']:.1%}")


def cf_summary(metrics: dict) -> str:
    return (f"{metrics.get('model', 'item-kNN')}: holdout NDCG@10 {metrics.get('ndcg@10', float('nan')):.4f} "
            f"(popularity {metrics.get('popularity_ndcg@10', float('nan')):.4f}) over {metrics['skus']} SKUs")


def promo_summary(metrics: dict) -> str:
    realised = ""
    if "realised_incremental_units" in metrics:
        realised = (f"; finished promotions: {metrics['predicted_incremental_units']:.1f} incremental units "
                    f"predicted, {metrics['realised_incremental_units']:.1f} realised")
    return (f"elasticities for {metrics['categories']} categories (median {metrics['median_elasticity']}) and "
            f"{metrics['skus_with_own_elasticity']} SKUs of their own{realised}")


# the trainer of each model kind in salescast.stream.serving.registry.KINDS
TRAINERS: dict[str, Trainer] = {
    LSTM: Trainer(train_lstm, lstm_summary),
    CF: Trainer(train_cf, cf_summary, reads_user_vectors=True),
    PROMO: Trainer(train_promo, promo_summary, reads_user_vectors=True),
}


def check_trainers(kinds: dict = KINDS) -> None:
    """Every model kind has a trainer and every trainer a kind: a kind added to the registry alone would
    serve only its fallback, never a trained version."""
    if set(kinds) != set(TRAINERS):
        raise RuntimeError(f"salescast.training.retrain.TRAINERS ({', '.join(TRAINERS)}) must hold the model kinds "
                           f"of salescast.stream.serving.registry.KINDS ({', '.join(kinds)})")


check_trainers()


def read_promotions(settings: Settings, log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """Every trigger emitted (promo-triggers), and the finished ones joined with their final outcomes
    (promo-outcomes)."""
    from salescast.training.promotions import join_outcomes
    from salescast.stream.kafka import read_all, read_latest

    triggers = [orjson.loads(value) for _, value in read_all(settings, settings.kafka.topic("promo_triggers")) or []]
    final = {}
    for value in (read_latest(settings, settings.kafka.topic("promo_outcomes")) or {}).values():
        record = orjson.loads(value)
        if record.get("final"):
            final[record["trigger_id"]] = record
    if not final:
        log("no finished promotion yet: elasticities from sales history alone")
    return triggers, join_outcomes(final.values(), triggers)


def announce(settings: Settings, manifest: dict, log: Callable[[str], None]) -> dict:
    """The version's model-version record on the model-versions topic (skipped, with a message, without a
    broker); returns the record."""
    record = version_record(manifest)
    try:
        publish_model_version(settings, record)
    except KafkaUnavailable as exc:
        log(f"{manifest['name']} {manifest['version']} is {manifest['status']} in the model store, but was not "
            f"announced on {settings.kafka.topic('model_versions')}: {exc}")
    return record


def version_record(manifest: dict) -> dict:
    """The contract's model-version record: the manifest without its per-file digests."""
    return {key: value for key, value in manifest.items() if key != "files"}
