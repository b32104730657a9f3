"""What a SKU's window and a user's vector absorb: the updates, their wire format, and applying them.

The ingest side (salescast.stream.core.ingest) makes the updates; the agents
route them through the internal topics sku-events and user-events, keyed by SKU
and by user, to the worker that owns the key; replay applies them in memory.
Applying one is idempotent by input position: a record re-read after a crash
changes nothing (salescast.models.positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import orjson

from salescast.models import useritem, windows
from salescast.models.positions import already_applied
from salescast.models.promo import attribution
from salescast.stream.core.settings import Settings

# The internal topics' records (sku-events, user-events) are tagged dicts, read by name, so workers of two
# versions can run side by side during a rolling deploy:
# - "v" is the format's major version; a reader accepts its own only (WireVersionError), so a change that
#   old readers would misread (a field renamed, its meaning changed) takes a new major version;
# - a field at its default is left out, and a reader ignores keys it does not know: adding a field with a
#   default needs no new version;
# - a key, once used, keeps its meaning for good; none is a window's or a vector's key, which would
#   read as state access (tests/models/test_state_access.py).
WIRE_VERSION = 1
# Updates travel bundled: one record per partition of sku-events / user-events per ingest batch, holding that
# partition's updates as they are, each with its own input position, so exactly-once counting is unchanged.
# A bundle of up to this many bytes: far under the broker's 1 MiB default record limit (message.max.bytes).
BUNDLE_MAX_BYTES = 256 * 1024
_BUNDLE_HEAD = b'{"v":%d,"updates":[' % WIRE_VERSION
SIZE_SAMPLE = 256  # values json_lists encodes first, to size the records of a longer list
SIZE_MARGIN = 0.8  # of max_bytes json_lists aims a record at, for values longer than the sample's


class WireVersionError(ValueError):
    """An internal record in a format this worker cannot read (raised, it becomes a dead letter)."""


def _wrong_version(wire: dict, topic: str) -> WireVersionError:
    return WireVersionError(f"{topic} record of wire format version {wire.get('v')!r}: this worker reads "
                            f"version {WIRE_VERSION} only (a worker of another major version wrote it)")


def bundles(encoded: Iterable[bytes], max_bytes: int = BUNDLE_MAX_BYTES) -> Iterator[bytes]:
    """Updates already encoded one by one (orjson of to_wire(), so a record that cannot be encoded is
    caught on its own), joined into bundle records of at most `max_bytes` (one larger update: alone)."""
    chunk: list[bytes] = []
    size = 0
    for update in encoded:
        if chunk and size + len(update) > max_bytes:
            yield _BUNDLE_HEAD + b",".join(chunk) + b"]}"
            chunk, size = [], 0
        chunk.append(update)
        size += len(update) + 1
    if chunk:
        yield _BUNDLE_HEAD + b",".join(chunk) + b"]}"


def json_lists(values: list, max_bytes: int = BUNDLE_MAX_BYTES) -> Iterator[bytes]:
    """`values` as JSON arrays of at most `max_bytes` each (one larger value: alone), so no internal record
    outgrows the broker's limit. A large list is cut by count, from the size of its first values, and a
    part that still comes out too large is halved: each value is encoded about once."""
    sample = orjson.dumps(values[:SIZE_SAMPLE])
    if len(values) <= SIZE_SAMPLE and len(sample) <= max_bytes:
        yield sample
        return
    per_record = max(1, int(max_bytes * SIZE_MARGIN * min(len(values), SIZE_SAMPLE) / len(sample)))
    for start in range(0, len(values), per_record):
        part = values[start:start + per_record]
        encoded = orjson.dumps(part)
        if len(encoded) <= max_bytes or len(part) == 1:
            yield encoded
        else:
            half = len(part) // 2
            yield from json_lists(part[:half], max_bytes)
            yield from json_lists(part[half:], max_bytes)


def updates_in(value: bytes) -> list[dict | list]:
    """The updates an internal record carries, undecoded: a bundle's, or the one of a single-update record
    (the promotions agent's registrations, or a record of a worker from before bundles)."""
    wire = orjson.loads(value)
    if type(wire) is dict and "updates" in wire:
        if wire.get("v") != WIRE_VERSION:
            raise _wrong_version(wire, "bundle")
        return wire["updates"]
    return [wire]


@dataclass(slots=True)
class SkuUpdate:
    """One thing that happened to a SKU, routed to the worker that owns the SKU. Its wire key follows
    each field."""

    kind: str  # k: "sale" | "click" | "inventory" | "promo"
    sku: str  # sku
    ts: int  # ts
    source: str  # src: e.g. "o3", orders partition 3
    offset: int  # off
    line: int = 0  # ln
    units: int = 0  # qty
    revenue: float = 0.0  # rev
    on_hand: int | None = None  # stock
    list_price: float | None = None  # price
    category: str | None = None  # category
    promo_units: int = 0  # promo_qty: of `units`, sold on a promotion or discount
    unit_cost: float | None = None  # cost
    user: str | None = None  # usr: the buyer, for promotion attribution
    promo_id: str | None = None  # promo: the order's promo_id
    trigger: dict | None = None  # trigger: kind "promo", an admitted trigger whose outcome this SKU measures
    discount_units: float = 0.0  # disc: of `units`, the fraction off list price summed per unit

    def to_wire(self) -> dict:
        """The sku-events record, for orjson. Field by field: every update passes here, and a loop over the
        fields measured several times slower (bench/wire.py times the round trip)."""
        wire = {"v": WIRE_VERSION, "k": self.kind, "sku": self.sku, "ts": self.ts, "src": self.source,
                "off": self.offset}
        if self.line:
            wire["ln"] = self.line
        if self.units:
            wire["qty"] = self.units
        if self.revenue:
            wire["rev"] = self.revenue
        if self.on_hand is not None:
            wire["stock"] = self.on_hand
        if self.list_price is not None:
            wire["price"] = self.list_price
        if self.category is not None:
            wire["category"] = self.category
        if self.promo_units:
            wire["promo_qty"] = self.promo_units
        if self.unit_cost is not None:
            wire["cost"] = self.unit_cost
        if self.user is not None:
            wire["usr"] = self.user
        if self.promo_id is not None:
            wire["promo"] = self.promo_id
        if self.trigger is not None:
            wire["trigger"] = self.trigger
        if self.discount_units:
            wire["disc"] = self.discount_units
        return wire

    @classmethod
    def from_wire(cls, wire: dict | list) -> "SkuUpdate":
        """WireVersionError for a major version other than WIRE_VERSION; KeyError when a required field is
        missing. A list is a record of the positional format before version 1, still in flight while the
        workers that wrote it are replaced."""
        if type(wire) is list:
            return cls(*wire)
        if wire.get("v") != WIRE_VERSION:
            raise _wrong_version(wire, "sku-events")
        if len(wire) == 6:  # the version and the required fields only (a click): the defaults hold
            return cls(wire["k"], wire["sku"], wire["ts"], wire["src"], wire["off"])
        get = wire.get
        return cls(wire["k"], wire["sku"], wire["ts"], wire["src"], wire["off"], get("ln", 0), get("qty", 0),
                   get("rev", 0.0), get("stock"), get("price"), get("category"), get("promo_qty", 0), get("cost"),
                   get("usr"), get("promo"), get("trigger"), get("disc", 0.0))


@dataclass(slots=True)
class UserUpdate:
    """One interaction of a user with a SKU, routed to the worker that owns the user. Its wire key follows
    each field."""

    user: str  # usr
    sku: str  # sku
    action: str  # act: view | cart | wishlist | purchase
    ts: int  # ts
    source: str  # src
    offset: int  # off
    line: int = 0  # ln

    def to_wire(self) -> dict:
        """The user-events record (orjson-ready)."""
        wire = {"v": WIRE_VERSION, "usr": self.user, "sku": self.sku, "act": self.action, "ts": self.ts,
                "src": self.source, "off": self.offset}
        if self.line:
            wire["ln"] = self.line
        return wire

    @classmethod
    def from_wire(cls, wire: dict | list) -> "UserUpdate":
        """As SkuUpdate.from_wire."""
        if type(wire) is list:
            return cls(*wire)
        if wire.get("v") != WIRE_VERSION:
            raise _wrong_version(wire, "user-events")
        return cls(wire["usr"], wire["sku"], wire["act"], wire["ts"], wire["src"], wire["off"], wire.get("ln", 0))


def apply_sku_update(window: windows.Window | None, update: SkuUpdate, settings: Settings,
                     close_before: int | None = None) -> tuple[windows.Window, bool]:
    """Returns the window and whether the update changed it (False: a replayed duplicate).

    `close_before`: the bucket the caller has closed buckets up to (its low
    watermark's), so a quiet SKU's window catches up (windows.catch_up).
    """
    bucket = update.ts // settings.time.bucket_ms
    if window is None:
        window = windows.new_window(bucket)
    if already_applied(windows.applied_positions(window), update.source, (update.offset, update.line)):
        return window, False
    if close_before is not None:
        windows.catch_up(window, close_before, settings.forecasting.active_buckets)
    if update.kind == "sale":
        windows.add_sale(window, bucket, update.units, update.revenue, settings.forecasting.history_buckets,
                         update.promo_units, update.discount_units)
        if update.user is not None:
            for state in windows.promotions(window):
                attribution.attribute(state, update.user, update.units, update.ts, update.promo_id)
    elif update.kind == "click":
        windows.add_clicks(window, bucket, 1, settings.forecasting.history_buckets)
    elif update.kind == "promo":
        t = update.trigger
        windows.add_promotion(window, attribution.open_attribution(
            t["trigger_id"], t["ts"], t["valid_until"], [target["user_id"] for target in t["targets"]],
            t["holdout"], t["reason"]))
    else:
        windows.set_inventory(window, update.ts, update.on_hand, update.list_price, update.category, bucket,
                              settings.forecasting.history_buckets, update.unit_cost)
    return window, True


def apply_user_update(vector: useritem.UserVector | None, update: UserUpdate, settings: Settings
                      ) -> tuple[useritem.UserVector, bool]:
    """Returns the vector and whether the update changed it (False: a replayed duplicate)."""
    if vector is None:
        vector = useritem.new_vector()
    if already_applied(useritem.applied_positions(vector), update.source, (update.offset, update.line)):
        return vector, False
    cf = settings.recommendations
    weight = cf.interaction_weights.for_action(update.action)
    useritem.learn_one(vector, update.sku, weight, update.ts, cf.interaction_half_life_ms, cf.user_item_cap)
    return vector, True
