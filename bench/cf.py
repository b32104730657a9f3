"""Recommender speed and memory: rebuild, live update, top-10 for a user, candidate users for a SKU.

    python bench/cf.py [--interactions 1000000] [--skus 50000] [--users 200000] [--serve-skus 100000] [--runs 7]

The matrix is synthetic (not timed): items in clusters of 1,000 with Zipf
popularity inside each, users drawn to one cluster for 80% of their
interactions, 1 + geometric(mean 4) interactions per user, weights from the
worker's action weights; a user's vector is what salescast.models.useritem would hold.

1. Rebuild (`retrain`'s CF path from the users' vectors, in a child process
   so its peak RSS is its own): the matrix from the vectors, the holdout
   scoring against popularity, the fit on everything, the artifact arrays.
   Reported by phase, with the artifact's size and the child's peak RSS.
2. Live update, on a model of --serve-skus SKUs: what the user agent does
   per batch of 2,000 events from 2,000 users (salescast.stream.serving.recommender.
   affinity_updates: score every user at once, diff against the scores last
   sent, group the changes by SKU partition; then encode them), per event:
   for users met for the first time (every top affinity is new), and for the
   same users after one more interaction each (only the changes go out).
   Twice: with one event per user in a batch (the worst case), and with as
   many events per user as batches of the generator's shop hold (a visit's
   views, carts and order lines arrive together; measured, not assumed).
3. Top-10 SKUs for one user (Recommender.for_user), median of many users.
4. Top-50 candidate users for a SKU from a full index entry (200 users):
   JSON decode of the stored entry + ranking, as the HTTP view does.
Medians of --runs; the baseline in the same run is popularity (top-10 by
argpartition over the catalogue) for 3 and a full sort for 4.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from salescast.models import useritem  # noqa: E402
from salescast.models.cf import candidates  # noqa: E402
from salescast.models.cf.itemknn import ItemKNN  # noqa: E402
from salescast.training import recommender as cf_training  # noqa: E402
from salescast.stream.serving.recommender import Recommender, affinity_updates  # noqa: E402
from salescast.stream.core.state import json_lists  # noqa: E402
from salescast.stream.core.settings import Settings  # noqa: E402
from salescast.stream.delivery.outbox import partition_for  # noqa: E402

ACTION_WEIGHTS = np.array([1.0, 2.0, 3.0, 5.0])  # view, wishlist, cart, purchase
ACTION_SHARE = np.array([0.80, 0.03, 0.10, 0.07])
CLUSTER = 1_000
BATCH_EVENTS = 2_000


def synthetic_vectors(interactions: int, skus: int, users: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    counts = 1 + rng.geometric(1 / 4, users)
    counts = np.maximum(1, np.round(counts * interactions / counts.sum())).astype(int)
    clusters = max(1, skus // CLUSTER)
    inside = 1.0 / (np.arange(CLUSTER) + 5.0) ** 0.9
    inside /= inside.sum()
    home = rng.integers(0, clusters, users)
    vectors = {}
    for user in range(users):
        n = counts[user]
        cluster = np.where(rng.random(n) < 0.8, home[user], rng.integers(0, clusters, n))
        items = np.minimum(cluster * CLUSTER + rng.choice(CLUSTER, n, p=inside), skus - 1)
        weights = ACTION_WEIGHTS[rng.choice(4, n, p=ACTION_SHARE)]
        w: dict[str, float] = {}
        for item, weight in zip(items.tolist(), weights.tolist()):
            key = f"sku-{item}"
            w[key] = w.get(key, 0.0) + weight
        vectors[f"u-{user}"] = useritem.from_weights(w, 0)
    categories = {f"sku-{i}": f"cat-{i // CLUSTER}" for i in range(skus)}
    return vectors, categories


def rebuild(args, queue) -> None:
    vectors, categories = synthetic_vectors(args.interactions, args.skus, args.users, args.seed)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    data = cf_training.matrix_from_vectors(vectors, categories)
    matrix_s = time.perf_counter() - started
    started = time.perf_counter()
    model, _, metrics = cf_training.fit(data, args.seed)  # the choice among the candidates included
    fit_all_s = time.perf_counter() - started
    started = time.perf_counter()
    arrays = cf_training.artifact_arrays(model, data)
    arrays_s = time.perf_counter() - started
    size_mb = sum(a.nbytes for a in arrays.values()) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"interactions": int(data.matrix.nnz), "matrix_s": matrix_s, "fit_and_holdout_s": fit_all_s,
               "fit_s": metrics["fit_seconds"], "arrays_s": arrays_s, "total_s": matrix_s + fit_all_s + arrays_s,
               "artifact_mb": size_mb, "similarity_nnz": int(model.similarity.nnz), "peak_rss_mb": peak,
               "rss_before_mb": base_rss, "ndcg": metrics.get("ndcg@10"),
               "popularity_ndcg": metrics.get("popularity_ndcg@10")})


def serving_recommender(skus: int, seed: int, params: dict | None = None) -> tuple[Recommender, dict]:
    vectors, categories = synthetic_vectors(skus * 20, skus, skus * 4, seed)
    data = cf_training.matrix_from_vectors(vectors, categories)
    model = ItemKNN(**(params or {})).fit(data.matrix, data.categories)
    recommender = Recommender()
    recommender.model, recommender.skus = model, data.skus
    recommender.index = {sku: i for i, sku in enumerate(data.skus)}
    recommender.version = "bench"
    return recommender, vectors


def shop_events_per_user(events: int = 300_000) -> float:
    """Interactions per distinct user in batches of BATCH_EVENTS consecutive interactions of the
    generator's shop (the throughput bench's: 1,000 SKUs, 20,000 users): a visit's views, carts
    and order lines come together, so a batch holds several events of each of its users."""
    from salescast.sim.generator import Shop, ShopConfig

    users, ratios = [], []
    for count, (topic, record) in enumerate(Shop(ShopConfig(seed=1, skus=1000, users=20_000, days=365)).events()):
        if count >= events:
            break
        if topic == "clicks":
            users.append(record["user_id"])
        elif topic == "orders":
            users.extend(record["user_id"] for _ in record["items"])
        if len(users) >= BATCH_EVENTS:
            ratios.append(len(users) / len(set(users)))
            users = []
    return statistics.median(ratios)


def live_update_per_event(recommender: Recommender, vectors: dict, settings: Settings, rng,
                          events_per_user: float = 1.0) -> tuple[float, float]:
    """Per event, for batches of BATCH_EVENTS events from BATCH_EVENTS / events_per_user users: (users seen
    for the first time, the same users again after one more visit each), as `send_affinity_changes`."""
    names = list(vectors)
    users = [names[i] for i in rng.integers(0, len(names), int(BATCH_EVENTS / events_per_user))]
    batch = [useritem.from_weights(useritem.weights(vectors[user]), 0) for user in users]

    def partition_of(sku: str) -> int:
        return partition_for(sku.encode(), settings.kafka.partitions)

    def one_batch() -> float:
        started = time.perf_counter()
        changes = affinity_updates(recommender, users, batch, settings.recommendations.affinity_top, partition_of)
        payloads = [record for entries in changes.values() for record in json_lists(entries)]  # as the agent
        elapsed = time.perf_counter() - started
        assert payloads
        return elapsed / BATCH_EVENTS

    first = one_batch()
    for vector in batch:  # one more view of a SKU the user has, or of a random one
        sku = f"sku-{int(rng.integers(0, len(recommender.skus)))}" if rng.random() < 0.3 else \
            next(iter(useritem.weights(vector)))
        useritem.learn_one(vector, sku, 1.0, 0, settings.recommendations.interaction_half_life_ms, settings.recommendations.user_item_cap)
    return first, one_batch()


def median_time(function, inputs) -> float:
    samples = []
    for item in inputs:
        started = time.perf_counter()
        function(item)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--serve-skus", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rebuilds", type=int, default=3, help="rebuilds timed (default 3; 0: serving only)")
    parser.add_argument("--serve-params", type=json.loads, default=None, metavar="JSON",
                        help='the served model\'s ItemKNN parameters, e.g. \'{"family": "ease", "ease_l2": 250, '
                             '"neighbours": 500, "normalise": false}\' (default: ItemKNN\'s defaults)')
    args = parser.parse_args()
    settings = Settings()

    rebuilds = []
    for run in range(args.rebuilds):
        queue = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=rebuild, args=(args, queue))
        child.start()
        rebuilds.append(queue.get())
        child.join()
        r = rebuilds[-1]
        print(f"rebuild {run + 1}: {r['total_s']:.1f}s (matrix {r['matrix_s']:.1f}s, holdout scoring + fit "
              f"{r['fit_and_holdout_s']:.1f}s of which fit {r['fit_s']:.1f}s, arrays {r['arrays_s']:.1f}s); "
              f"peak RSS {r['peak_rss_mb']:.0f} MiB (vectors alone {r['rss_before_mb']:.0f} MiB), artifact "
              f"{r['artifact_mb']:.0f} MiB, {r['similarity_nnz']} neighbour pairs; holdout NDCG@10 "
              f"{r['ndcg']} vs popularity {r['popularity_ndcg']}", flush=True)
    if rebuilds:
        r = sorted(rebuilds, key=lambda x: x["total_s"])[len(rebuilds) // 2]
        print(f"REBUILD median: {r['total_s']:.1f}s for {r['interactions']} interactions, {args.skus} SKUs, "
              f"{args.users} users; peak RSS {r['peak_rss_mb']:.0f} MiB", flush=True)

    started = time.perf_counter()
    recommender, vectors = serving_recommender(args.serve_skus, args.seed, args.serve_params)
    print(f"serving model: {recommender.model.describe()} over {args.serve_skus} SKUs, "
          f"{recommender.model.similarity.nnz} neighbour pairs, fitted in "
          f"{time.perf_counter() - started:.0f}s (not timed)", flush=True)
    rng = np.random.default_rng(args.seed)
    updates = [live_update_per_event(recommender, vectors, settings, rng) for _ in range(args.runs)]
    first, again = (statistics.median(column) for column in zip(*updates))
    print(f"LIVE UPDATE, one event per user: {again * 1e6:.1f} us per event for users seen before, "
          f"{first * 1e6:.1f} us for users seen for the first time (batches of {BATCH_EVENTS} events)", flush=True)
    ratio = shop_events_per_user()
    updates = [live_update_per_event(recommender, vectors, settings, rng, ratio) for _ in range(args.runs)]
    first, again = (statistics.median(column) for column in zip(*updates))
    print(f"LIVE UPDATE, batches as the shop's traffic makes them ({ratio:.2f} events per user per batch): "
          f"{again * 1e6:.1f} us per event for users seen before, {first * 1e6:.1f} us first time", flush=True)

    users = list(vectors)
    sample = [vectors[users[i]] for i in rng.integers(0, len(users), 500)]
    sizes = [len(useritem.weights(v)) for v in sample]
    top10 = median_time(lambda v: recommender.for_user(v, 10), sample)
    popularity = recommender.model.popularity
    baseline = median_time(lambda v: np.argpartition(-popularity, 10)[:10], sample)
    print(f"TOP-10 FOR A USER: {top10 * 1e3:.3f} ms median over 500 users ({statistics.median(sizes)} SKUs in the "
          f"median vector, {max(sizes)} at most); popularity argpartition {baseline * 1e3:.3f} ms", flush=True)

    day = 86_400_000
    entries = []
    for i in range(200):
        changes = [(f"u-{j}", float(rng.random()), int(rng.integers(0, 30)) * day)
                   for j in rng.integers(0, len(users), settings.recommendations.candidates_per_sku * 2)]
        entries.append(orjson.dumps(candidates.apply_changes(None, changes, settings.recommendations.candidates_per_sku,
                                                             settings.recommendations.interaction_half_life_ms)))
    query = median_time(lambda raw: candidates.ranked(orjson.loads(raw), 50, settings.recommendations.interaction_half_life_ms),
                        entries)
    full = median_time(lambda raw: sorted(orjson.loads(raw)["u"].items(), key=lambda p: -p[1][0])[:50], entries)
    print(f"CANDIDATE USERS FOR A SKU: {query * 1e3:.3f} ms median (top 50 of {settings.recommendations.candidates_per_sku}, "
          f"decode + decay + rank); plain decode + sort {full * 1e3:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
