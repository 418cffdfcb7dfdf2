"""The models tests train and store models of their own: each module's are deleted when it ends, so the session's
model store (shared with the trained world that later modules serve) holds only the world's models again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.models import models_made_here


@pytest.fixture(scope="module", autouse=True)
def _forget_this_modules_models() -> Iterator[None]:
    with models_made_here():
        yield
