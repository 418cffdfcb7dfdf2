"""Who may call the server: API keys with scopes and rate limits, and what stays closed without keys.

Without keys (`SIGNALS_API_KEYS` empty, the default: the demo on 127.0.0.1) the read routes are open to whoever
reaches the port, and the admin routes (`/admin/...`) answer only callers on this machine (403 otherwise, saying
how to enable them). Once keys are set:
- every route needs a key (`Authorization: Bearer <key>` or `X-API-Key: <key>`; only the event stream and the
  WebSocket, which browsers open without headers, also read `?api_key=`), except the probes (`/livez`, `/readyz`),
  `/metrics`, and the static dashboard and OpenAPI pages (no data in them: the page asks for a key);
- `admin` routes need the `admin` scope: 403 otherwise;
- each key has a token bucket of `rate_per_minute`, and each client address one of `SIGNALS_AUTH_FAILURES_PER_MINUTE`
  wrong keys: 429 with Retry-After when it is empty (a locked-out address gets no key checked until it refills).
The buckets are per worker, by choice: sharing them through the ledger database would put a write on every
request's path and make a ledger outage an outage of the whole API. A key's budget is therefore at most
`rate_per_minute x SIGNALS_API_WORKERS x replicas` (a 30/min key got 57 of 100 through with 2 workers: <= 60);
configure `rate_per_minute = target / (workers x replicas)`.
The server keeps only each key's SHA-256 (`signals keys new` prints a key once, and the entry to configure);
a presented key is hashed and compared with every stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from signals.api.middleware import Scope, header
from signals.core.errors import Forbidden, SignalsError, TooManyRequests, Unauthorized
from signals.core.settings import ApiKey

PUBLIC_PATHS = ("/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/schema.json", "/ui")
QUERY_KEY_PATHS = ("/api/stream", "/ws/")  # opened by browsers without headers: the only routes that read ?api_key=
ADMIN_PREFIX = "/admin/"
KEY_PREFIX = "sk_"
MAX_ADDRESSES = 10_000  # client addresses whose failed keys are counted (the least recent forgotten first)
ADMIN_CLOSED = (
    "the admin routes answer only callers on this machine while no API keys are set; to call them from elsewhere, "
    "set SIGNALS_API_KEYS with a key that has the admin scope (`signals keys new ops --scopes read,admin`)"
)


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
        """0 when a request may go now (and it takes its token), else the seconds until one may."""
        wait = self.wait()
        if wait == 0:
            self.tokens -= 1
        return wait

    def wait(self) -> float:
        """The seconds until a token is there (0: now), taking none."""
        now = self.clock()
        self.tokens = min(float(self.rate_per_minute), self.tokens + (now - self.stamp) * self.rate_per_minute / 60)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) * 60 / self.rate_per_minute


class Access:
    """Who may call, decided from the request's head alone (`refusal`): the key, its scope and rate, the failed-key
    limit of the caller's address, and without keys the admin routes for callers on this machine only."""

    def __init__(
        self, keys: Sequence[ApiKey], *, failures_per_minute: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = list(keys)
        self.clock = clock
        self.buckets = {k.name: TokenBucket(k.rate_per_minute, clock) for k in self.keys if k.rate_per_minute}
        self.failures_per_minute = failures_per_minute
        self.failures: OrderedDict[str, TokenBucket] = OrderedDict()  # per client address, the oldest first

    def refusal(self, scope: Scope) -> SignalsError | None:
        """Why this request may not go on, or None (then `scope["state"]["api_key"]` names its key, if any)."""
        path = str(scope.get("path", ""))
        if not self.keys:
            if path.startswith(ADMIN_PREFIX) and not is_loopback(client_host(scope)):
                return Forbidden(ADMIN_CLOSED)
            return None
        if _public(scope) or (scope["type"] == "http" and scope.get("method") == "OPTIONS"):  # preflight: no key
            return None
        address = client_host(scope) or "unknown"
        presented = presented_key(scope, query=path.startswith(QUERY_KEY_PATHS))
        failures = self.failures.get(address) if presented else None
        wait = failures.wait() if failures is not None else 0.0
        if wait > 0:
            message = f"too many wrong API keys from {address}; wait before trying again"
            return TooManyRequests(message, retry_after_s=wait)
        key = self.identify(presented)
        if key is None:
            if presented:
                self._failed(address)
                return Unauthorized(
                    "the API key is not valid: send `Authorization: Bearer <key>` with a key issued "
                    "by `signals keys new`"
                )
            if presented_key(scope, query=True):
                return Unauthorized(
                    "send the API key as `Authorization: Bearer <key>`; `?api_key=` is accepted only "
                    "by /api/stream and /ws/ (browsers open them without headers)"
                )
            return Unauthorized("an API key is needed: send `Authorization: Bearer <key>`")
        if path.startswith(ADMIN_PREFIX) and "admin" not in key.scopes:
            return Forbidden(f"key {key.name!r} lacks the admin scope this route needs")
        bucket = self.buckets.get(key.name)
        wait = bucket.take() if bucket is not None else 0.0
        if wait > 0:
            message = f"key {key.name!r} is over its limit of {key.rate_per_minute} requests a minute"
            return TooManyRequests(message, retry_after_s=wait)
        scope.setdefault("state", {})["api_key"] = key.name
        return None

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

    def _failed(self, address: str) -> None:
        bucket = self.failures.pop(address, None) or TokenBucket(self.failures_per_minute, self.clock)
        bucket.take()
        self.failures[address] = bucket  # the most recent last
        while len(self.failures) > MAX_ADDRESSES:
            self.failures.popitem(last=False)


def client_host(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def is_loopback(host: str | None) -> bool:
    """Whether the caller is on this machine (127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def presented_key(scope: Scope, *, query: bool = True) -> str | None:
    """The key in the headers, else (where `query`) in `?api_key=`."""
    authorization = header(scope, b"authorization")
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    explicit = header(scope, b"x-api-key")
    if explicit:
        return explicit.strip()
    if not query:
        return None
    values = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")).get("api_key")
    return values[0] if values else None


def _public(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)
