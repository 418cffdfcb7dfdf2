"""The gradient-boosted family as one small object a family seam calls: name, features, train, save, verified load,
batched inference.

Training is imported only inside `train` (LightGBM's training and the CNN-LSTM's recipe settings pull torch): the
serving path imports this module for `load_verified` and `predict_proba` without any training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from signals.features.context import HIGHER_TIMEFRAMES
from signals.features.tabular import serving_row, tabular_names
from signals.models.gbm.artifact import FAMILY, GbmPredictor, load_gbm, model_name, save_gbm_models
from signals.models.registry import StoredModel

if TYPE_CHECKING:
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.models.gbm.training import GbmParams, GbmTrainingResult


@dataclass(frozen=True)
class GbmFamily:
    """LightGBM on the CNN-LSTM's features (last bar and window means) plus, with `context`, the market context."""

    context: bool = True
    name: str = FAMILY

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The ordered columns of one input row (stored in each model and checked at load)."""
        return tabular_names(self.context)

    def higher_timeframes(self, timeframe: str) -> tuple[str, ...]:
        """The higher timeframes whose candles `features` and `train` read for `timeframe`."""
        return HIGHER_TIMEFRAMES.get(timeframe, ()) if self.context else ()

    def store_name(self, symbol: str, timeframe: str) -> str:
        return model_name(symbol, timeframe)

    def features(
        self,
        symbol: str,
        timeframe: str,
        universe: Mapping[str, pd.DataFrame],
        higher: Mapping[str, pd.DataFrame] | None = None,
    ) -> np.ndarray:
        """The (n_features,) row at `symbol`'s last closed candle: `universe` is every pair's closed candles of
        `timeframe`, `higher` this pair's candles of `higher_timeframes(timeframe)` (timeframe -> frame)."""
        return serving_row(symbol, timeframe, universe, higher, context=self.context)

    def train(
        self,
        candles: Mapping[str, pd.DataFrame],
        timeframe: str,
        higher: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
        config: TrainConfig | None = None,
        params: GbmParams | None = None,
    ) -> GbmTrainingResult:
        """Walk-forward, confirmation block and the served fit for one timeframe, pooled over `candles` (symbol ->
        frame); `higher`: timeframe -> symbol -> frame. Apply `models.evidence.apply_rule` over the retrain's
        `result.pair_edge / pooled_verdict / pair_confirmation` before `save`."""
        from signals.models.gbm.training import GbmParams, train_gbm

        params = (params or GbmParams()).model_copy(update={"context": self.context})
        return train_gbm(candles, timeframe, higher, config, params)

    def save(
        self, result: GbmTrainingResult, *, exchange: str, edges: Mapping[str, dict[str, Any]] | None = None
    ) -> list[StoredModel]:
        """One store entry per pair (`gbm-<base>-<quote>-<tf>`), SHA-256 of every file, signed when a key is set."""
        return save_gbm_models(result, exchange=exchange, edges=edges)

    def load_verified(self, tag: str) -> GbmPredictor:
        """A stored model whose files match their SHA-256 (and signature) and whose features are this code's."""
        return load_gbm(tag)

    def predict_proba(self, model: GbmPredictor, features_batch: np.ndarray) -> np.ndarray:
        """(n, 3) float32 calibrated probabilities, SHORT / NO_TRADE / LONG, for (n, n_features) rows."""
        return model.predict_proba(features_batch)


GBM = GbmFamily()
