"""Throughput and bucket-close latency of one worker process, end to end through the local broker.

    python bench/throughput.py [--events 300000] [--runs 3] [--latency-seconds 60] [--cf] [--quix]

1. Generates a shop's events (orders, clicks, inventory mixed as the generator makes them) and
   loads them into fresh topics (not timed).
2. Ceiling: a bare aiokafka consumer reads the same three topics end to end (events/s).
3. Worker: a fresh `salescast worker` consumes them; timed from healthy to the moment every SKU
   and user update has been applied to the tables (`salescast_updates_applied_total`), so the
   repartition hops, both tables and the forecasts at each bucket close are inside the figure.
4. Latency: events produced at --rate (2000/s) with event time sped up so days close every few
   seconds; for each forecast, latency = its Kafka CreateTime (stamped when the worker's producer
   took it) minus the wall time an event was sent, two ways: the first event of the next day
   (`latency_p50_ms`, `latency_p99_ms`: it includes the wait for every input partition to move
   past the day, which depends on the traffic, not the worker), and the event that closed the day
   under the low watermark, the last input partition's first event past it
   (`latency_from_closing_event_*`). The worker's own histogram (tick consumed -> forecast handed
   to the producer) is reported beside them.

Runs 2-3 alternate ceiling and worker and report medians; the ratio is worker / ceiling. With --cf
each run also times a worker that serves a CF model built from the same events (`retrain --model
cf`, not timed) right after the plain one: the ratio `cf_over_no_model` is its cost. With --quix
each run also times the Quix Streams peer (bench/quix_peer.py, the bench extra) with its defaults
and tuned, over the same orders and clicks on the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.stream.core.contract import INPUT_KINDS, record_key  # noqa: E402
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.localkafka import LocalBroker  # noqa: E402
from salescast.stream.core.settings import KafkaSettings, Settings, StoreSettings  # noqa: E402
from salescast.stream.kafka import ensure_topics  # noqa: E402

DAY = 86_400_000


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(bootstrap: str, prefix: str, app_id: str, data_dir: Path, partitions: int,
               model_store: Path | None = None) -> dict:
    topics = {k: f"{prefix}.{k.replace('_', '-')}" for k in ("orders", "clicks", "inventory", "forecasts",
                                                            "promo_triggers", "promo_outcomes", "model_versions",
                                                            "dead_letters")}
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SALESCAST_APP_ID": app_id,
            "SALESCAST_DATA_DIR": str(data_dir), "SALESCAST_PARTITIONS": str(partitions),
            "SALESCAST_MODEL_STORE": str(model_store or data_dir / "models"),
            "SALESCAST_WEB_PORT": str(free_port()), "SALESCAST_METRICS_PORT": str(free_port()),
            **{f"SALESCAST_TOPIC_{k.upper()}": v for k, v in topics.items()}}


def load(bootstrap: str, env: dict, events: list[tuple[str, dict]]) -> None:
    ensure_topics(Settings.from_env(env))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024)
    for topic, record in events:
        producer.send(env[f"SALESCAST_TOPIC_{topic.upper()}"], key=record_key(topic, record),
                      value=orjson.dumps(record))
    producer.flush()
    producer.close()


async def _ceiling(bootstrap: str, topics: list[str], total: int) -> float:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"ceiling-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    orjson.loads(message.value)  # the least a consumer does with a record
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def metric_sum(port: int, name: str, label: str = "") -> float:
    """The sum of a metric's samples, of those whose labels contain `label` if given."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return sum(float(line.split()[-1]) for line in response.read().decode().splitlines()
                   if line.startswith(name + "{") and label in line)


def start_worker(env: dict, log: Path, tree: str | None = None) -> subprocess.Popen:
    """A `salescast worker` of this checkout, or of the source tree `tree` (bench/tree_worker.py)."""
    command = ([sys.executable, str(Path(__file__).with_name("tree_worker.py")), tree, "worker"] if tree
               else [sys.executable, "-m", "salescast.cli", "worker"])
    process = subprocess.Popen(command, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    port = int(env["SALESCAST_WEB_PORT"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("worker did not start")


class WorkerRun(NamedTuple):
    seconds: float  # wall time, from all workers healthy until every update was applied
    cpu_seconds: float  # the workers' user + system CPU time over the whole run, start-up included


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_run(bootstrap: str, prefix: str, work: Path, partitions: int, updates: int, workers: int = 1,
               model_store: Path | None = None, tree: str | None = None) -> WorkerRun:
    """`workers` processes of one app (of source tree `tree` if given) apply every SKU and user update: wall
    and CPU seconds."""
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    envs = [worker_env(bootstrap, prefix, app_id, work / f"{app_id}-{i}", partitions,
                       model_store or work / "no-models") for i in range(workers)]
    processes = [start_worker(env, work / f"{app_id}-{i}.log", tree) for i, env in enumerate(envs)]
    started = time.perf_counter()
    ports = [int(env["SALESCAST_METRICS_PORT"]) for env in envs]
    try:
        while True:
            applied = sum(metric_sum(port, "salescast_updates_applied_total", f'table="{table}"')
                          for port in ports for table in ("sku-windows", "user-items"))
            if applied >= updates:
                return WorkerRun(time.perf_counter() - started, sum(_cpu_seconds(p.pid) for p in processes))
            if time.perf_counter() - started > 900:
                raise RuntimeError(f"workers applied {applied} of {updates} updates in 900 s")
            time.sleep(0.25)  # a /metrics scrape takes the worker a few ms under the GIL: 20 a second cost it ~7%
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)


def worker_rate(bootstrap: str, prefix: str, work: Path, partitions: int, updates: int, workers: int = 1,
                model_store: Path | None = None) -> float:
    """Seconds for `workers` processes of one app to apply every SKU and user update (timed from all healthy)."""
    return worker_run(bootstrap, prefix, work, partitions, updates, workers, model_store).seconds


class Latencies(NamedTuple):
    from_first_event: list[float]  # forecast of bucket D: from the first event of D + 1 produced to any partition
    from_closing_event: list[float]  # from the event that closed D: the last input partition's first later one
    internal: dict  # the worker's own histogram, tick consumed to forecast handed over


def closing_times(first_sent: dict[tuple[str, int], dict[int, float]]) -> dict[int, float]:
    """Bucket D -> when the event that closed it was sent: under the low watermark (contract v1.1) D
    closes once every input partition has an event past it, so the latest, over the partitions, of
    each one's first event in a later bucket."""
    closing: dict[int, float] = {}
    per_partition = [sorted(buckets.items()) for buckets in first_sent.values()]
    every = sorted({bucket for buckets in per_partition for bucket, _ in buckets})
    for day in every:
        later = [next((sent for bucket, sent in buckets if bucket > day), None) for buckets in per_partition]
        if later and all(sent is not None for sent in later):
            closing[day] = max(later)
    return closing


def latency(bootstrap: str, work: Path, partitions: int, rate: float, seconds: float,
            warmup: float, tree: str | None = None) -> Latencies:
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    app_id = f"bench-{prefix}"
    env = worker_env(bootstrap, prefix, app_id, work / app_id, partitions)
    ensure_topics(Settings.from_env(env))
    process = start_worker(env, work / f"{app_id}.log", tree)
    shop = Shop(ShopConfig(seed=3, skus=200, users=2000, days=365))
    # Everything the generator sends is made before the clock starts, partition included: on a 2-core
    # machine a generator that serialised, hashed and framed records as it went (kafka-python, pure
    # Python CRCs) took ~70% of a core from the worker and the broker, and its delay was in every figure.
    partitioner = DefaultPartitioner()
    every = list(range(partitions))  # the input topics' partitions: ensure_topics made them
    planned = []
    for topic, record in shop.events():
        if len(planned) >= rate * seconds:
            break
        key = record_key(topic, record)
        planned.append((env[f"SALESCAST_TOPIC_{topic.upper()}"], key, orjson.dumps(record),
                        partitioner(key, every, every), record["ts"] // DAY))
    try:
        cpu_before, wall_before = _cpu_seconds(process.pid), time.perf_counter()
        closed_at, first_sent, arrivals = asyncio.run(
            _send_at_rate(bootstrap, planned, rate, warmup, env["SALESCAST_TOPIC_FORECASTS"]))
        internal = histogram_quantiles(int(env["SALESCAST_METRICS_PORT"]), "salescast_end_to_end_latency_seconds")
        internal["note"] = "whole run, warm-up included"
        internal["worker_cpu_share"] = round((_cpu_seconds(process.pid) - cpu_before)
                                             / (time.perf_counter() - wall_before), 2)
    finally:
        process.terminate()
        process.wait(60)
    closing = closing_times(first_sent)
    measured = [(d, arrived) for d, arrived in arrivals if d + 1 in closed_at]  # past the warm-up
    return Latencies([arrived - closed_at[d + 1] for d, arrived in measured],
                     [arrived - closing[d] for d, arrived in measured if d in closing], internal)


async def _send_at_rate(bootstrap: str, planned: list[tuple], rate: float, warmup: float, forecasts: str):
    """Sends `planned` at `rate` in 5 ms slices while reading the forecasts back. Returns (bucket -> wall
    time its first event was sent, past the warm-up; (topic, partition) -> bucket -> first sent there;
    (forecast day, its CreateTime: when the worker's producer took it) for every forecast)."""
    closed_at: dict[int, float] = {}
    first_sent: dict[tuple[str, int], dict[int, float]] = {}
    arrivals: list[tuple[int, float]] = []
    consumer = AIOKafkaConsumer(forecasts, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    await consumer.start()
    await producer.start()

    async def read_forecasts() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                arrivals.extend((orjson.loads(r.value)["ts"] // DAY, r.timestamp / 1000.0) for r in records)

    reader = asyncio.create_task(read_forecasts())
    try:
        started = time.perf_counter()
        last_bucket = None
        sent = 0
        while sent < len(planned):
            due = min(len(planned), int((time.perf_counter() - started) * rate) + 1)
            now = time.time()
            for topic, key, value, partition, bucket in planned[sent:due]:
                if bucket != last_bucket:
                    if time.perf_counter() - started >= warmup:  # a cold broker JIT-compiles for the first ~20 s
                        closed_at[bucket] = now
                    last_bucket = bucket
                first_sent.setdefault((topic, partition), {}).setdefault(bucket, now)
                await producer.send(topic, key=key, value=value, partition=partition)
            sent = due
            await asyncio.sleep(0.005)
        await producer.flush()
        await asyncio.sleep(3)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return closed_at, first_sent, arrivals


def quix_seconds(bootstrap: str, env: dict, work: Path, updates: int, tuned: bool) -> float:
    """The Quix Streams peer (bench/quix_peer.py) over the same orders and clicks: seconds from its first
    record processed until it applied `updates` per-SKU and per-user updates each."""
    state = work / f"quix-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, str(Path(__file__).with_name("quix_peer.py")), "--bootstrap", bootstrap,
               "--orders", env["SALESCAST_TOPIC_ORDERS"], "--clicks", env["SALESCAST_TOPIC_CLICKS"],
               "--sku-updates", str(updates), "--user-updates", str(updates), "--state-dir", str(state)]
    done = subprocess.run(command + (["--tuned"] if tuned else []), capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the Quix Streams peer failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["complete"]:
        raise RuntimeError(f"the Quix Streams peer stopped short: {result}")
    if result["dropped_late"]:
        print(f"the Quix Streams peer dropped {result['dropped_late']} records as too late for their window",
              file=sys.stderr)
    return result["seconds"]


def histogram_quantiles(port: int, name: str) -> dict:
    """p50/p99 upper bounds read off a Prometheus histogram (the bucket the quantile falls in)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        rows = [line for line in response.read().decode().splitlines() if line.startswith(name + "_bucket")]
    buckets = sorted((float(row.split('le="')[1].split('"')[0]), float(row.split()[-1])) for row in rows)
    total = buckets[-1][1] if buckets else 0
    def upper(q):
        return next((le for le, count in buckets if count >= q * total), None) if total else None
    return {"count": total, "p50_le_s": upper(0.5), "p99_le_s": upper(0.99)}


def build_cf_model(events: list[tuple[str, dict]], store: Path) -> None:
    """`salescast retrain --model cf --events` on the benchmark's own events, into the workers' store."""
    from salescast.training.retrain import TrainOptions, retrain

    path = store.parent / "cf-events.jsonl"
    with open(path, "wb") as out:
        for topic, record in events:
            out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
    settings = Settings(store=StoreSettings(path=store), kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    (record,) = retrain(settings, str(path), TrainOptions(), models=("cf",), log=lambda m: None)
    print(f"serving cf {record['version']}: {record['metrics']['skus']} SKUs, {record['metrics']['users']} users",
          file=sys.stderr)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-tree", default=None,
                        help="the latency run's worker runs this source tree (bench/tree_worker.py), e.g. a git "
                             "worktree of an earlier commit; default: this checkout")
    parser.add_argument("--latency-warmup", type=float, default=20.0,
                        help="seconds of the latency run not measured (broker and worker warm-up)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting the local one")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the same app")
    parser.add_argument("--cf", action="store_true",
                        help="each run also times a worker serving a CF model built from the same events "
                             "(live affinities and the candidate index); the ratio is with / without")
    parser.add_argument("--quix", action="store_true",
                        help="each run also times the Quix Streams peer (bench/quix_peer.py), with its defaults "
                             "and tuned (needs the bench extra)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="salescast-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        port = free_port()
        broker = LocalBroker(directory=work / "kafka", port=port)
        broker.start(log=lambda m: print(m, file=sys.stderr))
        bootstrap = broker.bootstrap
    try:
        shop = Shop(ShopConfig(seed=1, skus=1000, users=20_000, days=365))
        events = []
        for item in shop.events():
            events.append(item)
            if len(events) >= args.events:
                break
        mix = {t: sum(1 for topic, _ in events if topic == t) for t in INPUT_KINDS}
        lines = sum(len(r["items"]) for t, r in events if t == "orders")
        sku_updates = lines + mix["clicks"] + mix["inventory"]
        user_updates = lines + mix["clicks"]
        days = (events[-1][1]["ts"] - events[0][1]["ts"]) / DAY
        prefix = f"tp{uuid.uuid4().hex[:6]}"
        env = worker_env(bootstrap, prefix, "loader", work, args.partitions)
        if args.runs:
            load(bootstrap, env, events)
        if args.cf:
            build_cf_model(events, work / "models")
        topics = [env[f"SALESCAST_TOPIC_{t.upper()}"] for t in INPUT_KINDS]
        ceilings, rates, cf_rates = [], [], []
        quix_rates: dict[str, list[float]] = {"defaults": [], "tuned": []}
        for run in range(args.runs):
            ceilings.append(asyncio.run(_ceiling(bootstrap, topics, len(events))))
            elapsed = worker_rate(bootstrap, prefix, work, args.partitions, sku_updates + user_updates, args.workers)
            rates.append(len(events) / elapsed)
            print(f"run {run + 1}: ceiling {ceilings[-1]:,.0f} ev/s, worker {rates[-1]:,.0f} ev/s", file=sys.stderr)
            if args.cf:
                elapsed = worker_rate(bootstrap, prefix, work, args.partitions, sku_updates + user_updates,
                                      args.workers, work / "models")
                cf_rates.append(len(events) / elapsed)
                print(f"run {run + 1}: worker serving CF {cf_rates[-1]:,.0f} ev/s", file=sys.stderr)
            if args.quix:
                for mode in quix_rates:
                    quix_rates[mode].append(len(events) / quix_seconds(bootstrap, env, work, lines + mix["clicks"],
                                                                       mode == "tuned"))
                    print(f"run {run + 1}: Quix Streams peer ({mode}) {quix_rates[mode][-1]:,.0f} ev/s",
                          file=sys.stderr)
        lat, from_closing, internal = latency(bootstrap, work, args.partitions, args.rate,
                                              args.latency_seconds + args.latency_warmup, args.latency_warmup,
                                              args.latency_tree)
        result = {
            "events": len(events), "mix": mix, "order_lines": lines, "event_days": round(days, 1),
            "partitions": args.partitions, "runs": args.runs, "workers": args.workers,
            "ceiling_events_per_s_median": round(statistics.median(ceilings)) if rates else None,
            "worker_events_per_s_median": round(statistics.median(rates)) if rates else None,
            "worker_over_ceiling": round(statistics.median(rates) / statistics.median(ceilings), 3) if rates else None,
            "worker_events_per_s_runs": [round(r) for r in rates],
            "worker_with_cf_events_per_s_median": round(statistics.median(cf_rates)) if cf_rates else None,
            "worker_with_cf_events_per_s_runs": [round(r) for r in cf_rates],
            "cf_over_no_model": round(statistics.median(cf_rates) / statistics.median(rates), 3) if cf_rates else None,
            "ceiling_events_per_s_runs": [round(c) for c in ceilings],
            **{f"quix_{mode}_events_per_s_median": round(statistics.median(values))
               for mode, values in quix_rates.items() if values},
            **{f"quix_{mode}_events_per_s_runs": [round(v) for v in values]
               for mode, values in quix_rates.items() if values},
            "latency_rate_events_per_s": args.rate, "latency_forecasts": len(lat),
            "latency_warmup_s": args.latency_warmup,
            "latency_p50_ms": round(1000 * percentile(lat, 0.5), 1) if lat else None,
            "latency_p99_ms": round(1000 * percentile(lat, 0.99), 1) if lat else None,
            "latency_from_closing_event_p50_ms": round(1000 * percentile(from_closing, 0.5), 1) if from_closing else None,
            "latency_from_closing_event_p99_ms": round(1000 * percentile(from_closing, 0.99), 1) if from_closing else None,
            "worker_tick_to_forecast": internal,
        }
        print(json.dumps(result, indent=2))
    finally:
        if broker is not None:
            broker.stop(log=lambda m: None)


if __name__ == "__main__":
    main()
