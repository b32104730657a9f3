"""Where each agent's partitions stand: records read back or sought back when Faust skips them, and
offsets committed once the agent has handled them (salescast.stream.delivery.continuity says why Faust's
acks are not used).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import weakref

from salescast.stream.kafka import RangeReader, committed_offsets
from salescast.stream import metrics
from salescast.stream.app import app, settings
from salescast.stream.delivery import writes
from salescast.stream.delivery.continuity import OffsetContinuity, RecordEvent
from salescast.stream.delivery.outbox import DELIVERIES, DeliveryFailed
from salescast.stream import faust_fixes

# Faust events an agent takes at once: each holds one fetch of one partition, up to broker_max_poll_records
# records (stream.app), or a single record (the unit tests' test_context)
FETCHES_PER_BATCH = 16
BATCH_WITHIN_S = 0.01
STALL_CHECK_S = 5.0
# a revocation or a stop waits this long for the batches in flight before it commits what they handled
HANDOVER_WAIT_S = min(10.0, app.conf.broker_session_timeout / 2)
# a stop waits longer (nothing else is waiting on it), then stops the agents still handling a batch
STOP_WAIT_S = 30.0
log = logging.getLogger(__name__)

_range_reader = RangeReader(settings)


async def _read_range(topic: str, partition: int, start: int | None, end: int, limit: int | None = None):
    return await asyncio.to_thread(_range_reader.read, topic, partition, start, end, limit)


async def _committed_offsets() -> dict[tuple[str, int], int]:
    """Asked of the broker: Faust hands records over during recovery, before its own record of the
    committed offsets is filled in."""
    return await asyncio.to_thread(committed_offsets, settings, settings.kafka.app_id)


continuity = OffsetContinuity(_committed_offsets, _read_range,
                              lambda topic, count: metrics.RECORDS_REFETCHED.labels(topic).inc(count),
                              lambda topic: metrics.PARTITIONS_SOUGHT_BACK.labels(topic).inc())


_agent_channels: weakref.WeakSet = weakref.WeakSet()


def _one_per_record(events: list) -> list:
    """The records of the fetches the consumer handed over whole (faust_fixes.FetchedRecords), each as
    an event of its own, in offset order, among any events of a single record."""
    if not any(type(event.message) is faust_fixes.FetchedRecords for event in events):
        return events
    opened = []
    for event in events:
        if type(event.message) is faust_fixes.FetchedRecords:
            opened += [RecordEvent(message) for message in event.message.records]
        else:
            opened.append(event)
    return opened


async def batches(stream):
    """Every agent's batches: `take_events`, a fetch's records at a time, with any records Faust skipped
    read back in front, and committable once the agent asks for the next batch."""
    _agent_channels.add(stream.channel)
    async for events in stream.take_events(FETCHES_PER_BATCH, within=BATCH_WITHIN_S):
        batch = await continuity.complete(_one_per_record(events))
        if batch is None:
            continue  # taken before a rebalance: read again from the committed offsets, by whoever owns them
        with continuity.handling(batch):
            yield batch


async def commit_handled() -> None:
    offsets = await continuity.commit_offsets(app.consumer.assignment())
    # what the handled batches changed in the tables, into RocksDB and handed to the producer; then every
    # record handed to the producer confirmed on the broker (the changelogs and every output), then the
    # offsets committed
    await writes.write_back()
    try:
        await DELIVERIES.confirm(writes.producer().flush)
    except DeliveryFailed as failure:
        _stop_for_good(failure)
        raise
    if offsets and await faust_fixes.commit(app, offsets):
        continuity.on_committed(offsets)


_stopping_for: list[DeliveryFailed] = []  # the failure already reported (DELIVERIES keeps raising it)


def _stop_for_good(failure: DeliveryFailed) -> None:
    """A record was lost on its way out: commit nothing more (DELIVERIES raises from now on), and stop
    gracefully, so the tables close cleanly, for a restart from the last commit, which reads its input
    again. stream.worker.run exits non-zero."""
    if _stopping_for:
        return
    _stopping_for.append(failure)
    log.error("%s", failure)
    metrics.DELIVERY_FAILURES.inc()
    if not continuity.stopping:
        continuity.close(for_good=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the Faust worker's own graceful stop


@app.timer(app.conf.broker_commit_interval)
async def commit_periodically() -> None:
    if not app.rebalancing:
        await commit_handled()


def _quiet() -> bool:
    """No batch being handled and no record waiting in any agent's queue. Only then does a silent
    partition mean records went missing: under load a partition can wait its turn for longer (Faust
    hands records over one at a time, and waits on whichever agent's queue is full)."""
    return continuity.idle and all(channel.queue.empty() for channel in _agent_channels)


async def _seek(tp, offset: int) -> None:
    await faust_fixes.seek(app, tp, offset)


@app.timer(STALL_CHECK_S)
async def seek_back_stalled_partitions() -> None:
    if app.rebalancing or app.in_recovery or not app.flow_control.is_active() or not _quiet():
        return
    consumer = app.consumer
    await continuity.restart_stalled(consumer.assignment(), app.agent_topic_names, consumer.highwater, _seek)


async def commit_when_idle(moment: str, wait_s: float = HANDOVER_WAIT_S, for_good: bool = False) -> bool:
    """Start no more batches (until the next assignment; `for_good`: ever), wait for those in flight,
    then commit what the agents handled: before a revocation (so another worker does not read it
    again) and at a graceful stop (so the next start does not). False: a batch was still in flight
    after `wait_s`."""
    continuity.close(for_good)
    idle = await continuity.wait_idle(wait_s)
    if not idle:
        log.warning("a batch was still being handled %.0f s into %s; its records will be read again",
                    wait_s, moment)
    try:
        await commit_handled()
    except Exception as exc:  # noqa: BLE001 - the rebalance or stop goes on: what is not committed is read again
        log.warning("could not commit at %s (%s: %s); those records will be read again", moment,
                    type(exc).__name__, exc)
    return idle


@app.on_partitions_revoked.connect
async def _commit_before_revocation(sender, revoked, **kwargs) -> None:
    await commit_when_idle("a rebalance")
    writes.forget_cached()  # written back above (or, if that failed, read again from the last commit)


async def _commit_before_stopping() -> None:
    if not await commit_when_idle("the stop", STOP_WAIT_S, for_good=True):
        # Faust closes the tables next, and a batch still running would read every key as absent
        for agent in app.agents.values():
            await agent.stop()


app.before_consumer_stops.append(_commit_before_stopping)


@app.on_rebalance_complete.connect
async def _start_again_from_committed(sender, **kwargs) -> None:
    continuity.reset()
