"""`signals bootstrap`: make a fresh, offline machine servable: demo candles, demo CNN-LSTMs, a demo PPO policy.

Idempotent (what exists is skipped unless `--force`), so `make serve` runs it every time. The models are
demo-grade on purpose: a few epochs on the most recent bars, a few thousand PPO steps; quality is not the
point, a complete, verified model store in a few minutes on two cores is. The work is
`signals.pipelines.ensure_demo_world`; this module is its options, progress bar and table.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

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
from signals.core.errors import SignalsError
from signals.core.timeframes import MODEL_TIMEFRAMES
from signals.data.synthetic import SYNTHETIC_EXCHANGE
from signals.pipelines import DEMO_DAYS, DEMO_EPOCHS, DEMO_PPO_TIMESTEPS, DEMO_SYMBOLS

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
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
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
    seconds = time.perf_counter() - started
    logger.info("bootstrap done in %.1f s", seconds)
    emit_table(
        [step.row() for step in steps],
        as_json=as_json,
        title=f"Bootstrap in {seconds:.0f} s: candles under {store.root / SYNTHETIC_EXCHANGE}, models in the store",
    )
    if any(step.status == "failed" for step in steps):
        raise typer.Exit(code=1)
