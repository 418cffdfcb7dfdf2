"""The server's own Prometheus metrics (`signals_*`), served by BentoML at `/metrics` beside its request metrics.

`prometheus_client` is imported only when the metrics are first made (in the service's `__init__`): BentoML sets
`PROMETHEUS_MULTIPROC_DIR` in each worker after `service.py` is imported, and prometheus_client picks single- or
multi-process storage when it is imported. One set per process (`server_metrics()`), shared by every engine.
Gauges aggregate across API workers as documented per gauge (`multiprocess_mode`).
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
_METRICS: ServerMetrics | None = None


class ServerMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.produced = Counter(
            "signals_produced", "Signals computed (not served from the cache).", ["timeframe", "mode", "trigger"]
        )
        self.recorded = Counter("signals_recorded", "Ledger records written (new ones only).", ["kind"])
        self.ledger_failures = Counter(
            "signals_ledger_write_failures", "Ledger writes that failed (database down, disk full, ...).", ["kind"]
        )
        self.ledger_dropped = Counter(
            "signals_ledger_dropped",
            "Records given up on: the ledger queue or its retry buffer was full, or the database refused them.",
            ["kind"],
        )
        self.ledger_pending = Gauge(
            "signals_ledger_pending",
            "Records waiting for the ledger database to answer again (per worker, summed).",
            multiprocess_mode="livesum",
        )
        self.cache = Counter("signals_cache_requests", "Signal lookups by result.", ["result"])
        self.over_budget = Counter(
            "signals_over_budget", "Requests answered 503 because their signals outlasted the request budget."
        )
        self.edge_refusals = Counter(
            "signals_edge_refusals",
            "Requests the edge refused before any route ran (host, origin, key, rate, body), by status: with the edge "
            "outside BentoML's middleware (SIGNALS_EDGE_OUTERMOST) BentoML's request metrics do not see them.",
            ["status"],
        )
        self.cache_hit_ratio = Gauge(
            "signals_cache_hit_ratio",
            "Share of signal lookups answered from the cache (per worker).",
            multiprocess_mode="livemax",
        )
        self.scheduler_lag = Gauge(
            "signals_scheduler_lag_seconds",
            "Seconds from a candle's close (the server's start, for the start-up catch-up) to every signal of its "
            "timeframe recorded and cached.",
            ["timeframe"],
            multiprocess_mode="livemax",
        )
        self.staleness = Gauge(
            "signals_data_staleness_seconds",
            "Seconds since the close of the newest candle the timeframe's signals were computed from.",
            ["timeframe"],
            multiprocess_mode="livemin",
        )
        self.refresh_seconds = Histogram(
            "signals_refresh_duration_seconds",
            "Time of one universe refresh of a timeframe, from its candles read to every served signal recorded.",
            ["timeframe"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.refreshes = Counter("signals_refreshes", "Refreshes by outcome.", ["timeframe", "outcome"])
        self.resolved = Counter("signals_resolved", "Signals whose outcome was resolved.", ["timeframe"])
        self.live_hit_rate = Gauge(
            "signals_live_hit_rate",
            "Hit rate of the resolved live signals' most likely outcome, per timeframe.",
            ["timeframe"],
            multiprocess_mode="livemax",
        )
        self._hits = 0
        self._lookups = 0
        self._cache_outcomes = {True: self.cache.labels("hit"), False: self.cache.labels("miss")}  # on every request

    def lookup(self, hit: bool) -> None:
        self._cache_outcomes[hit].inc()
        self._hits += hit
        self._lookups += 1
        self.cache_hit_ratio.set(self._hits / self._lookups)

    def snapshot(self) -> dict[str, Any]:
        """This process's cache figures (health shows them)."""
        return {"cache_lookups": self._lookups, "cache_hits": self._hits}


def server_metrics() -> ServerMetrics:
    """The process's metrics, made on first use (see the module doc for why not at import)."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            _METRICS = ServerMetrics()
        return _METRICS
