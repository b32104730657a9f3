"""Rolling-origin backtest on held-out time.

At each origin every method sees each SKU's history up to (not including) the
origin bucket and forecasts the `horizon` buckets from it; origins step
forward through the test period. Trained methods are fitted once, on windows
whose targets all end before the first origin, so no test bucket is ever seen
in training. Sold-out target buckets are left out of every score (their sales
are not demand); MASE divides by each SKU's in-sample seasonal-naive error
before the first origin (Hyndman & Koehler 2006).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from salescast.models.forecast.features import FeatureConfig, History, make_inputs, stockout_mask
from salescast.models.forecast.metrics import expected, scores, seasonal_scale

# histories cut at an origin -> (S, H, 3) quantiles in units, or (S, H, 4) with the mean after them
Predictor = Callable[[list[History]], np.ndarray]


@dataclass
class BacktestResult:
    origins: list[int]
    actual: np.ndarray  # (S, O, H)
    mask: np.ndarray  # (S, O, H): 1 where the SKU was in stock
    forecasts: dict[str, np.ndarray]  # method -> (S, O, H, 3), or 4 with the method's own mean
    scale: np.ndarray  # (S,)

    def table(self) -> dict[str, dict[str, float]]:
        return {name: scores(self.actual, q, self.mask, self.scale) for name, q in self.forecasts.items()}


def origins_for(histories: Sequence[History], horizon: int, count: int) -> list[int]:
    """`count` origins, `horizon` apart, the last leaving a full horizon before the data ends."""
    end = min(h.end_bucket for h in histories)
    return [end - horizon * (count - i) for i in range(count)]


def run(histories: Sequence[History], origins: list[int], horizon: int, season: int,
        methods: dict[str, Predictor]) -> BacktestResult:
    series = len(histories)
    actual = np.zeros((series, len(origins), horizon))
    mask = np.zeros_like(actual)
    for s, history in enumerate(histories):
        stockout = stockout_mask(history.on_hand)
        for o, origin in enumerate(origins):
            start = origin - history.first_bucket
            actual[s, o] = history.units[start:start + horizon]
            mask[s, o] = ~stockout[start:start + horizon]
    forecasts: dict[str, np.ndarray] = {}
    for o, origin in enumerate(origins):
        cut = [history.until(origin) for history in histories]
        for name, predict in methods.items():
            answer = predict(cut)
            if name not in forecasts:
                forecasts[name] = np.zeros((series, len(origins), horizon, answer.shape[-1]))
            forecasts[name][:, o] = answer
    scale = np.array([seasonal_scale(h.until(origins[0]).units, season) for h in histories])
    return BacktestResult(origins, actual, mask, forecasts, scale)


def baseline(make_model: Callable[[], object], horizon: int) -> Predictor:
    """A `salescast.models.baseline` forecaster, fitted on each SKU's history at each origin."""
    def predict(cut: list[History]) -> np.ndarray:
        out = []
        for history in cut:
            f = make_model().fit(history.units).predict(horizon)
            out.append(np.stack([f.p10, f.p50, f.p90], axis=-1))
        return np.array(out)
    return predict


def scaled_model(features: FeatureConfig, predict_scaled: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Predictor:
    """A model that reads `make_inputs` and answers in scaled units (the LSTM, LightGBM)."""
    def predict(cut: list[History]) -> np.ndarray:
        x, future, scale = make_inputs(cut, features)
        return predict_scaled(x, future) * scale[:, None, None]
    return predict


def mean_of(*predictors: Predictor) -> Predictor:
    """An equal-weight ensemble, quantile by quantile (and mean by mean: `metrics.expected`)."""
    def predict(cut: list[History]) -> np.ndarray:
        answers = [p(cut) for p in predictors]
        if any(answer.shape[-1] == 4 for answer in answers):
            answers = [np.concatenate([a[..., :3], expected(a)[..., None]], axis=-1) for a in answers]
        return np.mean(answers, axis=0)
    return predict
