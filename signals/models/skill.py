"""What a set of predictions is worth: accuracy beside its baselines, calibration with sharpness, the calls that
cleared a threshold and what they earned after costs, every figure with a 95 % interval, and an edge verdict.

One home for these numbers: walk-forward folds at training time, `signals evaluate` on other candles, and the
live scorecard on resolved signals all call `score`. Intervals come from a block bootstrap over time (labels of
neighbouring bars overlap, and pairs move together, so samples are resampled in blocks of consecutive time,
every pair of a block together), or from Wilson's formula where the caller has independent counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from signals.core.vocab import CLASS_NAMES, LONG, NO_TRADE, SHORT

Verdict = Literal["positive", "none", "negative", "insufficient_data"]
N_CLASSES: Final = len(CLASS_NAMES)
BOOTSTRAP_SAMPLES: Final = 1000
CONFIDENCE: Final = 0.95
MIN_CALLS: Final = 30  # fewer actionable calls than this: too few to tell an edge from luck
MIN_SAMPLES: Final = 100  # fewer scored samples than this: too few for any verdict
RELIABILITY_BINS: Final = 10
_EPS: Final = 1e-12


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    se: float = math.nan  # the bootstrap standard error, where a bootstrap made the interval

    @property
    def p_above_zero(self) -> float:
        """One-sided p-value of H0: the true value <= 0 (`one_sided_p`); NaN without a standard error."""
        return one_sided_p(self.value, self.se)

    def as_dict(self) -> dict[str, float | None]:
        return {"value": _finite(self.value), "ci_low": _finite(self.low), "ci_high": _finite(self.high)}


@dataclass(frozen=True)
class Scored:
    """The samples to score: calibrated probabilities, what happened, and what each baseline would have said.

    `block` groups samples into stretches of consecutive time (the bootstrap resamples whole blocks);
    `long_return` / `short_return` are what each plan earned before costs, as fractions of price.
    """

    probabilities: np.ndarray  # (n, 3)
    labels: np.ndarray  # (n,) int
    block: np.ndarray  # (n,) int
    long_return: np.ndarray  # (n,)
    short_return: np.ndarray  # (n,)
    risk: np.ndarray  # (n,) R as a fraction of price
    reversal: np.ndarray  # (n,) int: the class the reversal rule predicts
    persistence: np.ndarray  # (n,) int: the last label known at prediction time

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def concat(cls, parts: Sequence[Scored]) -> Scored:
        """Samples of several folds or pairs together; block ids stay distinct only if the callers kept them so."""
        fields = cls.__dataclass_fields__
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in fields})

    def subset(self, mask: np.ndarray) -> Scored:
        return Scored(**{name: getattr(self, name)[mask] for name in self.__dataclass_fields__})


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson's score interval for a proportion: honest at small n and near 0 or 1 (unlike p +- 1.96 se)."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    z = 1.959963984540054 if confidence == CONFIDENCE else _normal_quantile(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


P_VALUE_METHOD: Final = "normal approximation with the block-bootstrap standard error, one-sided (H0: mean <= 0)"


def one_sided_p(value: float, se: float) -> float:
    """P(Z >= value / se) under H0: mean <= 0, by the normal approximation with a (block-bootstrap) standard error.

    Why not the bootstrap's own tail share: a correction over 136 pair-models needs p near 0.0004, and 1000 draws
    cannot tell 0.0004 from 0. NaN when there is no standard error (fewer than 2 blocks, no calls); 0 or 1 when
    the standard error is 0 (every block agrees) and the value is above, or at or below, 0.
    """
    if not (math.isfinite(value) and math.isfinite(se)):
        return math.nan
    if se <= 0:
        return 0.0 if value > 0 else 1.0
    from statistics import NormalDist

    return 1.0 - NormalDist().cdf(value / se)


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def block_bootstrap(
    numerator: np.ndarray,
    denominator: np.ndarray | None,
    blocks: np.ndarray,
    *,
    rng: np.random.Generator,
    samples: int = BOOTSTRAP_SAMPLES,
) -> Interval:
    """sum(numerator) / sum(denominator) (a mean when denominator is None) with a 95 % percentile interval from
    resampling whole blocks with replacement."""
    denominator = np.ones_like(numerator, dtype=np.float64) if denominator is None else denominator
    if len(numerator) == 0 or denominator.sum() == 0:
        return Interval(math.nan, math.nan, math.nan)
    value = float(numerator.sum() / denominator.sum())
    ids, inverse = np.unique(blocks, return_inverse=True)
    top = np.bincount(inverse, weights=numerator, minlength=len(ids))
    bottom = np.bincount(inverse, weights=denominator, minlength=len(ids))
    if len(ids) < 2:
        return Interval(value, math.nan, math.nan)
    draws = rng.integers(0, len(ids), size=(samples, len(ids)))
    bottoms = bottom[draws].sum(axis=1)
    stats = top[draws].sum(axis=1) / np.where(bottoms == 0, np.nan, bottoms)
    low, high = np.nanpercentile(stats, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    finite = stats[np.isfinite(stats)]
    se = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
    return Interval(value, float(low), float(high), se)


def class_frequencies(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels.astype(int), minlength=N_CLASSES).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def calls_of(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """The actionable call of each sample: LONG or SHORT when that is the argmax and its probability clears the
    threshold; NO_TRADE otherwise (and for every sample when there is no threshold)."""
    direction = probabilities.argmax(axis=1)
    if threshold is None:
        return np.full(len(direction), NO_TRADE)
    confident = probabilities.max(axis=1) >= threshold
    return np.where(confident & (direction != NO_TRADE), direction, NO_TRADE)


def call_returns(calls: np.ndarray, long_return: np.ndarray, short_return: np.ndarray, cost: float) -> np.ndarray:
    """After-cost return of each call's plan (fraction of price); NaN where no trade was called."""
    gross = np.where(calls == LONG, long_return, np.where(calls == SHORT, short_return, np.nan))
    return gross - cost


def choose_threshold(
    probabilities: np.ndarray,
    long_return: np.ndarray,
    short_return: np.ndarray,
    cost: float,
    *,
    min_calls: int = MIN_CALLS,
) -> float | None:
    """The lowest confidence at which directional calls earned more than their costs (validation data only).

    Candidates are the confidences of the directional predictions themselves, from all of them down to the top
    `min_calls`; the answer is the lowest one whose calls at or above it have a positive mean after-cost return.
    None when no candidate pays: such a model calls nothing actionable.
    """
    direction = probabilities.argmax(axis=1)
    directional = direction != NO_TRADE
    if directional.sum() < min_calls:
        return None
    confidence = probabilities.max(axis=1)[directional]
    gross = np.where(direction[directional] == LONG, long_return[directional], short_return[directional])
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(gross[order] - cost) / np.arange(1, len(order) + 1)
    paying = np.flatnonzero(running[min_calls - 1 :] > 0)
    if not len(paying):
        return None
    last = int(paying[-1]) + min_calls - 1  # the most calls whose mean still pays: the lowest threshold
    return float(confidence[order][last])


def verdict_of(interval: Interval, n: int, *, min_n: int = MIN_CALLS) -> Verdict:
    if n < min_n or not math.isfinite(interval.low):
        return "insufficient_data"
    if interval.low > 0:
        return "positive"
    if interval.high < 0:
        return "negative"
    return "none"


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, Any]]:
    """Top-label reliability diagram: per equal-width confidence bin, its mean confidence, hit rate and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "confidence": float(confidence[mask].mean()),
                    "accuracy": float(correct[mask].mean()),
                    "n": int(mask.sum()),
                }
            )
    return out


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by bin size."""
    if len(labels) == 0:
        return math.nan
    return float(
        sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in reliability(probabilities, labels, bins))
        / len(labels)
    )


def coverage_curve(probabilities: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """Hit rate of the argmax among the most confident k-tenths of the samples (k = 10, 9, ..., 1)."""
    if len(labels) == 0:
        return []
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    out = []
    for tenth in range(10, 0, -1):
        k = max(1, int(round(len(order) * tenth / 10)))
        top = order[:k]
        out.append(
            {
                "coverage": tenth / 10,
                "min_confidence": float(confidence[top].min()),
                "hit_rate": float(correct[top].mean()),
                "n": k,
            }
        )
    return out


def score(
    data: Scored,
    *,
    threshold: float | None,
    cost: float,
    calls: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of the contract for one set of samples (see the module doc); JSON-ready.

    The actionable calls are the argmax where it clears `threshold` (`calls_of`), unless `calls` gives them
    (walk-forward: each fold's own threshold made its calls; live: the calls the server actually served).
    """
    rng = np.random.default_rng(seed)
    n = len(data)
    labels = data.labels.astype(int)
    probabilities = np.clip(data.probabilities.astype(np.float64), _EPS, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    if n == 0:
        return {"n": 0}
    predicted = probabilities.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    frequencies = class_frequencies(labels)
    onehot = np.eye(N_CLASSES)[labels]
    log_loss = -np.log(probabilities[np.arange(n), labels])
    log_loss_reference = -np.log(np.clip(frequencies[labels], _EPS, 1.0))
    brier = ((probabilities - onehot) ** 2).sum(axis=1)
    brier_reference = ((frequencies[None, :] - onehot) ** 2).sum(axis=1)
    blocks = data.block

    def mean(values: np.ndarray) -> Interval:
        return block_bootstrap(values.astype(np.float64), None, blocks, rng=rng)

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> Interval:
        return block_bootstrap(numerator, denominator, blocks, rng=rng)

    def skill(model_loss: np.ndarray, reference_loss: np.ndarray) -> Interval:
        # 1 - sum(model) / sum(reference), resampled as a ratio of sums over blocks.
        ratio = block_bootstrap(model_loss, reference_loss, blocks, rng=rng)
        return Interval(1 - ratio.value, 1 - ratio.high, 1 - ratio.low)

    recall = [correct[labels == k].mean() for k in range(N_CLASSES) if (labels == k).any()]
    calls = calls_of(probabilities, threshold) if calls is None else calls
    returns = call_returns(calls, data.long_return, data.short_return, cost)
    called = calls != NO_TRADE
    hits = (calls == labels) & called
    risk = np.where(called, data.risk, np.nan)
    expectancy = block_bootstrap(np.nan_to_num(returns), called.astype(np.float64), blocks, rng=rng)
    expectancy_r = block_bootstrap(np.nan_to_num(returns / risk), called.astype(np.float64), blocks, rng=rng)
    hit_rate = block_bootstrap(hits.astype(np.float64), called.astype(np.float64), blocks, rng=rng)
    median_risk = float(np.nanmedian(data.risk)) if n else math.nan
    n_calls = int(called.sum())
    return {
        "n": n,
        "class_frequencies": dict(zip(CLASS_NAMES, map(float, frequencies), strict=True)),
        "accuracy": mean(correct).as_dict(),
        "majority_share": float(frequencies.max()),
        "majority_class": CLASS_NAMES[int(frequencies.argmax())],
        "balanced_accuracy": float(np.mean(recall)),
        "log_loss": float(log_loss.mean()),
        "log_loss_skill": skill(log_loss, log_loss_reference).as_dict(),
        "brier": float(brier.mean()),
        "brier_skill": skill(brier, brier_reference).as_dict(),
        "ece": expected_calibration_error(probabilities, labels),
        "sharpness": float(probabilities.max(axis=1).std()),
        "reliability": reliability(probabilities, labels),
        "coverage": coverage_curve(probabilities, labels),
        "baselines": {
            "majority": float(frequencies.max()),
            "reversal": mean((data.reversal == labels).astype(np.float64)).as_dict(),
            "persistence": mean((data.persistence == labels).astype(np.float64)).as_dict(),
        },
        "direction": direction_scores(probabilities, labels, data.reversal, ratio),
        "calls": {
            "threshold": threshold,
            "n": n_calls,
            "share": n_calls / n,
            "hit_rate": hit_rate.as_dict(),
            "break_even_hit_rate": _finite((median_risk + cost) / (2 * median_risk)) if median_risk > 0 else None,
            "expectancy_r": expectancy_r.as_dict(),
            "expectancy": expectancy.as_dict(),
            "cost": cost,
        },
        "edge": edge_of(expectancy, n_calls, n),
    }


def direction_scores(
    probabilities: np.ndarray,
    labels: np.ndarray,
    reversal: np.ndarray,
    ratio: Callable[[np.ndarray, np.ndarray], Interval],
) -> dict[str, Any]:
    """Up-or-down accuracy on the samples whose plan resolved LONG or SHORT: the sign of P(LONG) - P(SHORT)
    against the label, overall and on the most confident tenth, beside the reversal rule on the same samples.

    The published anchors for this kind of data are direction accuracies (52.9-54.1 % daily, 57.5-59.5 % on the
    most confident tenth; the reversal rule 52-53 % at 15m-1h): this block is what compares with them.
    """
    directional = (labels == LONG) | (labels == SHORT)
    n = int(directional.sum())
    if n == 0:
        return {"n": 0}
    margin = probabilities[:, LONG] - probabilities[:, SHORT]
    up = labels == LONG
    correct = np.where(directional, (margin > 0) == up, False).astype(np.float64)
    reversal_correct = np.where(directional, reversal == labels, False).astype(np.float64)
    weights = directional.astype(np.float64)
    strength = np.where(directional, np.abs(margin), -np.inf)
    top = np.zeros(len(labels), dtype=bool)
    top[np.argsort(-strength, kind="stable")[: max(n // 10, 1)]] = True
    return {
        "n": n,
        "accuracy": ratio(correct, weights).as_dict(),
        "top_decile_accuracy": ratio(correct * top, top.astype(np.float64)).as_dict(),
        "reversal": ratio(reversal_correct, weights).as_dict(),
        "up_share": float(up[directional].mean()),
    }


def edge_of(expectancy: Interval, n_calls: int, n: int, source: str = "walk_forward") -> dict[str, Any]:
    """The edge verdict: the after-cost expectancy of the actionable calls, and whether its interval clears 0; with
    its one-sided p-value (see `one_sided_p`), which the universe-wide rule (`models.evidence`) corrects."""
    verdict = verdict_of(expectancy, n_calls) if n >= MIN_SAMPLES else "insufficient_data"
    return {
        "verdict": verdict,
        "metric": "expectancy_after_costs_fraction",
        **expectancy.as_dict(),
        "n": n_calls,
        "source": source,
        "p_value": _finite(expectancy.p_above_zero),
        "p_method": P_VALUE_METHOD,
    }
