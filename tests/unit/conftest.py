"""The serving tests' ledger: migrated, on each database the server supports (`database_url`), closed after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signals.ledger.store import Ledger


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger = Ledger(database_url)
    ledger.migrate()
    yield ledger
    ledger.close()
