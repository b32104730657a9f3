"""Every record of a partition reaches its agent, in offset order, and its offset is committed only
once the agent has handled it.

Faust can lose records around a recovery or rebalance: its fetch loop drops
records at or below the last offset it delivered, which records fetched just
before the recovery's seek back to the committed offsets have already moved
on (salescast.stream.faust_fixes._ReadOffsets turns that off for the agents' topics); records
of an old generation still queued in a stream are skipped *and acked*, so
Faust's own commits can pass over them; aiokafka does not seek a partition
whose committed offset is 0 or absent (faust-streaming issues 216, 221 and
596); and a worker restarted mid-stream can still miss a run of records
per partition just after its recovery, by a path not found yet. Records can
go missing mid-partition, or at the end of a partition, with no later
record to show the jump.

So the agents' topics are consumed without Faust's acks (salescast.stream.topics)
and `OffsetContinuity` does four things for every partition:

- it knows the next offset due (the group's committed offset, asked of
  the broker after each assignment; then the last offset + 1), and when a
  batch jumps past it, it reads the missing range straight from the broker
  and puts those records in front, so they are handled in the same batch,
  before the records after them (the exactly-once position check relies
  on that order). Offsets that hold no record, compacted away or a
  transaction marker, come back empty and the gap stands;
- each partition that has given no record for `stall_after_s` while its log
  reaches past that offset is sought back to its first missing record
  (`restart_stalled`, which the worker calls only while no batch is in flight
  and no record waits in a queue: under load a partition can wait its turn
  for longer). Silence is per partition: the internal marks records each
  worker resends every 10 s kept a worker-wide silence from ever reaching
  10 s, so a partition skipped at its end was never read again;
- it hands out, for commit, the offset after the last record whose batch
  the agent finished (`commit_offsets`), and lets a revocation wait for the
  batches in flight (`wait_idle`), as Faust's acks did;
- it lets no batch start between the commit that hands partitions over and
  the next assignment, nor ever after a stop's commit (`close`; `complete`
  waits while it is closed).
  A stop closes the tables' RocksDB stores while the agents still run, and
  a store closed that way answers None for every key: a batch started then
  would count its keys afresh and overwrite their totals
  (tests/integration/test_restart.py, the SIGTERM case).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence, TypeVar

from faust.types import TP

log = logging.getLogger(__name__)

RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
STALL_AFTER_S = 10.0
T = TypeVar("T")


class RefetchedMessage:
    """What an agent reads of a Faust message, for a record read back from the broker."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "timestamp", "tp")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 timestamp: float | None = None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.timestamp = key, value, timestamp
        self.tp = TP(topic, partition)


class RecordEvent:
    """Stands for a Faust event of one record (a table write files itself under `message.partition`): a
    record read back from the broker, or one of the records a fetch handed over together
    (stream.faust_fixes.FetchedRecords)."""

    def __init__(self, message) -> None:
        self.message = message


ReadRange = Callable[..., Awaitable[Sequence]]
Seek = Callable[[TP, int], Awaitable[None]]


class OffsetContinuity:
    """`complete(events)`: the batch with any records Faust skipped put back, in offset order.

    `committed()`: the consumer group's committed offsets by partition (the
    next offset to read; a partition absent was never committed: the start of
    the log), asked once after each assignment. `read_range(topic, partition,
    start, end, limit=None)`: the records with offsets in [start, end), as
    kafka-python records (start None: from the start of the log; at most
    `limit` of them). `on_refetched(topic, n)` is told how many records came
    back that way, `on_stalled(topic)` of each seek back.
    """

    def __init__(self, committed: Callable[[], Awaitable[Mapping[tuple[str, int], int]]], read_range: ReadRange,
                 on_refetched: Callable[[str, int], None] = lambda topic, count: None,
                 on_stalled: Callable[[str], None] = lambda topic: None,
                 clock: Callable[[], float] = time.monotonic, stall_after_s: float = STALL_AFTER_S) -> None:
        self.committed = committed
        self.read_range = read_range
        self.on_refetched = on_refetched
        self.on_stalled = on_stalled
        self.clock = clock
        self.stall_after_s = stall_after_s
        self._due: dict[TP, int | None] = {}
        self._handled: dict[TP, int] = {}  # the offset after the last record of a finished batch
        self._heard: dict[TP, float] = {}  # when each partition's last record arrived
        self._since = clock()  # the last reset: a partition not heard from since is silent from then
        self._committed: Mapping[tuple[str, int], int] | None = None
        self._asking = asyncio.Lock()  # every agent's first batch arrives at once: ask the broker once
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._epoch = 0  # one per assignment: a batch taken under an older one is not handled
        self._open = asyncio.Event()  # clear from a revocation's commit to the next assignment, or for good
        self._open.set()
        self._stopping = False

    def reset(self) -> None:
        """After a rebalance: each partition starts again at its committed offset."""
        self._due.clear()
        self._handled.clear()
        self._committed = None
        self._heard.clear()
        self._since = self.clock()
        self._epoch += 1
        if not self._stopping:
            self._open.set()

    def close(self, for_good: bool = False) -> None:
        """No batch starts from now until the next `reset()` (`for_good`: ever again).

        Called before the commit that hands partitions over: what an agent handled after it would be
        handled again by the partitions' next owner, and at a stop Faust closes the tables under it
        (Faust's RocksDB store then answers None for every key, so a batch would start its keys afresh
        and overwrite what they had counted).
        """
        self._stopping = self._stopping or for_good
        self._open.clear()

    async def complete(self, events: Iterable) -> list | None:
        """The batch to hand to the agent, once batches may start (`close`); None: an assignment came
        since the records were taken, so they are not to be handled (they come again from the committed
        offsets, to whichever worker owns them now)."""
        completed = []
        epoch = self._epoch
        now = self.clock()
        for event in events:
            message = event.message
            tp = message.tp
            self._heard[tp] = now
            due = await self._next_due(tp)
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
                completed.extend(RecordEvent(RefetchedMessage(r.topic, r.partition, r.offset, r.key, r.value,
                                                              r.timestamp / 1000 if r.timestamp else None))
                                 for r in missing)
            if epoch != self._epoch:  # reset while this batch waited on the broker: marks made now would outlive it
                return None
            completed.append(event)
            if due is None or message.offset >= due:  # a re-delivered older record leaves the mark alone
                self._due[tp] = message.offset + 1
        await self._open.wait()
        return completed if epoch == self._epoch else None  # marks made before a reset went with it

    @contextlib.contextmanager
    def handling(self, batch: Sequence) -> Iterator[None]:
        """Around an agent's work on a completed batch: its offsets become committable only if the work
        finished. If it raised (or a stop cut it off), the batch's records are due again, so the next
        batch after the agent restarts reads them back first instead of committing past them."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
            for event in batch:
                message = event.message
                if message.offset + 1 > self._handled.get(message.tp, -1):
                    self._handled[message.tp] = message.offset + 1
        except BaseException:
            for event in batch:
                message = event.message
                due = self._due.get(message.tp)
                if due is None or message.offset < due:
                    self._due[message.tp] = message.offset
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    @property
    def stopping(self) -> bool:
        """Closed for good: the worker is on its way out."""
        return self._stopping

    @property
    def idle(self) -> bool:
        return not self._in_flight

    async def wait_idle(self, timeout_s: float) -> bool:
        """Until no batch is being handled (False: `timeout_s` passed first)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def commit_offsets(self, assignment: Iterable[TP]) -> dict[TP, int]:
        """What to commit for the assigned partitions: handled offsets past what the group has."""
        assigned = set(assignment)
        handled = {tp: offset for tp, offset in self._handled.items() if tp in assigned}
        if not handled:
            return {}
        committed = await self._committed_offsets()
        return {tp: offset for tp, offset in handled.items() if offset > committed.get(tp, -1)}

    def on_committed(self, offsets: Mapping[TP, int]) -> None:
        if self._committed is not None:
            self._committed = {**self._committed, **offsets}

    async def restart_stalled(self, assignment: Iterable[TP], topics: Collection[str],
                              log_end: Callable[[TP], "int | None"], seek: Seek) -> list[TP]:
        """Seek back each partition of `topics` that has given no record for `stall_after_s` though its log
        reaches past the next offset due: records Faust dropped with no later record to show the jump.
        `topics` are the agents' own (the assignment also holds the tables' changelogs, which are Faust's
        to read); `log_end(tp)` is the partition's high watermark as the consumer last saw it (None: not
        known)."""
        now = self.clock()
        sought = []
        for tp in assignment:
            end = log_end(tp) if tp.topic in topics else None
            silent_s = now - self._heard.get(tp, self._since)
            if end is None or silent_s < self.stall_after_s:
                continue
            due = await self._next_due(tp)
            if end <= (due or 0):
                continue
            first = await retrying(lambda: self.read_range(tp.topic, tp.partition, due, end, limit=1),
                                   f"look for records in {tp.topic}/{tp.partition} offsets {due}..{end - 1}")
            if not first:  # only offsets without records up to the end: nothing is missing
                self._due[tp] = end
                continue
            log.warning("%s/%d: no record arrived for %.0f s though the log reaches offset %d; seeking the "
                        "consumer back to offset %d", tp.topic, tp.partition, silent_s, end - 1, first[0].offset)
            await seek(tp, first[0].offset)
            self.on_stalled(tp.topic)
            self._heard[tp] = now  # time for the records to come
            sought.append(tp)
        return sought

    async def _next_due(self, tp: TP) -> int | None:
        """The offset due next: the last seen + 1, or the group's committed offset (None: the log's start)."""
        return self._due[tp] if tp in self._due else (await self._committed_offsets()).get(tp)

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
