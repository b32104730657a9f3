"""The cost of an internal record's round trip: to_wire, orjson.dumps, orjson.loads, from_wire.

The tagged format (a dict read by name, issue 15) against the positional list it
replaced, per kind of update and weighted by a simulated shop's traffic (clicks
make most of it). Each number is the best of several runs of many round trips.

    python bench/wire.py [--runs 7] [--number 200000]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.stream.core.state import SkuUpdate, UserUpdate  # noqa: E402

TS = 1_760_000_000_000
SKU_UPDATES = {
    "click": SkuUpdate("click", "sku-01234", TS, "c0", 99_999),
    "sale": SkuUpdate("sale", "sku-01234", TS, "o3", 123_456, 1, units=3, revenue=29.97, user="u-98765"),
    "inventory": SkuUpdate("inventory", "sku-01234", TS, "i1", 5_555, on_hand=40, list_price=9.99, category="toys",
                           unit_cost=4.5),
}
USER_UPDATE = UserUpdate("u-98765", "sku-01234", "view", TS, "c0", 99_999)


def positional(update: SkuUpdate | UserUpdate) -> list:
    """The format before version 1, as its to_wire wrote it: every field, in declaration order."""
    if type(update) is UserUpdate:
        return [update.user, update.sku, update.action, update.ts, update.source, update.offset, update.line]
    return [update.kind, update.sku, update.ts, update.source, update.offset, update.line, update.units,
            update.revenue, update.on_hand, update.list_price, update.category, update.promo_units, update.unit_cost,
            update.user, update.promo_id, update.trigger]


def round_trip_us(update, encode, decode, runs: int, number: int) -> float:
    dumps, loads = orjson.dumps, orjson.loads
    return min(timeit.repeat(lambda: decode(loads(dumps(encode(update)))), number=number, repeat=runs)) / number * 1e6


def traffic() -> dict[str, float]:
    """Each kind's share of the updates a simulated shop sends (order lines make sales; clicks and order lines
    also make a user update each)."""
    counts: Counter = Counter()
    for topic, record in Shop(ShopConfig(seed=7, skus=300, users=2000, days=14)).events():
        if topic == "orders":
            counts["sale"] += len(record["items"])
            counts["user"] += len(record["items"])
        elif topic == "clicks":
            counts["click"] += 1
            counts["user"] += 1
        else:
            counts["inventory"] += 1
    total = sum(counts.values())
    return {kind: count / total for kind, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    cases = {kind: (update, SkuUpdate) for kind, update in SKU_UPDATES.items()}
    cases["user"] = (USER_UPDATE, UserUpdate)
    shares = traffic()
    mix_old = mix_new = 0.0
    for kind, (update, cls) in cases.items():
        assert cls.from_wire(orjson.loads(orjson.dumps(update.to_wire()))) == update
        old = round_trip_us(update, positional, lambda wire, cls=cls: cls(*wire), args.runs, args.number)
        new = round_trip_us(update, cls.to_wire, cls.from_wire, args.runs, args.number)
        mix_old += shares[kind] * old
        mix_new += shares[kind] * new
        print(f"{kind:>9} ({shares[kind]:5.1%} of updates): positional {old:.2f} us "
              f"({len(orjson.dumps(positional(update)))} B), tagged {new:.2f} us "
              f"({len(orjson.dumps(update.to_wire()))} B): {new / old:.2f}x", flush=True)
    print(f"traffic-weighted: positional {mix_old:.2f} us, tagged {mix_new:.2f} us per update: "
          f"{mix_new / mix_old:.2f}x")


if __name__ == "__main__":
    main()
