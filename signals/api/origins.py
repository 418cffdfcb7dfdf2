"""Which names and which pages may reach the server: the Host header and the Origin header.

A page on another site cannot read the server's answers through CORS, but two ways remain: DNS rebinding (the
page's own name made to point at 127.0.0.1: the browser then calls it same-origin, with that name in `Host`) and
requests that need no answer (a form or a `no-cors` POST, a WebSocket, which CORS does not cover at all). So:
- `Host` must name one of `SIGNALS_ALLOWED_HOSTS` (default: the loopback names, any port): 400 otherwise;
- `Origin`, when a browser sends one, must be the server's own (scheme aside, the same host and port as `Host`)
  or one of `SIGNALS_ALLOWED_ORIGINS` (default: the CORS origins): 403 otherwise, the WebSocket's handshake
  included (closed before it is accepted).
The probes and `/metrics` answer any host and origin: a kubelet or Prometheus calls them by the pod's address.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from signals.api.middleware import Scope, header
from signals.core.errors import Forbidden, InvalidInput, SignalsError

UNGUARDED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
SEEN_HOSTS = 256


def host_name(value: str) -> str:
    """`value` (a Host header or an allowed name) without its port, lower case; IPv6 stays in brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    """The Host and Origin checks of the module doc, as a function of the request's head."""

    def __init__(self, hosts: Sequence[str], origins: Sequence[str]) -> None:
        self.any_host = "*" in hosts
        self.hosts = frozenset(host_name(h) for h in hosts if not h.startswith("."))
        self.domains = tuple(h.lower() for h in hosts if h.startswith("."))
        self.any_origin = "*" in origins
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in origins)
        self._seen: dict[str, bool] = {}  # Host header -> allowed: each request's check is one lookup

    def refusal(self, scope: Scope) -> SignalsError | None:
        if scope.get("path") in UNGUARDED_PATHS:
            return None
        host = header(scope, b"host")
        if host is not None and not self.host_allowed(host):
            return InvalidInput(
                f"the Host {host[:80]!r} is not one this server answers to; add its name to SIGNALS_ALLOWED_HOSTS"
            )
        origin = header(scope, b"origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return Forbidden(
                f"requests from pages of {origin[:80]!r} are not accepted; add the origin to SIGNALS_ALLOWED_ORIGINS "
                "(or SIGNALS_CORS_ORIGINS)"
            )
        return None

    def host_allowed(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            name = host_name(host)
            known = self.any_host or name in self.hosts or any(name.endswith(d) or name == d[1:] for d in self.domains)
            if len(self._seen) < SEEN_HOSTS:  # the few names of a deployment, not every name a scanner sends
                self._seen[host] = known
        return known

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        own = urlsplit(origin).netloc if "://" in origin else None  # "null" (a sandboxed page, a file) is nobody's
        return bool(own) and host is not None and own == host.strip().lower()
