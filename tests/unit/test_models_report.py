"""MODELS.md's PPO table labels each count for what it counts: `trades` are fills, the edge's `n` round trips."""

from __future__ import annotations

from bench.models_report import ppo_table


def test_the_ppo_table_counts_fills_per_symbol_and_round_trips_over_all_symbols() -> None:
    row = {"policy": -0.2, "buy_hold": -0.25, "policy_max_dd": 0.35, "buy_hold_max_dd": 0.43}
    header, _, line = ppo_table([{**row, "trades": 89}, {**row, "trades": 90}]).splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    values = dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
    assert values["fills per symbol (buys + sells)"] == "90"  # mean of 89 and 90, rounded half to even
    assert values["round trips, all symbols"] == "89"  # (89 + 90) // 2
    assert not any("trades" in column for column in columns)
