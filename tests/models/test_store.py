"""The model store: versions written whole and checked, made current, rolled back and retained."""

import datetime as dt
import json

import numpy as np
import pytest

from salescast.models.store import ModelStore, ModelStoreError


def save(store, n, name="lstm"):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=n)
    return store.save(name, {"n": n}, {"w": np.full(3, float(n))}, {"mase": 1.0 - n / 100}, status="candidate",
                      now=now)["version"]


def test_versions_are_listed_in_order_and_load_checked(tmp_path):
    store = ModelStore(tmp_path)
    versions = [save(store, n) for n in range(3)]
    assert store.versions("lstm") == versions and store.current("lstm") is None
    loaded = store.load("lstm", versions[1])
    assert loaded.config == {"n": 1} and loaded.weights["w"].tolist() == [1.0, 1.0, 1.0]
    assert store.manifest("lstm", versions[1])["status"] == "candidate"
    (tmp_path / "lstm" / versions[2] / "weights.npz").write_bytes(b"corrupt")
    with pytest.raises(ModelStoreError, match="does not match the sha256"):
        store.load("lstm", versions[2])
    with pytest.raises(ModelStoreError):
        store.set_current("lstm", versions[2])  # a damaged version never becomes current
    assert store.current("lstm") is None


def test_making_current_sets_live_and_retires_the_one_replaced(tmp_path):
    store = ModelStore(tmp_path)
    first, second = save(store, 1), save(store, 2)
    store.set_current("lstm", first)
    store.set_current("lstm", second)
    assert store.current("lstm") == second and store.history("lstm") == [first, second]
    assert store.manifest("lstm", second)["status"] == "live"
    assert store.manifest("lstm", first)["status"] == "retired"
    store.load("lstm", first)  # the status lives outside the digested files


def test_rollback_restores_the_previous_version_and_goes_further_back_when_repeated(tmp_path):
    store = ModelStore(tmp_path)
    versions = [save(store, n) for n in range(3)]
    for version in versions:
        store.set_current("lstm", version)
    assert store.rollback("lstm") == versions[1]
    assert store.current("lstm") == versions[1] and store.manifest("lstm", versions[2])["status"] == "retired"
    assert store.manifest("lstm", versions[1])["status"] == "live"
    assert store.rollback("lstm") == versions[0] and store.current("lstm") == versions[0]
    with pytest.raises(ModelStoreError, match="no earlier lstm version"):
        store.rollback("lstm")


def test_retain_keeps_the_newest_and_never_the_current_or_its_predecessor(tmp_path):
    store = ModelStore(tmp_path)
    versions = [save(store, n) for n in range(6)]
    store.set_current("lstm", versions[0])
    store.set_current("lstm", versions[1])
    deleted = store.retain("lstm", keep=2)
    assert deleted == versions[2:4]
    assert store.versions("lstm") == [versions[0], versions[1], versions[4], versions[5]]
    assert store.rollback("lstm") == versions[0]  # what a rollback needs is still there
    manifest = json.loads((tmp_path / "lstm" / versions[5] / "manifest.json").read_text())
    assert manifest["version"] == versions[5]
