"""Every place the worker reaches into faust-streaming's private attributes, in one room.

Each touch works around a behaviour of faust-streaming 0.15.3 (pinned in
pyproject.toml) that the worker cannot live with, and says which. Nothing else
in salescast uses a Faust name that starts with an underscore: a Faust upgrade
means reading this file and running tests/stream/test_faust_fixes.py, whose
canary test fails loudly if an attribute used here has moved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import defaultdict
from typing import Awaitable, Callable

import faust
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

# (owner, attribute) pairs this module relies on; the canary test checks each still exists
RELIED_ON = (
    (faust_kafka.Consumer, "_reset_state"),
    (faust_kafka.Consumer, "_wait_next_records"),
    (faust_kafka.Consumer, "_to_message"),
    (faust_kafka.Consumer, "_commit_offsets"),
    (faust_kafka.Consumer, "_new_consumer_thread"),
    (faust_kafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (faust_kafka.AIOKafkaConsumerThread, "seek_wait"),
    (faust_kafka.Producer, "_producer"),
    (faust.App, "_new_transport"),
    (faust.App, "_stop_consumer"),
    (faust.Stream, "_set_current_event"),
    (faust_rocksdb.Store, "_db_for_partition"),
)


class _ReadOffsets(defaultdict):
    """Faust's last offset delivered per partition, forgotten for the agents' own topics.

    Faust's fetch loop drops a record at or below that offset as already read. Around a recovery
    the offset is set by records fetched before the stream partitions are sought back to their
    committed offsets, so the records read again from there are all dropped: up to ~1,500 per
    partition in a worker restarted mid-stream, to the very end of the partition at times, where no
    later record shows the gap (faust-streaming issue 596). The agents' topics need no such filter:
    stream.delivery.continuity keeps them in order, and the tables skip re-read records by their position.
    """

    def __init__(self, unfiltered_topics: set[str]) -> None:
        super().__init__(lambda: None)
        self.unfiltered_topics = unfiltered_topics

    def __getitem__(self, tp):
        return None if tp.topic in self.unfiltered_topics else super().__getitem__(tp)


class FetchedRecords(ConsumerMessage):
    """The records one fetch brought of one partition of an agent's topic, handed to Faust as one message.

    Faust delivers each message on its own: its fetch loop awaits a
    `wait_first` (four tasks made, three cancelled) per message, then the
    conductor, the topic queue, an Event, the stream iterator and its sensors
    each take their turn, ~70-100 us a record, more than the agents' own work.
    For the agents' topics a fetch's records travel that path once, as this
    message (offset, timestamp: its last record's), and stream.delivery.offsets
    opens them into one event per record (stream.delivery.continuity.RecordEvent)
    before the agents see them; their offsets are checked and committed per
    record as before. Acks are off for these topics, so Faust's own
    per-message bookkeeping has nothing to lose.
    """

    __slots__ = ("records",)

    def __init__(self, tp: TP, records: list, generation_id: int | None) -> None:
        last = records[-1]
        super().__init__(tp.topic, tp.partition, last.offset, last.timestamp, last.timestamp_type, [], None, b"",
                         None, 0, 0, tp, generation_id=generation_id)
        self.records = records


class _Fetch(tuple):
    """A partition's records from one fetch, standing for a single record in Faust's record map."""


# How long the broker may hold a fetch that found nothing new. aiokafka sends one fetch at a time per
# broker, leaving out the partitions whose last records are still buffered; a record that reaches
# such a partition waits for that fetch to come back. Faust hard-codes 1,500 ms (aiokafka's default is
# 500), which put up to 1.5 s on each hop of a bucket close at 2,000 events/s. Shorter costs an idle
# worker CPU (measured: 15% of a core at 1,500 ms, 18% at 50 ms, 32% at 10 ms; the broker 9, 14, 30%).
FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its Fetcher, made when it starts
        return consumer


class _Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _reset_state(self) -> None:
        super()._reset_state()
        self._read_offset = _ReadOffsets(self.app.agent_topic_names)

    async def _wait_next_records(self, timeout: float):
        records, active_partitions = await super()._wait_next_records(timeout)
        if records:
            agent_topics = self.app.agent_topic_names
            records = {tp: [_Fetch(fetched)] if tp.topic in agent_topics and len(fetched) > 1 else fetched
                       for tp, fetched in records.items()}
        return records, active_partitions

    def _to_message(self, tp: TP, record):
        to_message = super()._to_message
        if type(record) is _Fetch:
            return FetchedRecords(tp, [to_message(tp, one) for one in record], self.app.consumer_generation_id)
        return to_message(tp, record)


class _Transport(faust_kafka.Transport):
    Consumer = _Consumer


class SalescastApp(faust.App):
    """A Faust app whose consumer delivers every record of the agents' topics (`_ReadOffsets`), a fetch
    at a time (`FetchedRecords`), and that runs `before_consumer_stops` on a graceful stop while its
    consumer can still commit.

    Faust's `_stop_consumer` revokes the tables and pauses every partition
    first, after which nothing the agents handled can be committed: a graceful
    stop would leave the last second's records to be read again. Our commits
    are our own (stream.delivery.offsets), so they go first.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent_topic_names: set[str] = set()  # filled by stream.topics
        self.before_consumer_stops: list[Callable[[], Awaitable[None]]] = []  # filled by stream.delivery.offsets

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)

    async def _stop_consumer(self) -> None:
        _exit_after_stop_deadline()
        if self._consumer is not None and self.before_consumer_stops:
            self._consumer.stop_flow()  # no more records handed to the streams; Faust's own stop does it too
            self.flow_control.suspend()
            for step in self.before_consumer_stops:
                await step()
        await super()._stop_consumer()


# a stop (SIGTERM) that has not finished by then ends the process: with no broker to answer, Faust's stop
# waits on the producer's flush until its batches expire (producer_request_timeout, 20 minutes)
STOP_DEADLINE_S = 40.0
_stop_deadline: threading.Timer | None = None


def _exit_after_stop_deadline() -> None:
    """Arm, once, the deadline of a stop that has begun. Exiting then is as safe as a kill -9: nothing
    past the last commit was committed, and it is read again at the next start."""
    global _stop_deadline
    if _stop_deadline is None:
        _stop_deadline = threading.Timer(STOP_DEADLINE_S, _exit_unfinished_stop)
        _stop_deadline.daemon = True
        _stop_deadline.start()


def _exit_unfinished_stop() -> None:
    logging.getLogger(__name__).error(
        "the worker had not stopped %.0f s after it was asked to (is the broker unreachable?): exiting now; what "
        "it handled since its last commit is read again when it starts", STOP_DEADLINE_S)
    logging.shutdown()
    os._exit(1)


def aiokafka_producer(app: faust.App):
    """The aiokafka producer Faust owns and flushes before every offset commit.

    Faust's `send_soon` costs ~90 us a record (a FutureMessage and a trip
    through its ProducerBuffer); sending on its producer directly keeps the
    flush-before-commit guarantee at a fraction of that (stream.delivery.outbox).
    """
    return app.producer._producer


def store_in_event_partition(stream, table, key: bytes, encoded: bytes, event) -> None:
    """`table.data[key] = encoded`, filed under `event`'s partition, without Faust's changelog send.

    Faust's RocksDB store files a write under the partition of the stream's
    *current* event (faust/stores/rocksdb.py `_set`); inside a batch that must
    be an event of the key's own partition, so it is set for the write. The
    stream's own current event is restored after: take_events reads it when it
    buffers the next record, and a record buffered meanwhile was otherwise
    filed as this older event (and never processed).
    """
    buffering = stream.current_event
    stream._set_current_event(event)
    try:
        table.data[key] = encoded
    finally:
        stream.current_event = buffering


def read_in_partition(table, key: bytes, partition: int) -> bytes | None:
    """`table.data[key]` from the store of the key's own partition only; None for a key never stored.

    Faust's RocksDB store, asked outside an event of the key's partition, probes
    every partition's database for a key it has not indexed yet
    (faust/stores/rocksdb.py `_get_bucket_for_key`): with 8 partitions each new
    SKU or user cost 8 RocksDB reads, and first sights ran at ~1,000 keys/s.
    Every write is filed under the key's own partition (`store_in_event_partition`),
    so that is the only database to read. Any other store (the tests' memory
    store) is read as it is.
    """
    store = table.data
    if isinstance(store, faust_rocksdb.Store):
        return store._db_for_partition(partition).get(key)
    try:
        return store[key]
    except KeyError:
        return None


def delete_range_in_partition(table, partition: int, start: bytes, end: bytes) -> None:
    """Delete the keys in [start, end) from the store of one partition (RocksDB's DeleteRange), without
    changelog records: for keys whose changelog drops them by retention. Any other store is left as it is."""
    store = table.data
    if isinstance(store, faust_rocksdb.Store):
        store._db_for_partition(partition).delete_range(start, end)


def remember_changelog_offset(table) -> Callable[[asyncio.Future], None]:
    """What Faust's own changelog send does: note in RocksDB how far the changelog is reflected, so a
    restart recovers only what came after, not the whole changelog."""

    def on_sent(delivered: asyncio.Future) -> None:
        if not delivered.cancelled() and delivered.exception() is None:
            sent = delivered.result()
            table.data.set_persisted_offset(TP(sent.topic, sent.partition), sent.offset)

    return on_sent


async def commit(app: faust.App, offsets: dict) -> bool:
    """Faust's own commit step for offsets we chose: flush the producer, then commit.

    The public `commit()` commits what Faust's acks say, which a rebalance can
    give for records no agent saw (stream.delivery.continuity).
    """
    return await app.consumer._commit_offsets(offsets)


async def seek(app: faust.App, tp: TP, offset: int) -> None:
    """A seek in the consumer's own thread: aiokafka's fetch state is not thread-safe, and a seek made
    from the event loop (Faust's `Consumer.seek`) can crash its fetcher."""
    await app.consumer._thread.seek_wait({tp: offset})
