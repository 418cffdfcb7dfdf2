"""The CNN-LSTM direction classifier over a (LOOKBACK, N_FEATURES) window: SHORT, NO_TRADE, LONG.

Why this shape:
- Conv1d blocks first: they learn short local patterns (a few bars of returns, wicks, volume bursts) with
  shared weights along time, which is cheap in parameters (same padding keeps every bar).
- Then an average pool over `pool` bars (4 by default: 60 -> 15 steps). The LSTM is the sequential, costly
  part; pooling the conv output cut training time 1.6-1.7x at equal size, same scores (BENCHMARKS/MODELS.md
  compare both), and the conv has already summarised each bar's neighbourhood.
- An LSTM over the pooled sequence then carries slower context (trend, volatility regime) across the
  60 bars; only its last hidden state feeds the head, because the question is "what now".
- A small MLP head maps that state to 3 logits. Logits, not probabilities: temperature scaling divides
  them by a fitted T afterwards, so the network itself never applies softmax.
- Default size ~16k parameters: one network is trained per timeframe on every pair's windows (pooled), and
  the edge it can find is small; a larger network memorises sooner, and small keeps CPU serving cheap.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from signals.core.vocab import CLASS_NAMES
from signals.features.cnn import LOOKBACK, N_FEATURES

N_CLASSES: Final = len(CLASS_NAMES)
MAX_DEFAULT_PARAMETERS: Final = 300_000


class CnnLstmConfig(BaseModel):
    """Network hyper-parameters. Stored in the model metadata and used to rebuild the network on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_features: int = Field(default=N_FEATURES, ge=1)
    lookback: int = Field(default=LOOKBACK, ge=1)
    n_classes: int = Field(default=N_CLASSES, ge=2)
    conv_channels: tuple[int, ...] = Field(default=(32, 32), min_length=1)
    kernel_size: int = Field(default=5, ge=1)
    pool: int = Field(default=4, ge=1, description="Average-pool the conv output over this many bars.")
    lstm_hidden: int = Field(default=32, ge=1)
    lstm_layers: int = Field(default=1, ge=1)
    head_hidden: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)


class CnnLstm(nn.Module):
    """Conv1d blocks -> LSTM -> MLP head; input (batch, lookback, n_features), output logits (batch, n_classes)."""

    def __init__(self, config: CnnLstmConfig | None = None) -> None:
        super().__init__()
        self.config = config or CnnLstmConfig()
        cfg = self.config
        blocks: list[nn.Module] = []
        channels_in = cfg.n_features
        for channels_out in cfg.conv_channels:
            blocks += [
                nn.Conv1d(channels_in, channels_out, cfg.kernel_size, padding=cfg.kernel_size // 2),
                nn.BatchNorm1d(channels_out),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
            ]
            channels_in = channels_out
        self.conv = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(
            channels_in,
            cfg.lstm_hidden,
            num_layers=cfg.lstm_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Linear(cfg.lstm_hidden, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.n_classes),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        features = self.conv(windows.transpose(1, 2))  # (batch, channels, time)
        if self.config.pool > 1:
            features = F.avg_pool1d(features, self.config.pool)  # (batch, channels, time // pool)
        sequence, _ = self.lstm(features.transpose(1, 2))  # (batch, steps, hidden)
        return self.head(sequence[:, -1])


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
