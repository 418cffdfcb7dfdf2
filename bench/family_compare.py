"""The gradient-boosted family beside the CNN-LSTM and the baselines, on the real candles, per timeframe:
`python -m bench.family_compare [--timeframes 1h,4h,1d] [--json out.json]` prints MODELS.md's comparison tables
(`--report a.json b.json`: the tables of earlier runs together, without training).

Each timeframe's pairs are pooled as the CNN-LSTM's training pools them: `ohlcv/` (34 pairs, 2024-01 -> 2024-09) with
`ohlcv_2020/` in front for BTC, ETH, SOL and XRP (2020-09 -> 2023-12), one series per pair. The GBM is the served
family's code path: `GbmPlugin` trained by `models.recipe.train_family` (what `signals train gbm` runs) with
`TrainConfig()` defaults (the CNN-LSTM's samples, walk-forward blocks, purge and embargo, and confirmation block,
the newest fifth of the samples), with the market context (the served `gbm`) and without it
(`GbmPlugin(context=False)`); the universe rule (`models.evidence`) is applied over each variant's pair-models with
m = 136, as `pipelines.train_family_models` applies it. The CNN-LSTM's row is read from MODELS.md's walk-forward
table (the same candles and recipe; not retrained here). Nothing is tuned: the learner's hyper-parameters are
`GbmParams()` defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from bench.models_report import ci
from signals.core.timeframes import MODEL_TIMEFRAMES
from signals.data.importer import read_candle_file
from signals.features.context import HIGHER_TIMEFRAMES
from signals.models.evidence import apply_rule

if TYPE_CHECKING:
    from signals.models.plugin import FamilyPlugin

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (SIGNALS_SHARED_DATA overrides, as for the tests).
DATA = Path(os.environ.get("SIGNALS_SHARED_DATA", REPO.parent / "shared" / "data"))
UNIVERSE = 136  # 34 pairs x 4 timeframes: the rule's least m
DAILY_ANCHOR = (0.529, 0.541)  # published daily direction accuracy, 100 large caps


def load_universe(data: Path, timeframe: str) -> dict[str, pd.DataFrame]:
    """Every pair's candles of `timeframe`: `ohlcv/`, with `ohlcv_2020/` in front where it exists."""
    out: dict[str, pd.DataFrame] = {}
    for path in sorted((data / "ohlcv").glob(f"*-{timeframe}.parquet")):
        found = read_candle_file(path)
        parts = [found.candles]
        older = data / "ohlcv_2020" / path.name
        if older.is_file():
            parts.insert(0, read_candle_file(older).candles)
        frame = pd.concat(parts).drop_duplicates("timestamp", keep="last").sort_values("timestamp")
        out[found.symbol] = frame.reset_index(drop=True)
    if not out:
        raise SystemExit(f"no {timeframe} candles under {data / 'ohlcv'}; pass --data or set SIGNALS_SHARED_DATA")
    return out


def run_variant(
    universe: dict[str, pd.DataFrame], higher: dict[str, dict[str, pd.DataFrame]], timeframe: str, context: bool
) -> dict[str, Any]:
    from signals.models.gbm.plugin import Booster, GbmPlugin
    from signals.models.recipe import train_family
    from signals.pipelines import cnn_lstm_candidates

    plugin = GbmPlugin(context=context)
    started = time.perf_counter()
    result = train_family(cast("FamilyPlugin", plugin), universe, timeframe, higher=higher if context else None)
    seconds = time.perf_counter() - started
    edges = apply_rule(cnn_lstm_candidates([result]), UNIVERSE)
    verdicts = Counter(edge["verdict"] for edge in edges.values())
    wf_verdicts = Counter(edge.get("walk_forward_verdict") for edge in edges.values())
    booster = result.fit.learner
    assert isinstance(booster, Booster)
    gains = booster.booster.feature_importance("gain", iteration=booster.best_iteration)
    total = float(gains.sum()) or 1.0
    top = sorted(zip(plugin.features, (float(g) / total for g in gains), strict=True), key=lambda kv: -kv[1])
    pooled = {k: v for k, v in result.walk_forward["pooled"].items() if k not in ("reliability", "coverage")}
    confirm = {k: v for k, v in result.confirmation["pooled"].items() if k not in ("reliability", "coverage")}
    return {
        "timeframe": timeframe,
        "context": context,
        "seconds": round(seconds, 1),
        "pairs": len(result.symbols),
        "walk_forward": pooled,
        "confirmation": confirm,
        "confirmation_span": result.confirmation["span"],
        "folds": result.walk_forward.get("folds", []),
        "rule_final": dict(verdicts),
        "rule_walk_forward": dict(wf_verdicts),
        "health": result.health,
        "best_iteration": booster.best_iteration,
        "temperature": result.fit.temperature,
        "importance": dict(top),
    }


def cnn_lstm_rows(models_md: Path) -> dict[str, dict[str, str]]:
    """MODELS.md's pooled walk-forward table of the CNN-LSTM, by timeframe (cells as printed there)."""
    text = models_md.read_text()
    section = text.split("### Walk-forward, pooled per timeframe", 1)[1].split("###", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


def _expectancy(calls: dict[str, Any]) -> str:
    return ci(calls.get("expectancy"), 2, 100) if calls.get("n") else "–"


def comparison_table(results: list[dict[str, Any]], cnn: dict[str, dict[str, str]]) -> str:
    out = [
        "| timeframe | model | samples | accuracy [95 %] | majority | class freq. S/N/L | reversal | up/down acc. "
        "| top-10 % up/down | log-loss skill | calls | hit rate | break-even | after-cost expectancy, % per call "
        "| pooled verdict | rule: final positive | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tf in MODEL_TIMEFRAMES:
        mine = [r for r in results if r["timeframe"] == tf]
        if not mine:
            continue
        for r in mine:
            w = r["walk_forward"]
            if not w.get("n"):
                out.append(f"| {tf} | GBM {'+ context' if r['context'] else 'alone'} | 0 |" + " – |" * 14)
                continue
            freq = w["class_frequencies"]
            d, calls = w.get("direction") or {}, w["calls"]
            out.append(
                f"| {tf} | GBM {'+ context' if r['context'] else 'alone'} | {w['n']:,} | {ci(w['accuracy'])} "
                f"| {w['majority_share']:.3f} | {freq['SHORT']:.2f}/{freq['NO_TRADE']:.2f}/{freq['LONG']:.2f} "
                f"| {ci(w['baselines']['reversal'])} | {ci(d.get('accuracy'))} | {ci(d.get('top_decile_accuracy'))} "
                f"| {ci(w['log_loss_skill'])} | {calls['n']:,} | {ci(calls['hit_rate']) if calls['n'] else '–'} "
                f"| {calls['break_even_hit_rate'] or 0:.3f} | {_expectancy(calls)} | **{w['edge']['verdict']}** "
                f"| {r['rule_final'].get('positive', 0)} of {r['pairs']} | {r['seconds']:.0f} |"
            )
        row = cnn.get(tf)
        if row:
            out.append(
                f"| {tf} | CNN-LSTM (MODELS.md) | {row['samples']} | {row['accuracy [95 %]']} | {row['majority']} | – "
                f"| {row['reversal']} | {row['up/down acc.']} | {row['top-10 % up/down']} | {row['log-loss skill']} "
                f"| {row['calls']} | {row['hit rate']} | {row['break-even']} "
                f"| {row['after-cost expectancy, % per call']} | {row['edge']} | 0 of 34 | {row['train s']} |"
            )
    return "\n".join(out)


def confirmation_table(results: list[dict[str, Any]]) -> str:
    out = [
        "| timeframe | model | block | samples | accuracy [95 %] | majority | log-loss skill | up/down acc. | calls "
        "| after-cost expectancy, % per call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, span = r["confirmation"], r["confirmation_span"]
        block = f"{str(span.get('first'))[:10]} .. {str(span.get('last'))[:10]}"
        name = f"GBM {'+ context' if r['context'] else 'alone'}"
        if not c.get("n"):
            out.append(f"| {r['timeframe']} | {name} | {block} | 0 |" + " – |" * 6)
            continue
        d = c.get("direction") or {}
        out.append(
            f"| {r['timeframe']} | {name} | {block} | {c['n']:,} | {ci(c['accuracy'])} | {c['majority_share']:.3f} "
            f"| {ci(c['log_loss_skill'])} | {ci(d.get('accuracy'))} | {c['calls']['n']:,} | {_expectancy(c['calls'])} |"
        )
    return "\n".join(out)


def importance_table(results: list[dict[str, Any]], top: int = 8) -> str:
    out = ["| timeframe | model | top features by gain (share of the served booster's total gain) |", "|---|---|---|"]
    for r in results:
        shown = ", ".join(f"{name} {share:.0%}" for name, share in list(r["importance"].items())[:top])
        context_share = sum(
            share for name, share in r["importance"].items() if name.startswith(("rel_", "rank_", "htf", "volatility_"))
        )
        tail = f"; context columns together {context_share:.0%}" if r["context"] else ""
        out.append(f"| {r['timeframe']} | GBM {'+ context' if r['context'] else 'alone'} | {shown}{tail} |")
    return "\n".join(out)


def leak_check(results: list[dict[str, Any]]) -> list[str]:
    """Figures far above the published anchors are a leak until proven otherwise: name them."""
    flags = []
    for r in results:
        d = r["walk_forward"].get("direction") or {}
        acc = (d.get("accuracy") or {}).get("value")
        if acc is not None and acc > DAILY_ANCHOR[1] + 0.04:
            flags.append(f"{r['timeframe']} context={r['context']}: up/down accuracy {acc:.3f} far above the anchors")
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--timeframes", default="1h,4h,1d")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--models-md", type=Path, default=REPO / "MODELS.md")
    parser.add_argument("--report", type=Path, nargs="+", help="print the tables of earlier --json files, no training")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    if args.report:
        for path in args.report:
            results += json.loads(path.read_text())
        order = {tf: i for i, tf in enumerate(MODEL_TIMEFRAMES)}
        results.sort(key=lambda r: (order.get(r["timeframe"], 9), r["context"]))
        args.timeframes = ",".join(dict.fromkeys(r["timeframe"] for r in results))
    for tf in [] if args.report else args.timeframes.split(","):
        universe = load_universe(args.data, tf)
        higher = {h: load_universe(args.data, h) for h in HIGHER_TIMEFRAMES.get(tf, ())}
        for context in (False, True):
            results.append(run_variant(universe, higher, tf, context))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str))
    total = sum(r["seconds"] for r in results) if args.report else time.perf_counter() - started
    parts = [
        "### GBM beside the CNN-LSTM: walk-forward, pooled per timeframe",
        comparison_table(results, cnn_lstm_rows(args.models_md)),
        "",
        "### GBM on the confirmation block (the served booster, once)",
        confirmation_table(results),
        "",
        "### GBM feature importances (gain)",
        importance_table(results),
        "",
        f"Leak check (up/down accuracy more than 4 points above {DAILY_ANCHOR[1]:.3f}): "
        + ("; ".join(leak_check(results)) or "none flagged"),
        f"Command run time: {total:.0f} s ({args.timeframes})"
        + (" (the sum of the trainings in the reports)." if args.report else "."),
    ]
    print("\n".join(parts))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
