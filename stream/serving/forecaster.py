"""The worker's forecaster: an LSTM from the model store, with the baseline beside it.

Scoring is batched: every SKU whose bucket closed on a tick goes through the
numpy kernel in one call. A SKU with less history than the model reads gets
the seasonal-naive forecast, flagged `cold_start`. Without a usable model (none
trained yet, or a damaged one) every SKU gets the baseline and the log says why
(salescast.stream.serving.registry.load_current).
"""

from __future__ import annotations

import numpy as np

from salescast.models.baseline import Forecast
from salescast.models.forecast.features import FeatureConfig, History, make_inputs
from salescast.models.forecast.kernel import LSTMKernel
from salescast.models.store import StoredModel
from salescast.stream.core.close import BaselineForecaster
from salescast.stream.core.settings import Settings

MODEL_NAME = "lstm"


class LSTMServing:
    """The engine's `Forecaster` over a stored LSTM."""

    def __init__(self, stored: StoredModel, fallback: BaselineForecaster):
        self.name, self.version = stored.name, stored.version
        f = stored.config["features"]
        self.features = FeatureConfig.from_config(f)
        self.kernel = LSTMKernel(stored.config, stored.weights)
        self.fallback = fallback

    def smoke_test(self) -> None:
        """Forecasts for a fixed weekly pattern must come out finite and of the right length: a
        version whose weights load but do not compute (wrong shapes, NaN) is refused before it serves."""
        length = self.features.input_length + self.features.season
        units = np.tile(np.arange(1.0, 8.0), length // 7 + 1)[:length]
        history = History(0, units, np.zeros(length), np.full(length, -1.0))
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN here is what the test looks for
            forecast = self.forecast_many([history], self.features.horizon)[0][0]
        quantiles = np.stack([forecast.p10, forecast.p50, forecast.p90])
        if quantiles.shape != (3, self.features.horizon) or not np.isfinite(quantiles).all():
            raise ValueError(f"{self.version} gives unusable forecasts on a smoke input: {quantiles.tolist()}")

    def forecast_many(self, histories: list[History], horizon: int) -> list[tuple[Forecast, str, str]]:
        if horizon != self.features.horizon:
            raise ValueError(f"model {self.version} forecasts {self.features.horizon} buckets, not {horizon}")
        results: list = [None] * len(histories)
        ready = [i for i, history in enumerate(histories) if len(history) >= self.features.min_history]
        if ready:
            x, future, scale = make_inputs([histories[i] for i in ready], self.features)
            quantiles = self.kernel.predict(x, future) * scale[:, None, None]
            has_mean = quantiles.shape[-1] == 4
            for row, i in enumerate(ready):
                q = quantiles[row]
                results[i] = (Forecast(q[:, 0], q[:, 1], q[:, 2], False, q[:, 3] if has_mean else None), self.name,
                              self.version)
        new = [i for i, result in enumerate(results) if result is None]
        if new:
            for i, (forecast, name, version) in zip(new, self.fallback.forecast_many([histories[i] for i in new],
                                                                                    horizon)):
                forecast.cold_start = True
                results[i] = (forecast, name, version)
        return results


def seasonal_naive(settings: Settings) -> BaselineForecaster:
    """What forecasts without a usable LSTM, and for SKUs too new for one."""
    return BaselineForecaster(settings.time.season)


def forecaster_from_stored(stored: StoredModel, settings: Settings) -> LSTMServing:
    """A stored LSTM built for these settings; ValueError (or KeyError) when it cannot be. Not yet
    smoke-tested: salescast.stream.serving.registry.load_version runs `smoke_test`."""
    check_compatible(stored, settings)
    return LSTMServing(stored, seasonal_naive(settings))


def check_compatible(stored: StoredModel, settings: Settings) -> None:
    features = stored.config["features"]
    trained_bucket = stored.config.get("bucket")
    if trained_bucket is not None and trained_bucket != settings.time.bucket:
        raise ValueError(f"{stored.version} was trained on {trained_bucket} buckets but SALESCAST_BUCKET is "
                         f"{settings.time.bucket}; retrain with `salescast retrain`")
    if features["horizon"] != settings.forecasting.horizon:
        raise ValueError(f"{stored.version} forecasts {features['horizon']} buckets but SALESCAST_HORIZON is "
                         f"{settings.forecasting.horizon}; retrain with `salescast retrain`")
