"""The contract's records: decoding and validating input, building output.

Validation runs on every input record, so the schemas are compiled once into
Python code by fastjsonschema (tens of times faster than a generic validator)
and the error it raises is turned into the contract's dead-letter reason: a
value outside its allowed range (a quantity of 0, a negative price) is
`invalid_value`, any other mismatch is `schema`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import fastjsonschema
import orjson

INPUT_KINDS = ("orders", "clicks", "inventory")
#: the key the contract suggests for each input topic (any key is accepted)
SUGGESTED_KEY_FIELD = {"orders": "order_id", "clicks": "user_id", "inventory": "sku"}


def record_key(kind: str, record: dict) -> bytes:
    """The Kafka key a producer should use for an input record, as the contract suggests."""
    return record[SUGGESTED_KEY_FIELD[kind]].encode()
SCHEMA_FILES = {
    "orders": "order.schema.json",
    "clicks": "click.schema.json",
    "inventory": "inventory.schema.json",
    "forecasts": "forecast.schema.json",
    "dead_letters": "dead-letter.schema.json",
    "sales": "sales.schema.json",
    "recommendations": "recommendations.schema.json",
    "promo_triggers": "promo-trigger.schema.json",
    "promo_outcomes": "promo-outcome.schema.json",
    "model_versions": "model-version.schema.json",
}
_RANGE_RULES = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}

DEAD_LETTER_REASONS = ("not_json", "schema", "invalid_value", "late", "future", "too_large", "processing_error")


def load_schema(kind: str) -> dict:
    """The project's own copy of a contract schema (shipped inside the package)."""
    text = resources.files("salescast.stream.core.schemas").joinpath(SCHEMA_FILES[kind]).read_text("utf-8")
    return json.loads(text)


_validators: dict[str, Callable[[Any], Any]] = {}


def validator(kind: str) -> Callable[[Any], Any]:
    if kind not in _validators:
        _validators[kind] = fastjsonschema.compile(load_schema(kind))
    return _validators[kind]


class Rejected(Exception):
    """An input record that can't be used; `reason` is a contract dead-letter reason."""

    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason = reason
        self.error = error


def _path_text(path: list) -> str:
    out = ""
    for part in path[1:]:  # path[0] is fastjsonschema's "data"
        index = isinstance(part, int) or (isinstance(part, str) and part.isdigit())
        out += f"[{part}]" if index else (f".{part}" if out else str(part))
    return out or "record"


def decode(kind: str, raw: bytes | str, max_bytes: int) -> dict:
    """Bytes from Kafka (or a replay line) -> a valid contract record, or raise Rejected."""
    if len(raw) > max_bytes:
        raise Rejected("too_large", f"record is {len(raw)} bytes, over the {max_bytes}-byte limit (SALESCAST_MAX_RECORD_BYTES)")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"not valid UTF-8 JSON: {exc}") from None
    return validate(kind, record)


MAX_SAFE_INTEGER = 2**53  # beyond it JSON numbers stop being exact in most clients


def _check_exact_integers(kind: str, record: dict) -> None:
    """Counts and times above 2^53 are impossible values: no shop sells 10^16 of a thing."""
    fields = [("ts", record["ts"])]
    if kind == "orders":
        fields += [(f"items[{i}].qty", item["qty"]) for i, item in enumerate(record["items"])]
    elif kind == "inventory":
        fields.append(("on_hand", record["on_hand"]))
    for where, value in fields:
        if value > MAX_SAFE_INTEGER:
            raise Rejected("invalid_value", f"{where} must be <= {MAX_SAFE_INTEGER}, got {value}")


def validate(kind: str, record: Any) -> dict:
    try:
        validator(kind)(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = _path_text(exc.path or ["data"])
        value = exc.value
        if exc.rule in _RANGE_RULES and isinstance(value, (int, float)) and not isinstance(value, bool):
            bound = exc.definition.get(exc.rule)
            raise Rejected("invalid_value", f"{where} must be {_RANGE_RULES[exc.rule]} {bound}, got {value}") from None
        message = exc.message
        message = message[5:] if message.startswith("data.") else "record" + message[4:] if message.startswith("data") else message
        raise Rejected("schema", message) from None
    if kind in INPUT_KINDS:
        _check_exact_integers(kind, record)
    return record


#: the most of an original value a dead letter carries: escaped as JSON (up to 6 characters a byte) or
#: base64 it stays far below the 1 MB a topic takes by default, so a dead letter is always delivered
#: (a record the broker refuses stops the worker: stream.delivery.outbox.Deliveries)
DEAD_LETTER_PAYLOAD_MAX_BYTES = 128 * 1024


def encode_payload(raw: bytes | str | None) -> tuple[str, str, int]:
    """The original value for a dead letter: UTF-8 text where it decodes, else base64; cut to
    DEAD_LETTER_PAYLOAD_MAX_BYTES (text at a character boundary). Also returns the original's length."""
    if raw is None:
        return "", "utf-8", 0
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    cut = raw[:DEAD_LETTER_PAYLOAD_MAX_BYTES]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(cut).decode("ascii"), "base64", len(raw)
    return cut.decode("utf-8", errors="ignore"), "utf-8", len(raw)  # "ignore": a character cut in two


@dataclass(frozen=True)
class Source:
    """Where an input record came from: enough to dead-letter it or dedupe it."""

    topic: str
    partition: int
    offset: int


def dead_letter(source: Source, reason: str, error: str, raw: bytes | str | None, now_ms: int | None = None) -> dict:
    """A dead letter; one whose payload was cut also has `payload_truncated` and `payload_bytes` (the
    original's length), additions to the contract: the whole record stays at its source position."""
    payload, encoding, size = encode_payload(raw)
    letter = {
        "source_topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "reason": reason,
        "error": error,
        "payload": payload,
        "payload_encoding": encoding,
        "ts": int(time.time() * 1000) if now_ms is None else now_ms,
    }
    if size > DEAD_LETTER_PAYLOAD_MAX_BYTES:
        letter["payload_truncated"] = True
        letter["payload_bytes"] = size
    return letter


def dumps(record: dict) -> bytes:
    return orjson.dumps(record)
