"""A year of a shop's history, with closed days, loaded through Kafka as fast as the producer goes
(`salescast backfill`, orders keyed by order id over several partitions, read unevenly by the worker).

Contract v1.1: every order line counts, per SKU and day; nothing is dead-lettered (under v1 the first
order after a closed day was `future`, and every one after it); the last closed bucket has a forecast
for every live SKU; no promo trigger comes out for history; and `salescast replay` of the same file, with
the same model store, emits the same forecasts as the worker did.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import wait_for
from tests.integration.test_forecaster import salescast

pytestmark = pytest.mark.integration
DAY = 86_400_000
ACTIVE_BUCKETS = 28


def generate(worker, path, days, seed=21):
    done = salescast(worker, "generate", "--seed", str(seed), "--skus", "20", "--users", "200", "--days", str(days),
                     "--closed-weekday", "sun", "--holidays", "3", "--out", str(path))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    days_with_events = {r["ts"] // DAY for r in records}
    first, last = min(days_with_events), max(days_with_events)
    assert last - first + 1 - len(days_with_events) >= days // 7, "the shop had no closed days: the test proves nothing"
    return records


def expected_units(records) -> dict[tuple[str, int], int]:
    units: dict[tuple[str, int], int] = {}
    for r in records:
        if r["topic"] == "orders":
            for item in r["items"]:
                key = (item["sku"], r["ts"] // DAY * DAY)
                units[key] = units.get(key, 0) + item["qty"]
    return units


def counted_units(worker, skus) -> dict[tuple[str, int], int] | None:
    units = {}
    for sku in skus:
        status, sales = worker.http(f"/skus/{sku}/sales?buckets=400")
        if status != 200:
            return None
        units.update({(sku, b["start"]): b["units"] for b in sales["buckets"] if b["units"]})
    return units


def live_at(records, bucket: int) -> set[str]:
    """SKUs with a sale, a click or a stock report within the ACTIVE_BUCKETS buckets up to `bucket`."""
    live = set()
    for r in records:
        if bucket - ACTIVE_BUCKETS < r["ts"] // DAY <= bucket:
            live.update(item["sku"] for item in r["items"]) if r["topic"] == "orders" else live.add(r["sku"])
    return live


def read_all(worker, key) -> list[dict]:
    return [json.loads(r.value) for r in worker.read(key, lambda found: True, timeout_s=30)]


def assert_counted(worker, records, timeout_s: float) -> None:
    """Every order line counted once per SKU-day, and no dead letter."""
    expected = expected_units(records)
    skus = sorted({sku for sku, _ in expected})
    last = wait_for(lambda: counted_units(worker, skus) == expected and counted_units(worker, skus),
                    timeout_s=timeout_s, interval_s=1.0, message="every order line counted once per SKU-day")
    assert last == expected
    assert read_all(worker, "dead_letters") == []


def assert_loaded(worker, records) -> dict[tuple[str, int], dict]:
    """Every line counted per SKU-day, no dead letter, the last closed bucket forecast for every live SKU,
    no trigger; the worker's forecasts by (SKU, ts)."""
    assert_counted(worker, records, timeout_s=300)
    last_closed = max(r["ts"] for r in records) // DAY - 1  # the newest day stays open: no later event yet
    live = live_at(records, last_closed)
    assert len(live) >= 10

    def forecast_of_last_close(found):
        return {json.loads(r.value)["sku"] for r in found if json.loads(r.value)["ts"] == last_closed * DAY} >= live

    forecasts = [json.loads(r.value) for r in worker.read("forecasts", forecast_of_last_close, timeout_s=120)]
    assert read_all(worker, "promo_triggers") == []  # a year of history is no occasion for a promotion
    by_key = {}
    for f in forecasts:
        by_key[(f["sku"], f["ts"])] = f
    return by_key


def test_a_year_with_closures_backfilled_fast_counts_every_line_and_replay_emits_what_the_worker_did(
        make_worker, tmp_path):
    worker = make_worker(SALESCAST_HISTORY_BUCKETS="400")
    year = tmp_path / "year.jsonl"
    records = generate(worker, year, 365)
    trained = salescast(worker, "retrain", "--events", str(year), "--model", "all")
    assert trained.returncode == 0, trained.stderr
    # (Keras writes its epoch lines to standard output too: the model-version records are the JSON lines)
    versions = [json.loads(line) for line in trained.stdout.splitlines() if line.startswith("{")]
    assert {(v["name"], v["status"]) for v in versions} == {("lstm", "live"), ("cf", "live"), ("promo", "live")}
    worker.start()
    started = time.monotonic()
    backfilled = salescast(worker, "backfill", str(year))
    assert backfilled.returncode == 0, backfilled.stderr
    assert f"backfill: {len(records)} records produced" in backfilled.stdout
    forecasts = assert_loaded(worker, records)
    print(f"a year of {len(records)} records backfilled and counted in {time.monotonic() - started:.0f}s")

    replayed = salescast(worker, "replay", str(year), "--out", str(tmp_path / "replayed.jsonl"))
    assert replayed.returncode == 0, replayed.stderr
    out = [json.loads(line) for line in (tmp_path / "replayed.jsonl").read_bytes().splitlines()]
    worker_closed = max(ts for _, ts in forecasts)
    replay_forecasts = {(f["sku"], f["ts"]): f for f in out if f["topic"] == worker.topics["forecasts"]
                        and f["ts"] <= worker_closed}
    assert [f for f in out if f["topic"] != worker.topics["forecasts"]] == []  # no dead letter, no trigger
    assert replay_forecasts.keys() == forecasts.keys()
    models = {(f["model"]["name"], f["model"]["version"]) for f in forecasts.values()}
    assert {name for name, _ in models} == {"lstm", "seasonal_naive"}
    # the LSTM reads the discount depth, so equal forecasts say the depth reached the worker's windows through
    # Kafka as it reached replay's; and it forecasts the mean beside the quantiles
    assert sum("discount" in line for r in records if r["topic"] == "orders" for line in r["items"]) > 100
    assert all("mean" in step for f in forecasts.values() if f["model"]["name"] == "lstm" for step in f["horizon"])
    differing = []
    for key, ours in forecasts.items():
        theirs = replay_forecasts[key]
        assert theirs["model"] == ours["model"] and theirs["cold_start"] == ours["cold_start"], key
        if any(abs(a.get(q, -1.0) - b.get(q, -1.0)) > 1e-3 for a, b in zip(ours["horizon"], theirs["horizon"])
               for q in ("p10", "p50", "p90", "mean")):
            differing.append(key)
    assert differing == [], f"{len(differing)} of {len(forecasts)} forecasts differ, e.g. {differing[:5]}"

    # the promotion model is live: replayed as a simulation (event time is the clock) it does promote
    simulated = salescast(worker, "replay", str(year), env={"SALESCAST_CLOCK": "events"})
    assert simulated.returncode == 0, simulated.stderr
    assert any(json.loads(line)["topic"] == worker.topics["promo_triggers"] for line in simulated.stdout.splitlines())


def test_a_backfill_with_the_worker_killed_in_the_middle_counts_every_line_once(make_worker, tmp_path):
    worker = make_worker(SALESCAST_HISTORY_BUCKETS="400")
    history = tmp_path / "history.jsonl"
    records = generate(worker, history, 150, seed=22)
    worker.start()
    backfill = subprocess.Popen([sys.executable, "-m", "salescast.cli", "backfill", str(history)], env=worker.env,
                                cwd=worker.directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: worker.metric("salescast_events_consumed_total", topic="clicks") > 5000, timeout_s=120,
             interval_s=0.05, message="worker in the middle of the backfill")
    consumed = sum(worker.metric("salescast_events_consumed_total", topic=t) for t in ("orders", "clicks", "inventory"))
    worker.stop(signal.SIGKILL)
    assert consumed < len(records), "the worker had read everything before the kill: the test proves nothing"
    out, err = backfill.communicate(timeout=300)
    assert backfill.returncode == 0, err
    worker.start()
    assert_loaded(worker, records)


def test_a_worker_leaving_during_a_backfill_hands_back_partitions_that_count_every_line_once(
        make_worker, tmp_path):
    """The rebalance when a worker leaves hands the one that stays its own partitions back from their
    committed offsets: the records it reads again are judged as the first time, not `late` against the
    days it had read after them."""
    first = make_worker(SALESCAST_HISTORY_BUCKETS="400")
    history = tmp_path / "history.jsonl"
    records = generate(first, history, 365, seed=23)
    first.start()
    second = make_worker(base=first).start()
    internal = f"{first.id}-sku-events"
    wait_for(lambda: first.assigned(internal) and second.assigned(internal), timeout_s=90,
             message="the two workers share the partitions")
    backfill = subprocess.Popen([sys.executable, "-m", "salescast.cli", "backfill", str(history)], env=first.env,
                                cwd=first.directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: first.metric("salescast_events_consumed_total", topic="inventory") > 500, timeout_s=120,
             interval_s=0.02, message="the first worker in the middle of the backfill")
    second.stop(signal.SIGTERM)
    consumed = sum(first.metric("salescast_events_consumed_total", topic=t) for t in ("orders", "clicks", "inventory"))
    assert consumed < len(records), "the first worker had read everything when the second left: proves nothing"
    out, err = backfill.communicate(timeout=300)
    assert backfill.returncode == 0, err
    assert_counted(first, records, timeout_s=300)


def test_a_300000_event_backlog_with_the_worker_killed_in_the_middle_leaves_every_sku_day_exact(
        make_worker, tmp_path):
    """Issue 16: the worker takes its topics a fetch at a time and writes state behind a cache; a kill
    between commits loses the cache and the uncommitted offsets, and nothing else."""
    worker = make_worker()
    backlog = tmp_path / "backlog.jsonl"
    done = salescast(worker, "generate", "--seed", "16", "--skus", "1000", "--users", "20000", "--days", "15",
                     "--out", str(backlog))
    assert done.returncode == 0, done.stderr
    lines = backlog.read_bytes().splitlines()[:300_000]  # in event-time order: the first 300,000
    backlog.write_bytes(b"\n".join(lines) + b"\n")
    records = [json.loads(line) for line in lines]
    assert len(records) == 300_000
    loaded = salescast(worker, "backfill", str(backlog))  # all of it waits in the topics before the worker starts
    assert loaded.returncode == 0, loaded.stderr
    worker.start()
    wait_for(lambda: worker.metric("salescast_updates_applied_total", table="sku-windows") > 60_000, timeout_s=300,
             interval_s=0.02, message="worker in the middle of the backlog")
    applied = worker.metric("salescast_updates_applied_total", table="sku-windows")
    worker.stop(signal.SIGKILL)
    sku_updates = sum(len(r["items"]) if r["topic"] == "orders" else 1 for r in records)
    assert applied < sku_updates, "the worker had applied everything before the kill: the test proves nothing"
    worker.start()
    assert_counted(worker, records, timeout_s=600)
