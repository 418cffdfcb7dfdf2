"""`signals train ...`: one command per model family, each training from the candle store into the model store."""

from __future__ import annotations

from typing import Annotated

import typer

from signals.cli.app import (
    DataDirOption,
    ExchangeOption,
    JsonOption,
    app,
    data_dir_or_default,
    emit_table,
    exchange_or_default,
    fail,
    progress_bar,
    split_csv,
    stderr,
)

train_app = typer.Typer(help="Train models from the candle store and import them into the model store.")
app.add_typer(train_app, name="train")


@train_app.command("cnn-lstm")
def train_cnn_lstm_command(
    symbols: Annotated[list[str], typer.Option("--symbols", help="Symbols, repeated or comma-separated.")],
    timeframes: Annotated[list[str], typer.Option("--timeframes", help="Timeframes, repeated or comma-separated.")],
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs (early stopping on validation loss).")] = 15,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and batch order.")] = 0,
    max_bars: Annotated[int | None, typer.Option(min=100, help="Train on only the most recent bars.")] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Label horizon in bars.")] = 4,
    threshold: Annotated[float, typer.Option(min=0.0, help="LONG/SHORT move threshold in ATRs.")] = 0.5,
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train one CNN-LSTM per (symbol, timeframe), calibrate it, score it on held-out test bars, import it."""
    # Imported here: torch takes seconds to import and other commands do not need it.
    from signals.core.errors import SignalsError
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.models.device import configure_torch
    from signals.pipelines import train_cnn_lstm_model

    configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
    try:
        pairs = [(normalize_symbol(s), parse_timeframe(t)) for s in split_csv(symbols) for t in split_csv(timeframes)]
        config = TrainConfig(epochs=epochs, seed=seed, max_bars=max_bars, horizon=horizon, threshold_atr=threshold)
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    store, exchange_id = CandleStore(data_dir_or_default(data_dir)), exchange_or_default(exchange)
    rows: list[dict[str, object]] = []
    failures = 0
    with progress_bar() as progress:
        for symbol, timeframe in pairs:
            task = progress.add_task(f"cnn-lstm {symbol} {timeframe}", total=epochs)
            try:
                trained = train_cnn_lstm_model(
                    store,
                    exchange_id,
                    symbol,
                    timeframe,
                    config,
                    on_epoch=lambda epoch, *_, task=task: progress.update(task, completed=epoch),
                )
            except (SignalsError, ValueError) as error:
                failures += 1
                stderr.print(f"[yellow]skipped[/yellow] {symbol} {timeframe}: {error}", highlight=False)
                continue
            result, stored = trained.result, trained.stored
            progress.update(task, total=len(result.history), completed=len(result.history))
            m = result.metrics
            rows.append(
                {
                    "model": stored.tag,
                    "test_samples": m["samples"],
                    "accuracy": round(m["accuracy"], 4),
                    "baseline": round(m["baseline_accuracy"], 4),
                    "balanced_acc": round(m["balanced_accuracy"], 4),
                    "ece_before": round(m["ece_uncalibrated"], 4),
                    "ece_after": round(m["ece"], 4),
                    "temperature": round(result.temperature, 3),
                    "epochs": f"{len(result.history)} (best {result.best_epoch})",
                    "params": result.n_parameters,
                    "seconds": round(result.seconds, 1),
                }
            )
    emit_table(rows, as_json=as_json, title="CNN-LSTM: test split (accuracy vs train-majority baseline)")
    if failures and not rows:
        raise typer.Exit(code=2)


# `signals train ppo` options, as module-level singletons (ruff B008: no calls in argument defaults).
_PPO_SYMBOLS = typer.Option(..., "--symbols", help="Symbols, repeated or comma-separated.")
_PPO_TIMEFRAME = typer.Option("1h", "--timeframe", help="Candle timeframe, e.g. 1h.")
_PPO_TIMESTEPS = typer.Option(50_000, "--timesteps", min=1, help="PPO environment steps to train for.")
_PPO_SEED = typer.Option(0, "--seed", help="Seed of the environment, the policy and the sampling.")
_PPO_DATA_DIR = typer.Option(None, "--data-dir", help="Candle store root (default: SIGNALS_DATA_DIR, else ./data).")
_PPO_EXCHANGE = typer.Option(None, "--exchange", help="ccxt exchange id (default: SIGNALS_EXCHANGE, else binance).")
_PPO_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@train_app.command("ppo")
def train_ppo_command(
    symbols: list[str] = _PPO_SYMBOLS,
    timeframe: str = _PPO_TIMEFRAME,
    timesteps: int = _PPO_TIMESTEPS,
    seed: int = _PPO_SEED,
    data_dir: str | None = _PPO_DATA_DIR,
    exchange: str | None = _PPO_EXCHANGE,
    as_json: bool = _PPO_JSON,
) -> None:
    """Train one PPO policy on the symbols' first ~80 % of bars, evaluate on the rest, import as ppo-<tf>."""
    # Imported here: SB3 and torch take seconds to import, and other commands do not need them.
    from pathlib import Path

    from signals.cli.app import data_dir_or_default, emit_table, exchange_or_default, fail, progress_bar, split_csv
    from signals.core.errors import SignalsError
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.models.device import configure_torch
    from signals.pipelines import train_ppo_policy

    configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
    try:
        parse_timeframe(timeframe)
        store = CandleStore(data_dir_or_default(Path(data_dir) if data_dir else None))
        exchange_id = exchange_or_default(exchange)
        names = [normalize_symbol(symbol) for symbol in split_csv(symbols)]
        with progress_bar() as progress:
            task = progress.add_task(f"PPO {timeframe} {','.join(names)}", total=timesteps)
            stored, result = train_ppo_policy(
                store,
                exchange_id,
                names,
                timeframe,
                timesteps,
                seed,
                on_progress=lambda done: progress.update(task, completed=min(done, timesteps)),
            )
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    rows = [
        {key: round(value, 4) if isinstance(value, float) else value for key, value in e.row().items()}
        for e in result.evaluation
    ]
    emit_table(
        rows,
        as_json=as_json,
        title=f"{stored.tag}: held-out evaluation (fees {result.fee:.2%}, slippage {result.slippage:.2%}), "
        f"trained {result.train_seconds:.0f} s",
    )
