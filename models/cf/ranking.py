"""Judging a recommender on held-out time: the split and the top-k metrics.

Each user's last interactions (a `fraction` of them, at least one) are held
out; what they touched then and had not touched before is what a
recommender should have ranked high, from the earlier interactions only.
Items the user already has in training are never counted as hits: they are
removed from every ranking.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import sparse


def split_last(users: np.ndarray, ts: np.ndarray, fraction: float = 0.2, min_interactions: int = 2) -> np.ndarray:
    """True for the interactions held out: each user's newest ceil(fraction x n), if n >= min_interactions."""
    users, ts = np.asarray(users), np.asarray(ts)
    order = np.lexsort((np.arange(len(users)), ts, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    size = np.repeat(counts, counts)
    held = np.ceil(fraction * size).astype(int)
    held_sorted = (size >= min_interactions) & (rank >= size - held)
    held_out = np.zeros(len(users), dtype=bool)
    held_out[order] = held_sorted
    return held_out


def relevant_items(users: np.ndarray, items: np.ndarray, train: sparse.csr_matrix) -> dict[int, set[int]]:
    """Per user row, the held-out items the user had not interacted with in training."""
    relevant: dict[int, set[int]] = {}
    for user, item in zip(np.asarray(users).tolist(), np.asarray(items).tolist()):
        row = train.indices[train.indptr[user]:train.indptr[user + 1]]
        if item not in row:
            relevant.setdefault(user, set()).add(item)
    return relevant


def metrics_at_k(ranked: list[np.ndarray], relevant: list[set[int]], k: int = 10) -> dict[str, float]:
    """Mean precision@k, recall@k and NDCG@k (binary gains) over users."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = recall = ndcg = 0.0
    for items, truth in zip(ranked, relevant):
        hits = np.array([item in truth for item in items[:k]], dtype=float)
        precision += hits.sum() / k
        recall += hits.sum() / len(truth)
        ideal = discounts[: min(len(truth), k)].sum()
        ndcg += float(hits @ discounts[: len(hits)]) / ideal
    users = max(1, len(ranked))
    return {f"precision@{k}": float(precision / users), f"recall@{k}": float(recall / users),
            f"ndcg@{k}": float(ndcg / users)}


def popularity_scorer(train: sparse.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline: every user gets the SKUs by how many training users touched them."""
    popularity = np.diff(train.tocsc().indptr).astype(float)
    return lambda rows: np.tile(popularity, (len(rows), 1))


def model_scorer(model, train: sparse.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
    """A fitted recommender with `score(weight rows) -> sparse scores` (salescast.models.cf.itemknn.ItemKNN)."""
    return lambda rows: model.score(train[rows]).toarray()


def evaluate(score_rows: Callable[[np.ndarray], np.ndarray], train: sparse.csr_matrix,
             relevant: dict[int, set[int]], k: int = 10, batch_cells: int = 2_000_000) -> dict[str, float]:
    """Scores users in batches with `score_rows(user rows) -> dense (rows x items)`, training items excluded.

    A batch holds at most `batch_cells` scores (16 MB), whatever the catalogue's size.
    """
    users = sorted(relevant)
    batch = max(1, batch_cells // max(1, train.shape[1]))
    ranked, truths = [], []
    for start in range(0, len(users), batch):
        rows = np.array(users[start:start + batch])
        scores = np.array(score_rows(rows), dtype=np.float64)
        seen = train[rows]
        scores[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        for row, user in enumerate(rows.tolist()):
            chosen = top[row][order[row]]
            ranked.append(chosen[np.isfinite(scores[row, chosen])])
            truths.append(relevant[user])
    result = metrics_at_k(ranked, truths, k)
    result["users"] = len(users)
    return result
