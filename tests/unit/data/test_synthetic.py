"""The synthetic demo market: deterministic, self-consistent across timeframes, and market-like enough to train on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signals.cli import app
from signals.core.errors import InvalidInput
from signals.core.timeframes import timeframe_seconds
from signals.data.candles import CANDLE_COLUMNS, validate_candles
from signals.data.store import CandleStore
from signals.data.synthetic import default_end, generate_market, resample_candles, symbol_profile, synthetic_universe

END = pd.Timestamp("2024-06-01", tz="UTC")
TIMEFRAMES = ("15m", "1h", "4h", "1d")
STAT_SYMBOLS = ("BTC/USDT", "PEPE/USDT", "SOL/USDT", "XRP/USDT")


@pytest.fixture(scope="module")
def universe() -> dict[tuple[str, str], pd.DataFrame]:
    return synthetic_universe(["BTC/USDT", "PEPE/USDT"], TIMEFRAMES, 30, 11, end=END)


@pytest.fixture(scope="module")
def long_markets() -> dict[str, pd.DataFrame]:
    """90 days of 15m bars per symbol: enough for stable autocorrelation and regime statistics."""
    return {symbol: generate_market(symbol, days=90, seed=7, end=END) for symbol in STAT_SYMBOLS}


def _log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def _autocorrelation(values: np.ndarray, lag: int) -> float:
    centred = values - values.mean()
    return float((centred[:-lag] * centred[lag:]).sum() / (centred * centred).sum())


def _reference_resample(base: pd.DataFrame, timeframe: str, bars_per_bucket: int) -> pd.DataFrame:
    """An independent pandas groupby resample, to check the numpy one against."""
    bucket = base["timestamp"].dt.floor(pd.Timedelta(seconds=timeframe_seconds(timeframe)))
    grouped = base.groupby(bucket)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    out = out[grouped.size() == bars_per_bucket]
    return out.rename_axis("timestamp").reset_index()


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames_bit_for_bit() -> None:
    first = generate_market("ETH/USDT", days=30, seed=5, end=END)
    second = generate_market("ETH/USDT", days=30, seed=5, end=END)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    for column in CANDLE_COLUMNS[1:]:
        assert first[column].to_numpy().tobytes() == second[column].to_numpy().tobytes()


def test_symbol_spellings_share_one_market() -> None:
    pd.testing.assert_frame_equal(
        generate_market("BTCUSDT", days=5, seed=1, end=END),
        generate_market("btc/usdt", days=5, seed=1, end=END),
        check_exact=True,
    )


def test_different_seed_or_symbol_gives_a_different_market() -> None:
    base = generate_market("ETH/USDT", days=30, seed=5, end=END)
    other_seed = generate_market("ETH/USDT", days=30, seed=6, end=END)
    other_symbol = generate_market("SOL/USDT", days=30, seed=5, end=END)
    assert (base["timestamp"] == other_seed["timestamp"]).all()
    assert not np.allclose(base["close"], other_seed["close"])
    assert abs(np.corrcoef(_log_returns(base), _log_returns(other_symbol))[0, 1]) < 0.1
    # The seed changes the path, not the coin: the start price is the symbol's.
    assert base["open"].iloc[0] == pytest.approx(other_seed["open"].iloc[0], rel=0.01)


# --- contract: grid, span, validation --------------------------------------------------------------


def test_every_frame_passes_validation_on_its_grid(universe: dict[tuple[str, str], pd.DataFrame]) -> None:
    for (symbol, tf), frame in universe.items():
        step = pd.Timedelta(seconds=timeframe_seconds(tf))
        pd.testing.assert_frame_equal(validate_candles(frame, tf), frame, check_exact=True)
        assert len(frame) == 30 * 86_400 // timeframe_seconds(tf), (symbol, tf)
        assert frame["timestamp"].iloc[0] == END - pd.Timedelta(days=30)
        assert frame["timestamp"].iloc[-1] == END - step
        assert (frame[["open", "high", "low", "close"]].to_numpy() > 0).all()
        assert (frame["volume"] > 0).all()


def test_default_end_is_the_last_utc_midnight() -> None:
    assert default_end(pd.Timestamp("2024-05-05 13:37", tz="UTC")) == pd.Timestamp("2024-05-05", tz="UTC")
    assert default_end(pd.Timestamp("2024-05-05 01:00", tz="Europe/Berlin")) == pd.Timestamp("2024-05-04", tz="UTC")
    before = default_end()
    frame = generate_market("BTC/USDT", days=2, seed=1)
    after = default_end()
    assert frame["timestamp"].iloc[-1] + pd.Timedelta(minutes=15) in (before, after)


def test_open_is_previous_close_with_tiny_gap() -> None:
    frame = generate_market("LINK/USDT", days=10, seed=2, end=END)
    gap = frame["open"].to_numpy()[1:] / frame["close"].to_numpy()[:-1] - 1.0
    assert np.abs(gap).max() < 2e-3
    assert np.abs(gap).max() > 0.0


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput):
        generate_market("BTC/USDT", days=0, seed=1, end=END)
    with pytest.raises(InvalidInput):
        generate_market("not a symbol!", days=1, seed=1, end=END)
    with pytest.raises(InvalidInput):
        synthetic_universe(["BTC/USDT"], [], 1, 1, end=END)


# --- timeframes agree ------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["1h", "4h", "1d"])
def test_coarse_timeframes_are_the_resampled_base(
    universe: dict[tuple[str, str], pd.DataFrame], timeframe: str
) -> None:
    for symbol in ("BTC/USDT", "PEPE/USDT"):
        base = universe[(symbol, "15m")]
        coarse = universe[(symbol, timeframe)]
        expected = _reference_resample(base, timeframe, timeframe_seconds(timeframe) // 900)
        pd.testing.assert_frame_equal(
            coarse[["timestamp", "open", "high", "low", "close"]],
            expected[["timestamp", "open", "high", "low", "close"]],
            check_exact=True,
        )
        np.testing.assert_allclose(coarse["volume"], expected["volume"], rtol=1e-12)


def test_picked_bars_agree_across_timeframes(universe: dict[tuple[str, str], pd.DataFrame]) -> None:
    base = universe[("BTC/USDT", "15m")].set_index("timestamp")
    hour = pd.Timestamp("2024-05-20 13:00", tz="UTC")
    one_hour = universe[("BTC/USDT", "1h")].set_index("timestamp").loc[hour]
    inside = base.loc[hour : hour + pd.Timedelta(minutes=45)]
    assert len(inside) == 4
    assert one_hour["open"] == inside["open"].iloc[0]
    assert one_hour["close"] == inside["close"].iloc[-1]
    assert one_hour["high"] == inside["high"].max()
    assert one_hour["low"] == inside["low"].min()
    assert one_hour["volume"] == pytest.approx(inside["volume"].sum(), rel=1e-12)

    day = pd.Timestamp("2024-05-20", tz="UTC")
    one_day = universe[("BTC/USDT", "1d")].set_index("timestamp").loc[day]
    four_hours = universe[("BTC/USDT", "4h")].set_index("timestamp").loc[day : day + pd.Timedelta(hours=20)]
    in_day = base.loc[day : day + pd.Timedelta(hours=23, minutes=45)]
    assert len(four_hours) == 6 and len(in_day) == 96
    assert one_day["high"] == in_day["high"].max() == four_hours["high"].max()
    assert one_day["low"] == in_day["low"].min() == four_hours["low"].min()
    assert one_day["close"] == in_day["close"].iloc[-1] == four_hours["close"].iloc[-1]
    assert one_day["open"] == in_day["open"].iloc[0] == four_hours["open"].iloc[0]
    assert one_day["volume"] == pytest.approx(four_hours["volume"].sum(), rel=1e-12)


def test_asking_for_one_timeframe_gives_the_same_bars(universe: dict[tuple[str, str], pd.DataFrame]) -> None:
    alone = synthetic_universe(["BTC/USDT"], ["1d"], 30, 11, end=END)
    pd.testing.assert_frame_equal(alone[("BTC/USDT", "1d")], universe[("BTC/USDT", "1d")], check_exact=True)


def test_resample_keeps_complete_buckets_only() -> None:
    base = generate_market("ETH/USDT", days=3, seed=3, end=END)
    holed = base.drop(index=50).iloc[2:]  # a missing bar on day one, and a partial first hour
    hours = resample_candles(holed, "1h")
    days = resample_candles(holed, "1d")
    hole_hour = base["timestamp"].iloc[50].floor("h")
    assert hole_hour not in set(hours["timestamp"])
    assert base["timestamp"].iloc[0] not in set(hours["timestamp"])
    assert len(hours) == 3 * 24 - 2
    assert list(days["timestamp"]) == [END - pd.Timedelta(days=2), END - pd.Timedelta(days=1)]


def test_resample_refuses_a_finer_or_unaligned_target() -> None:
    hourly = resample_candles(generate_market("ETH/USDT", days=1, seed=3, end=END), "1h")
    with pytest.raises(InvalidInput):
        resample_candles(hourly, "15m")
    with pytest.raises(InvalidInput):
        resample_candles(hourly.iloc[:1], "4h")  # one bar: base timeframe cannot be inferred
    assert resample_candles(hourly.iloc[:0], "4h").empty


# --- market-like statistics ------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", STAT_SYMBOLS)
def test_volatility_clusters_while_returns_stay_uncorrelated(
    long_markets: dict[str, pd.DataFrame], symbol: str
) -> None:
    returns = _log_returns(long_markets[symbol])
    abs_acf = [_autocorrelation(np.abs(returns), lag) for lag in range(1, 11)]
    sq_acf = [_autocorrelation(returns**2, lag) for lag in range(1, 11)]
    raw_acf = [_autocorrelation(returns, lag) for lag in range(1, 11)]
    assert min(abs_acf) > 0.1, abs_acf
    assert min(sq_acf) > 0.02, sq_acf
    assert max(abs(a) for a in raw_acf) < 0.1, raw_acf
    assert np.mean(np.abs(raw_acf)) < 0.04, raw_acf


@pytest.mark.parametrize("symbol", STAT_SYMBOLS)
def test_regimes_and_fat_tails(long_markets: dict[str, pd.DataFrame], symbol: str) -> None:
    returns = pd.Series(_log_returns(long_markets[symbol]))
    daily_vol = returns.rolling(96).std().dropna()
    assert daily_vol.quantile(0.95) / daily_vol.quantile(0.05) > 2.5
    assert returns.kurt() > 3.0  # excess kurtosis: Student-t shocks and changing variance


@pytest.mark.parametrize("symbol", STAT_SYMBOLS)
def test_volume_follows_activity_and_time_of_day(long_markets: dict[str, pd.DataFrame], symbol: str) -> None:
    frame = long_markets[symbol]
    abs_returns = pd.Series(np.abs(_log_returns(frame)))
    volume = frame["volume"].iloc[1:].reset_index(drop=True)
    assert abs_returns.rank().corr(volume.rank()) > 0.2  # Spearman, without importing scipy
    by_hour = frame.groupby(frame["timestamp"].dt.hour)["volume"].mean()
    assert by_hour.loc[14:16].mean() > 1.5 * by_hour.loc[2:4].mean()


def test_price_scales_per_symbol() -> None:
    closes = {s: generate_market(s, days=30, seed=7, end=END)["close"] for s in ("BTC/USDT", "PEPE/USDT", "ABC/USDT")}
    assert closes["BTC/USDT"].between(1e4, 3e5).all()
    assert closes["PEPE/USDT"].between(1e-7, 1e-3).all()
    assert closes["BTC/USDT"].min() / closes["PEPE/USDT"].max() > 1e8
    assert (closes["ABC/USDT"] > 0).all()
    unknown = symbol_profile("ABC/USDT").start_price
    assert 1e-4 <= unknown <= 1e3 and unknown == symbol_profile("ABCUSDT").start_price


# --- CLI ------------------------------------------------------------------------------------------


def _demo(runner: CliRunner, data_dir: Path, *extra: str) -> list[dict[str, object]]:
    args = ["demo-data", "--symbols", "BTC/USDT,PEPEUSDT", "--timeframes", "15m,1h", "--timeframes", "1d"]
    args += ["--days", "30", "--end", "2024-06-01", "--data-dir", str(data_dir), "--json", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_cli_writes_readable_files_with_the_stated_bars(tmp_path: Path) -> None:
    runner = CliRunner()
    rows = _demo(runner, tmp_path, "--seed", "3")
    expected = {"15m": 30 * 96, "1h": 30 * 24, "1d": 30}
    assert {(r["symbol"], r["timeframe"]) for r in rows} == {
        (s, tf) for s in ("BTC/USDT", "PEPE/USDT") for tf in expected
    }
    store = CandleStore(tmp_path)
    generated = synthetic_universe(["BTC/USDT", "PEPE/USDT"], expected, 30, 3, end=END)
    for row in rows:
        symbol, tf = str(row["symbol"]), str(row["timeframe"])
        stored = store.read("synthetic", symbol, tf)
        assert row["bars"] == len(stored) == expected[tf]
        assert row["first"] == "2024-05-02T00:00:00Z"
        assert row["last"] == (END - pd.Timedelta(seconds=timeframe_seconds(tf))).isoformat().replace("+00:00", "Z")
        pd.testing.assert_frame_equal(stored, generated[(symbol, tf)], check_exact=True)
    assert {entry.exchange for entry in store.entries()} == {"synthetic"}

    # A second run with another seed replaces the files rather than mixing two markets.
    _demo(runner, tmp_path, "--seed", "4")
    again = store.read("synthetic", "BTC/USDT", "1h")
    assert len(again) == 30 * 24
    assert not np.allclose(again["close"], generated[("BTC/USDT", "1h")]["close"])


def test_cli_exchange_option_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    _demo(runner, tmp_path, "--exchange", "demo")
    assert CandleStore(tmp_path).exists("demo", "BTC/USDT", "1d")
    bad_tf = runner.invoke(app, ["demo-data", "--timeframes", "7m", "--data-dir", str(tmp_path)])
    assert bad_tf.exit_code == 2 and "unknown timeframe" in bad_tf.output
    bad_exchange = runner.invoke(app, ["demo-data", "--exchange", "../x", "--data-dir", str(tmp_path)])
    assert bad_exchange.exit_code == 2


# --- the simulated live market ---------------------------------------------------------------------------------
def test_the_simulated_market_continues_deterministically_however_many_steps_it_takes(tmp_path: Path) -> None:
    from signals.data.store import CandleStore
    from signals.data.synthetic import continue_market, extend_stored_market

    history = generate_market("BTC/USDT", days=5, seed=7, end=pd.Timestamp("2026-11-20", tz="UTC"))
    until = pd.Timestamp("2026-11-20 06:07", tz="UTC")
    at_once = continue_market(history, until, symbol="BTC/USDT", seed=7)
    assert at_once["timestamp"].iloc[0] == pd.Timestamp("2026-11-20", tz="UTC")
    assert at_once["timestamp"].iloc[-1] == pd.Timestamp("2026-11-20 05:45", tz="UTC")  # the last closed by 06:07
    first = continue_market(history, pd.Timestamp("2026-11-20 02:00", tz="UTC"), symbol="BTC/USDT", seed=7)
    second = continue_market(pd.concat([history, first], ignore_index=True), until, symbol="BTC/USDT", seed=7)
    pd.testing.assert_frame_equal(pd.concat([first, second], ignore_index=True), at_once)
    other = continue_market(history, until, symbol="BTC/USDT", seed=8)
    assert not np.allclose(other["close"], at_once["close"])  # the seed matters
    returns = np.diff(np.log(np.r_[history["close"].iloc[-1], at_once["close"]]))
    assert 0.0005 < returns.std() < 0.05  # a 15m crypto bar, not a flat line or a blow-up

    store = CandleStore(tmp_path)
    frames = synthetic_universe(["ETH/USDT"], ["15m", "1h", "4h"], days=3, seed=7, end=pd.Timestamp("2026-11-20", tz="UTC"))
    for (symbol, tf), frame in frames.items():
        store.write("synthetic", symbol, tf, frame)
    added = extend_stored_market(store, "synthetic", "ETH/USDT", ["1h", "4h"], pd.Timestamp("2026-11-20 09:20", tz="UTC"), seed=7)
    assert added == 37  # 00:00 .. 09:00, the last bar closed by 09:20
    hourly = store.read("synthetic", "ETH/USDT", "1h")
    assert hourly["timestamp"].iloc[-1] == pd.Timestamp("2026-11-20 08:00", tz="UTC")  # complete hours only
    base = store.read("synthetic", "ETH/USDT", "15m")
    pd.testing.assert_frame_equal(
        resample_candles(base, "1h").tail(9).reset_index(drop=True), hourly.tail(9).reset_index(drop=True)
    )
    assert store.read("synthetic", "ETH/USDT", "4h")["timestamp"].iloc[-1] == pd.Timestamp("2026-11-20 04:00", tz="UTC")
    assert extend_stored_market(store, "synthetic", "ETH/USDT", ["1h"], pd.Timestamp("2026-11-20 09:20", tz="UTC"), seed=7) == 0
