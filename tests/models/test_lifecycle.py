"""The rule that lets a candidate model version replace the live one."""

import math

from salescast.models.lifecycle import HIGHER_NDCG_AT_10, LIVE, LOWER_MASE, REJECTED, ReleaseRule


def test_a_candidate_goes_live_when_it_beats_or_matches_live_within_the_margin():
    mase = ReleaseRule("mase", higher_is_better=False, margin=0.02)
    assert mase.verdict({"mase": 0.90}, {"mase": 0.95})[0] == LIVE
    assert mase.verdict({"mase": 0.95}, {"mase": 0.95})[0] == LIVE  # matching is enough
    assert mase.verdict({"mase": 0.969}, {"mase": 0.95})[0] == LIVE  # within 2% worse
    verdict, why = mase.verdict({"mase": 0.98}, {"mase": 0.95})
    assert verdict == REJECTED and "0.9800" in why and "0.9500" in why
    ndcg = ReleaseRule("ndcg@10", higher_is_better=True, margin=0.0)
    assert ndcg.verdict({"ndcg@10": 0.19}, {"ndcg@10": 0.18})[0] == LIVE
    assert ndcg.verdict({"ndcg@10": 0.17}, {"ndcg@10": 0.18})[0] == REJECTED


def test_without_a_comparable_live_version_the_candidate_goes_live_unless_it_is_broken():
    rule = LOWER_MASE
    assert rule.verdict({"mase": 0.9}, None)[0] == LIVE
    assert rule.verdict({"mase": 0.9}, {"wape": 0.3})[0] == LIVE
    assert rule.verdict({"mase": math.nan}, {"mase": 0.9})[0] == REJECTED
    assert rule.verdict({}, {"mase": 0.9})[0] == REJECTED
    assert HIGHER_NDCG_AT_10.higher_is_better and not LOWER_MASE.higher_is_better


def test_a_retrained_version_is_announced_as_candidate_then_made_live_or_rejected(tmp_path, monkeypatch):
    import numpy as np

    from salescast.models.store import ModelStore
    from salescast.training import retrain as training
    from salescast.stream.core.settings import Settings

    settings = Settings.from_env({"SALESCAST_MODEL_STORE": str(tmp_path), "SALESCAST_MODEL_MARGIN": "0.02"})
    announced = []
    monkeypatch.setattr(training, "publish_model_version", lambda settings, record: announced.append(
        (record["version"], record["status"])))
    store = ModelStore(tmp_path)

    def trained(mase, live):
        metrics = {"mase": mase}
        training.judge("lstm", metrics, live, None if live is None else {"mase": 0.80}, settings.store.margin)
        return store.save("lstm", {"mase": mase}, {"w": np.arange(3.0) * mase}, metrics)

    first = trained(0.80, None)
    assert training.publish(settings, first, lambda m: None)["status"] == LIVE
    assert announced == [(first["version"], "candidate"), (first["version"], "live")]
    assert store.current("lstm") == first["version"]

    worse = trained(0.90, first["version"])
    record = training.publish(settings, worse, lambda m: None)
    assert record["status"] == REJECTED and store.current("lstm") == first["version"]
    assert record["metrics"]["vs_live"] == {"version": first["version"], "mase": 0.80, "verdict": REJECTED,
                                            "why": "mase 0.9000 against live 0.8000 (bar 0.8160)"}
    assert announced[-2:] == [(worse["version"], "candidate"), (worse["version"], "rejected")]

    better = trained(0.81, first["version"])  # within the 2% margin
    assert training.publish(settings, better, lambda m: None)["status"] == LIVE
    assert store.current("lstm") == better["version"]
    assert store.manifest("lstm", first["version"])["status"] == "retired"


def test_the_retrainer_exports_duration_data_size_and_both_scores():
    from prometheus_client import REGISTRY

    from salescast.training import metrics as retrain_metrics

    record = {"name": "lstm", "status": "rejected", "metrics": {
        "mase": 0.91, "retrain_seconds": 42.5, "skus": 1000, "train_windows": 54000,
        "vs_live": {"version": "v1", "mase": 0.85, "verdict": "rejected", "why": "..."}}}
    before = REGISTRY.get_sample_value("salescast_retrain_runs_total", {"model": "lstm", "status": "rejected"}) or 0
    retrain_metrics.observe([record])
    sample = REGISTRY.get_sample_value
    assert sample("salescast_retrain_seconds", {"model": "lstm"}) == 42.5
    assert sample("salescast_retrain_data", {"model": "lstm", "kind": "skus"}) == 1000
    assert sample("salescast_retrain_holdout_score", {"model": "lstm", "role": "candidate", "metric": "mase"}) == 0.91
    assert sample("salescast_retrain_holdout_score", {"model": "lstm", "role": "live", "metric": "mase"}) == 0.85
    assert sample("salescast_retrain_runs_total", {"model": "lstm", "status": "rejected"}) == before + 1


def test_a_model_without_enough_data_does_not_keep_the_others_from_their_new_versions(tmp_path, monkeypatch):
    import orjson
    import pytest

    from salescast.training import retrain as training
    from salescast.sim.generator import Shop, ShopConfig
    from salescast.stream.core.settings import Settings

    events = tmp_path / "ten-days.jsonl"
    events.write_bytes(b"".join(orjson.dumps({**record, "topic": topic}) + b"\n" for topic, record in
                                Shop(ShopConfig(seed=3, skus=8, users=200, days=10)).events()))
    monkeypatch.setattr(training, "publish_model_version", lambda settings, record: None)
    settings = Settings.from_env({"SALESCAST_MODEL_STORE": str(tmp_path / "models")})
    with pytest.raises(training.RetrainFailed, match="lstm: too little history") as failed:
        training.retrain(settings, str(events), training.TrainOptions(verbose=0), ("lstm", "cf"), log=lambda m: None)
    assert [(r["name"], r["status"]) for r in failed.value.records] == [("cf", LIVE)]
