"""Stop (SIGTERM) or kill (SIGKILL) the worker mid-stream: every order line still counts exactly once."""

import json
import signal
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from salescast.stream.core.contract import record_key
from salescast.sim.generator import Shop, ShopConfig
from salescast.stream.core.settings import Settings
from salescast.stream.kafka import committed_offsets, ensure_topics
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def produce_shop(worker, days=12):
    shop = Shop(ShopConfig(seed=11, skus=25, users=600, days=days))
    expected_units, expected_revenue, count = {}, {}, 0
    producer = worker.producer()
    for topic, record in shop.events():
        producer.send(worker.topics[topic], key=record_key(topic, record), value=json.dumps(record).encode())
        count += 1
        if topic == "orders":
            for item in record["items"]:
                expected_units[item["sku"]] = expected_units.get(item["sku"], 0) + item["qty"]
                expected_revenue[item["sku"]] = expected_revenue.get(item["sku"], 0) + item["qty"] * item["unit_price"]
    producer.flush()
    return expected_units, expected_revenue, count


def counted(worker, skus):
    units, revenue = {}, {}
    for sku in skus:
        status, sales = worker.http(f"/skus/{sku}/sales?buckets=120")
        if status != 200:
            return None, None
        units[sku] = sum(b["units"] for b in sales["buckets"])
        revenue[sku] = sum(b["revenue"] for b in sales["buckets"])
    return units, revenue


@pytest.mark.parametrize("sig,new_host", [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True)],
                         ids=["sigterm", "sigkill", "sigkill-then-another-machine"])
def test_restart_mid_stream_counts_every_line_once(make_worker, tmp_path, sig, new_host):
    """`another-machine` restarts with an empty state directory: everything comes back from the changelogs."""
    worker = make_worker()
    # The ~55,000 events (100 days) are in the topics before the worker starts: produced while it ran, a
    # worker reading a fetch at a time kept pace with the test's producer and had read every one of them by
    # the time it could be stopped 2,000 clicks in. A batch takes up to 16 fetches of 1,000 records, so the
    # stop comes a batch or two in: the input must outlast that by several batches
    ensure_topics(Settings.from_env(worker.env))
    expected_units, expected_revenue, total = produce_shop(worker, days=100)
    worker.start()
    wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="clicks") > 2000, timeout_s=60,
             interval_s=0.02, message="worker mid-stream")
    consumed_before = sum(worker.metric("salescast_events_consumed_total", topic=t)
                          for t in ("orders", "clicks", "inventory"))
    worker.stop(sig)
    assert consumed_before < total, "the worker finished before it was stopped; the test proves nothing"
    if new_host:
        worker.env["SALESCAST_DATA_DIR"] = str(tmp_path / "elsewhere")
    worker.start()

    try:
        wait_for(lambda: counted(worker, expected_units)[0] == expected_units, timeout_s=120,
                 message="per-SKU units equal to what was produced")
    except AssertionError:
        units, _ = counted(worker, expected_units)
        diff = {sku: (units.get(sku) if units else None, n) for sku, n in expected_units.items()
                if not units or units.get(sku) != n}
        # from the topic, so dead letters written before the stop count too
        dead_letters = worker.read("dead_letters", until=lambda records: True, timeout_s=5)
        dead = {}
        for message in dead_letters:
            reason = json.loads(message.value)["reason"]
            dead[reason] = dead.get(reason, 0) + 1
        lag = {line.split("{", 1)[1].split("}")[0]: line.split()[-1] for line in worker.metrics().splitlines()
               if line.startswith("salescast_consumer_lag{") and not line.endswith(" 0.0")}
        # consumed, applied and skipped since the restart: a stalled worker and a dropped line look different
        progress = {f"consumed {t}": worker.metric("salescast_events_consumed_total", topic=t)
                    for t in ("orders", "clicks", "inventory")}
        progress.update({f"{what} {table}": worker.metric(f"salescast_{what}_total", table=table)
                         for what in ("updates_applied", "duplicates_skipped") for table in ("sku-windows",)})
        raise AssertionError(f"(counted, produced) per SKU that differ: {diff}; dead letters in all: {dead}; "
                             f"progress since the restart: {progress} (produced {total}, consumed "
                             f"{consumed_before} before the stop); consumer lag not 0: {lag}\n"
                             f"{worker.log_tail()}") from None
    time.sleep(3)  # anything counted twice would show up now
    units, revenue = counted(worker, expected_units)
    assert units == expected_units
    for sku, value in expected_revenue.items():
        assert revenue[sku] == pytest.approx(value, abs=1e-6)
    # the worker commits what it handled itself (salescast.stream.delivery.offsets): the group's offsets reach every input's end
    ends = log_ends(worker, ("orders", "clicks", "inventory"))
    committed = {}

    def at_ends():
        committed.clear()
        committed.update({tp: offset for tp, offset in group_offsets(worker).items() if tp in ends})
        return committed == ends
    try:
        wait_for(at_ends, timeout_s=15, message="committed offsets at the ends of the inputs")
    except AssertionError:
        behind = {tp: (committed.get(tp), end) for tp, end in ends.items() if committed.get(tp) != end}
        raise AssertionError(f"(committed, log end) of the inputs not committed to their end: {behind}\n"
                             f"{worker.log_tail(120)}") from None


def log_ends(worker, keys):
    consumer = KafkaConsumer(bootstrap_servers=worker.bootstrap)
    try:
        partitions = [TopicPartition(worker.topics[key], p) for key in keys
                      for p in consumer.partitions_for_topic(worker.topics[key])]
        return {(tp.topic, tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def group_offsets(worker):
    return committed_offsets(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": worker.bootstrap}), worker.id)


def test_after_a_restart_future_is_judged_against_where_the_service_had_got_to(make_worker):
    """The first record a restarted worker reads may come from a partition days behind the others; a good
    record of a partition further ahead must not then be dead-lettered as `future`."""
    day = 86_400_000
    t0 = 20_300 * day
    worker = make_worker()
    worker.start()
    producer = worker.producer()

    def order(order_id, ts):
        record = {"order_id": order_id, "user_id": "u-1", "ts": ts, "items": [{"sku": "s-1", "qty": 1, "unit_price": 2.0}]}
        producer.send(worker.topics["orders"], key=order_id.encode(), value=json.dumps(record).encode()).get(10)

    order("o-1", t0 + 10 * day)
    wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="orders") == 1, message="first order")
    worker.stop(signal.SIGTERM)
    # a graceful stop commits what the agents handled, so the restarted worker does not read o-1 again
    orders_committed = {tp: offset for tp, offset in group_offsets(worker).items() if tp[0] == worker.topics["orders"]}
    assert sum(orders_committed.values()) == 1, orders_committed
    worker.start()
    click = {"user_id": "u-2", "sku": "s-1", "action": "view", "ts": t0 + 9 * day + day // 2}
    producer.send(worker.topics["clicks"], key=b"u-2", value=json.dumps(click).encode()).get(10)
    wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="clicks") == 1, message="the click")
    order("o-2", t0 + 10 * day + day * 8 // 10)  # 1.3 days after the click, 0.8 after the newest event
    wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="orders") == 1, message="second order")
    assert worker.metric("salescast_dead_letters_total", reason="future") == 0, worker.log_tail()
    wait_for(lambda: sum(b["units"] for b in (worker.http("/skus/s-1/sales")[1] or {"buckets": []})["buckets"]) == 2,
             message="both orders counted")
