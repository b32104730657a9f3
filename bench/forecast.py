"""Forecaster speed: training time, scoring one SKU, scoring 10,000 SKUs in one batch.

    python bench/forecast.py [--skus 1000] [--days 365] [--runs 5]

1. Simulates a shop (--skus x --days, not timed) into an events file.
2. Training: `salescast retrain --events FILE` in this process, timed as a whole and by phase
   (reading the file into per-SKU histories; Keras fit). One run: it takes minutes.
3. Scoring with the model just trained, medians of --runs:
   - one SKU: the worker's path (features + numpy kernel) for a single history;
   - 10,000 SKUs in one batch: the same path; the numpy kernel alone; and Keras `predict` on the
     same inputs as the baseline (the ratio is ours / Keras, measured in the same run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.models.forecast.features import History, make_inputs  # noqa: E402
from salescast.models.store import ModelStore  # noqa: E402
from salescast.stream.core.close import BaselineForecaster  # noqa: E402
from salescast.stream.serving.forecaster import LSTMServing  # noqa: E402
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.training.retrain import TrainOptions, histories_from_events, retrain  # noqa: E402


def timed(function, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="salescast-bench-forecast-"))
    events = work / "events.jsonl"
    started = time.perf_counter()
    with open(events, "wb") as out:
        for topic, record in Shop(ShopConfig(skus=args.skus, days=args.days, users=args.users)).events():
            out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
    print(f"simulated {args.skus} SKUs x {args.days} days in {time.perf_counter() - started:.0f}s (not timed)",
          flush=True)

    settings = Settings.from_env({"SALESCAST_DATA_DIR": str(work / "var")})
    started = time.perf_counter()
    histories = histories_from_events(events, settings)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    (manifest,) = retrain(settings, str(events), TrainOptions(verbose=0), models=("lstm",),
                          log=lambda message: print(message, flush=True))
    retrain_s = time.perf_counter() - started
    fit_s = manifest["metrics"]["fit_seconds"]
    print(f"training: retrain --events {retrain_s:.1f}s in all (reading the file {read_s:.1f}s, "
          f"Keras fit {fit_s:.1f}s, {manifest['metrics']['epochs_run']} epochs on "
          f"{manifest['metrics']['train_windows']} windows); holdout MASE {manifest['metrics']['mase']:.3f} vs "
          f"seasonal naive {manifest['metrics']['baseline_mase']:.3f}", flush=True)

    stored = ModelStore(settings.store.path).load("lstm")
    serving = LSTMServing(stored, BaselineForecaster(settings.time.season))
    ready = [h for h in histories.values() if len(h) >= serving.features.input_length]
    rng = np.random.default_rng(0)
    batch = [History(h.first_bucket, rng.poisson(h.units).astype(float), h.promo_units, h.on_hand)
             for h in (ready[i % len(ready)] for i in range(10_000))]
    horizon = settings.forecasting.horizon
    one = timed(lambda: serving.forecast_many(batch[:1], horizon), max(args.runs, 200))
    serve_10k = timed(lambda: serving.forecast_many(batch, horizon), args.runs)
    x, future, _ = make_inputs(batch, serving.features)
    kernel_10k = timed(lambda: serving.kernel.predict(x, future), args.runs)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from salescast.models.forecast.lstm import LSTMForecaster

    keras_model = LSTMForecaster.from_artifact(stored.config, stored.weights)
    keras_model.predict(x[:10], future[:10])  # graph built outside the timing
    keras_10k = timed(lambda: keras_model.predict(x, future), args.runs)
    keras_one = timed(lambda: keras_model.predict(x[:1], future[:1]), 50)
    print(f"scoring one SKU (features + kernel): {one * 1000:.3f} ms (median of {max(args.runs, 200)}); "
          f"Keras predict of one SKU {keras_one * 1000:.1f} ms (median of 50)")
    print(f"10,000 SKUs in one batch, median of {args.runs}: worker path {serve_10k:.3f}s, numpy kernel alone "
          f"{kernel_10k:.3f}s, Keras predict {keras_10k:.3f}s; ratio worker path / Keras {serve_10k / keras_10k:.2f}")


if __name__ == "__main__":
    main()
