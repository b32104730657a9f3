"""What a forecast for every live SKU at every bucket close costs (contract v1.1), at 100,000 SKUs.

    python bench/close_all.py [--skus 100000] [--runs 3] [--live 0.5] [--sold-today 0.1]

A catalogue of --skus windows with 90 days of history: a share --live of them sold within the last
SALESCAST_ACTIVE_BUCKETS (28) days, intermittently (each such SKU sells on a day with chance 0.3),
--sold-today of all of them on the day that closes; the rest fell quiet 40-90 days ago. Then one daily
close, the in-memory part of what the SKU agent does (salescast.stream.core.close.close_buckets: the live check,
the histories, the forecaster, the records), median of --runs, with:

- the baseline of the same run: closing only the SKUs that sold in the bucket (a forecast only on the
  days a SKU sells, as the issue saw v1 do);
- v1.1: every window handed over, a forecast for each live one.

Both with the seasonal-naive baseline and with the LSTM as served (numpy kernel, production shape:
2 x 32 units, 28 buckets in), trained for one epoch on the windows so the weights are real ones.
The worker also reads each window from RocksDB and writes the changed ones: not in these figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.models import windows  # noqa: E402
from salescast.stream.core.close import BaselineForecaster, close_buckets  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402

DAY = 86_400_000
TODAY = 20_500  # the bucket that closes


def catalogue(skus: int, live_share: float, sold_today: float, seed: int = 0) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(skus):
        window = windows.new_window(TODAY - 89)
        if rng.random() < live_share:
            days = [d for d in range(TODAY - 89, TODAY) if rng.random() < 0.3]
            if rng.random() < sold_today / live_share:
                days.append(TODAY)
        else:
            quiet_since = TODAY - int(rng.integers(40, 90))
            days = [d for d in range(TODAY - 89, quiet_since) if rng.random() < 0.3]
        for day in days:
            windows.add_sale(window, day, int(rng.integers(1, 4)), 10.0, 120)
        windows.mark_closed(window, TODAY - 1)
        out.append((f"sku-{i}", window))
    return out


def timed(function, runs: int, setup=lambda: None) -> float:
    samples = []
    for _ in range(runs):
        setup()
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def lstm_serving(items, settings: Settings, price: bool = True, mean: bool = True):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from salescast.models.forecast.features import FeatureConfig, make_samples, split_by_time
    from salescast.models.forecast.lstm import LSTMForecaster
    from salescast.models.store import ModelStore
    from salescast.stream.serving.forecaster import LSTMServing

    config = FeatureConfig(input_length=28, horizon=settings.forecasting.horizon, season=7, price=price)
    histories = [windows.history(window, TODAY - 1) for _, window in items[:2000]]
    train, valid = split_by_time(make_samples(histories, config), TODAY - 20, config.horizon)
    model = LSTMForecaster(config, units=(32, 32), dense=32, epochs=1, batch_size=256, verbose=0, mean=mean).fit(
        train, valid)
    store = ModelStore(Path(os.environ.get("TMPDIR", "/tmp")) / f"salescast-bench-close-{os.getpid()}")
    version = store.save("lstm", {**model.config(), "bucket": "1d"}, model.weights(), {"mase": 1.0})["version"]
    return LSTMServing(store.load("lstm", version), BaselineForecaster(settings.time.season))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--live", type=float, default=0.5)
    parser.add_argument("--sold-today", type=float, default=0.1)
    args = parser.parse_args()
    settings = Settings.from_env({})
    started = time.perf_counter()
    items = catalogue(args.skus, args.live, args.sold_today)
    sold = [(sku, w) for sku, w in items if windows.last_event_at_or_before(w, TODAY) == TODAY]
    live = sum(1 for _, w in items if windows.live_buckets(w, TODAY, TODAY, settings.forecasting.active_buckets))
    print(f"{args.skus:,} SKUs built in {time.perf_counter() - started:.1f}s (not timed): {len(sold):,} sold in "
          f"the closing bucket, {live:,} live (an event within {settings.forecasting.active_buckets} buckets)", flush=True)

    def reopen():  # a close moves each window's `closed`: every run closes the same bucket afresh
        for _, window in items:
            windows.mark_closed(window, TODAY - 1)

    def close(chosen, forecaster):
        return lambda: close_buckets(chosen, TODAY + 1, settings, forecaster)

    rows = []
    for name, forecaster in (("seasonal naive", BaselineForecaster(settings.time.season)),
                             ("LSTM (numpy kernel; price and mean, as retrain trains it)", lstm_serving(items, settings)),
                             ("LSTM without them (versions before issue 18.2's price and mean)",
                              lstm_serving(items, settings, price=False, mean=False))):
        baseline = timed(close(sold, forecaster), args.runs, reopen)
        every = timed(close(items, forecaster), args.runs, reopen)
        reopen()
        emitted = sum(len(c.forecasts) for c in close(items, forecaster)())
        rows.append((name, baseline, every, emitted))
    print(f"\n| forecaster | only SKUs that sold ({len(sold):,} forecasts) | every live SKU | forecasts | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, baseline, every, emitted in rows:
        print(f"| {name} | {baseline:.2f} s | {every:.2f} s | {emitted:,} | {every / baseline:.1f} |")
    print(f"\nmedians of {args.runs} runs; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
