"""The candle-close loop with real servers: every worker of every server asks for each refresh, exactly one leads.

At start-up each worker refreshes the current candle of every timeframe (the catch-up), at the same moment as
its siblings: the strongest contention the lease meets. Two API workers share a SQLite ledger (WAL); two servers
share a real PostgreSQL database. Each (timeframe, candle) must be refreshed once, by one holder, and the signals
recorded once; /metrics shows the leader and follower counts of every worker together.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from signals.core.timeframes import timeframe_seconds
from signals.ledger.schema import refresh_leases, signal_records
from tests.support.postgres import Postgres
from tests.support.servers import Server, bentoml_server, child_pids
from tests.support.world import World, copy_world, new_candle

pytestmark = pytest.mark.slow
TIMEFRAMES = ("15m", "1h")
SCHEDULER_DELAY_S = 5.0  # Settings' default: a close at 10:00 is refreshed at 10:00:05
AFTER_THE_REFRESH_S = 60.0  # where the servers' clock starts: this long after the last refresh of the 15m candles


@pytest.fixture(scope="module")
def world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return copy_world(trained_world, tmp_path_factory.mktemp("loop-data")).narrowed(timeframes=TIMEFRAMES)


def loop_env(world: World, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **world.env(),
        "SIGNALS_SCHEDULER": "true",
        "SIGNALS_SCHEDULER_DELAY_S": str(SCHEDULER_DELAY_S),
        "SIGNALS_DATABASE_URL": database_url,
        "SIGNALS_CLOCK_OFFSET_S": str(clock_offset_clear_of_closes()),
        **extra,
    }


def clock_offset_clear_of_closes(now: float | None = None) -> float:
    """The shift (SIGNALS_CLOCK_OFFSET_S, tests only) that starts the servers' clock a minute after the current 15m
    candle's refresh: the next close is 14 minutes away on that clock, longer than either test runs.

    On the bare wall clock a 15m close during the test would add a refresh (a third lease, more leader and follower
    counts), and workers starting on either side of a close would catch up on different candles. Both are right
    behaviour, but would make the exact counts below depend on the time of day; the shift makes them not, with no
    wait for a close to pass. Servers sharing one ledger get the same shift (one `loop_env`).
    """
    step = min(timeframe_seconds(tf) for tf in TIMEFRAMES)
    now = time.time() if now is None else now
    return now // step * step + SCHEDULER_DELAY_S + AFTER_THE_REFRESH_S - now


def test_the_servers_clock_starts_clear_of_a_close() -> None:
    """The shift itself: from any time of day, the shifted clock is a minute past a 15m refresh."""
    step = min(timeframe_seconds(tf) for tf in TIMEFRAMES)
    for now in (0.0, 30.0, 64.5, 65.0, 899.5, 1_795_000_123.5):
        offset = clock_offset_clear_of_closes(now)
        assert (now + offset) % step == SCHEDULER_DELAY_S + AFTER_THE_REFRESH_S, now
        assert -step < offset <= SCHEDULER_DELAY_S + AFTER_THE_REFRESH_S, now  # the same or the previous candle


def settled_leases(url: str, timeout: float = 90) -> list[dict]:
    """The lease rows once every timeframe's catch-up refresh is done."""
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                rows = [dict(r) for r in connection.execute(sa.select(refresh_leases)).mappings()]
            if len(rows) == len(TIMEFRAMES) and all(r["status"] == "done" for r in rows):
                return rows
            time.sleep(0.3)
    finally:
        engine.dispose()
    pytest.fail(f"the catch-up refreshes did not finish: {rows}")


def refresh_counts(urls: list[str]) -> dict[str, float]:
    """signals_refreshes_total by role, summed over the given servers' /metrics."""
    totals: dict[str, float] = {}
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        for role, value in re.findall(r'signals_refreshes_total\{[^}]*outcome="(\w+)"[^}]*\} ([0-9.e+]+)', text):
            totals[role] = totals.get(role, 0.0) + float(value)
    return totals


def assert_refreshed_once(url: str, leases: list[dict]) -> None:
    assert {(lease["timeframe"], lease["attempts"]) for lease in leases} == {(tf, 1) for tf in TIMEFRAMES}
    assert all(lease["detail"]["role"] == "leader" for lease in leases)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        per_key = (
            connection.execute(
                sa.select(sa.func.count())
                .select_from(signal_records)
                .group_by(signal_records.c.model_name, signal_records.c.model_version, signal_records.c.candle_ms)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert per_key and set(per_key) == {1}  # every signal recorded once


def test_two_api_workers_refresh_each_candle_once(world: World, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with bentoml_server(loop_env(world, url, SIGNALS_API_WORKERS="2"), tmp_path) as server:
        leases = settled_leases(url)
        assert_refreshed_once(url, leases)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the follower finishes after the leader
            counts = refresh_counts([server.url])
            if counts.get("follower", 0) >= len(TIMEFRAMES):
                break
            time.sleep(0.3)
        assert counts == {"leader": len(TIMEFRAMES), "follower": len(TIMEFRAMES)}, counts
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        for family in (
            "signals_produced_total",
            "signals_recorded_total",
            "signals_scheduler_lag_seconds",
            "signals_cache_requests_total",
            "signals_refresh_duration_seconds",
        ):
            assert family in metrics, family
        status = httpx.post(f"{server.url}/status", json={}, timeout=30).json()
        assert status["ledger"]["status"] == "ok" and status["scheduler"]["running"] is True


def test_two_servers_on_one_postgresql_refresh_each_candle_once(
    world: World, postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.create_database("loop_two_servers")
    env = loop_env(world, url)
    with bentoml_server(env, tmp_path, name="a") as first, bentoml_server(env, tmp_path, name="b") as second:
        leases = settled_leases(url)
        assert_refreshed_once(url, leases)
        # Not /metrics: servers sharing one BENTOML_HOME share (and reset) its Prometheus directory. Each server's
        # /status says what its scheduler did; the second started after the first had led every refresh.
        roles = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            roles = {
                name: {
                    tf: r["role"]
                    for tf, r in httpx.post(f"{s.url}/status", json={}, timeout=30).json()["scheduler"]["last"].items()
                }
                for name, s in (("a", first), ("b", second))
            }
            if all(len(r) == len(TIMEFRAMES) for r in roles.values()):
                break
            time.sleep(0.3)
        assert roles == {"a": dict.fromkeys(TIMEFRAMES, "leader"), "b": dict.fromkeys(TIMEFRAMES, "follower")}, roles
        assert {lease["holder"] for lease in leases} == {
            httpx.post(f"{first.url}/status", json={}).json()["scheduler"]["holder"]
        }
        one = httpx.post(f"{first.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=30).json()
        two = httpx.post(f"{second.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=30).json()
        assert one["probabilities"] == two["probabilities"] and one["candle_time"] == two["candle_time"]

        # Kill the replica that led every refresh (SIGKILL, every process of it): nothing it recorded is lost, and
        # the other replica serves the same signals, records a new candle once, and answers its history.
        before = record_keys(url)
        kill_replica(first)
        assert (
            httpx.post(f"{second.url}/predict", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=30).json()[
                "probabilities"
            ]
            == one["probabilities"]
        )
        new_candle(world, "1h")
        refreshed = httpx.post(f"{second.url}/admin/refresh", json={"timeframe": "1h"}, timeout=60).json()
        assert refreshed["recorded"] == refreshed["signals"] > 0
        after = record_keys(url)
        assert before < after and len(after) == len(before) + refreshed["signals"]  # kept, plus each new one once
        history = httpx.post(f"{second.url}/history", json={"symbol": "BTC/USDT", "timeframe": "1h"}, timeout=30).json()
        assert len(history["items"]) >= 2  # the killed replica's record and the survivor's


def record_keys(url: str) -> set[tuple[str, str, int]]:
    """(model version, symbol, candle) of every recorded signal; the count equals the set's size (each once)."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(signal_records.c.model_version, signal_records.c.symbol, signal_records.c.candle_ms)
        ).all()
    engine.dispose()
    keys = {(str(v), str(s), int(c)) for v, s, c in rows}
    assert len(keys) == len(rows)
    return keys


def kill_replica(server: Server) -> None:
    """SIGKILL a server and every worker of it (the workers run in their own process groups)."""
    for pid in [*child_pids(server.process.pid), server.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(10)
