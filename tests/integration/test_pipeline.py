"""The contract's input examples through a real broker and worker, outputs read back and validated."""

import json
from pathlib import Path

import pytest

from tests.integration.conftest import assert_valid, wait_for

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
DAY = 86_400_000


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_examples_make_windows_forecasts_http_and_metrics(make_worker):
    worker = make_worker().start()
    # every topic the agents read existed when the consumer joined: one still missing is left out of
    # the assignment for minutes (its agent reads nothing), which Faust's assignor logs like this
    assert "Ignoring missing topic" not in worker.log_tail(1000), worker.log_tail(200)
    order, click, stock = example("orders.json"), example("clicks.json"), example("inventory.json")
    next_day = {**order, "order_id": "o-1002", "ts": order["ts"] + DAY,
                "items": [{"sku": "sku-9", "qty": 4, "unit_price": 5.0}]}
    producer = worker.producer()
    producer.send(worker.topics["inventory"], key=b"sku-7", value=json.dumps(stock).encode())
    producer.send(worker.topics["clicks"], key=b"u-42", value=json.dumps(click).encode())
    producer.send(worker.topics["orders"], key=b"o-1001", value=json.dumps(order).encode())
    producer.flush()
    # the first order opened day D; an order on day D+1 moves event time past D's end and closes it.
    # Orders with other keys may sit in other partitions: wait until all three records are counted,
    # or day D+1 could arrive while the newest event is still day D-1 and be (rightly) `future`.
    def all_three_counted():
        status, sales = worker.http("/skus/sku-7/sales")
        return status == 200 and sales["on_hand"] == 340 and \
            [(b["units"], b["clicks"]) for b in sales["buckets"]] == [(0, 1), (2, 0)]

    wait_for(all_three_counted, message="inventory, click and order in sku-7's window")
    producer.send(worker.topics["orders"], key=b"o-1002", value=json.dumps(next_day).encode())
    producer.flush()

    day_start = order["ts"] // DAY * DAY

    def closed_day(records):  # forecasts made when day D closed (the click's day may close too)
        return {r.key for r in records if json.loads(r.value)["ts"] == day_start} >= {b"sku-7", b"sku-9"}

    records = worker.read("forecasts", closed_day)
    for message in records:
        forecast = json.loads(message.value)
        assert_valid("forecasts", forecast)
        assert message.key.decode() == forecast["sku"]
        assert forecast["ts"] in (day_start - DAY, day_start) and forecast["bucket"] == "1d"
        first = forecast["ts"] + DAY
        assert [h["start"] for h in forecast["horizon"]] == [first + i * DAY for i in range(7)]
        assert forecast["model"] == {"name": "seasonal_naive", "version": "baseline-s7-v1"}
        assert forecast["cold_start"] is True
        assert all(h["p10"] <= h["p50"] <= h["p90"] for h in forecast["horizon"])

    status, sales = worker.http("/skus/sku-7/sales?buckets=28")
    assert status == 200
    assert_valid("sales", sales)
    # the example click is 100 s before the order's midnight: it counts in the day before
    assert click["ts"] // DAY == order["ts"] // DAY - 1
    assert sales == {"sku": "sku-7", "bucket": "1d", "on_hand": 340,
                     "buckets": [{"start": day_start - DAY, "units": 0, "revenue": 0.0, "clicks": 1},
                                 {"start": day_start, "units": 2, "revenue": 39.8, "clicks": 0}]}
    status, sales9 = worker.http("/skus/sku-9/sales?buckets=1")
    assert status == 200 and sales9["buckets"] == [{"start": day_start + DAY, "units": 4, "revenue": 20.0,
                                                    "clicks": 0}]
    status, body = worker.http("/skus/never-seen/sales")
    assert status == 404 and "never-seen" in body["error"]
    status, body = worker.http("/skus/sku-7/sales?buckets=lots")
    assert status == 400 and "buckets" in body["error"]

    assert worker.metric("salescast_events_consumed_total", topic="orders") == 2
    assert worker.metric("salescast_events_consumed_total", topic="clicks") == 1
    assert worker.metric("salescast_forecasts_emitted_total", model="seasonal_naive") >= 2
    assert "salescast_end_to_end_latency_seconds_bucket" in worker.metrics()
    assert worker.metric("salescast_model_info", model="forecast", version="baseline-s7-v1") == 1
