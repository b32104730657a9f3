"""Soak: kill -9 random workers again and again, and restart the broker once, while orders stream in live
and a shop's history is backfilled; then count what was lost and what was counted twice (issue 17.8).

    .venv/bin/python bench/soak.py --workers 2 --kills 50
    .venv/bin/python bench/soak.py --workers 2 --kills 10 --kill-every 6 --rate 100 --backfill-orders 5000

What runs, all on loopback, under WORKDIR/soak-<time>/ (logs stay there):
- its own local broker (`salescast kafka start` on free ports);
- WORKERS `salescast worker` processes of one app (8 partitions each input), each with its own state dir;
- a live shop: RATE orders a second, each of one to three lines over SKUS SKUs, `ts` = now, keyed by
  order_id, sent by a kafka-python producer that waits out the broker's restart (its sends are counted
  only once acknowledged);
- a backfill: `salescast backfill` of BACKFILL_ORDERS orders from the last 20 hours (the same SKUs),
  started with the live stream;
- the faults: every KILL_EVERY seconds one running worker, drawn at random, gets SIGKILL and is started
  again at once (so kills also land on workers still recovering); after half the kills the broker is
  stopped for OUTAGE seconds and started again.

At the end the stream stops, the survivors are left to catch up, and each SKU's units (any worker answers
for any SKU) are compared with what the broker acknowledged. Prints units sent, counted, lost (a SKU short)
and doubled (a SKU over), dead letters by reason, and a markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from salescast.localkafka import LocalBroker, free_port  # noqa: E402
from tests.integration.conftest import Worker  # noqa: E402

DAY = 86_400_000


def order(order_id: str, ts: int, rng: random.Random, skus: int) -> dict:
    lines = rng.randint(1, 3)
    return {"order_id": order_id, "user_id": f"u-{rng.randrange(5000)}", "ts": ts,
            "items": [{"sku": f"sku-{sku}", "qty": rng.randint(1, 4), "unit_price": 9.5}
                      for sku in rng.sample(range(skus), lines)]}


def add_units(into: Counter, record: dict) -> None:
    for item in record["items"]:
        into[item["sku"]] += item["qty"]


class LiveShop(threading.Thread):
    """Orders at `rate` a second; `acknowledged` holds the units of every order the broker took."""

    def __init__(self, worker: Worker, rate: float, skus: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.worker, self.rate, self.skus = worker, rate, skus
        self.rng = random.Random(seed)
        self.producer = KafkaProducer(bootstrap_servers=worker.bootstrap, acks="all", linger_ms=5,
                                      delivery_timeout_ms=600_000, request_timeout_ms=15_000,
                                      reconnect_backoff_max_ms=2_000, max_block_ms=600_000)
        self.pending: list[tuple[dict, object]] = []
        self.running = threading.Event()
        self.running.set()

    def run(self) -> None:
        i, started = 0, time.monotonic()
        while self.running.is_set():
            record = order(f"live-{i}", int(time.time() * 1000), self.rng, self.skus)
            future = self.producer.send(self.worker.topics["orders"], key=record["order_id"].encode(),
                                        value=json.dumps(record).encode())
            self.pending.append((record, future))
            i += 1
            time.sleep(max(0.0, started + i / self.rate - time.monotonic()))

    def acknowledged(self) -> tuple[Counter, int]:
        """(units per SKU, orders) the broker acknowledged; the unacknowledged are not expected."""
        self.producer.flush(timeout=300)
        units, orders = Counter(), 0
        for record, future in self.pending:
            try:
                future.get(timeout=60)
            except Exception:  # noqa: BLE001 - not delivered: not expected either
                continue
            add_units(units, record)
            orders += 1
        return units, orders


def write_backfill(path: Path, orders: int, skus: int, seed: int) -> Counter:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    units = Counter()
    with path.open("w") as out:
        for i in range(orders):
            record = order(f"backfill-{i}", now - 20 * 3_600_000 + i * (20 * 3_600_000 // orders), rng, skus)
            add_units(units, record)
            out.write(json.dumps({"topic": "orders", **record}) + "\n")
    return units


def undelivered_units(path: Path) -> Counter:
    units = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            add_units(units, json.loads(line))
    return units


def start(worker: Worker) -> None:
    """Started without waiting for it to be healthy: the next kill may come while it recovers."""
    log = open(worker.log_path, "ab")
    worker.process = subprocess.Popen([sys.executable, "-m", "salescast.cli", "worker", "--loglevel", "info"],
                                      env=worker.env, stdout=log, stderr=subprocess.STDOUT, cwd=worker.directory)


def counted(worker: Worker, skus: int) -> Counter | None:
    got = Counter()
    for sku in range(skus):
        status, sales = worker.http(f"/skus/sku-{sku}/sales?buckets=30")
        if status == 404:
            continue
        if status != 200:
            return None
        got[f"sku-{sku}"] = sum(bucket["units"] for bucket in sales["buckets"])
    return got


def dead_letters(worker: Worker) -> Counter:
    consumer = KafkaConsumer(worker.topics["dead_letters"], bootstrap_servers=worker.bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
    reasons = Counter(json.loads(message.value)["reason"] for message in consumer)
    consumer.close()
    return reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the broker is down, once")
    parser.add_argument("--rate", type=float, default=100.0, help="live orders a second")
    parser.add_argument("--backfill-orders", type=int, default=20_000)
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--settle", type=float, default=600.0, help="seconds allowed to catch up at the end")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--workdir", default="/tmp")
    args = parser.parse_args()
    run = Path(args.workdir) / f"soak-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    run.mkdir(parents=True)
    rng = random.Random(args.seed)
    broker = LocalBroker(directory=run / "kafka", port=free_port(pair=True))
    broker.start(log=lambda message: print(message, file=sys.stderr))
    first = Worker(broker.bootstrap, run / "worker-0", {"SALESCAST_PARTITIONS": "8"})
    (run / "worker-0").mkdir()
    workers = [first] + [first.sibling(run / f"worker-{n}") for n in range(1, args.workers)]
    backfill = None
    started = time.monotonic()
    try:
        first.start()
        for worker in workers[1:]:
            worker.start()
        print(f"{len(workers)} workers up in {time.monotonic() - started:.0f} s; run in {run}", file=sys.stderr)
        shop = LiveShop(first, args.rate, args.skus, args.seed)
        shop.start()
        history = run / "backfill.jsonl"
        backfill_units = write_backfill(history, args.backfill_orders, args.skus, args.seed)
        backfill = subprocess.Popen([sys.executable, "-m", "salescast.cli", "backfill", str(history),
                                     "--undelivered", str(run / "undelivered.jsonl")], env=first.env,
                                    stdout=open(run / "backfill.log", "wb"), stderr=subprocess.STDOUT)
        outage_at = args.kills // 2
        for kill in range(1, args.kills + 1):
            time.sleep(args.kill_every)
            victim = rng.choice(workers)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            start(victim)
            print(f"kill {kill}/{args.kills}: {victim.directory.name} ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr)
            if kill == outage_at:
                broker.stop(log=lambda message: None)
                print(f"broker stopped for {args.outage:.0f} s", file=sys.stderr)
                time.sleep(args.outage)
                broker.start(log=lambda message: None)
                print("broker back", file=sys.stderr)
        shop.running.clear()
        shop.join()
        live_units, live_orders = shop.acknowledged()
        backfill_code = backfill.wait(timeout=600)
        expected = live_units + backfill_units
        expected.subtract(undelivered_units(run / "undelivered.jsonl"))
        expected = +expected
        print(f"stream stopped; {live_orders} live orders acknowledged, backfill exit {backfill_code}; "
              "waiting for the workers to catch up", file=sys.stderr)
        deadline = time.monotonic() + args.settle
        got = None
        while time.monotonic() < deadline:
            got = counted(first, args.skus)
            if got == expected:
                break
            time.sleep(5)
        caught_up_s = time.monotonic() - started
        got = got or Counter()
        lost = sum(max(0, expected[sku] - got[sku]) for sku in expected)
        doubled = sum(max(0, got[sku] - expected[sku]) for sku in got)
        letters = dead_letters(first)
        sent = sum(expected.values())
        print(f"\nsoak: {len(workers)} workers, {args.kills} kills every {args.kill_every:.0f} s, one "
              f"{args.outage:.0f} s broker outage, {args.rate:.0f} live orders/s + {args.backfill_orders} backfilled")
        print(f"units acknowledged {sent}, counted {sum(got.values())}, lost {lost}, doubled {doubled}, "
              f"SKUs off {sum(1 for sku in set(expected) | set(got) if expected[sku] != got[sku])}, "
              f"dead letters {dict(letters) or 0}, {caught_up_s:.0f} s in all")
        print(f"| {len(workers)} | {args.kills} | {args.outage:.0f} s | {live_orders} + {args.backfill_orders} | "
              f"{sent} | {lost} | {doubled} | {sum(letters.values())} |")
        return 0 if lost == doubled == 0 and not letters else 1
    finally:
        if backfill is not None and backfill.poll() is None:
            backfill.kill()
        for worker in workers:
            worker.stop(signal.SIGKILL, timeout_s=10)
        broker.stop(log=lambda message: None)


if __name__ == "__main__":
    sys.exit(main())
