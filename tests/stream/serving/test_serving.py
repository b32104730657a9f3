"""Hot swap (salescast.stream.serving.registry): the worker switches to the store's current version, and refuses a bad one."""

import asyncio

import numpy as np
import pytest

from salescast.models.store import ModelStore
from salescast.stream.serving.registry import CF, LSTM, HotSwap, Refused, ServedModels, load_version
from salescast.stream.core.settings import Settings
from tests.models.test_forecast_model import CONFIG, shop


@pytest.fixture(scope="module")
def lstm():
    from salescast.models.forecast.features import make_samples, split_by_time
    from salescast.models.forecast.lstm import LSTMForecaster

    train, valid = split_by_time(make_samples(shop(), CONFIG), 20_050, CONFIG.horizon)
    model = LSTMForecaster(CONFIG, units=(8, 6), dense=8, epochs=2, batch_size=64, verbose=0).fit(train, valid)
    return {**model.config(), "bucket": "1d"}, model.weights()


def settings_for(store: ModelStore) -> Settings:
    return Settings.from_env({"SALESCAST_MODEL_STORE": str(store.root), "SALESCAST_HORIZON": str(CONFIG.horizon)})


def swap_for(store: ModelStore, version: str):
    """A worker serving `version`, and what it reports."""
    settings = settings_for(store)
    served = ServedModels({LSTM: load_version(store, LSTM, version, settings)})
    events = []
    swap = HotSwap(served, store, settings, lambda *args: events.append(("swapped", *args)),
                   lambda *args: events.append(("refused", *args)))
    return served, swap, events


def save(store: ModelStore, lstm, seconds: int, **changes) -> str:
    import datetime as dt

    config, weights = lstm
    weights = {**weights, **changes}
    now = dt.datetime(2026, 12, 1, 12, 0, seconds, tzinfo=dt.timezone.utc)
    return store.save("lstm", config, weights, {"mase": 0.9}, now=now)["version"]


def test_the_worker_switches_to_the_current_version_and_only_when_it_changed(tmp_path, lstm):
    store = ModelStore(tmp_path)
    first = save(store, lstm, 0)
    store.set_current("lstm", first)
    served, swap, events = swap_for(store, first)
    assert asyncio.run(swap.reconcile("lstm")) is False and events == []

    config, weights = lstm
    second = save(store, (config, {k: v * 1.01 for k, v in weights.items()}), 1)
    store.set_current("lstm", second)
    assert asyncio.run(swap.reconcile("lstm")) is True
    assert served[LSTM].version == second
    (kind, name, old, new, seconds), = events
    assert (kind, name, old, new) == ("swapped", "lstm", first, second) and 0 < seconds < 5
    # the new version serves: the forecasts carry it
    history = shop(1, 40)[0]
    assert served[LSTM].forecast_many([history], CONFIG.horizon)[0][2] == second
    assert asyncio.run(swap.reconcile("lstm")) is False and len(events) == 1


def assert_refused(store, swap, served, events, good: str, bad: str, expected: str) -> None:
    """The swap to `bad` (made current) is refused with `expected` in the reason; `good` keeps serving."""
    assert asyncio.run(swap.reconcile("lstm")) is False
    assert served[LSTM].version == good
    (kind, name, version, reason), = events
    assert (kind, name, version) == ("refused", "lstm", bad)
    assert expected in reason, reason
    with pytest.raises(Refused):
        load_version(store, "lstm", bad, settings_for(store))


@pytest.mark.parametrize("damage", ["file changed", "nan weights", "wrong shapes"])
def test_a_version_that_fails_a_check_is_refused_and_the_old_one_keeps_serving(tmp_path, lstm, damage):
    store = ModelStore(tmp_path)
    good = save(store, lstm, 0)
    store.set_current("lstm", good)
    served, swap, events = swap_for(store, good)
    _, weights = lstm
    if damage == "file changed":
        bad = save(store, (lstm[0], {k: v * 1.01 for k, v in weights.items()}), 1)
    elif damage == "nan weights":
        bad = save(store, lstm, 1, **{"out.bias": np.full_like(weights["out.bias"], np.nan)})
    else:
        bad = save(store, lstm, 1, **{"lstm_1.kernel": weights["lstm_1.kernel"][:, :4]})
    # CURRENT is pointed at it by hand: set_current itself refuses a version that does not load
    (tmp_path / "lstm" / "CURRENT").write_text(bad + "\n")
    if damage == "file changed":
        (tmp_path / "lstm" / bad / "weights.npz").write_bytes(b"not the weights that were digested")

    assert_refused(store, swap, served, events, good, bad, {
        "file changed": "does not match the sha256", "nan weights": "unusable forecasts",
        "wrong shapes": "does not load"}[damage])

    assert asyncio.run(swap.reconcile("lstm")) is False and len(events) == 1  # not tried again ...
    newer = save(store, (lstm[0], {k: v * 0.99 for k, v in weights.items()}), 2)
    store.set_current("lstm", newer)
    assert asyncio.run(swap.reconcile("lstm")) is True  # ... until CURRENT moves
    assert served[LSTM].version == newer


def test_the_recommender_switches_too_and_a_version_without_skus_is_refused(tmp_path):
    from salescast.training import recommender as cf_training
    from salescast.stream.serving.recommender import Recommender

    store = ModelStore(tmp_path)
    vectors = {"u1": {"t": 0, "w": {"a": 5.0, "b": 1.0}}, "u2": {"t": 0, "w": {"a": 1.0, "b": 3.0, "c": 1.0}},
               "u3": {"t": 0, "w": {"c": 2.0, "d": 1.0}}}
    versions = []
    for i, extra in enumerate(({}, {"u4": {"t": 0, "w": {"b": 1.0, "d": 2.0}}})):
        data = cf_training.matrix_from_vectors({**vectors, **extra}, {})
        model, config, metrics = cf_training.fit(data)
        versions.append(store.save("cf", config, cf_training.artifact_arrays(model, data), metrics)["version"])
    store.set_current("cf", versions[0])
    served = ServedModels({CF: load_version(store, CF, versions[0], settings_for(store))})
    events = []
    swap = HotSwap(served, store, settings_for(store), lambda *args: events.append(args))
    store.set_current("cf", versions[1])
    assert asyncio.run(swap.reconcile("cf")) is True
    assert isinstance(served[CF], Recommender) and served[CF].version == versions[1]
    assert served[CF].for_user({"w": {"a": 1.0}}, 3).items  # it scores

    bare = store.save("cf", {"params": {}}, {"item_ids": np.asarray([], dtype=str)}, {})["version"]
    with pytest.raises(Refused, match="does not load|knows no SKU"):
        load_version(store, "cf", bare, settings_for(store))


def _saved_broken(store: ModelStore, name: str, version: str, weights: bytes) -> None:
    """`weights` written as the version's weights.npz with a manifest made for it: the checksums pass."""
    import hashlib
    import json

    directory = store.root / name / version
    (directory / "weights.npz").write_bytes(weights)
    manifest = json.loads((directory / "manifest.json").read_bytes())
    manifest["files"]["weights.npz"] = hashlib.sha256(weights).hexdigest()
    manifest["sha256"] = hashlib.sha256("".join(
        f"{file} {digest}\n" for file, digest in sorted(manifest["files"].items())).encode()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["empty weights", "truncated weights", "permission denied"])
def test_a_version_that_passes_its_checksums_and_still_cannot_be_read_is_refused_not_raised(
        tmp_path, lstm, damage, monkeypatch):
    """Issue 17: an empty or truncated weights.npz (EOFError, BadZipFile) or a file the worker may not read
    (PermissionError) crashed the running worker; any failure to load is a refusal."""
    from pathlib import Path

    store = ModelStore(tmp_path)
    good = save(store, lstm, 0)
    store.set_current("lstm", good)
    served, swap, events = swap_for(store, good)
    bad = save(store, (lstm[0], {k: v * 1.01 for k, v in lstm[1].items()}), 1)
    weights = (tmp_path / "lstm" / bad / "weights.npz").read_bytes()
    if damage == "empty weights":
        _saved_broken(store, "lstm", bad, b"")
    elif damage == "truncated weights":
        _saved_broken(store, "lstm", bad, weights[: len(weights) // 2])
    else:
        read_bytes = Path.read_bytes

        def refusing(path):
            if path.parent.name == bad and path.name == "weights.npz":
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", refusing)  # the tests run as root, for whom chmod 000 reads
    (tmp_path / "lstm" / "CURRENT").write_text(bad + "\n")

    assert_refused(store, swap, served, events, good, bad, {
        "empty weights": "not a readable .npz archive", "truncated weights": "not a readable .npz archive",
        "permission denied": "check the files' owner and mode"}[damage])
