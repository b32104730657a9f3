"""Every record of a partition reaches its agent, in offset order, or the worker says why not.

Faust can skip records around a recovery or rebalance: records fetched
before the stream partitions are sought back to their committed offsets
are dropped, the consumer's position has already moved past them, and
Faust treats the jump as a gap it may commit over (faust-streaming issues
216, 221 and 596). In clean-clone CI runs a worker restarted on an empty
state directory lost a whole batch of order lines that way, silently, and
the inventory records after such a gap were judged `future`.

`OffsetContinuity` sits between `take_events` and each agent: it knows the
next offset due on every partition (the group's committed offset, asked
of the broker, when a partition is first seen after an assignment; then
the last offset + 1),
and when a batch jumps past it, it reads the missing range straight from
the broker and puts those records in front, so they are handled in the
same batch, before the records after them (the exactly-once position check
relies on that order). Offsets that hold no record, compacted away or a
transaction marker, come back empty and the gap stands.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

from faust.types import TP

log = logging.getLogger(__name__)

RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
T = TypeVar("T")


class RefetchedMessage:
    """What an agent reads of a Faust message, for a record read back from the broker."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "timestamp", "tp")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 timestamp: float | None = None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.timestamp = key, value, timestamp
        self.tp = TP(topic, partition)


class RefetchedEvent:
    """Stands for a Faust event (a table write files itself under `message.partition`)."""

    def __init__(self, message: RefetchedMessage) -> None:
        self.message = message


ReadRange = Callable[[str, int, "int | None", int], Awaitable[Sequence]]


class OffsetContinuity:
    """`complete(events)`: the batch with any records Faust skipped put back, in offset order.

    `committed()`: the consumer group's committed offsets by partition (the
    next offset to read; a partition absent was never committed: the start of
    the log), asked once after each assignment, when a partition's first
    record arrives. `read_range(topic, partition, start, end)`: the records
    with offsets in [start, end), as kafka-python records (start None: from
    the start of the log). `on_refetched(topic, n)` is told how many records
    came back that way.
    """

    def __init__(self, committed: Callable[[], Awaitable[Mapping[tuple[str, int], int]]], read_range: ReadRange,
                 on_refetched: Callable[[str, int], None] = lambda topic, count: None) -> None:
        self.committed = committed
        self.read_range = read_range
        self.on_refetched = on_refetched
        self._due: dict[TP, int | None] = {}
        self._committed: Mapping[tuple[str, int], int] | None = None
        self._asking = asyncio.Lock()  # every agent's first batch arrives at once: ask the broker once

    def reset(self) -> None:
        """After a rebalance: each partition starts again at its committed offset."""
        self._due.clear()
        self._committed = None

    async def complete(self, events: Iterable) -> list:
        completed = []
        for event in events:
            message = event.message
            tp = message.tp
            if tp in self._due:
                due = self._due[tp]
            else:
                due = (await self._committed_offsets()).get(tp)
            if (due is None and message.offset > 0) or (due is not None and message.offset > due):
                missing = await retrying(lambda: self.read_range(message.topic, message.partition, due,
                                                                 message.offset),
                                         f"read back {message.topic}/{message.partition} offsets {due}.."
                                         f"{message.offset - 1}")
                if missing:
                    log.warning("%s/%d: the consumer skipped %d records before offset %d (from %s); read them "
                                "back from the broker", message.topic, message.partition, len(missing),
                                message.offset, "the start" if due is None else due)
                    self.on_refetched(message.topic, len(missing))
                completed.extend(RefetchedEvent(RefetchedMessage(r.topic, r.partition, r.offset, r.key, r.value,
                                                                 r.timestamp / 1000 if r.timestamp else None))
                                 for r in missing)
            completed.append(event)
            if due is None or message.offset >= due:  # a re-delivered older record leaves the mark alone
                self._due[tp] = message.offset + 1
        return completed

    async def _committed_offsets(self) -> Mapping[tuple[str, int], int]:
        async with self._asking:
            if self._committed is None:
                self._committed = await retrying(self.committed, "read the committed offsets")
            return self._committed


async def retrying(call: Callable[[], Awaitable[T]], what: str) -> T:
    """`await call()` until it succeeds, backing off: for a worker that must not go on without the answer
    (records it would otherwise commit over unhandled), stalling beats guessing."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - any failure: not known yet, try again
            log.warning("could not %s (%s: %s); retrying in %.1f s", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
