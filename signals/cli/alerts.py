"""`signals alerts add | list | remove | log | run` (webhook subscriptions and their delivery log, in the ledger
database) and `signals bot` (the Telegram bot beside a running server)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Annotated, Any

import typer

from signals.cli.app import (
    DataDirOption,
    JsonOption,
    OutputOption,
    app,
    emit_table,
    fail,
    machine,
    split_csv,
    stderr,
    stdout,
)
from signals.core.errors import InvalidInput, SignalsError

alerts_app = typer.Typer(help="Alerts: webhook subscriptions, their delivery log, the sender.")
app.add_typer(alerts_app, name="alerts")


def _ledger(data_dir: Any = None) -> Any:
    from signals.cli.ledger import open_ledger, settings_with

    return open_ledger(settings_with(data_dir))


@alerts_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST the alerts (http or https).")],
    name: Annotated[str | None, typer.Option("--name", help="Default: the URL's host.")] = None,
    symbols: Annotated[list[str] | None, typer.Option("--symbols", help="Only these symbols.")] = None,
    timeframes: Annotated[list[str] | None, typer.Option("--timeframes", help="Only these timeframes.")] = None,
    directions: Annotated[list[str] | None, typer.Option("--directions", help="LONG, SHORT, NO_TRADE.")] = None,
    events: Annotated[list[str] | None, typer.Option("--events", help="Event types; default all.")] = None,
    all_signals: Annotated[
        bool, typer.Option("--all-signals", help="Also signals that serve no trade plan (default: actionable only).")
    ] = False,
    min_confidence: Annotated[float, typer.Option("--min-confidence", min=0, max=1)] = 0.0,
    secret: Annotated[str | None, typer.Option("--secret", help="HMAC key; default: a new random one.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Subscribe a URL (the same URL again replaces its filters and secret). Prints the secret the receiver
    verifies `X-Signals-Signature` with."""
    from urllib.parse import urlparse

    from signals.alerts.targets import TargetPolicy
    from signals.core.settings import get_settings
    from signals.core.symbols import normalize_symbol
    from signals.core.timeframes import parse_timeframe
    from signals.ledger.outbox import add_subscription
    from signals.ledger.rules import Filters

    settings = get_settings()
    parsed = urlparse(url)
    try:
        url = TargetPolicy(settings.webhook_allow_http, settings.webhook_allow_private).check(url)
        filters = Filters(
            symbols=[normalize_symbol(s) for s in split_csv(symbols)],
            timeframes=[parse_timeframe(t) for t in split_csv(timeframes)],
            directions=split_csv(directions),
            events=split_csv(events),
            actionable_only=not all_signals,
            min_confidence=min_confidence,
        )
    except (SignalsError, ValueError) as error:
        raise fail(InvalidInput(str(error).splitlines()[0])) from error
    key = secret or secrets.token_urlsafe(32)
    ledger = _ledger(data_dir)
    subscription = add_subscription(
        ledger.engine,
        name=name or parsed.netloc,
        kind="webhook",
        target=url,
        secret=key,
        filters=filters.model_dump(),
        now_ms=int(time.time() * 1000),
    )
    stdout.print(f"subscription {subscription}: {url}", highlight=False, soft_wrap=True)
    stdout.print(f"secret (verify X-Signals-Signature with it): {key}", highlight=False, soft_wrap=True)


@alerts_app.command("list")
def list_command(data_dir: DataDirOption = None, as_json: JsonOption = False, output: OutputOption = None) -> None:
    """Active subscriptions (webhooks and Telegram chats) with their filters."""
    from signals.alerts.targets import redact_url
    from signals.ledger.outbox import subscriptions

    rows = [
        {
            "id": s["id"],
            "name": s["name"],
            "kind": s["kind"],
            "target": redact_url(s["target"]),
            "filters": json.dumps(s["filters"]),
        }
        for s in subscriptions(_ledger(data_dir).engine)
    ]
    emit_table(rows, as_json=as_json, title="Alert subscriptions")


@alerts_app.command("remove")
def remove(
    subscription: Annotated[int, typer.Argument(help="The id `signals alerts list` shows.")],
    data_dir: DataDirOption = None,
) -> None:
    """Stop a subscription; its log stays and its pending messages are not sent."""
    from signals.ledger.outbox import remove_subscription

    if not remove_subscription(_ledger(data_dir).engine, subscription):
        raise fail(InvalidInput(f"no active subscription {subscription}; `signals alerts list` shows them"))
    stdout.print(f"removed subscription {subscription}")


@alerts_app.command("log")
def log(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """The newest messages: event, where to, status (pending, delivered, dead), attempts and the last error."""
    from signals.alerts.targets import redact_url
    from signals.ledger.outbox import message_log

    messages = message_log(_ledger(data_dir).engine, limit)
    for m in messages:
        m["target"] = redact_url(m["target"])  # in its place: the JSON keeps its key order
    if machine(as_json):
        emit_table(messages, as_json=True)
        return
    rows = [
        {
            "id": m["id"],
            "event": m["event_key"],
            "to": f"{m['kind']} {redact_url(m['target'])}",
            "status": m["status"],
            "attempts": m["attempts"],
            "last": (m["attempt_log"][-1]["status_code"] if m["attempt_log"] else None),
            "error": (m["last_error"] or "")[:60],
        }
        for m in messages
    ]
    emit_table(rows, as_json=False, title="Alert deliveries (newest first)")


@alerts_app.command("run")
def run(
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due, then stop.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Deliver alerts from the outbox (what the server's workers do), e.g. on a machine without the server."""
    from signals.alerts.dispatcher import AlertDispatcher
    from signals.core.settings import get_settings

    ledger = _ledger(data_dir)
    dispatcher = AlertDispatcher.from_settings(ledger.engine, get_settings())

    async def go() -> int:
        if once:
            total = 0
            while attempted := await dispatcher.deliver_due():
                total += attempted
            await dispatcher.stop()
            return total
        dispatcher.start()
        try:
            await asyncio.Event().wait()
        finally:
            await dispatcher.stop()
        return 0

    try:
        attempted = asyncio.run(go())
    except KeyboardInterrupt:
        return
    stderr.print(f"attempted {attempted} deliveries: {dict(dispatcher.sent)}")


@app.command("bot")
def bot(data_dir: DataDirOption = None) -> None:
    """Run the Telegram bot (SIGNALS_TELEGRAM_TOKEN) against a running server (SIGNALS_TELEGRAM_SERVER_URL), with
    its chat subscriptions in the ledger database."""
    from signals.alerts.telegram import HttpSource, SignalsBot
    from signals.core.settings import get_settings

    settings = get_settings()
    if settings.telegram_token is None:
        raise fail(InvalidInput("set SIGNALS_TELEGRAM_TOKEN to the bot's token (from @BotFather)"))
    key = settings.telegram_server_key.get_secret_value() if settings.telegram_server_key else None
    ledger = _ledger(data_dir)
    signals_bot = SignalsBot(
        settings.telegram_token.get_secret_value(),
        HttpSource(settings.telegram_server_url, key),
        ledger.engine,
        api_url=settings.telegram_api_url,
        symbol=settings.telegram_symbol,
    )

    async def go() -> None:
        await signals_bot.start()
        stderr.print(f"the bot answers in Telegram; asking {settings.telegram_server_url}. Ctrl-C stops it.")
        try:
            await asyncio.Event().wait()
        finally:
            await signals_bot.stop()

    from telegram.error import TelegramError

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        return
    except (TelegramError, OSError) as error:  # no network, a refused token: one line, not the library's traceback
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise fail(
            SignalsError(
                f"the bot cannot reach Telegram at {settings.telegram_api_url}: {detail} (check the token and "
                "the network; SIGNALS_TELEGRAM_API_URL names the Bot API server)"
            )  # fmt: skip
        ) from error
