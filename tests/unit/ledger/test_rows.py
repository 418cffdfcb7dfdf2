"""The typed rows name exactly the columns of their tables, so mypy checks the keys the store really returns."""

from __future__ import annotations

import pytest

from signals.ledger import rows, schema


def columns(table: object) -> set[str]:
    return {c.name for c in table.c}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("row", "table", "less"),
    [
        (rows.SignalRecord, schema.signal_records, set()),
        (rows.ActionRow, schema.action_records, {"id"}),
        (rows.LeaseRow, schema.refresh_leases, set()),
        (rows.ModelEventRecord, schema.model_events, set()),
        (rows.ModelEvent, schema.model_events, {"id"}),
        (rows.ModelStateRow, schema.model_state, set()),
        (rows.Subscription, schema.alert_subscriptions, set()),
        (rows.AttemptRow, schema.alert_attempts, set()),
    ],
)
def test_a_row_names_its_tables_columns(row: type, table: object, less: set[str]) -> None:
    assert set(row.__annotations__) == columns(table) - less


def test_a_signal_row_leaves_out_only_what_the_database_fills() -> None:
    filled = columns(schema.signal_records) - set(rows.SignalRow.__annotations__)
    assert filled == {"id"} | set(rows.OutcomeColumns.__annotations__) | {"resolved_ms"}
    assert set(rows.Outcome.__annotations__) == {"id", "resolved_ms"} | set(rows.OutcomeColumns.__annotations__)


def test_what_an_insert_returns_are_columns_of_its_table() -> None:
    assert set(rows.RecordedSignal.__annotations__) <= columns(schema.signal_records)
    assert set(rows.RecordedAction.__annotations__) <= columns(schema.action_records)


def test_a_message_log_row_is_an_outbox_message_with_its_subscription() -> None:
    extra = {"name", "kind", "target", "attempt_log"}
    assert set(rows.MessageLogRow.__annotations__) == columns(schema.alert_outbox) | extra
