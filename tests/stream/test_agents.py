"""The agents with Faust's test_context() and the memory:// store: no broker needed."""

import asyncio
import collections
import os

import orjson
import pytest
from faust.types import TP

os.environ.setdefault("SALESCAST_APP_ID", "salescast-unit")
from salescast.models import useritem, windows  # noqa: E402
from salescast.stream.core.state import SkuUpdate, UserUpdate, bundles  # noqa: E402
from salescast.stream.core.watermarks import is_marks  # noqa: E402
from salescast.stream.app import app  # noqa: E402

app.conf.store = "memory://"  # before the tables exist
app.finalize()
app.conf.web_enabled = False

from salescast.stream import topics  # noqa: E402
from salescast.stream.agents import ingest, skus, users  # noqa: E402
from salescast.stream.delivery import writes  # noqa: E402
from salescast.stream.delivery.outbox import Outbox, partition_for  # noqa: E402

from salescast.stream.delivery import offsets
from salescast.stream.tables import sku_windows, user_items  # noqa: E402

DAY = 86_400_000
T0 = 20_000 * DAY


async def settled(condition, timeout_s: float = 3.0):
    """take_events() hands a batch over when its `within` timer fires: wait for the agent to get there."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the agent did not process the batch")


RecordMetadata = collections.namedtuple("RecordMetadata", "topic partition offset")


class FakeProducer:
    """Stands in for the aiokafka producer Faust owns: records what the agents hand over."""

    def __init__(self):
        self.sent: list[tuple[str, int | None, bytes | None, bytes]] = []

    async def send(self, topic, value=None, key=None, partition=None):
        self.sent.append((topic, partition, key, value))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(RecordMetadata(topic, partition or 0, len(self.sent) - 1))
        return delivered

    def to(self, topic):
        return [(key, value) for t, _, key, value in self.sent if t == topic]

    def marks(self):
        """The marks records sent to the SKU topic, decoded."""
        return [orjson.loads(value) for key, value in self.to(topics.SKU_EVENTS) if is_marks(key, value)]

    def bundled(self, topic):
        """(partition, update) of every update sent to an internal topic in a bundle."""
        return [(partition, wire) for t, partition, key, value in self.sent
                if t == topic and not is_marks(key, value) for wire in orjson.loads(value)["updates"]]


@pytest.fixture(autouse=True)
def producer(monkeypatch):
    for table in (sku_windows, user_items):
        table.data.clear()
    writes.forget_cached()
    fake = FakeProducer()
    monkeypatch.setattr(writes, "producer", lambda: fake)
    monkeypatch.setattr(ingest.watermark_seeding, "read_persisted", nothing_persisted)
    monkeypatch.setattr(ingest.watermark_seeding, "needed", True)
    # no broker to ask: nothing committed, and nothing to read back (tests/stream/delivery/test_continuity.py covers that)
    monkeypatch.setattr(offsets.continuity, "committed", nothing_committed)
    monkeypatch.setattr(offsets.continuity, "read_range", nothing_to_read)
    offsets.continuity.reset()
    monkeypatch.setattr(ingest, "ingestor", ingest.Ingestor(ingest.settings))
    marks_sender = ingest.MarksSender()
    marks_sender.BATCH_EVERY_S = 0.0  # every batch's marks, not at most two a second
    monkeypatch.setattr(ingest, "marks_sender", marks_sender)
    yield fake


async def nothing_committed():
    return {}


async def nothing_to_read(topic, partition, start, end, limit=None):
    return []


async def nothing_persisted():
    return {}


def update(kind, sku, ts, offset, line=0, units=0, revenue=0.0, source="o0"):
    return orjson.dumps(SkuUpdate(kind, sku, ts, source, offset, line, units, revenue).to_wire())


def marks(**newest):
    """The internal marks record: each input partition's newest event time, none idle."""
    return orjson.dumps(["marks", {name.replace("_", "/"): [ts, False] for name, ts in newest.items()}, 0.0])


async def test_sku_agent_counts_lines_once_and_closes_on_the_low_watermark(producer, monkeypatch):
    persisted = {}
    monkeypatch.setattr(sku_windows.data, "set_persisted_offset", lambda tp, offset: persisted.__setitem__(tp, offset))

    def sent():
        return [(key, orjson.loads(value)) for key, value in producer.to(topics.FORECASTS)]

    async with skus.update_sku_windows.test_context() as agent:
        await agent.put(update("sale", "a", T0, 1, units=2, revenue=4.0), key=b"a", partition=0)
        await agent.put(update("sale", "a", T0, 1, units=2, revenue=4.0), key=b"a", partition=0)  # re-read
        await agent.put(update("sale", "a", T0 + 5, 2, units=1, revenue=2.0), key=b"a", partition=0)
        # orders/1 is still in day 0: nothing closes until it has passed the day's end too
        await agent.put(marks(orders_0=T0 + DAY, orders_1=T0 + DAY - 1), key=None, partition=0)
        await agent.put(marks(orders_0=T0 + DAY, orders_1=T0 + DAY), key=None, partition=0)
        await settled(sent)
    assert b"a" not in sku_windows.data  # written behind: held in the cache until the next commit
    await writes.write_back()
    await asyncio.sleep(0)  # the delivery callbacks
    window = orjson.loads(sku_windows[b"a"])
    assert windows.units(window) == [3] and windows.revenue(window) == [6.0]
    assert windows.first_open(window) == T0 // DAY + 1
    assert [(key, record["ts"]) for key, record in sent()] == [(b"a", T0)]
    changelog_topic = sku_windows.changelog_topic.get_topic_name()
    changelog = producer.to(changelog_topic)
    assert changelog and orjson.loads(changelog[-1][1]) == window  # every table write goes to the changelog
    last = max(i for i, (topic, *_rest) in enumerate(producer.sent) if topic == changelog_topic)
    partition = producer.sent[last][1]
    assert persisted[TP(changelog_topic, partition)] == last  # a restart recovers only what came after


async def test_user_agent_builds_weighted_vectors():
    async with users.update_user_items.test_context() as agent:
        await agent.put(orjson.dumps(UserUpdate("u-1", "a", "view", T0, "c0", 1).to_wire()), key=b"u-1", partition=0)
        await agent.put(orjson.dumps(UserUpdate("u-1", "a", "purchase", T0, "o0", 1).to_wire()), key=b"u-1",
                        partition=0)
        await settled(lambda: writes.load_value(user_items, b"u-1"))
    vector = writes.load_value(user_items, b"u-1")
    assert useritem.weights(vector) == {"a": pytest.approx(6.0)}


def bundle(*updates):
    (record,) = bundles(orjson.dumps(u.to_wire()) for u in updates)
    return record


async def test_sku_agent_applies_each_update_of_a_bundle_once_and_dead_letters_only_a_bad_one(producer):
    sale = SkuUpdate("sale", "a", T0, "o0", 7, 0, 2, 4.0)
    click = SkuUpdate("click", "b", T0, "c0", 3)
    broken = {**SkuUpdate("sale", "c", T0, "o0", 8).to_wire(), "ts": "not a time"}
    corrupt = bundle(sale, click)[:-2] + b"," + orjson.dumps(broken) + b"]}"
    async with skus.update_sku_windows.test_context() as agent:
        await agent.put(bundle(sale, click), key=None, partition=0)
        await agent.put(bundle(sale), key=None, partition=0)  # re-read after a crash: counted already
        await agent.put(orjson.dumps(SkuUpdate("sale", "a", T0, "o0", 9, 0, 1, 2.0).to_wire()), key=b"a",
                        partition=0)  # a single-update record (the promotions agent's, an older worker's)
        await agent.put(b"{not json", key=None, partition=0)
        await agent.put(corrupt, key=None, partition=1)
        await settled(lambda: len(producer.to(topics.DEAD_LETTERS)) == 2)
    await writes.write_back()
    assert windows.units(orjson.loads(sku_windows[b"a"])) == [3]
    assert windows.clicks_between(orjson.loads(sku_windows[b"b"]), T0 // DAY, T0 // DAY) == 1
    assert b"c" not in sku_windows.data
    dead = [orjson.loads(value) for _, value in producer.to(topics.DEAD_LETTERS)]
    assert [d["reason"] for d in dead] == ["processing_error"] * 2
    assert orjson.loads(dead[1]["payload"]) == broken  # the bad update alone: its bundle's others applied


async def test_user_agent_applies_bundles():
    async with users.update_user_items.test_context() as agent:
        await agent.put(bundle(UserUpdate("u-1", "a", "view", T0, "c0", 1), UserUpdate("u-2", "a", "view", T0, "c0", 2),
                               UserUpdate("u-1", "a", "purchase", T0, "o0", 1)), key=None, partition=0)
        await settled(lambda: writes.load_value(user_items, b"u-2"))
    assert useritem.weights(writes.load_value(user_items, b"u-1")) == {"a": pytest.approx(6.0)}
    assert useritem.weights(writes.load_value(user_items, b"u-2")) == {"a": pytest.approx(1.0)}


async def test_ingest_routes_good_records_and_dead_letters_bad_ones(producer):
    def dead():
        return [orjson.loads(value) for _, value in producer.to(topics.DEAD_LETTERS)]

    good = orjson.dumps({"order_id": "o", "user_id": "u", "ts": T0,
                         "items": [{"sku": "a", "qty": 1, "unit_price": 1.0}]})
    async with ingest.ingest_orders.test_context() as agent:
        await agent.put(good, key=b"o", partition=0)
        await agent.put(b"not json", key=b"o", partition=0)
        await settled(lambda: dead() and producer.to(topics.SKU_EVENTS))
    partitions = ingest.settings.kafka.partitions
    # one bundle per partition the batch's updates go to, on the partition of their key
    assert [(p, wire["sku"], wire["qty"]) for p, wire in producer.bundled(topics.SKU_EVENTS)] == [
        (partition_for(b"a", partitions), "a", 1)]
    assert [(p, wire["usr"]) for p, wire in producer.bundled(topics.USER_EVENTS)] == [
        (partition_for(b"u", partitions), "u")]
    assert [m[0] for m in producer.marks()] == ["marks"] * partitions  # one per partition, after the updates
    kinds = ["marks" if is_marks(key, value) else "updates" for key, value in producer.to(topics.SKU_EVENTS)]
    assert kinds == ["updates"] + ["marks"] * partitions
    assert [d["reason"] for d in dead()] == ["not_json"]


async def test_ingest_seeds_watermarks_persisted_before_a_restart_and_persists_its_own(producer, monkeypatch):
    orders_topic = ingest.settings.kafka.topic("orders")

    async def persisted():
        return {f"{orders_topic}/1".encode(): orjson.dumps([T0 + 10 * DAY, 41]),
                f"{orders_topic}/3".encode(): b"not what we write"}  # skipped, never fatal

    monkeypatch.setattr(ingest.watermark_seeding, "read_persisted", persisted)
    ahead = orjson.dumps({"order_id": "o", "user_id": "u", "ts": T0 + 10 * DAY + DAY // 2,
                          "items": [{"sku": "a", "qty": 1, "unit_price": 1.0}]})
    behind = orjson.dumps({"order_id": "p", "user_id": "u", "ts": T0 + 9 * DAY,
                           "items": [{"sku": "a", "qty": 1, "unit_price": 1.0}]})
    async with ingest.ingest_orders.test_context() as agent:
        await agent.put(behind, key=b"p", partition=0)
        await agent.put(ahead, key=b"o", partition=2)
        await settled(lambda: producer.to(topics.INPUT_WATERMARKS))
    assert producer.to(topics.DEAD_LETTERS) == []  # without the seed, `ahead` would be `future`
    sent_marks = producer.marks()
    # sent on seeding (a crash may have cut the last ones off), then as the batch moved partitions on
    assert sent_marks[-1][0] == "marks" and sent_marks[-1][1] == {
        f"{orders_topic}/0": [T0 + 9 * DAY, False], f"{orders_topic}/2": [T0 + 10 * DAY + DAY // 2, False]}
    assert {key: orjson.loads(value) for key, value in producer.to(topics.INPUT_WATERMARKS)} == {
        f"{orders_topic}/0".encode(): [T0 + 9 * DAY, 0], f"{orders_topic}/2".encode(): [T0 + 10 * DAY + DAY // 2, 1]}


async def test_marks_a_batch_held_back_go_out_once_its_updates_are_flushed_not_with_the_resend_timer(producer):
    """After a batch, marks go out at most every BATCH_EVERY_S; a batch that moved a partition into a
    new bucket inside that interval owes them, and send_owed_marks sends them (every wait is a wait on
    a bucket close)."""
    ingest.marks_sender.BATCH_EVERY_S = 60.0  # every batch after the first inside the interval
    orders_topic = ingest.settings.kafka.topic("orders")

    def order(order_id, ts):
        return orjson.dumps({"order_id": order_id, "user_id": "u", "ts": ts,
                             "items": [{"sku": "a", "qty": 1, "unit_price": 1.0}]})

    async with ingest.ingest_orders.test_context() as agent:
        await agent.put(order("o1", T0), key=b"o1", partition=0)
        await settled(lambda: producer.marks())
        await agent.put(order("o2", T0 + DAY), key=b"o2", partition=0)
        await settled(lambda: len(producer.to(topics.INPUT_WATERMARKS)) == 2)
    assert producer.marks()[-1][1][f"{orders_topic}/0"] == [T0, False]  # the second batch's were held back
    assert ingest.marks_sender.owed
    await ingest.send_owed_marks()
    assert producer.marks()[-1][1][f"{orders_topic}/0"] == [T0 + DAY, False]
    assert not ingest.marks_sender.owed
    sent = len(producer.marks())
    await ingest.send_owed_marks()  # nothing owed: nothing sent
    assert len(producer.marks()) == sent


async def test_marks_claim_no_progress_whose_updates_are_still_in_another_agents_outbox(producer):
    """The clicks agent has read a batch whose updates it has not sent yet: the orders agent's marks must
    not carry that progress out ahead of them, or a SKU partition closes buckets those clicks belong to."""
    clicks_topic, orders_topic = ingest.settings.kafka.topic("clicks"), ingest.settings.kafka.topic("orders")
    click = orjson.dumps({"user_id": "u", "sku": "a", "action": "view", "ts": T0 + 3 * DAY})
    assert ingest.ingestor.ingest("clicks", click, 0, 0).dead_letter is None  # read, not yet flushed
    good = orjson.dumps({"order_id": "o", "user_id": "u", "ts": T0 + DAY,
                         "items": [{"sku": "a", "qty": 1, "unit_price": 1.0}]})
    async with ingest.ingest_orders.test_context() as agent:
        await agent.put(good, key=b"o", partition=0)
        await settled(lambda: producer.to(topics.SKU_EVENTS))
    marks = producer.marks()[-1][1]
    assert marks[f"{orders_topic}/0"] == [T0 + DAY, False]
    assert marks[f"{clicks_topic}/0"] == [-1, False]  # nothing of it flushed: it holds the watermark back
    ingest.marks_sender.publish(clicks_topic)  # the clicks batch was sent
    out = Outbox()
    ingest.marks_sender.add(out)
    await out.flush(producer)
    marks = producer.marks()[-1][1]
    assert marks[f"{clicks_topic}/0"] == [T0 + 3 * DAY, False]


async def test_a_batch_of_many_affinity_changes_goes_out_in_records_under_the_bundle_limit(producer, monkeypatch):
    """A backlog's batch changes hundreds of thousands of affinities: one record per partition outgrew the
    broker's 1 MiB limit and stopped the worker (MessageSizeTooLargeError)."""
    from salescast.stream.core.state import BUNDLE_MAX_BYTES

    changes = {3: [[f"sku-{i % 1000}", f"user-{i}", 0.5, T0] for i in range(40_000)], 5: [["a", "u", None, T0]]}
    monkeypatch.setattr(users, "served", {users.CF: type("Served", (), {"model": object(), "name": "fake"})()})
    monkeypatch.setattr(users, "affinity_updates", lambda *args: changes)
    out = Outbox()
    users.send_affinity_changes({b"u": ({}, None)}, out)
    await out.flush(producer)
    sent = [(partition, value) for topic, partition, _, value in producer.sent if topic == topics.SKU_AFFINITIES]
    assert len(sent) > 2 and all(len(value) <= BUNDLE_MAX_BYTES + 2 for _, value in sent)
    for partition, entries in changes.items():
        assert [e for p, value in sent if p == partition for e in orjson.loads(value)] == entries
