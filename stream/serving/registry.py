"""Every kind of model the service serves, in one table, and switching to a new version while it runs.

A kind (`ModelKind`) says how a stored version of it is loaded and checked,
what serves without one, when a retrained candidate may replace the live
version, and how the metrics label it. The worker, `salescast replay`, the
retrainer, the command line and the metrics all read `KINDS`, so a new kind
is one entry here plus its trainer in salescast.training.retrain.TRAINERS.

The model store is the source of truth: its CURRENT pointer names the live
version of each model (`salescast retrain` and `salescast models
release|rollback` move it, then announce it on `model-versions`). A record on
`model-versions` only tells a worker to look: it then loads the store's
current version if that is not the one it serves. So a stale record (an
older live version still in the compacted topic, a rejected candidate) never
swaps a worker to the wrong version, and a worker that starts later simply
loads what is current.

Loading (reading the files, checking their sha256, building the model and
scoring a smoke input) happens off the event loop, while the agents go on
scoring with the old version; the swap itself is one assignment between
batches, so no event waits for a load and none is scored twice. A version
that fails any check is refused with the reason, the worker keeps what it
had, and that version is not tried again until CURRENT moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from salescast.models import lifecycle
from salescast.models.store import ModelStore, ModelStoreError, StoredModel
from salescast.stream.serving import forecaster as forecasting
from salescast.stream.serving import promoter as promoting
from salescast.stream.serving import recommender as recommending
from salescast.stream.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: its name in the store and on `model-versions`, and how it serves."""

    name: str  # the store's folder, the model-versions key, the `model` label of the swap metrics
    metric_label: str  # its `model` label on salescast_model_info
    load: Callable[[StoredModel, Settings], Any]  # the servable model; ValueError or KeyError when it does not fit
    smoke_test: Callable[[Any], None]  # raises ValueError when a loaded version does not compute (NaN, shapes)
    fallback: Callable[[Settings], Any]  # what serves while no usable version is current
    without_model: str  # what the fallback means, for the log
    release_rule: lifecycle.ReleaseRule | None = None  # None: a retrained version goes live as trained


LSTM, CF, PROMO = forecasting.MODEL_NAME, recommending.MODEL_NAME, promoting.MODEL_NAME

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (
    ModelKind(LSTM, "forecast", load=forecasting.forecaster_from_stored,
              smoke_test=forecasting.LSTMServing.smoke_test, fallback=forecasting.seasonal_naive,
              without_model="forecasts come from the seasonal-naive baseline",
              release_rule=lifecycle.LOWER_MASE),
    ModelKind(CF, "recommend", load=lambda stored, settings: recommending.Recommender(stored),
              smoke_test=recommending.Recommender.smoke_test, fallback=lambda settings: recommending.Recommender(),
              without_model="recommendations are empty fallbacks", release_rule=lifecycle.HIGHER_NDCG_AT_10),
    ModelKind(PROMO, "promo", load=lambda stored, settings: promoting.promo_model_from_stored(stored),
              smoke_test=promoting.PromoModel.smoke_test, fallback=lambda settings: None,
              without_model="no promotion is proposed"),
)}


class Refused(Exception):
    """A version that cannot be served; the message says why."""


def version_of(model) -> str:
    """The version a served model carries; a kind whose fallback is no model at all has none."""
    return recommending.NO_MODEL_VERSION if model is None else model.version


def load_version(store: ModelStore, name: str, version: str, settings: Settings):
    """The servable model for `version` of kind `name`, checked end to end; raises Refused."""
    kind = KINDS[name]
    try:
        model = kind.load(store.load(name, version), settings)
        kind.smoke_test(model)
        return model
    except ModelStoreError as exc:
        raise Refused(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure to load is a refusal: the worker goes on serving
        raise Refused(f"{name} {version} does not load as a {name} model ({type(exc).__name__}: {exc})") from None


def load_current(name: str, settings: Settings):
    """The store's current version of kind `name`, checked as a swap checks it; without a usable one, the
    kind's fallback, and the log says why."""
    kind = KINDS[name]
    store = ModelStore(settings.store.path)
    current = store.current(name)
    if current is None:
        log.warning("no %s model in %s yet: %s until `salescast retrain` trains one", name, settings.store.path,
                    kind.without_model)
        return kind.fallback(settings)
    try:
        model = load_version(store, name, current, settings)
    except Refused as exc:
        log.error("cannot serve the current %s model, so %s: %s", name, kind.without_model, exc)
        return kind.fallback(settings)
    log.warning("serving %s %s from %s", name, current, settings.store.path)
    return model


class ServedModels:
    """The model of each kind that the agents and views score with now, by kind name.

    Read `served[name]` once per batch or request: a swap replaces the entry between batches.
    """

    def __init__(self, models: dict[str, Any]) -> None:
        self._models = dict(models)

    @classmethod
    def current(cls, settings: Settings) -> ServedModels:
        """Every kind's current version, or its fallback."""
        return cls({name: load_current(name, settings) for name in KINDS})

    def __getitem__(self, name: str):
        return self._models[name]

    def version(self, name: str) -> str:
        return version_of(self._models[name])

    def use(self, name: str, model) -> None:
        """The swap: the next batch scores with `model`."""
        self._models[name] = model


class HotSwap:
    """Brings `served` to the store's current version of a model, when told to look."""

    def __init__(self, served: ServedModels, store: ModelStore, settings: Settings,
                 on_swapped: Callable[[str, str, str, float], None] = lambda name, old, new, seconds: None,
                 on_refused: Callable[[str, str, str], None] = lambda name, version, reason: None) -> None:
        self.served, self.store, self.settings = served, store, settings
        self.on_swapped, self.on_refused = on_swapped, on_refused
        self.refused: dict[str, str] = {}  # name -> the current version last refused
        self.reasons: dict[str, str] = {}  # name -> why it was refused
        self._lock = asyncio.Lock()

    async def reconcile(self, name: str) -> bool:
        """Load and switch to the current version of `name` if it is not the one served; True if it switched."""
        if name not in KINDS:
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
                self.reasons[name] = str(exc)
                log.error("refused %s %s, still serving %s: %s", name, current, served, exc)
                self.on_refused(name, current, str(exc))
                return False
            seconds = time.perf_counter() - started
            self.served.use(name, model)
            self.refused.pop(name, None)
            self.reasons.pop(name, None)
            log.warning("now serving %s %s (was %s; loaded and checked in %.3f s)", name, current, served, seconds)
            self.on_swapped(name, served, current, seconds)
            return True
