"""How big a holdout must be for a campaign's uplift to be measured: power of the two-proportion test.

A campaign here is every trigger of one reason over a week: its members are
split into targets (sent the offer) and a holdout (not), and the uplift is
the targets' conversion minus the holdout's (salescast.models.promo.attribution).
With conversions of a few percent and a holdout of 10%, a real uplift often
cannot be told from zero; these functions say how often it can (`power`) and
what holdout share it takes (`holdout_fraction_for`).

The normal approximation of the two-sided two-proportion z-test with unpooled
variances (Chow, Shao & Wang, "Sample Size Calculations in Clinical
Research", 2nd ed., section 4.2), as in any A/B-test calculator.
"""

from __future__ import annotations

from statistics import NormalDist

_NORMAL = NormalDist()
# the normal approximation needs this many expected buyers and non-buyers in each group (the usual rule of
# thumb, np >= 5 and n(1 - p) >= 5); with fewer, no power figure is given
MIN_EXPECTED = 5


def approximation_holds(p: float, n: int) -> bool:
    return n * p >= MIN_EXPECTED and n * (1 - p) >= MIN_EXPECTED


def power(p_target: float, p_holdout: float, targets: int, holdout: int, alpha: float = 0.05) -> float:
    """The chance that a two-sided test at level `alpha` finds the uplift p_target - p_holdout nonzero."""
    if targets < 1 or holdout < 1:
        return 0.0
    variance = p_target * (1 - p_target) / targets + p_holdout * (1 - p_holdout) / holdout
    if variance <= 0:
        return 1.0 if p_target != p_holdout else 0.0
    z = abs(p_target - p_holdout) / variance ** 0.5
    critical = _NORMAL.inv_cdf(1 - alpha / 2)
    return _NORMAL.cdf(z - critical) + _NORMAL.cdf(-z - critical)


def holdout_fraction_for(p_holdout: float, uplift: float, members: int, wanted: float = 0.8,
                         alpha: float = 0.05, most: float = 0.5, step: float = 0.01) -> float | None:
    """The smallest holdout share of a campaign's `members` (in `step`s, up to `most`) whose test reaches
    power `wanted` for an uplift of `uplift` on a holdout conversion of `p_holdout`; None where even `most`
    does not (the campaign is too small for that uplift: pool more weeks, or accept less power), or where
    the holdout would expect fewer than `MIN_EXPECTED` buyers."""
    if members < 2 or uplift == 0:
        return None
    p_target = min(max(p_holdout + uplift, 0.0), 1.0)
    steps = int(round(most / step))
    for k in range(1, steps + 1):
        fraction = k * step
        holdout = max(1, round(fraction * members))
        if not approximation_holds(p_holdout, holdout) or not approximation_holds(p_target, members - holdout):
            continue
        if power(p_target, p_holdout, members - holdout, holdout, alpha) >= wanted:
            return round(fraction, 6)
    return None


def campaigns_to_pool(p_holdout: float, uplift: float, members: int, fraction: float, wanted: float = 0.8,
                      alpha: float = 0.05, most: int = 52) -> int | None:
    """How many campaigns of `members` each, split at holdout share `fraction`, must be pooled to reach power
    `wanted` (up to `most`; None beyond, or where the uplift is not positive)."""
    if uplift <= 0 or not 0 < fraction < 1:
        return None
    p_target = min(p_holdout + uplift, 1.0)
    for k in range(1, most + 1):
        holdout = round(fraction * members * k)
        targets = members * k - holdout
        if approximation_holds(p_holdout, holdout) and approximation_holds(p_target, targets) and \
                power(p_target, p_holdout, targets, holdout, alpha) >= wanted:
            return k
    return None
