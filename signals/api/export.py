"""CSV of the track record for a spreadsheet (the dashboard's download links): a pair's history, one row per
recorded signal with its outcome, and a scorecard flattened to `metric,value` rows.

The same answers as `/history` and `/scorecard`, written with the standard library's csv module (quoted where a
reason holds a comma), `text/csv` with a header row, and a file name the browser saves under.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from signals.contract import schemas

HISTORY_COLUMNS = (
    "candle_time", "symbol", "timeframe", "mode", "model_version", "direction", "confidence", "actionable",
    "abstain_reason", "entry", "stop_loss", "outcome", "touched", "bars_to_exit", "call_return_after_costs",
    "resolved_at",
)  # fmt: skip


def to_csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return buffer.getvalue()


def history_csv(history: schemas.HistoryResponse) -> str:
    """One row per recorded signal, newest first (as `/history` answers)."""
    return to_csv(HISTORY_COLUMNS, (_history_row(item) for item in history.items))


def _history_row(item: schemas.HistoryItem) -> list[Any]:
    signal, outcome, levels = item.signal, item.outcome, item.signal.levels
    return [
        signal.candle_time.isoformat().replace("+00:00", "Z"), signal.symbol, signal.timeframe, item.mode,
        signal.model_version, signal.direction, round(signal.confidence, 6), signal.actionable,
        signal.abstain_reason, levels.entry if levels else None, levels.stop_loss if levels else None,
        outcome.label if outcome else None, outcome.touched if outcome else None,
        outcome.bars_to_exit if outcome else None, outcome.call_return if outcome else None,
        outcome.resolved_at.isoformat().replace("+00:00", "Z") if outcome and outcome.resolved_at else None,
    ]  # fmt: skip


def scorecard_csv(card: Mapping[str, Any]) -> str:
    """Every figure of the scorecard as `metric,value`, nested names joined with dots (`calls.hit_rate.value`)."""
    return to_csv(("metric", "value"), _flat(card))


def _flat(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _flat(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list) and any(isinstance(v, Mapping | list) for v in node):
        for i, value in enumerate(node):
            yield from _flat(value, f"{prefix}.{i}")
    elif isinstance(node, list):
        yield prefix, " ".join(str(v) for v in node)
    else:
        yield prefix, node
