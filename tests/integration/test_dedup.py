"""Issue 17.4 through the broker: an order a shop's producer sends again is counted once, also after a
kill -9 and on another machine that restores the ledger from its changelog."""

import json
import signal
import time

import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000


def test_a_resent_order_counts_once_across_restarts_and_machines(make_worker):
    first = make_worker().start()
    day = (int(time.time() * 1000) // DAY - 1) * DAY
    producer = first.producer()

    def send(order_id, qty, worker=first):
        order = {"order_id": order_id, "user_id": "u-1", "ts": day + int(order_id[2:]),
                 "items": [{"sku": "sku-a", "qty": qty, "unit_price": 1.0}]}
        producer.send(worker.topics["orders"], key=order_id.encode(), value=json.dumps(order).encode()).get(30)

    def units(worker):
        status, sales = worker.http("/skus/sku-a/sales?buckets=30")
        return status == 200 and sum(b["units"] for b in sales["buckets"])

    for order_id, qty in [("o-1", 2), ("o-1", 2), ("o-2", 3)]:  # o-1 resent
        send(order_id, qty)
    wait_for(lambda: units(first) == 5 and first.metric("salescast_duplicate_orders_total") == 1,
             message="the resent order counted once")

    first.stop(signal.SIGKILL)
    first.start()  # same machine: the ledger is in RocksDB
    send("o-1", 2)
    send("o-3", 1)
    # the metric counts each resend this process read: the first one too, if it is read again after the kill
    wait_for(lambda: units(first) == 6 and first.metric("salescast_duplicate_orders_total") >= 1,
             message="a resend after a kill -9 counted once")

    first.stop(signal.SIGKILL)
    other = make_worker(base=first).start()  # another machine: the ledger comes back from its changelog
    send("o-2", 3, other)
    send("o-4", 4, other)
    wait_for(lambda: units(other) == 10 and other.metric("salescast_duplicate_orders_total") >= 1,
             timeout_s=90, message="a resend on another machine counted once")
    time.sleep(3)
    assert units(other) == 10
