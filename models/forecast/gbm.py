"""The strong baseline: LightGBM quantile regression on the same lag features the LSTM reads.

One model per quantile over rows (window, horizon step): the window's scaled
units, promotion and stock-out flags, its scale, and the step's position and
season phase. It sees exactly what the LSTM sees, so the comparison is fair.
LightGBM is a development dependency (`pip install salescast[eval]`): only
`salescast evaluate` uses it.
"""

from __future__ import annotations

import numpy as np

from salescast.models.forecast.features import FeatureConfig, Samples
from salescast.models.forecast.metrics import QUANTILES


def _rows(x: np.ndarray, future: np.ndarray) -> np.ndarray:
    """(N, L, F), (N, H, K) -> (N * H, features), rows ordered window by window.

    The lags of units, promo and stock-out, the scale, and the lags of every input after the first six the
    model has (the discount depth, the calendar's flags): LightGBM reads what the LSTM reads.
    """
    n, _, _ = x.shape
    horizon = future.shape[1]
    extra = x[..., 6:].transpose(0, 2, 1).reshape(n, -1)
    lags = np.concatenate([x[..., 0], x[..., 1], x[..., 2], x[:, -1, 5:6], extra], axis=1)
    step = np.tile(np.arange(horizon, dtype=np.float32), n)[:, None]
    return np.concatenate([np.repeat(lags, horizon, axis=0), future.reshape(n * horizon, -1), step], axis=1)


class GBMQuantileForecaster:
    name = "lightgbm"

    def __init__(self, features: FeatureConfig, n_estimators: int = 400, learning_rate: float = 0.05,
                 num_leaves: int = 31, max_rows: int = 250_000, seed: int = 7):
        self.features = features
        self.params = {"n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
                       "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
                       "random_state": seed, "verbose": -1}
        self.max_rows, self.seed = max_rows, seed
        self.models = []

    def fit(self, train: Samples, valid: Samples | None = None) -> "GBMQuantileForecaster":
        import lightgbm

        rows, target, weight = _rows(train.x, train.future), train.y.reshape(-1), train.mask.reshape(-1)
        keep = np.flatnonzero(weight > 0)
        if len(keep) > self.max_rows:
            keep = np.sort(np.random.default_rng(self.seed).choice(keep, self.max_rows, replace=False))
        evaluation = {}
        if valid is not None and len(valid):
            valid_keep = valid.mask.reshape(-1) > 0
            evaluation = {"eval_X": (_rows(valid.x, valid.future)[valid_keep],),
                          "eval_y": (valid.y.reshape(-1)[valid_keep],),
                          "callbacks": [lightgbm.early_stopping(30, verbose=False)]}
        self.models = []
        for quantile in QUANTILES:
            model = lightgbm.LGBMRegressor(objective="quantile", alpha=float(quantile), **self.params)
            model.fit(rows[keep], target[keep], **evaluation)
            self.models.append(model)
        return self

    def predict(self, x: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Scaled (N, H, 3) quantiles, sorted so they never cross, floored at 0."""
        rows = _rows(x, future)
        columns = [model.predict(rows) for model in self.models]
        quantiles = np.sort(np.stack(columns, axis=-1), axis=-1).reshape(len(x), future.shape[1], 3)
        return np.maximum(quantiles, 0.0)
