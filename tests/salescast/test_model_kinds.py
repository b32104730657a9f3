"""The training side of the model kinds: a trainer for every kind, and a new kind on the command line."""

import datetime as dt
import json
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from salescast.cli import main
from salescast.models.store import ModelStore
from salescast.sim.generator import Shop, ShopConfig
from salescast.stream.serving.registry import KINDS
from salescast.training import retrain as training
from tests.stream.serving.test_registry import CONSTANT, save_constant


def test_every_model_kind_has_a_trainer(monkeypatch):
    assert set(training.TRAINERS) == set(KINDS)
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    with pytest.raises(RuntimeError, match="TRAINERS"):
        training.check_trainers()


def train_constant(settings, inputs: training.TrainingInput, options, log) -> dict:
    """The newest complete bucket read, as a model."""
    return save_constant(ModelStore(settings.store.path), float(inputs.end_bucket))


def test_a_new_kind_is_trained_listed_and_rolled_back_by_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    monkeypatch.setitem(training.TRAINERS, CONSTANT.name, training.Trainer(
        train_constant, lambda metrics: f"serves {metrics['value']}"))
    training.check_trainers()
    monkeypatch.setenv("SALESCAST_MODEL_STORE", str(tmp_path / "models"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing answers: announcing is skipped
    trained = []
    for days in (3, 4):
        events = tmp_path / f"{days}-days.jsonl"
        events.write_bytes(b"".join(orjson.dumps({**record, "topic": topic}) + b"\n" for topic, record in
                                    Shop(ShopConfig(seed=3, skus=4, users=20, days=days)).events()))
        assert main(["retrain", "--model", CONSTANT.name, "--events", str(events)]) == 0
        trained.append(json.loads(capsys.readouterr().out))
    first, second = trained
    assert second["status"] == "live" and second["metrics"]["value"] == first["metrics"]["value"] + 1
    assert main(["models", "list"]) == 0
    listed = {line.lstrip("* ").split()[1]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert listed[first["version"]][:3] == [CONSTANT.name, first["version"], "retired"]
    assert listed[second["version"]][:4] == ["*", CONSTANT.name, second["version"], "live"]  # * marks the current
    assert listed[second["version"]][-2:] == ["serves", str(second["metrics"]["value"])]  # the kind's own summary
    assert main(["models", "rollback", CONSTANT.name]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == first["version"]


@pytest.mark.parametrize("release", ["release", "promote"])  # promote: the name before, kept for compatibility
def test_the_models_command_lists_releases_and_rolls_back(tmp_path, monkeypatch, capsys, release):
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    monkeypatch.setitem(training.TRAINERS, CONSTANT.name, training.Trainer(
        train_constant, lambda metrics: f"serves {metrics['value']}"))
    monkeypatch.setenv("SALESCAST_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing answers: announcing is skipped
    store = ModelStore(tmp_path)
    first, second = (store.save(CONSTANT.name, {}, {"value": np.array([value])}, {"value": value},
                                now=dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc))["version"]
                     for minute, value in ((1, 1.0), (2, 2.0)))  # listed oldest first
    store.set_current(CONSTANT.name, first)
    assert main(["models", release, CONSTANT.name, second]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["version"] == second and record["status"] == "live" and "files" not in record
    assert main(["models", "list", CONSTANT.name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == [CONSTANT.name, first, "retired"]
    assert lines[1].split()[:4] == ["*", CONSTANT.name, second, "live"]  # * marks the current version
    assert main(["models", "rollback", CONSTANT.name]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == first and store.current(CONSTANT.name) == first
    assert main(["models", "rollback", CONSTANT.name]) == 1
    assert f"no earlier {CONSTANT.name} version" in capsys.readouterr().err
    assert main(["models", release, CONSTANT.name, "no-such-version"]) == 1
    assert capsys.readouterr().err.startswith(
        f"salescast models {release}: no {CONSTANT.name} version no-such-version")


def test_a_version_a_worker_would_refuse_is_not_released(tmp_path, monkeypatch, capsys):
    """Issue 17: `models release` checked only the checksums, so a version every worker refuses became
    "live" in `models list`. It now runs the load and smoke test a worker runs before it serves one."""
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    monkeypatch.setenv("SALESCAST_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    store = ModelStore(tmp_path)
    good = save_constant(store, 1.0)["version"]
    store.set_current(CONSTANT.name, good)
    broken = save_constant(store, float("nan"))["version"]  # checksums fine; the smoke test refuses it
    assert main(["models", "release", CONSTANT.name, broken]) == 1
    said = capsys.readouterr()
    assert said.err.startswith(f"salescast models release: {CONSTANT.name} {broken}") and "serves nan" in said.err
    assert "Traceback" not in said.err and said.out == ""  # nothing announced
    assert store.current(CONSTANT.name) == good
    assert store.manifest(CONSTANT.name, broken)["status"] != "live"


def test_models_list_shows_what_each_worker_serves_beside_what_is_current(tmp_path, monkeypatch, capsys):
    """Issue 17.7: CURRENT says what workers should serve; their reports say what they do."""
    monkeypatch.setitem(KINDS, CONSTANT.name, CONSTANT)
    monkeypatch.setitem(training.TRAINERS, CONSTANT.name, training.Trainer(
        train_constant, lambda metrics: f"serves {metrics['value']}"))
    monkeypatch.setenv("SALESCAST_MODEL_STORE", str(tmp_path))
    store = ModelStore(tmp_path)
    old = save_constant(store, 1.0)["version"]
    new = save_constant(store, 2.0)["version"]
    store.set_current(CONSTANT.name, new)
    now = time.time() * 1000
    store.report_served(CONSTANT.name, "http://a:6066", {"worker": "http://a:6066", "version": new, "at": now,
                                                         "refused": None})
    store.report_served(CONSTANT.name, "http://b:6066", {
        "worker": "http://b:6066", "version": old, "at": now - 120_000,
        "refused": {"version": new, "reason": "weights.npz is not a readable .npz archive"}})
    store.report_served(CONSTANT.name, "http://gone:6066", {"worker": "http://gone:6066", "version": old,
                                                            "at": now - 2 * 86_400_000, "refused": None})
    assert set(store.versions(CONSTANT.name)) == {old, new}  # the reports are not taken for versions
    assert main(["models", "list", CONSTANT.name]) == 0
    served = [line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines() if "served by" in line]
    assert len(served) == 2  # the worker not heard from for a day is left out
    assert served[0].startswith(f"served by http://a:6066: {new} (current), reported 0 s ago")
    assert served[1].startswith(f"served by http://b:6066: {old} (NOT current), reported 120 s ago "
                                "(no report since: stopped?); refused " + new)


def test_the_command_line_starts_without_importing_the_served_models():
    """The registry imports every kind's serving code (seconds, scikit-learn among it): only the commands
    that need the kinds read them."""
    check = ("import sys; from salescast.cli import parser; parser().parse_args(['kafka', 'status']); "
             "assert 'salescast.stream.serving.registry' not in sys.modules")
    subprocess.run([sys.executable, "-c", check], check=True)
