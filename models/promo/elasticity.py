"""Price elasticity of demand per SKU, pooled by category, from sales history and promotion outcomes.

Model (per category): a Poisson regression of a SKU's units per bucket,

    log E[units] = a_sku + elasticity x log(price / list price) + day of week + drift x t

fitted with scikit-learn's PoissonRegressor: the log link is the regression
of log units on log price, and unlike least squares on log(units) it keeps
the many buckets with no sale. The SKU's own intercept absorbs its
popularity, a drift over time (within each SKU's span) the season's trend.
(A local level, each SKU's mean units around the bucket, was tried as a
covariate and dropped: its noise soaked up a third of the price response on
simulated data with a known answer.) Buckets the SKU was sold out in are
left out: no sale there says nothing about price.

The slope is the elasticity. Each category's slope is shrunk toward the
slope of all categories together by empirical Bayes (the less certain it is
against the spread between categories, the more it takes the overall one: a
small catalogue's categories are noisy), and a SKU with enough buckets of its
own at a cut price gets its own slope, shrunk the same way toward its
category's; any other SKU takes the category's. Standard errors come from the regression's
information matrix with the SKU intercepts profiled out, scaled by the
Pearson dispersion.

Realised promotions feed back (`with_outcomes`): a finished trigger's target
and holdout conversions give an implied elasticity, log(conv_t / conv_h) /
log(1 - discount), merged with the regression's by inverse variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from sklearn.linear_model import PoissonRegressor

DISCOUNTED = 0.98  # a bucket whose price ratio is below this sold at a cut price


@dataclass
class PricePanel:
    """One row per SKU and bucket in stock."""

    sku: np.ndarray  # str
    category: np.ndarray  # str
    bucket: np.ndarray  # int
    units: np.ndarray  # float
    price_ratio: np.ndarray  # price paid / list price, in (0, 1]


def price_ratios(units: np.ndarray, revenue: np.ndarray, list_price: float) -> np.ndarray:
    """Price paid over list price per bucket; NaN where it cannot be told.

    A bucket without sales shows no price. Between two sold buckets at the same
    price it takes that price (regular days, or a promotion running through
    it); next to a cut-price bucket otherwise it may or may not have been on
    promotion, and is NaN (left out: counting such a bucket at list price
    made the elasticity 20% too steep on the generator's data).
    """
    units = np.asarray(units, dtype=float)
    ratio = np.full(len(units), np.nan)
    sold = units > 0
    ratio[sold] = np.clip(np.asarray(revenue, dtype=float)[sold] / units[sold] / list_price, 1e-3, 1.0)
    observed = np.flatnonzero(sold)
    if observed.size == 0:
        return np.ones(len(units))
    bounds = [(-1, observed[0])] + list(zip(observed[:-1], observed[1:])) + [(observed[-1], len(units))]
    for before, after in bounds:
        if after - before <= 1:
            continue
        sides = [ratio[i] for i in (before, after) if 0 <= i < len(units)]
        if all(side >= DISCOUNTED for side in sides):
            ratio[before + 1:after] = 1.0
        elif len(sides) == 2 and abs(sides[0] - sides[1]) < 1e-3:
            ratio[before + 1:after] = sides[0]
    # The first and last sold bucket of a cut-price run are known only because they sold (the same
    # bucket without a sale would have been NaN): kept, they select for sales and steepen the slope.
    cut = ratio < DISCOUNTED
    starts = cut & ~np.concatenate([[False], cut[:-1]])
    ends = cut & ~np.concatenate([cut[1:], [False]])
    ratio[(starts | ends) & sold] = np.nan
    return ratio


def panel_from_series(series: list[tuple]) -> PricePanel:
    """series: (sku, category, first bucket, units, revenue, stock reported (-1 none, 0 sold out), list price,
    targeted or None), `targeted` marking the buckets a targeted promotion ran in: left out, since a
    discount to a few users moves the day's mean price and units in no constant-elasticity way (what such
    a promotion did is measured against its holdout and comes in through `with_outcomes`)."""
    columns: dict[str, list] = {name: [] for name in ("sku", "category", "bucket", "units", "price_ratio")}
    for sku, category, first, units, revenue, stock, list_price, targeted in series:
        units = np.asarray(units, dtype=float)
        if not list_price or list_price <= 0 or len(units) == 0 or units.sum() <= 0:
            continue
        ratio = price_ratios(units, revenue, list_price)
        keep = (np.asarray(stock) != 0) & ~np.isnan(ratio)
        if targeted is not None:
            keep &= ~np.asarray(targeted, dtype=bool)
        n = int(keep.sum())
        columns["sku"].append(np.full(n, sku, dtype=object))
        columns["category"].append(np.full(n, category or "", dtype=object))
        columns["bucket"].append(first + np.flatnonzero(keep))
        columns["units"].append(units[keep])
        columns["price_ratio"].append(ratio[keep])
    if not columns["sku"]:
        return PricePanel(*(np.array([]) for _ in range(5)))
    return PricePanel(*(np.concatenate(columns[name]) for name in columns))


@dataclass
class Estimate:
    elasticity: float
    se: float
    source: str  # "sku", "category", "overall", plus "+outcomes" when realised promotions moved it

    def to_json(self) -> list:
        return [round(self.elasticity, 6), round(self.se, 6), self.source]


@dataclass
class ElasticityModel:
    """`fit(panel)`, then `elasticity(sku, category)`; `with_outcomes` folds realised promotions in."""

    min_discounted: int = 8  # buckets at a cut price for a SKU (or a category) to get its own slope
    season: int = 7
    categories: dict[str, Estimate] = field(default_factory=dict)  # what serves: shrunk, with outcomes
    raw_categories: dict[str, Estimate] = field(default_factory=dict)  # each category's own fit, for reports
    skus: dict[str, Estimate] = field(default_factory=dict)
    overall: Estimate | None = None
    facts: dict = field(default_factory=dict)

    def fit(self, panel: PricePanel) -> "ElasticityModel":
        discounted = panel.price_ratio < DISCOUNTED
        self.facts = {"rows": int(len(panel.units)), "discounted_rows": int(discounted.sum()),
                      "skus": int(len(set(panel.sku.tolist()))) if len(panel.sku) else 0,
                      "discounted_rows_by_category": {str(c): int(discounted[panel.category == c].sum())
                                                      for c in sorted(set(panel.category.tolist()))}}
        if discounted.sum() >= self.min_discounted:
            beta, se, _ = _poisson_slopes(panel, np.zeros(len(panel.units), dtype=int), self.season)
            self.overall = Estimate(float(beta[0]), float(se[0]), "overall")
        raw = {}
        for category in sorted(set(panel.category.tolist())):
            rows = panel.category == category
            if discounted[rows].sum() < self.min_discounted:
                continue
            beta, se, _ = _poisson_slopes(_subset(panel, rows), np.zeros(rows.sum(), dtype=int), self.season)
            raw[category] = Estimate(float(beta[0]), float(se[0]), "category")
        self.raw_categories = raw
        self.categories = _shrunk(raw, self.overall) if self.overall else dict(raw)
        for category, pooled in self.categories.items():
            self.skus.update(self._sku_slopes(_subset(panel, panel.category == category), pooled))
        return self

    def _sku_slopes(self, part: PricePanel, pooled: Estimate) -> dict[str, Estimate]:
        """Each SKU with enough cut-price buckets: its own slope, shrunk toward the category's."""
        discounted = part.price_ratio < DISCOUNTED
        names, group = np.unique(part.sku, return_inverse=True)
        counts = np.bincount(group, weights=discounted, minlength=len(names))
        own = counts >= self.min_discounted
        if not own.any():
            return {}
        slope_group = np.where(own[group], 1 + np.cumsum(own)[group] - 1, 0)  # 0: the pooled slope
        beta, se, _ = _poisson_slopes(part, slope_group, self.season)
        raw = {str(names[i]): Estimate(float(beta[k]), float(se[k]), "sku")
               for k, i in enumerate(np.flatnonzero(own), start=1)}
        return _shrunk(raw, pooled)

    def elasticity(self, sku: str, category: str | None) -> Estimate | None:
        return self.skus.get(sku) or self.categories.get(category or "") or self.overall

    def with_outcomes(self, outcomes: list[dict]) -> "ElasticityModel":
        """Merge realised promotions in, then shrink the categories again.

        outcomes: {"category", "discount", "targets", "target_buyers", "holdout", "holdout_buyers"} per
        finished trigger. Pooled target and holdout conversions give an implied elasticity whose
        variance comes from the binomial counts (delta method): all outcomes together move the
        overall estimate, a category's own (when both its sides have buyers) move the category's
        own fit, and the categories are shrunk toward the new overall as in `fit`.
        """
        by_category: dict[str, list[dict]] = {}
        for outcome in outcomes:
            by_category.setdefault(outcome.get("category") or "", []).append(outcome)
        evidence = dict(self.raw_categories)
        for category, group in by_category.items():
            implied = implied_elasticity(group)
            if implied is not None:
                evidence[category] = _merged(evidence.get(category), implied)
        pooled = implied_elasticity(outcomes)
        if pooled is not None:
            self.overall = _merged(self.overall, pooled)
        self.categories = _shrunk(evidence, self.overall) if self.overall else evidence
        self.facts["outcomes_used"] = len(outcomes) if pooled is not None else 0
        return self

    def to_config(self) -> dict:
        return {"min_discounted": self.min_discounted, "season": self.season, "facts": self.facts,
                "overall": self.overall.to_json() if self.overall else None,
                "categories": {c: e.to_json() for c, e in self.categories.items()},
                "raw_categories": {c: e.to_json() for c, e in self.raw_categories.items()}}

    def sku_arrays(self) -> dict[str, np.ndarray]:
        skus = sorted(self.skus)
        return {"sku_ids": np.array(skus, dtype=str) if skus else np.array([], dtype="<U1"),
                "sku_elasticity": np.array([self.skus[s].elasticity for s in skus], dtype=np.float64),
                "sku_se": np.array([self.skus[s].se for s in skus], dtype=np.float64)}

    @classmethod
    def from_stored(cls, config: dict, arrays: dict[str, np.ndarray]) -> "ElasticityModel":
        def estimate(value) -> Estimate | None:
            return None if value is None else Estimate(float(value[0]), float(value[1]), str(value[2]))

        model = cls(min_discounted=int(config["min_discounted"]), season=int(config["season"]),
                    facts=dict(config.get("facts", {})))
        model.overall = estimate(config.get("overall"))
        model.categories = {c: estimate(v) for c, v in config["categories"].items()}
        model.raw_categories = {c: estimate(v) for c, v in config.get("raw_categories", {}).items()}
        model.skus = {str(s): Estimate(float(e), float(se), "sku")
                      for s, e, se in zip(arrays["sku_ids"], arrays["sku_elasticity"], arrays["sku_se"])}
        return model


def _merged(estimate: Estimate | None, implied: tuple[float, float]) -> Estimate:
    """An estimate and an outcome-implied (value, variance), weighted by inverse variance."""
    value, variance = implied
    if estimate is None:
        return Estimate(value, math.sqrt(variance), "outcomes")
    w_model, w_outcomes = 1 / estimate.se ** 2, 1 / variance
    return Estimate((w_model * estimate.elasticity + w_outcomes * value) / (w_model + w_outcomes),
                    math.sqrt(1 / (w_model + w_outcomes)), f"{estimate.source}+outcomes")


def _shrunk(raw: dict[str, Estimate], toward: Estimate) -> dict[str, Estimate]:
    """Empirical Bayes: each estimate pulled toward `toward` by how uncertain it is against the spread
    between estimates (method of moments); with no real spread, each takes `toward` itself."""
    if not raw:
        return {}
    values = np.array([e.elasticity for e in raw.values()])
    noise = np.array([e.se ** 2 for e in raw.values()])
    between = max(0.0, float(np.var(values)) - float(np.mean(noise))) if len(raw) > 1 else 0.0
    out = {}
    for name, estimate in raw.items():
        if between <= 0:
            out[name] = Estimate(toward.elasticity, toward.se, estimate.source)
            continue
        weight = between / (between + estimate.se ** 2)
        out[name] = Estimate(weight * estimate.elasticity + (1 - weight) * toward.elasticity,
                             math.sqrt(1 / (1 / estimate.se ** 2 + 1 / between)), estimate.source)
    return out


def implied_elasticity(outcomes: list[dict]) -> tuple[float, float] | None:
    """(elasticity, variance) from pooled target and holdout conversions; None when either side has no buyer."""
    nt = sum(o["targets"] for o in outcomes)
    nh = sum(o["holdout"] for o in outcomes)
    bt = sum(o["target_buyers"] for o in outcomes)
    bh = sum(o["holdout_buyers"] for o in outcomes)
    if not (nt and nh and bt and bh):
        return None
    log_price = float(np.average([math.log(1 - o["discount"]) for o in outcomes], weights=[o["targets"] for o in outcomes]))
    if log_price >= 0:
        return None
    pt, ph = bt / nt, bh / nh
    log_ratio_variance = (1 - pt) / bt + (1 - ph) / bh
    return math.log(pt / ph) / log_price, log_ratio_variance / log_price ** 2


def _subset(panel: PricePanel, rows: np.ndarray) -> PricePanel:
    return PricePanel(*(getattr(panel, name)[rows] for name in PricePanel.__dataclass_fields__))


def _poisson_slopes(panel: PricePanel, slope_group: np.ndarray, season: int
                    ) -> tuple[np.ndarray, np.ndarray, PoissonRegressor]:
    """Slopes on log price ratio per slope group (0..G-1), with SKU intercepts, day of week and a
    drift in time; returns the slopes, their standard errors and the fitted regressor."""
    n = len(panel.units)
    x = np.log(panel.price_ratio)
    groups = int(slope_group.max()) + 1
    sku_names, sku_index = np.unique(panel.sku, return_inverse=True)
    rows = np.arange(n)
    slopes = sparse.csr_matrix((x, (rows, slope_group)), shape=(n, groups))
    phase = panel.bucket % season
    seasonal = sparse.csr_matrix((np.ones(n), (rows, phase)), shape=(n, season))[:, 1:]
    # time within each SKU's own span, centred: a common drift, so a promotion late in a rising
    # season is not read as price response
    centred = panel.bucket - (np.bincount(sku_index, weights=panel.bucket) / np.bincount(sku_index))[sku_index]
    drift = sparse.csr_matrix((centred / 100.0).reshape(-1, 1))
    shared = sparse.hstack([slopes, seasonal, drift]).tocsr()
    intercepts = sparse.csr_matrix((np.ones(n), (rows, sku_index)), shape=(n, len(sku_names)))
    design = sparse.hstack([shared, intercepts]).tocsr()
    solver = "newton-cholesky" if design.shape[1] <= 2000 else "lbfgs"
    model = PoissonRegressor(alpha=1e-8, fit_intercept=False, solver=solver, max_iter=1000, tol=1e-9)
    model.fit(design, panel.units)
    mu = model.predict(design)
    p = design.shape[1]
    dispersion = max(1.0, float(np.sum((panel.units - mu) ** 2 / mu)) / max(1, n - p))
    if groups == 1:
        covariance = np.linalg.pinv(_profile_information(shared, mu, intercepts)) * dispersion
        se = np.sqrt(np.maximum(np.diag(covariance)[:1], 0.0))
    else:
        se = np.sqrt(dispersion / np.maximum(_own_slope_information(x, mu, sku_index, slope_group, groups), 1e-12))
    return model.coef_[:groups], se, model


def _profile_information(shared: sparse.csr_matrix, mu: np.ndarray, intercepts: sparse.csr_matrix) -> np.ndarray:
    """Fisher information of the shared coefficients with the per-SKU intercepts profiled out:
    sum_i [sum_t mu x x' - (sum_t mu x)(sum_t mu x)' / sum_t mu] (the Schur complement). Sparse all the
    way to the few shared columns, so a category of many SKUs costs O(rows)."""
    weighted = shared.multiply(mu[:, None]).tocsr()
    full = (shared.T @ weighted).toarray()
    totals = (intercepts.T @ weighted).toarray()
    mass = np.asarray(intercepts.T @ mu).ravel()
    return full - (totals / np.maximum(mass, 1e-12)[:, None]).T @ totals


def _own_slope_information(x: np.ndarray, mu: np.ndarray, sku_index: np.ndarray, slope_group: np.ndarray,
                           groups: int) -> np.ndarray:
    """Per slope group, the information of its slope with each SKU's intercept profiled out (the
    covariance with the day-of-week and drift terms left aside: small, and it keeps many per-SKU
    slopes O(rows))."""
    skus = int(sku_index.max()) + 1
    a = np.bincount(sku_index, weights=mu * x * x, minlength=skus)
    b = np.bincount(sku_index, weights=mu * x, minlength=skus)
    c = np.bincount(sku_index, weights=mu, minlength=skus)
    group_of_sku = np.zeros(skus, dtype=int)
    group_of_sku[sku_index] = slope_group
    return np.bincount(group_of_sku, weights=a - b * b / np.maximum(c, 1e-12), minlength=groups)
