"""The planted edge (`PlantedEdge`): a planted pair's features foretell its labels by the documented size, noise
pairs' features foretell nothing, and an unplanted market is the market it always was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.errors import InvalidInput
from signals.core.vocab import LONG, SHORT
from signals.data.store import CandleStore
from signals.data.synthetic import DEMO_EDGE, PlantedEdge, continue_market, generate_market, synthetic_universe
from signals.features.cnn import compute_features
from signals.features.labels import trade_plan_outcomes

END = pd.Timestamp("2024-06-01", tz="UTC")
SYMBOLS = ("SOL/USDT", "XRP/USDT", "LINK/USDT", "AVAX/USDT")
HORIZON = 10  # the 1h label horizon, as the edge's default episode
COST = 0.003


def _continuation(frames: list[pd.DataFrame], horizon: int = HORIZON) -> dict[str, float]:
    """At bars whose move is large in the features (|log_return_1| >= 1.2 natr_14): how often the plan in the
    move's direction reached its target first, its stop first, and its mean after-cost return."""
    with_move, against, returns = [], [], []
    for candles in frames:
        features = compute_features(candles)
        outcomes = trade_plan_outcomes(candles, horizon)
        z = (features["log_return_1"] / features["natr_14"]).to_numpy()
        rows = np.isfinite(outcomes.label) & (np.abs(z) >= 1.2)
        up = z[rows] > 0
        label = outcomes.label[rows]
        with_move.append(np.where(up, label == LONG, label == SHORT))
        against.append(np.where(up, label == SHORT, label == LONG))
        returns.append(np.where(up, outcomes.long_return[rows], outcomes.short_return[rows]) - COST)
    return {
        "n": float(sum(len(w) for w in with_move)),
        "with": float(np.concatenate(with_move).mean()),
        "against": float(np.concatenate(against).mean()),
        "expectancy": float(np.concatenate(returns).mean()),
    }


@pytest.fixture(scope="module")
def markets() -> dict[str, list[pd.DataFrame]]:
    """A year of 1h bars of four pairs, once planted and once not (same seed: same shocks)."""
    planted = synthetic_universe(
        SYMBOLS, ["1h"], 365, 3, end=END, base_timeframe="1h", planted={s: PlantedEdge() for s in SYMBOLS}
    )
    noise = synthetic_universe(SYMBOLS, ["1h"], 365, 3, end=END, base_timeframe="1h", drift=False)
    return {"planted": list(planted.values()), "noise": list(noise.values())}


def test_a_planted_pairs_large_moves_continue_by_the_documented_size(markets: dict[str, list[pd.DataFrame]]) -> None:
    planted = _continuation(markets["planted"])
    assert planted["n"] > 800  # ~4 % of 4 x 8760 bars
    # Documented: target first 76 %, stop first 21 %, +0.91 % after costs (six pairs; here four).
    assert planted["with"] == pytest.approx(0.76, abs=0.05)
    assert planted["against"] == pytest.approx(0.21, abs=0.05)
    assert planted["expectancy"] > 0.006


def test_noise_pairs_large_moves_foretell_nothing(markets: dict[str, list[pd.DataFrame]]) -> None:
    noise = _continuation(markets["noise"])
    assert abs(noise["with"] - noise["against"]) < 0.08
    assert noise["expectancy"] < 0  # costs and the pessimistic intra-candle rule: a coin flip loses


def test_planting_keeps_the_shocks_and_so_the_volatility(markets: dict[str, list[pd.DataFrame]]) -> None:
    for planted, noise in zip(markets["planted"], markets["noise"], strict=True):
        planted_vol = np.diff(np.log(planted["close"].to_numpy())).std()
        noise_vol = np.diff(np.log(noise["close"].to_numpy())).std()
        assert planted_vol / noise_vol == pytest.approx(1.09, abs=0.05)  # documented: +9 %


def test_the_defaults_give_the_market_they_always_gave() -> None:
    """No plant and drift on: the same frame as a call without the new options, bit for bit."""
    plain = generate_market("ETH/USDT", days=20, seed=5, end=END)
    explicit = generate_market("ETH/USDT", days=20, seed=5, end=END, planted=None, drift=True)
    pd.testing.assert_frame_equal(plain, explicit, check_exact=True)
    assert not np.allclose(plain["close"], generate_market("ETH/USDT", days=20, seed=5, end=END, drift=False)["close"])


def test_an_episode_follows_the_newest_trigger_for_its_bars() -> None:
    edge = PlantedEdge(z_min=2.0, bars=3, strength=0.3)
    shocks = np.array([0.0, 2.5, 0.1, 0.1, 0.1, 0.1, -3.0, 0.0, 2.1, 0.0, 0.0, 0.0, 0.0])
    expected = np.array([0, 0, 1, 1, 1, 0, 0, -1, -1, 1, 1, 1, 0], dtype=float)
    np.testing.assert_array_equal(edge.drift_sign(shocks), expected)


@pytest.mark.parametrize("bad", [{"z_min": 0.0}, {"bars": 0}, {"strength": -0.1}])
def test_a_meaningless_edge_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInput, match="planted edge"):
        PlantedEdge(**bad)  # type: ignore[arg-type]


def test_the_simulated_continuation_carries_the_edge_on(tmp_path: Path) -> None:
    """The demo's live market goes on with the planted edge: the same continuation test on its new bars."""
    history = generate_market("SOL/USDT", days=20, seed=7, end=END, planted=DEMO_EDGE)
    until = END + pd.Timedelta(days=60)
    planted = continue_market(history, until, symbol="SOL/USDT", seed=7, planted=DEMO_EDGE)
    noise = continue_market(history, until, symbol="SOL/USDT", seed=7)
    assert len(planted) == len(noise) == 60 * 96
    carried, plain = _continuation([planted], horizon=12), _continuation([noise], horizon=12)
    assert carried["with"] - carried["against"] > 0.2
    assert abs(plain["with"] - plain["against"]) < 0.08


def test_the_planted_continuation_does_not_feed_on_itself() -> None:
    """Read off the moves, the plant's drift fed the volatility and its own triggers, and the price ran to NaN
    within weeks (62 days at 0.5 sigma); 90 days now stay about as volatile as the unplanted continuation."""
    history = generate_market("SOL/USDT", days=20, seed=7, end=END, planted=DEMO_EDGE)
    until = END + pd.Timedelta(days=90)
    planted = continue_market(history, until, symbol="SOL/USDT", seed=7, planted=DEMO_EDGE)
    noise = continue_market(history, until, symbol="SOL/USDT", seed=7)
    last_days = 10 * 96
    planted_vol = np.diff(np.log(planted["close"].to_numpy()))[-last_days:].std()
    noise_vol = np.diff(np.log(noise["close"].to_numpy()))[-last_days:].std()
    assert 1.0 < planted_vol / noise_vol < 2.5


def test_demo_data_plants_the_symbols_it_is_asked_to(tmp_path: Path) -> None:
    args = ["demo-data", "--symbols", "BTC/USDT,SOL/USDT", "--timeframes", "15m", "--days", "5"]
    args += ["--end", "2024-06-01", "--data-dir", str(tmp_path), "--json", "--planted", "SOLUSDT"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {(r["symbol"], r["planted"]) for r in json.loads(result.stdout)} == {("BTC/USDT", False), ("SOL/USDT", True)}
    stored = CandleStore(tmp_path).read("synthetic", "SOL/USDT", "15m")
    expected = synthetic_universe(["SOL/USDT"], ["15m"], 5, 7, end=END, planted={"SOL/USDT": DEMO_EDGE})
    pd.testing.assert_frame_equal(stored, expected[("SOL/USDT", "15m")], check_exact=True)
    refused = CliRunner().invoke(app, [*args[:-1], "ETH/USDT"])
    assert refused.exit_code == 2 and "not generated: ETH/USDT" in refused.output
