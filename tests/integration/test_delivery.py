"""A record the broker refuses for good stops the commit (issue 17.1): the worker stops with a clear
error, and once the cause is fixed a restart delivers it; no order line is lost or counted twice."""

import json

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from tests.integration.conftest import wait_for
from tests.integration.test_restart import group_offsets

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 20_600 * DAY


def order(order_id, ts, qty):
    return json.dumps({"order_id": order_id, "user_id": "u-1", "ts": ts,
                       "items": [{"sku": "sku-a", "qty": qty, "unit_price": 2.0}]}).encode()


def test_a_dead_letter_the_broker_refuses_is_never_committed_over(make_worker):
    worker = make_worker()
    admin = KafkaAdminClient(bootstrap_servers=worker.bootstrap)
    dead_letters = worker.topics["dead_letters"]
    try:
        # the shop's dead-letter topic takes records of 2,000 bytes at most
        admin.create_topics([NewTopic(dead_letters, 1, 1, topic_configs={"max.message.bytes": "2000"})])
        worker.start()
        producer = worker.producer()
        orders = worker.topics["orders"]
        producer.send(orders, key=b"o-1", value=order("o-1", T0, 2), partition=0).get(timeout=30)
        bad = producer.send(orders, key=b"bad", value=b"{" + b"x" * 6000, partition=0).get(timeout=30)
        producer.send(orders, key=b"o-2", value=order("o-2", T0 + 1, 3), partition=0).get(timeout=30)

        assert worker.process.wait(timeout=90) == 1
        log = worker.log_path.read_text(errors="replace")
        assert f"a record for topic '{dead_letters}' could not be delivered (MessageSizeTooLargeError" in log
        assert "raise the topic's max.message.bytes" in log, worker.log_tail()
        committed = group_offsets(worker).get((orders, 0), 0)
        assert committed <= bad.offset, f"committed {committed}, past the record whose dead letter was lost"

        # the operator raises the limit and starts the worker again: it reads on from the last commit
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dead_letters,
                                            configs={"max.message.bytes": "1048588"})])
        worker.start()
        letters = worker.read("dead_letters", lambda records: records)
        letter = json.loads(letters[0].value)
        assert (letter["offset"], letter["reason"], len(letter["payload"])) == (bad.offset, "not_json", 6001)

        def units():
            status, sales = worker.http("/skus/sku-a/sales?buckets=30")
            return status == 200 and sum(b["units"] for b in sales["buckets"])

        wait_for(lambda: units() == 5, message="both good order lines counted, once")
        wait_for(lambda: group_offsets(worker).get((orders, 0)) == bad.offset + 2, timeout_s=30,
                 message="the input committed to its end")
        assert units() == 5
        assert worker.metric("salescast_delivery_failures_total") == 0  # this run delivered all it sent
    finally:
        admin.close()
