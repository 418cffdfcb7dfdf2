"""Why the policy said what it said, in the data's own terms: probabilities, the features of the last bar that
stand out against the observation window, and the open position's return."""

from __future__ import annotations

from typing import Final

import numpy as np

from signals.contract import schemas
from signals.features.ppo import PPO_FEATURE_NAMES

TOP_FEATURES: Final = 3


def explain(
    observation: np.ndarray,
    probabilities: dict[str, float],
    chosen: str,
    position: schemas.Position,
    close: float,
    value: float,
) -> schemas.Explanation:
    """What the policy saw: its probabilities and the market features of the last bar that stand out most
    against the 50-bar observation window (z-scores), plus the open position's return when long."""
    market = observation[:, :-1].astype(np.float64)
    mean, std = market.mean(axis=0), market.std(axis=0)
    z = np.divide(market[-1] - mean, std, out=np.zeros_like(mean), where=std > 0)
    order = np.argsort(-np.abs(z))[:TOP_FEATURES]
    moves = [
        schemas.FeatureMove(name=PPO_FEATURE_NAMES[i], value=float(market[-1, i]), zscore=round(float(z[i]), 3))
        for i in order
    ]
    unrealized = None
    if position.side == "long" and position.entry_price:
        unrealized = round(close / position.entry_price - 1.0, 6)
    ranked = ", ".join(f"{name} {p:.0%}" for name, p in sorted(probabilities.items(), key=lambda kv: -kv[1]))
    moved = ", ".join(f"{m.name} {m.zscore:+.1f} sd" for m in moves)
    held = (
        "long" + (f" ({unrealized:+.2%} since entry)" if unrealized is not None else "")
        if position.side == "long"
        else "flat"
    )
    summary = f"{chosen} while {held}: {ranked}. Last bar vs the 50-bar window: {moved}. Value estimate {value:.4f}."
    return schemas.Explanation(
        summary=summary, position=position.side, unrealized_return=unrealized, value_estimate=value, top_features=moves
    )
