"""The registry of model kinds (salescast.stream.serving.registry): what serves without a model, and a new
kind that is one entry."""

import asyncio
import math
from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import REGISTRY

from salescast.models.store import ModelStore
from salescast.stream import metrics
from salescast.stream.core.close import BaselineForecaster
from salescast.stream.core.settings import Settings
from salescast.stream.serving.recommender import NO_MODEL_VERSION, Recommender
from salescast.stream.serving.registry import (CF, KINDS, LSTM, PROMO, HotSwap, ModelKind, Refused, ServedModels,
                                               load_current, load_version)


@dataclass
class Constant:
    """A model that serves one number."""

    version: str
    value: float

    def smoke_test(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"{self.version} serves {self.value}")


# a fourth kind, as a test registers it
CONSTANT = ModelKind("constant", "constant-label",
                     load=lambda stored, settings: Constant(stored.version, float(stored.weights["value"][0])),
                     smoke_test=Constant.smoke_test, fallback=lambda settings: None,
                     without_model="nothing is served")


def settings_for(root) -> Settings:
    return Settings.from_env({"SALESCAST_MODEL_STORE": str(root)})


def save_constant(store: ModelStore, value: float) -> dict:
    return store.save(CONSTANT.name, {}, {"value": np.array([value])}, {"value": value})


def test_every_kind_serves_its_fallback_from_an_empty_store(tmp_path):
    settings = settings_for(tmp_path)
    served = ServedModels.current(settings)
    assert isinstance(served[LSTM], BaselineForecaster)
    assert isinstance(served[CF], Recommender) and served[CF].model is None
    assert served[PROMO] is None
    for name, kind in KINDS.items():
        assert served.version(name) == ServedModels({name: kind.fallback(settings)}).version(name)
    assert served.version(CF) == served.version(PROMO) == NO_MODEL_VERSION
    assert {kind.metric_label for kind in KINDS.values()} == {"forecast", "recommend", "promo"}  # the contract's


def test_a_kind_registered_as_one_entry_is_served_swapped_and_labelled(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    store, settings = ModelStore(tmp_path), settings_for(tmp_path)
    served = ServedModels.current(settings)
    assert served[CONSTANT.name] is None and served.version(CONSTANT.name) == NO_MODEL_VERSION

    first = save_constant(store, 2.0)["version"]
    store.set_current(CONSTANT.name, first)
    swapped = []
    swap = HotSwap(served, store, settings, lambda *args: swapped.append(args))
    assert asyncio.run(swap.reconcile(CONSTANT.name)) is True
    assert served[CONSTANT.name] == Constant(first, 2.0) and swapped[0][:3] == (CONSTANT.name, NO_MODEL_VERSION, first)
    assert load_current(CONSTANT.name, settings) == Constant(first, 2.0)

    metrics.set_live_version(CONSTANT.name, first)
    assert REGISTRY.get_sample_value("salescast_model_info", {"model": "constant-label", "version": first}) == 1

    broken = save_constant(store, math.nan)["version"]  # the smoke test refuses it
    with pytest.raises(Refused, match="serves nan"):
        load_version(store, CONSTANT.name, broken, settings)
    (tmp_path / CONSTANT.name / "CURRENT").write_text(broken + "\n")
    assert load_current(CONSTANT.name, settings) is None  # the fallback
    assert asyncio.run(swap.reconcile(CONSTANT.name)) is False and served.version(CONSTANT.name) == first


def test_an_unregistered_name_on_model_versions_is_ignored(tmp_path):
    served = ServedModels({})
    assert asyncio.run(HotSwap(served, ModelStore(tmp_path), settings_for(tmp_path)).reconcile("nobody")) is False
