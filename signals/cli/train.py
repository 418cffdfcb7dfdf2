"""`signals train ...`: one command per model family, each training from the candle store into the model store.

`cnn-lstm` and `ppo` are built in; `signals train <name>` trains any family installed as its own package
(`signals.models.plugin`, entry-point group `signals.families`) with the project's recipe; an unknown name lists the
families this installation knows (exit code 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from signals.cli.app import (
    DataDirOption,
    ExchangeOption,
    JsonOption,
    OutputOption,
    app,
    data_dir_or_default,
    emit_table,
    exchange_or_default,
    fail,
    machine,
    progress_bar,
    split_csv,
    stderr,
    stdout,
)

if TYPE_CHECKING:
    from signals.pipelines import TrainedFamilyTimeframe, TrainedTimeframe

PLUGIN_COMMAND = "family"  # the hidden command every installed family's name resolves to


class FamilyGroup(TyperGroup):
    """`signals train <name>`: a built-in command, else an installed family, else a usage error naming the known
    families (and the installed packages skipped, with why)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:  # typer vendors click: its own types
        name = args[0] if args else None
        if name is None or name.startswith("-") or name in self.commands:
            return super().resolve_command(ctx, args)
        from signals.models.plugin import discover

        found = discover()
        if name in found.plugins:
            return name, self.commands[PLUGIN_COMMAND], [name, *args[1:]]
        known = ", ".join(["cnn-lstm", "ppo", *found.names])
        skipped = "".join(f"; skipped {s.name}: {s.reason}" for s in found.skipped)
        ctx.fail(f"unknown model family {name!r}; known families: {known}{skipped}")
        return None  # ctx.fail raised: unreachable


train_app = typer.Typer(
    cls=FamilyGroup, help="Train models from the candle store and import them into the model store."
)
app.add_typer(train_app, name="train")


@train_app.command("cnn-lstm")
def train_cnn_lstm_command(
    symbols: Annotated[
        list[str] | None, typer.Option("--symbols", help="Symbols, repeated or comma-separated. Default: the universe.")
    ] = None,
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", help="Timeframes, repeated or comma-separated. Default: all.")
    ] = None,
    per_pair: Annotated[
        bool, typer.Option("--per-pair", help="One network per pair instead of one per timeframe over all pairs.")
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs (early stopping on validation loss).")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and batch order.")] = 0,
    max_bars: Annotated[int | None, typer.Option(min=100, help="Train on only each pair's most recent bars.")] = None,
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Label horizon in bars. Default per timeframe: 15m 12, 1h 10, 4h 8, 1d 6.")
    ] = None,
    folds: Annotated[int, typer.Option(min=0, max=12, help="Walk-forward test blocks (0: none).")] = 4,
    search: Annotated[
        bool, typer.Option("--search", help="Choose network size and learning rate on the first fold's validation.")
    ] = False,
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Train the CNN-LSTMs of each timeframe: walk-forward evaluation against baselines, then the served fit,
    calibrated per pair, with an abstention threshold and an edge verdict; one store entry per pair."""
    from signals.core.errors import SignalsError
    from signals.core.settings import get_settings
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.models.device import configure_torch
    from signals.pipelines import train_cnn_lstm_models

    settings = get_settings()
    configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
    try:
        symbol_list = [normalize_symbol(s) for s in split_csv(symbols) or settings.universe]
        timeframe_list = [parse_timeframe(t) for t in split_csv(timeframes) or settings.timeframes]
        config = TrainConfig(
            epochs=epochs,
            seed=seed,
            max_bars=max_bars,
            horizon=horizon,
            folds=folds,
            search=search,
            stop_atr=settings.stop_atr,
            fee=settings.fee,
            slippage=settings.slippage,
        )
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    store, exchange_id = CandleStore(data_dir_or_default(data_dir)), exchange_or_default(exchange)
    failures: list[str] = []
    with progress_bar() as progress:
        tasks = {tf: progress.add_task(f"cnn-lstm {tf}", total=epochs) for tf in dict.fromkeys(timeframe_list)}
        current = [timeframe_list[0]]

        def on_timeframe(timeframe: str) -> None:
            current[0] = timeframe

        def on_stage(stage: str) -> None:
            progress.update(tasks[current[0]], description=f"cnn-lstm {current[0]}: {stage}", completed=0)

        def on_failure(timeframe: str, error: Exception) -> None:
            failures.append(timeframe)
            stderr.print(f"[yellow]skipped[/yellow] {timeframe}: {error}", highlight=False)

        # One call for every timeframe: the universe-wide rule needs all of the retrain's p-values before any
        # model is saved.
        try:
            trained = train_cnn_lstm_models(
                store,
                exchange_id,
                symbol_list,
                timeframe_list,
                config,
                pooled=not per_pair,
                on_epoch=lambda epoch, *_: progress.update(tasks[current[0]], completed=epoch),
                on_stage=on_stage,
                on_timeframe=on_timeframe,
                on_failure=on_failure,
            )
        except (SignalsError, ValueError) as error:
            raise fail(error) from error
        for task in tasks.values():
            progress.update(task, completed=epochs)
    report_trained(trained, "CNN-LSTM", failures, as_json=as_json, pooled_prefix="")


# `signals train ppo` options, as module-level singletons (ruff B008: no calls in argument defaults).
_PPO_SYMBOLS = typer.Option(..., "--symbols", help="Symbols, repeated or comma-separated.")
_PPO_TIMEFRAME = typer.Option("1h", "--timeframe", help="Candle timeframe, e.g. 1h.")
_PPO_TIMESTEPS = typer.Option(50_000, "--timesteps", min=1, help="PPO environment steps to train for.")
_PPO_SEED = typer.Option(0, "--seed", help="Seed of the environment, the policy and the sampling.")
_PPO_DATA_DIR = typer.Option(None, "--data-dir", help="Candle store root (default: SIGNALS_DATA_DIR, else ./data).")
_PPO_EXCHANGE = typer.Option(None, "--exchange", help="ccxt exchange id (default: SIGNALS_EXCHANGE, else binance).")
_PPO_JSON = typer.Option(False, "--json", help="Print JSON instead of a table (--output json).")


@train_app.command("ppo")
def train_ppo_command(
    symbols: list[str] = _PPO_SYMBOLS,
    timeframe: str = _PPO_TIMEFRAME,
    timesteps: int = _PPO_TIMESTEPS,
    seed: int = _PPO_SEED,
    data_dir: str | None = _PPO_DATA_DIR,
    exchange: str | None = _PPO_EXCHANGE,
    as_json: bool = _PPO_JSON,
    output: OutputOption = None,
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


@train_app.command(PLUGIN_COMMAND, hidden=True)
def train_family_command(
    family: Annotated[str, typer.Argument(help="An installed family's name (`signals models families`).")],
    symbols: Annotated[
        list[str] | None, typer.Option("--symbols", help="Symbols, repeated or comma-separated. Default: the universe.")
    ] = None,
    timeframes: Annotated[
        list[str] | None, typer.Option("--timeframes", help="Timeframes, repeated or comma-separated. Default: all.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed handed to the family's fit.")] = 0,
    max_bars: Annotated[int | None, typer.Option(min=100, help="Train on only each pair's most recent bars.")] = None,
    horizon: Annotated[int | None, typer.Option(min=1, help="Label horizon in bars. Default per timeframe.")] = None,
    folds: Annotated[int, typer.Option(min=0, max=12, help="Walk-forward test blocks (0: none).")] = 4,
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Train an installed model family pooled per timeframe with the project's recipe (walk-forward with purge and
    embargo, confirmation block, calibration, threshold, the universe-wide rule); one store entry per pair."""
    from signals.core.errors import SignalsError
    from signals.core.settings import get_settings
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.models.plugin import discover
    from signals.pipelines import train_family_models

    plugin = discover().plugins[family]  # FamilyGroup resolved the name
    settings = get_settings()
    try:
        symbol_list = [normalize_symbol(s) for s in split_csv(symbols) or settings.universe]
        timeframe_list = [parse_timeframe(t) for t in split_csv(timeframes) or settings.timeframes]
        config = TrainConfig(
            seed=seed,
            max_bars=max_bars,
            horizon=horizon,
            folds=folds,
            stop_atr=settings.stop_atr,
            fee=settings.fee,
            slippage=settings.slippage,
        )
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    store, exchange_id = CandleStore(data_dir_or_default(data_dir)), exchange_or_default(exchange)
    failures: list[str] = []

    def on_failure(timeframe: str, error: Exception) -> None:
        failures.append(timeframe)
        stderr.print(f"[yellow]skipped[/yellow] {timeframe}: {error}", highlight=False)

    try:
        trained = train_family_models(
            plugin, store, exchange_id, symbol_list, timeframe_list, config, on_failure=on_failure
        )
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    report_trained(trained, family, failures, as_json=as_json, pooled_prefix=f"{family} ")


def report_trained(
    trained: Sequence[TrainedTimeframe | TrainedFamilyTimeframe],
    family: str,
    failures: list[str],
    *,
    as_json: bool,
    pooled_prefix: str,
) -> None:
    """The walk-forward table of a retrain, one for every family: a row per pooled model (`<pooled_prefix>pooled
    <tf>`, when it pools more than one pair) and per stored pair-model with the universe rule's verdict, then the
    rule's text; exit code 2 when every timeframe failed (each failure was named on stderr as it happened)."""
    from signals.cli.report import score_row
    from signals.models.evidence import RULE_TEXT

    rows: list[dict[str, Any]] = []
    for item in trained:
        result = item.result
        if len(result.symbols) > 1:
            rows.append(
                {
                    "model": f"{pooled_prefix}pooled {result.timeframe}",
                    "verdict_of": "all pairs",
                    **score_row(result.walk_forward["pooled"], as_json=machine(as_json)),
                    "seconds": round(result.seconds, 1),
                    "health": "; ".join(result.health) or "ok",
                }
            )
        for stored in item.stored:
            pair = str(stored.card.symbol)
            edge = stored.card.stored_edge or {}
            rows.append(
                {
                    "model": stored.tag,
                    "verdict_of": pair,
                    **score_row(result.walk_forward["pairs"].get(pair, {}), as_json=machine(as_json)),
                    "walk_forward_edge": edge.get("walk_forward_verdict"),
                    "edge": edge.get("verdict"),
                    "rule": "passed" if edge.get("rule", {}).get("passed") else edge.get("rule", {}).get("reason"),
                }
            )
    emit_table(rows, as_json=as_json, title=f"{family} walk-forward (out-of-sample test blocks; 95 % intervals)")
    if not machine(as_json):
        stdout.print(f"{RULE_TEXT}.", highlight=False, soft_wrap=True)
    if failures and not rows:
        raise typer.Exit(code=2)
