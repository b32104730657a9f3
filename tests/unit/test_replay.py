import io

import orjson

from salescast import replay
from salescast.contract import validator
from salescast.generator import Shop, ShopConfig
from salescast.settings import Settings

DAY = 86_400_000
T0 = 20_000 * DAY


def lines(*records):
    return [orjson.dumps(r) for r in records]


def test_replay_sorts_by_ts_dead_letters_bad_lines_and_closes_at_the_end():
    settings = Settings.from_env({"SALESCAST_HORIZON": "2"})
    records = lines(
        {"topic": "orders", "order_id": "o2", "user_id": "u", "ts": T0 + DAY + 5,
         "items": [{"sku": "a", "qty": 1, "unit_price": 2.0}]},
        {"topic": "orders", "order_id": "o1", "user_id": "u", "ts": T0 + 5,
         "items": [{"sku": "a", "qty": 2, "unit_price": 2.0}, {"sku": "b", "qty": 1, "unit_price": 1.0}]},
        {"topic": "clicks", "user_id": "u", "sku": "a", "action": "teleport", "ts": T0},
        {"order_id": "no topic"},
    ) + [b"{not json"]
    out = list(replay.replay(records, settings))
    dead = [r for r in out if r["topic"] == "dead-letters"]
    forecasts = [r for r in out if r["topic"] == "forecasts"]
    assert sorted(r["reason"] for r in dead) == ["not_json", "schema", "schema"]
    assert {r["offset"] for r in dead} == {2, 3, 4}  # line numbers
    # day 0 closes when day 1's order arrives (a and b), then the end closes day 1 for both
    assert [(f["sku"], f["ts"]) for f in forecasts] == [("a", T0), ("b", T0), ("a", T0 + DAY), ("b", T0 + DAY)]
    assert forecasts[-1]["horizon"][0]["start"] == T0 + 2 * DAY
    for record in out:
        kind = "dead_letters" if record["topic"] == "dead-letters" else "forecasts"
        validator(kind)({k: v for k, v in record.items() if k != "topic"})


def test_replay_counts_every_generated_order_line_once():
    settings = Settings.from_env({})
    shop = Shop(ShopConfig(seed=3, skus=20, users=200, days=10))
    events = [orjson.dumps({**record, "topic": topic}) for topic, record in shop.events()]
    state = replay.ReplayState()
    list(replay.replay(events, settings, state=state))
    expected = {}
    for line in events:
        record = orjson.loads(line)
        if record["topic"] == "orders":
            for item in record["items"]:
                expected[item["sku"]] = expected.get(item["sku"], 0) + item["qty"]
    counted = {sku: sum(w["u"]) for sku, w in state.windows.items() if sum(w["u"])}
    assert counted == expected


def test_run_writes_json_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines({"topic": "inventory", "sku": "a", "on_hand": 3, "ts": T0})))
    out = io.BytesIO()
    stats = replay.run(str(path), out, Settings.from_env({}), progress=io.StringIO())
    assert stats.forecasts == 1 and orjson.loads(out.getvalue().splitlines()[0])["sku"] == "a"
