"""Users: interaction vectors updated per user, their top affinities sent to the SKUs' owners, and each
SKU's index of candidate users (who to target when a SKU is promoted)."""

from __future__ import annotations

import time

import orjson

from salescast.models.cf import candidates
from salescast.stream import metrics
from salescast.stream.agents.skus import sku_partition
from salescast.stream.app import app, settings
from salescast.stream.core.state import UserUpdate, apply_user_update, json_lists
from salescast.stream.delivery import writes
from salescast.stream.delivery.offsets import batches
from salescast.stream.delivery.outbox import Outbox
from salescast.stream.live import served
from salescast.stream.serving.recommender import affinity_updates
from salescast.stream.serving.registry import CF
from salescast.stream.tables import sku_candidates, user_items
from salescast.stream.topics import SKU_AFFINITIES, sku_affinities, user_events


@app.agent(user_events)
async def update_user_items(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        keyed = writes.keyed_updates(events, out, "usr")
        writes.apply_batch(stream, user_items, "user-items", keyed,
                           lambda vector, wire: apply_user_update(vector, UserUpdate.from_wire(wire), settings),
                           out, before_write=send_affinity_changes)
        await out.flush(writes.producer())
        await writes.write_back_when_full()
        if keyed:
            metrics.PROCESSING_LATENCY.labels("user").observe((time.perf_counter() - started) / len(keyed))


def send_affinity_changes(touched: dict[bytes, tuple[dict, object]], out: Outbox) -> None:
    """Score the batch's users at once; send what changed in their top affinities to the SKUs' owners."""
    recommender = served[CF]
    if recommender.model is None:
        return
    started = time.perf_counter()
    users = [user.decode() for user in touched]
    vectors = [state for state, _ in touched.values()]
    changes = affinity_updates(recommender, users, vectors, settings.recommendations.affinity_top,
                               lambda sku: sku_partition(sku.encode()))
    for partition, entries in changes.items():
        for record in json_lists(entries):
            out.add(SKU_AFFINITIES, None, record, partition=partition)
    metrics.SCORING_LATENCY.labels(recommender.name).observe(time.perf_counter() - started)


@app.agent(sku_affinities)
async def update_sku_candidates(stream):
    async for events in batches(stream):
        started = time.perf_counter()
        out = Outbox()
        changes: dict[str, tuple[list, object]] = {}  # sku -> its (user, score, ts) changes, the first event
        for event in events:
            try:
                for sku, user, score, ts in orjson.loads(event.message.value):
                    grouped = changes.get(sku)
                    if grouped is None:
                        changes[sku] = grouped = ([], event)
                    grouped[0].append((user, score, ts))
            except Exception as exc:  # noqa: BLE001 - a corrupt internal record is kept, never fatal
                writes.processing_error(out, event.message, exc)
        for sku, (sku_changes, event) in changes.items():
            key = sku.encode()
            entry = candidates.apply_changes(writes.load_value(sku_candidates, key), sku_changes,
                                             settings.recommendations.candidates_per_sku,
                                             settings.recommendations.interaction_half_life_ms)
            writes.write(stream, sku_candidates, key, entry, event)
        metrics.UPDATES_APPLIED.labels("sku-candidates").inc(len(changes))
        await out.flush(writes.producer())
        if events:
            metrics.PROCESSING_LATENCY.labels("candidates").observe((time.perf_counter() - started) / len(events))
