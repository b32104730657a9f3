"""The worker's resident memory with --skus SKUs and --users users in state, every SKU scored by the LSTM
at one bucket close.

    python bench/worker_memory.py [--skus 100000] [--users 1000000] [--partitions 8]

1. Starts the local broker; trains a model on a small simulated shop (not measured).
2. Loads, for every SKU, an inventory record on day 0 and an order on day 30, with one click a
   day in between so the watermark walks forward (the day-30 orders would otherwise be `future`);
   every SKU's window then spans 31 buckets, enough for the LSTM's 28-bucket input. Each of --users
   users views one SKU on one of days 1-29, so every user has a vector in the user-items table.
3. Starts one worker serving the model, waits until every update is applied, sends a day-31 click
   so every SKU's bucket closes, and waits for one forecast per SKU.
4. Reports the worker's VmRSS after the close and VmHWM (its peak) from /proc, and the LSTM share of
   the forecasts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from throughput import free_port, load, metric_sum, start_worker, worker_env  # noqa: E402

from salescast.localkafka import LocalBroker  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.training.retrain import TrainOptions, retrain  # noqa: E402

DAY = 86_400_000
START = 1_760_000_000_000 // DAY * DAY


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="salescast-bench-memory-"))
    broker = LocalBroker(directory=work / "kafka", port=free_port())
    broker.start()
    try:
        bootstrap = f"127.0.0.1:{broker.port}"
        app_id = f"bench-{uuid.uuid4().hex[:6]}"
        env = worker_env(bootstrap, app_id, app_id, work / "var", args.partitions)
        events_file = work / "train.jsonl"
        import orjson

        from salescast.sim.generator import Shop, ShopConfig

        with open(events_file, "wb") as out:
            for topic, record in Shop(ShopConfig(skus=50, users=1500, days=120)).events():
                out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
        (manifest,) = retrain(Settings.from_env(env), str(events_file), TrainOptions(epochs=3, verbose=0),
                              models=("lstm",), log=lambda message: None)
        print(f"model {manifest['version']} trained for the benchmark", flush=True)

        skus = [f"sku-{i}" for i in range(args.skus)]
        events = [("inventory", {"sku": sku, "on_hand": 100, "ts": START, "list_price": 9.99}) for sku in skus]
        for day in range(1, 31):  # in event-time order: the walk's click, then the users who came that day
            events.append(("clicks", {"user_id": "u-walk", "sku": "sku-0", "action": "view", "ts": START + day * DAY}))
            events += [("clicks", {"user_id": f"user-{j}", "sku": skus[j % len(skus)], "action": "view",
                                   "ts": START + day * DAY + 1 + j % 1000})
                       for j in range(day - 1, args.users, 29)] if day < 30 else []
        events += [("orders", {"order_id": f"o-{i}", "user_id": f"u-{i % 5000}", "ts": START + 30 * DAY + i,
                               "items": [{"sku": sku, "qty": 1 + i % 3, "unit_price": 9.99}]})
                   for i, sku in enumerate(skus)]
        load(bootstrap, env, events)
        # SKU updates (stock, clicks, lines) plus user updates (clicks and order lines)
        updates = len(skus) + 2 * (30 + args.users + len(skus))
        process = start_worker(env, work / "worker.log")
        try:
            metrics_port = int(env["SALESCAST_METRICS_PORT"])
            started = time.perf_counter()
            while metric_sum(metrics_port, "salescast_updates_applied_total") < updates:
                if time.perf_counter() - started > 1800:
                    raise RuntimeError("updates not applied within 30 minutes")
                time.sleep(0.5)
            applied_s = time.perf_counter() - started
            rss_before = proc_kib(process.pid, "VmRSS")
            load(bootstrap, env, [("clicks", {"user_id": "u-walk", "sku": "sku-0", "action": "view",
                                              "ts": START + 31 * DAY})])
            started = time.perf_counter()
            while metric_sum(metrics_port, "salescast_forecasts_emitted_total") < len(skus):
                if time.perf_counter() - started > 900:
                    raise RuntimeError("forecasts not emitted within 15 minutes")
                time.sleep(0.2)
            close_s = time.perf_counter() - started
            with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                text = r.read().decode()
            lstm = sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith('salescast_forecasts_emitted_total{model="lstm"}'))
            rss_after, peak = proc_kib(process.pid, "VmRSS"), proc_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait(60)
        print(f"{args.skus} SKUs and {args.users + 1 + min(5000, args.skus)} users on {args.partitions} partitions: "
              f"all {updates} updates applied in {applied_s:.0f}s; "
              f"the bucket close scored every SKU in {close_s:.1f}s ({lstm:.0f} by the LSTM)")
        print(f"worker VmRSS before the close {rss_before / 1024:.0f} MiB, after {rss_after / 1024:.0f} MiB, "
              f"peak (VmHWM) {peak / 1024:.0f} MiB")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
