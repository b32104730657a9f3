"""stream/faust_fixes.py: the workarounds of faust-streaming behaviours, and a canary for a Faust upgrade."""

from importlib.metadata import version

import pytest
from faust.types import TP

from salescast.stream import faust_fixes
from salescast.stream.app import app
from salescast.stream.faust_fixes import _ReadOffsets
from salescast.stream.topics import clicks, inventory, orders, promo_proposals, sku_affinities, sku_events, user_events


@pytest.mark.parametrize(("owner", "attribute"), faust_fixes.RELIED_ON,
                         ids=[f"{owner.__name__}.{attribute}" for owner, attribute in faust_fixes.RELIED_ON])
def test_canary_every_private_faust_attribute_the_worker_relies_on_still_exists(owner, attribute):
    """Fails on a Faust upgrade that moved one: read stream/faust_fixes.py, then check each workaround
    still needs doing and is done right against the new code (faust_fixes says why each is there)."""
    assert hasattr(owner, attribute), (
        f"faust-streaming {version('faust-streaming')} has no {owner.__name__}.{attribute}: "
        "stream/faust_fixes.py relies on it")


def test_canary_the_consumer_and_producer_instances_have_what_faust_fixes_uses():
    consumer = app.consumer
    assert isinstance(consumer._read_offset, _ReadOffsets)  # set by _Consumer._reset_state
    assert hasattr(consumer, "_thread") and hasattr(consumer._thread, "seek_wait")
    assert hasattr(app.producer, "_producer")


async def test_the_workers_consumer_asks_the_broker_to_hold_an_empty_fetch_only_briefly():
    """A record reaching a partition left out of the fetch in flight waits for that fetch to come back:
    with Faust's 1,500 ms, up to 1.5 s on each hop of a bucket close."""
    thread = app.consumer._thread
    assert isinstance(thread, faust_fixes._ConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)  # not started: nothing reaches a broker
    assert consumer._fetch_max_wait_ms == faust_fixes.FETCH_MAX_WAIT_MS <= 50
    await consumer.stop()


def test_the_agents_topics_have_no_last_read_offset_to_drop_re_read_records_by():
    offsets = _ReadOffsets({"orders"})
    offsets[TP("orders", 0)] = 1562  # what a fetch before the recovery's seek left
    offsets[TP("app-sku-windows-changelog", 0)] = 40
    # Faust's fetch loop delivers a record unless it is at or below this mark
    assert offsets[TP("orders", 0)] is None
    assert offsets[TP("app-sku-windows-changelog", 0)] == 40  # the tables' changelogs stay Faust's to filter
    assert offsets[TP("clicks", 3)] is None  # nothing read yet, as with Faust's own mapping


def test_the_workers_consumer_uses_it_for_every_topic_an_agent_reads():
    assert app.agent_topic_names == {topic.get_topic_name() for topic in (
        orders, clicks, inventory, sku_events, user_events, sku_affinities, promo_proposals)}
    assert isinstance(app.consumer._read_offset, _ReadOffsets)
    assert app.consumer._read_offset.unfiltered_topics is app.agent_topic_names


def test_no_module_outside_faust_fixes_touches_a_private_faust_attribute():
    """The one-room rule, checked: `app.`/`stream.`/`consumer.`/`producer.`/`table.` followed by `_name`."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    private = re.compile(r"\b(app|stream|consumer|producer|table|tables|data|agent)\s*\.\s*_[a-z]\w*")
    offenders = []
    for path in root.joinpath("stream").rglob("*.py"):  # Faust is the worker's alone
        if path.name == "faust_fixes.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "move these into stream/faust_fixes.py:\n" + "\n".join(offenders)


class _Record:
    """What aiokafka's fetcher returns for a record (the fields Faust's _to_message reads)."""

    def __init__(self, topic, partition, offset):
        self.topic, self.partition, self.offset = topic, partition, offset
        self.timestamp, self.timestamp_type, self.headers = 1_700_000_000_000 + offset, 0, []
        self.key, self.value, self.checksum = f"k{offset}".encode(), f"v{offset}".encode(), None
        self.serialized_key_size = self.serialized_value_size = 2


async def test_a_fetch_of_an_agents_topic_reaches_faust_as_one_message_and_the_agent_as_its_records(monkeypatch):
    from faust.transport.drivers import aiokafka as faust_kafka

    from salescast.stream.delivery.offsets import _one_per_record

    agents_topic, changelog = orders.get_topic_name(), "app-sku-windows-changelog"
    fetched = {TP(agents_topic, 2): [_Record(agents_topic, 2, o) for o in (7, 8, 9)],
               TP(agents_topic, 3): [_Record(agents_topic, 3, 4)],
               TP(changelog, 0): [_Record(changelog, 0, o) for o in (1, 2)]}

    async def faust_fetch(self, timeout):
        return fetched, set(fetched)

    monkeypatch.setattr(faust_kafka.Consumer, "_wait_next_records", faust_fetch)
    consumer = app.consumer
    records, _ = await consumer._wait_next_records(1.0)
    messages = {tp: [consumer._to_message(tp, record) for record in batch] for tp, batch in records.items()}
    (whole,) = messages[TP(agents_topic, 2)]
    assert isinstance(whole, faust_fixes.FetchedRecords) and whole.offset == 9 and whole.tp == TP(agents_topic, 2)
    assert [m.offset for m in whole.records] == [7, 8, 9] and whole.records[0].value == b"v7"
    assert not isinstance(messages[TP(agents_topic, 3)][0], faust_fixes.FetchedRecords)  # one record: as is
    assert [m.offset for m in messages[TP(changelog, 0)]] == [1, 2]  # Faust's own topics: one by one

    class Event:
        def __init__(self, message):
            self.message = message

    single = Event(messages[TP(agents_topic, 3)][0])
    opened = _one_per_record([Event(whole), single])
    assert [(e.message.partition, e.message.offset, e.message.key) for e in opened] == [
        (2, 7, b"k7"), (2, 8, b"k8"), (2, 9, b"k9"), (3, 4, b"k4")]
    assert opened[-1] is single


class _CountingDB(dict):
    """A partition's database: a dict that counts the lookups made in it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.lookups = 0

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)

    def key_may_exist(self, key) -> bool:  # rocksdict's bloom-filter probe, one lookup too
        self.lookups += 1
        return key in self


def test_a_key_is_read_from_its_own_partitions_store_only():
    """Faust's RocksDB store probes every partition's database for a key it has not indexed; the
    worker's reads (stream.delivery.writes) go to the key's own partition, where every write is filed."""
    from faust.stores.rocksdb import Store

    from salescast.stream.tables import sku_windows

    dbs = {partition: _CountingDB() for partition in range(8)}
    dbs[3][b"sku-1"] = b"{}"
    store = Store("rocksdb://", app, sku_windows)
    store._dbs = dbs
    table = type("Table", (), {"data": store})()
    assert faust_fixes.read_in_partition(table, b"sku-1", 3) == b"{}"
    assert faust_fixes.read_in_partition(table, b"sku-new", 5) is None
    assert [db.lookups for db in dbs.values()] == [0, 0, 0, 1, 0, 1, 0, 0]
    store._key_index.clear()
    store[b"sku-1"]  # Faust's own read, outside an event, for comparison
    assert sum(db.lookups for db in dbs.values()) > 2


def test_any_other_store_is_read_as_it_is():
    table = type("Table", (), {"data": {b"user-1": b"{}"}})()
    assert faust_fixes.read_in_partition(table, b"user-1", 0) == b"{}"
    assert faust_fixes.read_in_partition(table, b"user-2", 0) is None
