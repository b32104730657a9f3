"""The pipeline's logic, one implementation for the Faust agents and for `salescast replay`.

Three steps, each a plain function of its inputs:

1. `Ingestor.ingest`: an input record's bytes -> a dead letter, or the updates it
   causes keyed by SKU and by user, plus a tick when its partition's event time
   enters a new bucket. The agents route these through Kafka (repartitioning by SKU and
   by user); replay applies them in memory.
2. `apply_sku_update` / `close_buckets`: a SKU's window absorbs an update; when
   the low watermark (salescast.stream.core.watermarks) passes the end of a bucket, every
   live SKU gets a forecast.
3. `apply_user_update`: a user's interaction vector absorbs an update.

Nothing here knows about Kafka or Faust.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from salescast.models import useritem, windows
from salescast.models.promo import attribution
from salescast.models.positions import already_applied
from salescast.models.baseline import Forecast, SeasonalNaive
from salescast.models.forecast.features import History
from salescast.stream.core.contract import Rejected, Source, dead_letter, decode, validate
from salescast.stream.core.settings import Settings
from salescast.stream.core.watermarks import PENDING

SOURCE_PREFIX = {"orders": "o", "clicks": "c", "inventory": "i"}
# worker tables; the changelog of each is <app id>-<table>-changelog
SKU_WINDOWS_TABLE = "sku-windows"  # per-SKU windows (salescast.models.windows)
USER_ITEMS_TABLE = "user-items"  # per-user decayed interactions (salescast.models.useritem)
SKU_CANDIDATES_TABLE = "sku-candidates"  # per-SKU candidate users (salescast.models.cf.candidates)
PROMO_GUARDRAILS_TABLE = "promo-guardrails"  # one key: the promotion guardrails' state (salescast.models.promo.guardrails)


# The internal topics' records (sku-events, user-events) are tagged dicts, read by name, so workers of two
# versions can run side by side during a rolling deploy:
# - "v" is the format's major version; a reader accepts its own only (WireVersionError), so a change that
#   old readers would misread (a field renamed, its meaning changed) takes a new major version;
# - a field at its default is left out, and a reader ignores keys it does not know: adding a field with a
#   default needs no new version;
# - a key, once used, keeps its meaning for good; none is a window's or a vector's key, which would
#   read as state access (tests/models/test_state_access.py).
WIRE_VERSION = 1


class WireVersionError(ValueError):
    """An internal record in a format this worker cannot read (raised, it becomes a dead letter)."""


def _wrong_version(wire: dict, topic: str) -> WireVersionError:
    return WireVersionError(f"{topic} record of wire format version {wire.get('v')!r}: this worker reads "
                            f"version {WIRE_VERSION} only (a worker of another major version wrote it)")


@dataclass(slots=True)
class SkuUpdate:
    """One thing that happened to a SKU, routed to the worker that owns the SKU. Its wire key follows
    each field."""

    kind: str  # k: "sale" | "click" | "inventory" | "promo"
    sku: str  # sku
    ts: int  # ts
    source: str  # src: e.g. "o3", orders partition 3
    offset: int  # off
    line: int = 0  # ln
    units: int = 0  # qty
    revenue: float = 0.0  # rev
    on_hand: int | None = None  # stock
    list_price: float | None = None  # price
    category: str | None = None  # category
    promo_units: int = 0  # promo_qty: of `units`, sold on a promotion or discount
    unit_cost: float | None = None  # cost
    user: str | None = None  # usr: the buyer, for promotion attribution
    promo_id: str | None = None  # promo: the order's promo_id
    trigger: dict | None = None  # trigger: kind "promo", an admitted trigger whose outcome this SKU measures

    def to_wire(self) -> dict:
        """The sku-events record, for orjson. Field by field: every update passes here, and a loop over the
        fields measured several times slower (bench/wire.py times the round trip)."""
        wire = {"v": WIRE_VERSION, "k": self.kind, "sku": self.sku, "ts": self.ts, "src": self.source,
                "off": self.offset}
        if self.line:
            wire["ln"] = self.line
        if self.units:
            wire["qty"] = self.units
        if self.revenue:
            wire["rev"] = self.revenue
        if self.on_hand is not None:
            wire["stock"] = self.on_hand
        if self.list_price is not None:
            wire["price"] = self.list_price
        if self.category is not None:
            wire["category"] = self.category
        if self.promo_units:
            wire["promo_qty"] = self.promo_units
        if self.unit_cost is not None:
            wire["cost"] = self.unit_cost
        if self.user is not None:
            wire["usr"] = self.user
        if self.promo_id is not None:
            wire["promo"] = self.promo_id
        if self.trigger is not None:
            wire["trigger"] = self.trigger
        return wire

    @classmethod
    def from_wire(cls, wire: dict | list) -> "SkuUpdate":
        """WireVersionError for a major version other than WIRE_VERSION; KeyError when a required field is
        missing. A list is a record of the positional format before version 1, still in flight while the
        workers that wrote it are replaced."""
        if type(wire) is list:
            return cls(*wire)
        if wire.get("v") != WIRE_VERSION:
            raise _wrong_version(wire, "sku-events")
        if len(wire) == 6:  # the version and the required fields only (a click): the defaults hold
            return cls(wire["k"], wire["sku"], wire["ts"], wire["src"], wire["off"])
        get = wire.get
        return cls(wire["k"], wire["sku"], wire["ts"], wire["src"], wire["off"], get("ln", 0), get("qty", 0),
                   get("rev", 0.0), get("stock"), get("price"), get("category"), get("promo_qty", 0), get("cost"),
                   get("usr"), get("promo"), get("trigger"))


@dataclass(slots=True)
class UserUpdate:
    """One interaction of a user with a SKU, routed to the worker that owns the user. Its wire key follows
    each field."""

    user: str  # usr
    sku: str  # sku
    action: str  # act: view | cart | wishlist | purchase
    ts: int  # ts
    source: str  # src
    offset: int  # off
    line: int = 0  # ln

    def to_wire(self) -> dict:
        """The user-events record (orjson-ready)."""
        wire = {"v": WIRE_VERSION, "usr": self.user, "sku": self.sku, "act": self.action, "ts": self.ts,
                "src": self.source, "off": self.offset}
        if self.line:
            wire["ln"] = self.line
        return wire

    @classmethod
    def from_wire(cls, wire: dict | list) -> "UserUpdate":
        """As SkuUpdate.from_wire."""
        if type(wire) is list:
            return cls(*wire)
        if wire.get("v") != WIRE_VERSION:
            raise _wrong_version(wire, "user-events")
        return cls(wire["usr"], wire["sku"], wire["act"], wire["ts"], wire["src"], wire["off"], wire.get("ln", 0))


@dataclass
class Ingested:
    dead_letter: dict | None = None
    sku_updates: list[SkuUpdate] = field(default_factory=list)
    user_updates: list[UserUpdate] = field(default_factory=list)
    tick: int | None = None  # the record's partition's new bucket index, when its newest event entered one


class Ingestor:
    """Validates input records against the contract and event time, and splits them into updates.

    `future` is judged against the clock (contract v1.1): a record whose `ts`
    is more than SALESCAST_MAX_FUTURE_MS ahead of the time it is read (clock
    skew, a year typed wrong). Under v1 it was judged against the newest event
    seen, and since a rejected record moves no watermark, the first order after
    a shop's closed days (more than a day after the last one) and every one
    after it were dead-lettered (a real restaurant's log lost five weeks that
    way). A gap in the data, however long, now never makes a record `future`.
    With SALESCAST_CLOCK=events (a simulation whose event time runs ahead of
    the clock) nothing is `future`.

    Lateness is judged per input partition, against the newest event seen on
    the record's own partition: partitions are read in offset order but not in
    step with each other (a worker catching up may read one topic days ahead of
    another), so only a record out of order within its own partition is truly
    late. Rejected records move no watermark.

    The partitions' newest event times must outlive a restart, or a re-read
    record would be judged against nothing. The worker persists `progress()`
    (each partition's newest event time and the last offset read) and hands it
    back to `seed` when it starts. Records up to that offset are re-reads of
    records judged before the restart (the offsets committed lag what was
    read): lateness against the persisted time applies only past it, or a
    re-read record would be `late` against records that came after it in its
    own partition.

    `marks()` reports each partition's newest event time and whether it is idle,
    for the low watermark that closes buckets (salescast.stream.core.watermarks).
    """

    def __init__(self, settings: Settings, topic_names: dict[str, str] | None = None,
                 now_ms: Callable[[], int] | None = None, monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.watermark: int | None = None  # the newest event time read on any partition
        self.partition_watermarks: dict[tuple[str, int], int] = {}  # newest event per partition, this run
        self.topic_names = topic_names or {kind: settings.topic(kind) for kind in SOURCE_PREFIX}
        self._kinds = {name: kind for kind, name in self.topic_names.items()}
        self._read_up_to: dict[tuple[str, int], int] = {}  # last offset ingested per partition, this run
        self._persisted: dict[tuple[str, int], tuple[int, int]] = {}  # (newest ts, last offset) from `seed`
        self._moved: set[tuple[str, int]] = set()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._future_checked = settings.clock == "wall"
        self._monotonic = monotonic
        self._heard: dict[tuple[str, int], float] = {}  # partitions reported in marks: when each last gave a record

    def watermark_bucket(self) -> int | None:
        return None if self.watermark is None else self.watermark // self.settings.bucket_ms

    def progress(self) -> dict[str, list[int]]:
        """[newest event time, last offset read] of each input partition read since the last call,
        keyed "topic/partition"."""
        moved = {}
        for key in self._moved:
            before = self._persisted.get(key, (-1, -1))
            newest = max(self.partition_watermarks.get(key, -1), before[0])
            if newest >= 0:
                moved[f"{self.topic_names[key[0]]}/{key[1]}"] = [newest, max(self._read_up_to[key], before[1])]
        self._moved.clear()
        return moved

    def seed(self, persisted: dict[str, list[int]]) -> int | None:
        """Adopt what `progress()` persisted (this run's or another worker's); only ever moves forward.

        Returns the watermark's bucket when it advanced, like `ingest`'s tick.
        """
        before = self.watermark_bucket()
        for name, (ts, offset) in persisted.items():
            topic, _, partition = name.rpartition("/")
            kind = self._kinds.get(topic)
            if kind is None or not partition.isdigit():
                continue  # a topic since renamed by SALESCAST_TOPIC_*: nothing of this run's
            key = (kind, int(partition))
            known = self._persisted.get(key, (-1, -1))
            self._persisted[key] = (max(ts, known[0]), max(offset, known[1]))
            if self.watermark is None or ts > self.watermark:
                self.watermark = ts
        after = self.watermark_bucket()
        return after if after is not None and (before is None or after > before) else None

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """The input partitions (kind, partition) this worker now reads: the ones `marks` reports.

        A partition newly assigned holds bucket close back until it gives a
        record or stays silent, with nothing left to read, for the idle timeout.
        """
        now = self._monotonic()
        self._heard = {key: self._heard.get(key, now) for key in partitions}

    def newest(self, partition_key: tuple[str, int]) -> int:
        """The partition's newest event time read, this run or before the restart; PENDING if none."""
        persisted = self._persisted.get(partition_key, (PENDING, -1))[0]
        return max(self.partition_watermarks.get(partition_key, PENDING), persisted)

    def persisted_newest(self) -> dict[str, int]:
        """`{"topic/partition": newest event time}` as `seed` handed it over (read before this start)."""
        return {f"{self.topic_names[kind]}/{partition}": ts for (kind, partition), (ts, _) in self._persisted.items()}

    def last_read(self, partition_key: tuple[str, int]) -> int:
        """The last offset read of the partition, this run or before the restart; -1 if none."""
        return max(self._read_up_to.get(partition_key, -1), self._persisted.get(partition_key, (PENDING, -1))[1])

    def marks(self, backlog: Callable[[str, int], bool] | None = None) -> dict[str, list]:
        """`{"topic/partition": [newest ts or PENDING, idle]}` for every partition assigned or read.

        `backlog(kind, partition)` tells whether records are waiting to be read
        there: a partition with a backlog is never idle, however long since its last record.
        """
        now = self._monotonic()
        timeout_s = self.settings.idle_timeout_ms / 1000
        marks = {}
        for key, heard in self._heard.items():
            idle = now - heard >= timeout_s and not (backlog is not None and backlog(*key))
            marks[f"{self.topic_names[key[0]]}/{key[1]}"] = [self.newest(key), idle]
        return marks

    def ingest(self, kind: str, raw: bytes | str, partition: int, offset: int,
               record: Any = None, dedup_offset: int | None = None) -> Ingested:
        """`record` may be passed when the caller already parsed `raw` (replay does).

        `dedup_offset` is the position used for exactly-once counting when it is
        not the Kafka offset (replay numbers records in ts order).
        """
        source = Source(self.topic_names[kind], partition, offset)
        partition_key = (kind, partition)
        if offset > self._read_up_to.get(partition_key, -1):
            self._read_up_to[partition_key] = offset
        self._moved.add(partition_key)
        self._heard[partition_key] = self._monotonic()
        try:
            if record is None:
                record = decode(kind, raw, self.settings.max_record_bytes)
            else:
                if len(raw) > self.settings.max_record_bytes:
                    raise Rejected("too_large", f"record is {len(raw)} bytes, over the "
                                   f"{self.settings.max_record_bytes}-byte limit (SALESCAST_MAX_RECORD_BYTES)")
                validate(kind, record)
            record["ts"] = int(record["ts"])  # JSON Schema lets 1.7e12 pass as an integer
            self._check_time(record["ts"], (kind, partition), offset)
            out = self._split(kind, record, f"{SOURCE_PREFIX[kind]}{partition}",
                              offset if dedup_offset is None else dedup_offset)
        except Rejected as exc:
            return Ingested(dead_letter=dead_letter(source, exc.reason, exc.error, raw))
        except Exception as exc:  # a bug must not stop the stream: the record is kept as a dead letter
            return Ingested(dead_letter=dead_letter(source, "processing_error", f"{type(exc).__name__}: {exc}", raw))
        out.tick = self._advance(record["ts"], (kind, partition))
        return out

    def _check_time(self, ts: int, partition_key: tuple[str, int], offset: int) -> None:
        newest_here = self.partition_watermarks.get(partition_key)
        persisted = self._persisted.get(partition_key)
        if persisted is not None and offset > persisted[1]:
            newest_here = max(persisted[0], newest_here if newest_here is not None else -1)
        if newest_here is not None and ts < newest_here - self.settings.allowed_lateness_ms:
            raise Rejected("late", f"ts {ts} is {newest_here - ts} ms behind the newest event of its partition "
                           f"({newest_here}); the allowed lateness is {self.settings.allowed_lateness_ms} ms")
        if self._future_checked:
            now = self._now_ms()
            if ts > now + self.settings.max_future_ms:
                raise Rejected("future", f"ts {ts} is {ts - now} ms ahead of the clock ({now}); at most "
                               f"{self.settings.max_future_ms} ms is accepted (SALESCAST_MAX_FUTURE_MS). Check the "
                               "producer's clock; a simulation ahead of real time sets SALESCAST_CLOCK=events")

    def _advance(self, ts: int, partition_key: tuple[str, int]) -> int | None:
        """The partition's new bucket when its newest event entered one (its mark moved), else None."""
        if self.watermark is None or ts > self.watermark:
            self.watermark = ts
        newest = self.newest(partition_key)
        if ts > self.partition_watermarks.get(partition_key, PENDING):
            self.partition_watermarks[partition_key] = ts
        if ts <= newest:
            return None
        bucket_ms = self.settings.bucket_ms
        bucket = ts // bucket_ms
        return bucket if newest == PENDING or bucket > newest // bucket_ms else None

    @staticmethod
    def _split(kind: str, record: dict, source: str, offset: int) -> Ingested:
        out = Ingested()
        ts = int(record["ts"])
        if kind == "orders":
            user = record["user_id"]
            on_promo = bool(record.get("promo_id"))
            for line, item in enumerate(record["items"]):
                qty = int(item["qty"])  # JSON Schema lets 2.0 pass as an integer
                promo_units = qty if on_promo or item.get("discount", 0) > 0 else 0
                out.sku_updates.append(SkuUpdate("sale", item["sku"], ts, source, offset, line, units=qty,
                                                 revenue=qty * item["unit_price"], promo_units=promo_units,
                                                 user=user, promo_id=record.get("promo_id")))
                out.user_updates.append(UserUpdate(user, item["sku"], "purchase", ts, source, offset, line))
        elif kind == "clicks":
            out.sku_updates.append(SkuUpdate("click", record["sku"], ts, source, offset))
            out.user_updates.append(UserUpdate(record["user_id"], record["sku"], record["action"], ts, source, offset))
        else:
            out.sku_updates.append(SkuUpdate("inventory", record["sku"], ts, source, offset,
                                             on_hand=int(record["on_hand"]), list_price=record.get("list_price"),
                                             category=record.get("category"), unit_cost=record.get("unit_cost")))
        return out


def apply_sku_update(window: dict | None, update: SkuUpdate, settings: Settings,
                     close_before: int | None = None) -> tuple[dict, bool]:
    """Returns the window and whether the update changed it (False: a replayed duplicate).

    `close_before`: the bucket the caller has closed buckets up to (its low
    watermark's), so a quiet SKU's window catches up (windows.catch_up).
    """
    bucket = update.ts // settings.bucket_ms
    if window is None:
        window = windows.new_window(bucket)
    if already_applied(windows.applied_positions(window), update.source, (update.offset, update.line)):
        return window, False
    if close_before is not None:
        windows.catch_up(window, close_before, settings.active_buckets)
    if update.kind == "sale":
        windows.add_sale(window, bucket, update.units, update.revenue, settings.history_buckets, update.promo_units)
        if update.user is not None:
            for state in windows.promotions(window):
                attribution.attribute(state, update.user, update.units, update.ts, update.promo_id)
    elif update.kind == "click":
        windows.add_clicks(window, bucket, 1, settings.history_buckets)
    elif update.kind == "promo":
        t = update.trigger
        windows.add_promotion(window, attribution.open_attribution(
            t["trigger_id"], t["ts"], t["valid_until"], [target["user_id"] for target in t["targets"]],
            t["holdout"], t["reason"]))
    else:
        windows.set_inventory(window, update.ts, update.on_hand, update.list_price, update.category, bucket,
                              settings.history_buckets, update.unit_cost)
    return window, True


def apply_user_update(vector: dict | None, update: UserUpdate, settings: Settings) -> tuple[dict, bool]:
    if vector is None:
        vector = useritem.new_vector()
    if already_applied(useritem.applied_positions(vector), update.source, (update.offset, update.line)):
        return vector, False
    weight = settings.interaction_weights.for_action(update.action)
    useritem.learn_one(vector, update.sku, weight, update.ts, settings.interaction_half_life_ms, settings.user_item_cap)
    return vector, True


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
        self.name = SeasonalNaive.name
        self.version = SeasonalNaive(season).version

    def forecast_many(self, histories: list[History], horizon: int) -> list[tuple[Forecast, str, str]]:
        results = []
        for history in histories:
            model = SeasonalNaive(self.season).fit(history.units)
            results.append((model.predict(horizon), model.name, model.version))
        return results


@dataclass
class Closed:
    """A SKU whose open buckets closed: the window to store and what to emit."""

    sku: str
    window: dict
    forecasts: list[dict]  # one per closed bucket at which the SKU was live, oldest first
    proposal: dict | None = None  # a promotion to put to the guardrails (salescast.stream.serving.promoter)
    outcomes: list[tuple[str, dict]] = field(default_factory=list)  # (reason, final outcome) of ended triggers


class AtClose(Protocol):
    """What else happens to a SKU when its bucket closes (salescast.stream.serving.promoter.Promoter)."""

    def at_close(self, sku: str, window: dict, forecast: dict | None, now: int, propose: bool = True
                 ) -> tuple[dict | None, list[tuple[str, dict]]]:
        """(a promotion proposal or None, (reason, final outcome record) pairs); may change the window."""


def promotions_allowed(closed_until_ms: int, now_ms: int | None, settings: Settings) -> bool:
    """False for a close of buckets that ended longer than SALESCAST_PROMO_MAX_AGE before `now_ms`
    (history being loaded is no occasion for a promotion); None: no clock, every close is recent."""
    return now_ms is None or closed_until_ms >= now_ms - settings.promo_max_age_ms


def close_buckets(items: Iterable[tuple[str, dict]], watermark_bucket: int, settings: Settings,
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
    closing: list[tuple[str, dict, list[int]]] = []
    for sku, window in items:
        first = windows.first_open(window)
        if first > last:
            continue
        live = windows.live_buckets(window, first, last, settings.active_buckets)
        if live or windows.promotions(window):
            closing.append((sku, window, live))
    if not closing:
        return []
    histories = [windows.history(window, bucket, settings.history_buckets)
                 for _, window, live in closing for bucket in live]
    results = iter(forecaster.forecast_many(histories, settings.horizon))
    now = watermark_bucket * settings.bucket_ms
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
    bucket_ms = settings.bucket_ms
    first = last_closed + 1
    horizon = [
        {"start": (first + i) * bucket_ms, "p10": round(float(lo), 4), "p50": round(float(mid), 4),
         "p90": round(float(hi), 4)}
        for i, (lo, mid, hi) in enumerate(zip(forecast.p10, forecast.p50, forecast.p90))
    ]
    return {"sku": sku, "ts": last_closed * bucket_ms, "bucket": settings.bucket, "horizon": horizon,
            "model": {"name": name, "version": version}, "cold_start": bool(forecast.cold_start)}


def sales_view(sku: str, window: dict, settings: Settings, count: int) -> dict:
    """The contract's `sales` record for GET /skus/{sku}/sales."""
    return {"sku": sku, "bucket": settings.bucket,
            "buckets": windows.buckets_view(window, settings.bucket_ms, count), "on_hand": windows.on_hand(window)}
