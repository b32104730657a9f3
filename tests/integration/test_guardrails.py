"""The promotion guardrails' state stays bounded through the broker (issue 17.2): 30,000 SKUs propose
at one close, and no changelog record of the guardrails' table grows with them."""

import json

import pytest
from kafka import KafkaConsumer

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 20_700 * DAY
SKUS = 30_000


def proposal(sku: str, ts: int) -> bytes:
    trigger = {"trigger_id": f"{sku}@{ts}", "ts": ts, "sku": sku, "reason": "overstock", "discount": 0.1,
               "targets": [{"user_id": "u-1", "score": 0.9}], "holdout": ["u-2"], "valid_until": ts + 3 * DAY,
               "forecast_units": 1.0, "on_hand": 50, "expected_incremental_units": 0.5,
               "expected_incremental_revenue": 1.0, "models": {"lstm": "test", "promo": "test"}}
    return json.dumps({"trigger": trigger, "cost": 1.0, "category": None, "elasticity": -1.5}).encode()


def test_thirty_thousand_proposals_keep_every_guardrail_value_small(make_worker):
    worker = make_worker(SALESCAST_PROMO_MAX_OPEN=20).start()
    producer = worker.producer()
    for i in range(SKUS):
        sku = f"sku-{i:05d}"
        producer.send(f"{worker.id}-promo-proposals", key=sku.encode(), value=proposal(sku, T0), partition=0)
    producer.flush()

    wait_for(lambda: worker.metric("salescast_promo_refused_total", guardrail="max_open") == SKUS - 20,
             timeout_s=120, message="every proposal decided")
    triggers = worker.read("promo_triggers", lambda records: len(records) >= 20)
    assert len({json.loads(record.value)["sku"] for record in triggers}) == 20

    changelog = f"{worker.id}-promo-guardrails-changelog"
    consumer = KafkaConsumer(changelog, bootstrap_servers=worker.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    latest = {}
    try:
        for _ in range(20):
            for record in consumer:
                latest[record.key] = record.value
            if len(latest) == SKUS + 1:
                break
    finally:
        consumer.close()
    assert len(latest) == SKUS + 1, len(latest)  # the shared value and one per SKU
    shared = json.loads(latest[b"state"])
    assert shared["open"] == {str(T0 + 3 * DAY): 20}
    # one value for everything held every proposal's verdict: ~1.4 MB here, over the broker's 1 MB
    assert max(len(value) for value in latest.values()) < 1_000
    assert json.loads(latest[b"sku:sku-00042"])["decided"] == {f"sku-00042@{T0}": ["max_open", T0]}
    assert worker.process.poll() is None
