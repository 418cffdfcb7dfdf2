"""The live scorecard: how the recorded signals did, with the same figures as the walk-forward (`skill.score`)
plus Wilson intervals on the counts, and a verdict.

Verdict: `insufficient_data` under MIN_CALLS resolved actionable calls (or MIN_SAMPLES resolved signals);
`positive` / `negative` when the 95 % interval of the actionable calls' after-cost expectancy lies above / below
zero; `no_evidence` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from signals.core.timeframes import timeframe_seconds
from signals.core.vocab import NO_TRADE
from signals.ledger.rows import SignalRecord
from signals.models.skill import Scored, score, wilson_interval

CLASS = {"SHORT": 0, "NO_TRADE": 1, "LONG": 2}
DEFAULT_SCORECARD_MODE: Final = "live"  # what the server served as it happened; other modes only when asked
MODE_PREFERENCE: Final = ("live", "backfill", "shadow")  # one record per candle: the first mode of these present
VERDICTS: Final = {
    "positive": "positive",
    "negative": "negative",
    "none": "no_evidence",
    "insufficient_data": "insufficient_data",
}


def scored_from_records(rows: Sequence[SignalRecord]) -> tuple[Scored, np.ndarray]:
    """The resolved records as `skill.score` reads them, and the calls the server actually made (NO_TRADE where
    the signal was not actionable; a paper call, withheld only by probation, is a call). Blocks: each record's
    horizon of calendar time, so overlapping plans share one."""
    probabilities = np.array([[r["p_short"], r["p_no_trade"], r["p_long"]] for r in rows], dtype=np.float64)
    block = np.array(
        [
            r["candle_ms"] // (max(r.get("horizon_bars") or 1, 1) * timeframe_seconds(r["timeframe"]) * 1000)
            for r in rows
        ],
        dtype=np.int64,
    )
    calls = np.array(
        [CLASS[r["direction"]] if r["actionable"] or r.get("paper") else NO_TRADE for r in rows], dtype=int
    )
    scored = Scored(
        probabilities=probabilities.reshape(-1, 3),
        labels=np.array([r["outcome_label"] for r in rows], dtype=int),
        block=block,
        long_return=np.array([r["long_return"] for r in rows], dtype=np.float64),
        short_return=np.array([r["short_return"] for r in rows], dtype=np.float64),
        risk=np.array([r["risk"] if r["risk"] is not None else np.nan for r in rows], dtype=np.float64),
        reversal=np.array([NO_TRADE if r["reversal"] is None else r["reversal"] for r in rows], dtype=int),
        persistence=np.array([NO_TRADE if r["persistence"] is None else r["persistence"] for r in rows], dtype=int),
    )
    return scored, calls


def one_per_candle(rows: Sequence[SignalRecord]) -> list[SignalRecord]:
    """One record per (model, version, symbol, timeframe, candle), the live one where there are several (a backfill
    and the live run may both record a candle), in the rows' order."""
    rank = {mode: i for i, mode in enumerate(MODE_PREFERENCE)}
    best: dict[tuple[Any, ...], SignalRecord] = {}
    for row in rows:
        key = (row["model_name"], row["model_version"], row["symbol"], row["timeframe"], row["candle_ms"])
        kept = best.get(key)
        if kept is None or rank.get(row["mode"], len(rank)) < rank.get(kept["mode"], len(rank)):
            best[key] = row
    chosen = {id(row) for row in best.values()}
    return [row for row in rows if id(row) in chosen]


def scorecard(rows: Sequence[SignalRecord], *, cost: float, filters: dict[str, Any]) -> dict[str, Any]:
    """The scorecard of resolved records (see the module doc); JSON-ready."""
    rows = one_per_candle(rows)
    modes = sorted({r["mode"] for r in rows})
    base: dict[str, Any] = {"filters": filters, "modes": modes, "n": len(rows)}
    if not rows:
        return {**base, "verdict": "insufficient_data", "reason": "no resolved signal matches the filters"}
    scored, calls = scored_from_records(rows)
    report = score(scored, threshold=None, calls=calls, cost=cost)
    labels, predicted = scored.labels, scored.probabilities.argmax(axis=1)
    called = calls != NO_TRADE
    recalls = [
        wilson_interval(int(((predicted == k) & (labels == k)).sum()), int((labels == k).sum())) for k in range(3)
    ]
    present = [r for r, k in zip(recalls, range(3), strict=True) if (labels == k).any()]
    report["accuracy_wilson"] = wilson_interval(int((predicted == labels).sum()), len(labels)).as_dict()
    report["balanced_accuracy_wilson"] = {
        "value": float(np.mean([r.value for r in present])),
        "ci_low": float(np.mean([r.low for r in present])),
        "ci_high": float(np.mean([r.high for r in present])),
    }
    report["calls"]["hit_rate_wilson"] = wilson_interval(
        int((calls[called] == labels[called]).sum()), int(called.sum())
    ).as_dict()
    verdict = VERDICTS[report["edge"]["verdict"]]
    return {
        **base,
        **report,
        "verdict": verdict,
        "edge": {**report["edge"], "source": "live" if modes == ["live"] else "+".join(modes)},
    }
