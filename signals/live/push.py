"""Push: every newly recorded signal (and the policy's action for a flat position) to the stream's subscribers.

The ledger is the source of truth: each API worker's hub tails it, so a subscriber of any worker of any
server sharing the ledger gets what the candle-close loop recorded, whichever worker led that refresh.
The worker that wrote the records wakes its own hub at once (`poke`, from the writer's thread); the others
notice within `poll_s`.

- Tailing reads the records of the last `settle_ms` each time and skips those already published: a record
  committed late (a busy writer, a concurrent transaction on PostgreSQL) is still published once.
- An event's id is its stream key, `<model version>|<symbol>|<candle time>`, unique in the ledger; a
  subscriber that reconnects with it (`Last-Event-ID`) gets everything recorded after it from the ledger.
- A new subscriber is shown the current state at once (`snapshot`: the newest record of each pair it wants), and
  an operator's refresh re-sends what it computed even when it was recorded before (`republish`: marked `again`,
  so that a subscriber's de-duplication of its snapshot lets it through).
- Each subscriber has a bounded queue. One that cannot keep up is closed rather than silently skipped,
  so nothing is lost: it reconnects with the id of the last event it got.
- Subscribers are bounded too: at most `max_subscribers` per worker (503 + Retry-After beyond, the stream and the
  WebSocket together) and `max_per_key` per API key; what a subscriber asks for is checked against the served
  universe. Leaving gives everything back: nothing is kept per subscriber once it is unsubscribed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Final, Literal

import pandas as pd

from signals.core.background import stop_task, wait_event
from signals.core.errors import InvalidInput, SignalsError, TooManyRequests
from signals.core.symbols import normalize_symbol
from signals.core.timeframes import iso_z, parse_timeframe, utc_now
from signals.ledger.records import ms
from signals.ledger.rows import StreamRow
from signals.ledger.store import STREAM_LIMIT, Ledger, stream_order

logger = logging.getLogger(__name__)

Kind = Literal["signal", "action"]
Present = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]
KINDS: Final[frozenset[str]] = frozenset({"signal", "action"})
QUEUE_BATCHES: Final = 256  # batches a subscriber may be behind before it is closed (and resumes by its id)
SNAPSHOT_WINDOW_MS: Final = 2 * 86_400_000  # a snapshot looks this far back: two of the longest served candles (1d)
FULL_RETRY_S: Final = 10.0  # when a refused subscriber may try again


class StreamFull(SignalsError):
    """This worker serves as many subscribers as it may (`SIGNALS_STREAM_MAX_SUBSCRIBERS`): 503, try again later."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


@dataclass(frozen=True)
class Event:
    kind: Kind
    id: str  # the stream key: <model version>|<symbol>|<candle time>
    symbol: str
    timeframe: str
    data: Mapping[str, Any]  # the Signal or the Action as served
    order: tuple[int, str, int]  # (recorded_ms, kind, row id): the stream's total order
    rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # wire forms, made once
    again: bool = field(default=False, compare=False)  # sent again (an operator's refresh of a recorded candle)

    def render(self, form: str, make: Callable[[Event], str]) -> str:
        """This event in a wire form, made once however many subscribers it goes to (1,000 subscribers must not
        mean 1,000 JSON encodings of each event)."""
        text = self.rendered.get(form)
        if text is None:
            text = self.rendered[form] = make(self)
        return text

    @classmethod
    def from_row(cls, row: StreamRow, present: Present | None = None) -> Event:
        """The event of a ledger row; `present` turns the recorded payload into what it reads as now."""
        candle = iso_z(pd.Timestamp(int(row["candle_ms"]), unit="ms", tz="UTC"))
        return cls(
            kind=row["kind"],
            id=f"{row['model_version']}|{row['symbol']}|{candle}",
            symbol=str(row["symbol"]),
            timeframe=str(row["timeframe"]),
            data=row["payload"] if present is None else present(row["kind"], row["payload"]),
            order=stream_order(row),
        )


def parse_event_id(event_id: str) -> tuple[str, str, int]:
    """(model version, symbol, candle ms) of a stream key; InvalidInput (400) when it is not one."""
    parts = event_id.split("|")
    if len(parts) != 3:
        raise InvalidInput(
            f"Last-Event-ID {event_id[:80]!r} is not an event id (<model version>|<symbol>|<candle time>)"
        )
    version, symbol, candle = parts
    try:
        return version, normalize_symbol(symbol), ms(pd.Timestamp(candle))
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"Last-Event-ID {event_id[:80]!r}: {error}") from error


@dataclass(frozen=True)
class Interest:
    """What a subscriber asked for: symbols and timeframes (None: all), kinds of events, and each symbol as the
    subscriber wrote it (the older shapes echo that spelling: `BTC-USDT` stays `BTC-USDT`)."""

    symbols: frozenset[str] | None = None
    timeframes: frozenset[str] | None = None
    kinds: frozenset[str] = KINDS
    spelled: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(
        cls,
        symbols: Iterable[str] | None,
        timeframes: Iterable[str] | None,
        kinds: Iterable[str] | None = None,
        *,
        universe: Iterable[str] | None = None,
        served_timeframes: Iterable[str] | None = None,
    ) -> Interest:
        """From request parameters in any accepted spelling; InvalidInput (400) names a bad one, and a symbol or
        timeframe outside what is served (`universe`, `served_timeframes`; None: anything well-formed)."""
        wanted_kinds = frozenset(k.strip() for k in kinds or () if k.strip()) or KINDS
        if not wanted_kinds <= KINDS:
            raise InvalidInput(f"unknown event kind(s) {sorted(wanted_kinds - KINDS)}; accepted: signal, action")
        spelled = {normalize_symbol(s): s.strip() for s in symbols or () if s.strip()}
        parsed_timeframes = frozenset(parse_timeframe(t) for t in timeframes or () if t.strip())
        _within("symbol", frozenset(spelled), universe, "the served universe")
        _within("timeframe", parsed_timeframes, served_timeframes, "the served timeframes")
        return cls(frozenset(spelled) or None, parsed_timeframes or None, wanted_kinds, spelled)

    def spelling(self, symbol: str) -> str | None:
        """`symbol` (ccxt form) as this subscriber wrote it; None when it did not name it."""
        return self.spelled.get(symbol)

    def wants(self, event: Event) -> bool:
        return (
            event.kind in self.kinds
            and (self.symbols is None or event.symbol in self.symbols)
            and (self.timeframes is None or event.timeframe in self.timeframes)
        )


def _within(what: str, asked: frozenset[str], served: Iterable[str] | None, where: str) -> None:
    if served is None:
        return
    allowed = list(served)
    outside = sorted(asked - set(allowed))
    if outside:
        shown = ", ".join(allowed[:8]) + (f" and {len(allowed) - 8} more" if len(allowed) > 8 else "")
        raise InvalidInput(f"{what}(s) {', '.join(outside[:5])} not in {where}; subscribe to some of: {shown}")


@dataclass(eq=False)
class Subscription:
    interest: Interest
    since_ms: int = 0  # events recorded before the subscription are the replay's business, not the tail's
    queue: asyncio.Queue[list[Event]] = field(default_factory=lambda: asyncio.Queue(QUEUE_BATCHES))
    overflowed: bool = False
    delivered: int = 0
    key: str | None = None  # the API key it came with (the per-key cap)

    @property
    def closed(self) -> bool:
        """Closed (too far behind, or the server stops) and nothing left to send: the reader ends the stream."""
        return self.overflowed and self.queue.empty()

    def close(self) -> None:
        self.overflowed = True
        if not self.queue.full():
            self.queue.put_nowait([])  # wake the reader

    def offer(self, events: list[Event]) -> bool:
        """Queue the events this subscriber wants; False when it is too far behind (it must be closed)."""
        mine = [e for e in events if (e.again or e.order[0] >= self.since_ms) and self.interest.wants(e)]
        if not mine or self.overflowed:
            return not self.overflowed
        try:
            self.queue.put_nowait(mine)
        except asyncio.QueueFull:  # the reader sends what is queued, sees `overflowed` and closes
            self.overflowed = True
            return False
        self.delivered += len(mine)
        return True


class PushHub:
    def __init__(
        self,
        ledger: Ledger,
        *,
        poll_s: float = 1.0,
        settle_ms: int = 30_000,
        clock: Callable[[], pd.Timestamp] = utc_now,
        present: Present | None = None,
        universe: Iterable[str] | None = None,
        timeframes: Iterable[str] | None = None,
        max_subscribers: int | None = None,
        max_per_key: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.present = present  # the engine's `as_of_now`: a recorded signal as it reads now (stale or not)
        self.poll_s = poll_s
        self.settle_ms = settle_ms
        self.clock = clock
        self.universe = None if universe is None else tuple(universe)
        self.timeframes = None if timeframes is None else tuple(timeframes)
        self.max_subscribers = max_subscribers
        self.max_per_key = max_per_key
        self.subscriptions: set[Subscription] = set()
        self.per_key: dict[str, int] = {}  # subscribers per API key (a key leaves the dict with its last one)
        self.refused = 0
        self.published = 0
        self.closed_slow = 0
        self.last_error: str | None = None
        self.last_publish_s: float | None = None  # seconds from a wake-up to every queue filled
        self._seen: dict[tuple[str, int], int] = {}  # (kind, row id) -> recorded_ms, for the settle window
        self._cursor_ms = ms(clock())
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._cursor_ms = ms(self.clock())
            self._task = self._loop.create_task(self._run(), name="signals-push")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        for subscription in list(self.subscriptions):
            subscription.close()

    def poke(self, *_: Any) -> None:
        """Look at the ledger now (thread-safe: the ledger writer calls it after each write)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # --- subscribers ----------------------------------------------------------------------------------------
    def interest(
        self, symbols: Iterable[str] | None, timeframes: Iterable[str] | None, kinds: Iterable[str] | None = None
    ) -> Interest:
        """`Interest.parse` against what this server serves."""
        return Interest.parse(symbols, timeframes, kinds, universe=self.universe, served_timeframes=self.timeframes)

    def subscribe(self, interest: Interest, *, key: str | None = None) -> Subscription:
        """A new subscriber; StreamFull (503) when the worker has as many as it may, TooManyRequests (429) when
        `key` has as many as one key may."""
        if self.max_subscribers is not None and len(self.subscriptions) >= self.max_subscribers:
            self.refused += 1
            raise StreamFull(
                f"this worker serves its limit of {self.max_subscribers} stream subscribers "
                "(SIGNALS_STREAM_MAX_SUBSCRIBERS); try again later",
                retry_after_s=FULL_RETRY_S,
            )
        if key is not None and self.max_per_key is not None and self.per_key.get(key, 0) >= self.max_per_key:
            self.refused += 1
            raise TooManyRequests(
                f"key {key!r} already holds {self.max_per_key} stream connections (SIGNALS_STREAM_MAX_PER_KEY); "
                "close one or try again later",
                retry_after_s=FULL_RETRY_S,
            )
        subscription = Subscription(interest, since_ms=ms(self.clock()), key=key)
        self.subscriptions.add(subscription)
        if key is not None:
            self.per_key[key] = self.per_key.get(key, 0) + 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (idempotent); what it held is given back."""
        if subscription in self.subscriptions:
            self.subscriptions.discard(subscription)
            self._release_key(subscription)

    def _release_key(self, subscription: Subscription) -> None:
        key = subscription.key
        if key is None:
            return
        left = self.per_key.get(key, 0) - 1
        if left > 0:
            self.per_key[key] = left
        else:
            self.per_key.pop(key, None)

    async def snapshot(self, interest: Interest) -> list[Event]:
        """The current state of what `interest` wants: the newest record of each (kind, symbol, timeframe) of the
        last `SNAPSHOT_WINDOW_MS`, as it reads now (stale or not), in the stream's order."""
        since = ms(self.clock()) - SNAPSHOT_WINDOW_MS
        rows = await asyncio.to_thread(self.ledger.latest_published, since)
        return [e for e in (Event.from_row(r, self.present) for r in rows) if interest.wants(e)]

    def republish(self, rows: Iterable[StreamRow]) -> int:
        """Send recorded rows again to every subscriber that wants them (an operator's refresh of a candle that
        was recorded before: the tail, which publishes each record once, would not); the number sent."""
        events = [replace(Event.from_row(r, self.present), again=True) for r in rows]
        if events:
            self.publish(events)
        return len(events)

    async def replay(self, last_event_id: str, interest: Interest) -> list[Event] | None:
        """What was published after `last_event_id` (the subscriber's interest only), oldest first; None when
        the ledger has no such event (then the subscriber starts from now)."""
        version, symbol, candle_ms = parse_event_id(last_event_id)
        kind = "action" if version.startswith("ppo") else "signal"
        row = await asyncio.to_thread(self.ledger.published, kind, version, symbol, candle_ms)
        if row is None and kind == "signal":  # a version string says nothing of its family: try the other table
            row = await asyncio.to_thread(self.ledger.published, "action", version, symbol, candle_ms)
        if row is None:
            return None
        after = stream_order(row)
        events: list[Event] = []
        since = after[0]
        while True:
            rows = await asyncio.to_thread(self.ledger.published_since, since)
            page = [Event.from_row(r, self.present) for r in rows if stream_order(r) > after]
            events.extend(e for e in page if interest.wants(e))
            if len(rows) < STREAM_LIMIT or not page:
                return events
            after, since = page[-1].order, page[-1].order[0]

    # --- the tail -------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.poll_s)
            self._wake.clear()
            try:
                await self.tail()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the ledger may be down for a while: keep trying, say why
                self.last_error = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
                logger.warning("push: reading the ledger failed: %s", self.last_error)

    async def tail(self) -> int:
        """Publish what was recorded since the last look (and not published yet); the number published."""
        now_ms = ms(self.clock())
        if not self.subscriptions:  # nobody listens: nothing to read, only move on
            self._cursor_ms = now_ms
            self._seen.clear()
            return 0
        since = self._cursor_ms - self.settle_ms
        rows = await asyncio.to_thread(self.ledger.published_since, since)
        started = time.perf_counter()
        fresh = []
        for row in rows:
            key = (str(row["kind"]), int(row["id"]))
            if key not in self._seen:
                self._seen[key] = int(row["recorded_ms"])
                fresh.append(Event.from_row(row, self.present))
        self._cursor_ms = max(self._cursor_ms, now_ms)
        horizon = self._cursor_ms - 2 * self.settle_ms
        self._seen = {key: at for key, at in self._seen.items() if at >= horizon}
        if fresh:
            self.publish(fresh)
            self.last_publish_s = time.perf_counter() - started
        self.last_error = None
        return len(fresh)

    def publish(self, events: list[Event]) -> None:
        self.published += len(events)
        for subscription in list(self.subscriptions):
            if not subscription.offer(events):
                self.closed_slow += 1
                self.unsubscribe(subscription)

    def status(self) -> dict[str, Any]:
        return {
            "subscribers": len(self.subscriptions),
            "max_subscribers": self.max_subscribers,
            "refused_subscribers": self.refused,
            "published": self.published,
            "closed_slow_subscribers": self.closed_slow,
            "last_publish_s": None if self.last_publish_s is None else round(self.last_publish_s, 4),
            "last_error": self.last_error,
        }
