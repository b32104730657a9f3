"""OffsetContinuity: records the consumer skipped are read back and handled first, in offset order."""

import asyncio
from types import SimpleNamespace

import pytest
from faust.types import TP

from salescast.stream.delivery import continuity as continuity_module
from salescast.stream.delivery.continuity import OffsetContinuity, RecordEvent


def event(topic, partition, offset):
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset,
                                                   key=f"k{offset}".encode(), value=f"v{offset}".encode(),
                                                   tp=TP(topic, partition)))


class Broker:
    """The partitions' records, by offset; `absent` offsets hold none (compacted away)."""

    def __init__(self, absent=(), failures=0):
        self.reads = []
        self.absent = set(absent)
        self.failures = failures

    async def read(self, topic, partition, start, end, limit=None):
        self.reads.append((topic, partition, start, end))
        if self.failures:
            self.failures -= 1
            raise TimeoutError("broker away")
        first = 0 if start is None else start
        return [SimpleNamespace(topic=topic, partition=partition, offset=o, key=f"k{o}".encode(),
                                value=f"v{o}".encode(), timestamp=1_700_000_000_000)
                for o in range(first, end) if o not in self.absent][:limit]


def offsets(events):
    return [(e.message.partition, e.message.offset) for e in events]


def run(guard, events):
    return asyncio.run(guard.complete(events))


def committed(offsets):
    """The group's committed offsets as the broker gives them, counting how often they are asked."""
    async def ask():
        ask.calls += 1
        return offsets
    ask.calls = 0
    return ask


def test_contiguous_batches_pass_through_without_a_read():
    broker = Broker()
    asked = committed({("orders", 0): 10, ("orders", 1): 3})
    guard = OffsetContinuity(asked, broker.read)
    batch = [event("orders", 0, 10), event("orders", 0, 11), event("orders", 1, 3)]
    assert run(guard, batch) == batch
    assert run(guard, [event("orders", 0, 12)])[0].message.offset == 12
    assert broker.reads == []
    assert asked.calls == 1  # once per assignment, not per partition or batch


def test_skipped_records_are_read_back_and_come_first_in_offset_order():
    broker = Broker()
    counted = []
    guard = OffsetContinuity(committed({("inventory", 2): 35}), broker.read,
                             lambda topic, n: counted.append((topic, n)))
    run(guard, [event("inventory", 2, 35)])
    completed = run(guard, [event("inventory", 2, 44), event("inventory", 2, 45)])
    assert offsets(completed) == [(2, o) for o in range(36, 46)]
    assert all(isinstance(e, RecordEvent) for e in completed[:8])
    assert completed[0].message.value == b"v36" and completed[0].message.tp == TP("inventory", 2)
    assert broker.reads == [("inventory", 2, 36, 44)]
    assert counted == [("inventory", 8)]


def test_a_gap_on_the_first_record_after_an_assignment_is_measured_from_the_committed_offset():
    broker = Broker()
    asked = committed({("orders", 0): 40})
    guard = OffsetContinuity(asked, broker.read)
    assert offsets(run(guard, [event("orders", 0, 45)])) == [(0, o) for o in range(40, 46)]
    guard.reset()  # a rebalance: the consumer was sought back to the committed offset again
    guard.committed = committed({("orders", 0): 46})
    assert offsets(run(guard, [event("orders", 0, 46)])) == [(0, 46)]


def test_never_committed_means_from_the_start_of_the_log():
    broker = Broker()
    guard = OffsetContinuity(committed({}), broker.read)
    assert offsets(run(guard, [event("clicks", 1, 0), event("clicks", 1, 1)])) == [(1, 0), (1, 1)]
    assert broker.reads == []
    guard.reset()
    assert offsets(run(guard, [event("clicks", 2, 3)])) == [(2, 0), (2, 1), (2, 2), (2, 3)]
    assert broker.reads == [("clicks", 2, None, 3)]


def test_offsets_without_records_leave_the_gap_as_it_is():
    broker = Broker(absent=range(5, 9))  # a compacted topic
    counted = []
    guard = OffsetContinuity(committed({("inventory", 0): 5}), broker.read, lambda topic, n: counted.append(n))
    assert offsets(run(guard, [event("inventory", 0, 9)])) == [(0, 9)]
    assert counted == []


def test_a_redelivered_older_record_is_passed_on_and_does_not_move_the_mark_back():
    broker = Broker()
    guard = OffsetContinuity(committed({("orders", 0): 0}), broker.read)
    run(guard, [event("orders", 0, 0), event("orders", 0, 1), event("orders", 0, 2)])
    assert offsets(run(guard, [event("orders", 0, 1), event("orders", 0, 3)])) == [(0, 1), (0, 3)]
    assert broker.reads == []


def test_a_failed_read_is_retried_until_the_broker_answers(monkeypatch):
    monkeypatch.setattr(continuity_module, "RETRY_FIRST_S", 0.001)
    broker = Broker(failures=2)
    guard = OffsetContinuity(committed({("orders", 3): 0}), broker.read)
    assert offsets(run(guard, [event("orders", 3, 2)])) == [(3, 0), (3, 1), (3, 2)]
    assert len(broker.reads) == 3


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


async def handle(guard, events, fail=False):
    """An agent's turn at one batch, as salescast.stream.delivery.offsets.batches frames it."""
    batch = await guard.complete(events)
    with guard.handling(batch):
        if fail:
            raise RuntimeError("the agent's body raised")
    return batch


def test_offsets_become_committable_only_once_their_batch_was_handled():
    async def scenario():
        guard = OffsetContinuity(committed({("orders", 0): 10}), Broker().read)
        assigned = [TP("orders", 0), TP("orders", 1)]
        batch = await guard.complete([event("orders", 0, 10), event("orders", 0, 11)])
        with guard.handling(batch):
            assert await guard.commit_offsets(assigned) == {}  # in flight: not yet
            assert not guard._idle.is_set()
        assert await guard.commit_offsets(assigned) == {TP("orders", 0): 12}
        with pytest.raises(RuntimeError):
            await handle(guard, [event("orders", 0, 12), event("orders", 1, 0)], fail=True)
        assert await guard.commit_offsets(assigned) == {TP("orders", 0): 12}  # the failed batch: not handled
        # the agent restarted on the records after it: the failed ones are read back in front of them
        assert offsets(await handle(guard, [event("orders", 0, 13), event("orders", 1, 1)])) == [
            (0, 12), (0, 13), (1, 0), (1, 1)]
        assert await guard.commit_offsets(assigned) == {TP("orders", 0): 14, TP("orders", 1): 2}
        guard.on_committed({TP("orders", 0): 14, TP("orders", 1): 2})
        assert await guard.commit_offsets(assigned) == {}  # nothing new since the commit
        assert await guard.wait_idle(0.01)
    asyncio.run(scenario())


def test_only_assigned_partitions_past_the_groups_offset_are_committed():
    async def scenario():
        guard = OffsetContinuity(committed({("orders", 0): 10, ("orders", 1): 50}), Broker().read)
        await handle(guard, [event("orders", 0, 10), event("orders", 1, 49)])  # 49: re-delivered, handled before
        assert await guard.commit_offsets([TP("orders", 0), TP("orders", 1)]) == {TP("orders", 0): 11}
        assert await guard.commit_offsets([TP("orders", 1)]) == {}  # orders/0 moved to another worker
    asyncio.run(scenario())


def test_a_refetched_gap_is_committed_with_the_batch_that_filled_it():
    async def scenario():
        guard = OffsetContinuity(committed({("clicks", 2): 5}), Broker().read)
        await handle(guard, [event("clicks", 2, 830)])
        assert await guard.commit_offsets([TP("clicks", 2)]) == {TP("clicks", 2): 831}
    asyncio.run(scenario())


WAITING = "waiting"


async def started(guard, events, wait_s=0.05):
    """What `complete` hands the agent within `wait_s` (WAITING: no batch may start yet)."""
    try:
        return await asyncio.wait_for(asyncio.shield(guard.complete(events)), wait_s)
    except asyncio.TimeoutError:
        return WAITING


def test_no_batch_starts_from_a_handover_commit_until_the_next_assignment():
    async def scenario():
        guard = OffsetContinuity(committed({("orders", 0): 0}), Broker().read)
        assert offsets(await started(guard, [event("orders", 0, 0)])) == [(0, 0)]
        guard.close()  # a revocation's commit
        waiting = asyncio.ensure_future(guard.complete([event("orders", 0, 1)]))
        assert await started(guard, [event("orders", 0, 2)]) == WAITING
        guard.reset()  # the rebalance completed
        assert await waiting is None  # taken before it: read again from the committed offsets
        assert offsets(await started(guard, [event("orders", 0, 0)])) == [(0, 0)]
    asyncio.run(scenario())


def test_after_a_stops_commit_no_batch_starts_even_if_an_assignment_completes():
    async def scenario():
        guard = OffsetContinuity(committed({}), Broker().read)
        guard.close(for_good=True)
        guard.reset()
        assert await started(guard, [event("orders", 0, 0)]) == WAITING
    asyncio.run(scenario())


def test_a_batch_whose_read_back_outlasted_an_assignment_is_dropped_and_leaves_no_mark():
    async def scenario():
        broker = Broker()
        guard = OffsetContinuity(committed({("orders", 0): 5}), broker.read)

        async def read_during_a_rebalance(*args, **kwargs):
            guard.reset()
            return await broker.read(*args, **kwargs)

        guard.read_range = read_during_a_rebalance
        assert await guard.complete([event("orders", 0, 9)]) is None
        guard.read_range = broker.read
        # measured from the committed offset again, not from the dropped batch's last record
        assert offsets(await guard.complete([event("orders", 0, 7)])) == [(0, 5), (0, 6), (0, 7)]
    asyncio.run(scenario())


class Channel:
    """What salescast.stream.delivery.offsets.batches keeps of an agent's stream: its queue."""

    def __init__(self):
        self.queue = asyncio.Queue()


def test_an_agent_is_handed_no_batch_taken_after_the_stops_commit(monkeypatch):
    from salescast.stream.delivery import offsets as offsets_module

    guard = OffsetContinuity(committed({("orders", 0): 0}), Broker().read)
    monkeypatch.setattr(offsets_module, "continuity", guard)

    class Stream:
        channel = Channel()

        async def take_events(self, size, within):
            yield [event("orders", 0, 0), event("orders", 0, 1)]
            guard.close(for_good=True)  # the stop's commit came while the next batch was being taken
            yield [event("orders", 0, 2)]

    async def scenario():
        handled = []

        async def agent():
            async for batch in offsets_module.batches(Stream()):
                handled.extend(offsets(batch))

        task = asyncio.ensure_future(agent())
        await asyncio.sleep(0.05)
        assert not task.done()  # waiting (until Faust stops it), not handling
        task.cancel()
        assert handled == [(0, 0), (0, 1)]
        assert await guard.commit_offsets([TP("orders", 0)]) == {TP("orders", 0): 2}
    asyncio.run(scenario())


AGENTS = {"orders", "clicks", "inventory"}


class Consumer:
    def __init__(self, ends):
        self.ends = ends
        self.sought = []

    def highwater(self, tp):
        return self.ends.get(tp)

    async def seek(self, tp, offset):
        self.sought.append((tp, offset))


def test_a_partition_whose_records_stopped_short_of_its_end_is_sought_back_to_the_first_one_missing():
    async def scenario():
        clock = Clock()
        stalled = []
        broker = Broker()
        guard = OffsetContinuity(committed({("orders", 0): 100, ("orders", 1): 7}), broker.read,
                                 on_stalled=stalled.append, clock=clock, stall_after_s=10)
        orders0, orders1 = TP("orders", 0), TP("orders", 1)
        consumer = Consumer({orders0: 130, orders1: 7})
        await handle(guard, [event("orders", 0, 100), event("orders", 0, 101)])
        clock.now += 9
        assert await guard.restart_stalled([orders0, orders1], {"orders"}, consumer.highwater, consumer.seek) == []
        clock.now += 2  # no record for 11 s; orders/0 stopped at offset 101, its log reaches 129
        sought = await guard.restart_stalled([orders0, orders1], {"orders"}, consumer.highwater, consumer.seek)
        assert sought == [orders0]
        assert consumer.sought == [(orders0, 102)]  # orders/1 is at its end: nothing to do
        assert broker.reads == [("orders", 0, 102, 130)] and stalled == ["orders"]
        clock.now += 5  # the seek is given time to bring the records
        assert await guard.restart_stalled([orders0, orders1], {"orders"}, consumer.highwater, consumer.seek) == []
        await handle(guard, [event("orders", 0, o) for o in range(102, 130)])
        clock.now += 60
        assert await guard.restart_stalled([orders0, orders1], {"orders"}, consumer.highwater, consumer.seek) == []
        assert consumer.sought == [(orders0, 102)]
    asyncio.run(scenario())


def test_a_partition_never_heard_from_after_an_assignment_is_sought_back_from_its_committed_offset():
    async def scenario():
        clock = Clock()
        guard = OffsetContinuity(committed({("inventory", 3): 40}), Broker().read, clock=clock, stall_after_s=10)
        # the assignment holds the tables' changelogs too: those are Faust's to read
        consumer = Consumer({TP("inventory", 3): 60, TP("clicks", 0): 3, TP("app-sku-windows-changelog", 0): 9})
        guard.reset()
        clock.now += 11
        assert await guard.restart_stalled(consumer.ends, AGENTS, consumer.highwater, consumer.seek) == [
            TP("inventory", 3), TP("clicks", 0)]
        assert consumer.sought == [(TP("inventory", 3), 40), (TP("clicks", 0), 0)]  # never committed: from 0
    asyncio.run(scenario())


def test_a_tail_of_offsets_without_records_is_not_sought_back_to():
    async def scenario():
        clock = Clock()
        broker = Broker(absent=range(20, 25))  # transaction markers, or compacted away
        guard = OffsetContinuity(committed({("inventory", 0): 20}), broker.read, clock=clock, stall_after_s=10)
        consumer = Consumer({TP("inventory", 0): 25})
        clock.now += 11
        assert await guard.restart_stalled(consumer.ends, AGENTS, consumer.highwater, consumer.seek) == []
        clock.now += 11
        assert await guard.restart_stalled(consumer.ends, AGENTS, consumer.highwater, consumer.seek) == []
        assert consumer.sought == [] and len(broker.reads) == 1  # looked once, then known to be empty
    asyncio.run(scenario())


def test_a_stalled_partition_is_sought_back_though_records_of_others_keep_arriving():
    """Silence is per partition. It was worker-wide, and the marks each worker resends on the SKU topic
    every 10 s kept it from ever reaching 10 s: a partition whose last records Faust skipped after a
    restart was never read again, and its committed offset stayed short of its end."""
    async def scenario():
        clock = Clock()
        guard = OffsetContinuity(committed({("orders", 0): 100, ("sku-events", 0): 0}), Broker().read,
                                 clock=clock, stall_after_s=10)
        orders0 = TP("orders", 0)
        consumer = Consumer({orders0: 130, TP("sku-events", 0): 10_000})
        await handle(guard, [event("orders", 0, 100)])
        for offset in range(9):  # the marks, resent every 10 s, arrive within every 10 s
            clock.now += 1
            await handle(guard, [event("sku-events", 0, offset)])
            assert await guard.restart_stalled(consumer.ends, AGENTS, consumer.highwater, consumer.seek) == []
        clock.now += 2
        await handle(guard, [event("sku-events", 0, 9)])
        assert await guard.restart_stalled(consumer.ends, AGENTS, consumer.highwater, consumer.seek) == [orders0]
        assert consumer.sought == [(orders0, 101)]
    asyncio.run(scenario())
