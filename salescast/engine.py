"""The pipeline's logic, one implementation for the Faust agents and for `salescast replay`.

Three steps, each a plain function of its inputs:

1. `Ingestor.ingest`: an input record's bytes -> a dead letter, or the updates it
   causes keyed by SKU and by user, plus a watermark tick when event time enters
   a new bucket. The agents route these through Kafka (repartitioning by SKU and
   by user); replay applies them in memory.
2. `apply_sku_update` / `close_bucket`: a SKU's window absorbs an update; when
   the watermark passes the end of the SKU's bucket a forecast is emitted.
3. `apply_user_update`: a user's interaction vector absorbs an update.

Nothing here knows about Kafka or Faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from models import useritem, windows
from models.promo import attribution
from models.positions import already_applied
from models.baseline import Forecast, SeasonalNaive
from models.forecast.features import History
from salescast.contract import Rejected, Source, dead_letter, decode, validate
from salescast.settings import Settings

SOURCE_PREFIX = {"orders": "o", "clicks": "c", "inventory": "i"}
# worker tables; the changelog of each is <app id>-<table>-changelog
SKU_WINDOWS_TABLE = "sku-windows"  # per-SKU windows (models.windows)
USER_ITEMS_TABLE = "user-items"  # per-user decayed interactions (models.useritem)
SKU_CANDIDATES_TABLE = "sku-candidates"  # per-SKU candidate users (models.cf.candidates)
PROMO_GUARDRAILS_TABLE = "promo-guardrails"  # one key: the promotion guardrails' state (models.promo.guardrails)


@dataclass(slots=True)
class SkuUpdate:
    """One thing that happened to a SKU, routed to the worker that owns the SKU."""

    kind: str  # "sale" | "click" | "inventory" | "promo"
    sku: str
    ts: int
    source: str  # e.g. "o3": orders partition 3
    offset: int
    line: int = 0
    units: int = 0
    revenue: float = 0.0
    on_hand: int | None = None
    list_price: float | None = None
    category: str | None = None
    promo_units: int = 0  # of `units`, sold on a promotion or discount
    unit_cost: float | None = None
    user: str | None = None  # the buyer, for promotion attribution
    promo_id: str | None = None  # the order's promo_id
    trigger: dict | None = None  # kind "promo": an admitted trigger whose outcome this SKU measures

    def to_wire(self) -> list:
        return [self.kind, self.sku, self.ts, self.source, self.offset, self.line, self.units,
                self.revenue, self.on_hand, self.list_price, self.category, self.promo_units, self.unit_cost,
                self.user, self.promo_id, self.trigger]

    @classmethod
    def from_wire(cls, wire: list) -> "SkuUpdate":
        return cls(*wire)


@dataclass(slots=True)
class UserUpdate:
    """One interaction of a user with a SKU, routed to the worker that owns the user."""

    user: str
    sku: str
    action: str  # view | cart | wishlist | purchase
    ts: int
    source: str
    offset: int
    line: int = 0

    def to_wire(self) -> list:
        return [self.user, self.sku, self.action, self.ts, self.source, self.offset, self.line]

    @classmethod
    def from_wire(cls, wire: list) -> "UserUpdate":
        return cls(*wire)


@dataclass
class Ingested:
    dead_letter: dict | None = None
    sku_updates: list[SkuUpdate] = field(default_factory=list)
    user_updates: list[UserUpdate] = field(default_factory=list)
    tick: int | None = None  # the watermark's new bucket index, when it advanced


class Ingestor:
    """Validates input records against the contract and event time, and splits them into updates.

    `watermark` is the newest event time seen (ms) on any input; a record more
    than SALESCAST_MAX_FUTURE_MS ahead of it is `future`. Lateness is judged
    per input partition, against the newest event seen on the record's own
    partition: partitions are read in offset order but not in step with each
    other (a worker catching up may read one topic days ahead of another), so
    only a record out of order within its own partition is truly late.
    Rejected records move no watermark.

    Both must outlive a restart: the partitions resume at different event times
    (one may be days behind another), so a worker that judged `future` against
    the first record it reads after a start would reject good records. The
    worker persists `progress()` (each partition's newest event time and the
    last offset read) and hands it back to `seed` when it starts. Records up
    to that offset are re-reads of records judged before the restart (the
    offsets committed lag what was read): lateness against the persisted time
    applies only past it, or a re-read record would be `late` against records
    that came after it in its own partition.
    """

    def __init__(self, settings: Settings, topic_names: dict[str, str] | None = None):
        self.settings = settings
        self.watermark: int | None = None
        self.partition_watermarks: dict[tuple[str, int], int] = {}  # newest event per partition, this run
        self.topic_names = topic_names or {kind: settings.topic(kind) for kind in SOURCE_PREFIX}
        self._kinds = {name: kind for kind, name in self.topic_names.items()}
        self._read_up_to: dict[tuple[str, int], int] = {}  # last offset ingested per partition, this run
        self._persisted: dict[tuple[str, int], tuple[int, int]] = {}  # (newest ts, last offset) from `seed`
        self._moved: set[tuple[str, int]] = set()

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
        if self.watermark is not None and ts > self.watermark + self.settings.max_future_ms:
            raise Rejected("future", f"ts {ts} is {ts - self.watermark} ms ahead of the newest event "
                           f"({self.watermark}); at most {self.settings.max_future_ms} ms is accepted")

    def _advance(self, ts: int, partition_key: tuple[str, int]) -> int | None:
        if ts > self.partition_watermarks.get(partition_key, -1):
            self.partition_watermarks[partition_key] = ts
        before = self.watermark_bucket()
        if self.watermark is None or ts > self.watermark:
            self.watermark = ts
        after = self.watermark_bucket()
        return after if before is None or after > before else None

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


def apply_sku_update(window: dict | None, update: SkuUpdate, settings: Settings) -> tuple[dict, bool]:
    """Returns the window and whether the update changed it (False: a replayed duplicate)."""
    bucket = update.ts // settings.bucket_ms
    if window is None:
        window = windows.new_window(bucket)
    if already_applied(window, update.source, (update.offset, update.line)):
        return window, False
    if update.kind == "sale":
        windows.add_sale(window, bucket, update.units, update.revenue, settings.history_buckets, update.promo_units)
        if update.user is not None:
            for state in window.get("promos", ()):
                attribution.attribute(state, update.user, update.units, update.ts, update.promo_id)
    elif update.kind == "click":
        windows.add_clicks(window, bucket, 1, settings.history_buckets)
    elif update.kind == "promo":
        t = update.trigger
        window.setdefault("promos", []).append(attribution.open_attribution(
            t["trigger_id"], t["ts"], t["valid_until"], [target["user_id"] for target in t["targets"]],
            t["holdout"], t["reason"]))
    else:
        windows.set_inventory(window, update.ts, update.on_hand, update.list_price, update.category, bucket,
                              settings.history_buckets, update.unit_cost)
    return window, True


def apply_user_update(vector: dict | None, update: UserUpdate, settings: Settings) -> tuple[dict, bool]:
    if vector is None:
        vector = useritem.new_vector()
    if already_applied(vector, update.source, (update.offset, update.line)):
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
    """A SKU whose bucket closed: the window to store and what to emit."""

    sku: str
    window: dict
    forecast: dict
    proposal: dict | None = None  # a promotion to put to the guardrails (salescast.promoting)
    outcomes: list[tuple[str, dict]] = field(default_factory=list)  # (reason, final outcome) of ended triggers


class AtClose(Protocol):
    """What else happens to a SKU when its bucket closes (salescast.promoting.Promoter)."""

    def at_close(self, sku: str, window: dict, forecast: dict, now: int
                 ) -> tuple[dict | None, list[tuple[str, dict]]]:
        """(a promotion proposal or None, (reason, final outcome record) pairs); may change the window."""


def close_buckets(items: Iterable[tuple[str, dict]], watermark_bucket: int, settings: Settings,
                  forecaster: Forecaster, promoter: AtClose | None = None) -> list[Closed]:
    """For SKUs whose open bucket the watermark has passed: close it and forecast from the next.

    The caller stores each returned window (its `closed` moved) and emits the
    forecasts, proposals and outcomes. The window keeps the P10 just forecast
    for the next bucket (`fp`): when that bucket closes below it, its demand dropped.
    """
    closing = [(sku, window) for sku, window in items if windows.buckets_to_close(window, watermark_bucket)]
    if not closing:
        return []
    last_closed = watermark_bucket - 1
    histories = [windows.history(window, last_closed) for _, window in closing]
    results = forecaster.forecast_many(histories, settings.horizon)
    out = []
    now = watermark_bucket * settings.bucket_ms
    for (sku, window), (forecast, name, version) in zip(closing, results):
        record = forecast_record(sku, last_closed, forecast, name, version, settings)
        closed = Closed(sku, window, record)
        if promoter is not None:
            closed.proposal, closed.outcomes = promoter.at_close(sku, window, record, now)
        window["closed"] = last_closed
        window["fp"] = [last_closed + 1, record["horizon"][0]["p10"]]
        out.append(closed)
    return out


def forecast_record(sku: str, last_closed: int, forecast: Forecast, name: str, version: str,
                    settings: Settings) -> dict:
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
            "buckets": windows.buckets_view(window, settings.bucket_ms, count), "on_hand": window["oh"]}
