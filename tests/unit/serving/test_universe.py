"""The universe as it trades now: a renamed pair served under its new name on its old name's history and model, and
SHORT plans on spot pairs labelled as needing margin or a derivative (or dropped, by setting)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

from signals.core.errors import ModelNotFound
from signals.core.settings import Settings
from signals.data.store import CandleStore
from signals.models.families import CNN_LSTM
from signals.models.local import stored_names
from signals.serving.catalog import ModelCatalog, ModelEntry
from signals.serving.engine import SignalEngine
from signals.serving.gate import SPOT_SHORT_REASON, SPOT_SHORT_REQUIRES
from tests.support.factories import positive_edge, random_walk_candles
from tests.support.fakes import FakeCnnLstm, FakePpo
from tests.support.models import models_made_here, tiny_cnn_lstm

SHORT, LONG = (0.7, 0.2, 0.1), (0.1, 0.2, 0.7)  # (SHORT, NO_TRADE, LONG), above the threshold 0.6


def served(tmp_path: Path, probabilities: tuple[float, ...], spot_shorts: Literal["label", "drop"]):  # type: ignore[no-untyped-def]
    candles = random_walk_candles(200, timeframe="1h", seed=5)
    CandleStore(tmp_path).write("synthetic", "ETH/USDT", "1h", candles)
    metadata = {"metrics": {}, "edge": positive_edge(), "threshold": 0.6, "horizon": 10}
    entry = ModelEntry("cnn-lstm", "cnn-lstm-eth-usdt-1h", "cnn-lstm-eth-usdt-1h:v1", "v1", "ETH/USDT", "1h", metadata)
    settings = Settings(
        data_dir=tmp_path, exchange="synthetic", universe=["ETH/USDT"], timeframes=["1h"], signal_cache_size=0,
        probation_calls=0, spot_shorts=spot_shorts,
    )  # fmt: skip
    fresh = candles["timestamp"].iloc[-1] + pd.Timedelta(hours=1, seconds=5)
    engine = SignalEngine.offline(
        settings, ModelCatalog([entry]), cnn_lstm=FakeCnnLstm(probabilities), ppo=FakePpo(), clock=lambda: fresh
    )
    return asyncio.run(engine.predict("ETH/USDT", "1h"))


def test_a_short_plan_on_a_spot_pair_is_served_labelled_as_needing_margin_or_a_derivative(tmp_path: Path) -> None:
    short = served(tmp_path, SHORT, "label")
    assert (short.direction, short.actionable, short.abstain_reason) == ("SHORT", True, None)
    assert short.levels is not None and short.plan_requires == SPOT_SHORT_REQUIRES
    assert short.plan_requires == "margin or a derivative (spot cannot be sold short)"
    long = served(tmp_path, LONG, "label")
    assert long.actionable and long.levels is not None and long.plan_requires is None  # spot can buy


def test_spot_shorts_drop_makes_a_short_not_actionable_with_the_reason_and_leaves_longs_alone(tmp_path: Path) -> None:
    short = served(tmp_path, SHORT, "drop")
    assert (short.direction, short.actionable, short.levels, short.plan_requires) == ("SHORT", False, None, None)
    assert short.abstain_reason == SPOT_SHORT_REASON and "spot cannot be sold short" in SPOT_SHORT_REASON
    long = served(tmp_path, LONG, "drop")
    assert long.actionable and long.levels is not None and long.abstain_reason is None


def test_a_model_stored_under_the_old_name_serves_the_new_one_until_one_is_trained_under_it(tmp_path: Path) -> None:
    """Stored models keep working, no migration: `cnn-lstm-matic-usdt-4h` (trained on MATIC/USDT's candles) serves
    POL/USDT on the candles stored as MATIC/USDT; a model trained as POL/USDT then takes over, the old one retires."""
    settings = Settings(
        data_dir=tmp_path, exchange="synthetic", universe=["MATIC/USDT"], timeframes=["4h"], device="cpu",
        signal_cache_size=0,
    )  # fmt: skip
    assert settings.universe == ["POL/USDT"]
    candles = random_walk_candles(700, timeframe="4h", seed=8, price=0.4)
    CandleStore(tmp_path).write("synthetic", "MATIC/USDT", "4h", candles)
    with models_made_here():
        old = tiny_cnn_lstm("MATIC/USDT", "4h", seed=21)
        assert old.name == "cnn-lstm-matic-usdt-4h" and stored_names(CNN_LSTM, settings) == [old.name]
        catalog = ModelCatalog.from_store(settings)
        assert catalog.cnn("POL/USDT", "4h").tag == f"{old.name}:{old.version}"
        with pytest.raises(
            ModelNotFound,
            match=r"MATIC/USDT 4h \(MATIC/USDT trades as POL/USDT now: ask for POL/USDT\); available: POL/USDT 4h",
        ):
            catalog.cnn("MATIC/USDT", "4h")
        signal = asyncio.run(SignalEngine.offline(settings, catalog).predict("POL/USDT", "4h"))
        assert (signal.symbol, signal.model_version) == ("POL/USDT", old.version)
        assert signal.current_price == pytest.approx(candles["close"].iloc[-1])  # MATIC/USDT's stored candles

        new = tiny_cnn_lstm("POL/USDT", "4h", seed=22)
        assert new.name == "cnn-lstm-pol-usdt-4h"
        catalog = ModelCatalog.from_store(settings)
        assert catalog.cnn("POL/USDT", "4h").tag == f"{new.name}:{new.version}"
        assert old.name not in {e.name for e in catalog.entries + catalog.shadows}
