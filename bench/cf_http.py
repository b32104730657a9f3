"""Recommendations over HTTP from a live worker: the two endpoints' latency with a 100,000-SKU model.

    python bench/cf_http.py [--skus 100000] [--users 20000] [--requests 500]

1. Not timed: a CF model of --skus SKUs fitted on bench/cf.py's synthetic matrix and stored
   as `salescast retrain` stores it; a local broker; a worker serving that model; the views
   of --users of the matrix's users sent as clicks and applied (so users have live vectors
   and SKUs have candidate lists).
2. Timed, one request at a time over one kept-alive connection: GET /healthz (the floor:
   Faust's web server with no work), GET /recommendations/users/{user}?n=10 and
   GET /recommendations/skus/{sku}/users?n=50 for --requests random users and SKUs that
   have candidates. Reported: median and p99 of each, and each median over the floor's; then
   the worker's resident memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cf import synthetic_vectors  # noqa: E402
from throughput import free_port, metric_sum, start_worker, worker_env  # noqa: E402

from salescast.models import useritem  # noqa: E402
from salescast.models.cf.itemknn import ItemKNN  # noqa: E402
from salescast.models.store import ModelStore  # noqa: E402
from salescast.training import recommender as cf_training  # noqa: E402
from salescast.localkafka import LocalBroker  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.stream.kafka import ensure_topics  # noqa: E402


def timed_gets(connection: http.client.HTTPConnection, paths: list[str]) -> list[float]:
    samples = []
    for path in paths:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        samples.append(time.perf_counter() - started)
        assert response.status == 200, (path, response.status, body[:300])
    return samples


def summary(name: str, samples: list[float], floor: float | None = None) -> str:
    median = statistics.median(samples)
    p99 = sorted(samples)[int(0.99 * (len(samples) - 1))]
    over = f", {median / floor:.1f}x the /healthz floor" if floor else ""
    return f"{name}: median {median * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms over {len(samples)} requests{over}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="salescast-bench-cf-http-"))
    rng = np.random.default_rng(args.seed)

    started = time.perf_counter()
    vectors, categories = synthetic_vectors(args.skus * 20, args.skus, args.skus * 4, args.seed)
    data = cf_training.matrix_from_vectors(vectors, categories)
    model = ItemKNN().fit(data.matrix, data.categories)
    store = ModelStore(work / "models")
    manifest = store.save("cf", {"params": model.params()}, cf_training.artifact_arrays(model, data), {})
    store.set_current("cf", manifest["version"])
    print(f"model: {args.skus} SKUs, {model.similarity.nnz} neighbour pairs, built in "
          f"{time.perf_counter() - started:.0f}s (not timed)", flush=True)

    broker = LocalBroker(directory=work / "kafka", port=free_port())
    broker.start(log=lambda m: print(m, file=sys.stderr))
    worker = None
    try:
        env = worker_env(broker.bootstrap, f"ch{rng.integers(1 << 30)}", "bench-cf-http", work / "worker", 8,
                         work / "models")
        ensure_topics(Settings.from_env(env))
        worker = start_worker(env, work / "worker.log")
        names = list(vectors)
        chosen = [names[i] for i in rng.choice(len(names), args.users, replace=False)]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=20)
        ts = 1_760_000_000_000
        clicks = 0
        for user in chosen:
            for sku in useritem.weights(vectors[user]):
                ts += 10
                producer.send(env["SALESCAST_TOPIC_CLICKS"], key=user.encode(),
                              value=orjson.dumps({"user_id": user, "sku": sku, "action": "view", "ts": ts}))
                clicks += 1
        producer.flush()
        metrics_port = int(env["SALESCAST_METRICS_PORT"])
        deadline = time.monotonic() + 600
        while metric_sum(metrics_port, "salescast_updates_applied_total", 'table="user-items"') < clicks:
            assert time.monotonic() < deadline, "the worker did not apply the clicks in 600 s"
            time.sleep(0.5)
        time.sleep(3)  # the last affinity changes reach the candidate lists
        print(f"worker ready: {clicks} views of {args.users} users applied (not timed)", flush=True)

        connection = http.client.HTTPConnection("127.0.0.1", int(env["SALESCAST_WEB_PORT"]), timeout=10)
        user_paths = [f"/recommendations/users/{chosen[i]}?n=10" for i in rng.integers(0, len(chosen),
                                                                                        args.requests)]
        timed_gets(connection, user_paths[:20])  # warm-up
        with_candidates = []
        for sku in (f"sku-{i}" for i in rng.permutation(args.skus)):
            connection.request("GET", f"/recommendations/skus/{sku}/users?n=50")
            if not json.loads(connection.getresponse().read())["fallback"]:
                with_candidates.append(sku)
            if len(with_candidates) >= args.requests:
                break
        sku_paths = [f"/recommendations/skus/{sku}/users?n=50" for sku in with_candidates]
        floor = timed_gets(connection, ["/healthz"] * args.requests)
        users = timed_gets(connection, user_paths)
        skus = timed_gets(connection, sku_paths)
        base = statistics.median(floor)
        print(summary("GET /healthz", floor))
        print(summary("GET /recommendations/users/{user}?n=10", users, base))
        print(summary("GET /recommendations/skus/{sku}/users?n=50", skus, base))
        status = Path(f"/proc/{worker.pid}/status").read_text()
        memory = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in status.splitlines()
                  if line.startswith(("VmRSS", "VmHWM"))}
        s = model.similarity
        model_mib = (s.data.nbytes + s.indices.nbytes + s.indptr.nbytes) / 2**20
        print(f"worker memory: VmRSS {memory['VmRSS']} MiB, peak VmHWM {memory['VmHWM']} MiB; the neighbour "
              f"matrix it serves takes {model_mib:.0f} MiB as loaded (float64 scores, int32 indices)")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        broker.stop(log=lambda m: None)


if __name__ == "__main__":
    main()
