import json
from pathlib import Path

import pytest

from salescast.stream.core.contract import (DEAD_LETTER_PAYLOAD_MAX_BYTES, SCHEMA_FILES, Rejected, Source, dead_letter,
                                           decode, load_schema, validator)

SHARED = Path(__file__).resolve().parents[4] / "shared" / "contract"
EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


@pytest.mark.skipif(not (SHARED / "schemas").is_dir(), reason="../shared/contract is not beside this clone")
@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_shipped_schemas_equal_the_contract(kind):
    shared = json.loads((SHARED / "schemas" / SCHEMA_FILES[kind]).read_text())
    assert load_schema(kind) == shared


@pytest.mark.skipif(not (SHARED / "schemas").is_dir(), reason="../shared/contract is not beside this clone")
def test_every_contract_schema_is_shipped():
    shipped = set(SCHEMA_FILES.values())
    assert {p.name for p in (SHARED / "schemas").glob("*.json")} <= shipped


@pytest.mark.parametrize("kind,example", [("orders", "orders.json"), ("clicks", "clicks.json"),
                                          ("inventory", "inventory.json")])
def test_contract_examples_decode(kind, example):
    raw = (EXAMPLES / example).read_bytes()
    assert decode(kind, raw, 10_000) == json.loads(raw)


@pytest.mark.parametrize("kind,raw,reason,error", [
    ("orders", b'{"order_id":"o-1","user_id":"u-1","ts":1764028800000,"items":[{"sku":"a","qty":-2,"unit_price":1}]}',
     "invalid_value", "items[0].qty must be >= 1, got -2"),
    ("orders", b'{"order_id":"o-1","user_id":"u-1","ts":1,"items":[{"sku":"a","qty":1,"unit_price":-0.5}]}',
     "invalid_value", "items[0].unit_price must be >= 0, got -0.5"),
    ("orders", b'{"order_id":"o-1","user_id":"u-1","ts":1,"items":[{"sku":"a","qty":0,"unit_price":1}]}',
     "invalid_value", "items[0].qty must be >= 1, got 0"),
    ("orders", b'{"order_id":"o-1","user_id":"u-1","ts":1,"items":[{"sku":"a","qty":100000000000000000000,"unit_price":1}]}',
     "invalid_value", "items[0].qty must be <= 9007199254740992, got 1e+20"),
    ("orders", b'{"order_id":"o-1","user_id":"u-1","ts":1,"items":[]}', "schema", "items must contain at least 1 items"),
    ("clicks", b'{"user_id":"u","sku":"s","action":"buy","ts":1}', "schema", "action must be one of"),
    ("clicks", b'{"user_id":"u","sku":"s","action":"view","ts":true}', "schema", "ts must be integer"),
    ("clicks", b'{"user_id":"u","sku":"s","action":"view"}', "schema", "must contain ['ts']"),
    ("clicks", b'[1, 2]', "schema", "record must be object"),
    ("clicks", b'{"user_id":', "not_json", "not valid UTF-8 JSON"),
    ("clicks", b'\xff\xfe\x00', "not_json", "not valid UTF-8 JSON"),
    ("inventory", b'{"sku":"s","on_hand":-1,"ts":5}', "invalid_value", "on_hand must be >= 0, got -1"),
])
def test_bad_records_are_rejected_with_the_contract_reason(kind, raw, reason, error):
    with pytest.raises(Rejected) as caught:
        decode(kind, raw, 10_000)
    assert caught.value.reason == reason
    assert error in caught.value.error


def test_too_large_is_checked_before_parsing():
    with pytest.raises(Rejected) as caught:
        decode("clicks", b"x" * 65, 64)
    assert caught.value.reason == "too_large"


def test_dead_letter_keeps_binary_payloads_as_base64():
    record = dead_letter(Source("orders", 3, 1187), "not_json", "bad", b"\xff\x00", now_ms=5)
    assert record["payload_encoding"] == "base64" and record["payload"] == "/wA="
    validator("dead_letters")(record)
    text = dead_letter(Source("orders", 3, 1187), "schema", "bad", b'{"a":1}', now_ms=5)
    assert text["payload"] == '{"a":1}' and text["payload_encoding"] == "utf-8"
    assert "payload_truncated" not in text and "payload_bytes" not in text


@pytest.mark.parametrize("raw, encoding", [
    ("é" * DEAD_LETTER_PAYLOAD_MAX_BYTES, "utf-8"),  # 2 bytes a character: the cut falls inside one
    ("\x00" * (DEAD_LETTER_PAYLOAD_MAX_BYTES * 8), "utf-8"),  # each escaped as 6 characters in JSON
    (b"\xff" * (DEAD_LETTER_PAYLOAD_MAX_BYTES * 4), "base64"),
])
def test_a_dead_letter_stays_small_enough_for_any_topic_whatever_it_carries(raw, encoding):
    """A dead letter the broker refused would stop the worker (its delivery is confirmed before the
    commit), so a record up to the 1 MB a topic takes, or larger, gives one under the limit."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    record = dead_letter(Source("orders", 0, 7), "too_large", "big", raw, now_ms=5)
    validator("dead_letters")(record)
    assert len(json.dumps(record).encode()) < 1_000_000
    assert record["payload_truncated"] is True and record["payload_bytes"] == size
    assert record["payload_encoding"] == encoding
    if encoding == "utf-8":
        assert raw.startswith(record["payload"]) and len(record["payload"].encode()) > DEAD_LETTER_PAYLOAD_MAX_BYTES - 4
