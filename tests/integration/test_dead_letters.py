"""Every dead-letter reason through the broker; the good records around them are all counted."""

import json
import time

import pytest

from tests.integration.conftest import assert_valid, wait_for

pytestmark = pytest.mark.integration
DAY = 86_400_000
T0 = 20_400 * DAY


def order(order_id, ts, qty=1, sku="sku-a", price=2.5):
    return {"order_id": order_id, "user_id": "u-1", "ts": ts, "items": [{"sku": sku, "qty": qty, "unit_price": price}]}


def test_every_bad_record_is_dead_lettered_with_its_reason_and_good_ones_count(make_worker):
    worker = make_worker(SALESCAST_MAX_RECORD_BYTES=1024).start()
    orders, clicks = worker.topics["orders"], worker.topics["clicks"]
    # (topic, value, expected reason or None for good); all on partition 0, so lateness is judged in order
    plan = [
        (orders, order("o-1", T0 + 5 * DAY), None),
        (orders, b"{this is not json", "not_json"),
        (orders, order("o-2", T0 + 5 * DAY + 1, qty=2), None),
        (clicks, {"user_id": "u-1", "sku": "sku-a", "action": "teleport", "ts": T0 + 5 * DAY}, "schema"),
        (orders, {"order_id": "o-x", "user_id": "u-1", "ts": T0 + 5 * DAY}, "schema"),
        (orders, order("o-3", T0 + 5 * DAY, qty=-2), "invalid_value"),
        (orders, order("o-4", T0 + 5 * DAY, price=-1.0), "invalid_value"),
        (orders, order("o-5", T0 + 2 * DAY), "late"),  # 3 days behind, the lateness allowed is 2
        (orders, order("o-6", T0 + 4 * DAY, qty=3), None),  # 1 day behind: late but allowed
        # 2 days ahead of the wall clock, at most 1 allowed (a gap in the data is never `future`: contract v1.1)
        (orders, order("o-7", int(time.time() * 1000) + 2 * DAY), "future"),
        (orders, {**order("o-8", T0 + 5 * DAY), "channel": "x" * 2000}, "too_large"),
        (orders, b"\xff\xfe\x00binary", "not_json"),
        (orders, order("o-9", T0 + 5 * DAY + 2, qty=4), None),
    ]
    producer = worker.producer()
    sent = []
    for topic, value, reason in plan:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        metadata = producer.send(topic, key=b"k", value=raw, partition=0).get(timeout=30)
        sent.append((topic, metadata.offset, raw, reason))
    # a record that breaks processing: a corrupt message on the internal SKU topic
    internal = f"{worker.id}-sku-events"
    broken = producer.send(internal, key=b"sku-a", value=b'["sale"]', partition=0).get(timeout=30)
    producer.flush()

    expected = [(t, off, raw, reason) for t, off, raw, reason in sent if reason]
    letters = worker.read("dead_letters", lambda rs: len(rs) >= len(expected) + 1)
    got = {(json.loads(m.value)["source_topic"], json.loads(m.value)["offset"]): json.loads(m.value)
           for m in letters}
    assert len(letters) == len(expected) + 1
    for topic, offset, raw, reason in expected:
        letter = got[(topic, offset)]
        assert_valid("dead_letters", letter)
        assert letter["reason"] == reason, letter
        assert letter["partition"] == 0 and letter["error"]
        if letter["payload_encoding"] == "utf-8":
            assert letter["payload"].encode() == raw
    processing = got[(internal, broken.offset)]
    assert processing["reason"] == "processing_error"
    assert processing["error"].startswith("TypeError: ") and processing["payload"] == '["sale"]'
    assert got[(orders, sent[1][1])]["error"].startswith("not valid UTF-8 JSON")
    assert got[(orders, sent[5][1])]["error"] == "items[0].qty must be >= 1, got -2"
    assert got[(orders, sent[11][1])]["payload_encoding"] == "base64"
    assert "allowed lateness" in got[(orders, sent[7][1])]["error"]

    good_units = sum(1 if v.get("items") is None else v["items"][0]["qty"] for _, v, r in plan if r is None)
    assert good_units == 10

    def units():
        status, sales = worker.http("/skus/sku-a/sales?buckets=90")
        return status == 200 and sum(b["units"] for b in sales["buckets"])

    wait_for(lambda: units() == good_units, message="all good order lines counted")
    for reason in ("not_json", "schema", "invalid_value", "late", "future", "too_large", "processing_error"):
        assert worker.metric("salescast_dead_letters_total", reason=reason) >= 1, reason
    assert worker.process.poll() is None  # still running
