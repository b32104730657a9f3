"""The models this worker serves now, and the hot swap that replaces them while it runs.

The agents and the HTTP views read `served` at the moment they score, so a
version swapped in by `hot_swap` (stream.agents.housekeeping follows
model-versions) takes effect at the next batch or request.
"""

from __future__ import annotations

import logging
import time

from salescast.models.store import ModelStore
from salescast.stream import metrics
from salescast.stream.app import settings
from salescast.stream.delivery.writes import load_value
from salescast.stream.serving.promoter import Promoter
from salescast.stream.serving.registry import CF, KINDS, PROMO, HotSwap, ServedModels
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
log = logging.getLogger(__name__)
_report_failed: set[str] = set()


def served_report(name: str) -> dict:
    """What this worker serves of model kind `name`, for `salescast models list` (ModelStore.report_served)."""
    refused = hot_swap.refused.get(name)
    return {"worker": settings.service.web_url, "version": served.version(name), "at": int(time.time() * 1000),
            "refused": None if refused is None else {"version": refused, "reason": hot_swap.reasons.get(name, "")}}


def report_served() -> None:
    """Blocking file I/O (a shared store may be remote): run it in a thread. A store this worker cannot write
    to is logged once; serving goes on."""
    for name in KINDS:
        try:
            hot_swap.store.report_served(name, settings.service.web_url, served_report(name))
        except OSError as exc:
            if name not in _report_failed:
                _report_failed.add(name)
                log.warning("cannot report the %s version served to %s (%s: %s); `salescast models list` will "
                            "not show this worker", name, settings.store.path, type(exc).__name__, exc)
