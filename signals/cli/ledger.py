"""The track record from the command line: `signals backfill`, `signals scorecard`, `signals history`, and
`signals ledger migrate` (the schema migration, e.g. as a deployment's job). They read and write the ledger
database directly (`SIGNALS_DATABASE_URL`, else `<data_dir>/signals.db`); no server needs to run."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from signals.cli.app import (
    DataDirOption,
    ExchangeOption,
    JsonOption,
    OutputOption,
    app,
    emit_table,
    fail,
    machine,
    progress_bar,
    split_csv,
)
from signals.core.errors import InvalidInput, SignalsError

ledger_app = typer.Typer(help="The ledger database: its schema.")
app.add_typer(ledger_app, name="ledger")

ModeOption = Annotated[str | None, typer.Option("--mode", help="live, backfill or shadow (scorecard default: live).")]


def settings_with(data_dir: Any = None, exchange: str | None = None) -> Any:
    from signals.core.settings import get_settings

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if exchange is not None:
        overrides["exchange"] = exchange
    return get_settings().model_copy(update=overrides)


def open_ledger(settings: Any) -> Any:
    from signals.ledger.store import Ledger

    ledger = Ledger.from_settings(settings)
    try:
        ledger.migrate()
    except Exception as error:
        raise fail(InvalidInput(f"cannot open the ledger: {' '.join(str(error).split())[:300]}")) from error
    return ledger


def _when(value: str | None, what: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError as error:
        raise fail(InvalidInput(f"cannot read {what} {value[:40]!r}; expected a date such as 2024-08-01")) from error
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@ledger_app.command("migrate")
def migrate(data_dir: DataDirOption = None) -> None:
    """Create or upgrade the ledger's schema to the newest revision (safe to run while servers run)."""
    from signals.ledger.store import redact

    ledger = open_ledger(settings_with(data_dir))
    typer.echo(f"ledger {redact(ledger.url)} at revision {ledger.revision()}")


@app.command("backfill")
def backfill_command(
    since: Annotated[str, typer.Option("--since", help="First candle (UTC), e.g. 2024-08-01.")],
    until: Annotated[str | None, typer.Option("--until", help="Last candle (UTC). Default: the newest stored.")] = None,
    timeframes: Annotated[list[str] | None, typer.Option("--timeframes", help="Default: the served ones.")] = None,
    symbols: Annotated[list[str] | None, typer.Option("--symbols", help="Default: every served pair.")] = None,
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Run the served models over stored candles as if live (mode `backfill`), record and resolve them, so that a
    fresh install has a track record; then print its scorecard per timeframe."""
    from signals.core.metrics import server_metrics
    from signals.core.timeframes import parse_timeframe
    from signals.features.labels import round_trip_cost
    from signals.ledger.writer import LedgerWriter
    from signals.serving.engine import SignalEngine
    from signals.track_record.backfill import backfill
    from signals.track_record.scorecard import scorecard
    from signals.track_record.versions import current_catalog

    settings = settings_with(data_dir, exchange)
    start = _when(since, "--since")
    assert start is not None  # --since is required
    end = _when(until, "--until") or pd.Timestamp.max.tz_localize("UTC")
    try:
        tf_list = [parse_timeframe(tf) for tf in split_csv(timeframes) or settings.timeframes]
    except SignalsError as error:
        raise fail(error) from error
    ledger = open_ledger(settings)
    writer = LedgerWriter(ledger, server_metrics())
    engine = SignalEngine.offline(settings, current_catalog(settings, ledger), writer=writer)
    with progress_bar() as progress:
        tasks: dict[str, Any] = {}

        def on_progress(timeframe: str, done: int, total: int) -> None:
            if timeframe not in tasks:
                tasks[timeframe] = progress.add_task(f"backfill {timeframe}", total=total)
            progress.update(tasks[timeframe], completed=done, total=total)

        reports = asyncio.run(
            backfill(
                engine,
                ledger,
                writer,
                timeframes=tf_list,
                since=start,
                until=end,
                symbols=split_csv(symbols) or None,
                on_progress=on_progress,
            )
        )
    writer.close()
    cost = round_trip_cost(settings.fee, settings.slippage)
    rows = []
    for report in reports:
        card = scorecard(ledger.resolved(timeframe=report.timeframe, modes=["backfill"]), cost=cost, filters={})
        rows.append(
            {**report.row(), "verdict": card.get("verdict"), "accuracy": (card.get("accuracy") or {}).get("value")}
        )
    emit_table(rows, as_json=as_json, title="Backfill (mode backfill: computed over stored candles as if live)")
    if not any(report.computed for report in reports):
        raise fail(SignalsError(_nothing_computed(reports, settings.exchange)))


def _nothing_computed(reports: list[Any], exchange: str) -> str:
    """Why a backfill did nothing, in one line (it exits 2: a script must not read an empty run as success)."""
    if not any(report.pairs or report.skipped for report in reports):
        return "nothing computed: no served model on these timeframes (`signals models` lists the store)"
    if not any(report.pairs for report in reports):
        return (
            f"nothing computed: every pair was skipped on exchange {exchange} (no stored candles there?); "
            "name the exchange the candles are under with --exchange or SIGNALS_EXCHANGE (the demo's is synthetic)"
        )
    return "nothing computed: no stored candle of the served pairs lies between --since and --until"


@app.command("scorecard")
def scorecard_command(
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Only this timeframe.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this pair.")] = None,
    model_version: Annotated[str | None, typer.Option("--model-version", help="Only this model version.")] = None,
    mode: ModeOption = None,
    since: Annotated[str | None, typer.Option("--since", help="Only candles at or after (UTC).")] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """How the recorded signals did (the same figures as POST /scorecard)."""
    from signals.cli.report import score_row
    from signals.contract import schemas
    from signals.live.operations import scorecard_of

    settings = settings_with(data_dir)
    try:
        request = schemas.ScorecardRequest(
            timeframe=timeframe,
            symbol=symbol,
            model_version=model_version,
            mode=_mode(mode),
            since=_when(since, "--since"),
        )
    except ValueError as error:
        raise fail(InvalidInput(str(error).splitlines()[0])) from error
    ledger = open_ledger(settings)
    try:
        card = scorecard_of(ledger, settings, request)
    except SignalsError as error:
        raise fail(error) from error
    if machine(as_json):
        emit_table([card], as_json=True)
        return
    row = {"n": card["n"], "modes": ",".join(card["modes"]), "verdict": card["verdict"]}
    emit_table([{**row, **score_row(card, as_json=False)}] if card["n"] else [row], as_json=False, title="Scorecard")


def _mode(mode: str | None) -> Literal["live", "backfill", "shadow"] | None:
    if mode is None:
        return None
    if mode not in ("live", "backfill", "shadow"):
        raise fail(InvalidInput(f"unknown mode {mode!r}; accepted: live, backfill, shadow"))
    return mode  # type: ignore[return-value]


@app.command("history")
def history_command(
    symbol: Annotated[str, typer.Argument(help="BTC/USDT, BTCUSDT or BTC-USDT.")],
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Only this timeframe.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    mode: ModeOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """A pair's recorded signals, newest first, with their outcomes."""
    from signals.contract import schemas
    from signals.track_record import audit

    settings = settings_with(data_dir)
    ledger = open_ledger(settings)
    try:
        response = audit.history(
            ledger, schemas.HistoryRequest(symbol=symbol, timeframe=timeframe, limit=limit, mode=_mode(mode))
        )
    except SignalsError as error:
        raise fail(error) from error
    rows = []
    for item in response.items:
        s, o = item.signal, item.outcome
        rows.append(
            {
                "candle": s.candle_time.isoformat(),
                "tf": s.timeframe,
                "mode": item.mode,
                "version": s.model_version,
                "direction": s.direction,
                "confidence": round(s.confidence, 3),
                "actionable": s.actionable,
                "outcome": None if o is None else o.label,
                "touched": None if o is None else o.touched,
                "call_return": None if o is None or o.call_return is None else round(o.call_return, 5),
            }
        )
    if machine(as_json):
        emit_table([item.model_dump(mode="json") for item in response.items], as_json=True)
        return
    emit_table(rows, as_json=False, title=f"{response.symbol}: recorded signals and outcomes")
