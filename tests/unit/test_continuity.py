"""OffsetContinuity: records the consumer skipped are read back and handled first, in offset order."""

import asyncio
from types import SimpleNamespace

from faust.types import TP

from stream import continuity as continuity_module
from stream.continuity import OffsetContinuity, RefetchedEvent


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

    async def read(self, topic, partition, start, end):
        self.reads.append((topic, partition, start, end))
        if self.failures:
            self.failures -= 1
            raise TimeoutError("broker away")
        first = 0 if start is None else start
        return [SimpleNamespace(topic=topic, partition=partition, offset=o, key=f"k{o}".encode(),
                                value=f"v{o}".encode(), timestamp=1_700_000_000_000)
                for o in range(first, end) if o not in self.absent]


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
    assert all(isinstance(e, RefetchedEvent) for e in completed[:8])
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
