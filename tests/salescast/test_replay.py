import io

import orjson

from salescast import replay
from salescast.models import windows
from salescast.stream.core.contract import validator
from salescast.sim.generator import Shop, ShopConfig
from salescast.stream.core.local import LocalPipeline
from salescast.stream.core.settings import Settings
from tests.stream.serving.test_serving import lstm  # noqa: F401 - the small trained LSTM fixture

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
    out = list(replay.replay(records, settings, LocalPipeline(settings)))
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
    state = LocalPipeline(settings)
    list(replay.replay(events, settings, state))
    expected = {}
    for line in events:
        record = orjson.loads(line)
        if record["topic"] == "orders":
            for item in record["items"]:
                expected[item["sku"]] = expected.get(item["sku"], 0) + item["qty"]
    counted = {sku: sum(windows.units(w)) for sku, w in state.windows.items() if sum(windows.units(w))}
    assert counted == expected


def test_run_writes_json_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines({"topic": "inventory", "sku": "a", "on_hand": 3, "ts": T0})))
    out = io.BytesIO()
    summary = io.StringIO()
    settings = Settings.from_env({"SALESCAST_MODEL_STORE": str(tmp_path / "models")})
    done = replay.run(str(path), out, settings, progress=summary)
    assert done.counts.forecasts == 1 and orjson.loads(out.getvalue().splitlines()[0])["sku"] == "a"
    assert "1 records in, 1 forecasts" in summary.getvalue()


def test_replay_serves_the_stores_current_forecaster(tmp_path, lstm):
    """What `salescast replay` is for: backtesting the models the worker serves, not only the baseline."""
    from salescast.models.store import ModelStore
    from tests.models.test_forecast_model import CONFIG

    store = ModelStore(tmp_path / "models")
    config, weights = lstm
    version = store.save("lstm", config, weights, {"mase": 0.9})["version"]
    store.set_current("lstm", version)
    settings = Settings.from_env({"SALESCAST_MODEL_STORE": str(store.root), "SALESCAST_HORIZON": str(CONFIG.horizon)})
    shop = Shop(ShopConfig(seed=3, skus=8, users=100, days=CONFIG.input_length + 3))
    events = [orjson.dumps({**record, "topic": topic}) for topic, record in shop.events()]
    forecasts = [r for r in replay.replay(events, settings) if r["topic"] == "forecasts"]
    models = {(f["model"]["name"], f["model"]["version"]) for f in forecasts}
    assert ("lstm", version) in models  # SKUs with the model's input length of history
    assert ("seasonal_naive", "baseline-s7-v1") in models  # cold SKUs, early buckets
