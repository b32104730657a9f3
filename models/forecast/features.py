"""From per-SKU bucket histories to what the LSTM reads: inputs, targets, and a split by time.

Training and live scoring share `_encode`, so a SKU is described to the model
the same way in both. Three choices matter for sales counts:

- **Per-window scaling.** Each input window is divided by 1 + the mean of its
  in-stock buckets (DeepAR's "mean scaling", Salinas et al. 2020). SKUs selling
  0.1 and 500 a day then look alike to one global model, a window of zeros
  stays finite, and the scale uses no future data. log1p of the scaled units
  tames spikes; the scale itself is an input, so the model still knows volume.
- **Stock-outs.** A bucket whose last known on-hand level is 0 sold nothing
  because nothing was there, not because nobody wanted it. It is flagged in
  the input and masked out of the loss as a target.
- **Young SKUs and young shops.** A history shorter than `input_length` (but
  at least `min_history` buckets) is padded at the front with buckets flagged
  as sold out: before a SKU was on sale nothing could sell, which is what the
  stock-out flag already tells the model, so padding needs no new input and
  leaves the scale alone (it is the mean of in-stock buckets). Training windows
  are padded the same way, so the model learns from a shop's first weeks.
- **Known future.** The phase in the season (day of week for daily buckets,
  hour of day for hourly ones) of every horizon bucket is known in advance and
  is given to the model; prices and promotions ahead are not, so they are only
  read from the past.
- **Price.** With `FeatureConfig.price` every bucket read carries its discount
  depth: the mean fraction off list price of the units sold in it (0: all at
  list price), carried forward over buckets with no sale, since the price did
  not change because nobody bought. A lift bought with 30% off then reads
  differently from one bought with 5% off, or from real demand.
- **The shop's calendar.** With `FeatureConfig.closures` and `.holidays` (the
  flagged buckets, salescast.models.forecast.calendar) every bucket read and
  every bucket forecast carries a "closed" and a "holiday" flag, so a closed
  Christmas ahead is known. A model stored before the calendar existed has
  both None and reads exactly the inputs it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

HISTORY_FEATURES = ("log_scaled_units", "promo", "stockout", "season_sin", "season_cos", "log_scale")
FUTURE_FEATURES = ("season_sin", "season_cos")
CLOSED_FEATURE, HOLIDAY_FEATURE = "closed", "holiday"  # appended to both when the model has them
DISCOUNT_FEATURE = "discount"  # appended to the history's, before the calendar's, when the model has it


@dataclass(frozen=True)
class History:
    """One SKU's buckets `first_bucket`, `first_bucket + 1`, ...: what was sold and what was in stock."""

    first_bucket: int
    units: np.ndarray
    promo_units: np.ndarray  # of `units`, those sold on a promotion or discount
    on_hand: np.ndarray  # last stock level reported in the bucket; -1: no report
    # of `units`, the fraction off list price summed per unit (2 units at 25% off: 0.5); None: all at list price
    discount_units: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.units)

    @property
    def end_bucket(self) -> int:
        """The bucket after the last one held."""
        return self.first_bucket + len(self.units)

    def until(self, bucket: int) -> "History":
        """The buckets before `bucket`: the history as it was when `bucket` began."""
        keep = max(0, bucket - self.first_bucket)
        return History(self.first_bucket, self.units[:keep], self.promo_units[:keep], self.on_hand[:keep],
                       None if self.discount_units is None else self.discount_units[:keep])

    def discount_depth(self) -> np.ndarray:
        """Per bucket, the mean fraction off list price of the units sold (`discount_depth`)."""
        if self.discount_units is None:
            return np.zeros(len(self.units))
        return discount_depth(self.units, self.discount_units)


@dataclass(frozen=True)
class FeatureConfig:
    input_length: int = 28  # buckets the model reads
    horizon: int = 7  # buckets it forecasts
    season: int = 7  # buckets in one season: 7 for daily buckets (a week), 24 for hourly ones
    # real buckets a window needs; the rest of input_length is padding (module docstring). None: input_length,
    # as every model trained before padding existed (their stored configs have no min_history)
    min_history: int | None = None
    # the buckets the shop's calendar flags (salescast.models.forecast.calendar), sorted: its closures and the
    # public holidays; None: no such input, as every model trained before them
    closures: tuple[int, ...] | None = None
    holidays: tuple[int, ...] | None = None
    # the discount depth as an input (module docstring); False for every model trained before it
    price: bool = False

    def __post_init__(self) -> None:
        for name in ("input_length", "horizon", "season"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_history is None:
            object.__setattr__(self, "min_history", self.input_length)
        if not 1 <= self.min_history <= self.input_length:
            raise ValueError(f"min_history must be between 1 and input_length ({self.input_length}), "
                             f"got {self.min_history}")

    def to_config(self) -> dict:
        config = {"input_length": self.input_length, "horizon": self.horizon, "season": self.season,
                  "min_history": self.min_history}
        for name in ("closures", "holidays"):
            if getattr(self, name) is not None:
                config[name] = list(getattr(self, name))
        if self.price:
            config["price"] = True
        return config

    @classmethod
    def from_config(cls, config: dict) -> "FeatureConfig":
        def buckets(name: str) -> tuple[int, ...] | None:
            values = config.get(name)
            return None if values is None else tuple(int(bucket) for bucket in values)

        return cls(config["input_length"], config["horizon"], config["season"], config.get("min_history"),
                   buckets("closures"), buckets("holidays"), bool(config.get("price", False)))

    @property
    def calendar(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(feature name, flagged buckets) of the calendar inputs the model has, in input order."""
        return tuple((name, flagged) for name, flagged in ((CLOSED_FEATURE, self.closures),
                                                           (HOLIDAY_FEATURE, self.holidays)) if flagged is not None)

    @property
    def history_features(self) -> tuple[str, ...]:
        return HISTORY_FEATURES + ((DISCOUNT_FEATURE,) if self.price else ()) + tuple(name for name, _ in self.calendar)

    @property
    def future_features(self) -> tuple[str, ...]:
        return FUTURE_FEATURES + tuple(name for name, _ in self.calendar)

    @staticmethod
    def flagged(flags: tuple[int, ...], buckets: np.ndarray) -> np.ndarray:
        """1.0 where `flags` (a sorted calendar input) holds the bucket.

        A lookup over the span of `buckets`, which is a few weeks however many SKUs a close scores
        (np.isin sorted every cell: 10x slower at 100,000 SKUs).
        """
        buckets = np.asarray(buckets, dtype=np.int64)
        if buckets.size == 0:
            return np.zeros(buckets.shape, np.float32)
        low, high = int(buckets.min()), int(buckets.max())
        table = np.zeros(high - low + 1, np.float32)
        calendar = np.asarray(flags, dtype=np.int64)
        inside = calendar[(calendar >= low) & (calendar <= high)]
        table[inside - low] = 1.0
        return table[buckets - low]


def stockout_mask(on_hand: np.ndarray) -> np.ndarray:
    """True where the latest stock report at or before the bucket said 0 (no report yet: in stock).

    Works along the last axis, so a (SKUs, buckets) matrix is done in one pass.
    """
    on_hand = np.asarray(on_hand)
    positions = np.where(on_hand >= 0, np.arange(on_hand.shape[-1]), -1)
    latest = np.maximum.accumulate(positions, axis=-1) if on_hand.size else positions
    reported = np.take_along_axis(on_hand, np.maximum(latest, 0), axis=-1) if on_hand.size else on_hand
    return (latest >= 0) & (reported == 0)


def discount_depth(units: np.ndarray, discount_units: np.ndarray) -> np.ndarray:
    """The mean fraction off list price of the units sold in each bucket, carried forward over buckets with no
    sale (0 before the first), in [0, 1].

    Works along the last axis, so a (SKUs, buckets) matrix is done in one pass.
    """
    units = np.asarray(units, dtype=np.float64)
    if units.size == 0:
        return np.zeros(units.shape)
    sold = units > 0
    depth = np.where(sold, np.asarray(discount_units, dtype=np.float64) / np.where(sold, units, 1.0), 0.0)
    last_sale = np.maximum.accumulate(np.where(sold, np.arange(units.shape[-1]), -1), axis=-1)
    carried = np.take_along_axis(depth, np.maximum(last_sale, 0), axis=-1)
    return np.where(last_sale >= 0, carried, 0.0).clip(0.0, 1.0)


def _phase(buckets: np.ndarray, season: int) -> tuple[np.ndarray, np.ndarray]:
    angle = 2.0 * np.pi * (buckets % season) / season
    return np.sin(angle), np.cos(angle)


def _encode(units: np.ndarray, promo: np.ndarray, stockout: np.ndarray, discount: np.ndarray,
            target_bucket: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, L) input windows ending just before `target_bucket` -> model inputs and each window's scale.
    `discount` is each bucket's discount depth, read only when the model has that input."""
    length, horizon = config.input_length, config.horizon
    in_stock = ~stockout
    count = in_stock.sum(axis=1)
    in_stock_mean = (units * in_stock).sum(axis=1) / np.maximum(count, 1)
    scale = 1.0 + np.where(count > 0, in_stock_mean, units.mean(axis=1))
    input_buckets = target_bucket[:, None] - length + np.arange(length)
    sin, cos = _phase(input_buckets, config.season)
    x = np.empty(units.shape + (len(config.history_features),), dtype=np.float32)
    x[..., 0] = np.log1p(units / scale[:, None])
    x[..., 1] = promo
    x[..., 2] = stockout
    x[..., 3] = sin
    x[..., 4] = cos
    x[..., 5] = np.log(scale)[:, None]
    future_buckets = target_bucket[:, None] + np.arange(horizon)
    future_sin, future_cos = _phase(future_buckets, config.season)
    known = [future_sin, future_cos]
    first_flag = len(HISTORY_FEATURES)
    if config.price:
        x[..., first_flag] = discount
        first_flag += 1
    for column, (_, flags) in enumerate(config.calendar, start=first_flag):
        x[..., column] = config.flagged(flags, input_buckets)
        known.append(config.flagged(flags, future_buckets))
    future = np.stack(known, axis=-1).astype(np.float32)
    return x, future, scale


@dataclass
class Samples:
    """Training windows: inputs, targets in scaled units, and where each came from."""

    x: np.ndarray  # (N, L, len(config.history_features)) float32
    future: np.ndarray  # (N, H, len(config.future_features)) float32
    y: np.ndarray  # (N, H) float32: target units / scale
    mask: np.ndarray  # (N, H) float32: 0 where the target bucket was sold out
    scale: np.ndarray  # (N,)
    target_bucket: np.ndarray  # (N,) first target bucket
    series: np.ndarray  # (N,) index of the history it came from

    def __len__(self) -> int:
        return len(self.y)

    def take(self, selector) -> "Samples":
        return Samples(**{f.name: getattr(self, f.name)[selector] for f in fields(self)})


def _padded(history: History, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(units, promo, stockout, discount depth) with `padding` buckets in front flagged sold out (not on sale
    yet)."""
    units = np.concatenate([np.zeros(padding), np.asarray(history.units, dtype=np.float64)])
    promo = np.concatenate([np.zeros(padding, dtype=bool), np.asarray(history.promo_units) > 0])
    stockout = np.concatenate([np.ones(padding, dtype=bool), stockout_mask(history.on_hand)])
    discount = np.concatenate([np.zeros(padding), history.discount_depth()])
    return units, promo, stockout, discount


def make_samples(histories: Sequence[History], config: FeatureConfig, stride: int = 1) -> Samples:
    """Every window of `input_length` buckets (at least `min_history` of them real, padded in front as the
    module docstring says) followed by `horizon` real target buckets, `stride` apart."""
    length, horizon = config.input_length, config.horizon
    span = length + horizon
    padding = length - config.min_history
    parts: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(Samples)}
    for index, history in enumerate(histories):
        if len(history) + padding < span:
            continue
        padded_units, padded_promo, padded_stockout, padded_discount = _padded(history, padding)
        starts = np.arange(0, len(padded_units) - span + 1, stride)
        units = sliding_window_view(padded_units, span)[starts]
        promo = sliding_window_view(padded_promo, span)[starts]
        stockout = sliding_window_view(padded_stockout, span)[starts]
        discount = sliding_window_view(padded_discount, span)[starts]
        target_bucket = history.first_bucket - padding + starts + length
        x, future, scale = _encode(units[:, :length], promo[:, :length], stockout[:, :length],
                                   discount[:, :length], target_bucket, config)
        parts["x"].append(x)
        parts["future"].append(future)
        parts["y"].append((units[:, length:] / scale[:, None]).astype(np.float32))
        parts["mask"].append((~stockout[:, length:]).astype(np.float32))
        parts["scale"].append(scale)
        parts["target_bucket"].append(target_bucket)
        parts["series"].append(np.full(len(starts), index))
    if not parts["y"]:
        return _empty(config)
    return Samples(**{name: np.concatenate(arrays) for name, arrays in parts.items()})


def _empty(config: FeatureConfig) -> Samples:
    length, horizon = config.input_length, config.horizon
    return Samples(np.zeros((0, length, len(config.history_features)), np.float32),
                   np.zeros((0, horizon, len(config.future_features)), np.float32), np.zeros((0, horizon), np.float32),
                   np.zeros((0, horizon), np.float32), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))


def split_by_time(samples: Samples, cutoff_bucket: int, horizon: int) -> tuple[Samples, Samples]:
    """(train, validation): train's targets all end before `cutoff_bucket`, validation's start at it or later.

    Windows whose targets straddle the cutoff are in neither, so no bucket is
    both a training target and a validation target.
    """
    train = samples.target_bucket + horizon - 1 < cutoff_bucket
    valid = samples.target_bucket >= cutoff_bucket
    return samples.take(train), samples.take(valid)


def make_inputs(histories: Sequence[History], config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs to forecast the `horizon` buckets after each history's end; each needs `min_history` buckets
    (shorter than `input_length`: padded in front, as the module docstring says)."""
    length = config.input_length
    short = [i for i, h in enumerate(histories) if len(h) < config.min_history]
    if short:
        raise ValueError(f"{len(short)} histories are shorter than the {config.min_history} buckets the model "
                         "needs")
    n = len(histories)
    units = np.empty((n, length))
    promo_units = np.empty((n, length))
    # the stock state entering the window depends on reports before it: keep all of each history
    longest = max([length] + [len(h) for h in histories])
    on_hand = np.full((n, longest), -1.0)
    # the depth entering the window is the last sale's, however long before it: keep all of each history
    sold = np.zeros((n, longest)) if config.price else None
    sold_off = np.zeros((n, longest)) if config.price else None
    units[:] = 0.0
    promo_units[:] = 0.0
    for i, history in enumerate(histories):
        held = min(length, len(history))
        units[i, length - held:] = history.units[len(history) - held:]
        promo_units[i, length - held:] = history.promo_units[len(history) - held:]
        on_hand[i, longest - len(history):] = history.on_hand
        if config.price and history.discount_units is not None:
            sold[i, longest - len(history):] = history.units
            sold_off[i, longest - len(history):] = history.discount_units
    promo = promo_units > 0
    stockout = stockout_mask(on_hand)[:, -length:]
    for i, history in enumerate(histories):
        if len(history) < length:
            stockout[i, : length - len(history)] = True  # not on sale yet
    target_bucket = np.fromiter((h.end_bucket for h in histories), dtype=np.int64, count=n)
    discount = discount_depth(sold, sold_off)[:, -length:] if config.price else np.zeros((n, length))
    return _encode(units, promo, stockout, discount, target_bucket, config)
