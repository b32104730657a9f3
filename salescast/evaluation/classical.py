"""The classical forecasters the served one is judged against: Croston, TSB and AutoETS, from statsforecast.

They are fitted per SKU at every origin of the rolling backtest
(salescast.models.forecast.backtest), as a planner would refit them each week.
Croston and TSB give a point forecast only (a demand rate); their P10/P90 come
from statsforecast's conformal intervals (the errors of the same model on the
last `CONFORMAL_WINDOWS` horizons of the history), AutoETS's from its own
state-space model. Every quantile is clipped at zero: demand is never negative.

Needs the evaluation extras (`pip install salescast[eval]`).
"""

from __future__ import annotations

import numpy as np

from salescast.models.forecast.backtest import Predictor
from salescast.models.forecast.features import History

CONFORMAL_WINDOWS = 2
# TSB's smoothing of the demand size and of the demand probability: the values Syntetos, Babai and Teunter
# found to work across intermittent series (10%: slow to react, which intermittent series need)
TSB_ALPHA_D, TSB_ALPHA_P = 0.1, 0.1
COLUMNS = {"croston": "CrostonClassic", "tsb": "TSB", "autoets": "AutoETS"}


class Classical:
    """The three models, fitted together once per origin (one statsforecast call); `predictors()` gives one
    backtest Predictor per model."""

    def __init__(self, season: int, horizon: int):
        self.season, self.horizon = season, horizon
        self._cut: list[History] | None = None
        self._answers: dict[str, np.ndarray] = {}

    def predictors(self) -> dict[str, Predictor]:
        return {name: self._predictor(name) for name in COLUMNS}

    def _predictor(self, name: str) -> Predictor:
        def predict(cut: list[History]) -> np.ndarray:
            if cut is not self._cut:  # the backtest hands every method the same list at one origin
                self._answers, self._cut = self._fit_predict(cut), cut
            return self._answers[name]
        return predict

    def _fit_predict(self, cut: list[History]) -> dict[str, np.ndarray]:
        import pandas as pd
        from statsforecast import StatsForecast
        from statsforecast.models import TSB, AutoETS, CrostonClassic
        from statsforecast.utils import ConformalIntervals

        horizon = self.horizon
        conformal = ConformalIntervals(h=horizon, n_windows=CONFORMAL_WINDOWS)
        models = [CrostonClassic(prediction_intervals=conformal),
                  TSB(alpha_d=TSB_ALPHA_D, alpha_p=TSB_ALPHA_P, prediction_intervals=conformal),
                  AutoETS(season_length=self.season)]
        # a series needs its conformal windows and a little more to fit; shorter ones get the mean of what there is
        needed = horizon * (CONFORMAL_WINDOWS + 1)
        fitted = [s for s, history in enumerate(cut) if len(history) >= needed]
        frame = pd.DataFrame({
            "unique_id": np.repeat(np.array(fitted, dtype=np.int64), [len(cut[s]) for s in fitted]),
            "ds": np.concatenate([np.arange(len(cut[s])) for s in fitted]) if fitted else np.zeros(0, np.int64),
            "y": np.concatenate([cut[s].units for s in fitted]) if fitted else np.zeros(0)})
        answers = {}
        for name in COLUMNS:
            answers[name] = np.zeros((len(cut), horizon, 3))
            for s, history in enumerate(cut):
                answers[name][s] = history.units.mean() if len(history) else 0.0
        if fitted:
            out = StatsForecast(models=models, freq=1, n_jobs=1).forecast(df=frame, h=horizon, level=[80])
            out = out.sort_values(["unique_id", "ds"])
            rows = out["unique_id"].to_numpy().reshape(-1, horizon)[:, 0]
            for name, column in COLUMNS.items():
                quantiles = np.stack([out[f"{column}-lo-80"], out[column], out[f"{column}-hi-80"]], axis=-1)
                answers[name][rows] = np.maximum(np.nan_to_num(quantiles.reshape(len(rows), horizon, 3)), 0.0)
        return answers
