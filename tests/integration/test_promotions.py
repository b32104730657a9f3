"""Promotions end to end through the real broker.

History goes in day by day with the recommender and the promotion model
trained from it; a SKU then reports far more stock than it can sell, and at
the next bucket close a trigger for it comes out on promo-triggers. Orders
by some of its targets, one of its holdout and a user outside the trigger
follow; interim outcomes arrive as they do, and when event time passes the
trigger's end, a final outcome with exactly those counts.
"""

import json

import pytest

from salescast.stream.core.contract import record_key
from tests.integration.conftest import assert_valid, wait_for
from tests.integration.test_forecaster import DAY_MS, produce_day_by_day, salescast

pytestmark = pytest.mark.integration


def test_an_overstocked_sku_gets_a_trigger_and_its_outcome_counts_the_orders_that_followed(make_worker, tmp_path):
    # the generated shop's days are history by the wall clock: its event time is the clock here
    worker = make_worker(SALESCAST_CLOCK="events", SALESCAST_PROMO_MAX_OPEN="1000", SALESCAST_PROMO_DAILY_BUDGET="1000000000",
                         SALESCAST_PROMO_COOLDOWN="1h")
    events = tmp_path / "history.jsonl"
    generated = salescast(worker, "generate", "--seed", "5", "--skus", "30", "--users", "1500", "--days", "28",
                          "--promo-rate", "0.1", "--out", str(events))
    assert generated.returncode == 0, generated.stderr
    lines = events.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    for model in ("cf", "promo"):
        trained = salescast(worker, "retrain", "--events", str(events), "--model", model)
        assert trained.returncode == 0, trained.stderr
        assert_valid("model_versions", json.loads(trained.stdout))

    worker.start()
    produce_day_by_day(worker, lines)
    last_day = max(r["ts"] for r in records) // DAY_MS
    viewers: dict[str, set] = {}
    for r in records:
        if r["topic"] == "clicks":
            viewers.setdefault(r["sku"], set()).add(r["user_id"])
    # triggers already made on the history: a SKU with one still open gets no other
    open_before = {json.loads(r.value)["sku"] for r in worker.read("promo_triggers", lambda found: True)
                   if json.loads(r.value)["valid_until"] > (last_day + 1) * DAY_MS}
    sku = max(set(viewers) - open_before, key=lambda s: len(viewers[s]))  # the most viewed SKU free for one
    inventory = [r for r in records if r["topic"] == "inventory" and r["sku"] == sku][-1]
    producer = worker.producer()

    def send(topic, record):
        producer.send(worker.topics[topic], key=record_key(topic, record), value=json.dumps(record).encode()).get(10)

    overstock = {**inventory, "on_hand": 100_000, "ts": (last_day + 1) * DAY_MS + 1}
    overstock.pop("topic")
    send("inventory", overstock)  # its day's tick closes the day before: the SKU is judged with this stock

    def trigger_for_sku(found):
        return [t for t in map(lambda r: json.loads(r.value), found)
                if t["sku"] == sku and t["ts"] >= (last_day + 1) * DAY_MS]

    trigger = trigger_for_sku(worker.read("promo_triggers", trigger_for_sku, timeout_s=60))[0]
    assert_valid("promo_triggers", trigger)
    assert trigger["reason"] == "overstock" and trigger["on_hand"] >= 100_000 - 50
    assert trigger["ts"] == (last_day + 1) * DAY_MS and trigger["valid_until"] > trigger["ts"]
    targets = [t["user_id"] for t in trigger["targets"]]
    holdout = trigger["holdout"]
    assert len(targets) >= 2 and len(holdout) >= 1 and set(targets).isdisjoint(holdout)
    assert 0 < trigger["discount"] <= 0.3 and trigger["expected_incremental_units"] > 0
    assert set(trigger["models"]) >= {"cf", "promo"}

    at = trigger["ts"] + 3 * 3_600_000
    price = inventory["list_price"] * (1 - trigger["discount"])

    def order(order_id, user, qty, promo_id=None):
        send("orders", {"order_id": order_id, "user_id": user, "ts": at, "promo_id": promo_id,
                        "items": [{"sku": sku, "qty": qty, "unit_price": round(price, 2),
                                   "discount": trigger["discount"]}]})

    order("p-1", targets[0], 2, trigger["trigger_id"])
    order("p-2", targets[1], 1)
    order("p-3", targets[0], 1, trigger["trigger_id"])
    order("p-4", holdout[0], 1)
    order("p-5", "someone-else", 3, trigger["trigger_id"])  # not in the experiment: not counted

    def outcomes(found):
        return [json.loads(r.value) for r in found if r.key == trigger["trigger_id"].encode()]

    def interim_with_all(found):
        return any(o["target_buyers"] == 2 and o["holdout_buyers"] == 1 for o in outcomes(found))

    for record in outcomes(worker.read("promo_outcomes", interim_with_all, timeout_s=60)):
        assert_valid("promo_outcomes", record)
        assert record["final"] is False
    # event time moves on a day at a time (nothing further than SALESCAST_MAX_FUTURE_MS ahead)
    for day in range(2, 5):
        send("clicks", {"user_id": "clock", "sku": "clock-sku", "action": "view", "ts": (last_day + day) * DAY_MS + 1})
        wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="clicks") >= 1, message="tick")

    def final(found):
        return [o for o in outcomes(found) if o["final"]]

    (result,) = final(worker.read("promo_outcomes", final, timeout_s=90))
    assert_valid("promo_outcomes", result)
    assert (result["targets"], result["holdout"]) == (len(targets), len(holdout))
    assert (result["target_buyers"], result["holdout_buyers"]) == (2, 1)
    assert (result["target_units"], result["holdout_units"]) == (4, 1)
    assert result["uplift"] == pytest.approx(2 / len(targets) - 1 / len(holdout), abs=1e-6)
    assert result["ts"] == trigger["valid_until"]
    # (the exposition lists labels in alphabetical order)
    assert worker.metric("salescast_promo_members_total", group="targets", reason="overstock") >= len(targets)
    assert worker.metric("salescast_promo_triggers_emitted_total", reason="overstock") >= 1
