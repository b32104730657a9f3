import numpy as np

from salescast.contract import validator
from salescast.generator import Shop, ShopConfig, paced


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
