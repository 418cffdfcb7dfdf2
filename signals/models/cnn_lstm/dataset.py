"""The samples a CNN-LSTM learns from and is scored on, for one timeframe and any number of pairs (pooled).

A sample is (pair, bar t): the (LOOKBACK, N_FEATURES) window ending at t, and the trade-plan label of t. The
windows are not materialised (34 pairs of 15m bars would be gigabytes): each pair keeps its feature matrix and
a batch is gathered on demand. A sample is kept only when its window and its label horizon lie on one unbroken
stretch of candles (no data gap inside) and every value is finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from signals.core.symbols import normalize_symbol
from signals.core.timeframes import timeframe_seconds
from signals.features.cnn import LOOKBACK, N_FEATURES, feature_matrix
from signals.features.context import context_matrix, cross_section_of
from signals.features.labels import PlanOutcomes, persistence_calls, reversal_calls, trade_plan_outcomes
from signals.models.skill import Scored

NS: Final = 1_000_000_000
_OFFSETS: Final = np.arange(-LOOKBACK + 1, 1)


@dataclass(frozen=True)
class PairSeries:
    """One pair's candles as model inputs: features, plan outcomes, and the two trivial baselines per bar."""

    symbol: str
    timestamps_ns: np.ndarray  # (n,) int64 bar open times
    features: np.ndarray  # (n, N_FEATURES) float32, NaN in the warm-up; then the context's columns, if asked
    outcomes: PlanOutcomes
    reversal: np.ndarray  # (n,) int: opposite of the last `horizon`-bar move (LONG after a fall)
    persistence: np.ndarray  # (n,) int: the label of bar t - horizon, the newest one resolved at t


def pair_series(
    symbol: str, candles: pd.DataFrame, horizon: int, stop_atr: float, context: np.ndarray | None = None
) -> PairSeries:
    """Features, outcomes and baselines of one pair's candles (pure; the same code serves and evaluates);
    `context`: the pair's (n, N_CONTEXT) market context (`features.context.context_matrix`), appended."""
    outcomes = trade_plan_outcomes(candles, horizon, stop_atr)
    features = feature_matrix(candles) if context is None else np.hstack([feature_matrix(candles), context])
    return PairSeries(
        symbol=normalize_symbol(symbol),
        timestamps_ns=candles["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
        features=features.astype(np.float32),
        outcomes=outcomes,
        reversal=reversal_calls(candles["close"].to_numpy(dtype=np.float64), horizon),
        persistence=persistence_calls(outcomes.label, horizon),
    )


@dataclass(frozen=True)
class Samples:
    """Pooled samples over pairs: which pair, which bar, when, and the label; windows gathered on demand."""

    pairs: tuple[PairSeries, ...]
    timeframe: str
    horizon: int
    pair: np.ndarray  # (m,) index into `pairs`
    row: np.ndarray  # (m,) bar index of the window's last bar (the label bar) in its pair
    time_ns: np.ndarray  # (m,) that bar's open time
    labels: np.ndarray  # (m,) int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def symbols(self) -> list[str]:
        return [p.symbol for p in self.pairs]

    def subset(self, index: np.ndarray) -> Samples:
        return Samples(
            self.pairs,
            self.timeframe,
            self.horizon,
            self.pair[index],
            self.row[index],
            self.time_ns[index],
            self.labels[index],
        )

    def windows(self, index: np.ndarray | None = None) -> np.ndarray:
        """(k, LOOKBACK, N_FEATURES) float32 windows of the samples at `index` (all when None)."""
        index = np.arange(len(self)) if index is None else np.asarray(index)
        out = np.empty((len(index), LOOKBACK, self.pairs[0].features.shape[1]), dtype=np.float32)
        for p in np.unique(self.pair[index]):
            mine = np.flatnonzero(self.pair[index] == p)
            rows = self.row[index[mine]][:, None] + _OFFSETS[None, :]
            out[mine] = self.pairs[p].features[rows]
        return out

    def feature_rows(self) -> np.ndarray:
        """Every feature row the windows of these samples cover, once (to fit a scaler on training data only)."""
        parts = []
        for p in np.unique(self.pair):
            rows = self.row[self.pair == p]
            covered = np.unique((rows[:, None] + _OFFSETS[None, :]).ravel())
            parts.append(self.pairs[p].features[covered])
        return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)

    def scored(self, probabilities: np.ndarray, block_bars: int | None = None) -> Scored:
        """These samples as `skill.score` reads them; blocks are `block_bars` bars of calendar time (default: the
        label horizon, so that overlapping labels share a block)."""
        step_ns = timeframe_seconds(self.timeframe) * NS
        block_ns = step_ns * (block_bars or max(self.horizon, 1))
        columns = {
            "long_return": np.empty(len(self)),
            "short_return": np.empty(len(self)),
            "risk": np.empty(len(self)),
            "reversal": np.empty(len(self), dtype=int),
            "persistence": np.empty(len(self), dtype=int),
        }
        for p, series in enumerate(self.pairs):
            mine = self.pair == p
            rows = self.row[mine]
            columns["long_return"][mine] = series.outcomes.long_return[rows]
            columns["short_return"][mine] = series.outcomes.short_return[rows]
            columns["risk"][mine] = series.outcomes.risk[rows]
            columns["reversal"][mine] = series.reversal[rows]
            columns["persistence"][mine] = series.persistence[rows]
        return Scored(
            probabilities=probabilities,
            labels=self.labels,
            block=self.time_ns // block_ns,
            **columns,
        )


def build_samples(
    candles: Mapping[str, pd.DataFrame],
    timeframe: str,
    horizon: int,
    stop_atr: float,
    *,
    stride: int = 1,
    context: bool = False,
    universe: Mapping[str, pd.DataFrame] | None = None,
    higher: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
) -> Samples:
    """Every usable sample of every pair, in time order; `stride` keeps every k-th bar (training on 15m candles,
    whose neighbouring labels overlap almost entirely, loses little and gains 4x in speed at stride 4).

    With `context`, each window also carries the market context's columns (`features.registry.CONTEXT_WIDTH`
    wide), computed over `universe` (default: `candles`; the pairs a family is trained on) and `higher`
    (timeframe -> symbol -> candles); the same samples are kept (their usability reads the CNN columns only)."""
    step_ns = timeframe_seconds(timeframe) * NS
    pairs: list[PairSeries] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    universe = candles if universe is None else universe
    cross = cross_section_of(universe) if context else None
    for symbol, frame in candles.items():
        extra = None
        if context:
            mine = {tf: frames[symbol] for tf, frames in (higher or {}).items() if symbol in frames}
            extra = context_matrix(symbol, timeframe, {**universe, symbol: frame}, mine, cross_section=cross)
        series = pair_series(symbol, frame, horizon, stop_atr, extra)
        rows = usable_rows(series, step_ns, horizon)
        if stride > 1:
            rows = rows[rows % stride == 0]
        parts.append((np.full(len(rows), len(pairs)), rows, series.timestamps_ns[rows], series.outcomes.label[rows]))
        pairs.append(series)
    if parts:
        pair, row, time_ns, labels = (np.concatenate(column) for column in zip(*parts, strict=True))
    else:
        pair = row = time_ns = labels = np.empty(0, dtype=np.int64)
    order = np.lexsort((pair, time_ns))
    return Samples(
        tuple(pairs),
        timeframe,
        horizon,
        pair[order].astype(np.int64),
        row[order].astype(np.int64),
        time_ns[order].astype(np.int64),
        labels[order].astype(np.int64),
    )


def usable_rows(series: PairSeries, step_ns: int, horizon: int) -> np.ndarray:
    """Bars t whose window [t - LOOKBACK + 1, t] and label horizon [t, t + horizon] have no gap, finite features
    and a known label."""
    n = len(series.timestamps_ns)
    if n < LOOKBACK + horizon:
        return np.empty(0, dtype=np.int64)
    steady = np.zeros(n, dtype=np.int64)  # steady[i] = 1 when bar i follows bar i - 1 without a gap
    steady[1:] = np.diff(series.timestamps_ns) == step_ns
    finite = np.isfinite(series.features[:, :N_FEATURES]).all(axis=1)  # the context may be NaN (unknown)
    broken = np.concatenate([[0], np.cumsum(1 - steady[1:])])  # gaps seen up to each bar
    bad = np.concatenate([[0], np.cumsum(~finite)])  # non-finite rows before each bar
    rows = np.arange(LOOKBACK - 1, n - horizon)
    first, last = rows - LOOKBACK + 1, rows + horizon
    no_gap = broken[last] == broken[first]
    all_finite = bad[rows + 1] == bad[first]
    labelled = np.isfinite(series.outcomes.label[rows])
    return rows[no_gap & all_finite & labelled]


def fold_edges(samples: Samples, *, folds: int, test_share: float) -> list[tuple[int, int]]:
    """Walk-forward (rolling-origin) test blocks: the last `test_share` of the samples' time span cut into `folds`
    consecutive [start, end) stretches (ns), on calendar time over every pair (a pair listed later simply has no
    samples in the earlier blocks). Integer arithmetic: nanosecond times exceed float64's exact range, and a
    rounded last edge would leave the newest sample out of every block."""
    if len(samples) == 0 or folds == 0:
        return []
    start, end = int(samples.time_ns.min()), int(samples.time_ns.max()) + 1
    first = end - int((end - start) * test_share)
    edges = [first + (end - first) * k // folds for k in range(folds + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def labelled_before(samples: Samples, start_ns: int, purge_ns: int) -> np.ndarray:
    """Samples whose label horizon ends `purge_ns` before `start_ns`: what a fold testing from there may learn."""
    return np.flatnonzero(samples.time_ns + label_span_ns(samples) < start_ns - purge_ns)


def within(samples: Samples, start_ns: int, end_ns: int) -> np.ndarray:
    return np.flatnonzero((samples.time_ns >= start_ns) & (samples.time_ns < end_ns))


def label_span_ns(samples: Samples) -> int:
    return samples.horizon * timeframe_seconds(samples.timeframe) * NS


def split_validation(samples: Samples, index: np.ndarray, share: float, purge_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `share` (by time) of `index` for validation, and the rest, purged so that no training label reaches
    into the validation stretch."""
    if len(index) == 0:
        return index, index
    times = samples.time_ns[index]
    cut = int(np.quantile(times, 1.0 - share))
    validation = index[times >= cut]
    train = index[times + label_span_ns(samples) < cut - purge_ns]
    return train, validation


def pair_masks(samples: Samples, symbols: Sequence[str]) -> dict[str, np.ndarray]:
    lookup = {symbol: i for i, symbol in enumerate(samples.symbols)}
    return {symbol: samples.pair == lookup[symbol] for symbol in symbols if symbol in lookup}


def confirmation_start(evaluation: Samples, share: float) -> int | None:
    """Start (ns) of the confirmation block: the instant after which the newest `share` of the samples lie, the same
    instant for every pair; None when `share` is 0.

    A share of the samples, not of the calendar span: with pairs of uneven history (four years for a few, months for
    the rest) a calendar share puts a young pair's whole history inside the block, leaving it nothing to train or
    walk forward on. A pair with no samples after the instant simply has none to confirm with."""
    if share <= 0 or len(evaluation) == 0:
        return None
    times = np.sort(evaluation.time_ns)
    return int(times[min(int(len(times) * (1 - share)), len(times) - 1)])
