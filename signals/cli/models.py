"""`signals models` and `signals evaluate`: what the model store holds, and how it scores on other data.

`models` reads labels and metadata generically (labels `family`, `symbol`, `timeframe`; `metadata.metrics`;
any `first`/`last` bar found under a `*range*` key) so every family shows, not only the CNN-LSTM.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

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
from signals.cli.report import with_interval
from signals.core.errors import InvalidInput, SignalsError
from signals.core.timeframes import iso_z
from signals.models.card import ModelCard
from signals.models.evidence import PPO_RULE_TEXT, RULE_TEXT

_FIRST_KEYS = ("first", "first_bar", "start")
_LAST_KEYS = ("last", "last_bar", "end")


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _range_bounds(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """("first" | "last", ISO time) for every bound under a key whose name mentions a range."""
    if isinstance(value, dict):
        for name, item in value.items():
            inside = key or (name if "range" in str(name) else "")
            if inside and name in _FIRST_KEYS and isinstance(item, str):
                yield "first", item
            elif inside and name in _LAST_KEYS and isinstance(item, str):
                yield "last", item
            else:
                yield from _range_bounds(item, inside)


def model_row(tag: str, labels: dict[str, str], metadata: dict[str, Any], *, as_json: bool = False) -> dict[str, Any]:
    """One `signals models` row, read generically from a model's labels and metadata (every family)."""
    card = ModelCard.from_metadata(metadata)
    metrics = card.metrics
    bounds = list(_range_bounds(metadata))
    firsts = [stamp for kind, stamp in bounds if kind == "first"]
    lasts = [stamp for kind, stamp in bounds if kind == "last"]
    name, _, version = tag.partition(":")
    edge = card.edge  # as the gate reads it: never positive without the rule's inputs
    row: dict[str, Any] = {
        "model": name,
        "family": labels.get("family", card.family),
        "symbol": labels.get("symbol", card.symbol),
        "timeframe": labels.get("timeframe", card.timeframe),
        "version": version,
        "edge": edge.get("verdict", "insufficient_data"),
        "rule": rule_status(edge),
    }
    if machine(as_json):
        keep = (
            "metrics",
            "walk_forward",
            "evaluation",
            "threshold",
            "break_even_hit_rate",
            "horizon",
            "stop_atr",
            "costs",
            "health",
            "temperature",
        )
        return {
            **row,
            **{key: card.raw[key] for key in keep if key in card.raw},  # as stored, whatever their shape
            "edge": edge,
            "data_first": min(firsts) if firsts else None,
            "data_last": max(lasts) if lasts else None,
        }
    calls = metrics.get("calls", {}) if isinstance(metrics.get("calls"), dict) else {}
    return {
        **row,
        "edge_value_%": with_interval(_percent(edge)) if edge.get("value") is not None else None,
        "accuracy": with_interval(metrics.get("accuracy")) if isinstance(metrics.get("accuracy"), dict) else None,
        "majority": _round(metrics.get("majority_share")),
        "calls": calls.get("n"),
        "break_even": _round(card.break_even_hit_rate),
        "data_first": min(firsts) if firsts else None,
        "data_last": max(lasts) if lasts else None,
    }


def rule_status(edge: dict[str, Any]) -> str:
    """The universe-wide rule's outcome in a few words: passed, or which part failed."""
    status = edge.get("rule_status")
    if status == "stored_before_rule":
        return "stored before the rule: retrain"
    found = edge.get("rule")
    rule: dict[str, Any] = found if isinstance(found, dict) else {}
    if status == "passed":
        return f"passed (p {rule.get('p', float('nan')):.2g}, rank {rule.get('rank')} of m {rule.get('m')})"
    return f"failed: {rule.get('reason') or edge.get('reason') or 'see --json'}"


def _percent(edge: dict[str, Any]) -> dict[str, Any]:
    return {key: 100 * edge[key] for key in ("value", "ci_low", "ci_high") if isinstance(edge.get(key), int | float)}


models_app = typer.Typer(
    help="The model store and its versions: list (no subcommand), reload, promote, rollback, pin.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")
ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        help="A running server to tell (its /admin/reload); unreachable: it reloads at its next candle close.",
    ),
]
DEFAULT_SERVER = "http://127.0.0.1:3000"


@models_app.callback()
def list_stored_models(
    context: typer.Context,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Every version, not only the latest.")] = False,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Every model in the model store (all families): edge verdict, walk-forward accuracy beside the majority
    share, actionable calls, break-even hit rate, data range; `--json` adds the whole walk-forward summary."""
    if context.invoked_subcommand is not None:
        return
    from signals.models.registry import list_models

    rows, seen = [], set()
    for model in list_models():  # newest first per name
        if not all_versions and model.tag.name in seen:
            continue
        seen.add(model.tag.name)
        rows.append(
            model_row(str(model.tag), dict(model.info.labels), dict(model.info.metadata), as_json=machine(as_json))
        )
    emit_table(rows, as_json=as_json, title="Model store (walk-forward figures, 95 % intervals)")
    if not machine(as_json):  # the rule every `edge` answers to, printed once (JSON rows: edge.rule.text)
        stdout.print(f"{RULE_TEXT}.\n{PPO_RULE_TEXT}.", highlight=False, soft_wrap=True)


@app.command("evaluate")
def evaluate_models(
    data_dir: DataDirOption = None,
    exchange: ExchangeOption = None,
    symbols: Annotated[list[str] | None, typer.Option("--symbols", help="Only these symbols.")] = None,
    timeframes: Annotated[list[str] | None, typer.Option("--timeframes", help="Only these timeframes.")] = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Score the latest CNN-LSTMs and installed families' models on the candles of another store (another period,
    other data), as they serve:
    accuracy with its interval beside the majority, reversal and persistence baselines, log-loss and Brier skill,
    calibration with sharpness, and the actionable calls' hit rate and after-cost expectancy; per model and
    pooled per timeframe. Samples sharing a bar with the model's training or validation samples are purged
    (`purged` counts them)."""
    from signals.cli.report import score_row
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.artifact import latest_cnn_lstm_tags, load_cnn_lstm
    from signals.models.cnn_lstm.evaluate import Evaluation, evaluate_model, pooled
    from signals.models.device import configure_torch
    from signals.models.plugin import discover, load_family_model
    from signals.models.registry import list_models

    configure_torch()  # one torch thread: on a shared 2-core box two threads fight a neighbour
    try:
        wanted_symbols = {normalize_symbol(s) for s in split_csv(symbols)}
        wanted_timeframes = {parse_timeframe(t) for t in split_csv(timeframes)}
    except SignalsError as error:
        raise fail(error) from error
    store, exchange_id = CandleStore(data_dir_or_default(data_dir)), exchange_or_default(exchange)
    chosen = []
    loaders: dict[str, Any] = {}
    latest = {
        (symbol, timeframe, tag.split(":")[0]): tag for (symbol, timeframe), tag in latest_cnn_lstm_tags().items()
    }
    for plugin in discover().plugins.values():  # every installed family, scored the same way
        for model in list_models(plugin.name):  # newest first per name
            labels = model.info.labels
            latest.setdefault((labels.get("symbol", ""), labels.get("timeframe", ""), model.tag.name), str(model.tag))
            loaders[model.tag.name] = lambda tag, plugin=plugin: load_family_model(plugin, tag)
    for (symbol, timeframe, _name), tag in sorted(latest.items()):
        if (wanted_symbols and symbol not in wanted_symbols) or (
            wanted_timeframes and timeframe not in wanted_timeframes
        ):
            continue
        if not store.exists(exchange_id, symbol, timeframe):
            stderr.print(f"note: no {timeframe} candles for {symbol} on {exchange_id} in {store.root}; skipped")
            continue
        chosen.append((symbol, timeframe, tag))
    rows: list[dict[str, Any]] = []
    done: dict[str, list[Evaluation]] = {}
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=len(chosen))
        for symbol, timeframe, tag in chosen:
            progress.update(task, description=f"evaluating {symbol} {timeframe}")
            try:
                predictor = loaders.get(tag.split(":")[0], load_cnn_lstm)(tag)
                evaluation = evaluate_model(
                    predictor, store.read(exchange_id, symbol, timeframe), store=store, exchange=exchange_id
                )
            except (SignalsError, ValueError) as error:
                stderr.print(f"[yellow]skipped[/yellow] {tag}: {error}", highlight=False)
                progress.advance(task)
                continue
            done.setdefault(timeframe, []).append(evaluation)
            first, last = iso_z(evaluation.first), iso_z(evaluation.last)
            rows.append(
                {
                    "model": tag,
                    "timeframe": timeframe,
                    **score_row(evaluation.scores, as_json=machine(as_json)),
                    "data_first": first,
                    "data_last": last,
                    "purged": evaluation.purged,
                }
            )
            progress.advance(task)
    for timeframe, evaluations in done.items():
        if len(evaluations) > 1:
            rows.append(
                {
                    "model": f"pooled {timeframe}",
                    "timeframe": timeframe,
                    **score_row(pooled(evaluations), as_json=machine(as_json)),
                }
            )
    emit_table(rows, as_json=as_json, title=f"Models on {store.root} ({exchange_id}); 95 % block-bootstrap intervals")


def _tell_server(server: str) -> str:
    """Ask a running server to reload its versions now; say what happened in one line."""
    import httpx

    try:
        response = httpx.post(f"{server.rstrip('/')}/admin/reload", json={}, timeout=10)
    except httpx.HTTPError:
        return f"no server answered at {server}: running servers pick the change up at their next candle close"
    if response.status_code != 200:
        return f"{server} answered {response.status_code} to /admin/reload: {response.text[:200]}"
    return f"{server} reloaded: serving {len(response.json().get('served', {}))} models"


def _decide(action: str, model: str, version: str | None, force: bool, data_dir: Any) -> dict[str, Any]:
    from signals.cli.ledger import open_ledger, settings_with
    from signals.track_record import versions

    settings = settings_with(data_dir)
    ledger = open_ledger(settings)
    try:
        if action == "promote":
            return versions.promote(ledger, settings, model, version, force=force).as_dict()
        if action == "rollback":
            return versions.rollback(ledger, model, version, force=force).as_dict()
        return versions.pin(ledger, model, version).as_dict()
    except SignalsError as error:
        raise fail(error) from error


@models_app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="Store name, e.g. cnn-lstm-btc-usdt-1h.")],
    version: Annotated[str | None, typer.Option("--version", help="Default: the newest stored version.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Serve it even if it does not beat the served one.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Serve a candidate version when its live (or backfill) scorecard beats the served version's on the same
    candles (the rule is printed); every promotion is recorded in the ledger."""
    decision = _decide("promote", model, version, force, data_dir)
    emit_table([decision], as_json=as_json, title="Promotion")
    if decision["promoted"]:
        stderr.print(_tell_server(server))
    else:
        raise typer.Exit(code=1)


@models_app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="Store name, e.g. cnn-lstm-btc-usdt-1h.")],
    version: Annotated[
        str | None, typer.Option("--version", help="Default: the version served before the last promotion.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Roll back a pinned model, or to a version never served.")
    ] = False,
    server: ServerOption = DEFAULT_SERVER,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Serve again an earlier version, by default the one served before the last promotion (recorded in the
    ledger)."""
    emit_table([_decide("rollback", model, version, force, data_dir)], as_json=as_json, title="Rollback")
    stderr.print(_tell_server(server))


@models_app.command("pin")
def pin_command(
    model: Annotated[str, typer.Argument(help="Store name, e.g. cnn-lstm-btc-usdt-1h.")],
    version: Annotated[str | None, typer.Option("--version", help="The version to hold; omit it to unpin.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Hold one version whatever newer versions arrive (or, without --version, release the pin)."""
    emit_table([_decide("pin", model, version, False, data_dir)], as_json=as_json, title="Pin")
    stderr.print(_tell_server(server))


@models_app.command("reload")
def reload_command(server: ServerOption = DEFAULT_SERVER) -> None:
    """Tell a running server to pick up the model versions now in the store."""
    message = _tell_server(server)
    stderr.print(message)
    if " reloaded:" not in message:
        raise typer.Exit(code=2)


@models_app.command("sign")
def sign_command(
    names: Annotated[list[str] | None, typer.Argument(help="Model names or name:version; default: all.")] = None,
) -> None:
    """Sign stored models with SIGNALS_MODEL_SIGNING_KEY (HMAC-SHA256 over their tag, labels, whole metadata and
    every file), so that a server with the key refuses any of them changed afterwards, naming what changed. Each
    model's files are checked against their hashes first; re-signing replaces an older (v1) signature."""
    from signals.core.settings import get_settings
    from signals.models.registry import list_models, sign_model

    secret = get_settings().model_signing_key
    if secret is None:
        raise fail(InvalidInput("set SIGNALS_MODEL_SIGNING_KEY to the key the servers verify with"))
    wanted = set(names or [])
    tags = [str(m.tag) for m in list_models() if not wanted or m.tag.name in wanted or str(m.tag) in wanted]
    if not tags:
        raise fail(InvalidInput(f"no stored model matches {sorted(wanted)}; `signals models` lists them"))
    for tag in tags:
        try:
            sign_model(tag, secret.get_secret_value())
        except SignalsError as error:
            raise fail(error) from error
        stdout.print(f"signed {tag}", highlight=False)
