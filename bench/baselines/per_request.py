"""The per-request way: every model loaded once at start, then candles -> features -> forward inside each request.

This is how such services are usually written, and what our batched, cached server is compared against:
no batching across requests, no signal cache, no candle cache (the Parquet file is read on every request).
It reuses the project's own pieces (`CandleStore`, `features.cnn.serving_window`, `load_cnn_lstm`), so the
comparison measures the serving architecture, not different feature code. Torch runs on one thread, as in
our runners: two threads on two shared cores is a known tail-latency trap (DESIGN.md), and the baseline
should not lose for that reason.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from signals.core.settings import Settings
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import iso_z, parse_timeframe
from signals.core.vocab import CLASS_NAMES
from signals.data.store import CandleStore
from signals.features.cnn import serving_window
from signals.models.cnn_lstm.artifact import CnnLstmPredictor, latest_cnn_lstm_tags, load_cnn_lstm
from signals.models.device import configure_torch

logger = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """No model for that (symbol, timeframe): the servers answer 404."""


class PerRequestPredictor:
    """All stored CNN-LSTMs in memory; `predict` does the whole cold path for one request."""

    def __init__(self, settings: Settings | None = None) -> None:
        configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
        settings = settings or Settings()
        self.store = CandleStore(settings.data_dir)
        self.exchange = settings.exchange
        self.models: dict[tuple[str, str], CnnLstmPredictor] = {
            key: load_cnn_lstm(tag) for key, tag in latest_cnn_lstm_tags().items()
        }
        logger.info("per-request baseline: %d models loaded", len(self.models))

    def predict(self, symbol: str, timeframe: str) -> dict[str, Any]:
        """Read candles, compute the window, scale + forward; answer the /predict fields a client needs."""
        try:
            key = (normalize_symbol(symbol), parse_timeframe(timeframe))
        except ValueError as error:
            raise UnknownModel(str(error)) from error
        predictor = self.models.get(key)
        if predictor is None:
            raise UnknownModel(f"no model for {key[0]} {key[1]}")
        candles = self.store.read(self.exchange, *key)
        probabilities = predictor.predict_proba(serving_window(candles)[np.newaxis])[0]
        best = int(probabilities.argmax())
        return {
            "symbol": key[0],
            "timeframe": key[1],
            "direction": CLASS_NAMES[best],
            "confidence": float(probabilities[best]),
            "probabilities": {name: float(p) for name, p in zip(CLASS_NAMES, probabilities, strict=True)},
            "model_version": predictor.tag,
            "candle_time": iso_z(candles["timestamp"].iloc[-1]),
            "current_price": float(candles["close"].iloc[-1]),
        }
