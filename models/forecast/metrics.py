"""Forecast accuracy, in numpy: the loss the LSTM trains on and the scores the backtest reports.

Quantile forecasts are arrays (..., 3) holding P10, P50, P90.
"""

from __future__ import annotations

import numpy as np

QUANTILES = np.array([0.1, 0.5, 0.9])


def pinball(y: np.ndarray, q: np.ndarray, quantiles: np.ndarray = QUANTILES) -> np.ndarray:
    """Pinball (quantile) loss of each forecast quantile: (..., 3) for y (...) and q (..., 3)."""
    error = np.asarray(y)[..., None] - np.asarray(q)
    return np.maximum(quantiles * error, (quantiles - 1.0) * error)


def masked_pinball_loss(y: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sample: the pinball loss averaged over quantiles and over the unmasked horizon buckets.

    The training loss (salescast.models.forecast.lstm computes the same in Keras ops). A
    sample with every target masked contributes 0.
    """
    per_bucket = pinball(y, q).mean(axis=-1) * mask
    return per_bucket.sum(axis=-1) / np.maximum(mask.sum(axis=-1), 1.0)


def seasonal_scale(history: np.ndarray, season: int) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal naive forecast."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) <= season:
        return float("nan")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def scores(y: np.ndarray, q: np.ndarray, mask: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MASE, WAPE, mean pinball loss and P10-P90 coverage over series x origins x horizon.

    y, mask: (S, O, H); q: (S, O, H, 3); scale: (S,) each series' MASE
    denominator. Masked buckets (sold out) are left out of every score; series
    with a zero or undefined scale are left out of MASE only.
    """
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
    }
