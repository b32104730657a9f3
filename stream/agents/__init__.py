"""The agents: thin loops that hand records to `salescast.stream.core.engine` and emit what it returns.

Every agent reads batches (salescast.stream.delivery.offsets.batches): a batch's offsets are
committed only after the agent has handled it, and the producer is flushed
before each commit, so a record is either fully handled (its updates, dead
letter or forecast sent) or re-read after a crash. Re-read updates are
recognised by their input position (salescast.models.positions) and not counted twice.
Records the consumer skipped around a recovery are read back, or sought back
to, before any later record is committed (salescast.stream.delivery.continuity).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable

import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from salescast.models import windows
from salescast.models.cf import candidates
from salescast.models.promo import guardrails
from salescast.models.store import ModelStore
from salescast.stream.core.contract import Source, dead_letter, dumps
from salescast.stream.core.engine import Ingestor, SkuUpdate, UserUpdate, apply_sku_update, apply_user_update, close_buckets
from salescast.stream.serving.forecaster import load_forecaster
from salescast.stream.serving.promoter import Promoter, admit, load_promo_model, outcome_updates, registration
from salescast.stream.serving.recommender import affinity_updates, load_recommender
from salescast.stream.serving.registry import SERVED, HotSwap, ServedModels
from salescast.stream.kafka import read_latest
from salescast.stream.core.watermarks import PENDING, LowWatermark
from salescast.stream import metrics
from salescast.stream.app import app, settings
from salescast.stream.delivery.outbox import Outbox, partition_for
from salescast.stream.delivery.continuity import retrying
from salescast.stream.delivery.offsets import batches
from salescast.stream.tables import promo_guardrails, sku_candidates, sku_windows, user_items
from salescast.stream.topics import (clicks, dead_letters, forecasts, input_watermarks, inventory, orders, promo_outcomes,
                           promo_proposals, promo_triggers, sku_affinities, sku_events, user_events)

CLOSE_CHUNK = 2048  # SKUs scored in one kernel call at bucket close
MARKS = "marks"  # an internal record on the SKU topic: the input partitions' marks (salescast.stream.core.watermarks)

ingestor = Ingestor(settings)
# the models scored with now; salescast.stream.serving.registry swaps them while the worker runs
served = ServedModels(load_forecaster(settings), load_recommender(settings),
                      Promoter(load_promo_model(settings), settings.promo, settings,
                               candidates_of=lambda sku: load_value(sku_candidates, sku.encode()),
                               model_versions=lambda: {served.recommender.name: served.recommender.version}))
_all_partitions = list(range(settings.partitions))
SKU_EVENTS, USER_EVENTS = sku_events.get_topic_name(), user_events.get_topic_name()
SKU_AFFINITIES = sku_affinities.get_topic_name()
FORECASTS, DEAD_LETTERS = forecasts.get_topic_name(), dead_letters.get_topic_name()
INPUT_WATERMARKS = input_watermarks.get_topic_name()
PROMO_PROPOSALS, PROMO_TRIGGERS = promo_proposals.get_topic_name(), promo_triggers.get_topic_name()
PROMO_OUTCOMES = promo_outcomes.get_topic_name()
GUARDRAILS_KEY = b"state"
log = logging.getLogger(__name__)


def _producer():
    """The aiokafka producer Faust owns (and flushes before every offset commit)."""
    return app.producer._producer


def _dead_letter(out: Outbox, key: bytes | None, record: dict) -> None:
    out.add(DEAD_LETTERS, key, dumps(record))
    metrics.DEAD_LETTERS.labels(record["reason"]).inc()


def _processing_error(out: Outbox, message, exc: Exception) -> None:
    """A record that made processing raise: kept as a dead letter, never dropped, never fatal."""
    source = Source(message.topic, message.partition, message.offset)
    _dead_letter(out, message.key, dead_letter(source, "processing_error", f"{type(exc).__name__}: {exc}",
                                               message.value))


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
        _offsets_client = KafkaConsumer(group_id=None, enable_auto_commit=False, **settings.kafka_client_options())
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
    """Sends this worker's input marks to every partition of the SKU topic (salescast.stream.core.watermarks).

    After each batch whose records moved a partition into a new bucket, and
    from a timer: a partition turns idle with no record at all, and a worker
    that restarted (or took SKU partitions over) learns the marks again.

    A mark may only claim what has been handed to the producer ahead of it:
    the three ingest agents share the Ingestor, and a mark that carried the
    clicks agent's progress out with the orders agent's batch, while the
    clicks batch's updates were still in its own outbox, closed buckets before
    those updates reached their SKUs (MovieLens through a worker: forecasts
    from half a bucket). So a message carries the partitions of the batch it
    follows as read, and every other partition as of its last flushed batch.
    """

    RESEND_S = 10.0
    # after a batch, at most this often: a simulation at 300,000 x moves every input partition into a new
    # day 3 times a second, and a message per batch to every SKU partition slowed the worker down
    BATCH_EVERY_S = 0.5

    def __init__(self) -> None:
        self.published: dict[str, int] = {}  # newest event time per partition whose updates were flushed
        self.last: dict | None = None
        self.sent_at = 0.0

    def publish(self, topic: str) -> None:
        """The batch's updates were flushed: the marks of `topic`'s partitions may go out."""
        for name, (ts, _) in ingestor.marks().items():
            if name.rpartition("/")[0] == topic:
                self.published[name] = ts

    def publish_persisted(self) -> None:
        """A persisted progress was sent after its batch's updates, before this start: its marks may go out."""
        for name, ts in ingestor.persisted_newest().items():
            self.published[name] = max(ts, self.published.get(name, PENDING))

    def add(self, out: Outbox, topic: str | None = None, force: bool = True) -> None:
        """Marks behind the records `out` holds so far: those of `topic`'s partitions as read."""
        if topic is not None and time.time() - self.sent_at < self.BATCH_EVERY_S:
            return  # the timer sends them within its interval
        marks = {name: [ts if name.rpartition("/")[0] == topic else self.published.get(name, PENDING), idle]
                 for name, (ts, idle) in ingestor.marks(_backlog).items()}
        now = time.time()
        if not marks or (not force and marks == self.last and now - self.sent_at < self.RESEND_S):
            return
        self.last, self.sent_at = marks, now
        message = orjson.dumps([MARKS, marks, now, _input_partition_counts()])
        for partition in _all_partitions:
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
    await out.flush(_producer())


async def ingest_batch(kind: str, events: Iterable) -> None:
    """Validate, split and route one batch of input records (all input agents' one step)."""
    started = time.perf_counter()
    out = Outbox()
    await watermark_seeding.ensure(out)
    count = 0
    advanced = False
    for event in events:
        count += 1
        message = event.message
        result = ingestor.ingest(kind, message.value or b"", message.partition, message.offset)
        if result.dead_letter is not None:
            _dead_letter(out, message.key, result.dead_letter)
            continue
        try:
            routed = [(SKU_EVENTS, u.sku.encode(), orjson.dumps(u.to_wire())) for u in result.sku_updates]
            routed += [(USER_EVENTS, u.user.encode(), orjson.dumps(u.to_wire())) for u in result.user_updates]
        except Exception as exc:  # noqa: BLE001 - nothing half-sent: encode all, then send
            _processing_error(out, message, exc)
            continue
        for topic, key, value in routed:
            out.add(topic, key, value)
        if result.tick is not None:
            advanced = True
    topic = ingestor.topic_names[kind]
    if advanced:
        marks_sender.add(out, topic)
    for name, newest in ingestor.progress().items():
        out.add(INPUT_WATERMARKS, name.encode(), orjson.dumps(newest), partition=0)
    await out.flush(_producer())
    marks_sender.publish(topic)
    metrics.EVENTS_CONSUMED.labels(kind).inc(count)
    if count:
        metrics.PROCESSING_LATENCY.labels("ingest").observe((time.perf_counter() - started) / count)


@app.agent(orders)
async def ingest_orders(stream):
    async for events in batches(stream):
        await ingest_batch("orders", events)


@app.agent(clicks)
async def ingest_clicks(stream):
    async for events in batches(stream):
        await ingest_batch("clicks", events)


@app.agent(inventory)
async def ingest_inventory(stream):
    async for events in batches(stream):
        await ingest_batch("inventory", events)


def load_value(table, key: bytes) -> dict | None:
    """A table value decoded, or None for a key never written."""
    raw = table.get(key)
    return None if raw is None else orjson.loads(raw)


def _write(stream, table, key: bytes, value: dict, event, out: Outbox) -> None:
    """Store a table value and queue its changelog record: `table[key] = value` minus a Faust send per key.

    Faust's RocksDB store files a write under the current event's partition;
    inside a batch that must be an event of the key's own partition.
    """
    encoded = orjson.dumps(value)
    # the stream's own current event is restored: take_events reads it when it buffers the next
    # record, and a record buffered while this batch ran was otherwise filed as this older event
    # (and never processed)
    buffering = stream.current_event
    stream._set_current_event(event)
    try:
        table.data[key] = encoded
    finally:
        stream.current_event = buffering
    out.add(table.changelog_topic.get_topic_name(), key, encoded, partition_for(key, table.partitions),
            on_sent=_changelog_persisted[table.name])


def _remember_changelog_offset(table):
    """What Faust's own changelog send does: note in RocksDB how far the changelog is reflected,
    so a restart recovers only what came after, not the whole changelog."""

    def on_sent(delivered) -> None:
        if not delivered.cancelled() and delivered.exception() is None:
            sent = delivered.result()
            table.data.set_persisted_offset(TP(sent.topic, sent.partition), sent.offset)

    return on_sent


_changelog_persisted = {table.name: _remember_changelog_offset(table)
                        for table in (sku_windows, user_items, sku_candidates, promo_guardrails)}


def apply_batch(stream, table, label: str, events: Iterable, apply: Callable[[dict | None, list], tuple[dict, bool]],
                out: Outbox, before_write: Callable[[dict, Outbox], None] | None = None
                ) -> dict[bytes, tuple[dict, object]]:
    """Apply a batch of keyed updates to `table`, reading and writing each key once.

    `before_write(touched, out)` may add to the new states before they are stored.
    Returns the keys written, with their new state and an event of their partition.
    """
    touched: dict[bytes, tuple[dict, object]] = {}
    applied = duplicates = 0
    for event in events:
        message = event.message
        key = message.key
        try:
            state = touched[key][0] if key in touched else load_value(table, key)
            state, changed = apply(state, orjson.loads(message.value))
        except Exception as exc:  # noqa: BLE001
            _processing_error(out, message, exc)
            continue
        if changed:
            applied += 1
        else:
            # Re-read after a crash: already counted. Written again all the same, because the
            # state on disk may be newer than the changelog (the crash came between the two),
            # and a worker that takes the partition over restores from the changelog.
            duplicates += 1
        touched[key] = (state, event)
    if before_write is not None and touched:
        before_write(touched, out)
    for key, (state, event) in touched.items():
        _write(stream, table, key, state, event, out)
    metrics.UPDATES_APPLIED.labels(label).inc(applied)
    metrics.DUPLICATES_SKIPPED.labels(label).inc(duplicates)
    return touched


class PartitionIndex:
    """Which SKUs live in which partition of sku-events, to close their buckets on a tick.

    Filled as updates arrive and, the first time a partition ticks after a
    start or rebalance, from the keys the table restored.
    """

    def __init__(self) -> None:
        self.skus: dict[int, set[bytes]] = {}
        self.scanned = False

    def add(self, partition: int, key: bytes) -> None:
        self.skus.setdefault(partition, set()).add(key)

    def reset(self) -> None:
        self.skus.clear()
        self.scanned = False

    def keys_for(self, partition: int) -> set[bytes]:
        if not self.scanned:
            for key in sku_windows.keys():
                self.add(partition_for(key, settings.partitions), key)
            self.scanned = True
        return self.skus.get(partition, set())


partition_index = PartitionIndex()


class ClosingState:
    """Per partition of the SKU topic: the low watermark of the marks received there, and the bucket its
    SKUs were last closed up to.

    Per partition, not per worker: marks reach a partition after the updates
    their sender routed there before them, so a partition never closes a
    bucket whose updates are still on their way to it.
    """

    def __init__(self) -> None:
        self.lows: dict[int, LowWatermark] = {}
        self.closed_before: dict[int, int] = {}

    def low(self, partition: int) -> LowWatermark:
        if partition not in self.lows:
            self.lows[partition] = LowWatermark(settings.bucket_ms, settings.idle_timeout_ms)
        return self.lows[partition]

    def to_close(self, partition: int) -> int | None:
        """The bucket to close the partition's SKUs up to (exclusive), when it moved since the last close."""
        bucket = self.low(partition).bucket()
        if bucket is None or bucket <= self.closed_before.get(partition, -1):
            return None
        return bucket

    def reset(self) -> None:
        self.lows.clear()
        self.closed_before.clear()


closing_state = ClosingState()


@app.on_rebalance_complete.connect
async def _on_rebalance(sender, **kwargs) -> None:
    partition_index.reset()
    closing_state.reset()
    watermark_seeding.needed = True


def _is_marks(event) -> bool:
    return event.message.key is None and event.message.value.startswith(b'["')


@app.agent(sku_events)
async def update_sku_windows(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        ticks: dict[int, tuple[float, object]] = {}
        updates = []
        for event in events:
            if not _is_marks(event):
                updates.append(event)
                continue
            try:
                kind, marks, sent_at, *counts = orjson.loads(event.message.value)
                if kind != MARKS:
                    continue  # a v1 worker's tick during a rolling upgrade: its marks follow
                closing_state.low(event.message.partition).update(marks, sent_at, counts[0] if counts else None)
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                _processing_error(out, event.message, exc)
                continue
            ticks[event.message.partition] = (sent_at, event)
        def apply(window, wire):
            update = SkuUpdate.from_wire(wire)
            close_before = closing_state.closed_before.get(_sku_partition(update.sku))
            return apply_sku_update(window, update, settings, close_before)

        touched = apply_batch(stream, sku_windows, "sku-windows", updates, apply, out,
                              before_write=send_outcome_updates)
        for key, (_, event) in touched.items():
            partition_index.add(event.message.partition, key)
        for partition, (sent_at, event) in ticks.items():
            bucket = closing_state.to_close(partition)
            if bucket is not None:
                await _close_partition(stream, partition, bucket, sent_at, event, out)
                closing_state.closed_before[partition] = bucket
        await out.flush(_producer())
        if events:
            metrics.PROCESSING_LATENCY.labels("sku").observe((time.perf_counter() - started) / len(events))


async def _close_partition(stream, partition: int, bucket: int, ingested_at: float, event, out: Outbox) -> None:
    """Close every SKU of `partition` whose open buckets the low watermark passed; forecast each live one.

    In chunks of CLOSE_CHUNK SKUs, each handed to the producer and delivered
    before the next is read, so a close over 100,000 SKUs holds a chunk in
    memory, not the whole partition's windows and forecasts.
    """
    chunk = []
    now_ms = _clock_ms(partition)
    for key in list(partition_index.keys_for(partition)):
        window = load_value(sku_windows, key)
        if window is not None and windows.buckets_to_close(window, bucket):
            chunk.append((key.decode(), window))
        if len(chunk) >= CLOSE_CHUNK:
            _close_chunk(stream, chunk, bucket, ingested_at, event, out, now_ms)
            await out.flush(_producer(), delivered=True)
            chunk = []
    if chunk:
        _close_chunk(stream, chunk, bucket, ingested_at, event, out, now_ms)


def _clock_ms(partition: int) -> int | None:
    """"Now" for the promotions' occasion: the wall clock, or with SALESCAST_CLOCK=events the stream's own
    time, its low watermark (not the newest event read: the ingest side runs days ahead of the closes in a
    fast simulation, and every close looked stale against it, so the demo promoted nothing)."""
    if settings.clock == "events":
        return closing_state.low(partition).value()
    return int(time.time() * 1000)


def _close_chunk(stream, chunk: list[tuple[str, dict]], bucket: int, ingested_at: float, event, out: Outbox,
                 now_ms: int | None) -> None:
    scoring_started = time.perf_counter()
    forecaster = served.forecaster
    closed = close_buckets(chunk, bucket, settings, forecaster, served.promoter, now_ms)
    if closed:
        metrics.SCORING_LATENCY.labels(forecaster.name).observe(time.perf_counter() - scoring_started)
    now = time.time()
    for sku_closed in closed:
        key = sku_closed.sku.encode()
        _write(stream, sku_windows, key, sku_closed.window, event, out)
        for record in sku_closed.forecasts:
            out.add(FORECASTS, key, dumps(record))
            metrics.FORECASTS_EMITTED.labels(record["model"]["name"]).inc()
        if sku_closed.proposal is not None:
            out.add(PROMO_PROPOSALS, key, dumps(sku_closed.proposal), partition=0)
            metrics.PROMO_PROPOSALS.labels(sku_closed.proposal["trigger"]["reason"]).inc()
        for reason, outcome in sku_closed.outcomes:
            _send_outcome(out, outcome)
            metrics.record_final_outcome(reason, outcome)
        metrics.END_TO_END_LATENCY.labels("forecast").observe(now - ingested_at)
        metrics.EVENT_TIME_LAG.labels("forecast").observe(max(0.0, now - bucket * settings.bucket_ms / 1000))


def _send_outcome(out: Outbox, outcome: dict) -> None:
    out.add(PROMO_OUTCOMES, outcome["trigger_id"].encode(), dumps(outcome))
    metrics.PROMO_OUTCOMES.labels(str(outcome["final"]).lower()).inc()


def send_outcome_updates(touched: dict[bytes, tuple[dict, object]], out: Outbox) -> None:
    """Interim outcomes of the triggers that the batch's sales were attributed to."""
    for key, (window, _) in touched.items():
        if window.get("promos"):
            for outcome in outcome_updates(key.decode(), window):
                _send_outcome(out, outcome)


@app.agent(promo_proposals)
async def decide_promotions(stream):
    """The guardrails over all SKUs; an admitted trigger is emitted and registered with its SKU's window."""
    async for events in batches(stream):
        out = Outbox()
        state = load_value(promo_guardrails, GUARDRAILS_KEY) or guardrails.new_state()
        last_event = None
        for event in events:
            message = event.message
            try:
                proposal = orjson.loads(message.value)
                verdict = admit(state, proposal, settings.promo)
                trigger = proposal["trigger"]
                update = registration(trigger, f"p{message.partition}", message.offset).to_wire()
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                _processing_error(out, message, exc)
                continue
            last_event = event
            if verdict != guardrails.ADMITTED:
                metrics.PROMO_REFUSED.labels(verdict).inc()
                continue
            key = trigger["sku"].encode()
            # re-sent as it was after a crash re-read (same id): the SKU's window ignores the re-registration
            out.add(PROMO_TRIGGERS, key, dumps(trigger))
            out.add(SKU_EVENTS, key, orjson.dumps(update))
            metrics.TRIGGERS_EMITTED.labels(trigger["reason"]).inc()
        if last_event is not None:
            _write(stream, promo_guardrails, GUARDRAILS_KEY, state, last_event, out)
        await out.flush(_producer())


@app.agent(user_events)
async def update_user_items(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        apply_batch(stream, user_items, "user-items", events,
                    lambda vector, wire: apply_user_update(vector, UserUpdate.from_wire(wire), settings), out,
                    before_write=send_affinity_changes)
        await out.flush(_producer())
        if events:
            metrics.PROCESSING_LATENCY.labels("user").observe((time.perf_counter() - started) / len(events))


def send_affinity_changes(touched: dict[bytes, tuple[dict, object]], out: Outbox) -> None:
    """Score the batch's users at once; send what changed in their top affinities to the SKUs' owners."""
    recommender = served.recommender
    if recommender.model is None:
        return
    started = time.perf_counter()
    users = [user.decode() for user in touched]
    vectors = [state for state, _ in touched.values()]
    changes = affinity_updates(recommender, users, vectors, settings.cf_affinity_top, _sku_partition)
    for partition, entries in changes.items():
        out.add(SKU_AFFINITIES, None, orjson.dumps(entries), partition=partition)
    metrics.SCORING_LATENCY.labels(recommender.name).observe(time.perf_counter() - started)


def _sku_partition(sku: str) -> int:
    return partition_for(sku.encode(), settings.partitions)


@app.agent(sku_affinities)
async def update_sku_candidates(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        changes: dict[bytes, tuple[list, object]] = {}
        for event in events:
            try:
                for sku, user, score, ts in orjson.loads(event.message.value):
                    changes.setdefault(sku.encode(), ([], event))[0].append((user, score, ts))
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                _processing_error(out, event.message, exc)
        for key, (sku_changes, event) in changes.items():
            entry = candidates.apply_changes(load_value(sku_candidates, key), sku_changes,
                                             settings.cf_candidates_per_sku, settings.interaction_half_life_ms)
            _write(stream, sku_candidates, key, entry, event, out)
        metrics.UPDATES_APPLIED.labels("sku-candidates").inc(len(changes))
        await out.flush(_producer())
        if events:
            metrics.PROCESSING_LATENCY.labels("candidates").observe((time.perf_counter() - started) / len(events))


_rate = metrics.RateMeter()
_lag_reported: set[tuple[str, str]] = set()


@app.timer(5.0)
async def report_rates() -> None:
    _rate.tick(metrics.consumed_total())
    consumer = app.consumer
    reported = set()
    for tp in consumer.assignment():
        highwater, position = consumer.highwater(tp), await consumer.position(tp)
        if highwater is not None and highwater >= 0 and position is not None:
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(max(0, highwater - position))
            reported.add(labels)
    for labels in _lag_reported - reported:  # partitions since moved to another worker: not ours to report
        metrics.CONSUMER_LAG.remove(*labels)
    _lag_reported.clear()
    _lag_reported.update(reported)


def _swapped(name: str, old: str, new: str, seconds: float) -> None:
    metrics.MODEL_SWAPS.labels(name, "swapped").inc()
    metrics.MODEL_LOAD_SECONDS.labels(name).observe(seconds)
    metrics.set_live_version(name, new, old)


hot_swap = HotSwap(served, ModelStore(settings.model_store), settings, _swapped,
                   lambda name, version, reason: metrics.MODEL_SWAPS.labels(name, "refused").inc())


def _model_versions_consumer():
    """Every record of model-versions, on every worker: no consumer group, so no worker misses one."""
    from kafka import KafkaConsumer

    return KafkaConsumer(settings.topic("model_versions"), group_id=None, auto_offset_reset="earliest",
                         enable_auto_commit=False, **settings.kafka_client_options())


@app.task
async def follow_model_versions() -> None:
    """Switch to each model's current version when model-versions says one was published."""
    for name in SERVED:
        metrics.set_live_version(name, served.version(name))
    consumer = await retrying(lambda: asyncio.to_thread(_model_versions_consumer), "follow model-versions")
    for name in SERVED:  # made current while this worker started
        await hot_swap.reconcile(name)
    while True:
        polled = await retrying(lambda: asyncio.to_thread(consumer.poll, 1000), "read model-versions")
        for name in {record.key.decode(errors="replace") for batch in polled.values() for record in batch
                     if record.key}:
            await hot_swap.reconcile(name)
