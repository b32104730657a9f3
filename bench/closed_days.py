"""Does the LSTM know a closed Christmas ahead? The generator's shop over two winters, closed on 25 and 26
December and 1 January each year, forecast across the second Christmas with and without its calendar
(issue 18.2: "the LSTM forecast a normal day for Christmas Day, when the shop was closed").

    python bench/closed_days.py [--skus 100] [--seed 7]

The shop opens on 9 October 2024; its closures are ground truth (no event at all on those days). The
held-out test is the last two weeks, 16-29 December 2025; training and early stopping see the first
winter's closures only. (Both winters are in the past: the worker's bucketing, which the histories go
through, refuses events more than a day ahead of the wall clock.) Reported per calendar setting ("none": the
inputs of models before the calendar; "closures": the closures seen, carried a year on): WAPE and
pinball loss over the test, and the mean P50 per SKU on the closed days against their true 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from salescast.evaluation.forecast import shop_histories  # noqa: E402
from salescast.models.forecast.features import FeatureConfig  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.training.retrain import TrainOptions, fit_and_backtest, settings_calendar  # noqa: E402

FIRST_DAY = date(2024, 10, 9)
CLOSED = [date(2024, 12, 25), date(2024, 12, 26), date(2025, 1, 1), date(2025, 12, 25), date(2025, 12, 26)]
LAST_DAY = date(2025, 12, 29)  # the test's last day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    settings = Settings.from_env({})
    closed_days = tuple((day - FIRST_DAY).days for day in CLOSED)
    days = (LAST_DAY - FIRST_DAY).days + 1
    # generated past the test's last day and cut there: the newest buckets of a generated log are left out
    # as still filling (salescast.training.retrain.histories_from_lines)
    start_ms = (FIRST_DAY - date(1970, 1, 1)).days * 86_400_000
    histories = shop_histories(args.skus, days + 40, args.seed, settings, closed_days=closed_days, start_ms=start_ms)
    end = min(h.first_bucket for h in histories.values()) + days
    histories = {sku: h.until(end) for sku, h in histories.items()}
    assert all(h.end_bucket == end for h in histories.values()), "the generated log ends before the test does"
    closed_buckets = [(day - date(1970, 1, 1)).days for day in CLOSED[-2:]]
    features = FeatureConfig(28, 7, 7, min_history=14)
    options = TrainOptions(min_history=14, test_origins=2, seed=args.seed, verbose=0)
    rows = []
    for setting in ("none", "closures"):
        calendar = None if setting == "none" else settings_calendar(settings, 7, "")
        evaluation = fit_and_backtest(histories, features, options, log=lambda message: None, calendar=calendar)
        result = evaluation.result
        scores = result.table()["lstm"]
        test_buckets = np.array([origin + step for origin in result.origins for step in range(7)])
        on_closed = np.isin(test_buckets, closed_buckets)
        p50 = result.forecasts["lstm"][..., 1].reshape(len(evaluation.skus), -1)
        p50_open = p50[:, ~on_closed & (result.actual.reshape(len(evaluation.skus), -1).sum(axis=0) > 0)]
        rows.append({"calendar": setting, "wape": round(scores["wape"], 4), "pinball": round(scores["pinball"], 4),
                     "coverage_p10_p90": round(scores["coverage_p10_p90"], 4),
                     "p50_on_closed_days": round(float(p50[:, on_closed].mean()), 4),
                     "actual_on_closed_days": float(result.actual.reshape(len(evaluation.skus), -1)[:, on_closed].sum()),
                     "p50_on_open_days": round(float(p50_open.mean()), 4),
                     "flagged_in_test": int(on_closed.sum()) if setting != "none" else 0,
                     "train_windows": evaluation.facts["train_windows"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    seasonal = evaluation.result.table()["seasonal_naive"]
    print(json.dumps({"skus": args.skus, "days": days, "closed": [str(d) for d in CLOSED], "rows": rows,
                      "seasonal_naive": {k: round(v, 4) for k, v in seasonal.items()}}, indent=2))


if __name__ == "__main__":
    main()
