"""What an agent emits for one batch of records, handed to Kafka's producer in one go.

Faust's `send_soon` costs ~90 us a record (a FutureMessage, a trip through its
ProducerBuffer, then one aiokafka `send()`): measured with py-spy, it capped a
worker near 11,000 repartition records/s. Calling aiokafka's `send()` directly
appends each record to the batch the producer is filling for its partition.
(aiokafka's `send_batch` looked cheaper still, but it waits until the
partition's previous batch has drained, up to the linger time, for every
partition touched: at 2,000 events/s that put seconds of latency on bucket
close.) The records go through the aiokafka producer Faust owns, so Faust's
flush-before-commit still covers them: a record is on the broker before the
offsets of the input that caused it are committed.

Partitions are aiokafka's default (murmur2 of the key, as Faust and the
tables use; random for a record without key) unless given.

Every record's delivery is tracked (`DELIVERIES`) and confirmed before the
offsets of the input behind it are committed: aiokafka's flush, all that
Faust's commit waits on, returns without raising when a batch failed, so a
record the broker refused for good (larger than the topic's
`max.message.bytes`, a topic deleted, a missing ACL) was lost with its input
committed over it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Awaitable, Callable

from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


@functools.cache
def _all(partitions: int) -> list[int]:
    return list(range(partitions))


@functools.lru_cache(maxsize=1 << 20)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer picks for `key` in a topic of `partitions` partitions.

    Cached: aiokafka's murmur2 is pure Python (~3 us a key), and the same SKUs
    and users come back all the time; a million keys cost about 150 MB at most.
    """
    everything = _all(partitions)
    return _partitioner(key, everything, everything)


class DeliveryFailed(Exception):
    """A record the producer could not deliver: nothing read after the last commit may be committed."""


class Deliveries:
    """The delivery futures of the records handed to the producer since the last `confirm`.

    Invariant: `confirm` returns only if every one of them reached the broker; once one has failed it
    raises for good, since what the failed record stood for is known only to the input behind it,
    which must be read again from the last commit.
    """

    def __init__(self) -> None:
        self._sent: list[tuple[str, asyncio.Future]] = []
        self.failure: DeliveryFailed | None = None

    def track(self, topic: str, future: asyncio.Future) -> None:
        self._sent.append((topic, future))

    async def confirm(self, flush: Callable[[], Awaitable[None]]) -> None:
        """`flush` the producer, then check every delivery since the last confirm (DeliveryFailed)."""
        if self.failure is not None:
            raise self.failure
        await flush()
        sent, self._sent = self._sent, []
        waiting = [future for _, future in sent if not future.done()]
        if waiting:  # a flush covers every batch the producer holds; a record sent during it may be left
            await asyncio.wait(waiting)
        for topic, future in sent:
            error = asyncio.CancelledError() if future.cancelled() else future.exception()
            if error is not None:
                self.failure = DeliveryFailed(
                    f"a record for topic {topic!r} could not be delivered ({type(error).__name__}: {error}); "
                    "no offset was committed past the input behind it. The worker stops; started again it "
                    "reads on from the last commit. If the broker refused the record for good, fix the cause "
                    "first (for a MessageSizeTooLargeError, raise the topic's max.message.bytes)")
                raise self.failure


DELIVERIES = Deliveries()


class Outbox:
    def __init__(self) -> None:
        self._pending: list[tuple[str, bytes | None, bytes, int | None, Callable | None]] = []

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None,
            on_sent: Callable[[asyncio.Future], None] | None = None) -> None:
        """`on_sent` is called with the delivery future of the last record of its (topic, partition)."""
        self._pending.append((topic, key, value, partition, on_sent))

    async def flush(self, producer, delivered: bool = False, deliveries: Deliveries = DELIVERIES) -> None:
        """Hand everything to `producer` (an AIOKafkaProducer), in order, each delivery tracked in
        `deliveries`.

        Delivery is confirmed before the next commit; `delivered=True` also awaits
        it here, to keep a large burst from piling up in the producer's buffers.
        """
        send = producer.send
        track = deliveries.track
        last: dict[tuple[str, int | None], tuple[asyncio.Future, Callable]] = {}
        futures = []
        for topic, key, value, partition, on_sent in self._pending:
            future = await send(topic, value=value, key=key, partition=partition)
            track(topic, future)
            if on_sent is not None:
                last[(topic, partition)] = (future, on_sent)
            if delivered:
                futures.append(future)
        self._pending.clear()
        for future, on_sent in last.values():
            future.add_done_callback(on_sent)
        if futures:
            await asyncio.gather(*futures)
