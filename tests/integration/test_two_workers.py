"""Two workers of one app split the partitions; either answers for any SKU (routed to its owner)."""

import json

import pytest

from tests.integration.conftest import assert_valid, wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 20_500 * DAY


def test_any_worker_answers_any_sku(make_worker):
    first = make_worker().start()
    second = make_worker(base=first).start()
    internal = f"{first.id}-sku-events"
    wait_for(lambda: first.assigned(internal) and second.assigned(internal)
             and first.assigned(internal) | second.assigned(internal) == {0, 1, 2, 3}
             and not first.assigned(internal) & second.assigned(internal), timeout_s=90,
             message="the two workers share the 4 partitions")
    skus = [f"sku-{i}" for i in range(24)]
    producer = first.producer()
    for i, sku in enumerate(skus):
        order = {"order_id": f"o-{i}", "user_id": "u-1", "ts": T0 + i,
                 "items": [{"sku": sku, "qty": i + 1, "unit_price": 1.0}]}
        producer.send(first.topics["orders"], key=order["order_id"].encode(), value=json.dumps(order).encode())
    producer.flush()

    def all_answered(worker):
        for i, sku in enumerate(skus):
            status, sales = worker.http(f"/skus/{sku}/sales")
            if status != 200 or sum(b["units"] for b in sales["buckets"]) != i + 1:
                return False
        return True

    wait_for(lambda: all_answered(first) and all_answered(second), timeout_s=90,
             message="both workers answer for every SKU")
    status, sales = second.http("/skus/sku-5/sales")
    assert_valid("sales", sales)
