"""One WARNING at start when the server listens beyond this machine with no API keys: the read routes are then
open to whoever reaches the port (the admin routes stay closed to them: `access.py`).

BentoML's workers receive their listening socket from the arbiter and never learn the `--host`, so the socket
itself is asked (psutil, a BentoML dependency): its address is what callers reach.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

import psutil

from signals.core.settings import Settings

logger = logging.getLogger(__name__)


def listening_addresses() -> list[str]:
    """The local addresses of this process's listening TCP sockets."""
    try:
        connections = psutil.Process().net_connections(kind="inet")
    except (psutil.Error, OSError):  # not allowed to look: nothing to say
        return []
    return [str(c.laddr[0]) for c in connections if c.status == psutil.CONN_LISTEN and c.laddr]


def beyond_loopback(addresses: Iterable[str]) -> list[str]:
    """The addresses a caller on another machine could reach (a wildcard such as 0.0.0.0 included)."""
    exposed = []
    for address in addresses:
        try:
            if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
                exposed.append(address)
        except ValueError:
            exposed.append(address)
    return sorted(set(exposed))


def warn_if_exposed(settings: Settings, addresses: Iterable[str] | None = None) -> bool:
    """Log the WARNING (once per call: the service calls it in its first worker) when it applies; True if it did."""
    if settings.api_keys:
        return False
    exposed = beyond_loopback(listening_addresses() if addresses is None else addresses)
    if not exposed:
        return False
    logger.warning(
        "listening on %s with no API keys: anyone who reaches the port can read signals and the track record "
        "(the admin routes answer only this machine); set SIGNALS_API_KEYS (`signals keys new`) or serve on "
        "127.0.0.1",
        ", ".join(exposed),
    )
    return True
