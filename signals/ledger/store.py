"""The ledger's database: connection, migration, and every query the server makes of it.

Writes are idempotent (`INSERT ... ON CONFLICT DO NOTHING` on each table's natural key), so a retry or a second
worker recording the same signal changes nothing. The refresh lease is one row per (timeframe, candle): the
first `INSERT` wins; a holder that died is replaced once its lease expired, by an `UPDATE` whose `WHERE` only
one contender can satisfy. Both are single statements the database makes atomic, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from signals.core.errors import LedgerUnavailable
from signals.core.settings import Settings
from signals.ledger.outbox import enqueue, enqueue_action_events, enqueue_signal_events
from signals.ledger.rows import (
    CallRow,
    JsonObject,
    LeaseRow,
    LedgerCounts,
    ModelEvent,
    ModelEventRecord,
    ModelStateRow,
    ModeSummary,
    Outcome,
    RecordedAction,
    RecordedSignal,
    SignalRecord,
    StreamRow,
)
from signals.ledger.rules import model_alert
from signals.ledger.schema import (
    action_records,
    insert_ignoring_duplicates,
    model_events,
    model_state,
    refresh_leases,
    signal_records,
)

logger = logging.getLogger(__name__)
Recorded = TypeVar("Recorded", RecordedSignal, RecordedAction)  # what a new record's INSERT returns

SQLITE_BUSY_MS = 5000
MIGRATION_LOCK_KEY = 4_720_311  # PostgreSQL advisory lock id: one migration at a time across replicas
STREAM_LIMIT = 5000  # records one stream query returns at most (a resume further back starts at the newest)
# What a newly recorded row's alert needs (RETURNING them saves reading the rows back): the typed rows name them.
_RETURNED_COLUMNS = {
    "signal_records": tuple(RecordedSignal.__annotations__),
    "action_records": tuple(RecordedAction.__annotations__),
}


def database_url(settings: Settings) -> str:
    """`SIGNALS_DATABASE_URL`, or the embedded SQLite file `<data_dir>/signals.db`."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{Path(settings.data_dir).resolve() / 'signals.db'}"


def backend_name(url: str) -> str:
    """The kind of database (`sqlite`, `postgresql`) of a SQLAlchemy URL, nothing of where it is."""
    try:
        return str(sa.engine.make_url(url).get_backend_name())
    except Exception:  # an unparsable URL must not break health
        return "unknown"


def redact(url: str) -> str:
    """The URL without its password, for logs and health."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL must not break a log line
        return "<unparsable database url>"


@dataclass(frozen=True)
class Lease:
    timeframe: str
    candle_ms: int
    holder: str
    status: str
    lease_until_ms: int
    attempts: int
    started_ms: int
    detail: JsonObject | None


class Ledger:
    """One database, shared by every worker and replica that points at it."""

    def __init__(self, url: str, *, busy_ms: int = SQLITE_BUSY_MS) -> None:
        """`busy_ms`: how long a SQLite writer waits for another's lock before it fails (the writer retries)."""
        self.url = url
        self.dialect = sa.engine.make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": busy_ms / 1000})
            sa.event.listen(self.engine, "connect", functools.partial(_sqlite_pragmas, busy_ms=busy_ms))
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        return cls(database_url(settings))

    def close(self) -> None:
        self.engine.dispose()

    # --- schema -----------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; safe when several processes start at once."""
        # imported here: only a migration needs alembic, and every process of the service graph imports this module
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(files("signals.ledger") / "migrations"))
        with self._migration_lock(), self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    connection.commit()
            return
        path = sa.engine.make_url(self.url).database
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            try:
                return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except sa.exc.DBAPIError:
                return None

    def ping(self) -> None:
        """Raise `LedgerUnavailable` unless the database answers a query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as error:
            raise LedgerUnavailable(f"the ledger database does not answer: {_short(error)}") from error

    # --- records ----------------------------------------------------------------------------------------------
    def record_signals(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert signal records, each at most once; returns how many were new. The alerts their newly recorded
        live signals make go into the outbox in the same transaction: recorded means alerted, or neither."""
        return self._record(signal_records, rows, enqueue_signal_events)

    def record_actions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert action records, each at most once; a flat-position action that changed makes an alert (same
        transaction)."""
        return self._record(action_records, rows, enqueue_action_events)

    def _record(
        self,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        enqueue_events: Callable[[Connection, Sequence[Recorded], int], int],
    ) -> int:
        if not rows:
            return 0
        with self.engine.begin() as connection:
            # One statement for the batch (SQLAlchemy's insertmanyvalues); RETURNING lists exactly the new rows
            # (rowcount is not portable with ON CONFLICT DO NOTHING).
            returned = (table.c[name] for name in _RETURNED_COLUMNS[table.name])
            statement = insert_ignoring_duplicates(table, self.dialect).returning(*returned)
            returned_rows = connection.execute(statement, [dict(row) for row in rows]).mappings()
            new = [cast(Recorded, dict(row)) for row in returned_rows]
            if new:
                enqueue_events(connection, new, max(int(r["recorded_ms"]) for r in new))
        return len(new)

    def signal_at(
        self, symbol: str, timeframe: str, candle_ms: int, *, model_name: str | None = None, version: str | None = None
    ) -> SignalRecord | None:
        """The record of one candle's signal (of the given model and version when named). A candle may have one
        record per mode: the live one is preferred, then the backfill's, then a shadow's (newest first among
        equals), so that a replay or a lookup reads what the server served."""
        query = sa.select(signal_records).where(
            signal_records.c.symbol == symbol,
            signal_records.c.timeframe == timeframe,
            signal_records.c.candle_ms == candle_ms,
        )
        if model_name is not None:
            query = query.where(signal_records.c.model_name == model_name)
        if version is not None:
            query = query.where(signal_records.c.model_version == version)
        order = sa.case((signal_records.c.mode == "live", 0), (signal_records.c.mode == "backfill", 1), else_=2)
        with self.engine.connect() as connection:
            row = connection.execute(query.order_by(order, signal_records.c.id.desc()).limit(1)).mappings().first()
        return cast(SignalRecord, dict(row)) if row else None

    def signals_for_candle(self, timeframe: str, candle_ms: int, mode: str = "live") -> list[SignalRecord]:
        query = sa.select(signal_records).where(
            signal_records.c.timeframe == timeframe,
            signal_records.c.candle_ms == candle_ms,
            signal_records.c.mode == mode,
        )
        with self.engine.connect() as connection:
            return [cast(SignalRecord, dict(row)) for row in connection.execute(query).mappings()]

    def recorded_since(self, timeframe: str, since_ms: int, mode: str = "live") -> list[SignalRecord]:
        """Records of a timeframe written at or after `since_ms` (what a refresh's leader recorded)."""
        query = sa.select(signal_records).where(
            signal_records.c.timeframe == timeframe,
            signal_records.c.recorded_ms >= since_ms,
            signal_records.c.mode == mode,
        )
        with self.engine.connect() as connection:
            return [cast(SignalRecord, dict(row)) for row in connection.execute(query).mappings()]

    # --- the push stream --------------------------------------------------------------------------------------
    def published_since(self, since_ms: int, *, limit: int = STREAM_LIMIT) -> list[StreamRow]:
        """What the stream publishes, recorded at or after `since_ms`, in recording order: served signals (mode
        `live`) and the actions answered to a flat position (a caller's own position is not broadcast).

        Each row: kind (`signal` | `action`), id, symbol, timeframe, model_version, candle_ms, recorded_ms, payload.
        """
        signals = (
            sa.select(*_stream_columns(signal_records, "signal"))
            .where(signal_records.c.recorded_ms >= since_ms, signal_records.c.mode == "live")
            .order_by(signal_records.c.recorded_ms, signal_records.c.id)
            .limit(limit)
        )
        actions = (
            sa.select(*_stream_columns(action_records, "action"))
            .where(
                action_records.c.recorded_ms >= since_ms,
                action_records.c.mode == "live",
                action_records.c.position == "flat",
            )
            .order_by(action_records.c.recorded_ms, action_records.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = [
                cast(StreamRow, dict(r)) for query in (signals, actions) for r in connection.execute(query).mappings()
            ]
        rows.sort(key=stream_order)
        return rows[:limit]

    def latest_published(self, since_ms: int) -> list[StreamRow]:
        """The newest published record of each (kind, symbol, timeframe) recorded at or after `since_ms`, in the
        stream's order: the current state a new subscriber is shown at once (two grouped queries)."""
        rows: list[StreamRow] = []
        with self.engine.connect() as connection:
            for kind, table in (("signal", signal_records), ("action", action_records)):
                where = [table.c.recorded_ms >= since_ms, table.c.mode == "live"]
                if kind == "action":
                    where.append(action_records.c.position == "flat")
                newest = sa.select(sa.func.max(table.c.id)).where(*where).group_by(table.c.symbol, table.c.timeframe)
                query = sa.select(*_stream_columns(table, kind)).where(table.c.id.in_(newest))
                rows.extend(cast(StreamRow, dict(r)) for r in connection.execute(query).mappings())
        rows.sort(key=stream_order)
        return rows

    def published(self, kind: str, model_version: str, symbol: str, candle_ms: int) -> StreamRow | None:
        """One published record by its stream key (a `Last-Event-ID`), or None."""
        table = signal_records if kind == "signal" else action_records
        query = sa.select(*_stream_columns(table, kind)).where(
            table.c.model_version == model_version,
            table.c.symbol == symbol,
            table.c.candle_ms == candle_ms,
            table.c.mode == "live",
        )
        if kind == "action":
            query = query.where(action_records.c.position == "flat")
        with self.engine.connect() as connection:
            row = connection.execute(query.limit(1)).mappings().first()
        return cast(StreamRow, dict(row)) if row is not None else None

    # --- outcomes ---------------------------------------------------------------------------------------------
    def due(self, now_ms: int, *, limit: int = 5000) -> list[SignalRecord]:
        """Unresolved records whose horizon has ended by `now_ms`, oldest first."""
        query = (
            sa.select(signal_records)
            .where(signal_records.c.resolved_ms.is_(None), signal_records.c.expires_ms <= now_ms)
            .order_by(signal_records.c.expires_ms)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [cast(SignalRecord, dict(row)) for row in connection.execute(query).mappings()]

    def resolve(self, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes (`id` plus outcome columns); a record already resolved is left alone."""
        done = 0
        with self.engine.begin() as connection:
            for outcome in outcomes:
                values = {key: value for key, value in outcome.items() if key != "id"}
                statement = (
                    sa.update(signal_records)
                    .where(signal_records.c.id == outcome["id"], signal_records.c.resolved_ms.is_(None))
                    .values(**values)
                )
                done += max(connection.execute(statement).rowcount, 0)
        return done

    def history(
        self, symbol: str, timeframe: str | None = None, *, limit: int = 100, modes: Sequence[str] | None = None
    ) -> list[SignalRecord]:
        query = sa.select(signal_records).where(signal_records.c.symbol == symbol)
        if timeframe is not None:
            query = query.where(signal_records.c.timeframe == timeframe)
        if modes:
            query = query.where(signal_records.c.mode.in_(list(modes)))
        query = query.order_by(signal_records.c.candle_ms.desc(), signal_records.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [cast(SignalRecord, dict(row)) for row in connection.execute(query).mappings()]

    def resolved(
        self,
        *,
        timeframe: str | None = None,
        symbol: str | None = None,
        model_version: str | None = None,
        model_name: str | None = None,
        modes: Sequence[str] | None = None,
        since_ms: int | None = None,
        limit: int = 200_000,
    ) -> list[SignalRecord]:
        """Resolved records matching the filters, oldest candle first (the scorecard's input)."""
        query = sa.select(signal_records).where(
            signal_records.c.resolved_ms.is_not(None), signal_records.c.outcome_label.is_not(None)
        )
        for column, value in (
            (signal_records.c.timeframe, timeframe),
            (signal_records.c.symbol, symbol),
            (signal_records.c.model_version, model_version),
            (signal_records.c.model_name, model_name),
        ):
            if value is not None:
                query = query.where(column == value)
        if modes:
            query = query.where(signal_records.c.mode.in_(list(modes)))
        if since_ms is not None:
            query = query.where(signal_records.c.candle_ms >= since_ms)
        query = query.order_by(signal_records.c.candle_ms, signal_records.c.id).limit(limit)
        with self.engine.connect() as connection:
            return [cast(SignalRecord, dict(row)) for row in connection.execute(query).mappings()]

    def counts(self) -> LedgerCounts:
        """How many records there are, and how many wait for their outcome (health and metrics)."""
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(signal_records)).scalar() or 0
            pending = (
                connection.execute(
                    sa.select(sa.func.count()).select_from(signal_records).where(signal_records.c.resolved_ms.is_(None))
                ).scalar()
                or 0
            )
            actions = connection.execute(sa.select(sa.func.count()).select_from(action_records)).scalar() or 0
        return LedgerCounts(signals=int(total), pending=int(pending), actions=int(actions))

    # --- refresh leases ---------------------------------------------------------------------------------------
    def claim(self, timeframe: str, candle_ms: int, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take the refresh of (timeframe, candle) if nobody holds it, or if its holder's lease ran out unfinished."""
        with self.engine.begin() as connection:
            inserted = connection.execute(
                insert_ignoring_duplicates(refresh_leases, self.dialect).returning(refresh_leases.c.holder),
                {
                    "timeframe": timeframe,
                    "candle_ms": candle_ms,
                    "holder": holder,
                    "lease_until_ms": now_ms + lease_ms,
                    "status": "claimed",
                    "attempts": 1,
                    "started_ms": now_ms,
                },
            ).first()
            if inserted is not None:
                return True
            taken = connection.execute(
                sa.update(refresh_leases)
                .where(
                    refresh_leases.c.timeframe == timeframe,
                    refresh_leases.c.candle_ms == candle_ms,
                    refresh_leases.c.status != "done",
                    refresh_leases.c.lease_until_ms < now_ms,
                )
                .values(
                    holder=holder,
                    lease_until_ms=now_ms + lease_ms,
                    status="claimed",
                    attempts=refresh_leases.c.attempts + 1,
                    started_ms=now_ms,
                )
            ).rowcount
            return taken == 1

    def finish(self, timeframe: str, candle_ms: int, holder: str, now_ms: int, status: str, detail: JsonObject) -> bool:
        """Close a lease this holder still holds (`done` or `failed`); False when another holder took it over."""
        with self.engine.begin() as connection:
            return (
                connection.execute(
                    sa.update(refresh_leases)
                    .where(
                        refresh_leases.c.timeframe == timeframe,
                        refresh_leases.c.candle_ms == candle_ms,
                        refresh_leases.c.holder == holder,
                    )
                    .values(status=status, finished_ms=now_ms, detail=detail, lease_until_ms=now_ms)
                ).rowcount
                == 1
            )

    def lease(self, timeframe: str, candle_ms: int) -> Lease | None:
        query = sa.select(refresh_leases).where(
            refresh_leases.c.timeframe == timeframe, refresh_leases.c.candle_ms == candle_ms
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        return Lease(
            row["timeframe"],
            row["candle_ms"],
            row["holder"],
            row["status"],
            row["lease_until_ms"],
            row["attempts"],
            row["started_ms"],
            row["detail"],
        )

    def leases(self, *, limit: int = 200) -> list[LeaseRow]:
        query = sa.select(refresh_leases).order_by(refresh_leases.c.candle_ms.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [cast(LeaseRow, dict(row)) for row in connection.execute(query).mappings()]

    # --- model versions ---------------------------------------------------------------------------------------
    def add_event(self, event: ModelEvent) -> None:
        """Record a model version event; a promotion or rollback is also an alert, enqueued in the same transaction."""
        with self.engine.begin() as connection:
            inserted = connection.execute(sa.insert(model_events), dict(event)).inserted_primary_key
            assert inserted is not None
            alert = model_alert(ModelEventRecord(**event, id=inserted[0]))
            if alert is not None:
                enqueue(connection, [alert], event["at_ms"])

    def events(self, model_name: str | None = None, *, limit: int = 200) -> list[ModelEventRecord]:
        query = sa.select(model_events)
        if model_name is not None:
            query = query.where(model_events.c.model_name == model_name)
        query = query.order_by(model_events.c.at_ms.desc(), model_events.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [cast(ModelEventRecord, dict(row)) for row in connection.execute(query).mappings()]

    def model_states(self) -> dict[str, ModelStateRow]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(model_state)).mappings()
            return {row["model_name"]: cast(ModelStateRow, dict(row)) for row in rows}

    def set_model_state(self, model_name: str, served_version: str | None, pinned: bool, now_ms: int) -> None:
        values = {"served_version": served_version, "pinned": pinned, "updated_ms": now_ms}
        with self.engine.begin() as connection:
            updated = connection.execute(
                sa.update(model_state).where(model_state.c.model_name == model_name).values(**values)
            ).rowcount
            if updated == 0:
                connection.execute(sa.insert(model_state), {"model_name": model_name, **values})

    def live_summary(self) -> dict[tuple[str, str], dict[str, ModeSummary]]:
        """Per (model name, version), per mode (live, backfill, shadow): records, resolved ones, hits of the argmax,
        actionable calls and their P&L, paper calls (withheld by probation) and theirs. The modes are never added
        up: only mode `live` is what the server served as it happened."""
        c = signal_records.c
        resolved = c.resolved_ms.is_not(None)
        hit = sa.and_(
            resolved, c.outcome_label == sa.case((c.direction == "SHORT", 0), (c.direction == "LONG", 2), else_=1)
        )
        acted, paper = sa.and_(resolved, c.actionable), sa.and_(resolved, c.paper)
        query = sa.select(
            c.model_name,
            c.model_version,
            c.mode,
            sa.func.count().label("recorded"),
            sa.func.sum(sa.case((resolved, 1), else_=0)).label("resolved"),
            sa.func.sum(sa.case((hit, 1), else_=0)).label("hits"),
            sa.func.sum(sa.case((acted, 1), else_=0)).label("calls"),
            sa.func.sum(sa.case((acted, c.call_return), else_=0.0)).label("call_return_sum"),
            sa.func.sum(sa.case((paper, 1), else_=0)).label("paper_calls"),
            sa.func.sum(sa.case((paper, c.call_return), else_=0.0)).label("paper_return_sum"),
            sa.func.max(c.candle_ms).label("last_candle_ms"),
        ).group_by(c.model_name, c.model_version, c.mode)
        summary: dict[tuple[str, str], dict[str, ModeSummary]] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query).mappings():
                modes = summary.setdefault((row["model_name"], row["model_version"]), {})
                modes[row["mode"]] = cast(ModeSummary, dict(row))
        return summary

    def calls(self, model_name: str, model_version: str, *, mode: str = "live") -> list[CallRow]:
        """The resolved calls of one model version in one mode, oldest candle first: the records that served a
        plan (actionable) or would have but for probation (paper). What probation and demotion judge."""
        c = signal_records.c
        query = (
            sa.select(c.candle_ms, c.timeframe, c.horizon_bars, c.call_return, c.actionable, c.paper)
            .where(
                c.model_name == model_name,
                c.model_version == model_version,
                c.mode == mode,
                c.resolved_ms.is_not(None),
                c.call_return.is_not(None),
                sa.or_(c.actionable, c.paper),
            )
            .order_by(c.candle_ms, c.id)
        )
        with self.engine.connect() as connection:
            return [cast(CallRow, dict(row)) for row in connection.execute(query).mappings()]


def _sqlite_pragmas(connection: Any, _record: Any, *, busy_ms: int = SQLITE_BUSY_MS) -> None:
    """WAL: readers never wait for the writer; busy_timeout: a writer waits for another instead of failing."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _short(error: BaseException) -> str:
    text = " ".join(str(getattr(error, "orig", None) or error).split())
    return text[:300]


def _stream_columns(table: sa.Table, kind: str) -> list[Any]:
    return [
        sa.literal(kind).label("kind"),
        table.c.id,
        table.c.symbol,
        table.c.timeframe,
        table.c.model_version,
        table.c.candle_ms,
        table.c.recorded_ms,
        table.c.payload,
    ]


def stream_order(row: StreamRow) -> tuple[int, str, int]:
    """The stream's total order over both tables: recording time, then kind, then row id."""
    return (int(row["recorded_ms"]), str(row["kind"]), int(row["id"]))
