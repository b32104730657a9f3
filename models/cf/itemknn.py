"""Item-based collaborative filtering over implicit feedback, with sparse linear algebra.

Fitting, from the users x items weight matrix X:

1. Weighting (`weighting`): each item is a vector over users. "bm25" saturates
   a user's repeated weight on one item (k1) and damps items with much total
   weight (b), and every user gets an inverse-frequency factor
   log(1 + items / items of that user), so a user who touches everything says
   little about how two items relate. "tfidf" keeps the weights and applies the
   factor; "none" uses X as it is.
2. Similarity: cosine, shrunk by the number of users the two items share,
       s(i, j) = <x_i, x_j> / (|x_i| |x_j|) * n_ij / (n_ij + shrink),
   a similarity (1 = same users, 0 = none shared), not sklearn's cosine
   *distance*. A pair seen together by one user can have cosine 1 by chance;
   the factor pulls such pairs towards 0 whatever the weights' scale
   (Koren, "Factorization meets the neighborhood", KDD 2008, eq. 2).
   Computed as X'X a block of items at a time, so memory stays bounded.
3. Only the `neighbours` most similar items of each item are kept (row i of
   `similarity` holds i's neighbours j with s(i, j)).
4. An item nobody interacted with but whose category is known gets that
   category's most popular items as neighbours, at `cold_similarity`: a new
   SKU is represented by its category's popular neighbours.

Scoring a user with weights w over items (their recent decayed interactions):

    score(i) = sum_j w_j s(j, i) / (shrink_score + sum_{j: w_j > 0} s(j, i))

a similarity-weighted mean of the user's weights over i's neighbours among
the user's items, shrunk towards 0 when the neighbours' total similarity is
small, so one weak neighbour does not count as much as many strong ones.
For affinity (who wants item i, used for promotions) the user's own weight on
i counts too, as a neighbour of similarity 1; recommendations instead rank
only items the user has not touched.

Two more item-item families fill the same sparse matrix, so the worker scores
them the same way (`normalise=False`: score(i) = sum_j w_j s(j, i), no mean):

- "rp3beta": a random walk user -> item -> user -> item. P_ui is X with rows
  scaled to sum 1, P_iu the same of X', both raised to `alpha`; s(i, j) is
  (P_iu P_ui)[i, j] divided by j's popularity to the power `beta`, which
  keeps the popular items from being everyone's neighbours (Paudel et al.,
  ACM TiiS 2016; Dacrema et al., RecSys 2019, found it among the strongest
  simple baselines).
- "ease": the closed-form linear item-item model of Steck (WWW 2019),
  B = argmin |X - XB|^2 + l2 |B|^2 with diag(B) = 0, solved from the dense
  inverse of X'X + l2 I: items^2 memory, so only for catalogues up to
  EASE_MAX_ITEMS. Each row keeps its `neighbours` largest entries in absolute
  value; a negative one lowers a score, so an EASE score can be negative.

Which family and knobs a shop gets is chosen on its own held-out data by the
retrainer (salescast.models.cf.selection), not fixed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import sparse

WEIGHTINGS = ("none", "tfidf", "bm25")
FAMILIES = ("cosine", "rp3beta", "ease")
BLOCK_ITEMS = 2048  # items per X'X block: bounds the product's memory
EASE_MAX_ITEMS = 8_000  # EASE inverts a dense items x items matrix: 8,000 items take ~1.5 GB and ~20 s


def inverse_user_frequency(X: sparse.csr_matrix) -> np.ndarray:
    """log(1 + n_items / items per user): 0-item users get 0 (they carry no rows anyway)."""
    per_user = np.diff(X.indptr).astype(np.float64)
    factor = np.zeros(X.shape[0])
    active = per_user > 0
    factor[active] = np.log1p(X.shape[1] / per_user[active])
    return factor


def weight_matrix(X: sparse.csr_matrix, weighting: str, k1: float = 1.2, b: float = 0.75) -> sparse.csr_matrix:
    """X (users x items) re-weighted as in step 1 of the module docstring."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    X = sparse.csr_matrix(X, dtype=np.float64, copy=True)
    X.eliminate_zeros()
    if weighting == "none":
        return X
    idf = inverse_user_frequency(X)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    if weighting == "bm25":
        item_length = np.asarray(X.sum(axis=0)).ravel()
        mean_length = item_length[item_length > 0].mean() if X.nnz else 1.0
        norm = k1 * (1.0 - b + b * item_length[X.indices] / mean_length)
        X.data = X.data * (k1 + 1.0) / (X.data + norm)
    X.data = X.data * idf[rows]
    return X


def top_k_rows(matrix: sparse.csr_matrix, k: int, by_magnitude: bool = False) -> sparse.csr_matrix:
    """Keep each row's k largest entries (`by_magnitude`: largest in absolute value, signs kept)."""
    matrix = matrix.tocsr()
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix
    keep = np.ones(matrix.nnz, dtype=bool)
    ranked = np.abs(matrix.data) if by_magnitude else matrix.data
    for row in np.flatnonzero(counts > k):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        drop = np.argpartition(ranked[start:end], end - start - k)[: end - start - k]
        keep[start + drop] = False
    rows = np.repeat(np.arange(matrix.shape[0]), counts)[keep]
    return sparse.csr_matrix((matrix.data[keep], (rows, matrix.indices[keep])), shape=matrix.shape)


def cosine_top_k(X: sparse.csr_matrix, k: int, shrink: float, block: int = BLOCK_ITEMS) -> sparse.csr_matrix:
    """Items x items: each item's k nearest items by shrunk cosine similarity, self excluded."""
    items = X.shape[1]
    by_item = X.T.tocsr()
    present = by_item.copy()
    present.data = np.ones_like(present.data)
    present_users = present.T.tocsr()
    norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(axis=1)).ravel())

    def shrunk_cosines(start: int, end: int) -> sparse.csr_matrix:
        dots = (by_item[start:end] @ X).tocsr()  # (block x items) dot products of the weighted vectors
        common = (present[start:end] @ present_users).tocsr()  # users the two items share: same entries
        dots.sort_indices()
        common.sort_indices()
        rows = np.repeat(np.arange(start, end), np.diff(dots.indptr))
        dots.data = dots.data / (norms[rows] * norms[dots.indices]) * (common.data / (common.data + shrink))
        return dots

    return _top_k_by_blocks(items, k, block, shrunk_cosines)


def _top_k_by_blocks(items: int, k: int, block: int,
                     similarities: Callable[[int, int], sparse.csr_matrix]) -> sparse.csr_matrix:
    """Items x items: each row's k largest of `similarities(start, end)` (rows start..end - 1), self excluded,
    computed `block` rows at a time so memory stays bounded."""
    blocks = []
    for start in range(0, items, block):
        end = min(items, start + block)
        part = similarities(start, end)
        rows = np.repeat(np.arange(start, end), np.diff(part.indptr))
        part.data[rows == part.indices] = 0.0  # an item is not its own neighbour
        part.eliminate_zeros()
        blocks.append(top_k_rows(part, k))
    if not blocks:
        return sparse.csr_matrix((items, items))
    return sparse.vstack(blocks, format="csr")


def _rows_to_unit_sum(matrix: sparse.csr_matrix, alpha: float) -> sparse.csr_matrix:
    """Each row scaled to sum 1 (a transition matrix), then every entry raised to `alpha`."""
    matrix = sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    counts = np.diff(matrix.indptr)
    with np.errstate(divide="ignore"):
        matrix.data = matrix.data / np.repeat(np.where(sums > 0, sums, 1.0), counts)
    matrix.data = matrix.data ** alpha
    return matrix


def rp3beta_top_k(X: sparse.csr_matrix, k: int, alpha: float, beta: float,
                  block: int = BLOCK_ITEMS) -> sparse.csr_matrix:
    """Items x items: each item's k strongest three-step walk targets, popularity-damped, self excluded."""
    items = X.shape[1]
    user_to_item = _rows_to_unit_sum(X, alpha)
    item_to_user = _rows_to_unit_sum(X.T.tocsr(), alpha)
    popularity = np.diff(sparse.csc_matrix(X).indptr).astype(np.float64)
    damping = np.zeros(items)
    damping[popularity > 0] = popularity[popularity > 0] ** -beta

    def damped_walks(start: int, end: int) -> sparse.csr_matrix:
        walk = (item_to_user[start:end] @ user_to_item).tocsr()
        walk.data = walk.data * damping[walk.indices]
        return walk

    return _top_k_by_blocks(items, k, block, damped_walks)


def ease_weights(X: sparse.csr_matrix, l2: float) -> np.ndarray:
    """Steck's EASE B, dense: B[i, j] = -P[i, j] / P[j, j] with P = (X'X + l2 I)^-1, and diag(B) = 0."""
    items = X.shape[1]
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices(items)] += l2
    weights = np.linalg.inv(gram)
    del gram
    weights /= -np.diag(weights)[None, :]
    weights[np.diag_indices(items)] = 0.0
    return weights


def ease_top_k(X: sparse.csr_matrix, k: int, l2: float) -> sparse.csr_matrix:
    """Items x items: Steck's EASE weights B (row i: what i says about each other item), each row's k largest
    in absolute value kept: the negative weights (i makes j less likely) carry as much as the positive ones
    (on MovieLens, 500 signed entries a row scored NDCG@10 0.107 as the full B did; 500 positive, 0.101)."""
    items = X.shape[1]
    if items > EASE_MAX_ITEMS:
        raise ValueError(f"EASE needs a dense {items} x {items} matrix; it is offered for up to "
                         f"{EASE_MAX_ITEMS} items (use the cosine or rp3beta family)")
    return top_k_rows(sparse.csr_matrix(ease_weights(X, l2)), k, by_magnitude=True)


@dataclass
class ItemKNN:
    """fit(X, categories) on users x items weights; then score, recommend, affinity."""

    # defaults chosen by `salescast evaluate --cf` on the synthetic shop and MovieLens (docs/recommendations.md)
    neighbours: int = 100
    shrink: float = 10.0
    weighting: str = "bm25"
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    shrink_score: float = 30.0
    cold_similarity: float = 0.05
    family: str = "cosine"
    normalise: bool = True  # the shrunk weighted mean of the module docstring; False: the plain sum
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.5
    ease_l2: float = 200.0
    similarity: sparse.csr_matrix | None = field(default=None, repr=False)
    popularity: np.ndarray | None = field(default=None, repr=False)  # users per item in the training matrix
    categories: np.ndarray | None = field(default=None, repr=False)  # per item; "" when unknown
    # (similarity, similarity + identity): the latter made once per fitted similarity (_similarity_with_self)
    _with_self: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def params(self) -> dict:
        return {"neighbours": self.neighbours, "shrink": self.shrink, "weighting": self.weighting,
                "bm25_k1": self.bm25_k1, "bm25_b": self.bm25_b, "shrink_score": self.shrink_score,
                "cold_similarity": self.cold_similarity, "family": self.family, "normalise": self.normalise,
                "rp3_alpha": self.rp3_alpha, "rp3_beta": self.rp3_beta, "ease_l2": self.ease_l2}

    def describe(self) -> str:
        """The family and the knobs that matter for it, for logs and reports."""
        if self.family == "rp3beta":
            knobs = f"alpha {self.rp3_alpha:g}, beta {self.rp3_beta:g}"
        elif self.family == "ease":
            knobs = f"l2 {self.ease_l2:g}"
        else:
            knobs = f"{self.weighting}, shrink {self.shrink:g}"
            knobs += f", mean shrunk by {self.shrink_score:g}" if self.normalise else ", summed"
        return f"{self.family} ({knobs}, {self.neighbours} neighbours)"

    def fit(self, X: sparse.spmatrix, categories: Sequence[str] | None = None) -> "ItemKNN":
        X = sparse.csr_matrix(X)
        items = X.shape[1]
        self.categories = np.asarray(categories if categories is not None else [""] * items, dtype=str)
        if len(self.categories) != items:
            raise ValueError(f"{len(self.categories)} categories for {items} items")
        self.popularity = np.diff(sparse.csc_matrix(X).indptr).astype(np.float64)
        if self.family == "rp3beta":
            similarity = rp3beta_top_k(X, self.neighbours, self.rp3_alpha, self.rp3_beta)
        elif self.family == "ease":
            similarity = ease_top_k(X, self.neighbours, self.ease_l2)
        elif self.family == "cosine":
            weighted = weight_matrix(X, self.weighting, self.bm25_k1, self.bm25_b)
            similarity = cosine_top_k(weighted, self.neighbours, self.shrink)
        else:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        self.similarity = self._with_cold_items(similarity)
        return self

    def _with_cold_items(self, similarity: sparse.csr_matrix) -> sparse.csr_matrix:
        """Rows for items with no neighbours: their category's most popular items at cold_similarity."""
        cold = np.flatnonzero((np.diff(similarity.indptr) == 0) & (self.categories != ""))
        if len(cold) == 0 or self.cold_similarity <= 0:
            return similarity
        rows, cols = [], []
        for category in np.unique(self.categories[cold]):
            popular = self.popular_items(category, self.neighbours)
            for item in cold[self.categories[cold] == category]:
                chosen = popular[popular != item]
                rows.append(np.full(len(chosen), item))
                cols.append(chosen)
        if not rows:
            return similarity
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        extra = sparse.csr_matrix((np.full(len(rows), self._cold_value(similarity)), (rows, cols)),
                                  shape=similarity.shape)
        return (similarity + extra).tocsr()

    def _cold_value(self, similarity: sparse.csr_matrix) -> float:
        """A weak link on this family's scale: cold_similarity is on the cosine's 0-1 scale; a summed family
        (walk probabilities, EASE weights) gets the 10th percentile of its learned links instead."""
        if self.normalise or similarity.nnz == 0:
            return self.cold_similarity
        return float(np.percentile(similarity.data, 10))

    def popular_items(self, category: str | None = None, n: int = 10) -> np.ndarray:
        """Most popular items with any users, overall or within one category."""
        candidates = np.flatnonzero(self.popularity > 0)
        if category is not None:
            candidates = candidates[self.categories[candidates] == category]
        order = np.argsort(-self.popularity[candidates], kind="stable")[:n]
        return candidates[order]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (for an .npz read with allow_pickle=False)."""
        s = self.similarity
        return {"similarity_indptr": s.indptr.astype(np.int64), "similarity_indices": s.indices.astype(np.int32),
                "similarity_data": s.data.astype(np.float32), "popularity": self.popularity.astype(np.float64),
                "categories": self.categories.astype(str)}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]) -> "ItemKNN":
        model = cls(**params)
        items = len(arrays["popularity"])
        model.similarity = sparse.csr_matrix(
            (arrays["similarity_data"].astype(np.float64), arrays["similarity_indices"], arrays["similarity_indptr"]),
            shape=(items, items))
        model.popularity = arrays["popularity"]
        model.categories = arrays["categories"].astype(str)
        return model

    def warm(self, items: np.ndarray) -> np.ndarray:
        """Which of `items` had interactions in training (their neighbours are learned, not category stand-ins)."""
        return self.popularity[items] > 0

    def score(self, W: sparse.spmatrix, include_self: bool = False) -> sparse.csr_matrix:
        """Users x items scores for the users' weight rows W (see the module docstring)."""
        W = sparse.csr_matrix(W, dtype=np.float64)
        W.eliminate_zeros()
        present = W.copy()
        present.data = np.ones_like(present.data)
        similarity = self._similarity_with_self() if include_self else self.similarity
        numerator = (W @ similarity).tocsr()
        if not self.normalise:
            return numerator
        denominator = (present @ similarity).tocsr()
        # (normalise is for the cosine family only) All weights and similarities are positive, so both
        # products have the same entries; W and
        # `present` share their pattern, so scipy lists them in the same order (sorted only if not).
        if not (np.array_equal(numerator.indptr, denominator.indptr)
                and np.array_equal(numerator.indices, denominator.indices)):
            numerator.sort_indices()
            denominator.sort_indices()
        scores = numerator.copy()
        scores.data = numerator.data / (self.shrink_score + denominator.data)
        return scores

    def _similarity_with_self(self) -> sparse.csr_matrix:
        """The similarity with each item its own neighbour at 1: one product per batch, where adding the users'
        own rows to both products made two sparse sums."""
        cached = self._with_self
        if cached is None or cached[0] is not self.similarity:
            with_self = (self.similarity + sparse.identity(self.similarity.shape[0], format="csr")).tocsr()
            self._with_self = cached = (self.similarity, with_self)
        return cached[1]

    def recommend(self, items: np.ndarray, weights: np.ndarray, n: int,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
        """Top-n (items, scores, fallback) for one user's known items and weights.

        Falls back to popularity within the categories of the user's items when
        none of them had interactions in training, and to overall popularity
        when their categories are unknown too; `fallback` says so.
        """
        items = np.asarray(items, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        seen = set(items.tolist()) if exclude_seen else set()
        if len(items) and self.warm(items).any():
            row = sparse.csr_matrix((weights, (np.zeros(len(items), dtype=np.int64), items)),
                                    shape=(1, self.similarity.shape[0]))
            scores = self.score(row)
            candidates, values = scores.indices, scores.data
            if seen:
                keep = ~np.isin(candidates, items)
                candidates, values = candidates[keep], values[keep]
            if len(candidates):
                top = _top_n(values, n)
                return candidates[top], values[top], False
        categories = {self.categories[i] for i in items.tolist()} - {""}
        return (*self._popular(categories, n, seen), True)

    def _popular(self, categories: set[str], n: int, seen: set[int]) -> tuple[np.ndarray, np.ndarray]:
        pool = np.flatnonzero(self.popularity > 0)
        if categories:
            in_categories = pool[np.isin(self.categories[pool], sorted(categories))]
            pool = in_categories if len(in_categories) else pool
        if seen:
            pool = pool[~np.isin(pool, sorted(seen))]
        top = pool[np.argsort(-self.popularity[pool], kind="stable")[:n]]
        total = self.popularity.max(initial=0) or 1.0
        return top, self.popularity[top] / total


def _top_n(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, largest first (ties by position, so results are stable)."""
    if len(values) > n:
        part = np.argpartition(-values, n - 1)[:n]
        return part[np.lexsort((part, -values[part]))]
    return np.lexsort((np.arange(len(values)), -values))
