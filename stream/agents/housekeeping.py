"""Housekeeping: the consumption rate and lag gauges, and following model-versions to hot-swap models."""

from __future__ import annotations

import asyncio
import logging

from salescast.stream import metrics
from salescast.stream.app import app, settings
from salescast.stream.delivery.continuity import retrying
from salescast.stream.core.health import BrokerReachability
from salescast.stream.kafka import client_options, reachable
from salescast.stream.live import hot_swap, report_served, served
from salescast.stream.serving.registry import KINDS

SERVED_REPORT_INTERVAL_S = 30.0
BROKER_PROBE_S = 2.0
broker = BrokerReachability()  # read by stream.views (/readyz)
_rate = metrics.RateMeter()
log = logging.getLogger(__name__)
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


@app.timer(BROKER_PROBE_S)
async def probe_broker() -> None:
    change = broker.observe(await asyncio.to_thread(reachable, settings, 1.0))
    metrics.BROKER_REACHABLE.set(int(broker.reachable))
    if change == "lost":
        metrics.BROKER_OUTAGES.inc()
        log.error("no broker at %s answers: waiting for it (nothing is committed meanwhile; the worker reads on "
                  "from its last commit when one is back)", settings.kafka.bootstrap_servers)
    elif change == "back":
        log.warning("a broker at %s answers again: catching up", settings.kafka.bootstrap_servers)


def _model_versions_consumer():
    """Every record of model-versions, on every worker: no consumer group, so no worker misses one."""
    from kafka import KafkaConsumer

    return KafkaConsumer(settings.kafka.topic("model_versions"), group_id=None, auto_offset_reset="earliest",
                         enable_auto_commit=False, **client_options(settings))


@app.task
async def follow_model_versions() -> None:
    """Switch to each model's current version when model-versions says one was published."""
    for name in KINDS:
        metrics.set_live_version(name, served.version(name))
    consumer = await retrying(lambda: asyncio.to_thread(_model_versions_consumer), "follow model-versions")
    for name in KINDS:  # made current while this worker started
        await hot_swap.reconcile(name)
    await asyncio.to_thread(report_served)
    while True:
        polled = await retrying(lambda: asyncio.to_thread(consumer.poll, 1000), "read model-versions")
        names = {record.key.decode(errors="replace") for batch in polled.values() for record in batch if record.key}
        for name in names:
            await hot_swap.reconcile(name)
        if names:
            await asyncio.to_thread(report_served)


@app.timer(SERVED_REPORT_INTERVAL_S)
async def report_served_periodically() -> None:
    """Refreshed, so `salescast models list` can tell a worker that stopped reporting."""
    await asyncio.to_thread(report_served)
