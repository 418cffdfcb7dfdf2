"""Temperature scaling: one scalar T > 0 that makes softmax(logits / T) honest on a validation stretch.

Shared by the families that calibrate logits (the CNN-LSTM's network outputs, the GBM's raw scores): fitted on
validation only, never on a test fold or the confirmation block.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

TEMPERATURE_BOUNDS: Final = (0.05, 20.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The scalar T > 0 minimising the NLL of softmax(logits / T): a bounded search over log T."""
    if len(labels) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        log_p = log_softmax(logits.astype(np.float64) / np.exp(log_t), axis=1)
        return float(-log_p[np.arange(len(labels)), labels].mean())

    bounds = (float(np.log(TEMPERATURE_BOUNDS[0])), float(np.log(TEMPERATURE_BOUNDS[1])))
    result = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(result.x))
    return temperature if nll(float(result.x)) <= nll(0.0) else 1.0


def softmax_with_temperature(logits: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    t = np.asarray(temperature, dtype=np.float64)
    return np.exp(log_softmax(logits.astype(np.float64) / (t[:, None] if t.ndim else t), axis=1))
