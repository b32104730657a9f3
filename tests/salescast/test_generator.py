import json

import numpy as np
import pytest

from salescast.stream.core.contract import validator
from salescast.sim.generator import Shop, ShopConfig, paced, parse_days, parse_weekday


def small(seed=1):
    return ShopConfig(seed=seed, skus=30, users=300, days=14)


def test_the_same_seed_gives_the_same_events():
    assert list(Shop(small()).events()) == list(Shop(small()).events())
    assert list(Shop(small(1)).events()) != list(Shop(small(2)).events())


def test_events_are_valid_contract_records_in_ts_order():
    events = list(Shop(small()).events())
    assert {topic for topic, _ in events} == {"orders", "clicks", "inventory"}
    for topic, record in events:
        validator(topic)(record)
    ts = [record["ts"] for _, record in events]
    assert ts == sorted(ts)


def test_promotions_lift_sales_by_the_known_elasticity():
    shop = Shop(ShopConfig(seed=5, skus=40, users=4000, days=60, promo_rate=0.05))
    on_promo, off_promo = [], []
    for topic, record in shop.events():
        if topic == "orders":
            for item in record["items"]:
                (on_promo if "discount" in item else off_promo).append(item["qty"])
    truth = shop.ground_truth()
    assert truth["promotions"] and all(p["expected_lift"] > 1 for p in truth["promotions"])
    assert on_promo  # promotions sold something, at a discount


def test_ground_truth_names_preferences_and_elasticities():
    shop = Shop(small())
    truth = shop.ground_truth()
    assert set(truth["skus"]) == set(shop.sku_ids)
    assert all(v["elasticity"] < 0 for v in truth["skus"].values())
    prefs = truth["users"]["u-0"]["category_prefs"]
    assert np.isclose(sum(prefs.values()), 1.0) and len(truth["users"]["u-0"]["top_skus"]) == 10


def test_paced_respects_rate_and_speedup():
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    events = [("clicks", {"ts": 1000 * i}) for i in range(5)]
    list(paced(iter(events), rate=10, speedup=None, clock=lambda: clock[0], sleep=sleep))
    assert abs(clock[0] - 0.4) < 1e-9
    clock[0] = 0.0
    list(paced(iter(events), rate=None, speedup=2, clock=lambda: clock[0], sleep=sleep))
    assert abs(clock[0] - 2.0) < 1e-9  # 4 s of event time at 2x


def test_a_trigger_s_targets_buy_more_than_its_holdout_and_the_shop_knows_the_true_uplift():
    shop = Shop(ShopConfig(seed=3, skus=10, users=3000, days=8))
    day_ms = 86_400_000
    for day in range(2):
        shop.day(day)
    sku = "sku-0"
    members = [f"u-{j}" for j in range(3000)]
    start = shop.config.start_ms + 2 * day_ms
    trigger = {"trigger_id": f"{sku}@{start}", "sku": sku, "discount": 0.3, "ts": start,
               "valid_until": start + 5 * day_ms, "targets": [{"user_id": u, "score": 1.0} for u in members[:1500]],
               "holdout": members[1500:]}
    shop.offer(trigger)
    buyers = {"targets": set(), "holdout": set()}
    promo_orders = 0
    for day in range(2, 8):
        for topic, record in shop.day(day):
            if topic != "orders" or not start <= record["ts"] <= trigger["valid_until"]:
                continue
            promo_orders += record["promo_id"] == trigger["trigger_id"]
            for item in record["items"]:
                if item["sku"] == sku:
                    group = "targets" if int(record["user_id"][2:]) < 1500 else "holdout"
                    buyers[group].add(record["user_id"])
                    if group == "holdout":
                        assert item.get("discount", 0) < 0.3 and record["promo_id"] != trigger["trigger_id"]
    truth = shop.ground_truth()["offers"][trigger["trigger_id"]]
    assert truth["members"] == 3000 and truth["targets"] == 1500 and truth["uplift"] > 0
    assert len(buyers["targets"]) > len(buyers["holdout"]) and promo_orders > 0
    rates = [len(buyers["targets"]) / 1500, len(buyers["holdout"]) / 1500]
    se = np.sqrt(sum(rate * (1 - rate) / 1500 for rate in rates))
    assert abs(rates[0] - rates[1] - truth["uplift"]) < 3 * se  # measured uplift within sampling noise of the truth


DAY_MS = 86_400_000


def _days_of(events, config):
    """day index -> events that day, by their ts."""
    days = {}
    for topic, record in events:
        days.setdefault((record["ts"] - config.start_ms) // DAY_MS, []).append((topic, record))
    return days


def test_closed_days_have_no_events_and_the_days_before_the_first_are_unchanged():
    config = ShopConfig(seed=1, skus=30, users=300, days=14, closed_days=(4, 5, 9))
    shop = Shop(config)
    days = _days_of(list(shop.events()), config)
    assert not {4, 5, 9} & set(days)  # no order, click or inventory record at all
    assert all({topic for topic, _ in days[day]} == {"orders", "clicks", "inventory"}
               for day in set(range(14)) - {4, 5, 9})
    before = [event for event in Shop(small()).events() if event[1]["ts"] < config.start_ms + 4 * DAY_MS]
    assert before == [event for day in range(4) for event in days[day]]
    truth = shop.ground_truth()
    assert [(c["day"], c["start"], c["reasons"]) for c in truth["closed_days"]] == [
        (day, config.start_ms + day * DAY_MS, ["closed_days"]) for day in (4, 5, 9)]
    assert truth["config"]["closed_days"] == (4, 5, 9) and truth["holidays"] == []


def test_no_closure_by_default():
    truth = Shop(small()).ground_truth()
    assert truth["closed_days"] == [] and truth["holidays"] == []
    assert list(Shop(small()).events()) == list(Shop(ShopConfig(seed=1, skus=30, users=300, days=14, closed_days=(),
                                                               closed_weekday=None, holidays=0)).events())


def test_a_visit_cut_off_by_a_closed_day_did_not_happen_and_its_stock_is_back():
    shop = Shop(ShopConfig(seed=12, skus=10, users=2000, days=3, closed_days=(1,)))
    shop.day(0)
    cut = [item for _, topic, record in shop._pending if topic == "orders" for item in record["items"]]
    assert cut  # this seed has an order just after midnight
    on_hand = shop.on_hand.copy()
    assert shop.day(1) == []
    for item in cut:
        on_hand[shop.sku_index[item["sku"]]] += item["qty"]
    assert (shop.on_hand == on_hand).all()
    assert all(record["ts"] >= shop.config.start_ms + 2 * DAY_MS for _, record in shop.day(2))


def test_a_weekly_closed_weekday_has_no_events():
    config = ShopConfig(seed=2, skus=20, users=200, days=21, closed_weekday=6)  # Sundays
    shop = Shop(config)
    events = list(shop.events())
    sundays = [day for day in range(21) if (config.start_ms // DAY_MS + day + 3) % 7 == 6]
    assert len(sundays) == 3
    assert all((record["ts"] // DAY_MS + 3) % 7 != 6 for _, record in events)
    assert [c["day"] for c in shop.ground_truth()["closed_days"]] == sundays
    assert all(c["reasons"] == ["weekly"] for c in shop.ground_truth()["closed_days"])


def test_holidays_are_drawn_from_the_seed_and_closed():
    config = ShopConfig(seed=4, skus=20, users=200, days=90, holidays=4)
    shop = Shop(config)
    assert shop.holidays == Shop(config).holidays  # the same seed, the same holidays
    assert shop.holidays != Shop(ShopConfig(seed=5, skus=20, users=200, days=90, holidays=4)).holidays
    assert len(shop.holidays) == 4 and all(2 <= length <= 10 for _, length in shop.holidays)
    for (first, length), (following, _) in zip(shop.holidays, shop.holidays[1:]):
        assert first + length < following  # apart, by an open day at least
    closed = {first + k for first, length in shop.holidays for k in range(length)}
    days = _days_of(list(shop.events()), config)
    assert not closed & set(days) and set(days) == set(range(90)) - closed
    truth = shop.ground_truth()
    assert {c["day"] for c in truth["closed_days"]} == closed
    assert [(h["first_day"], h["days"]) for h in truth["holidays"]] == shop.holidays
    assert all(h["end"] - h["start"] == h["days"] * DAY_MS for h in truth["holidays"])
    # the holidays have a stream of their own: the days before the first are as without them
    plain = ShopConfig(seed=4, skus=20, users=200, days=90)
    first = shop.holidays[0][0]
    assert [event for day in range(first) for event in days[day]] == [
        event for event in Shop(plain).events() if event[1]["ts"] < plain.start_ms + first * DAY_MS]


def test_closures_that_cannot_be_are_refused():
    for bad in (dict(closed_days=(14,)), dict(closed_weekday=7), dict(holidays=6), dict(holidays=-1)):
        try:
            Shop(ShopConfig(seed=1, skus=5, users=20, days=14, **bad))
        except ValueError as exc:
            assert str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_day_lists_and_weekdays_parse():
    assert parse_days("5,6,40-43") == (5, 6, 40, 41, 42, 43)
    assert parse_days(" 3 , 1-2,2") == (1, 2, 3)
    assert [parse_weekday(text) for text in ("0", "6", "sun", "Monday", "TUE")] == [0, 6, 6, 0, 1]
    for bad in ("x", "5-", "4-2", "-1", ""):
        try:
            parse_days(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    for bad in ("7", "someday"):
        try:
            parse_weekday(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_generate_writes_closed_days_and_their_truth(tmp_path):
    from salescast.cli import main

    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.json"
    assert main(["generate", "--days", "10", "--skus", "10", "--users", "100", "--closed-days", "2,5-6",
                 "--holidays", "1", "--seed", "3", "--out", str(events), "--truth", str(truth)]) == 0
    records = [json.loads(line) for line in events.read_text().splitlines()]
    closed = json.loads(truth.read_text())["closed_days"]
    assert {2, 5, 6} <= {c["day"] for c in closed}
    starts = {c["start"] for c in closed}
    assert records and not any(record["ts"] // DAY_MS * DAY_MS in starts for record in records)
    assert main(["generate", "--days", "10", "--closed-days", "10", "--out", str(events)]) == 2


def test_an_offer_is_costed_for_its_targets_a_random_group_and_everyone_without_changing_the_shop(monkeypatch):
    from salescast.sim.generator import MEAN_QUANTITY, Offer

    offer = Offer("t", 0.2, 0, 10, targets={1, 2}, members={1, 2, 3}, random_group={4, 5}, list_price=10.0,
                  unit_cost=6.0)
    offer.price(1, 0.1, 0.3, 0.0, 0.2)  # a target: 10% -> 30% chance to buy
    offer.price(4, 0.1, 0.3, 0.0, 0.2)  # in the random group
    offer.price(9, 0.5, 0.6, 0.0, 0.2)  # anyone else who viewed
    policy = offer.money("policy")
    units = MEAN_QUANTITY * 0.2
    assert policy["offered"] == 2 and policy["viewers"] == 1
    assert policy["units"] == pytest.approx(units)
    assert policy["revenue"] == pytest.approx(MEAN_QUANTITY * (0.3 * 8.0 - 0.1 * 10.0))
    assert policy["margin"] == pytest.approx(MEAN_QUANTITY * (0.3 * 2.0 - 0.1 * 4.0))
    assert policy["discount_cost"] == pytest.approx(MEAN_QUANTITY * 0.3 * 2.0)
    assert offer.money("random")["units"] == pytest.approx(units)
    everyone = offer.money("everyone")
    assert everyone["offered"] == 3 and everyone["units"] == pytest.approx(2 * units + MEAN_QUANTITY * 0.1)

    # pricing every viewer draws nothing from the shop's generator: the same seed gives the same days
    def days_with_an_offer():
        shop = Shop(ShopConfig(seed=5, skus=10, users=500, days=4))
        shop.day(0)
        start = shop.config.start_ms + 86_400_000
        shop.offer({"trigger_id": "x", "sku": "sku-1", "discount": 0.2, "ts": start, "valid_until": start + 2 * 86_400_000,
                    "targets": [{"user_id": f"u-{j}", "score": 1.0} for j in range(100)], "holdout": []})
        return [shop.day(day) for day in (1, 2)], shop

    first, shop = days_with_an_offer()
    monkeypatch.setattr(Offer, "price", lambda self, *args: None)
    unpriced, _ = days_with_an_offer()
    assert first == unpriced and shop.offers[1][0].money("everyone")["viewers"] > 0
    assert len(shop.offers[1][0].random_group) == 100 and not shop.offers[1][0].random_group & shop.offers[1][0].targets
