"""The Telegram bot (python-telegram-bot): commands a desk types, alerts to the chats that subscribed.

Commands: `/status` (the older bot's: the PPO's recommendation for the configured symbol, its price, the model
version, its edge, and a paper-trading disclaimer), `/signal SYMBOL [TF]`, `/summary SYMBOL`, `/subscribe [SYMBOL]
[TF]`, `/unsubscribe`, `/help`. Answers say when a signal is not actionable and why. The bot asks a `SignalSource`:
the engine itself inside the server, or the server's HTTP API for `signals bot`.

Started with the server when `SIGNALS_TELEGRAM_TOKEN` is set (polling in one API worker only: Telegram allows one
poller per bot), or as `signals bot`; `SIGNALS_TELEGRAM_API_URL` points it at another Bot API server (the tests'
local one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
from sqlalchemy.engine import Engine
from telegram import Bot, Update
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes

from signals.alerts import webhook
from signals.core.errors import SignalsError
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import parse_timeframe
from signals.ledger.outbox import add_subscription, remove_subscription
from signals.ledger.rules import Filters

logger = logging.getLogger(__name__)

DISCLAIMER = "Paper trading only: model output, not financial advice."
HELP = (
    "/status: the PPO policy's recommendation for {symbol}\n"
    "/signal SYMBOL [TF]: the CNN-LSTM signal (default 1h), e.g. /signal ETHUSDT 4h\n"
    "/summary SYMBOL: the four timeframes and their consensus\n"
    "/subscribe [SYMBOL] [TF]: alerts in this chat (actionable signals, model and health changes)\n"
    "/unsubscribe: no more alerts here\n"
    "/help: this list"
)


class SignalSource(Protocol):
    async def action(self, symbol: str) -> dict[str, Any]: ...
    async def predict(self, symbol: str, timeframe: str) -> dict[str, Any]: ...
    async def summary(self, symbol: str) -> dict[str, Any]: ...


class EngineSource:
    """The server's own engine (the bot running inside the server)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def action(self, symbol: str) -> dict[str, Any]:
        from signals.contract.schemas import ActionRequest

        answer = await self.engine.action(ActionRequest(symbol=symbol))
        return dict(answer.model_dump(mode="json"))

    async def predict(self, symbol: str, timeframe: str) -> dict[str, Any]:
        return dict((await self.engine.predict(symbol, timeframe)).model_dump(mode="json"))

    async def summary(self, symbol: str) -> dict[str, Any]:
        return dict((await self.engine.summary(symbol, None)).model_dump(mode="json"))


class HttpSource:
    """A server's HTTP API (`signals bot` beside a server), with its API key when it has keys."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 15.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(route, json=body)
        data = response.json()
        if response.status_code != 200:
            raise SignalsError(str(data.get("error") if isinstance(data, dict) else data))
        return dict(data)

    async def action(self, symbol: str) -> dict[str, Any]:
        return await self._post("/action", {"symbol": symbol})

    async def predict(self, symbol: str, timeframe: str) -> dict[str, Any]:
        return await self._post("/predict", {"symbol": symbol, "timeframe": timeframe})

    async def summary(self, symbol: str) -> dict[str, Any]:
        return await self._post("/summary", {"symbol": symbol})


# --- what the bot says ------------------------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def interval_text(bounds: Sequence[float] | None) -> str:
    """A 95 % interval as ' [34 %, 45 %]'; nothing when the model has none."""
    return "" if not bounds else f" [{percent(bounds[0])}, {percent(bounds[1])}]"


def edge_line(edge: Mapping[str, Any]) -> str:
    verdict = edge.get("verdict", "none")
    value = edge.get("value")
    figure = "" if value is None else f" ({value:+.4g} {edge.get('metric', '')})"
    return f"edge: {verdict}{figure}"


def status_text(action: Mapping[str, Any]) -> str:
    verdict = "a recommendation" if action["actionable"] else f"no recommendation: {action['abstain_reason']}"
    return (
        f"PPO on {action['symbol']} {action['timeframe']}: {action['action_name']} "
        f"(confidence {percent(action['confidence'])})\n"
        f"price {action['current_price']:,.6g} at the close of {action['candle_time']}\n"
        f"model ppo-{action['timeframe']}:{action['model_version']}, {edge_line(action['edge'])}\n"
        f"This is {verdict}.\n{DISCLAIMER}"
    )


def signal_text(signal: Mapping[str, Any]) -> str:
    head = (
        f"{signal['symbol']} {signal['timeframe']}: the model says {signal['direction']} "
        f"({percent(signal['confidence'])}; walk-forward accuracy {percent(signal.get('model_accuracy'))}"
        f"{interval_text(signal.get('model_accuracy_ci'))} vs {percent(signal.get('baseline_accuracy'))} majority)"
    )
    levels = signal.get("levels")
    if signal["actionable"] and levels:
        targets = ", ".join(f"{tp['price']:,.6g}" for tp in levels["take_profits"])
        plan = f"Plan: entry {levels['entry']:,.6g}, stop {levels['stop_loss']:,.6g}, targets {targets}"
    else:
        plan = f"Not actionable: {signal.get('abstain_reason') or 'no trade plan'}"
    stale = "\nStale: the next candle is late." if signal.get("stale") else ""
    return f"{head}\n{plan}{stale}"


def summary_text(summary: Mapping[str, Any]) -> str:
    lines = [f"{summary['symbol']} on every timeframe:"]
    for timeframe, signal in summary["signals"].items():
        served = signal["direction"] if signal["actionable"] else "no plan"
        lines.append(f"{timeframe}: {signal['direction']} {percent(signal['confidence'])}, {served}")
    for error in summary.get("errors", []):
        lines.append(f"{error.get('timeframe')}: {error['message']}")
    consensus = summary.get("consensus")
    if consensus:
        lines.append(
            f"Consensus: {consensus['direction']} ({consensus['actionable']} actionable of {consensus['answered']})"
        )
    return "\n".join(lines)


def alert_text(payload: Mapping[str, Any]) -> str:
    """An alert from the outbox as a chat message."""
    kind, data = payload.get("type", ""), payload.get("data", {})
    if kind.startswith("signal."):
        before = data.get("previous", {})
        change = f"(was {before.get('direction')} at {before.get('candle_time')})"
        return f"Alert {kind}: {signal_text(data['signal'])}\n{change}"
    if kind.startswith("model."):
        change = f"{data.get('from_version')} -> {data.get('to_version')}"
        return f"Alert {kind}: {data.get('model')} {change} ({data.get('reason')})"
    return f"Alert {kind}: {data.get('component')}: {data.get('detail') or ''}".strip()


# --- the bot ----------------------------------------------------------------------------------------------------
class SignalsBot:
    def __init__(
        self,
        token: str,
        source: SignalSource,
        engine: Engine,
        *,
        api_url: str = "https://api.telegram.org",
        symbol: str = "BTC/USDT",
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.source = source
        self.engine = engine
        self.symbol = normalize_symbol(symbol)
        self.clock = clock or time.time
        base = api_url.rstrip("/")
        self.application = (
            Application.builder().token(token).base_url(f"{base}/bot").base_file_url(f"{base}/file/bot").build()
        )
        for name, handler in (
            ("status", self.status),
            ("signal", self.signal),
            ("summary", self.summary),
            ("subscribe", self.subscribe),
            ("unsubscribe", self.unsubscribe),
            ("help", self.help),
            ("start", self.help),
        ):
            self.application.add_handler(CommandHandler(name, handler))

    async def start(self, poll_interval: float = 0.5) -> None:
        await self.application.initialize()
        await self.application.start()
        assert self.application.updater is not None
        await self.application.updater.start_polling(poll_interval=poll_interval, timeout=1, drop_pending_updates=False)

    async def stop(self) -> None:
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def _answer(self, update: Update, text: str) -> None:
        if update.effective_message is not None:
            await update.effective_message.reply_text(text)

    async def _guarded(self, update: Update, make: Callable[[], Any]) -> None:
        try:
            text = await make()
        except SignalsError as error:
            text = f"Sorry: {error}"
        await self._answer(update, text)

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        async def make() -> str:
            return status_text(await self.source.action(self.symbol))

        await self._guarded(update, make)

    async def signal(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = list(context.args or [])

        async def make() -> str:
            if not args:
                return "Which symbol? e.g. /signal BTCUSDT 1h"
            timeframe = parse_timeframe(args[1]) if len(args) > 1 else "1h"
            return signal_text(await self.source.predict(normalize_symbol(args[0]), timeframe))

        await self._guarded(update, make)

    async def summary(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = list(context.args or [])

        async def make() -> str:
            if not args:
                return "Which symbol? e.g. /summary BTCUSDT"
            return summary_text(await self.source.summary(normalize_symbol(args[0])))

        await self._guarded(update, make)

    async def subscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = list(context.args or [])
        chat = update.effective_chat

        async def make() -> str:
            if chat is None:
                return "No chat to send alerts to."
            symbols = [normalize_symbol(a) for a in args if not _is_timeframe(a)]
            timeframes = [parse_timeframe(a) for a in args if _is_timeframe(a)]
            filters = Filters(symbols=symbols, timeframes=timeframes)
            import asyncio

            await asyncio.to_thread(
                add_subscription,
                self.engine,
                name=f"telegram {chat.id}",
                kind="telegram",
                target=str(chat.id),
                secret=None,
                filters=filters.model_dump(),
                now_ms=int(self.clock() * 1000),
            )
            scope = " ".join([*symbols, *timeframes]) or "every pair and timeframe"
            return f"Subscribed: actionable signals for {scope}, and model and health changes. /unsubscribe stops them."

        await self._guarded(update, make)

    async def unsubscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat

        async def make() -> str:
            import asyncio

            if chat is None:
                return "No chat."
            removed = await asyncio.to_thread(remove_subscription, self.engine, str(chat.id), kind="telegram")
            return "Unsubscribed: no more alerts here." if removed else "This chat had no subscription."

        await self._guarded(update, make)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._answer(update, HELP.format(symbol=self.symbol))


def _is_timeframe(text: str) -> bool:
    try:
        parse_timeframe(text)
    except SignalsError:
        return False
    return True


class TelegramChats:
    """Sends alert messages to chats (the dispatcher's `ChatSender`): one Bot, set up on the first message and shut
    down with the dispatcher, shared by concurrent sends (setting it up per message would ask getMe and open a
    connection pool each time, and the first send to finish would close it under the others)."""

    def __init__(self, token: str, api_url: str = "https://api.telegram.org") -> None:
        base = api_url.rstrip("/")
        self.bot = Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
        self._starting = asyncio.Lock()

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> webhook.Outcome:
        try:
            async with self._starting:
                await self.bot.initialize()  # once: a no-op after the first success
            await self.bot.send_message(chat_id=int(chat_id), text=alert_text(payload))
        except (TelegramError, ValueError, httpx.HTTPError) as error:
            return webhook.Outcome(False, None, f"{type(error).__name__}: {error}")
        return webhook.Outcome(True, 200, None)

    async def aclose(self) -> None:
        await self.bot.shutdown()
