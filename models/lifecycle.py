"""When a newly trained model version may replace the live one.

Both versions are scored on the same held-out data (the newest buckets for
the forecaster, the newest interactions for the recommender); the candidate
goes live when it beats or matches the live version within a relative
margin, else it is rejected and the live version keeps serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LIVE, REJECTED = "live", "rejected"


@dataclass(frozen=True)
class ReleaseRule:
    metric: str  # the holdout metric compared, e.g. "mase" or "ndcg@10"
    higher_is_better: bool
    margin: float = 0.0  # relative: how much worse than live a candidate may score and still go live

    def verdict(self, candidate: dict, live: dict | None) -> tuple[str, str]:
        """(LIVE or REJECTED, why). Without a live version scored on the same data, the candidate goes live."""
        score = candidate.get(self.metric)
        if not _finite(score):
            return REJECTED, f"the candidate has no finite {self.metric} ({score!r})"
        if live is None or not _finite(live.get(self.metric)):
            return LIVE, "no live version scored on the same data"
        reference = live[self.metric]
        if self.higher_is_better:
            bar = reference - abs(reference) * self.margin
            passed = score >= bar
        else:
            bar = reference + abs(reference) * self.margin
            passed = score <= bar
        comparison = f"{self.metric} {score:.4f} against live {reference:.4f} (bar {bar:.4f})"
        return (LIVE, comparison) if passed else (REJECTED, comparison)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# the rules the model kinds use (salescast.stream.serving.registry.KINDS)
LOWER_MASE = ReleaseRule("mase", higher_is_better=False)  # forecasters: scaled error on the newest buckets
HIGHER_NDCG_AT_10 = ReleaseRule("ndcg@10", higher_is_better=True)  # recommenders: ranking of held-out items
