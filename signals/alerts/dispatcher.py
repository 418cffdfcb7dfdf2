"""The sender: takes due messages from the outbox, delivers them (webhook POST, Telegram message), records each
attempt; and the watch that turns health changes into alerts.

It runs in every API worker (and as `signals alerts run`): claims are per message (`outbox.claim_due`), so senders
share the work without sending a message twice at once. A sender killed mid-delivery loses its claim when the lease
expires and the message goes out again under the same idempotency key: at least once, a repeat only after a loss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
from sqlalchemy.engine import Engine

from signals.alerts import webhook
from signals.alerts.targets import TargetPolicy, redact_url
from signals.core.background import stop_task, wait_event
from signals.core.clock import SYSTEM_CLOCK, Clock, SystemClock, epoch_ms
from signals.core.errors import InvalidInput
from signals.core.settings import Settings
from signals.ledger.outbox import Claimed, RetryPolicy, claim_due, enqueue, outbox_counts, record_attempt
from signals.ledger.rules import health_alert

logger = logging.getLogger(__name__)


class ChatSender(Protocol):
    """Sends an alert to a chat, in the chat's words (the Telegram bot, `telegram.py`)."""

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> webhook.Outcome: ...

    async def aclose(self) -> None: ...


class AlertDispatcher:
    def __init__(
        self,
        engine: Engine,
        *,
        policy: RetryPolicy | None = None,
        chats: ChatSender | None = None,
        health: Callable[[], Mapping[str, tuple[bool, str | None]]] | None = None,
        poll_s: float = 1.0,
        lease_s: float = 60.0,
        timeout_s: float = 10.0,
        concurrency: int = 8,
        clock: Clock = SYSTEM_CLOCK,
        targets: TargetPolicy | None = None,
        dead_summary_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.targets = targets  # checked again before every delivery: a name may resolve elsewhere later
        self.policy = policy or RetryPolicy()
        self.chats = chats
        self.health = health
        self.poll_s = poll_s
        self.lease_ms = int(lease_s * 1000)
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.clock = clock  # when a message is due, when it was attempted, when its retry is due
        self.sent: Counter[str] = Counter()
        self.last_error: str | None = None
        self.dead_summary_ms = int(dead_summary_s * 1000)
        self._dead: Counter[str] = Counter()  # dead since the last summary line, by where they were going
        self._dead_logged_ms: int | None = None
        self._known_health: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(
        cls,
        engine: Engine,
        settings: Settings,
        *,
        health: Callable[[], Mapping[str, tuple[bool, str | None]]] | None = None,
        clock: Clock | None = None,
    ) -> AlertDispatcher:
        """The sender the server's workers and `signals alerts run` use: the settings' retries and lease, and the
        Telegram bot for chats when a token is set; the settings' clock unless one is given."""
        chats = None
        if settings.telegram_token is not None:
            from signals.alerts.telegram import TelegramChats  # the library only when a bot is configured

            chats = TelegramChats(settings.telegram_token.get_secret_value(), settings.telegram_api_url)
        return cls(
            engine,
            policy=RetryPolicy(max_attempts=settings.alert_max_attempts),
            lease_s=settings.alert_lease_s,
            chats=chats,
            health=health,
            clock=clock or SystemClock(settings.clock_offset_s),
            targets=TargetPolicy(settings.webhook_allow_http, settings.webhook_allow_private),
        )

    def now_ms(self) -> int:
        return epoch_ms(self.clock)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self.run(), name="signals-alerts")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.chats is not None:
            await self.chats.aclose()

    def poke(self, *_: Any) -> None:
        """Look at the outbox now (thread-safe: the ledger writer calls it after recording)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        while True:
            try:
                await self.watch_health()
                while await self.deliver_due():
                    pass
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database may be down for a while: keep trying, say why
                self.last_error = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
                logger.warning("alerts: %s", self.last_error)
            await wait_event(self._wake, self.poll_s)
            self._wake.clear()

    # --- delivery -------------------------------------------------------------------------------------------
    async def deliver_due(self) -> int:
        """Claim and deliver what is due; how many were attempted."""
        claimed = await asyncio.to_thread(claim_due, self.engine, self.now_ms(), self.lease_ms, self.concurrency * 4)
        if not claimed:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Claimed) -> None:
            async with gate:
                await self.deliver(message)

        await asyncio.gather(*(one(message) for message in claimed))
        self.summarise_dead()
        return len(claimed)

    def summarise_dead(self, *, force: bool = False) -> str | None:
        """One WARNING line for the messages that died since the last one, at most once a `dead_summary_s` (a
        receiver that is down for an hour is one line a minute, not one per message); the line, if any."""
        now = self.now_ms()
        if not self._dead:
            return None
        if not force and self._dead_logged_ms is not None and now - self._dead_logged_ms < self.dead_summary_ms:
            return None
        where = ", ".join(f"{target}: {count}" for target, count in self._dead.most_common(5))
        more = len(self._dead) - 5
        line = f"alerts: {sum(self._dead.values())} message(s) dead after {self.policy.max_attempts} attempts ({where}"
        line += f", and {more} more target(s))" if more > 0 else ")"
        line += "; `signals alerts log` shows why"
        logger.warning("%s", line)
        self._dead.clear()
        self._dead_logged_ms = now
        return line

    async def deliver(self, message: Claimed) -> str:
        started = time.perf_counter()
        outcome = await self._send(message)
        status = await asyncio.to_thread(
            record_attempt,
            self.engine,
            message,
            ok=outcome.ok,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=int(1000 * (time.perf_counter() - started)),
            now_ms=self.now_ms(),
            policy=self.policy,
        )
        self.sent[status] += 1
        if status == "dead":
            self._dead[f"{message.kind} {redact_url(message.target)}"] += 1
        return status

    async def _send(self, message: Claimed) -> webhook.Outcome:
        if message.kind == "webhook":
            if self.targets is not None:
                try:
                    await asyncio.to_thread(self.targets.check, message.target)
                except InvalidInput as error:
                    return webhook.Outcome(False, None, f"refused by the webhook policy: {error}")
            return await webhook.post(
                self._http(), message.target, message.secret, message.event_type, message.event_key, message.payload
            )
        if message.kind == "telegram" and self.chats is not None:
            return await self.chats.send(message.target, message.payload)
        return webhook.Outcome(False, None, f"no sender for {message.kind} here (is SIGNALS_TELEGRAM_TOKEN set?)")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        return self._client

    # --- health -----------------------------------------------------------------------------------------------
    async def watch_health(self) -> int:
        """Alerts for components whose health changed since the last look (the first look only learns)."""
        if self.health is None:
            return 0
        now = self.health()
        changed = [
            health_alert(component, degraded, detail, self.now_ms())
            for component, (degraded, detail) in now.items()
            if component in self._known_health and self._known_health[component] != degraded
        ]
        self._known_health = {component: degraded for component, (degraded, _) in now.items()}
        if not changed:
            return 0

        def write() -> int:
            with self.engine.begin() as connection:
                return enqueue(connection, changed, self.now_ms())

        return await asyncio.to_thread(write)

    def status(self) -> dict[str, Any]:
        try:
            counts = outbox_counts(self.engine)
        except Exception as error:  # health must answer even when the database does not
            counts = {"error": f"{type(error).__name__}"}  # type: ignore[dict-item]
        return {
            "running": self._task is not None,
            "outbox": counts,
            "sent": dict(self.sent),
            "last_error": self.last_error,
        }
