"""Bucket close: when the low watermark passes a bucket's end, every live SKU gets a forecast.

The promotion step (salescast.stream.serving.promoter) runs at the same close, and
the sales view reads the same windows for GET /skus/{sku}/sales.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

import numpy as np

from salescast.models import windows
from salescast.models.baseline import Forecast, SeasonalNaive
from salescast.models.forecast.features import History
from salescast.stream.core.settings import Settings


class Forecaster(Protocol):
    """What scores SKUs at bucket close: many at once, so a batched model can serve."""

    name: str
    version: str

    def forecast_many(self, histories: list[History], horizon: int) -> list[tuple[Forecast, str, str]]:
        """For each history: (forecast, model name, model version)."""


class BaselineForecaster:
    """Seasonal naive for every SKU: serves until a model is trained, and SKUs too new for the model."""

    def __init__(self, season: int):
        self.season = season
        self._model = SeasonalNaive(season)
        self.name = self._model.name
        self.version = self._model.version

    def forecast_many(self, histories: list[History], horizon: int) -> list[tuple[Forecast, str, str]]:
        forecasts = self._model.predict_many([history.units for history in histories], horizon)
        return [(forecast, self.name, self.version) for forecast in forecasts]


@dataclass
class Closed:
    """A SKU whose open buckets closed: the window to store and what to emit."""

    sku: str
    window: windows.Window
    forecasts: list[dict]  # one per closed bucket at which the SKU was live, oldest first
    proposal: dict | None = None  # a promotion to put to the guardrails (salescast.stream.serving.promoter)
    outcomes: list[tuple[str, dict]] = field(default_factory=list)  # (reason, final outcome) of ended triggers


class AtClose(Protocol):
    """What else happens to a SKU when its bucket closes (salescast.stream.serving.promoter.Promoter)."""

    def at_close(self, sku: str, window: windows.Window, forecast: dict | None, now: int, propose: bool = True
                 ) -> tuple[dict | None, list[tuple[str, dict]]]:
        """(a promotion proposal or None, (reason, final outcome record) pairs); may change the window."""


def promotions_allowed(closed_until_ms: int, now_ms: int | None, settings: Settings) -> bool:
    """False for a close of buckets that ended longer than SALESCAST_PROMO_MAX_AGE before `now_ms`
    (history being loaded is no occasion for a promotion); None: no clock, every close is recent."""
    return now_ms is None or closed_until_ms >= now_ms - settings.promo.max_age_ms


def close_buckets(items: Iterable[tuple[str, windows.Window]], watermark_bucket: int, settings: Settings,
                  forecaster: Forecaster, promoter: AtClose | None = None, now_ms: int | None = None
                  ) -> list[Closed]:
    """Close every SKU's buckets before `watermark_bucket` (the low watermark's), each with a forecast
    where the SKU is live (contract v1.1: an event within the last SALESCAST_ACTIVE_BUCKETS buckets).

    A SKU with several buckets to close (a gap in the data, a low watermark
    that leapt) gets a forecast as of each, from the history up to that bucket,
    so a replay and a worker that read the partitions unevenly emit the same.
    The promotion step runs once, at the last bucket; `now_ms` is the clock
    (see `promotions_allowed`). A SKU that is live at no bucket and has no
    promotion to finish is left out, and its window is not rewritten.
    The caller stores each returned window (its `closed` moved) and emits the
    forecasts, proposals and outcomes. The window keeps the P10 just forecast
    for the next bucket (`fp`): when that bucket closes below it, its demand dropped.
    """
    last = watermark_bucket - 1
    closing: list[tuple[str, windows.Window, list[int]]] = []
    for sku, window in items:
        first = windows.first_open(window)
        if first > last:
            continue
        live = windows.live_buckets(window, first, last, settings.forecasting.active_buckets)
        if live or windows.promotions(window):
            closing.append((sku, window, live))
    if not closing:
        return []
    histories = [windows.history(window, bucket, settings.forecasting.history_buckets)
                 for _, window, live in closing for bucket in live]
    results = iter(forecaster.forecast_many(histories, settings.forecasting.horizon))
    now = watermark_bucket * settings.time.bucket_ms
    propose = promotions_allowed(now, now_ms, settings)
    out = []
    for sku, window, live in closing:
        records = [forecast_record(sku, bucket, *next(results), settings) for bucket in live]
        closed = Closed(sku, window, records)
        at_last = records[-1] if live and live[-1] == last else None
        if promoter is not None:
            closed.proposal, closed.outcomes = promoter.at_close(sku, window, at_last, now, propose)
        windows.mark_closed(window, last)
        if at_last is not None:
            windows.keep_p10_forecast(window, last + 1, at_last["horizon"][0]["p10"])
        out.append(closed)
    return out


def forecast_record(sku: str, last_closed: int, forecast: Forecast, name: str, version: str,
                    settings: Settings) -> dict:
    """The contract's forecast record made at the close of bucket `last_closed`."""
    bucket_ms = settings.time.bucket_ms
    first = last_closed + 1
    horizon = [
        {"start": (first + i) * bucket_ms, "p10": round(lo, 4), "p50": round(mid, 4), "p90": round(hi, 4)}
        for i, (lo, mid, hi) in enumerate(zip(_floats(forecast.p10), _floats(forecast.p50), _floats(forecast.p90)))
    ]
    if forecast.mean is not None:  # added beside contract v1.1: the horizon's items allow more fields
        for step, mean in zip(horizon, _floats(forecast.mean)):
            step["mean"] = round(mean, 4)
    return {"sku": sku, "ts": last_closed * bucket_ms, "bucket": settings.time.bucket, "horizon": horizon,
            "model": {"name": name, "version": version}, "cold_start": bool(forecast.cold_start)}


def _floats(values) -> list[float]:
    """Python floats in one call: iterating the array made a numpy scalar of each value, then a float of it."""
    return np.asarray(values, dtype=np.float64).tolist()


def sales_view(sku: str, window: windows.Window, settings: Settings, count: int) -> dict:
    """The contract's `sales` record for GET /skus/{sku}/sales."""
    return {"sku": sku, "bucket": settings.time.bucket,
            "buckets": windows.buckets_view(window, settings.time.bucket_ms, count), "on_hand": windows.on_hand(window)}
