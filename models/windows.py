"""Per-SKU rolling windows in event time.

A window is a plain dict (so it serialises to one JSON value per SKU in a
changelogged table, and replay can keep it in memory):

    {"b": first bucket index, "u": [units], "r": [revenue], "c": [clicks],
     "oh": on hand, "oh_ts": its ts, "lp": list price, "cat": category,
     "closed": last bucket index a forecast was emitted after,
     "seen": {source: [offset, line]}}

Bucket index k covers event time [k * bucket_ms, (k + 1) * bucket_ms), epoch
aligned in UTC. The arrays cover buckets b .. b + len - 1, at most `history`
of them; older buckets drop off the front.

`seen` is the last input position applied per source (models.positions): what
makes every order line count exactly once across restarts.
"""

from __future__ import annotations

import numpy as np


def new_window(bucket: int) -> dict:
    return {"b": bucket, "u": [], "r": [], "c": [], "oh": None, "oh_ts": None,
            "lp": None, "cat": None, "closed": bucket - 1, "seen": {}}


def _slot(window: dict, bucket: int, history: int) -> int | None:
    """Index of `bucket` in the arrays, growing them as needed; None if it fell off."""
    units, revenue, clicks = window["u"], window["r"], window["c"]
    first = window["b"]
    if not units:
        window["b"] = bucket
        units.append(0)
        revenue.append(0.0)
        clicks.append(0)
        return 0
    last = first + len(units) - 1
    if bucket > last:
        grow = bucket - last
        if grow >= history:
            units[:], revenue[:], clicks[:] = [0], [0.0], [0]
            window["b"] = bucket
            return 0
        units.extend([0] * grow)
        revenue.extend([0.0] * grow)
        clicks.extend([0] * grow)
        excess = len(units) - history
        if excess > 0:
            del units[:excess], revenue[:excess], clicks[:excess]
            window["b"] = first + excess
        return len(units) - 1
    if bucket < first:
        newest = first + len(units) - 1
        if newest - bucket >= history:
            return None
        pad = first - bucket
        units[:0] = [0] * pad
        revenue[:0] = [0.0] * pad
        clicks[:0] = [0] * pad
        window["b"] = bucket
        return 0
    return bucket - first


def add_sale(window: dict, bucket: int, units: int, revenue: float, history: int) -> bool:
    """Count a sale in its bucket; False when the bucket is older than the history kept."""
    slot = _slot(window, bucket, history)
    if slot is None:
        return False
    window["u"][slot] += units
    window["r"][slot] = round(window["r"][slot] + revenue, 6)
    return True


def add_clicks(window: dict, bucket: int, count: int, history: int) -> bool:
    slot = _slot(window, bucket, history)
    if slot is None:
        return False
    window["c"][slot] += count
    return True


def set_inventory(window: dict, ts: int, on_hand: int, list_price: float | None, category: str | None) -> None:
    """Keep the latest stock level by event time; an older update never overwrites a newer one."""
    if window["oh_ts"] is not None and ts < window["oh_ts"]:
        return
    window["oh"], window["oh_ts"] = on_hand, ts
    if list_price is not None:
        window["lp"] = list_price
    if category is not None:
        window["cat"] = category


def units_series(window: dict, end_bucket: int, length: int | None = None) -> np.ndarray:
    """Units per bucket up to and including `end_bucket`, zeros where nothing sold.

    Starts at the window's first bucket (or `length` buckets back); the forecaster's input.
    """
    first = window["b"]
    units = window["u"]
    if not units or end_bucket < first:
        return np.zeros(0 if length is None else length, dtype=np.float64)
    available = np.asarray(units[: end_bucket - first + 1], dtype=np.float64)
    tail_zeros = end_bucket - (first + len(units) - 1)
    if tail_zeros > 0:
        available = np.concatenate([available, np.zeros(tail_zeros)])
    if length is not None:
        if len(available) >= length:
            return available[-length:]
        return np.concatenate([np.zeros(length - len(available)), available])
    return available


def buckets_view(window: dict, bucket_ms: int, count: int) -> list[dict]:
    """The last `count` buckets as the contract's sales records, oldest first."""
    first = window["b"]
    rows = []
    for i, (units, revenue, clicks) in enumerate(zip(window["u"], window["r"], window["c"])):
        rows.append({"start": (first + i) * bucket_ms, "units": units, "revenue": revenue, "clicks": clicks})
    return rows[-count:] if count > 0 else []


def buckets_to_close(window: dict, watermark_bucket: int) -> bool:
    """True when the watermark entered a bucket after the last one this SKU closed."""
    return window["closed"] < watermark_bucket - 1
