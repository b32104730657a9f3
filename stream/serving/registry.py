"""The models a worker serves, and switching to a new version while it runs (hot swap).

The model store is the source of truth: its CURRENT pointer names the live
version of each model (`salescast retrain` and `salescast models
promote|rollback` move it, then announce it on `model-versions`). A record on
`model-versions` only tells a worker to look: it then loads the store's
current version if that is not the one it serves. So a stale record (an
older live version still in the compacted topic, a rejected candidate) never
swaps a worker to the wrong version, and a worker that starts later simply
loads what is current.

Loading (reading the files, checking their sha256, building the model and
scoring a smoke input) happens off the event loop, while the agents go on
scoring with the old version; the swap itself is one attribute assignment
between batches, so no event waits for a load and none is scored twice. A
version that fails any check is refused with the reason, the worker keeps
what it had, and that version is not tried again until CURRENT moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from salescast.models.store import ModelStore, ModelStoreError
from salescast.stream.serving import forecaster as forecasting
from salescast.stream.serving import promoter as promoting
from salescast.stream.serving import recommender as recommending
from salescast.stream.core.settings import Settings

log = logging.getLogger(__name__)

LSTM, CF, PROMO = forecasting.MODEL_NAME, recommending.MODEL_NAME, promoting.MODEL_NAME
SERVED = (LSTM, CF, PROMO)


class Refused(Exception):
    """A version that cannot be served; the message says why."""


def load_version(store: ModelStore, name: str, version: str, settings: Settings):
    """The servable object for `version` of model `name`, checked end to end; raises Refused."""
    try:
        stored = store.load(name, version)
        if name == LSTM:
            return forecasting.forecaster_from_stored(stored, settings)
        if name == CF:
            return recommending.recommender_from_stored(stored)
        return promoting.promo_model_from_stored(stored)
    except ModelStoreError as exc:
        raise Refused(str(exc)) from None
    except (KeyError, ValueError, TypeError, IndexError) as exc:  # built from what the files hold
        raise Refused(f"{name} {version} does not load as a {name} model ({type(exc).__name__}: {exc})") from None


class ServedModels:
    """What the agents and views score with now: `forecaster`, `recommender`, and the promoter's model."""

    def __init__(self, forecaster, recommender, promoter) -> None:
        self.forecaster = forecaster
        self.recommender = recommender
        self.promoter = promoter

    def version(self, name: str) -> str:
        if name == LSTM:
            return self.forecaster.version
        if name == CF:
            return self.recommender.version
        model = self.promoter.model
        return recommending.NO_MODEL_VERSION if model is None else model.version

    def use(self, name: str, model) -> None:
        """The swap: the next batch scores with `model`."""
        if name == LSTM:
            self.forecaster = model
        elif name == CF:
            self.recommender = model
        else:
            self.promoter.model = model


class HotSwap:
    """Brings `served` to the store's current version of a model, when told to look."""

    def __init__(self, served: ServedModels, store: ModelStore, settings: Settings,
                 on_swapped: Callable[[str, str, str, float], None] = lambda name, old, new, seconds: None,
                 on_refused: Callable[[str, str, str], None] = lambda name, version, reason: None) -> None:
        self.served, self.store, self.settings = served, store, settings
        self.on_swapped, self.on_refused = on_swapped, on_refused
        self.refused: dict[str, str] = {}  # name -> the current version last refused
        self._lock = asyncio.Lock()

    async def reconcile(self, name: str) -> bool:
        """Load and switch to the current version of `name` if it is not the one served; True if it switched."""
        if name not in SERVED:
            return False
        async with self._lock:
            current = await asyncio.to_thread(self.store.current, name)
            served = self.served.version(name)
            if current is None or current == served or self.refused.get(name) == current:
                return False
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(load_version, self.store, name, current, self.settings)
            except Refused as exc:
                self.refused[name] = current
                log.error("refused %s %s, still serving %s: %s", name, current, served, exc)
                self.on_refused(name, current, str(exc))
                return False
            seconds = time.perf_counter() - started
            self.served.use(name, model)
            self.refused.pop(name, None)
            log.warning("now serving %s %s (was %s; loaded and checked in %.3f s)", name, current, served, seconds)
            self.on_swapped(name, served, current, seconds)
            return True
