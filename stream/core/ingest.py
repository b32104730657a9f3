"""Ingest: an input record's bytes -> a dead letter, or the updates it causes (salescast.stream.core.state).

The event-time rules live here: a record too late for its partition, or too
far ahead of the clock, is rejected, and each partition's newest event time
feeds the low watermark (salescast.stream.core.watermarks) that closes buckets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from salescast.stream.core.contract import Rejected, Source, dead_letter, decode, validate
from salescast.stream.core.dedup import OrderLedger
from salescast.stream.core.names import SOURCE_PREFIX
from salescast.stream.core.settings import Settings
from salescast.stream.core.state import SkuUpdate, UserUpdate
from salescast.stream.core.watermarks import PENDING


@dataclass
class Ingested:
    dead_letter: dict | None = None
    sku_updates: list[SkuUpdate] = field(default_factory=list)
    user_updates: list[UserUpdate] = field(default_factory=list)
    tick: int | None = None  # the record's partition's new bucket index, when its newest event entered one
    duplicate_of: int | None = None  # an order already read at this offset of its partition (stream.core.dedup)


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
    own partition. A rebalance that hands a partition back to the same worker
    rewinds it to the committed offset within a run: that is judged the same way.

    `marks()` reports each partition's newest event time and whether it is idle,
    for the low watermark that closes buckets (salescast.stream.core.watermarks).
    """

    def __init__(self, settings: Settings, topic_names: dict[str, str] | None = None,
                 now_ms: Callable[[], int] | None = None, monotonic: Callable[[], float] = time.monotonic,
                 orders: OrderLedger | None = None):
        """`orders`: where accepted orders' first sightings are kept (stream.core.dedup); None, or a
        SALESCAST_DEDUP_WINDOW of 0: every order counts."""
        self.settings = settings
        self.orders = orders if settings.time.dedup_window_ms > 0 else None
        self.watermark: int | None = None  # the newest event time read on any partition
        self.partition_watermarks: dict[tuple[str, int], int] = {}  # newest event per partition, this run
        self.topic_names = topic_names or {kind: settings.kafka.topic(kind) for kind in SOURCE_PREFIX}
        self._kinds = {name: kind for kind, name in self.topic_names.items()}
        self._read_up_to: dict[tuple[str, int], int] = {}  # last offset ingested per partition, this run
        self._persisted: dict[tuple[str, int], tuple[int, int]] = {}  # (newest ts, last offset) from `seed`
        self._moved: set[tuple[str, int]] = set()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._future_checked = settings.time.clock == "wall"
        self._monotonic = monotonic
        self._heard: dict[tuple[str, int], float] = {}  # partitions reported in marks: when each last gave a record

    def watermark_bucket(self) -> int | None:
        return None if self.watermark is None else self.watermark // self.settings.time.bucket_ms

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
        timeout_s = self.settings.time.idle_timeout_ms / 1000
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
        if offset <= self._read_up_to.get(partition_key, -1):
            self._rewound(partition_key)
        self._read_up_to[partition_key] = offset
        self._moved.add(partition_key)
        self._heard[partition_key] = self._monotonic()
        try:
            if record is None:
                record = decode(kind, raw, self.settings.kafka.max_record_bytes)
            else:
                if len(raw) > self.settings.kafka.max_record_bytes:
                    raise Rejected("too_large", f"record is {len(raw)} bytes, over the "
                                   f"{self.settings.kafka.max_record_bytes}-byte limit (SALESCAST_MAX_RECORD_BYTES)")
                validate(kind, record)
            record["ts"] = int(record["ts"])  # JSON Schema lets 1.7e12 pass as an integer
            self._check_time(record["ts"], (kind, partition), offset)
            if kind == "orders" and self.orders is not None:
                first = self.orders.first_offset(partition, record["order_id"], record["ts"])
                if first is not None and first != offset:
                    return Ingested(duplicate_of=first)  # a resend: its event time is the original's
                if first is None:
                    self.orders.remember(partition, record["order_id"], record["ts"], offset)
            out = self._split(kind, record, f"{SOURCE_PREFIX[kind]}{partition}",
                              offset if dedup_offset is None else dedup_offset)
        except Rejected as exc:
            return Ingested(dead_letter=dead_letter(source, exc.reason, exc.error, raw))
        except Exception as exc:  # a bug must not stop the stream: the record is kept as a dead letter
            return Ingested(dead_letter=dead_letter(source, "processing_error", f"{type(exc).__name__}: {exc}", raw))
        out.tick = self._advance(record["ts"], (kind, partition))
        return out

    def _rewound(self, partition_key: tuple[str, int]) -> None:
        """The consumer went back in the partition (a rebalance handed it back to this worker, which
        resumes from the committed offset): judge the re-read as after a restart, against what was read
        before the rewind only past the offsets read before it."""
        before = self._persisted.get(partition_key, (PENDING, -1))
        self._persisted[partition_key] = (max(self.partition_watermarks.pop(partition_key, PENDING), before[0]),
                                          max(self._read_up_to[partition_key], before[1]))

    def _check_time(self, ts: int, partition_key: tuple[str, int], offset: int) -> None:
        newest_here = self.partition_watermarks.get(partition_key)
        persisted = self._persisted.get(partition_key)
        if persisted is not None and offset > persisted[1]:
            newest_here = max(persisted[0], newest_here if newest_here is not None else -1)
        if newest_here is not None and ts < newest_here - self.settings.time.allowed_lateness_ms:
            raise Rejected("late", f"ts {ts} is {newest_here - ts} ms behind the newest event of its partition "
                           f"({newest_here}); the allowed lateness is {self.settings.time.allowed_lateness_ms} ms")
        if self._future_checked:
            now = self._now_ms()
            if ts > now + self.settings.time.max_future_ms:
                raise Rejected("future", f"ts {ts} is {ts - now} ms ahead of the clock ({now}); at most "
                               f"{self.settings.time.max_future_ms} ms is accepted (SALESCAST_MAX_FUTURE_MS). Check the "
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
        bucket_ms = self.settings.time.bucket_ms
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
                discount = item.get("discount", 0)
                promo_units = qty if on_promo or discount > 0 else 0
                out.sku_updates.append(SkuUpdate("sale", item["sku"], ts, source, offset, line, units=qty,
                                                 revenue=qty * item["unit_price"], promo_units=promo_units,
                                                 user=user, promo_id=record.get("promo_id"),
                                                 discount_units=qty * discount))
                out.user_updates.append(UserUpdate(user, item["sku"], "purchase", ts, source, offset, line))
        elif kind == "clicks":
            out.sku_updates.append(SkuUpdate("click", record["sku"], ts, source, offset))
            out.user_updates.append(UserUpdate(record["user_id"], record["sku"], record["action"], ts, source, offset))
        else:
            out.sku_updates.append(SkuUpdate("inventory", record["sku"], ts, source, offset,
                                             on_hand=int(record["on_hand"]), list_price=record.get("list_price"),
                                             category=record.get("category"), unit_cost=record.get("unit_cost")))
        return out
