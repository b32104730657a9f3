"""The training side of the model kinds: a trainer for every kind, and a new kind on the command line."""

import json
import subprocess
import sys

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


def test_the_command_line_starts_without_importing_the_served_models():
    """The registry imports every kind's serving code (seconds, scikit-learn among it): only the commands
    that need the kinds read them."""
    check = ("import sys; from salescast.cli import parser; parser().parse_args(['kafka', 'status']); "
             "assert 'salescast.stream.serving.registry' not in sys.modules")
    subprocess.run([sys.executable, "-c", check], check=True)
