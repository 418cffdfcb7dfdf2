"""`signals bootstrap`: make a fresh, offline machine servable: demo candles, demo CNN-LSTMs, a demo PPO policy.

Idempotent (what exists is skipped unless `--force`), so `make serve` runs it every time. The models are
demo-grade on purpose: a few epochs on the most recent bars, a few thousand PPO steps; quality is not the
point, a complete, verified model store in a few minutes on two cores is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from signals.cli.app import (
    DataDirOption,
    JsonOption,
    app,
    data_dir_or_default,
    emit_table,
    fail,
    progress_bar,
    split_csv,
)
from signals.cli.demo import DEFAULT_SEED, SYNTHETIC_EXCHANGE
from signals.core.errors import SignalsError

logger = logging.getLogger(__name__)

BOOTSTRAP_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
BOOTSTRAP_TIMEFRAMES = ("15m", "1h", "4h", "1d")
PPO_TIMEFRAME = "1h"
# 730 daily bars: ~630 labelled 1d windows, enough for a purged train / validation / test split (each
# boundary drops lookback + horizon = 64 samples) and far more than a serving window needs (93 bars).
DEFAULT_DAYS = 730
DEFAULT_EPOCHS = 3
DEFAULT_PPO_TIMESTEPS = 2048
# Demo training reads only the most recent bars of each series: minutes, not hours, on two cores.
CNN_MAX_BARS = 3000
PPO_MAX_BARS = 2000


@dataclass
class Step:
    """One row of the final table."""

    step: str
    item: str
    status: str
    detail: str
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {**self.__dict__, "seconds": round(self.seconds, 1)}


@contextmanager
def _timed(step: Step) -> Iterator[Step]:
    started = time.perf_counter()
    try:
        yield step
    finally:
        step.seconds = time.perf_counter() - started


def _ensure_candles(store: Any, symbols: list[str], timeframes: list[str], days: int, force: bool) -> Iterator[Step]:
    """Generate each symbol once (all timeframes resampled from one 15m series) unless every file is there."""
    from signals.data.synthetic import synthetic_universe

    for symbol in symbols:
        step = Step("candles", symbol, "kept", "")
        with _timed(step):
            if not force and all(store.exists(SYNTHETIC_EXCHANGE, symbol, tf) for tf in timeframes):
                step.detail = "all timeframes already stored"
            else:
                frames = synthetic_universe([symbol], timeframes, days, DEFAULT_SEED)
                for (name, tf), candles in frames.items():
                    store.replace(SYNTHETIC_EXCHANGE, name, tf, candles)
                step.status = "generated"
                step.detail = ", ".join(f"{tf}: {len(frames[(symbol, tf)])}" for tf in timeframes)
        yield step


def _ensure_cnn(
    store: Any, symbol: str, timeframe: str, epochs: int, force: bool, existing: dict[tuple[str, str], str]
) -> Step:
    from signals.models.cnn_lstm.artifact import save_cnn_lstm
    from signals.models.cnn_lstm.training import TrainConfig, train_cnn_lstm

    step = Step("cnn-lstm", f"{symbol} {timeframe}", "kept", existing.get((symbol, timeframe), ""))
    with _timed(step):
        if force or (symbol, timeframe) not in existing:
            candles = store.read(SYNTHETIC_EXCHANGE, symbol, timeframe)
            config = TrainConfig(epochs=epochs, patience=epochs, max_bars=CNN_MAX_BARS, seed=DEFAULT_SEED)
            try:
                result = train_cnn_lstm(candles, config)
            except (SignalsError, ValueError) as error:  # e.g. too few bars: the other models still train
                step.status, step.detail = "failed", f"{error} ({len(candles)} bars; raise --days)"
                return step
            stored = save_cnn_lstm(result, symbol=symbol, timeframe=timeframe, exchange=SYNTHETIC_EXCHANGE)
            step.status = "trained"
            step.detail = f"{stored.tag} (test acc {result.metrics['accuracy']:.3f})"
    return step


def _ensure_ppo(
    store: Any, symbols: list[str], timesteps: int, force: bool, on_progress: Callable[[int], None]
) -> Step:
    from signals.models.ppo.artifact import import_ppo, model_name
    from signals.models.ppo.training import ProgressCallback, train_ppo
    from signals.models.registry import list_models

    name = model_name(PPO_TIMEFRAME)
    tags = [str(m.tag) for m in list_models("ppo") if m.tag.name == name]
    step = Step("ppo", f"{name} ({', '.join(symbols)})", "kept", tags[0] if tags else "")
    with _timed(step):
        if force or not tags:
            histories = {s: store.read(SYNTHETIC_EXCHANGE, s, PPO_TIMEFRAME).iloc[-PPO_MAX_BARS:] for s in symbols}
            histories = {s: frame.reset_index(drop=True) for s, frame in histories.items()}
            result = train_ppo(
                histories, PPO_TIMEFRAME, timesteps, DEFAULT_SEED, callback=ProgressCallback(on_progress)
            )
            stored = import_ppo(result)
            step.status, step.detail = "trained", str(stored.tag)
    return step


SymbolsOption = Annotated[
    list[str] | None,
    typer.Option("--symbols", help=f"Comma list or repeated. Default: {','.join(BOOTSTRAP_SYMBOLS)}."),
]
TimeframesOption = Annotated[
    list[str] | None,
    typer.Option("--timeframes", help=f"Comma list or repeated. Default: {','.join(BOOTSTRAP_TIMEFRAMES)}."),
]


@app.command("bootstrap")
def bootstrap(
    symbols: SymbolsOption = None,
    timeframes: TimeframesOption = None,
    days: Annotated[
        int, typer.Option("--days", min=200, max=3660, help="Days of synthetic history (1d needs ~600 to train).")
    ] = DEFAULT_DAYS,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="CNN-LSTM epochs per model.")] = DEFAULT_EPOCHS,
    ppo_timesteps: Annotated[
        int, typer.Option("--ppo-timesteps", min=64, help="PPO environment steps.")
    ] = DEFAULT_PPO_TIMESTEPS,
    force: Annotated[bool, typer.Option("--force", help="Regenerate the candles and retrain every model.")] = False,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Demo data and models for an offline machine: synthetic candles (exchange id `synthetic`), one CNN-LSTM
    per (symbol, timeframe), and one PPO policy `ppo-1h` trained on the 1h candles of all the symbols.

    Skips what the stores already hold unless --force. Serve with SIGNALS_EXCHANGE=synthetic.
    """
    import torch

    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe, timeframe_seconds
    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.artifact import latest_cnn_lstm_tags

    torch.set_num_threads(1)  # a shared 2-core box: one thread is faster than two fighting a neighbour
    try:
        symbol_list = list(dict.fromkeys(normalize_symbol(s) for s in split_csv(symbols) or BOOTSTRAP_SYMBOLS))
        tf_list = list(dict.fromkeys(parse_timeframe(tf) for tf in split_csv(timeframes) or BOOTSTRAP_TIMEFRAMES))
        tf_list.sort(key=timeframe_seconds)
    except SignalsError as error:
        raise fail(error) from error
    store = CandleStore(data_dir_or_default(data_dir))
    with_ppo = PPO_TIMEFRAME in tf_list
    started = time.perf_counter()
    steps: list[Step] = []
    try:
        with progress_bar() as progress:
            total = len(symbol_list) * (1 + len(tf_list)) + with_ppo
            overall = progress.add_task("bootstrap", total=total)
            for step in _ensure_candles(store, symbol_list, tf_list, days, force):
                steps.append(step)
                progress.advance(overall)
            existing = latest_cnn_lstm_tags()
            for symbol in symbol_list:
                for tf in tf_list:
                    progress.update(overall, description=f"cnn-lstm {symbol} {tf}")
                    steps.append(_ensure_cnn(store, symbol, tf, epochs, force, existing))
                    progress.advance(overall)
            if with_ppo:
                task = progress.add_task(f"ppo-{PPO_TIMEFRAME}", total=ppo_timesteps)
                progress.update(overall, description=f"ppo-{PPO_TIMEFRAME}")

                def on_progress(done: int) -> None:
                    progress.update(task, completed=min(done, ppo_timesteps))

                steps.append(_ensure_ppo(store, symbol_list, ppo_timesteps, force, on_progress))
                progress.update(task, completed=ppo_timesteps)
                progress.advance(overall)
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    seconds = time.perf_counter() - started
    logger.info("bootstrap done in %.1f s", seconds)
    emit_table(
        [step.row() for step in steps],
        as_json=as_json,
        title=f"Bootstrap in {seconds:.0f} s: candles under {store.root / SYNTHETIC_EXCHANGE}, models in the store",
    )
    if any(step.status == "failed" for step in steps):
        raise typer.Exit(code=1)
