"""The worker's recommender: an item-kNN model from the model store, scored on live vectors.

A user's vector (salescast.models.useritem, the `user-items` table) is the input: their
recent decayed interactions. From it the worker answers a user's top SKUs and
computes the user's strongest affinities, which feed each SKU's candidate
index (salescast.models.cf.candidates). Without a model (none trained yet, or a damaged
one) every answer is a fallback list and the log says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import sparse

from salescast.models import useritem
from salescast.models.cf import candidates
from salescast.models.cf.itemknn import ItemKNN
from salescast.models.store import StoredModel

MODEL_NAME = "cf"
NO_MODEL_VERSION = "none"
GLOBAL_AUDIENCE = ""  # the audience of the overall most popular items


@dataclass
class Recommendations:
    items: list[tuple[str, float]]
    fallback: bool


class Recommender:
    """Scores live user vectors with a stored ItemKNN; `model is None` until one is trained."""

    def __init__(self, stored: StoredModel | None = None):
        self.name = MODEL_NAME
        self.model: ItemKNN | None = None
        self.version = NO_MODEL_VERSION
        self.skus: list[str] = []
        self.index: dict[str, int] = {}
        self.audiences: dict[str, list[tuple[str, float]]] = {}
        if stored is not None:
            self.version = stored.version
            weights = stored.weights
            self.model = ItemKNN.from_arrays(stored.config["params"], weights)
            self.skus = weights["item_ids"].astype(str).tolist()
            self.index = {sku: i for i, sku in enumerate(self.skus)}
            for category, users, scores in zip(weights["audience_categories"].astype(str),
                                               weights["audience_users"].astype(str), weights["audience_scores"]):
                self.audiences[str(category)] = [(str(u), round(float(s), 6)) for u, s in zip(users, scores) if u]

    def record_model(self) -> dict:
        return {"name": self.name, "version": self.version}

    def smoke_test(self) -> None:
        """A user who viewed the first SKU must get finite affinities and recommendations: a version whose
        arrays load but do not score is refused before it serves (ValueError)."""
        if not self.skus:
            raise ValueError(f"{self.version} knows no SKU")
        vector = useritem.from_weights({self.skus[0]: 1.0}, 0)
        scores = list(self.affinities([vector], 5)[0].values())
        answer = self.for_user(vector, 5)
        if not np.isfinite(scores + [score for _, score in answer.items]).all():
            raise ValueError(f"{self.version} gives non-finite scores on a smoke input")

    def category_of(self, sku: str) -> str | None:
        i = self.index.get(sku)
        if i is None or self.model is None:
            return None
        return str(self.model.categories[i]) or None

    def _rows(self, vectors: list[useritem.UserVector]) -> sparse.csr_matrix:
        """Vectors as weight rows over the model's SKUs (SKUs the model does not know are left out)."""
        rows, cols, values = [], [], []
        for row, vector in enumerate(vectors):
            for sku, weight in useritem.weights(vector).items():
                i = self.index.get(sku)
                if i is not None:
                    rows.append(row)
                    cols.append(i)
                    values.append(weight)
        return sparse.csr_matrix((values, (rows, cols)), shape=(len(vectors), len(self.skus)))

    def for_user(self, vector: useritem.UserVector | None, n: int) -> Recommendations:
        """The user's top-n SKUs they have not interacted with yet."""
        if self.model is None:
            return Recommendations([], True)
        row = self._rows([vector]) if vector else sparse.csr_matrix((1, len(self.skus)))
        items, scores, fallback = self.model.recommend(row.indices, row.data, n)
        return Recommendations([(self.skus[i], round(float(s), 6)) for i, s in zip(items, scores)], fallback)

    def affinities(self, vectors: list[useritem.UserVector], top: int) -> list[dict[str, float]]:
        """Each user's `top` strongest affinities (their own interactions count), sku -> score."""
        if self.model is None or not vectors:
            return [{} for _ in vectors]
        scores = self.model.score(self._rows(vectors), include_self=True)
        items, values = top_per_row(scores, top)
        skus = self.skus
        # a linear model's score can be negative (the user's items make the SKU less likely): no affinity
        return [{skus[i]: value for i, value in zip(row_items, row_values) if value > 0}
                for row_items, row_values in zip(items, values)]

    def for_sku(self, entry: dict | None, category_of: Callable[[], str | None], n: int,
                half_life_ms: float) -> Recommendations:
        """The SKU's top-n candidate users; with none yet, the audience of its category's popular SKUs.

        `category_of` is called only for that fallback (it may read the SKU's window).
        """
        ranked = candidates.ranked(entry, n, half_life_ms)
        if ranked:
            return Recommendations([(user, round(score, 6)) for user, score in ranked], False)
        audience = self.audiences.get(category_of() or GLOBAL_AUDIENCE) or self.audiences.get(GLOBAL_AUDIENCE, [])
        return Recommendations(audience[:n], True)


def top_per_row(scores: sparse.csr_matrix, top: int) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's `top` largest entries (column indices, values rounded to 6 places), in no set order.

    One argpartition per row: laying the rows into one padded array and
    ranking them in one call measured twice as slow (rows differ in length a lot).
    """
    data, indices, bounds = np.round(scores.data, 6), scores.indices, scores.indptr.tolist()
    items, values = [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        chosen = slice(start, end)
        if end - start > top:
            chosen = np.argpartition(data[start:end], end - start - top)[end - start - top:] + start
        items.append(indices[chosen].tolist())
        values.append(data[chosen].tolist())
    return items, values


def affinity_updates(recommender: Recommender, users: list[str], vectors: list[useritem.UserVector], top: int,
                     partition_of: Callable[[str], int]) -> dict[int, list[list]]:
    """What the user agent sends for one batch: the changes in each user's top affinities, by SKU partition.

    Every user is scored in one call. Each vector keeps the scores last sent
    (useritem.sent_affinities), so only the difference goes out
    (candidates.affinity_changes); the entries are [sku, user, score or None
    to remove, the user's event time].
    """
    by_partition: dict[int, list[list]] = {}
    partition_entries: dict[str, list[list]] = {}  # sku -> its partition's entries (each SKU's partition once)
    for user, vector, current in zip(users, vectors, recommender.affinities(vectors, top)):
        changes, sent = candidates.affinity_changes(useritem.sent_affinities(vector), current)
        useritem.set_sent_affinities(vector, sent)
        ts = useritem.newest_ts(vector)
        for sku, score in changes:
            entries = partition_entries.get(sku)
            if entries is None:
                entries = partition_entries[sku] = by_partition.setdefault(partition_of(sku), [])
            entries.append([sku, user, score, ts])
    return by_partition


def recommendations_record(key: str, kind: str, answer: Recommendations, recommender: Recommender) -> dict:
    """The contract's `recommendations` record."""
    return {"key": key, "kind": kind, "items": [{"id": item, "score": score} for item, score in answer.items],
            "model": recommender.record_model(), "fallback": answer.fallback}
