"""`python -m bench.live_loop` (part of `make bench`): the candle-close loop and the ledger, measured in one run.

- Universe refresh: 34 pairs x 4 timeframes, one pooled network per timeframe (default size) and, with
  `--families gbm` (the default), one pooled GBM per timeframe beside it (the rule serves one per pair, the other
  runs in shadow: every refresh computes both, the GBM's windows with the market context). A new candle is
  written to every store file; each refresh reads every candle series its models read (phase `read`), then the
  timer runs from "candles read" to "every served signal of the timeframe recorded, cached and pushed"
  (`RefreshReport.seconds`: features, one batched forward, gate, ledger write, cache), for one timeframe (34
  models) and for all four (136); the read before it and the shadows after it are reported beside it. The
  runner is in-process here: a deployment adds one
  HTTP hop per timeframe (~1-2 ms, BENCHMARKS.md "floors").
- The steady state of the live loop (`refresh_warm`): one long-lived engine over a copy of the world's candles;
  each round a day of new candles is appended to every file (the simulated market's continuation, outside the
  timer), the clock moves to that midnight and all four timeframes are refreshed (136 signals). The first two
  rounds warm up (cold reads, then the first close) and are not counted. The heap is frozen once the engine is
  built, as the service does (`gc.freeze`: a gen-2 collection of the loaded heap is 0.2-0.7 s here).
- Ledger write throughput: rows per second through `LedgerWriter.write_now`, SQLite (WAL) and, where PostgreSQL
  is installed, a throwaway server.
- The GBM's forward cost: the families runner's code (`LocalFamilies.forward`, what `families_runner` runs per
  adaptive batch) on 1, 34 and 136 context windows, and the context windows' cost (`serving.inputs`).
- The ledger's cost on `/predict`: the engine's warm path (cache hit) with and without a ledger writer, and the
  cold path (a signal computed and queued for recording) with and without it, and with a writer that writes each
  row as it comes (`linger_s=0`, the writer before issue 22), in-process, interleaved in rounds.
Ratios come from one run; absolute numbers move with the machine's load (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.live_loop")
REPO_ROOT = Path(__file__).resolve().parents[1]
EXCHANGE = "synthetic"
END = "2026-11-20"
TIMEFRAMES = ("15m", "1h", "4h", "1d")


def build_world(work: Path, symbols: tuple[str, ...], days: int, families: tuple[str, ...] = ()) -> dict[str, float]:
    """Candles for every pair and timeframe, one pooled network per timeframe (one epoch: cost, not skill), and one
    pooled model per timeframe of each installed family named (no walk-forward folds: cost, not skill)."""
    import pandas as pd
    import torch

    from signals.data.store import CandleStore
    from signals.models.cnn_lstm.training import TrainConfig
    from signals.pipelines import train_cnn_lstm_models, write_synthetic_market

    store = CandleStore(work / "data")
    timings = {}
    started = time.perf_counter()
    write_synthetic_market(store, symbols, TIMEFRAMES, days, seed=11, end=pd.Timestamp(END, tz="UTC"))
    timings["candles_s"] = time.perf_counter() - started
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.perf_counter()
    config = TrainConfig(epochs=1, folds=0, max_bars=1500, seed=1)
    for timeframe in TIMEFRAMES:
        train_cnn_lstm_models(store, EXCHANGE, symbols, timeframe, config)
    timings["train_s"] = time.perf_counter() - started
    if families:
        from signals.models.plugin import discover
        from signals.pipelines import train_family_models

        for name in families:
            started = time.perf_counter()
            train_family_models(discover().plugins[name], store, EXCHANGE, symbols, TIMEFRAMES, config)
            timings[f"train_{name}_s"] = time.perf_counter() - started
    return timings


class StandingClock:
    """The refreshes' clock: just after the world's last close, standing still (a retry's backoff is a real wait)."""

    def __init__(self, at: Any) -> None:
        self.at = at

    def now(self) -> Any:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def refresh_timings(work: Path, symbols: tuple[str, ...], rounds: int) -> dict[str, Any]:
    """Each round: a fresh ledger and a cold engine (nothing cached, every tail read from the store), the clock
    just after the world's last candles closed (all four timeframes close together at midnight)."""
    import pandas as pd

    from signals.core.metrics import server_metrics
    from signals.core.settings import Settings
    from signals.ledger.store import Ledger
    from signals.ledger.writer import LedgerWriter
    from signals.live.scheduler import Scheduler
    from signals.models.local import LocalCnnLstm, LocalPpo
    from signals.serving.engine import SignalEngine
    from signals.track_record.versions import current_catalog

    base = Settings(
        data_dir=work / "data", exchange=EXCHANGE, universe=list(symbols), timeframes=list(TIMEFRAMES), device="cpu"
    )
    cnn, ppo = LocalCnnLstm(base), LocalPpo(base)
    now = pd.Timestamp(END, tz="UTC") + pd.Timedelta(seconds=1)
    one: list[float] = []
    universe: list[float] = []
    reads: list[float] = []
    shadows: list[float] = []
    phases: list[dict[str, float]] = []
    for round_ in range(rounds):
        settings = base.model_copy(update={"database_url": f"sqlite:///{work / f'refresh-{round_}.db'}"})
        ledger = Ledger.from_settings(settings)
        ledger.migrate()
        writer = LedgerWriter(ledger, server_metrics())
        engine = SignalEngine.offline(
            settings, current_catalog(settings, ledger), cnn_lstm=cnn, ppo=ppo, writer=writer, clock=lambda: now
        )
        scheduler = Scheduler(engine, ledger, writer, settings, clock=StandingClock(now))
        report = asyncio.run(scheduler.refresh("1h"))
        one.append(report.seconds)
        phases.append(report.phases)
        assert report.signals == len(symbols), report
        reports = asyncio.run(_refresh_all(scheduler))
        universe.append(sum(r.seconds for r in reports))
        reads.append(report.read_seconds + sum(r.read_seconds for r in reports))
        shadows.append(report.shadow_seconds + sum(r.shadow_seconds for r in reports))
        assert sum(r.signals for r in reports) == 3 * len(symbols), [r.as_dict() for r in reports]
        writer.close()
        ledger.close()
    return {
        "pairs": len(symbols),
        "one_timeframe_ms": _summary(one),
        "other_three_timeframes_ms": _summary(universe),
        "universe_136_ms_median": round(1000 * (statistics.median(one) + statistics.median(universe)), 1),
        "universe_read_ms": _summary(reads),
        "universe_shadows_ms": _summary(shadows),
        "one_timeframe_phases_ms_median": {
            name: round(1000 * statistics.median(p[name] for p in phases), 1) for name in phases[0]
        },
    }


class MovingClock(StandingClock):
    """A standing clock that the bench moves on, round by round."""


def family_serves_half(catalog: Any, family: str) -> Any:
    """`catalog` with `family` served for every other pair of each timeframe (its other family in shadow): the
    refresh when both families serve (the bench's models have no walk-forward evidence, so the rule serves the
    CNN-LSTM everywhere)."""
    from dataclasses import replace

    from signals.serving.catalog import ModelCatalog

    served, shadows = [], []
    pairs: dict[tuple[Any, Any], list[Any]] = {}
    for entry in (*catalog.entries, *catalog.shadows):
        if entry.family == "ppo":
            served.append(entry)
        else:
            pairs.setdefault((entry.symbol, entry.timeframe), []).append(entry)
    symbols = sorted({symbol for symbol, _ in pairs})
    for (symbol, _), entries in sorted(pairs.items()):
        wanted = family if symbols.index(symbol) % 2 else None
        winner = next((e for e in entries if e.family == wanted), None) or next(
            e for e in entries if e.role == "served"
        )
        served.append(replace(winner, role="served", lost_to=None))
        shadows += [replace(e, role="shadow", lost_to=winner.family) for e in entries if e is not winner]
    return ModelCatalog(served, shadows)


def warm_refresh_timings(
    work: Path, symbols: tuple[str, ...], rounds: int, *, half_served_by: str | None = None
) -> dict[str, Any]:
    """The live loop's steady state (module docstring): the universe refresh after a close, with every file's tail
    already in memory; `half_served_by`: that family serves every other pair (`family_serves_half`)."""
    import pandas as pd

    from signals.core.metrics import server_metrics
    from signals.core.settings import Settings
    from signals.data.store import CandleStore
    from signals.data.synthetic import extend_stored_market
    from signals.ledger.store import Ledger
    from signals.ledger.writer import LedgerWriter
    from signals.live.scheduler import Scheduler
    from signals.models.local import LocalCnnLstm, LocalPpo
    from signals.serving.engine import SignalEngine
    from signals.track_record.versions import current_catalog

    warmup = 2
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(work / "data", data)
        store = CandleStore(data)
        settings = Settings(
            data_dir=data,
            exchange=EXCHANGE,
            universe=list(symbols),
            timeframes=list(TIMEFRAMES),
            device="cpu",
            database_url=f"sqlite:///{Path(tmp) / 'warm.db'}",
        )
        ledger = Ledger.from_settings(settings)
        ledger.migrate()
        writer = LedgerWriter(ledger, server_metrics())
        clock = MovingClock(pd.Timestamp(END, tz="UTC") + pd.Timedelta(seconds=1))
        catalog = current_catalog(settings, ledger)
        if half_served_by:
            catalog = family_serves_half(catalog, half_served_by)
        engine = SignalEngine.offline(
            settings,
            catalog,
            cnn_lstm=LocalCnnLstm(settings),
            ppo=LocalPpo(settings),
            writer=writer,
            clock=clock.now,
        )
        scheduler = Scheduler(engine, ledger, writer, settings, clock=clock)
        gc.collect()
        gc.freeze()  # as the service does once started (service.py): the loaded heap out of gen-2 collections

        def append_day() -> None:
            for symbol in symbols:
                extend_stored_market(store, EXCHANGE, symbol, TIMEFRAMES, clock.at, seed=11, planted={})

        read_s: list[float] = []
        shadow_s: list[float] = []

        async def loop() -> tuple[list[float], list[dict[str, dict[str, float]]]]:
            totals: list[float] = []
            phases: list[dict[str, dict[str, float]]] = []
            for round_ in range(rounds + warmup):
                if round_:
                    clock.at += pd.Timedelta(days=1)
                    await asyncio.to_thread(append_day)
                reports = [await scheduler.refresh(tf) for tf in TIMEFRAMES]
                assert sum(r.signals for r in reports) == 4 * len(symbols), [r.as_dict() for r in reports]
                if round_ >= warmup:
                    totals.append(sum(r.seconds for r in reports))
                    read_s.append(sum(r.read_seconds for r in reports))
                    shadow_s.append(sum(r.shadow_seconds for r in reports))
                    phases.append({r.timeframe: r.phases for r in reports})
            return totals, phases

        totals, phases = asyncio.run(loop())
        gc.unfreeze()
        reads = getattr(getattr(engine.market, "tails", None), "reads", None)
        writer.close()
        ledger.close()
    return {
        "pairs": len(symbols),
        "served": {
            family: sum(e.family == family for e in catalog.entries)
            for family in sorted({e.family for e in catalog.entries})
        },
        "universe_136_ms": _summary(totals),
        "universe_read_ms": _summary(read_s),
        "universe_shadows_ms": _summary(shadow_s),
        "phases_ms_median": {
            tf: {name: round(1000 * statistics.median(p[tf][name] for p in phases), 1) for name in phases[0][tf]}
            for tf in TIMEFRAMES
        },
        "tail_reads": reads,
    }


async def _refresh_all(scheduler: Any) -> list[Any]:
    return [await scheduler.refresh(tf) for tf in ("15m", "4h", "1d")]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"min": round(ms[0], 1), "median": round(statistics.median(ms), 1), "max": round(ms[-1], 1), "n": len(ms)}


def family_forward(work: Path, symbols: tuple[str, ...], repeats: int) -> dict[str, Any]:
    """The families runner's forward (`LocalFamilies.forward`) on 1, len(symbols) and 4 x len(symbols) of the
    served GBMs' context windows, and the windows' own cost (cold: every tail read; warm: the universe cached)."""
    import pandas as pd

    from signals.contract.wire import WindowRequest
    from signals.core.settings import Settings
    from signals.models.local import LocalFamilies
    from signals.models.plugin import model_name
    from signals.serving.inputs import ModelInputs
    from signals.serving.market import MarketData

    settings = Settings(
        data_dir=work / "data", exchange=EXCHANGE, universe=list(symbols), timeframes=list(TIMEFRAMES), device="cpu"
    )
    families = LocalFamilies(settings)
    requests: list[WindowRequest] = []
    window_ms: dict[str, list[float]] = {"cold": [], "warm": []}
    for timeframe in TIMEFRAMES:
        market = MarketData(settings, clock=lambda: pd.Timestamp(END, tz="UTC"))
        inputs = ModelInputs(market)
        for index, symbol in enumerate(symbols):
            name = model_name("gbm", symbol, timeframe)
            model = families.sets["gbm"].models.get(name)
            if model is None:
                continue
            snapshot = asyncio.run(market.snapshot(symbol, timeframe))
            started = time.perf_counter()
            window = asyncio.run(inputs.window("gbm", model.stored.metadata, symbol, timeframe, snapshot))
            window_ms["cold" if index == 0 else "warm"].append(1000 * (time.perf_counter() - started))
            requests.append(WindowRequest(model=name, window=window))
    out: dict[str, Any] = {
        "models": len(requests),
        "context_window_ms": {k: _summary([v / 1000 for v in vs]) for k, vs in window_ms.items() if vs},
    }
    for size in (1, len(symbols), len(requests)):
        batch = requests[:size]
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            families.forward(batch)
            times.append(time.perf_counter() - started)
        out[f"forward_{size}_ms"] = _summary(times)
    return out


def ledger_throughput(url: str, rows: int) -> dict[str, Any]:
    from signals.core.metrics import server_metrics
    from signals.ledger.store import Ledger
    from signals.ledger.writer import LedgerWriter

    ledger = Ledger(url)
    ledger.migrate()
    writer = LedgerWriter(ledger, server_metrics())
    template = {
        "model_name": "cnn-lstm-btc-usdt-1h",
        "model_version": "bench",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "mode": "live",
        "p_short": 0.3,
        "p_no_trade": 0.3,
        "p_long": 0.4,
        "direction": "LONG",
        "confidence": 0.4,
        "actionable": False,
        "abstain_reason": "no edge",
        "threshold": None,
        "edge_verdict": "none",
        "horizon_bars": 10,
        "expires_ms": 0,
        "close": 1.0,
        "risk": 0.01,
        "reversal": 0,
        "persistence": 1,
        "features_hash": "0" * 64,
        "data_source": "bench",
        "recorded_ms": 0,
        "payload": {"x": 1},
    }
    batch = 500
    started = time.perf_counter()
    for start in range(0, rows, batch):
        writer.write_now("signal", [{**template, "candle_ms": i} for i in range(start, min(start + batch, rows))])
    seconds = time.perf_counter() - started
    writer.close()
    ledger.close()
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def predict_cost(work: Path, symbols: tuple[str, ...], calls: int) -> dict[str, Any]:
    """Engine time per /predict, warm (cache hit) and cold (cache off), with and without a ledger writer."""
    from signals.core.metrics import server_metrics
    from signals.core.settings import Settings
    from signals.ledger.store import Ledger
    from signals.ledger.writer import LedgerWriter
    from signals.models.local import LocalCnnLstm, LocalPpo
    from signals.serving.engine import SignalEngine
    from signals.track_record.versions import current_catalog

    base = Settings(
        data_dir=work / "data",
        exchange=EXCHANGE,
        universe=list(symbols),
        timeframes=list(TIMEFRAMES),
        device="cpu",
    )
    cnn, ppo = LocalCnnLstm(base), LocalPpo(base)
    ledger = Ledger(f"sqlite:///{work / 'predict-cost.db'}")
    ledger.migrate()
    writer = LedgerWriter(ledger, server_metrics())
    # The writer as it was before it gathered bursts (a wake-up and a transaction per row): the same run's baseline.
    per_row = LedgerWriter(ledger, server_metrics(), linger_s=0)
    engines: dict[str, SignalEngine] = {}
    for label, cache, engine_writer in (
        ("warm_without_ledger", 4096, None),
        ("warm_with_ledger", 4096, writer),
        ("cold_without_ledger", 0, None),
        ("cold_with_ledger", 0, writer),
        ("cold_with_ledger_per_row_writes", 0, per_row),
    ):
        settings = base.model_copy(update={"signal_cache_size": cache})
        engines[label] = SignalEngine.offline(
            settings, current_catalog(settings, None), cnn_lstm=cnn, ppo=ppo, writer=engine_writer
        )
        asyncio.run(engines[label].predict(symbols[0], "1h"))  # warm the market tail (and the cache)

    async def loop(engine: SignalEngine, n: int) -> list[float]:
        out = []
        for i in range(n):
            started = time.perf_counter()
            await engine.predict(symbols[i % len(symbols)], "1h")
            out.append(time.perf_counter() - started)
        return out

    # Interleaved in rounds, so that the box's load moves every variant alike.
    results: dict[str, list[float]] = {label: [] for label in engines}
    rounds = 10
    for _ in range(rounds):
        for label, engine in engines.items():
            results[label] += asyncio.run(loop(engine, max(1, calls // rounds)))
    writer.close()
    per_row.close()
    ledger.close()
    return {
        key: {"median_us": round(1e6 * statistics.median(v), 1), "p90_us": round(1e6 * sorted(v)[int(0.9 * len(v))], 1)}
        for key, v in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=34)
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--families", default="gbm", help="installed families trained beside the CNN-LSTM ('' none)")
    parser.add_argument("--parts", default="refresh,forward,ledger,predict", help="which measurements to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="bench-live-loop-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from signals.core.settings import DEFAULT_UNIVERSE
    from signals.models.device import configure_torch

    symbols = tuple(DEFAULT_UNIVERSE[: args.pairs])
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    families = tuple(name for name in args.families.split(",") if name)
    parts = set(args.parts.split(","))
    results["families"] = ["cnn-lstm", *families]
    results["world"] = build_world(work, symbols, args.days, families)
    configure_torch()
    if "refresh" in parts:
        results["refresh"] = refresh_timings(work, symbols, args.rounds)
        results["refresh_warm"] = warm_refresh_timings(work, symbols, args.rounds)
        for name in families:  # the same loop with that family serving half the pairs
            results[f"refresh_warm_{name}_serves_half"] = warm_refresh_timings(
                work, symbols, args.rounds, half_served_by=name
            )
    if "forward" in parts and "gbm" in families:
        results["gbm_forward"] = family_forward(work, symbols, args.rounds * 4)
    if "ledger" in parts:
        results["ledger_sqlite"] = ledger_throughput(f"sqlite:///{work / 'throughput.db'}", args.rows)
        try:
            from tests.support.postgres import binaries, postgres_server

            if binaries() is not None:
                with postgres_server() as server:
                    results["ledger_postgresql"] = ledger_throughput(server.create_database("bench"), args.rows)
        except Exception as error:  # PostgreSQL is optional here
            results["ledger_postgresql"] = {"error": str(error)}
    if "predict" in parts:
        results["predict_cost"] = predict_cost(work, symbols, args.calls)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"live-loop-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
