"""The LSTM: its loss, the numpy kernel's parity with Keras, the model store, and serving."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from salescast.models.forecast.features import FeatureConfig, History, make_samples, split_by_time
from salescast.models.forecast.kernel import LSTMKernel, quantile_head
from salescast.models.forecast.metrics import masked_pinball_loss, pinball, scores
from salescast.models.store import ModelStore, ModelStoreError

CONFIG = FeatureConfig(input_length=8, horizon=3, season=7)


def shop(skus=12, buckets=60, seed=0) -> list[History]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(skus):
        level = np.exp(rng.normal(1.0, 1.0))
        weekly = 1 + 0.4 * np.sin(2 * np.pi * np.arange(buckets) / 7)
        units = rng.poisson(level * weekly).astype(float)
        out.append(History(20_000, units, np.zeros(buckets), np.full(buckets, -1.0)))
    return out


@pytest.fixture(scope="module")
def trained():
    from salescast.models.forecast.lstm import LSTMForecaster

    samples = make_samples(shop(), CONFIG)
    train, valid = split_by_time(samples, 20_050, CONFIG.horizon)
    model = LSTMForecaster(CONFIG, units=(8, 6), dense=8, epochs=2, batch_size=64, verbose=0).fit(train, valid)
    return model, valid


def test_pinball_loss_by_hand():
    q = np.array([[1.0, 2.0, 3.0]])
    # y = 4 lies above all three: the loss is q * (y - prediction)
    np.testing.assert_allclose(pinball(np.array([4.0]), q), [[0.1 * 3, 0.5 * 2, 0.9 * 1]])
    # y = 0 lies below all three: the loss is (1 - q) * (prediction - y)
    np.testing.assert_allclose(pinball(np.array([0.0]), q), [[0.9 * 1, 0.5 * 2, 0.1 * 3]])


def test_masked_buckets_do_not_count_in_the_loss():
    y = np.array([[1.0, 100.0]])
    q = np.ones((1, 2, 3))
    with_spike = masked_pinball_loss(y, q, np.array([[1.0, 0.0]]))
    assert with_spike[0] == pytest.approx(0.0)  # the masked 100 is ignored, the other bucket is exact
    assert masked_pinball_loss(y, q, np.zeros((1, 2)))[0] == 0.0


@pytest.mark.parametrize("outputs", [3, 4], ids=["quantiles", "with-mean"])
def test_the_keras_loss_is_the_numpy_loss(outputs):
    from salescast.models.forecast.lstm import masked_pinball

    rng = np.random.default_rng(1)
    y, q, mask = rng.poisson(2, (5, 3)).astype(np.float32), rng.gamma(2, 1, (5, 3, outputs)).astype(np.float32), \
        (rng.random((5, 3)) > 0.3).astype(np.float32)
    keras_loss = np.asarray(masked_pinball(np.stack([y, mask], -1), q))
    np.testing.assert_allclose(keras_loss, masked_pinball_loss(y, q, mask), rtol=1e-5)


def test_quantiles_never_cross_and_are_never_negative():
    raw = np.random.default_rng(2).normal(0, 5, (1000, 3))
    q = quantile_head(raw)
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all() and (q >= 0).all()
    raw = np.random.default_rng(3).normal(0, 5, (1000, 4))
    with_mean = quantile_head(raw)  # the mean is a fourth output, free of the quantiles and never negative
    np.testing.assert_array_equal(with_mean[:, :3], quantile_head(raw[:, :3]))
    assert (with_mean[:, 3] >= 0).all()


def test_the_poisson_loss_is_least_at_the_mean_not_the_median():
    """On demand that sells on a fifth of days the median is 0; the mean's loss must pull it to 0.2."""
    y = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = np.ones_like(y)
    candidates = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
    losses = [masked_pinball_loss(y, np.concatenate([np.zeros((1, 5, 3)), np.full((1, 5, 1), m)], axis=-1), mask)[0]
              for m in candidates]
    assert candidates[int(np.argmin(losses))] == 0.2


def test_a_model_learns_the_mean_of_intermittent_demand_where_its_median_is_zero():
    from salescast.models.forecast.lstm import LSTMForecaster

    rng = np.random.default_rng(3)
    rates = rng.uniform(0.1, 0.3, 40)  # sells one unit on 10-30% of days
    histories = [History(20_000, (rng.random(150) < rate).astype(float), np.zeros(150), np.full(150, -1.0))
                 for rate in rates]
    samples = make_samples(histories, CONFIG, stride=2)
    train, valid = split_by_time(samples, 20_120, CONFIG.horizon)
    model = LSTMForecaster(CONFIG, units=(8,), dense=8, epochs=25, batch_size=128, patience=5, verbose=0).fit(
        train, valid)
    out = LSTMKernel(model.config(), model.weights()).predict(valid.x, valid.future) * valid.scale[:, None, None]
    assert out.shape[-1] == 4 and np.median(out[..., 1]) < 0.05  # the P50: mostly "no sale"
    assert 0.6 * rates.mean() < out[..., 3].mean() < 1.5 * rates.mean()  # the mean: how many to stock


def test_the_numpy_kernel_equals_keras_within_1e_5(trained):
    model, valid = trained
    kernel = LSTMKernel(model.config(), model.weights())
    keras_out = model.predict(valid.x, valid.future)
    np.testing.assert_allclose(kernel.predict(valid.x, valid.future), keras_out, atol=1e-5)
    # a batch big enough to be cut into blocks on threads gives the same numbers
    big_x, big_future = np.repeat(valid.x, 40, axis=0), np.repeat(valid.future, 40, axis=0)
    np.testing.assert_allclose(kernel.predict(big_x, big_future), np.repeat(keras_out, 40, axis=0), atol=1e-5)


def test_training_lowers_the_validation_loss(trained):
    model, _ = trained
    losses = model.history["val_loss"]
    assert len(losses) == 2 and losses[-1] < losses[0]


def test_store_round_trip_checks_the_sha256(tmp_path, trained):
    model, valid = trained
    store = ModelStore(tmp_path)
    manifest = store.save("lstm", model.config(), model.weights(), {"mase": 0.7})
    assert store.current("lstm") is None
    store.set_current("lstm", manifest["version"])
    loaded = store.load("lstm")
    assert loaded.version == manifest["version"] and loaded.manifest["sha256"] == manifest["sha256"]
    assert len(manifest["sha256"]) == 64 and manifest["uri"].startswith("file://")
    np.testing.assert_array_equal(LSTMKernel(loaded.config, loaded.weights).predict(valid.x, valid.future),
                                  LSTMKernel(model.config(), model.weights()).predict(valid.x, valid.future))
    weights = tmp_path / "lstm" / manifest["version"] / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[-40] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match="does not match the sha256"):
        store.load("lstm")


def test_the_store_never_unpickles(tmp_path, trained):
    model, _ = trained
    store = ModelStore(tmp_path)
    with pytest.raises(ValueError, match="object array"):
        store.save("lstm", model.config(), {**model.weights(), "evil": np.array([{"a": 1}], dtype=object)}, {})
    manifest = store.save("lstm", model.config(), model.weights(), {})
    folder = tmp_path / "lstm" / manifest["version"]
    # an object array slipped in with a matching manifest is still refused by allow_pickle=False
    np.savez(folder / "weights.npz", evil=np.array([{"a": 1}], dtype=object))
    record = json.loads((folder / "manifest.json").read_text())
    import hashlib

    record["files"]["weights.npz"] = hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()
    from salescast.models.store import _artifact_digest

    record["sha256"] = _artifact_digest(record["files"])
    (folder / "manifest.json").write_text(json.dumps(record))
    with pytest.raises(ModelStoreError, match="allow_pickle"):  # np.load's refusal, said as the store's
        store.load("lstm", manifest["version"])


def test_a_missing_model_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelStoreError, match="salescast retrain"):
        ModelStore(tmp_path).load("lstm")


def test_scores_leave_sold_out_buckets_out():
    y = np.array([[[2.0, 0.0]]])
    q = np.array([[[[1.0, 2.0, 3.0], [0.0, 5.0, 9.0]]]])
    mask = np.array([[[1.0, 0.0]]])
    s = scores(y, q, mask, np.array([1.0]))
    assert s["mase"] == 0.0 and s["wape"] == 0.0 and s["coverage_p10_p90"] == 1.0
    assert s["mean_rmse"] == 0.0 and s["mean_bias"] == 0.0  # no mean of its own: the P50 stands for it
    with_mean = scores(y, np.concatenate([q, np.full(q.shape[:-1] + (1,), 3.0)], axis=-1), mask, np.array([1.0]))
    assert with_mean["mean_rmse"] == 1.0 and with_mean["mean_bias"] == 0.5 and with_mean["wape"] == 0.0


def test_serving_scores_ready_skus_with_the_lstm_and_new_ones_with_the_flagged_baseline(tmp_path, trained):
    from salescast.stream.core.close import BaselineForecaster
    from salescast.stream.serving.forecaster import LSTMServing

    model, _ = trained
    store = ModelStore(tmp_path)
    manifest = store.save("lstm", model.config(), model.weights(), {})
    serving = LSTMServing(store.load("lstm", manifest["version"]), BaselineForecaster(7))
    ready, new = shop(1, 30)[0], shop(1, 5)[0]
    (f_ready, name, version), (f_new, new_name, _) = serving.forecast_many([ready, new], CONFIG.horizon)
    assert (name, version) == ("lstm", manifest["version"]) and not f_ready.cold_start
    assert (f_ready.p10 <= f_ready.p50).all() and (f_ready.p50 <= f_ready.p90).all()
    assert new_name == "seasonal_naive" and f_new.cold_start


def test_the_forecast_record_carries_the_mean_from_a_model_that_has_one(tmp_path, trained):
    from salescast.models.forecast.lstm import LSTMForecaster, build_network
    from salescast.stream.core.close import BaselineForecaster, forecast_record
    from salescast.stream.core.settings import Settings
    from salescast.stream.serving.forecaster import LSTMServing

    model, _ = trained
    settings = Settings.from_env({"SALESCAST_HORIZON": "3"})
    store = ModelStore(tmp_path)
    serving = LSTMServing(store.load("lstm", store.save("lstm", model.config(), model.weights(), {})["version"]),
                          BaselineForecaster(7))
    forecast, name, version = serving.forecast_many(shop(1, 30), CONFIG.horizon)[0]
    record = forecast_record("a", 100, forecast, name, version, settings)
    assert [step["mean"] for step in record["horizon"]] == [round(float(m), 4) for m in forecast.mean]
    # a version stored before the mean: three outputs, and records as before
    before = LSTMForecaster(CONFIG, units=(8, 6), dense=8, mean=False)
    before.network = build_network(before.config())  # untrained: its shape is what is checked
    old = LSTMServing(store.load("lstm", store.save("lstm", before.config(), before.weights(), {})["version"]),
                      BaselineForecaster(7))
    assert "mean" not in before.config() and old.kernel.outputs == 3
    forecast, name, version = old.forecast_many(shop(1, 30), CONFIG.horizon)[0]
    assert forecast.mean is None and "mean" not in forecast_record("a", 100, forecast, name, version,
                                                                    settings)["horizon"][0]


def _settings(store, **env):
    from salescast.stream.core.settings import Settings

    return Settings.from_env({"SALESCAST_MODEL_STORE": str(store), "SALESCAST_HORIZON": "3", **env})


class _Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"


def test_the_worker_serves_the_current_model_and_falls_back_to_the_baseline_with_a_reason(tmp_path, trained):
    """(-p no:logging turns pytest's caplog off, so the log is captured by hand.)"""
    from salescast.stream.core.close import BaselineForecaster
    from salescast.stream.serving.forecaster import LSTMServing
    from salescast.stream.serving.registry import LSTM, load_current, log

    captured = _Captured()
    log.addHandler(captured)
    try:
        model, _ = trained
        store = ModelStore(tmp_path)
        assert isinstance(load_current(LSTM, _settings(tmp_path)), BaselineForecaster)
        assert "salescast retrain" in captured.text

        manifest = store.save("lstm", {**model.config(), "bucket": "1d"}, model.weights(), {})
        store.set_current("lstm", manifest["version"])
        serving = load_current(LSTM, _settings(tmp_path))
        assert isinstance(serving, LSTMServing) and serving.version == manifest["version"]

        assert isinstance(load_current(LSTM, _settings(tmp_path, SALESCAST_HORIZON="7")), BaselineForecaster)
        assert "SALESCAST_HORIZON is 7" in captured.text

        (tmp_path / "lstm" / manifest["version"] / "config.json").write_text("{}")
        assert isinstance(load_current(LSTM, _settings(tmp_path)), BaselineForecaster)
        assert "does not match the sha256" in captured.text
    finally:
        log.removeHandler(captured)


def test_the_worker_never_imports_tensorflow(tmp_path):
    """Serving is the numpy kernel: TensorFlow would cost the worker seconds and hundreds of MiB."""
    import subprocess
    import sys

    code = ("import sys; import salescast.stream.agents, salescast.stream.views, salescast.stream.serving.forecaster; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                               "SALESCAST_DATA_DIR": str(tmp_path), "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_a_model_trained_with_padding_serves_skus_from_min_history_buckets(tmp_path, trained):
    """min_history is in the stored config: a SKU with that many buckets gets the LSTM, a shorter one the
    flagged baseline."""
    from salescast.stream.core.close import BaselineForecaster
    from salescast.stream.serving.forecaster import LSTMServing

    model, _ = trained
    config = model.config()
    config["features"] = {**config["features"], "min_history": 5}
    store = ModelStore(tmp_path)
    manifest = store.save("lstm", config, model.weights(), {})
    serving = LSTMServing(store.load("lstm", manifest["version"]), BaselineForecaster(7))
    young, younger = shop(1, 5)[0], shop(1, 4)[0]
    (f_young, name, _), (f_younger, younger_name, _) = serving.forecast_many([young, younger], CONFIG.horizon)
    assert name == "lstm" and not f_young.cold_start and np.isfinite(f_young.p50).all()
    assert younger_name == "seasonal_naive" and f_younger.cold_start


def test_a_five_week_shop_trains_the_lstm_and_a_shorter_one_says_what_it_needs(tmp_path):
    """Issue 18.3: 14 real buckets + 3 horizons of 7 = 35 days; the held-out periods shrink to one horizon each."""
    from salescast.evaluation.forecast import shop_histories
    from salescast.stream.core.settings import Settings
    from salescast.training.retrain import TrainOptions, fit_and_backtest

    settings = Settings()
    features = FeatureConfig(28, 7, 7, min_history=14)
    options = TrainOptions(units=(8,), dense=8, epochs=2, min_history=14, verbose=0)
    logged = []
    histories = shop_histories(20, 36, 3, settings)  # the generator's last day is still open: 35 closed ones
    assert max(h.end_bucket for h in histories.values()) - min(h.first_bucket for h in histories.values()) == 35
    evaluation = fit_and_backtest(histories, features, options, log=logged.append)
    assert any("young shop" in line for line in logged)
    assert evaluation.facts["train_windows"] > 0 and evaluation.facts["tested_skus"] > 0
    assert len(evaluation.result.origins) == 1 and "lstm" in evaluation.result.table()
    assert evaluation.model.config()["features"]["min_history"] == 14
    with pytest.raises(ValueError, match="at least 35 in all"):
        fit_and_backtest(shop_histories(20, 35, 3, settings), features, options, log=logged.append)
