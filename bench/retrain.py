"""Model lifecycle speed (issue 7): a retrain of the LSTM and the recommender, and a worker's hot swap.

    python bench/retrain.py [--skus 1000] [--users 10000] [--days 90] [--swaps 7]

1. Simulates the shop (not timed) into an events file.
2. Retrains the LSTM and the recommender twice with `salescast retrain --events`'s code path:
   the first run has no live version (nothing to compare with); the second is what the
   scheduled retrainer does every day: each candidate is also scored against the live version
   on the same held-out data, then goes live or is rejected. Timed per model, reading to
   publishing, and as a whole (one run each: it takes minutes). From the service rather than a
   file, the read is the tables' changelogs instead.
3. The swap, --swaps times per model: HotSwap.reconcile as a worker runs it (read the files,
   check their sha256, build, smoke-test, switch), beside the baseline of the store's read and
   check alone (`ModelStore.load`), measured in the same run. Meanwhile a 1 ms ticker runs on
   the event loop: its longest gap is the longest any event waited during a swap.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.models.store import ModelStore  # noqa: E402
from salescast.sim.generator import Shop, ShopConfig  # noqa: E402
from salescast.stream.serving.registry import HotSwap, ServedModels, load_version  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.training.retrain import TrainOptions, retrain  # noqa: E402


def simulate(args, path: Path) -> int:
    shop = Shop(ShopConfig(seed=7, skus=args.skus, users=args.users, days=args.days))
    count = 0
    with open(path, "wb") as out:
        for topic, record in shop.events():
            out.write(orjson.dumps({**record, "topic": topic}) + b"\n")
            count += 1
    return count


def retrain_run(settings: Settings, events: Path, label: str) -> dict[str, dict]:
    started = time.perf_counter()
    records = retrain(settings, str(events), TrainOptions(verbose=0), ("lstm", "cf"), log=lambda message: None)
    print(f"{label}: {time.perf_counter() - started:.1f} s in all (reading the file once, both models, "
          "publishing)", flush=True)
    out = {}
    for record in records:
        metrics = record["metrics"]
        judged = metrics.get("vs_live") or {}
        out[record["name"]] = record
        print(f"{label} {record['name']}: {metrics['retrain_seconds']:.1f} s, {record['status']}"
              + (f" ({judged.get('why')})" if judged else ""), flush=True)
    return out


async def swap_times(store: ModelStore, settings: Settings, name: str, versions: list[str], runs: int):
    """(reconcile seconds, ModelStore.load seconds, longest event-loop gap) per run, alternating versions."""
    served = ServedModels({name: load_version(store, name, versions[0], settings)})
    swap = HotSwap(served, store, settings)
    results = []
    for run in range(runs):
        target = versions[(run + 1) % len(versions)]
        store._write_pointer(name, "CURRENT", target + "\n")  # as set_current would, without its own load
        gaps, stop = [], asyncio.Event()

        async def ticker():
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                gaps.append(time.perf_counter() - before - 0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        switched = await swap.reconcile(name)
        reconcile_s = time.perf_counter() - started
        stop.set()
        await task
        assert switched and served.version(name) == target
        started = time.perf_counter()
        store.load(name, target)
        results.append((reconcile_s, time.perf_counter() - started, max(gaps)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--swaps", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="salescast-bench-retrain-") as tmp:
        tmp = Path(tmp)
        events = tmp / "events.jsonl"
        started = time.perf_counter()
        count = simulate(args, events)
        print(f"simulated {args.skus} SKUs x {args.users} users x {args.days} days: {count:,} events, "
              f"{events.stat().st_size / 2**20:.0f} MiB ({time.perf_counter() - started:.1f} s, not timed)")
        settings = Settings.from_env({"SALESCAST_MODEL_STORE": str(tmp / "models"),
                                      "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})  # no broker: announce skipped
        first = retrain_run(settings, events, "first retrain (no live version)")
        second = retrain_run(settings, events, "scheduled retrain (judged against live)")

        store = ModelStore(settings.store.path)
        print("\n| swap, median of {} | reconcile (load, check, smoke, switch) | baseline: ModelStore.load | "
              "longest event-loop pause |\n|---|---:|---:|---:|".format(args.swaps))
        for name in ("lstm", "cf"):
            versions = [first[name]["version"], second[name]["version"]]
            if versions[0] == versions[1]:
                print(f"| {name} | (both retrains gave the same artifact: nothing to swap) | | |")
                continue
            results = asyncio.run(swap_times(store, settings, name, versions, args.swaps))
            reconcile, load, gap = (statistics.median(column) for column in zip(*results))
            worst_gap = max(r[2] for r in results)
            size = sum(p.stat().st_size for p in (store.root / name / versions[1]).iterdir()) / 2**20
            print(f"| {name} ({size:.1f} MiB) | {reconcile * 1000:.1f} ms | {load * 1000:.1f} ms | "
                  f"{gap * 1000:.1f} ms (worst {worst_gap * 1000:.1f} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
