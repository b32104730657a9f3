"""Two workers of one app split the partitions; either answers for any SKU (routed to its owner)."""

import json
import signal
import subprocess
import sys

import pytest

from salescast.localkafka import free_port
from tests.integration.conftest import assert_valid, wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 20_500 * DAY


def test_any_worker_answers_any_sku(make_worker):
    first = make_worker().start()
    internal = f"{first.id}-sku-events"
    # the first reports all 4 first: after the rebalance it must stop reporting the 2 it gave away
    wait_for(lambda: first.assigned(internal) == {0, 1, 2, 3}, timeout_s=30, message="the first owns all")
    second = make_worker(base=first).start()
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


def test_any_worker_answers_recommendations_for_any_user_and_sku(make_worker, tmp_path):
    from tests.integration.test_forecaster import produce, salescast

    store = tmp_path / "shared-models"
    first = make_worker(SALESCAST_MODEL_STORE=store)
    events = tmp_path / "events.jsonl"
    assert salescast(first, "generate", "--seed", "4", "--skus", "20", "--users", "120", "--days", "4",
                     "--out", str(events)).returncode == 0
    trained = salescast(first, "retrain", "--model", "cf", "--events", str(events))
    assert trained.returncode == 0, trained.stderr
    first.start()
    second = make_worker(base=first).start()
    internal = f"{first.id}-user-events"
    wait_for(lambda: first.assigned(internal) | second.assigned(internal) == {0, 1, 2, 3}
             and not first.assigned(internal) & second.assigned(internal), timeout_s=90,
             message="the two workers share the 4 partitions")
    lines = events.read_bytes().splitlines()
    produce(first, lines)
    records = [json.loads(line) for line in lines]
    users = sorted({r["user_id"] for r in records if r["topic"] == "clicks"})[:12]
    skus = sorted({r["sku"] for r in records if r["topic"] == "clicks"})[:12]
    paths = [f"/recommendations/users/{u}?n=5" for u in users] + [f"/recommendations/skus/{s}/users?n=5"
                                                                  for s in skus]

    def same_live_answers() -> bool:
        for path in paths:
            (status_1, body_1), (status_2, body_2) = first.http(path), second.http(path)
            if status_1 != 200 or body_1 != body_2 or body_1["fallback"]:
                return False
        return True

    # a worker that answered from its own partitions only would give fallbacks for the other's keys
    wait_for(same_live_answers, timeout_s=90, message="both workers give the owner's live answer for every key")
    status, body = second.http(paths[0])
    assert_valid("recommendations", body)


def test_a_second_worker_on_the_same_data_dir_stops_with_a_clear_error_and_the_first_goes_on(make_worker):
    """RocksDB lets one process open a database: a second worker on the same SALESCAST_DATA_DIR died with
    a lock traceback from inside Faust's table recovery (issue 17)."""
    first = make_worker().start()
    env = {**first.env, "SALESCAST_WEB_PORT": str(free_port()), "SALESCAST_METRICS_PORT": str(free_port())}
    second = subprocess.run([sys.executable, "-m", "salescast.cli", "worker"], env=env, capture_output=True,
                            text=True, timeout=120)
    said = second.stdout + second.stderr
    assert second.returncode == 1, said
    assert "Traceback" not in said
    assert f"SALESCAST_DATA_DIR={first.env['SALESCAST_DATA_DIR']}" in said and "its own SALESCAST_DATA_DIR" in said
    assert f"pid {first.process.pid}" in said
    assert first.http("/healthz")[0] == 200
    first.stop(signal.SIGKILL)  # the lock goes with the process, kill -9 included
    first.start()
