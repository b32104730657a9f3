"""When a bucket may close: the low watermark over the input partitions (contract v1.1).

A bucket closes once every input partition that is not idle has read past its
end: the minimum over partitions of each one's newest event time, as Flink's
and Kafka Streams' watermarks do. Under v1 a bucket closed when the newest
event of *any* partition entered the next bucket, so a backfill read unevenly
(one partition days ahead of another) forecast from half-filled buckets.

The ingest side of each worker reports *marks*, one per input partition it
reads (`Ingestor.marks`): `[newest ts, idle]`, ts -1 while nothing has been
read. A partition is idle when no record came for SALESCAST_IDLE_TIMEOUT_MS and
nothing is left to read in it, so one silent partition cannot hold the service
back forever; one assigned but not read yet (ts -1, not idle) holds it back.
The marks travel to every partition of the SKU topic, where `LowWatermark`
merges them, from any number of workers, into the bucket to close up to.
Each message also names the input topics' partition counts, so a partition
whose worker has not reported yet (two workers starting together) holds the
watermark back too, for at most the idle timeout.
"""

from __future__ import annotations

import orjson

PENDING = -1  # a mark's ts while nothing of the partition has been read
MARKS = "marks"  # the tag of a marks record on the SKU topic: ["marks", {partition: mark}, sent_at, counts]

Mark = tuple[int, bool]  # (newest event time read, idle)


class LowWatermark:
    """Marks of every input partition heard of, merged; the bucket before which all may close.

    Marks reach the SKU side through several partitions and from several
    workers, so they may arrive out of order: a partition's time only moves
    forward, and its idle flag is the one of the newest report (`sent_at`).
    The bucket returned never moves back either: a partition that wakes from
    idle behind the others does not reopen what closed.
    """

    def __init__(self, bucket_ms: int, idle_timeout_ms: int = 60_000) -> None:
        self.bucket_ms = bucket_ms
        self.idle_timeout_s = idle_timeout_ms / 1000
        self.marks: dict[str, tuple[int, bool, float]] = {}
        self.unheard: dict[str, float] = {}  # partitions known to exist, no mark yet: since when
        self.latest = 0.0  # the newest `sent_at` received: the clock that times the unheard out
        self._closed_before: int | None = None

    def update(self, marks: dict[str, list], sent_at: float, partitions: dict[str, int] | None = None) -> None:
        """Merge one message's marks; `partitions`: the input topics' partition counts, as its sender knows them."""
        self.latest = max(self.latest, sent_at)
        for topic, count in (partitions or {}).items():
            for partition in range(count):
                name = f"{topic}/{partition}"
                if name not in self.marks and name not in self.unheard:
                    self.unheard[name] = sent_at
        for name, (ts, idle) in marks.items():
            self.unheard.pop(name, None)
            known = self.marks.get(name)
            if known is None:
                self.marks[name] = (int(ts), bool(idle), sent_at)
            else:
                newest = max(int(ts), known[0])
                self.marks[name] = (newest, bool(idle), sent_at) if sent_at >= known[2] else \
                    (newest, known[1], known[2])

    def value(self) -> int | None:
        """The low watermark (ms): each partition that is not idle has read an event at least this new.

        None while a partition that is not idle has read nothing, or one no
        worker has reported yet, for the idle timeout. When every partition is
        idle, the newest event read: the input is all caught up.
        """
        if any(self.latest - since < self.idle_timeout_s for since in self.unheard.values()):
            return None
        active = []
        for ts, idle, _ in self.marks.values():
            if not idle:
                if ts == PENDING:
                    return None
                active.append(ts)
        if active:
            return min(active)
        known = [ts for ts, _, _ in self.marks.values() if ts != PENDING]
        return max(known) if known else None

    def newest(self) -> int | None:
        """The newest event time any partition has read (the clock of SALESCAST_CLOCK=events)."""
        known = [ts for ts, _, _ in self.marks.values() if ts != PENDING]
        return max(known) if known else None

    def bucket(self) -> int | None:
        """Buckets before this one may close (every bucket whose end the low watermark has reached)."""
        low = self.value()
        if low is not None:
            bucket = low // self.bucket_ms
            if self._closed_before is None or bucket > self._closed_before:
                self._closed_before = bucket
        return self._closed_before


def encode_marks(marks: dict[str, list], sent_at: float, partition_counts: dict[str, int]) -> bytes:
    """A marks record for the SKU topic: no key, a tagged list that no SKU update can be mistaken for."""
    return orjson.dumps([MARKS, marks, sent_at, partition_counts])


def is_marks(key: bytes | None, value: bytes) -> bool:
    return key is None and value.startswith(b'["')


def decode_marks(value: bytes) -> tuple[dict, float, dict | None] | None:
    """(marks, sent_at, partition counts) of a marks record; None for another tag (a v1 worker's tick
    during a rolling upgrade: its marks follow). Raises on a corrupt record."""
    tag, marks, sent_at, *counts = orjson.loads(value)
    if tag != MARKS:
        return None
    return marks, sent_at, counts[0] if counts else None
