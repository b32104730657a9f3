"""The trained LSTM's forward pass in numpy: what the worker runs, with no TensorFlow import.

A Keras `predict` call costs milliseconds of framework overhead before any
arithmetic, and importing TensorFlow costs the worker seconds and hundreds of
MiB. The network is small (two LSTM layers, two dense layers), so its forward
pass is a few matrix products per time step. The arithmetic is Keras' own
(gates i, f, c, o; sigmoid and tanh), in float32 like Keras; a unit test
holds the two within 1e-5.

Large batches are cut into blocks and the blocks run on a thread per core
(numpy releases the GIL inside its loops), with OpenBLAS held to one thread
meanwhile: left alone it starts its own threads inside every product and the
two kinds of thread fight over the cores (0.24 s vs 0.10 s for 10,000 SKUs on
2 cores, bench/forecast.py).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

BLOCK_ROWS = 1024  # rows per block on a thread; 1024-5000 measured the same, 256 slower
ARTIFACT_FORMAT = 1


def quantile_head(raw: np.ndarray) -> np.ndarray:
    """Raw outputs (..., 3) -> ordered P10 <= P50 <= P90, all >= 0; (..., 4) -> those and the mean, >= 0.

    P50 is softplus(raw1); P10 and P90 sit softplus(raw0) below (floored at 0)
    and softplus(raw2) above it, so the quantiles can never cross. The mean is
    softplus(raw3), free of them: on intermittent demand it sits above the P50.
    """
    median = np.logaddexp(0.0, raw[..., 1])
    low = np.maximum(median - np.logaddexp(0.0, raw[..., 0]), 0.0)
    high = median + np.logaddexp(0.0, raw[..., 2])
    outputs = [low, median, high] + ([np.logaddexp(0.0, raw[..., 3])] if raw.shape[-1] == 4 else [])
    return np.stack(outputs, axis=-1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # one transcendental instead of exp + division; equal to 1 / (1 + exp(-x))
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.multiply(x, 0.5, out=x)
    np.add(x, 0.5, out=x)
    return x


def _sigmoid_gates_first(weights: np.ndarray) -> np.ndarray:
    """Keras orders gate columns (i, f, c, o); (i, f, o, c) puts the three sigmoid gates side by side."""
    i, f, c, o = np.split(weights, 4, axis=-1)
    return np.ascontiguousarray(np.concatenate([i, f, o, c], axis=-1))


class LSTMKernel:
    """`predict(x, future)` with the weights of a trained `salescast.models.forecast.lstm.LSTMForecaster`."""

    def __init__(self, config: dict, weights: dict[str, np.ndarray]):
        if config.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"model artifact format {config.get('format')!r} is not {ARTIFACT_FORMAT}; "
                             "retrain with this version of salescast")
        self.config = config
        self.horizon = int(config["features"]["horizon"])
        self.outputs = 4 if config.get("mean") else 3  # P10, P50, P90 and, in models since it, the mean
        self.layers = []
        for index in range(len(config["units"])):
            prefix = f"lstm_{index + 1}"
            kernel, recurrent, bias = (np.ascontiguousarray(weights[f"{prefix}.{part}"], dtype=np.float32)
                                       for part in ("kernel", "recurrent_kernel", "bias"))
            units = recurrent.shape[0]
            if kernel.shape[1] != 4 * units or recurrent.shape != (units, 4 * units) or bias.shape != (4 * units,):
                raise ValueError(f"{prefix} weights have inconsistent shapes {kernel.shape}, {recurrent.shape}, "
                                 f"{bias.shape}")
            self.layers.append(tuple(_sigmoid_gates_first(w) for w in (kernel, recurrent, bias)))
        self.dense = (np.asarray(weights["dense.kernel"], np.float32), np.asarray(weights["dense.bias"], np.float32))
        self.out = (np.asarray(weights["out.kernel"], np.float32), np.asarray(weights["out.bias"], np.float32))
        threads = max(1, min(4, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lstm-kernel") if threads > 1 else None
        self._blas = ThreadpoolController()

    def predict(self, x: np.ndarray, future: np.ndarray) -> np.ndarray:
        """(N, L, F) history and (N, H, K) known-future inputs -> (N, H, 3) scaled P10, P50, P90, and the mean
        as a fourth where the model has it."""
        x = np.asarray(x, dtype=np.float32)
        future = np.asarray(future, dtype=np.float32)
        n = len(x)
        if n <= BLOCK_ROWS or self._pool is None:
            return self._forward(x, future)
        blocks = [(x[i:i + BLOCK_ROWS], future[i:i + BLOCK_ROWS]) for i in range(0, n, BLOCK_ROWS)]
        with self._blas.limit(limits=1, user_api="blas"):
            return np.concatenate(list(self._pool.map(lambda block: self._forward(*block), blocks)))

    def _forward(self, x: np.ndarray, future: np.ndarray) -> np.ndarray:
        sequence = x
        for index, (kernel, recurrent, bias) in enumerate(self.layers):
            last = index == len(self.layers) - 1
            sequence = self._lstm(sequence, kernel, recurrent, bias, return_sequences=not last)
        n = len(x)
        joined = np.concatenate([sequence, future.reshape(n, -1)], axis=1)
        hidden = np.maximum(joined @ self.dense[0] + self.dense[1], 0.0)
        raw = (hidden @ self.out[0] + self.out[1]).reshape(n, self.horizon, self.outputs)
        return quantile_head(raw)

    @staticmethod
    def _lstm(sequence: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
              return_sequences: bool) -> np.ndarray:
        """One LSTM layer; gate columns are stored as (i, f, o, c), see `_sigmoid_gates_first`."""
        n, steps, _ = sequence.shape
        units = recurrent.shape[0]
        # the input part of every step's gates in one product, laid out step by step
        projected = np.ascontiguousarray(sequence.transpose(1, 0, 2)) @ kernel
        projected += bias
        h = np.zeros((n, units), dtype=np.float32)
        c = np.zeros((n, units), dtype=np.float32)
        outputs = np.empty((steps, n, units), dtype=np.float32) if return_sequences else None
        gates = np.empty((n, 4 * units), dtype=np.float32)
        sigmoid_part, candidate = gates[:, :3 * units], gates[:, 3 * units:]
        input_gate, forget_gate, output_gate = (gates[:, k * units:(k + 1) * units] for k in range(3))
        for t in range(steps):
            np.matmul(h, recurrent, out=gates)
            gates += projected[t]
            _sigmoid(sigmoid_part)
            np.tanh(candidate, out=candidate)
            c *= forget_gate
            candidate *= input_gate
            c += candidate
            np.tanh(c, out=h)
            h *= output_gate
            if outputs is not None:
                outputs[t] = h
        return outputs.transpose(1, 0, 2) if outputs is not None else h
