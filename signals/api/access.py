"""Who may call the server: optional API keys with scopes and per-key rate limits (an ASGI middleware).

With `SIGNALS_API_KEYS` empty (the default, the demo on 127.0.0.1) everything is open. Once keys are set:
- every route needs a key (`Authorization: Bearer <key>` or `X-API-Key: <key>`; the event stream and the WebSocket,
  which browsers open without headers, also take `?api_key=`), except the probes (`/livez`, `/readyz`),
  `/metrics`, and the static dashboard and OpenAPI pages (no data in them: the page asks for a key);
- `admin` routes (`/admin/...`: reload, promote, rollback, refresh) need the `admin` scope: 403 otherwise;
- each key has a token bucket of `rate_per_minute` per worker: 429 with Retry-After when it is empty.
The server keeps only each key's SHA-256 (`signals keys new` prints a key once, and the entry to configure);
a presented key is hashed and compared with every stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from signals.api.middleware import ASGIApp, Receive, Scope, Send, header, send_error
from signals.core.errors import Forbidden, SignalsError, TooManyRequests, Unauthorized
from signals.core.settings import ApiKey

PUBLIC_PATHS = ("/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/schema.json", "/ui")
ADMIN_PREFIX = "/admin/"
KEY_PREFIX = "sk_"


def new_key() -> tuple[str, str]:
    """A fresh random key and its SHA-256 (what the server stores)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_hash(key)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class TokenBucket:
    """`rate_per_minute` requests a minute, in bursts up to the same number."""

    rate_per_minute: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens, self.stamp = float(self.rate_per_minute), self.clock()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        now = self.clock()
        self.tokens = min(float(self.rate_per_minute), self.tokens + (now - self.stamp) * self.rate_per_minute / 60)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * 60 / self.rate_per_minute


class AccessControl:
    def __init__(self, app: ASGIApp, keys: Sequence[ApiKey], clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.keys = list(keys)
        self.buckets = {k.name: TokenBucket(k.rate_per_minute, clock) for k in self.keys if k.rate_per_minute}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.keys or scope["type"] not in ("http", "websocket") or _public(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") == "OPTIONS":  # CORS preflight carries no key
            await self.app(scope, receive, send)
            return
        key = self.identify(presented_key(scope))
        path = str(scope.get("path", ""))
        if key is None:
            missing = Unauthorized("an API key is needed: send `Authorization: Bearer <key>`")
            await _refuse(scope, receive, send, missing)
            return
        if path.startswith(ADMIN_PREFIX) and "admin" not in key.scopes:
            await _refuse(scope, receive, send, Forbidden(f"key {key.name!r} lacks the admin scope this route needs"))
            return
        bucket = self.buckets.get(key.name)
        wait = bucket.take() if bucket is not None else 0.0
        if wait > 0:
            message = f"key {key.name!r} is over its limit of {key.rate_per_minute} requests a minute"
            await _refuse(scope, receive, send, TooManyRequests(message, retry_after_s=wait))
            return
        scope.setdefault("state", {})["api_key"] = key.name
        await self.app(scope, receive, send)

    def identify(self, presented: str | None) -> ApiKey | None:
        """The key whose hash matches, comparing with every stored hash (no early exit on a match)."""
        if not presented:
            return None
        digest = key_hash(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found


def presented_key(scope: Scope) -> str | None:
    authorization = header(scope, b"authorization")
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    explicit = header(scope, b"x-api-key")
    if explicit:
        return explicit.strip()
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    values = query.get("api_key")
    return values[0] if values else None


def _public(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: SignalsError) -> None:
    if scope["type"] == "websocket":  # close the handshake: 1008 policy violation, the reason in the frame
        await receive()
        await send({"type": "websocket.close", "code": 1008, "reason": str(error)[:120]})
        return
    await send_error(send, error, {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None)
