"""SKU windows: updates applied per SKU, and bucket close with a forecast for every live SKU.

Marks (stream.core.watermarks) arrive on every partition of the SKU topic
behind the updates their sender routed there; each partition closes its SKUs'
buckets up to its own low watermark, so no bucket closes while its updates are
still on their way.
"""

from __future__ import annotations

import time

from salescast.models import windows
from salescast.stream import metrics
from salescast.stream.agents.promotions import send_outcome, send_outcome_updates
from salescast.stream.app import app, settings
from salescast.stream.core.close import close_buckets
from salescast.stream.core.state import SkuUpdate, apply_sku_update
from salescast.stream.core.watermarks import LowWatermark, decode_marks, is_marks
from salescast.stream.core.contract import dumps
from salescast.stream.delivery import writes
from salescast.stream.delivery.offsets import batches
from salescast.stream.delivery.outbox import Outbox, partition_for
from salescast.stream.live import promoter, served
from salescast.stream.serving.registry import LSTM, PROMO
from salescast.stream.tables import sku_windows
from salescast.stream.topics import FORECASTS, PROMO_PROPOSALS, sku_events

CLOSE_CHUNK = 2048  # SKUs scored in one kernel call at bucket close


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
                self.add(sku_partition(key), key)
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
            self.lows[partition] = LowWatermark(settings.time.bucket_ms, settings.time.idle_timeout_ms)
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
async def _forget_partitions(sender, **kwargs) -> None:
    partition_index.reset()
    closing_state.reset()


def sku_partition(sku: bytes) -> int:
    return partition_for(sku, settings.kafka.partitions)


@app.agent(sku_events)
async def update_sku_windows(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        ticks: dict[int, tuple[float, object]] = {}
        updates = []
        for event in events:
            message = event.message
            if not is_marks(message.key, message.value):
                updates.append(event)
                continue
            try:
                decoded = decode_marks(message.value)
                if decoded is None:
                    continue
                marks, sent_at, counts = decoded
                closing_state.low(message.partition).update(marks, sent_at, counts)
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                writes.processing_error(out, message, exc)
                continue
            ticks[message.partition] = (sent_at, event)

        def apply(window, wire):
            update = SkuUpdate.from_wire(wire)
            close_before = closing_state.closed_before.get(sku_partition(update.sku.encode()))
            return apply_sku_update(window, update, settings, close_before)

        keyed = writes.keyed_updates(updates, out, "sku")
        touched = writes.apply_batch(stream, sku_windows, "sku-windows", keyed, apply, out,
                                     before_write=send_outcome_updates)
        for key, (_, event) in touched.items():
            partition_index.add(event.message.partition, key)
        for partition, (sent_at, event) in ticks.items():
            bucket = closing_state.to_close(partition)
            if bucket is not None:
                await _close_partition(stream, partition, bucket, sent_at, event, out)
                closing_state.closed_before[partition] = bucket
        await out.flush(writes.producer())
        await writes.write_back_when_full()
        if keyed:
            metrics.PROCESSING_LATENCY.labels("sku").observe((time.perf_counter() - started) / len(keyed))


async def _close_partition(stream, partition: int, bucket: int, ingested_at: float, event, out: Outbox) -> None:
    """Close every SKU of `partition` whose open buckets the low watermark passed; forecast each live one.

    In chunks of CLOSE_CHUNK SKUs, each handed to the producer and delivered
    before the next is read, so a close over 100,000 SKUs holds a chunk of
    forecasts in memory, and no more windows than the table's cache does.
    """
    chunk = []
    now_ms = _clock_ms(partition)
    for key in list(partition_index.keys_for(partition)):
        window = writes.load_value(sku_windows, key)
        if window is not None and windows.buckets_to_close(window, bucket):
            chunk.append((key.decode(), window))
        if len(chunk) >= CLOSE_CHUNK:
            _close_chunk(stream, chunk, bucket, ingested_at, event, out, now_ms)
            await out.flush(writes.producer(), delivered=True)
            await writes.write_back_when_full()
            chunk = []
    if chunk:
        _close_chunk(stream, chunk, bucket, ingested_at, event, out, now_ms)


def _clock_ms(partition: int) -> int | None:
    """"Now" for the promotions' occasion: the wall clock, or with SALESCAST_CLOCK=events the stream's own
    time, its low watermark (not the newest event read: the ingest side runs days ahead of the closes in a
    fast simulation, and every close looked stale against it, so the demo promoted nothing)."""
    if settings.time.clock == "events":
        return closing_state.low(partition).value()
    return int(time.time() * 1000)


def _close_chunk(stream, chunk: list[tuple[str, dict]], bucket: int, ingested_at: float, event, out: Outbox,
                 now_ms: int | None) -> None:
    scoring_started = time.perf_counter()
    forecaster = served[LSTM]
    promoter.model = served[PROMO]  # the version live now: a swap lands between chunks
    closed = close_buckets(chunk, bucket, settings, forecaster, promoter, now_ms)
    if closed:
        metrics.SCORING_LATENCY.labels(forecaster.name).observe(time.perf_counter() - scoring_started)
    now = time.time()
    for sku_closed in closed:
        key = sku_closed.sku.encode()
        writes.write(stream, sku_windows, key, sku_closed.window, event)
        for record in sku_closed.forecasts:
            out.add(FORECASTS, key, dumps(record))
            metrics.FORECASTS_EMITTED.labels(record["model"]["name"]).inc()
        if sku_closed.proposal is not None:
            out.add(PROMO_PROPOSALS, key, dumps(sku_closed.proposal), partition=0)
            metrics.PROMO_PROPOSALS.labels(sku_closed.proposal["trigger"]["reason"]).inc()
        for reason, outcome in sku_closed.outcomes:
            send_outcome(out, outcome)
            metrics.record_final_outcome(reason, outcome)
        metrics.END_TO_END_LATENCY.labels("forecast").observe(now - ingested_at)
        metrics.EVENT_TIME_LAG.labels("forecast").observe(max(0.0, now - bucket * settings.time.bucket_ms / 1000))
