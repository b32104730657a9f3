"""Worker throughput of two source trees, timed alternately on one broker and one load.

    git worktree add /tmp/before <commit>
    python bench/compare_trees.py /tmp/before [--runs 3] [--events 300000]

For a regression check between commits, with no model in the store or (--cf) both serving one CF
model: the machine's speed drifts through a day on a shared VM, so the two trees are run one after the other, --runs times, in
alternating order (before-after, then after-before: the second of a pair meets a broker whose
log and page cache the first has warmed), and the ratio of medians is reported. Beside the
wall-clock rate it reports each worker's CPU time per event (user + system, start-up included),
which a busy neighbour on the VM moves far less. A worker runs the code of its own tree
(bench/tree_worker.py: the editable install would otherwise lend it this checkout's
`salescast.stream` and `salescast.models`); this bench's helpers come from bench/throughput.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402

from salescast.stream.core.contract import INPUT_KINDS  # noqa: E402
from salescast.localkafka import LocalBroker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", help="the other tree (e.g. a git worktree of an earlier commit)")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parents[1]), help="default: this tree")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--cf", action="store_true",
                        help="both workers serve a CF model built from the same events (this tree's retrain)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="salescast-bench-trees-"))
    broker = LocalBroker(directory=work / "kafka", port=tp.free_port())
    broker.start(log=lambda m: print(m, file=sys.stderr))
    try:
        events = []
        for item in tp.Shop(tp.ShopConfig(seed=1, skus=1000, users=20_000, days=365)).events():
            events.append(item)
            if len(events) >= args.events:
                break
        lines = sum(len(r["items"]) for t, r in events if t == "orders")
        mix = {t: sum(1 for topic, _ in events if topic == t) for t in INPUT_KINDS}
        updates = 2 * lines + 2 * mix["clicks"] + mix["inventory"]  # SKU and user updates
        prefix = f"tr{uuid.uuid4().hex[:6]}"
        tp.load(broker.bootstrap, tp.worker_env(broker.bootstrap, prefix, "loader", work, 8), events)
        models = work / "models" if args.cf else None
        if models is not None:
            tp.build_cf_model(events, models)
        rates: dict[str, list[float]] = {"before": [], "after": []}
        cpu_us: dict[str, list[float]] = {"before": [], "after": []}
        trees = [("before", args.before), ("after", args.after)]
        for run in range(args.runs):
            for name, tree in (trees if run % 2 == 0 else trees[::-1]):
                os.chdir(tree)
                result = tp.worker_run(broker.bootstrap, prefix, work, 8, updates, model_store=models, tree=tree)
                rates[name].append(len(events) / result.seconds)
                cpu_us[name].append(result.cpu_seconds / len(events) * 1e6)
                print(f"run {run + 1}: {name} {rates[name][-1]:,.0f} events/s, "
                      f"{cpu_us[name][-1]:,.0f} us CPU per event", file=sys.stderr, flush=True)
        rate = {name: statistics.median(values) for name, values in rates.items()}
        cpu = {name: statistics.median(values) for name, values in cpu_us.items()}
        print(f"before {rate['before']:,.0f} events/s, after {rate['after']:,.0f} events/s, "
              f"ratio after/before {rate['after'] / rate['before']:.3f}")
        print(f"CPU per event: before {cpu['before']:,.0f} us, after {cpu['after']:,.0f} us, "
              f"ratio before/after {cpu['before'] / cpu['after']:.3f} (above 1: after is cheaper)")
    finally:
        broker.stop(log=lambda m: None)


if __name__ == "__main__":
    main()
