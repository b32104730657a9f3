"""The models this worker serves now, and the hot swap that replaces them while it runs.

The agents and the HTTP views read `served` at the moment they score, so a
version swapped in by `hot_swap` (stream.agents.housekeeping follows
model-versions) takes effect at the next batch or request.
"""

from __future__ import annotations

from salescast.models.store import ModelStore
from salescast.stream import metrics
from salescast.stream.app import settings
from salescast.stream.delivery.writes import load_value
from salescast.stream.serving.promoter import Promoter
from salescast.stream.serving.registry import CF, PROMO, HotSwap, ServedModels
from salescast.stream.tables import sku_candidates

served = ServedModels.current(settings)  # every kind's current version, or its fallback: served[name]
# the promotion step at bucket close; stream.agents.skus gives it served[PROMO] before each chunk
promoter = Promoter(served[PROMO], settings.promo, settings,
                    candidates_of=lambda sku: load_value(sku_candidates, sku.encode()),
                    model_versions=lambda: {CF: served.version(CF)})


def _swapped(name: str, old: str, new: str, seconds: float) -> None:
    metrics.MODEL_SWAPS.labels(name, "swapped").inc()
    metrics.MODEL_LOAD_SECONDS.labels(name).observe(seconds)
    metrics.set_live_version(name, new, old)


hot_swap = HotSwap(served, ModelStore(settings.store.path), settings, _swapped,
                   lambda name, version, reason: metrics.MODEL_SWAPS.labels(name, "refused").inc())
