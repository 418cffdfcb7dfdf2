"""MODELS.md's tables from the JSON that `signals train cnn-lstm --json`, `signals evaluate --json` and
`signals train ppo --json` print: `python -m bench.models_report --train T.json --evaluate E.json --ppo P.json`.

Generated, not typed: every figure in MODELS.md comes from one of those files.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def ci(figure: Any, digits: int = 3, scale: float = 1.0) -> str:
    if not isinstance(figure, dict) or figure.get("value") is None:
        return "–"
    value, low, high = (
        scale * figure[k] if figure.get(k) is not None else None for k in ("value", "ci_low", "ci_high")
    )
    interval = f" [{low:.{digits}f}, {high:.{digits}f}]" if low is not None and high is not None else ""
    return f"{value:.{digits}f}{interval}"


def verdict_of(row: dict[str, Any]) -> str:
    edge = row.get("edge")
    return str(edge if isinstance(edge, str) else (edge or {}).get("verdict", "–"))


def pooled_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| timeframe | samples | accuracy [95 %] | majority | reversal | persistence | up/down acc. | top-10 % up/down "
        "| reversal up/down | log-loss skill | ECE | calls | hit rate | break-even | after-cost expectancy, % per call "
        "| edge | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tf = r["model"].split()[-1]
        if not r.get("n"):
            out.append(f"| {tf} | 0 | {' | '.join(['–'] * 13)} | {verdict_of(r)} | {r.get('seconds', 0):.0f} |")
            continue
        calls, base, direction = r["calls"], r["baselines"], r.get("direction") or {}
        out.append(
            f"| {tf} | {r['n']:,} | {ci(r['accuracy'])} | {r['majority_share']:.3f} | {ci(base['reversal'])} "
            f"| {ci(base['persistence'])} | {ci(direction.get('accuracy'))} "
            f"| {ci(direction.get('top_decile_accuracy'))} | {ci(direction.get('reversal'))} "
            f"| {ci(r['log_loss_skill'])} | {r['ece']:.3f} | {calls['n']:,} | {ci(calls['hit_rate'])} "
            f"| {calls['break_even_hit_rate']:.3f} | {ci(expectancy_of(calls), 2, 100)} | **{verdict_of(r)}** "
            f"| {r.get('seconds', 0):.0f} |"
        )
    return "\n".join(out)


def expectancy_of(calls: dict[str, Any]) -> Any:
    """The calls' after-cost expectancy (a fraction); results written before the rename call it `expectancy_pct`."""
    return calls.get("expectancy", calls.get("expectancy_pct"))


def per_pair_table(rows: list[dict[str, Any]]) -> str:
    by_tf: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_tf[r["model"].split(":")[0].rsplit("-", 1)[1]].append(r)

    def scored(r: dict[str, Any], key: str) -> bool:
        return bool(r.get("n")) and isinstance(r.get(key), dict) and r[key].get("ci_low") is not None

    out = [
        "| timeframe | pairs | edge verdicts | accuracy above the majority (interval) | below it | "
        "log-loss skill above 0 (interval) |",
        "|---|---|---|---|---|---|",
    ]
    for tf, group in by_tf.items():
        verdicts = ", ".join(f"{k} {n}" for k, n in Counter(verdict_of(r) for r in group).most_common())
        above = sum(scored(r, "accuracy") and r["accuracy"]["ci_low"] > r["majority_share"] for r in group)
        below = sum(scored(r, "accuracy") and r["accuracy"]["ci_high"] < r["majority_share"] for r in group)
        skill = sum(scored(r, "log_loss_skill") and r["log_loss_skill"]["ci_low"] > 0 for r in group)
        out.append(f"| {tf} | {len(group)} | {verdicts} | {above} | {below} | {skill} |")
    return "\n".join(out)


def evaluation_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| model | samples | purged | accuracy [95 %] | majority | reversal | up/down acc. | reversal up/down "
        "| log-loss skill | calls | edge |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r.get("n"):
            out.append(f"| {r['model'].split(':')[0]} | 0 | {r.get('purged', '–')} | {' | '.join(['–'] * 7)} | – |")
            continue
        direction = r.get("direction") or {}
        out.append(
            f"| {r['model'].split(':')[0]} | {r['n']:,} | {r.get('purged', '–')} | {ci(r['accuracy'])} "
            f"| {r['majority_share']:.3f} | {ci(r['baselines']['reversal'])} | {ci(direction.get('accuracy'))} "
            f"| {ci(direction.get('reversal'))} | {ci(r['log_loss_skill'])} | {r['calls']['n']} | {verdict_of(r)} |"
        )
    return "\n".join(out)


def ppo_table(rows: list[dict[str, Any]]) -> str:
    """`trades` in the rows counts fills (each buy and each sell, the final sell included), as the held-out edge's
    `n` counts round trips (fills // 2 over all symbols): both are labelled for what they count."""
    n = len(rows)
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    round_trips = sum(r["trades"] for r in rows) // 2
    return "\n".join(
        [
            "| symbols | policy return (mean) | buy & hold | flat | beats flat | beats buy & hold "
            "| fills per symbol (buys + sells) | round trips, all symbols | max drawdown: policy / buy & hold |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {n} | {100 * mean('policy'):+.1f} % | {100 * mean('buy_hold'):+.1f} % | 0 % "
            f"| {sum(r['policy'] > 0 for r in rows)} / {n} | {sum(r['policy'] > r['buy_hold'] for r in rows)} / {n} "
            f"| {mean('trades'):.0f} | {round_trips:,} "
            f"| {100 * mean('policy_max_dd'):.0f} % / {100 * mean('buy_hold_max_dd'):.0f} % |",
        ]
    )


LONG_HISTORY = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
TIMEFRAME_ORDER = {"15m": 0, "1h": 1, "4h": 2, "1d": 3}


def _cnn_lstm(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [m for m in models if m.get("family") == "cnn-lstm" and isinstance((m.get("edge") or {}).get("rule"), dict)]
    return sorted(rows, key=lambda m: (TIMEFRAME_ORDER.get(m["timeframe"], 9), m["symbol"]))


def _by_timeframe(models: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_tf: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in _cnn_lstm(models):
        by_tf[m["timeframe"]].append(m)
    return by_tf


def rule_table(models: list[dict[str, Any]]) -> str:
    """How far each timeframe's pair-models got through the universe-wide rule (`signals models --json`)."""
    out = [
        "| timeframe | pair-models | walk-forward positive | survive Benjamini-Hochberg | pooled verdict not negative "
        "| confirmed on the held-back block | **final positive** | m | confirmation block |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tf, rows in _by_timeframe(models).items():
        rules = [r["edge"]["rule"] for r in rows]
        wf = [r for r in rows if r["edge"].get("walk_forward_verdict") == "positive"]
        bh = [r for r in wf if r["edge"]["rule"].get("passed_bh")]
        pooled = [r for r in bh if r["edge"]["rule"].get("passed_pooled")]
        confirmed = [r for r in pooled if (r["edge"]["rule"].get("confirmation") or {}).get("passed")]
        final = [r for r in rows if r["edge"].get("verdict") == "positive"]
        blocks = [x.get("confirmation") or {} for x in rules]
        firsts = sorted(str(c["first"]) for c in blocks if c.get("first"))
        lasts = sorted(str(c["last"]) for c in blocks if c.get("last"))
        span = f"{firsts[0][:10]} .. {lasts[-1][:10]}" if firsts and lasts else "–"
        out.append(
            f"| {tf} | {len(rows)} | {len(wf)} | {len(bh)} | {len(pooled)} | {len(confirmed)} | **{len(final)}** "
            f"| {max(r.get('m', 0) for r in rules)} | {span} |"
        )
    return "\n".join(out)


def confirmation_table(models: list[dict[str, Any]]) -> str:
    """Every served pair-model on the confirmation block (the newest fifth of the samples, which no fit saw),
    per timeframe: how many made enough calls to be judged, and what those calls earned."""
    out = [
        "| timeframe | pair-models with calls there | with >= 30 calls | calls "
        "| mean after-cost expectancy, % per call (pairs with >= 30 calls) | one-sided p < 0.05 "
        "| walk-forward p < 0.05 (uncorrected) |",
        "|---|---|---|---|---|---|---|",
    ]
    for tf, rows in _by_timeframe(models).items():
        blocks = [r["edge"]["rule"].get("confirmation") or {} for r in rows]
        called = [b for b in blocks if b.get("n_calls", 0) > 0]
        judged = [b for b in blocks if b.get("n_calls", 0) >= 30 and b.get("expectancy") is not None]
        mean = statistics.fmean(b["expectancy"] for b in judged) * 100 if judged else None
        small_p = sum(1 for b in judged if (b.get("p") or 1) < 0.05)
        wf_small = sum(1 for r in rows if (r["edge"].get("p_value") or 1) < 0.05)
        shown = "–" if mean is None else f"{mean:+.2f}"
        out.append(
            f"| {tf} | {len(called)} | {len(judged)} | {sum(b.get('n_calls', 0) for b in blocks):,} | {shown} "
            f"| {small_p} | {wf_small} |"
        )
    return "\n".join(out)


def long_history_table(models: list[dict[str, Any]], symbols: tuple[str, ...]) -> str:
    """The pairs with four years of history, each timeframe: the walk-forward figures beside the confirmation's."""
    out = [
        "| model | accuracy [95 %] | majority | log-loss skill | walk-forward calls | expectancy, % per call | p "
        "| confirmation calls | expectancy there, % per call | p there | final |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in _cnn_lstm(models):
        if m["symbol"] not in symbols:
            continue
        edge, metrics = m["edge"], m.get("metrics") or {}
        block = edge["rule"].get("confirmation") or {}
        p = edge.get("p_value")
        p_there = block.get("p")
        there = block.get("expectancy")
        out.append(
            f"| {m['model']} | {ci(metrics.get('accuracy'))} | {metrics.get('majority_share', 0):.3f} "
            f"| {ci(metrics.get('log_loss_skill'))} | {edge.get('n', 0):,} "
            f"| {ci({k: edge.get(k) for k in ('value', 'ci_low', 'ci_high')}, 2, 100)} "
            f"| {'–' if p is None else f'{p:.3g}'} | {block.get('n_calls', 0):,} "
            f"| {'–' if there is None else f'{100 * there:+.2f}'} | {'–' if p_there is None else f'{p_there:.3g}'} "
            f"| {edge.get('verdict')} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--evaluate", type=Path)
    parser.add_argument("--ppo", type=Path)
    parser.add_argument("--models", type=Path, help="`signals models --json` of the trained store: the rule's tables")
    args = parser.parse_args(argv)
    trained = json.loads(args.train.read_text())
    pooled = [r for r in trained if r["model"].startswith("pooled")]
    pairs = [r for r in trained if not r["model"].startswith("pooled")]
    parts = ["### Walk-forward, pooled per timeframe", pooled_table(pooled), "", "### Walk-forward, per pair",
             per_pair_table(pairs)]  # fmt: skip
    if args.models:
        models = json.loads(args.models.read_text())
        parts += ["", "### The universe-wide rule, per timeframe", rule_table(models)]
        parts += ["", "### The confirmation period", confirmation_table(models)]
        parts += ["", "### Four years: BTC, ETH, SOL and XRP", long_history_table(models, LONG_HISTORY)]
    if args.evaluate:
        parts += ["", "### Out of time: 2023", evaluation_table(json.loads(args.evaluate.read_text()))]
    if args.ppo:
        parts += ["", "### PPO, held out", ppo_table(json.loads(args.ppo.read_text()))]
    print("\n".join(parts))  # noqa: T201  (a command's report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
