"""Promotion decision speed: one SKU at its bucket close, targets included; guardrails; attribution.

    python bench/promo.py [--skus 300] [--candidates 200] [--runs 7]

The state is real: a 60-day synthetic shop replayed through the worker's
code (windows, user vectors), the promotion model trained on it, and every
SKU's candidate entry full (--candidates users, as the candidate index holds
at most SALESCAST_CF_CANDIDATES_PER_SKU). Timed, per SKU, median of --runs:

1. `Promoter.at_close`, what the SKU agent adds to a bucket close: signals
   from the window, the rules, the candidates ranked, the holdout drawn, the
   depth chosen, the trigger record built; with SALESCAST_PROMO_OVERSTOCK_DAYS
   0, so every SKU with stock goes the whole way; then with the default
   settings, where the rules stop most SKUs before the candidates are read.
   Measured beside it in the same run, the baseline: the forecast the close
   makes anyway (seasonal naive, one SKU), and the JSON decode of the
   candidate entry the agent reads from RocksDB.
2. `guardrails.admit` for one proposal, against a state of 20 open triggers.
3. Attribution of one order line to an open trigger of 200 members.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.models.baseline import SeasonalNaive  # noqa: E402
from salescast.models.promo import attribution, guardrails  # noqa: E402
from salescast.models import windows as sku_windows  # noqa: E402
from salescast.training import promotions as promo_training  # noqa: E402
from salescast.stream.core.close import BaselineForecaster, close_buckets  # noqa: E402
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.stream.serving.promoter import Promoter, PromoModel  # noqa: E402
from salescast.replay import build_state  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402


def per_call(function, items, runs: int) -> float:
    """Median over runs of the mean seconds per item."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for item in items:
            function(item)
        samples.append((time.perf_counter() - started) / len(items))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    settings = Settings.from_env({})
    shop = Shop(ShopConfig(seed=7, skus=args.skus, users=args.users, days=60, promo_rate=0.05))
    lines = [orjson.dumps({"topic": topic, **record}) for topic, record in shop.events()]
    state, newest = build_state(lines, settings, users=True)
    model, rates, _ = promo_training.fit(state.windows, state.vectors, [], [], settings)
    promo_model = PromoModel(model, rates, "bench")
    users = list(state.vectors)[: args.candidates]
    entries = {sku: orjson.dumps({"u": {u: [1.0 - i / 1000, 0] for i, u in enumerate(users)}})
               for sku in state.windows}
    # overstock_days 0: every SKU with stock for its forecast is overstocked, so each goes the whole way
    everything = replace(settings.promo, overstock_days=0.0)
    promoter = Promoter(promo_model, everything, settings, lambda sku: orjson.loads(entries[sku]),
                        lambda: {"cf": "bench"})
    closes = []
    for sku, window in state.windows.items():
        closed = close_buckets([(sku, dict(window))], newest, settings, BaselineForecaster(settings.time.season))
        if closed and closed[0].forecasts:
            closes.append((sku, closed[0].window, closed[0].forecasts[-1]))
    now = newest * settings.time.bucket_ms
    proposals = [promoter.propose(sku, window, forecast, now) for sku, window, forecast in closes]
    made = sum(p is not None for p in proposals)
    decide = per_call(lambda c: promoter.at_close(c[0], c[1], c[2], now), closes, args.runs)
    as_configured = Promoter(promo_model, settings.promo, settings, lambda sku: orjson.loads(entries[sku]),
                             lambda: {"cf": "bench"})
    typical_made = sum(as_configured.propose(sku, w, f, now) is not None for sku, w, f in closes)
    typical = per_call(lambda c: as_configured.at_close(c[0], c[1], c[2], now), closes, args.runs)
    forecast = per_call(lambda c: SeasonalNaive(settings.time.season).fit(
        sku_windows.history(c[1], newest - 1).units).predict(settings.forecasting.horizon), closes, args.runs)
    decode = per_call(lambda c: orjson.loads(entries[c[0]]), closes, args.runs)

    state_open = guardrails.new_state()
    for k in range(20):
        guardrails.admit(state_open, guardrails.new_sku_state(), f"o{k}", now, now + settings.promo.validity_ms,
                         1.0, settings.promo)
    valid = [p for p in proposals if p is not None]
    admit = per_call(lambda p: guardrails.admit(dict(state_open), guardrails.new_sku_state(),
                                                p["trigger"]["trigger_id"], now, now + 1, 0.0, settings.promo),
                     valid, args.runs)
    trigger_state = attribution.open_attribution("t", now, now + 10, users[:180], users[180:200], "overstock")
    attribute = per_call(lambda u: attribution.attribute(trigger_state, u, 1, now + 1, None), users, args.runs)

    print(f"{len(closes)} SKUs, {args.candidates} candidates each, {made} proposals made (overstock threshold 0); "
          f"medians of {args.runs} runs, per SKU")
    print("| step | time |")
    print("|---|---:|")
    print(f"| promotion decision at close (`Promoter.at_close`, targets included) | {decide * 1e3:.3f} ms |")
    print(f"| the same with the default settings ({typical_made} of {len(closes)} SKUs proposed) | "
          f"{typical * 1e3:.3f} ms |")
    print(f"| baseline: the close's seasonal-naive forecast of the SKU | {forecast * 1e3:.3f} ms |")
    print(f"| baseline: decoding the SKU's candidate entry | {decode * 1e3:.3f} ms |")
    print(f"| guardrails, one proposal | {admit * 1e6:.1f} us |")
    print(f"| attribution of one order line | {attribute * 1e6:.2f} us |")


if __name__ == "__main__":
    main()
