"""The peer in bench/throughput.py --quix: the same per-SKU daily sums and per-user item weights, written
idiomatically with Quix Streams (a bench-only dependency: pip install -e ".[bench]").

    python bench/quix_peer.py --bootstrap 127.0.0.1:9092 --orders T --clicks T --sku-updates N \
        --user-updates M --state-dir DIR [--tuned]

Orders are exploded into lines and joined with clicks; `group_by` SKU feeds a tumbling daily window
(a week's grace) summing units, revenue and clicks, and `group_by` user feeds a stateful apply that keeps each user's
decayed item weights. It does less than a salescast worker: no validation, no dead letters, no
inventory, no position check against double counting, no forecasts. Prints one JSON line: the seconds
from the first record processed until every SKU and user update was, and the process's CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import uuid
from datetime import timedelta

HALF_LIFE_MS = 30 * 86_400_000
WEIGHTS = {"view": 1.0, "wishlist": 2.0, "cart": 3.0, "purchase": 5.0}


def _lines(order: dict) -> list[dict]:
    return [{"sku": item["sku"], "user": order["user_id"], "units": item["qty"],
             "revenue": item["qty"] * item["unit_price"], "clicks": 0, "action": "purchase", "ts": order["ts"]}
            for item in order["items"]]


def _click(click: dict) -> dict:
    return {"sku": click["sku"], "user": click["user_id"], "units": 0, "revenue": 0.0, "clicks": 1,
            "action": click["action"], "ts": click["ts"]}


def _learn(interaction: dict, state) -> dict:
    """A user's decayed weight per SKU, as salescast's user-item vectors keep them."""
    vector = state.get("vector") or {"ts": interaction["ts"], "weights": {}}
    decay = 0.5 ** (max(0, interaction["ts"] - vector["ts"]) / HALF_LIFE_MS)
    weights = {sku: weight * decay for sku, weight in vector["weights"].items()}
    weights[interaction["sku"]] = weights.get(interaction["sku"], 0.0) + WEIGHTS.get(interaction["action"], 1.0)
    vector = {"ts": max(vector["ts"], interaction["ts"]), "weights": weights}
    state.set("vector", vector)
    return vector


def main() -> None:
    from quixstreams import Application
    from quixstreams.dataframe.windows.aggregations import Sum

    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--orders", required=True)
    parser.add_argument("--clicks", required=True)
    parser.add_argument("--sku-updates", type=int, required=True)
    parser.add_argument("--user-updates", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--tuned", action="store_true",
                        help="larger producer batches and consumer fetches, fewer commits")
    args = parser.parse_args()

    tuning = {}
    if args.tuned:
        tuning = {"commit_interval": 10.0,
                  "producer_extra_config": {"linger.ms": 20, "batch.num.messages": 100_000,
                                            "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000},
                  "consumer_extra_config": {"fetch.min.bytes": 65_536, "fetch.wait.max.ms": 20,
                                            "queued.min.messages": 100_000}}
    app = Application(broker_address=args.bootstrap, consumer_group=f"quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", state_dir=args.state_dir, loglevel="WARNING", **tuning)

    def event_time(value, headers, timestamp, timestamp_type) -> int:
        return value["ts"]

    orders = app.topic(args.orders, value_deserializer="json", timestamp_extractor=event_time)
    clicks = app.topic(args.clicks, value_deserializer="json", timestamp_extractor=event_time)
    done = {"sku": 0, "user": 0}
    started: list[float] = []
    finished: list[float] = []

    def count(side: str):
        def counted(value) -> None:
            if not started:
                started.append(time.perf_counter())
            done[side] += 1
            if done["sku"] >= args.sku_updates and done["user"] >= args.user_updates and not finished:
                finished.append(time.perf_counter())
                app.stop()
        return counted

    late = [0]

    def dropped_late(*args) -> bool:
        late[0] += 1
        return False  # counted here, not logged per record

    interactions = app.dataframe(orders).apply(_lines, expand=True).concat(app.dataframe(clicks).apply(_click))
    # counted as each record enters its window step (a record too late for its window is dropped there);
    # a week's grace: a backlog read unevenly across partitions reaches a SKU hours to days out of order
    (interactions.group_by("sku", name="by-sku")
     .update(count("sku"))
     .tumbling_window(timedelta(days=1), grace_ms=timedelta(days=7), on_late=dropped_late)
     .agg(units=Sum("units"), revenue=Sum("revenue"), clicks=Sum("clicks"))
     .current())
    interactions.group_by("user", name="by-user").apply(_learn, stateful=True).update(count("user"))
    app.run()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": (finished or [time.perf_counter()])[0] - (started or [0.0])[0],
                      "complete": bool(finished), "sku_updates": done["sku"], "user_updates": done["user"],
                      "dropped_late": late[0],
                      "cpu_seconds": usage.ru_utime + usage.ru_stime, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
