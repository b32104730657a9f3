"""A broker outage in the middle of a stream (issue 17.3): the worker waits without restarting, says so on
/readyz and in its metrics, then catches up, losing and doubling nothing; asked to stop while no broker
answers, it stops within 45 s. It runs its own broker, which it stops and starts."""

import json
import threading
import time

import pytest
from kafka import KafkaProducer

from salescast.localkafka import LocalBroker, free_port
from tests.integration.conftest import Worker, wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000


def test_the_worker_rides_out_a_30_second_broker_outage_and_stops_in_time_without_one(tmp_path):
    broker = LocalBroker(directory=tmp_path / "kafka", port=free_port(pair=True))
    broker.start(log=lambda message: None)
    worker = Worker(broker.bootstrap, tmp_path)
    try:
        worker.start()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                                 delivery_timeout_ms=300_000, request_timeout_ms=10_000,
                                 reconnect_backoff_max_ms=2_000)
        day = (int(time.time() * 1000) // DAY - 1) * DAY  # yesterday: neither late nor `future`
        sent, streaming = [], threading.Event()
        streaming.set()

        def stream_orders():  # a shop's producer: 20 orders a second, buffering while the broker is away
            i = 0
            while streaming.is_set():
                order = {"order_id": f"o-{i}", "user_id": f"u-{i % 7}", "ts": day + i * 1000,
                         "items": [{"sku": f"sku-{i % 5}", "qty": 1 + i % 3, "unit_price": 1.0}]}
                sent.append((order, producer.send(worker.topics["orders"], key=order["order_id"].encode(),
                                                  value=json.dumps(order).encode())))
                i += 1
                time.sleep(0.05)

        thread = threading.Thread(target=stream_orders)
        thread.start()
        time.sleep(10)
        broker.stop(log=lambda message: None)
        outage_started = time.monotonic()
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(worker.http("/readyz")),
                                timeout_s=20, interval_s=1, message="/readyz reports the outage")
        assert body["status"] == "broker_unreachable" and broker.bootstrap in body["error"]
        assert worker.http("/healthz")[0] == 200  # alive: a restart would not help
        assert worker.metric("salescast_broker_reachable") == 0
        time.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
        assert worker.process.poll() is None
        broker.start(log=lambda message: None)
        time.sleep(10)
        streaming.clear()
        thread.join()
        producer.flush(timeout=120)
        expected: dict[str, int] = {}
        for order, future in sent:
            future.get(timeout=60)  # every order reached the broker in the end
            line = order["items"][0]
            expected[line["sku"]] = expected.get(line["sku"], 0) + line["qty"]

        def counted():
            got = {}
            for sku in expected:
                status, sales = worker.http(f"/skus/{sku}/sales?buckets=30")
                got[sku] = sum(b["units"] for b in sales["buckets"]) if status == 200 else status
            return got

        wait_for(lambda: counted() == expected, timeout_s=120, message="every order line counted once")
        assert worker.http("/readyz") == (200, {"status": "ok", "broker": {"reachable": True, "unreachable_s": 0.0,
                                                                          "outages": 1}})
        assert worker.metric("salescast_broker_outages_total") == 1
        assert worker.metric("salescast_broker_reachable") == 1
        assert counted() == expected and worker.process.poll() is None

        # asked to stop while no broker answers
        broker.stop(log=lambda message: None)
        wait_for(lambda: worker.http("/readyz")[0] == 503, timeout_s=20, interval_s=1, message="the outage seen")
        asked = time.monotonic()
        worker.process.terminate()
        worker.process.wait(timeout=60)
        assert time.monotonic() - asked <= 45, worker.log_tail()
    finally:
        worker.stop(timeout_s=10)
        broker.stop(log=lambda message: None)
