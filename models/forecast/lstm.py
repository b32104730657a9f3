"""The global quantile LSTM in Keras: one network for every SKU, trained with the pinball loss.

Only training and evaluation import this (and TensorFlow); the worker serves
the exported weights with `salescast.models.forecast.kernel`.

Shape: the history window goes through two stacked LSTM layers; the last
hidden state, joined with the known future (the season phase of each horizon
bucket), goes through a dense layer to three outputs per horizon bucket,
which `QuantileHead` turns into ordered P10 <= P50 <= P90 in scaled units.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from salescast.models.forecast.features import FeatureConfig, Samples  # noqa: E402
from salescast.models.forecast.kernel import ARTIFACT_FORMAT  # noqa: E402
from salescast.models.forecast.metrics import MEAN_LOSS_WEIGHT, POISSON_EPSILON, QUANTILES  # noqa: E402

NAME = "lstm"


class QuantileHead(layers.Layer):
    """Keras twin of `salescast.models.forecast.kernel.quantile_head`."""

    def call(self, raw):
        median = ops.softplus(raw[..., 1])
        low = ops.relu(median - ops.softplus(raw[..., 0]))
        high = median + ops.softplus(raw[..., 2])
        outputs = [low, median, high] + ([ops.softplus(raw[..., 3])] if raw.shape[-1] == 4 else [])
        return ops.stack(outputs, axis=-1)


def masked_pinball(packed_true, predicted):
    """Keras twin of `salescast.models.forecast.metrics.masked_pinball_loss`; y_true packs (target, mask) on its
    last axis. A fourth output, the mean, adds its Poisson loss, as the numpy twin does."""
    target, mask = packed_true[..., 0], packed_true[..., 1]
    error = ops.expand_dims(target, -1) - predicted[..., :3]
    quantiles = ops.convert_to_tensor(QUANTILES, dtype=predicted.dtype)
    per_bucket = ops.mean(ops.maximum(quantiles * error, (quantiles - 1.0) * error), axis=-1)
    if predicted.shape[-1] == 4:
        mean = predicted[..., 3]
        per_bucket = per_bucket + MEAN_LOSS_WEIGHT * (mean - target * ops.log(mean + POISSON_EPSILON))
    per_bucket = per_bucket * mask
    return ops.sum(per_bucket, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)


def build_network(config: dict) -> keras.Model:
    features = config["features"]
    length, horizon = features["input_length"], features["horizon"]
    history = keras.Input((length, len(config["history_features"])), name="history")
    future = keras.Input((horizon, len(config["future_features"])), name="future")
    hidden = history
    for index, units in enumerate(config["units"]):
        last = index == len(config["units"]) - 1
        hidden = layers.LSTM(units, return_sequences=not last, name=f"lstm_{index + 1}")(hidden)
    joined = layers.Concatenate()([hidden, layers.Flatten()(future)])
    dense = layers.Dense(config["dense"], activation="relu", name="dense")(joined)
    outputs = 4 if config.get("mean") else 3
    raw = layers.Reshape((horizon, outputs))(layers.Dense(horizon * outputs, name="out")(dense))
    return keras.Model([history, future], QuantileHead()(raw), name=NAME)


class LSTMForecaster:
    """fit(train, valid) on `Samples`, then `config()` and `weights()` are the model artifact.

    With `mean` (every model trained since it) the network also forecasts each bucket's mean demand, trained
    on the Poisson loss, whose minimum is the mean: on intermittent demand the P50 is 0 on most days and
    says nothing of how much to stock, the mean does.
    """

    name = NAME

    def __init__(self, features: FeatureConfig, units: tuple[int, ...] = (32, 32), dense: int = 32,
                 epochs: int = 40, batch_size: int = 256, learning_rate: float = 3e-3, patience: int = 4,
                 max_samples: int = 120_000, seed: int = 7, verbose: int = 2, mean: bool = True):
        self.features = features
        self.mean = mean
        self.units = tuple(int(u) for u in units)
        self.dense = dense
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.patience, self.max_samples, self.seed, self.verbose = patience, max_samples, seed, verbose
        self.network: keras.Model | None = None
        self.history: dict = {}

    def config(self) -> dict:
        return {"format": ARTIFACT_FORMAT, "name": NAME,
                "features": self.features.to_config(),
                "history_features": list(self.features.history_features),
                "future_features": list(self.features.future_features),
                "units": list(self.units), "dense": self.dense, "quantiles": QUANTILES.tolist(),
                **({"mean": True} if self.mean else {})}

    def fit(self, train: Samples, valid: Samples | None = None) -> "LSTMForecaster":
        if len(train) == 0:
            raise ValueError("no training windows: every SKU needs min_history + horizon buckets of history")
        keras.utils.set_random_seed(self.seed)
        if len(train) > self.max_samples:  # a seeded subset keeps training time bounded on big shops
            chosen = np.random.default_rng(self.seed).choice(len(train), self.max_samples, replace=False)
            train = train.take(np.sort(chosen))
        self.network = build_network(self.config())
        self.network.compile(optimizer=keras.optimizers.Adam(self.learning_rate, clipnorm=1.0), loss=masked_pinball)
        has_valid = valid is not None and len(valid) > 0
        monitor = "val_loss" if has_valid else "loss"
        stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=self.patience, restore_best_weights=True)
        result = self.network.fit(
            [train.x, train.future], _packed(train), batch_size=self.batch_size, epochs=self.epochs,
            validation_data=([valid.x, valid.future], _packed(valid)) if has_valid else None,
            callbacks=[stop], shuffle=True, verbose=self.verbose)
        self.history = {key: [float(v) for v in values] for key, values in result.history.items()}
        return self

    def predict(self, x: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Scaled (N, H, 3) quantiles, and the mean as a fourth if the model has it, by Keras (the kernel gives the
        same numbers without TensorFlow)."""
        return np.asarray(self.network.predict([x, future], batch_size=4096, verbose=0))

    def weights(self) -> dict[str, np.ndarray]:
        arrays = {}
        for index in range(len(self.units)):
            kernel, recurrent, bias = self.network.get_layer(f"lstm_{index + 1}").get_weights()
            arrays.update({f"lstm_{index + 1}.kernel": kernel, f"lstm_{index + 1}.recurrent_kernel": recurrent,
                           f"lstm_{index + 1}.bias": bias})
        for name in ("dense", "out"):
            kernel, bias = self.network.get_layer(name).get_weights()
            arrays.update({f"{name}.kernel": kernel, f"{name}.bias": bias})
        return arrays

    @classmethod
    def from_artifact(cls, config: dict, weights: dict[str, np.ndarray]) -> "LSTMForecaster":
        """A Keras network with stored weights, e.g. to check the kernel against it."""
        f = config["features"]
        model = cls(FeatureConfig.from_config(f), tuple(config["units"]), config["dense"],
                    mean=bool(config.get("mean", False)))
        model.network = build_network(config)
        for index in range(len(model.units)):
            prefix = f"lstm_{index + 1}"
            model.network.get_layer(prefix).set_weights(
                [weights[f"{prefix}.kernel"], weights[f"{prefix}.recurrent_kernel"], weights[f"{prefix}.bias"]])
        for name in ("dense", "out"):
            model.network.get_layer(name).set_weights([weights[f"{name}.kernel"], weights[f"{name}.bias"]])
        return model


def _packed(samples: Samples) -> np.ndarray:
    return np.stack([samples.y, samples.mask], axis=-1).astype(np.float32)
