"""The event stream's route over a real ledger: any text is a valid `Last-Event-ID` (one the stream never sent
resets it, as an id the ledger no longer has), and the document publishes the route as `text/event-stream`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from signals.api.web import create_web_app
from signals.ledger.store import Ledger
from signals.live.push import PushHub

NOT_OURS = ("garbage", "a|b", "v1|NOTASYMBOL|2026-01-01", "v1|BTC/USDT|not a time", " ", "ü|€|∞")


async def first_chunks(app: Any, last_event_id: str) -> tuple[int, str]:
    """The status and the body until the stream's first event (the route never ends by itself)."""
    sent: list[dict[str, Any]] = []
    seen = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if b"event: " in message.get("body", b""):
            seen.set()

    headers = [(b"host", b"127.0.0.1:3000"), (b"last-event-id", last_event_id.encode())]
    scope = {"type": "http", "method": "GET", "path": "/api/stream", "headers": headers, "query_string": b""}
    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(seen.wait(), timeout=30)  # a bound for a failure, not a timing
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), body.decode()


def test_a_last_event_id_the_stream_never_sent_resets_it(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")  # the route's behaviour is the same on every database
    ledger.migrate()
    try:
        hub = PushHub(ledger)
        app = create_web_app(lambda: None, lambda: hub, heartbeat_s=60)  # type: ignore[arg-type, return-value]
        for last_event_id in NOT_OURS:
            status, body = asyncio.run(first_chunks(app, last_event_id))
            assert status == 200 and "event: reset" in body and "streaming from now" in body, last_event_id
    finally:
        ledger.close()


def test_the_stream_is_published_as_text_event_stream() -> None:
    app = create_web_app(lambda: None, lambda: None)  # type: ignore[arg-type, return-value]
    answers = app.openapi()["paths"]["/api/stream"]["get"]["responses"]["200"]
    assert list(answers["content"]) == ["text/event-stream"]
