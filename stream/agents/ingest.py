"""Ingest: the contract's input topics -> updates repartitioned by SKU and by user (one bundle record
per partition per batch, stream.core.state), dead letters, and the input partitions' marks (newest
event time, idle) that close buckets downstream (stream.core.watermarks)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable

import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from salescast.stream import metrics
from salescast.stream.app import app, settings
from salescast.stream import faust_fixes
from salescast.stream.core.dedup import day_range, expired_days_before, ledger_key
from salescast.stream.core.ingest import Ingestor
from salescast.stream.core.state import bundles
from salescast.stream.core.watermarks import PENDING, encode_marks
from salescast.stream.delivery import writes
from salescast.stream.delivery.continuity import retrying
from salescast.stream.delivery.offsets import batches
from salescast.stream.delivery.outbox import Outbox, partition_for
from salescast.stream.kafka import client_options, read_latest
from salescast.stream.tables import order_ids
from salescast.stream.topics import (INPUT_WATERMARKS, SKU_EVENTS, USER_EVENTS, clicks, input_watermarks, inventory,
                                     orders)

log = logging.getLogger(__name__)
DEDUP_SWEEP_S = 600.0


class TableOrderLedger:
    """The worker's order ledger (stream.core.dedup): the order-ids table, behind its cache. `at(stream,
    event)` names the input record being ingested, whose partition files the write."""

    def __init__(self) -> None:
        self._origin: tuple = (None, None)

    def at(self, stream, event) -> None:
        self._origin = (stream, event)

    def first_offset(self, partition: int, order_id: str, ts: int) -> int | None:
        seen = writes.load_value(order_ids, ledger_key(partition, order_id, ts))
        return None if seen is None else seen[0]

    def remember(self, partition: int, order_id: str, ts: int, offset: int) -> None:
        writes.write(self._origin[0], order_ids, ledger_key(partition, order_id, ts), [offset], self._origin[1])


order_ledger = TableOrderLedger()
ingestor = Ingestor(settings, orders=order_ledger)
_all_sku_partitions = list(range(settings.kafka.partitions))


class WatermarkSeeding:
    """Hands the Ingestor what it persisted before this start or rebalance: per input partition, the
    newest event time and the last offset read.

    Done before the first batch after each (re)assignment: a partition taken
    over from another worker, or resumed after a restart, must be judged
    against where the service had got to, not against the first record read.
    """

    def __init__(self, read_persisted: Callable[[], Awaitable[dict[bytes, bytes]]]) -> None:
        self.needed = True
        self.read_persisted = read_persisted
        self._lock = asyncio.Lock()

    async def ensure(self, out: Outbox) -> None:
        if not self.needed:
            return
        async with self._lock:
            if not self.needed:
                return
            # raising here would lose the batch (take_events acks it all the same): wait for the broker
            persisted = await retrying(self.read_persisted, "read the persisted input watermarks")
            usable = {}
            for key, value in persisted.items():
                try:
                    ts, offset = orjson.loads(value)
                    usable[key.decode()] = [int(ts), int(offset)]
                except (ValueError, TypeError, UnicodeDecodeError):  # not ours to stop on: judged afresh
                    log.warning("ignoring an unreadable input watermark %r: %r", key, value)
            ingestor.seed(usable)
            assigned = _assigned_inputs()
            if assigned is not None:
                ingestor.assign(assigned)
            # closing is idempotent: this re-sends marks a crash may have cut off
            marks_sender.publish_persisted()
            marks_sender.add(out)
            log.info("input watermarks seeded from %d partitions: newest event %s", len(persisted),
                     ingestor.watermark)
            self.needed = False


async def _read_input_watermarks() -> dict[bytes, bytes]:
    await input_watermarks.maybe_declare()
    return await asyncio.to_thread(read_latest, settings, INPUT_WATERMARKS) or {}


watermark_seeding = WatermarkSeeding(_read_input_watermarks)


@app.on_rebalance_complete.connect
async def _seed_again(sender, **kwargs) -> None:
    watermark_seeding.needed = True


def _assigned_inputs() -> list[tuple[str, int]] | None:
    """The input partitions (kind, partition) this worker reads now; None before the consumer started."""
    kinds = {name: kind for kind, name in ingestor.topic_names.items()}
    try:
        assignment = app.consumer.assignment()
    except ConsumerNotStarted:  # the agents' test context: no consumer, only the partitions read count
        return None
    return [(kinds[tp.topic], tp.partition) for tp in assignment if tp.topic in kinds]


_end_offsets: dict[TP, int] = {}  # the input partitions' log end offsets, asked of the broker by the marks timer


def _backlog(kind: str, partition: int) -> bool:
    """Records wait in the partition past the last one ingested.

    The fetcher's high-water mark is stale for a partition Faust paused (its
    agent's buffer full, as in a backfill), so the broker's end offset, asked
    every couple of seconds, counts too: a paused partition must not pass for idle.
    """
    tp = TP(ingestor.topic_names[kind], partition)
    try:
        highwater = app.consumer.highwater(tp)
    except ConsumerNotStarted:
        return False
    except AssertionError:  # aiokafka: "Partition is not assigned", a rebalance just moved it away
        highwater = None
    end = max(highwater if highwater is not None else -1, _end_offsets.get(tp, -1))
    return end > ingestor.last_read((kind, partition)) + 1


_offsets_client = None


def _ask_end_offsets(tps: list[TP]) -> dict[TP, int]:
    """A client of its own, in a thread: Faust's consumer runs its calls one at a time on its thread, and
    an end-offsets request there held up its fetches (the demo's worker read ~100 records/s)."""
    global _offsets_client
    from kafka import KafkaConsumer, TopicPartition

    if _offsets_client is None:
        _offsets_client = KafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    ends = _offsets_client.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
    return {TP(tp.topic, tp.partition): offset for tp, offset in ends.items()}


async def _refresh_end_offsets() -> None:
    tps = [TP(ingestor.topic_names[kind], partition) for kind, partition in _assigned_inputs() or ()]
    if tps:
        try:
            _end_offsets.update(await asyncio.to_thread(_ask_end_offsets, tps))
        except Exception as exc:  # noqa: BLE001 - the fetcher's high-water marks still serve meanwhile
            log.warning("could not ask the broker for the input partitions' end offsets: %s", exc)


class MarksSender:
    """Sends this worker's input marks to every partition of the SKU topic (stream.core.watermarks).

    After each batch whose records moved a partition into a new bucket, and
    from a timer: a partition turns idle with no record at all, and a worker
    that restarted (or took SKU partitions over) learns the marks again.

    A mark may only claim what has been handed to the producer ahead of it:
    the three ingest agents share the Ingestor, and a mark that carried the
    clicks agent's progress out with the orders agent's batch, while the
    clicks batch's updates were still in its own outbox, would close buckets
    before those updates reached their SKUs, and forecast from half a bucket
    (tests/stream/test_agents.py). So a message carries the partitions of the
    batch it follows as read, and every other partition as of its last flushed batch.
    """

    RESEND_S = 10.0
    # after a batch, at most this often: a message to every SKU partition per batch slowed the worker down
    # while batches held a few dozen records (a simulation at 300,000 x moves every input partition into a
    # new day 3 times a second); batches of a fetch each need far fewer, and every wait here delays a close
    BATCH_EVERY_S = 0.02

    def __init__(self) -> None:
        self.published: dict[str, int] = {}  # newest event time per partition whose updates were flushed
        self.last: dict | None = None
        self.sent_at = 0.0
        self.held_back: set[str] = set()  # topics whose batch moved a partition into a new bucket, marks not sent
        self.owed = False  # a held-back batch was flushed: send_owed_marks sends its marks

    def publish(self, topic: str) -> None:
        """The batch's updates were flushed: the marks of `topic`'s partitions may go out."""
        for name, (ts, _) in ingestor.marks().items():
            if name.rpartition("/")[0] == topic:
                self.published[name] = ts
        if topic in self.held_back:
            self.held_back.discard(topic)
            self.owed = True

    def publish_persisted(self) -> None:
        """A persisted progress was sent after its batch's updates, before this start: its marks may go out."""
        for name, ts in ingestor.persisted_newest().items():
            self.published[name] = max(ts, self.published.get(name, PENDING))

    def add(self, out: Outbox, topic: str | None = None, force: bool = True) -> None:
        """Marks behind the records `out` holds so far: those of `topic`'s partitions as read."""
        if topic is not None and time.time() - self.sent_at < self.BATCH_EVERY_S:
            self.held_back.add(topic)  # owed once the batch is flushed (`publish`)
            return
        marks = {name: [ts if name.rpartition("/")[0] == topic else self.published.get(name, PENDING), idle]
                 for name, (ts, idle) in ingestor.marks(_backlog).items()}
        now = time.time()
        if not marks or (not force and marks == self.last and now - self.sent_at < self.RESEND_S):
            return
        self.last, self.sent_at, self.owed = marks, now, False
        message = encode_marks(marks, now, _input_partition_counts())
        for partition in _all_sku_partitions:
            out.add(SKU_EVENTS, None, message, partition=partition)


marks_sender = MarksSender()


def _input_partition_counts() -> dict[str, int]:
    """Partitions of each input topic, from the consumer's metadata: every one must report its marks."""
    counts = {}
    for topic in ingestor.topic_names.values():
        try:
            count = app.consumer.topic_partitions(topic)
        except ConsumerNotStarted:
            count = None
        if count:
            counts[topic] = count
    return counts


@app.timer(1.0)
async def send_marks_when_changed() -> None:
    """Also where a worker whose input partitions hold no record at all says so: no batch ever seeds it."""
    await _refresh_end_offsets()
    out = Outbox()
    await watermark_seeding.ensure(out)  # sends the marks itself when it seeds
    marks_sender.add(out, force=False)  # every partition as of its last flushed batch
    await out.flush(writes.producer())


async def send_owed_marks() -> None:
    """The marks a batch held back (MarksSender.BATCH_EVERY_S), as its flush published them, within the
    interval: every wait here is a wait on a bucket close (the resend timer above waited up to 1 s)."""
    if marks_sender.owed:
        out = Outbox()
        marks_sender.add(out)
        await out.flush(writes.producer())


app.timer(MarksSender.BATCH_EVERY_S, name="send_owed_marks")(send_owed_marks)


async def ingest_batch(kind: str, events: Iterable, stream=None) -> None:
    """Validate, split and route one batch of input records (all input agents' one step). `stream`: the
    agent's, for the order ledger's writes."""
    started = time.perf_counter()
    out = Outbox()
    await watermark_seeding.ensure(out)
    count = 0
    advanced = False
    routed: dict[tuple[str, int], list[bytes]] = {}  # (internal topic, partition) -> its updates, encoded
    partitions = settings.kafka.partitions
    for event in events:
        count += 1
        message = event.message
        order_ledger.at(stream, event)
        result = ingestor.ingest(kind, message.value or b"", message.partition, message.offset)
        if result.dead_letter is not None:
            writes.send_dead_letter(out, message.key, result.dead_letter)
            continue
        if result.duplicate_of is not None:
            metrics.DUPLICATE_ORDERS.inc()
            continue
        try:
            encoded = [(SKU_EVENTS, u.sku.encode(), orjson.dumps(u.to_wire())) for u in result.sku_updates]
            encoded += [(USER_EVENTS, u.user.encode(), orjson.dumps(u.to_wire())) for u in result.user_updates]
        except Exception as exc:  # noqa: BLE001 - nothing half-sent: encode all, then send
            writes.processing_error(out, message, exc)
            continue
        for topic, key, value in encoded:
            routed.setdefault((topic, partition_for(key, partitions)), []).append(value)
        if result.tick is not None:
            advanced = True
    for (topic, partition), values in routed.items():  # ahead of the marks that claim them
        for bundle in bundles(values):
            out.add(topic, None, bundle, partition=partition)
    topic = ingestor.topic_names[kind]
    if advanced:
        marks_sender.add(out, topic)
    for name, newest in ingestor.progress().items():
        out.add(INPUT_WATERMARKS, name.encode(), orjson.dumps(newest), partition=0)
    await out.flush(writes.producer())
    marks_sender.publish(topic)
    metrics.EVENTS_CONSUMED.labels(kind).inc(count)
    if count:
        metrics.PROCESSING_LATENCY.labels("ingest").observe((time.perf_counter() - started) / count)


@app.agent(orders)
async def ingest_orders(stream):
    async for events in batches(stream):
        await ingest_batch("orders", events, stream)


@app.timer(DEDUP_SWEEP_S)
async def forget_orders_past_the_dedup_window() -> None:
    """Each assigned orders partition's sightings older than the window behind its newest event leave
    RocksDB (the changelog drops them by retention)."""
    if settings.time.dedup_window_ms <= 0 or app.rebalancing:
        return
    assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == ingestor.topic_names["orders"]}
    for partition in sorted(assigned):
        newest = ingestor.newest(("orders", partition))
        if newest != PENDING:
            start, end = day_range(partition, 0, expired_days_before(newest, settings.time.dedup_window_ms))
            await asyncio.to_thread(faust_fixes.delete_range_in_partition, order_ids, partition, start, end)


@app.agent(clicks)
async def ingest_clicks(stream):
    async for events in batches(stream):
        await ingest_batch("clicks", events)


@app.agent(inventory)
async def ingest_inventory(stream):
    async for events in batches(stream):
        await ingest_batch("inventory", events)
