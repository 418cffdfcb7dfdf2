"""The signal ledger: every signal and action the server produced, once per (model version, pair, candle), what
the market did afterwards, the scheduler's leases, and model version events. SQLAlchemy 2 Core over SQLite (WAL,
the embedded default) or PostgreSQL (`SIGNALS_DATABASE_URL`), its schema migrated by Alembic."""
