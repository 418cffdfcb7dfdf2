"""Webhook messages: a JSON POST signed with HMAC-SHA256, and how a receiver checks it.

Headers of every delivery:
- `X-Signals-Event`: the event type; `Idempotency-Key`: the event key (the same on a retry: drop a repeat);
- `X-Signals-Timestamp`: Unix seconds when this attempt was signed;
- `X-Signals-Signature`: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the subscription's secret>`.
A receiver recomputes the signature over the raw body and rejects old timestamps (replays); `verify` does both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Signals-Signature"
TIMESTAMP_HEADER = "X-Signals-Timestamp"
EVENT_HEADER = "X-Signals-Event"
KEY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, headers: Any, body: bytes, *, now: float | None = None, tolerance_s: int = TOLERANCE_S) -> bool:
    """What a receiver does: the signature over the raw body matches, and the timestamp is recent."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
        given = str(headers[SIGNATURE_HEADER])
    except (KeyError, TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None


async def post(
    client: httpx.AsyncClient, url: str, secret: str | None, event_type: str, key: str, payload: dict[str, Any]
) -> Outcome:
    """One delivery attempt: 2xx is delivered; anything else (a status, a timeout, a refused connection) is not."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event_type,
        KEY_HEADER: key,
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return Outcome(False, None, f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code, None)
    return Outcome(False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}")
