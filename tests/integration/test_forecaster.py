"""The LSTM end to end through the real broker: retrain from a file, serve, retrain from the service and
switch without a restart, refuse a damaged version, roll back.

Training uses tiny sizes (7-bucket inputs, 8-unit layers, 2 epochs) so CI stays
fast; the accuracy claims are `salescast evaluate`'s, in docs/forecasting.md.
"""

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from salescast.stream.core.contract import record_key
from tests.integration.conftest import assert_valid, wait_for

pytestmark = pytest.mark.integration
TINY = ["--input-length", "7", "--epochs", "2", "--units", "8", "8", "--dense", "8", "--quiet"]
DAY_MS = 86_400_000


def salescast(worker, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salescast.cli", *args], env={**worker.env, **(env or {})},
                          cwd=worker.directory, capture_output=True, text=True, timeout=300)


def produce(worker, lines) -> None:
    producer = worker.producer()
    for line in lines:
        record = json.loads(line)
        topic = record.pop("topic")
        producer.send(worker.topics[topic], key=record_key(topic, record), value=json.dumps(record).encode())
    producer.flush()


def produce_day_by_day(worker, lines) -> None:
    """As a shop's events arrive: a day at a time, each consumed before the next is sent.

    (Sent as one 70-day backlog, the sparse orders partitions are read days ahead of the
    clicks, and an order after a quiet day is then more than SALESCAST_MAX_FUTURE_MS ahead of
    the newest event seen: a `future` dead letter. See the issue 4 closing note.)
    """
    days: dict[int, list[bytes]] = {}
    for line in lines:
        days.setdefault(json.loads(line)["ts"] // DAY_MS, []).append(line)
    sent = 0
    for day in sorted(days):
        produce(worker, days[day])
        sent += len(days[day])
        wait_for(lambda: sum(worker.metric("salescast_events_consumed_total", topic=kind)
                             for kind in ("orders", "clicks", "inventory")) >= sent,
                 timeout_s=60, interval_s=0.05, message=f"day {day} consumed")


def lstm_forecasts(worker, version, after_ts=0):
    def done(records):
        return any(json.loads(r.value)["model"]["version"] == version and json.loads(r.value)["ts"] >= after_ts
                   for r in records)
    records = [json.loads(r.value) for r in worker.read("forecasts", done, timeout_s=120)]
    return [r for r in records if r["model"]["version"] == version and r["ts"] >= after_ts], records


def test_retrain_then_serve_then_retrain_from_the_service_switches_versions(make_worker, tmp_path):
    worker = make_worker()
    events = tmp_path / "history.jsonl"
    generated = salescast(worker, "generate", "--seed", "5", "--skus", "6", "--users", "400", "--days", "70",
                          "--out", str(events))
    assert generated.returncode == 0, generated.stderr

    trained = salescast(worker, "retrain", "--model", "lstm", "--events", str(events), *TINY)
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads(trained.stdout)
    assert_valid("model_versions", manifest)
    assert manifest["name"] == "lstm" and manifest["status"] == "live"
    assert {"mase", "baseline_mase", "coverage_p10_p90"} <= set(manifest["metrics"])
    store = tmp_path / "var" / "models" / "lstm"
    assert (store / "CURRENT").read_text().strip() == manifest["version"]
    announced = worker.read("model_versions", lambda records: any(
        json.loads(r.value)["version"] == manifest["version"] for r in records))
    assert announced[-1].key == b"lstm" and json.loads(announced[-1].value) == manifest

    worker.start()
    lines = events.read_bytes().splitlines()
    produce_day_by_day(worker, lines)
    served, everything = lstm_forecasts(worker, manifest["version"])
    for record in served:
        assert_valid("forecasts", record)
        assert record["model"] == {"name": "lstm", "version": manifest["version"]} and not record["cold_start"]
        for bucket in record["horizon"]:
            assert bucket["p10"] <= bucket["p50"] <= bucket["p90"]
    # the first week's forecasts had too little history for the model: baseline, flagged
    early = [r for r in everything if r["model"]["name"] != "lstm"]
    assert early and all(r["cold_start"] for r in early)
    assert worker.metric("salescast_model_info", model="forecast", version=manifest["version"]) == 1

    # retrain from the worker's own windows (its changelog), restart, and the next bucket uses the new version
    sold = {}
    for line in lines:
        record = json.loads(line)
        for item in record.get("items", []) if record["topic"] == "orders" else []:
            sold[item["sku"]] = sold.get(item["sku"], 0) + item["qty"]

    def all_counted():
        for sku, units in sold.items():
            status, sales = worker.http(f"/skus/{sku}/sales?buckets=120")
            if status != 200 or sum(b["units"] for b in sales["buckets"]) != units:
                return False
        return True

    wait_for(all_counted, timeout_s=120, message="every order line in the worker's windows")
    pid = worker.process.pid
    # the judge's rule has unit tests; here a generous margin makes the tiny model's verdict certain
    retrained = salescast(worker, "retrain", "--model", "lstm", *TINY, "--seed", "8",
                          env={"SALESCAST_MODEL_MARGIN": "1"})
    assert retrained.returncode == 0, retrained.stderr
    second = json.loads(retrained.stdout)
    assert_valid("model_versions", second)
    assert second["version"] != manifest["version"] and second["status"] == "live"
    assert second["metrics"]["vs_live"]["version"] == manifest["version"]
    assert {"mase", "verdict", "why"} <= set(second["metrics"]["vs_live"])
    assert (store / "CURRENT").read_text().strip() == second["version"]
    statuses = [json.loads(r.value)["status"] for r in worker.read("model_versions", lambda records: sum(
        json.loads(r.value)["version"] == second["version"] for r in records) == 2)
        if json.loads(r.value)["version"] == second["version"]]
    assert statuses == ["candidate", "live"]

    # no restart: the worker follows model-versions and the next bucket is forecast with the new version
    wait_for(lambda: worker.metric("salescast_model_swaps_total", model="lstm", result="swapped") == 1,
             timeout_s=60, message="the worker switched to the retrained version")
    day = (max(json.loads(line)["ts"] for line in lines) // DAY_MS + 1) * DAY_MS
    day = next_day_forecast_by(worker, day, second["version"])
    assert worker.process.pid == pid and worker.process.poll() is None
    assert worker.metric("salescast_model_info", model="forecast", version=second["version"]) == 1
    assert worker.metric("salescast_model_info", model="forecast", version=manifest["version"]) == 0

    # a damaged version made current (by hand: `models release` refuses it) is refused; forecasts keep going
    damaged = "20990101T000000Z-bad000"
    shutil.copytree(store / second["version"], store / damaged)
    (store / damaged / "weights.npz").write_bytes(b"damaged on the shared disk")
    (store / "CURRENT").write_text(damaged + "\n")
    producer = worker.producer()
    producer.send(worker.topics["model_versions"], key=b"lstm", value=json.dumps({**second, "version": damaged}).encode())
    producer.flush()
    wait_for(lambda: worker.metric("salescast_model_swaps_total", model="lstm", result="refused") == 1,
             timeout_s=60, message="the damaged version refused")
    assert f"refused lstm {damaged}" in worker.log_tail(200) and "sha256" in worker.log_tail(200)
    day = next_day_forecast_by(worker, day, second["version"])

    # issue 17: a version whose files pass their checksums and still do not load (an empty weights.npz
    # with a manifest made for it) crashed the worker; it is refused, and `models release` says why
    empty = "20990101T000000Z-empty0"
    shutil.copytree(store / second["version"], store / empty)
    (store / empty / "weights.npz").write_bytes(b"")
    record = json.loads((store / empty / "manifest.json").read_text())
    record["files"]["weights.npz"] = hashlib.sha256(b"").hexdigest()
    record["sha256"] = hashlib.sha256("".join(f"{file} {digest}\n" for file, digest in
                                              sorted(record["files"].items())).encode()).hexdigest()
    (store / empty / "manifest.json").write_text(json.dumps(record))
    released = salescast(worker, "models", "release", "lstm", empty)
    assert released.returncode == 1 and "not a readable .npz archive" in released.stderr, released.stderr
    assert "Traceback" not in released.stderr and (store / "CURRENT").read_text().strip() == damaged
    (store / "CURRENT").write_text(empty + "\n")
    producer.send(worker.topics["model_versions"], key=b"lstm", value=json.dumps({**second, "version": empty}).encode())
    producer.flush()
    wait_for(lambda: worker.metric("salescast_model_swaps_total", model="lstm", result="refused") == 2,
             timeout_s=60, message="the version that passes its checksums and does not load refused")
    assert f"refused lstm {empty}" in worker.log_tail(200) and "not a readable .npz archive" in worker.log_tail(200)
    assert worker.process.pid == pid and worker.process.poll() is None
    # `models list` shows what the worker really serves beside the CURRENT it refused
    web_url = worker.env["SALESCAST_ADVERTISED_URL"]
    served_line = f"served by {web_url}: {second['version']} (NOT current)"

    def listed() -> str:
        listing = salescast(worker, "models", "list", "lstm")
        return listing.stdout if served_line in listing.stdout and f"refused {empty}" in listing.stdout else ""

    assert "not a readable .npz archive" in wait_for(listed, timeout_s=30, message="models list shows the refusal")
    day = next_day_forecast_by(worker, day, second["version"])

    # rollback: back to the last good version (the one served: nothing to switch), then to the first
    for expected in (second["version"], manifest["version"]):
        rolled = salescast(worker, "models", "rollback", "lstm")
        assert rolled.returncode == 0, rolled.stderr
        assert json.loads(rolled.stdout)["version"] == expected and json.loads(rolled.stdout)["status"] == "live"
    wait_for(lambda: worker.metric("salescast_model_swaps_total", model="lstm", result="swapped") == 2,
             timeout_s=60, message="the worker switched back to the first version")
    day = next_day_forecast_by(worker, day, manifest["version"])

    # a worker that starts later serves the current version
    worker.stop()
    worker.start()
    next_day_forecast_by(worker, day, manifest["version"])


def next_day_forecast_by(worker, day: int, version: str) -> int:
    """Move event time into the next day (one click), and wait for that close's forecasts: all by `version`.
    Returns the day after."""
    produce(worker, [json.dumps({"topic": "clicks", "user_id": "u-1", "sku": "sku-0", "action": "view",
                                 "ts": day + 60_000})])
    closed = day - DAY_MS

    def arrived(records):
        return any(json.loads(r.value)["ts"] == closed for r in records)
    latest = [json.loads(r.value) for r in worker.read("forecasts", arrived, timeout_s=120)]
    ready = [r for r in latest if r["ts"] == closed and r["model"]["name"] == "lstm"]
    assert ready and all(r["model"]["version"] == version for r in ready), [r["model"] for r in latest[-6:]]
    return day + DAY_MS
