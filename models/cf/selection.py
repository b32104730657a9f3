"""Choosing a shop's recommender on its own held-out interactions: a small grid of families and knobs.

No one setting wins on every shop (docs/recommendations.md): BM25 and a shrunk
mean help on sparse catalogues and cost on dense ones, and the linear and
random-walk families beat the cosine on some data. So the retrainer fits each
candidate on a training split, ranks each held-out user's items, and keeps the
one with the best NDCG@10; ties go to the earlier candidate, the cheaper and
better known. Every candidate is an ItemKNN (one sparse item-item matrix of at
most a few hundred entries per item), so whichever wins, the worker scores it the same
way and at the same cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from scipy import sparse

from salescast.models.cf import ranking
from salescast.models.cf.itemknn import EASE_MAX_ITEMS, ItemKNN

MAX_NEIGHBOURS = 200  # per item: bounds a live update (a user's items x their neighbours) and a top-10
# EASE is offered only up to EASE_MAX_ITEMS items, where 500 signed weights a row cost a live update no more
# than 200 do at 100,000 SKUs, and lose nothing against the full matrix (salescast.models.cf.itemknn.ease_top_k)
EASE_NEIGHBOURS = 500

# The first is the long-standing default; the rest span what moved NDCG@10 on the data sets of
# docs/recommendations.md (weighting, shrinkage, mean or sum, walk damping, EASE's ridge).
CANDIDATES: tuple[dict, ...] = (
    {"family": "cosine"},
    {"family": "cosine", "weighting": "none", "shrink": 0.0, "neighbours": MAX_NEIGHBOURS, "normalise": False},
    {"family": "cosine", "weighting": "bm25", "shrink": 10.0, "neighbours": MAX_NEIGHBOURS, "normalise": False},
    {"family": "cosine", "weighting": "tfidf", "shrink": 2.0, "neighbours": MAX_NEIGHBOURS, "shrink_score": 2.0},
    {"family": "rp3beta", "rp3_alpha": 1.0, "rp3_beta": 0.3, "neighbours": MAX_NEIGHBOURS, "normalise": False},
    {"family": "rp3beta", "rp3_alpha": 1.0, "rp3_beta": 0.6, "neighbours": MAX_NEIGHBOURS, "normalise": False},
    {"family": "rp3beta", "rp3_alpha": 0.6, "rp3_beta": 0.4, "neighbours": MAX_NEIGHBOURS, "normalise": False},
    {"family": "ease", "ease_l2": 50.0, "neighbours": EASE_NEIGHBOURS, "normalise": False},
    {"family": "ease", "ease_l2": 250.0, "neighbours": EASE_NEIGHBOURS, "normalise": False},
    {"family": "ease", "ease_l2": 1000.0, "neighbours": EASE_NEIGHBOURS, "normalise": False},
)


@dataclass(frozen=True)
class Trial:
    params: dict
    ndcg: float | None  # NDCG@10 on the held-out items; None: not tried (`skipped` says why)
    seconds: float
    skipped: str = ""

    def summary(self) -> dict:
        return {"model": ItemKNN(**self.params).describe(), "ndcg@10": None if self.ndcg is None else round(self.ndcg, 4),
                "seconds": round(self.seconds, 2), **({"skipped": self.skipped} if self.skipped else {})}


def applicable(params: dict, items: int) -> str:
    """Why a candidate cannot be fitted on `items` items ("" if it can)."""
    if params.get("family") == "ease" and items > EASE_MAX_ITEMS:
        return f"EASE is offered up to {EASE_MAX_ITEMS} items; this catalogue has {items}"
    return ""


def select(train: sparse.csr_matrix, relevant: dict[int, set[int]], categories: Sequence[str] | None = None,
           candidates: Sequence[dict] = CANDIDATES) -> tuple[dict, list[Trial]]:
    """(the parameters with the best NDCG@10 of `relevant` ranked from `train`, every trial)."""
    if not candidates:
        raise ValueError("no candidate recommenders to choose from")
    trials = []
    for params in candidates:
        reason = applicable(params, train.shape[1])
        if reason:
            trials.append(Trial(dict(params), None, 0.0, reason))
            continue
        started = time.perf_counter()
        model = ItemKNN(**params).fit(train, categories)
        ndcg = ranking.evaluate(ranking.model_scorer(model, train), train, relevant)["ndcg@10"]
        trials.append(Trial(dict(params), ndcg, time.perf_counter() - started))
    tried = [trial for trial in trials if trial.ndcg is not None]
    if not tried:
        raise ValueError("no candidate recommender applies to this catalogue: "
                         + "; ".join(trial.skipped for trial in trials))
    best = max(tried, key=lambda trial: trial.ndcg)  # max keeps the first of equals
    return dict(best.params), trials
