"""Per-SKU rolling windows in event time.

A window is a plain dict, typed `Window` (so it serialises to one JSON value
per SKU in a changelogged table, and replay can keep it in memory). Its short
keys are the stored format: workers restore windows from the changelog, so a
key is never renamed. Only this module reads or writes them; everyone else
goes through the functions here (tests/models/test_state_access.py checks it).

Bucket index k covers event time [k * bucket_ms, (k + 1) * bucket_ms), epoch
aligned in UTC. The arrays cover buckets b .. b + len - 1: the `history`
buckets up to the newest, or up to the oldest bucket not closed yet if that is
older (at most HOLD_LIMIT x `history` in all); older buckets drop off the front. So
a bucket does not drop off before it closed, with the history its forecast
reads: a backfill reads partitions unevenly, and a SKU's window may take
events months ahead of the buckets still to close (MovieLens through a
worker lost 48k forecasts that way).

`seen` is the last input position applied per source (salescast.models.positions): what
makes every order line count exactly once across restarts.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import numpy as np

from salescast.models.forecast.features import History


class Window(TypedDict):
    """One SKU's window as stored. Keys marked NotRequired are absent from windows stored before they
    existed (or, for `uc`, `fp` and `promos`, until first set)."""

    b: int  # index of the first bucket the per-bucket arrays hold
    u: list[int]  # units sold, per bucket
    r: list[float]  # revenue, per bucket
    c: list[int]  # clicks, per bucket
    d: NotRequired[list[int]]  # of `u`, units sold on a promotion or discount
    x: NotRequired[list[int]]  # of `u`, each unit's discount in percent of list price, summed (price's input)
    s: NotRequired[list[int]]  # the last on-hand level reported in the bucket; -1: no report
    oh: int | None  # the latest on-hand level reported, by event time
    oh_ts: int | None  # its event time
    lp: float | None  # list price
    uc: NotRequired[float]  # unit cost
    cat: str | None  # category
    closed: int | None  # the last bucket closed; None: none yet
    le: NotRequired[int | None]  # the newest bucket with a sale, click or stock report
    fe: NotRequired[int]  # the first such bucket
    fp: NotRequired[list]  # [bucket, the P10 forecast for it made at the close before it]
    promos: NotRequired[list[dict]]  # open triggers' attribution states (salescast.models.promo.attribution)
    seen: dict[str, list[int]]  # source -> [offset, line] last applied (salescast.models.positions)


# per-bucket arrays and the value a bucket starts with: units, revenue, clicks, units sold on a
# promotion or discount, the last on-hand level reported in the bucket (-1: no report), and the units'
# percent off list price summed (whole percents: one digit a quiet bucket in the stored JSON)
SERIES = {"u": 0, "r": 0.0, "c": 0, "d": 0, "s": -1, "x": 0}
# a window holds at most this many times its history while buckets wait to close (a backfill read unevenly)
HOLD_LIMIT = 8
_FILLS = tuple(SERIES.values())


def new_window(bucket: int) -> Window:
    window = {"b": bucket, "oh": None, "oh_ts": None, "lp": None, "cat": None, "closed": None, "seen": {}}
    window.update({name: [] for name in SERIES})
    return window


def _arrays(window: Window) -> list[list]:
    """The per-bucket arrays, adding any a window stored by an older version lacks."""
    length = len(window["u"])
    for name, fill in SERIES.items():
        if name not in window:
            window[name] = [fill] * length
    return [window[name] for name in SERIES]


def first_open(window: Window) -> int:
    """The oldest bucket not closed yet: the first held while none has closed (an earlier event may still
    come from a partition read behind the one that made the window)."""
    closed = window.get("closed")
    return window["b"] if closed is None else closed + 1


def _keep_from(window: Window, newest: int, history: int) -> int:
    """The oldest bucket the window keeps once it holds `newest`: `history` buckets up to the oldest one
    open, but never more than HOLD_LIMIT x `history` in all (a backfill read more unevenly than that
    needs SALESCAST_HISTORY_BUCKETS raised)."""
    bound = newest - HOLD_LIMIT * history + 1
    closed = window.get("closed")
    return bound if closed is None else max(bound, min(newest, closed + 1) - history + 1)


def catch_up(window: Window, close_before: int, active: int) -> None:
    """Mark closed the buckets before `close_before` at which the SKU is live nowhere.

    A quiet SKU's close is not written (salescast.stream.core.close.close_buckets skips
    it), so its `closed` falls behind; without this, the window of a SKU that
    sells again after a quiet year would keep that year open, and whole.
    """
    first, last = first_open(window), close_before - 1
    if first <= last and not live_buckets(window, first, last, active):
        window["closed"] = last


def _slot(window: Window, bucket: int, history: int) -> int | None:
    """Index of `bucket` in the arrays, growing them as needed; None if it fell off."""
    arrays = _arrays(window)
    length = len(arrays[0])
    first = window["b"]
    if not length:
        window["b"] = bucket
        for array, fill in zip(arrays, _FILLS):
            array.append(fill)
        return 0
    last = first + length - 1
    if bucket > last:
        keep_from = _keep_from(window, bucket, history)
        if keep_from > last:
            for array, fill in zip(arrays, _FILLS):
                array[:] = [fill]
            window["b"] = bucket
            return 0
        grow = bucket - last
        excess = max(0, keep_from - first)
        for array, fill in zip(arrays, _FILLS):
            array.extend([fill] * grow)
            if excess:
                del array[:excess]
        window["b"] = first + excess
        return len(arrays[0]) - 1
    if bucket < first:
        if bucket < _keep_from(window, last, history):
            return None
        pad = first - bucket
        for array, fill in zip(arrays, _FILLS):
            array[:0] = [fill] * pad
        window["b"] = bucket
        return 0
    return bucket - first


def add_sale(window: Window, bucket: int, units: int, revenue: float, history: int, promo_units: int = 0,
             discount_units: float = 0.0) -> bool:
    """Count a sale in its bucket; False when the bucket is older than the history kept.

    `promo_units` of the `units` were sold on a promotion or discount: the
    forecaster must not read a promotion's lift as the SKU's normal demand.
    `discount_units` is the fraction off list price summed over the units
    (2 units at 25% off: 0.5), how deep that discount was.
    """
    slot = _slot(window, bucket, history)
    if slot is None:
        return False
    window["u"][slot] += units
    note_event(window, bucket)
    window["r"][slot] = round(window["r"][slot] + revenue, 6)
    if promo_units:
        window["d"][slot] += promo_units
    if discount_units:
        window["x"][slot] += round(discount_units * 100)
    return True


def add_clicks(window: Window, bucket: int, count: int, history: int) -> bool:
    slot = _slot(window, bucket, history)
    if slot is None:
        return False
    window["c"][slot] += count
    note_event(window, bucket)
    return True


def set_inventory(window: Window, ts: int, on_hand: int, list_price: float | None, category: str | None,
                  bucket: int, history: int, unit_cost: float | None = None) -> None:
    """Keep the latest stock level by event time; an older update never overwrites a newer one.

    The level is also noted in its bucket (`bucket` holds `ts`), so a sold-out
    bucket can be told from a bucket without demand.
    """
    slot = _slot(window, bucket, history)
    if slot is not None:
        window["s"][slot] = on_hand
        note_event(window, bucket)
    if window["oh_ts"] is not None and ts < window["oh_ts"]:
        return
    window["oh"], window["oh_ts"] = on_hand, ts
    if list_price is not None:
        window["lp"] = list_price
    if unit_cost is not None:
        window["uc"] = unit_cost
    if category is not None:
        window["cat"] = category


def history(window: Window, end_bucket: int, length: int | None = None) -> History:
    """The window's buckets up to and including `end_bucket`: what a forecaster reads.

    Buckets after the last one that saw an event count as no sales and no stock
    report. With `length`, at most that many buckets, starting no earlier than
    the SKU's first event: so the history a close reads is the same whatever
    else the window holds then (a worker reading a backfill unevenly keeps
    more of it than a replay does), and replay and worker forecast alike
    (bench/realdata.py compares them).
    """
    _arrays(window)
    first = window["b"]
    start = first if length is None else max(window.get("fe", first), end_bucket - length + 1)
    head = max(0, min(first, end_bucket + 1) - start)  # buckets before the window's first: nothing held
    lo = max(0, start - first)
    keep = max(0, min(len(window["u"]), end_bucket - first + 1) - lo)
    tail = max(0, end_bucket - start + 1 - head - keep)

    def column(name: str) -> np.ndarray:
        values = np.full(head + keep + tail, SERIES[name], dtype=np.float64)
        values[head:head + keep] = window[name][lo:lo + keep]
        return values

    return History(start, column("u"), column("d"), column("s"), column("x") / 100.0)


def buckets_view(window: Window, bucket_ms: int, count: int) -> list[dict]:
    """The last `count` buckets as the contract's sales records, oldest first."""
    first = window["b"]
    rows = []
    for i, (units, revenue, clicks) in enumerate(zip(window["u"], window["r"], window["c"])):
        rows.append({"start": (first + i) * bucket_ms, "units": units, "revenue": revenue, "clicks": clicks})
    return rows[-count:] if count > 0 else []


def note_event(window: Window, bucket: int) -> None:
    """A sale, click or stock report in `bucket`: what keeps a SKU live (`live_buckets`), and where its
    history starts (`history`)."""
    if window.get("le") is None or bucket > window["le"]:
        window["le"] = bucket
    if window.get("fe") is None or bucket < window["fe"]:
        window["fe"] = bucket


def last_event_at_or_before(window: Window, bucket: int) -> int | None:
    """The newest bucket up to `bucket` that had a sale, a click or a stock report; None if none is held."""
    newest = window.get("le")
    if newest is not None and newest <= bucket:
        return newest
    arrays = _arrays(window)
    first = window["b"]
    units, clicks, stock = arrays[0], arrays[2], arrays[4]
    for index in range(min(bucket - first, len(units) - 1), -1, -1):
        if units[index] or clicks[index] or stock[index] >= 0:
            return first + index
    return None


def live_buckets(window: Window, first: int, last: int, active: int) -> list[int]:
    """The buckets from `first` to `last` at whose close the SKU is live: it had an event in that bucket
    or in the `active` - 1 before it. Oldest first.

    A SKU long quiet costs one comparison (its newest event is too old for
    any of them), so closing every SKU of a large catalogue stays cheap.
    """
    live: list[int] = []
    bucket = last
    while bucket >= first:
        event = last_event_at_or_before(window, bucket)
        if event is None or event + active - 1 < first:
            break
        live.extend(range(min(bucket, event + active - 1), max(first, event) - 1, -1))
        bucket = event - 1
    live.reverse()
    return live


def buckets_to_close(window: Window, watermark_bucket: int) -> bool:
    """True when the watermark entered a bucket after the last one this SKU closed."""
    return first_open(window) < watermark_bucket


# What the rest of the service reads and writes of a window. The lists returned are the window's own:
# callers read them and never change them.

def first_bucket(window: Window) -> int:
    """The bucket index of the first element of `units`, `revenue` and `stock_reports`."""
    return window["b"]


def units(window: Window) -> list[int]:
    """Units sold per bucket, from `first_bucket` on."""
    return window["u"]


def revenue(window: Window) -> list[float]:
    """Revenue per bucket, from `first_bucket` on."""
    return window["r"]


def stock_reports(window: Window) -> list[int]:
    """The last on-hand level reported per bucket, from `first_bucket` on: -1 no report, 0 sold out."""
    _arrays(window)
    return window["s"]


def units_between(window: Window, first: int, last: int) -> int:
    """Units sold in buckets `first` to `last`, both included; buckets the window does not hold count 0."""
    return _sum_between(window["u"], window["b"], first, last)


def clicks_between(window: Window, first: int, last: int) -> int:
    """Clicks in buckets `first` to `last`, both included; buckets the window does not hold count 0."""
    return _sum_between(window["c"], window["b"], first, last)


def _sum_between(values: list, first_held: int, first: int, last: int) -> int:
    end = last - first_held + 1
    return sum(values[max(0, first - first_held):end]) if end > 0 else 0


def in_stock_at(window: Window, bucket: int) -> bool:
    """False only when the last stock report in `bucket` said sold out: a bucket without one counts in stock."""
    stock, index = window.get("s"), bucket - window["b"]
    return not (stock and 0 <= index < len(stock) and stock[index] == 0)


def on_hand(window: Window) -> int | None:
    """The latest on-hand level reported (by event time); None before the first stock report."""
    return window["oh"]


def stock_now(window: Window, bucket_ms: int) -> int | None:
    """The latest stock report minus the units sold since the start of its bucket.

    Reports come now and then (the generator's once a day); the sales since
    are known, so the stock a decision sees is not a day stale. Sales earlier
    in the report's bucket count too: the estimate errs low, the safe side
    for "never promote short stock".
    """
    if window["oh"] is None:
        return None
    since = window["oh_ts"] // bucket_ms - window["b"]
    return max(0, int(window["oh"] - sum(window["u"][max(0, since):])))


def list_price(window: Window) -> float | None:
    return window.get("lp")


def unit_cost(window: Window) -> float | None:
    return window.get("uc")


def category(window: Window) -> str | None:
    return window.get("cat")


def mark_closed(window: Window, bucket: int) -> None:
    """Buckets up to `bucket` are closed: `first_open` is the next one."""
    window["closed"] = bucket


def keep_p10_forecast(window: Window, bucket: int, p10: float) -> None:
    """Keep the P10 just forecast for `bucket` (the next to close): when it closes below it, demand dropped."""
    window["fp"] = [bucket, p10]


def p10_forecast(window: Window, bucket: int) -> float | None:
    """The P10 forecast for `bucket` kept at the close before it; None if that close made none."""
    kept = window.get("fp")
    return kept[1] if kept and kept[0] == bucket else None


def promotions(window: Window) -> list[dict]:
    """The attribution states of the SKU's open triggers (salescast.models.promo.attribution); often none."""
    return window.get("promos", [])


def add_promotion(window: Window, state: dict) -> None:
    window.setdefault("promos", []).append(state)


def set_promotions(window: Window, states: list[dict]) -> None:
    """Keep only `states` open (the others ended)."""
    window["promos"] = states


def applied_positions(window: Window) -> dict[str, list[int]]:
    """The last input position applied per source, for salescast.models.positions.already_applied."""
    return window["seen"]
