"""Forecast accuracy, in numpy: the loss the LSTM trains on and the scores the backtest reports.

Quantile forecasts are arrays (..., 3) holding P10, P50, P90, or (..., 4) with the
mean after them, from a model that forecasts it.
"""

from __future__ import annotations

import numpy as np

QUANTILES = np.array([0.1, 0.5, 0.9])
# the mean's Poisson loss beside the pinball loss: mu - y log(mu + eps), minimal where mu is the mean of y
MEAN_LOSS_WEIGHT = 0.5
POISSON_EPSILON = 1e-6


def pinball(y: np.ndarray, q: np.ndarray, quantiles: np.ndarray = QUANTILES) -> np.ndarray:
    """Pinball (quantile) loss of each forecast quantile: (..., 3) for y (...) and q (..., 3)."""
    error = np.asarray(y)[..., None] - np.asarray(q)
    return np.maximum(quantiles * error, (quantiles - 1.0) * error)


def masked_pinball_loss(y: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sample: the pinball loss averaged over quantiles and over the unmasked horizon buckets.

    The training loss (salescast.models.forecast.lstm computes the same in Keras ops). A
    sample with every target masked contributes 0.
    """
    q = np.asarray(q)
    per_bucket = pinball(y, q[..., :3]).mean(axis=-1)
    if q.shape[-1] == 4:
        per_bucket = per_bucket + MEAN_LOSS_WEIGHT * (q[..., 3] - y * np.log(q[..., 3] + POISSON_EPSILON))
    per_bucket = per_bucket * mask
    return per_bucket.sum(axis=-1) / np.maximum(mask.sum(axis=-1), 1.0)


def seasonal_scale(history: np.ndarray, season: int) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal naive forecast."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) <= season:
        return float("nan")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def expected(q: np.ndarray) -> np.ndarray:
    """The forecast's mean: its own where it has one, else its P50 (which Croston, TSB, AutoETS and the
    moving averages forecast as their mean)."""
    return q[..., 3] if q.shape[-1] == 4 else q[..., 1]


def scores(y: np.ndarray, q: np.ndarray, mask: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MASE, WAPE, mean pinball loss and P10-P90 coverage over series x origins x horizon, and for the mean
    (`expected`): RMSE, and bias as a share of the units sold.

    y, mask: (S, O, H); q: (S, O, H, 3 or 4); scale: (S,) each series' MASE
    denominator. Masked buckets (sold out) are left out of every score; series
    with a zero or undefined scale are left out of MASE only.
    """
    mean = expected(q)
    q = q[..., :3]
    keep = mask > 0
    error = np.abs(y - q[..., 1])
    per_series_mae = (error * keep).sum(axis=(1, 2)) / np.maximum(keep.sum(axis=(1, 2)), 1)
    usable = np.isfinite(scale) & (scale > 0) & (keep.sum(axis=(1, 2)) > 0)
    inside = (q[..., 0] <= y) & (y <= q[..., 2])
    return {
        "mase": float(np.mean(per_series_mae[usable] / scale[usable])),
        "wape": float(error[keep].sum() / max(y[keep].sum(), 1e-9)),
        "pinball": float(pinball(y, q)[keep].mean()),
        "coverage_p10_p90": float(inside[keep].mean()),
        "mean_rmse": float(np.sqrt(np.mean((mean - y)[keep] ** 2))),
        "mean_bias": float((mean - y)[keep].sum() / max(y[keep].sum(), 1e-9)),
    }
