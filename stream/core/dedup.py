"""Orders counted once however often a shop's producer sends them (at-least-once producers resend).

An order's first sighting on its input partition is remembered under its
order_id and the day of its `ts` (a resent order carries the same `ts`, so one
lookup finds it), with the offset it was read at:

* the same order_id read at another offset within SALESCAST_DEDUP_WINDOW of
  event time is a duplicate: it is counted in a metric, and nothing else;
* read again at the same offset (a re-read after a crash or rebalance) it is
  the original, and goes on to be counted once by its position as ever.

Only accepted orders are remembered (a dead-lettered one may come again
fixed). Sightings are kept per input partition: resends of one order land on
one partition whenever the producer keys it the same way each time (the
contract suggests the order_id), which is what an at-least-once producer's
retries do. Days older than the window before a partition's newest event are
dropped (`expired_days_before`), so the ledger holds one window of orders.
"""

from __future__ import annotations

from typing import Protocol

from salescast.models.timeunits import DAY_MS


class OrderLedger(Protocol):
    def first_offset(self, partition: int, order_id: str, ts: int) -> int | None:
        """The offset this order was first read at on `partition`, or None if not seen in the window."""

    def remember(self, partition: int, order_id: str, ts: int, offset: int) -> None:
        """Note the order's first sighting."""


def ledger_key(partition: int, order_id: str, ts: int) -> bytes:
    """`<partition>/<day>/<order_id>`, fixed-width numbers so one partition's days sort in order."""
    return b"%05d/%08d/%s" % (partition, ts // DAY_MS, order_id.encode())


def key_partition(key: bytes) -> int:
    """The input partition a ledger key belongs to (and its table's changelog partition)."""
    return int(key[:5])


def day_range(partition: int, first_day: int, end_day: int) -> tuple[bytes, bytes]:
    """The keys of `partition` from day `first_day` up to, not including, `end_day`, as [start, end)."""
    return b"%05d/%08d/" % (partition, first_day), b"%05d/%08d/" % (partition, end_day)


def expired_days_before(newest_ts: int, window_ms: int) -> int:
    """The first day still inside the window behind `newest_ts`: days before it are dropped."""
    return (newest_ts - window_ms) // DAY_MS


class InMemoryOrderLedger:
    """The ledger of `salescast replay` and the unit tests (the worker's is a RocksDB table)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[bytes, int] = {}

    def first_offset(self, partition: int, order_id: str, ts: int) -> int | None:
        return self._seen.get(ledger_key(partition, order_id, ts))

    def remember(self, partition: int, order_id: str, ts: int, offset: int) -> None:
        self._seen[ledger_key(partition, order_id, ts)] = offset

    def expire(self, partition: int, newest_ts: int) -> None:
        start, end = day_range(partition, 0, expired_days_before(newest_ts, self.window_ms))
        for key in [key for key in self._seen if start <= key < end]:
            del self._seen[key]
