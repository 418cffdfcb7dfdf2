"""Which database errors are the ledger being unavailable (503 + Retry-After, a write retried later), not a bug.

SQLAlchemy raises `DBAPIError` subclasses for everything the driver says: a stopped PostgreSQL, a SQLite file
locked by another process or unreadable is an `OperationalError` (or `InterfaceError`, `DatabaseError`), while a
constraint or SQL mistake (`IntegrityError`, `ProgrammingError`, `DataError`) is ours and stays a 500.
"""

from __future__ import annotations

import sqlalchemy as sa

from signals.core.errors import LedgerUnavailable

RETRY_AFTER_S = 5.0  # a caller tries again after this; the writer's own retry has its own setting
_OURS = (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.DataError, sa.exc.NotSupportedError)


def is_outage(error: BaseException) -> bool:
    """True when `error` says the database does not answer (down, locked, unreadable, out of connections)."""
    if isinstance(error, sa.exc.DBAPIError):
        return not isinstance(error, _OURS)
    return isinstance(error, sa.exc.TimeoutError)  # the connection pool waited in vain


def unavailable(error: BaseException) -> LedgerUnavailable:
    """The outage as the caller reads it: that the ledger is down and when to try again (the driver's text, with
    hosts and file names in it, goes to the log: `describe`)."""
    return LedgerUnavailable(
        f"the ledger database does not answer ({type(error).__name__}); try again in {RETRY_AFTER_S:g} s",
        retry_after_s=RETRY_AFTER_S,
    )


def describe(error: BaseException) -> str:
    """One line for the log: the error's class and the driver's own words."""
    return f"{type(error).__name__}: {' '.join(str(getattr(error, 'orig', None) or error).split())[:300]}"
