"""`signals bootstrap`: make a fresh, offline machine servable: demo candles, demo CNN-LSTMs, a demo PPO policy.

Idempotent (what exists is skipped unless `--force`), so `make serve` runs it every time. The models are
demo-grade on purpose: a few epochs on the most recent bars, a few thousand PPO steps; quality is not the
point, a complete, verified model store in a few minutes on two cores is. The work is
`signals.pipelines.ensure_demo_world`; this module is its options, progress bar and table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from signals.cli.app import (
    DataDirOption,
    JsonOption,
    OutputOption,
    app,
    data_dir_or_default,
    emit_table,
    fail,
    progress_bar,
    split_csv,
)
from signals.core.errors import SignalsError
from signals.core.timeframes import MODEL_TIMEFRAMES
from signals.data.synthetic import SYNTHETIC_EXCHANGE
from signals.pipelines import DEMO_DAYS, DEMO_EPOCHS, DEMO_PPO_TIMESTEPS, DEMO_SYMBOLS

DEMO_BACKFILL_DAYS = 14

logger = logging.getLogger(__name__)

SymbolsOption = Annotated[
    list[str] | None,
    typer.Option("--symbols", help=f"Comma list or repeated. Default: {','.join(DEMO_SYMBOLS)}."),
]
TimeframesOption = Annotated[
    list[str] | None,
    typer.Option("--timeframes", help=f"Comma list or repeated. Default: {','.join(MODEL_TIMEFRAMES)}."),
]


@app.command("bootstrap")
def bootstrap(
    symbols: SymbolsOption = None,
    timeframes: TimeframesOption = None,
    days: Annotated[
        int, typer.Option("--days", min=200, max=3660, help="Days of synthetic history (1d needs ~600 to train).")
    ] = DEMO_DAYS,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="CNN-LSTM epochs per model.")] = DEMO_EPOCHS,
    ppo_timesteps: Annotated[
        int, typer.Option("--ppo-timesteps", min=64, help="PPO environment steps.")
    ] = DEMO_PPO_TIMESTEPS,
    force: Annotated[bool, typer.Option("--force", help="Regenerate the candles and retrain every model.")] = False,
    backfill_days: Annotated[
        int, typer.Option("--backfill-days", min=0, help="Days of backfill that give the demo a track record.")
    ] = DEMO_BACKFILL_DAYS,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Demo data and models for an offline machine: synthetic candles (exchange id `synthetic`), one CNN-LSTM
    per (symbol, timeframe), and one PPO policy `ppo-1h` trained on the 1h candles of all the symbols.

    Skips what the stores already hold unless --force. Serve with SIGNALS_EXCHANGE=synthetic.
    """
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.pipelines import DemoWorld, ensure_demo_world

    try:
        world = DemoWorld(
            symbols=tuple(dict.fromkeys(normalize_symbol(s) for s in split_csv(symbols) or DEMO_SYMBOLS)),
            timeframes=tuple(parse_timeframe(tf) for tf in split_csv(timeframes) or MODEL_TIMEFRAMES),
            days=days,
            epochs=epochs,
            ppo_timesteps=ppo_timesteps,
        )
    except SignalsError as error:
        raise fail(error) from error
    store = CandleStore(data_dir_or_default(data_dir))
    timeframe_list = world.sorted_timeframes
    total = len(world.symbols) + len(timeframe_list) + (world.ppo_timeframe in timeframe_list)
    started = time.perf_counter()
    steps = []
    try:
        with progress_bar() as progress:
            overall = progress.add_task("bootstrap", total=total)
            for step in ensure_demo_world(store, world, force=force):
                steps.append(step)
                progress.update(overall, advance=1, description=f"{step.step} {step.item}")
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    steps.append(_backfill_demo(store.root, backfill_days, force))
    seconds = time.perf_counter() - started
    logger.info("bootstrap done in %.1f s", seconds)
    emit_table(
        [step.row() for step in steps],
        as_json=as_json,
        title=f"Bootstrap in {seconds:.0f} s: candles under {store.root / SYNTHETIC_EXCHANGE}, models in the store",
    )
    if any(step.status == "failed" for step in steps):
        raise typer.Exit(code=1)


def _backfill_demo(data_dir: Path, days: int, force: bool) -> Any:
    """The served demo models over the last `days` of demo candles, as if live (mode backfill), once."""
    import asyncio

    import pandas as pd

    from signals.core.metrics import server_metrics
    from signals.core.settings import get_settings
    from signals.ledger.store import Ledger
    from signals.ledger.writer import LedgerWriter
    from signals.pipelines import Step
    from signals.serving.engine import SignalEngine
    from signals.track_record.backfill import backfill
    from signals.track_record.versions import current_catalog

    step = Step("backfill", f"last {days} days", "kept")
    started = time.perf_counter()
    settings = get_settings().model_copy(
        update={"data_dir": data_dir, "exchange": SYNTHETIC_EXCHANGE, "universe": list(DEMO_SYMBOLS)}
    )
    ledger = Ledger.from_settings(settings)
    ledger.migrate()
    if days == 0 or (ledger.counts()["signals"] and not force):
        step.detail = "the ledger has records" if days else "--backfill-days 0"
        return step
    writer = LedgerWriter(ledger, server_metrics())
    engine = SignalEngine.offline(settings, current_catalog(settings, ledger), writer=writer)
    until = pd.Timestamp.now(tz="UTC")
    reports = asyncio.run(
        backfill(
            engine, ledger, writer, timeframes=settings.timeframes, since=until - pd.Timedelta(days=days), until=until
        )
    )
    writer.close()
    ledger.close()
    step.status = "recorded"
    step.detail = ", ".join(f"{r.timeframe}: {r.recorded} signals, {r.resolved} resolved" for r in reports)
    step.seconds = time.perf_counter() - started
    return step
