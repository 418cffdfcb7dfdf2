"""The gate, measured at full size (issue 18, item 4): `python -m bench.gate_controls [--retrains 20 ...]`.

Run by hand, not in CI: the default plan (20 negative retrains of 6 pairs, 3 positive ones, 1h, 240 days) takes
about 25 minutes on two cores (7 retrains took 7 min 37 s on 2026-12-05). Writes the full report to
`bench/results/gate-controls-<date>.json` and prints the rows of MODELS.md's "The gate, measured" table. The work
is `signals.controls.run_controls`, the same as `signals gate-check`; every retrain trains into a scratch store,
so no BentoML home is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
RESULTS = Path(__file__).resolve().parent / "results"


def _ci(figure: dict[str, Any]) -> str:
    if figure.get("value") is None:
        return "–"
    return f"{figure['value']:.2f} [{figure['ci_low']:.2f}, {figure['ci_high']:.2f}]"


def table_rows(report: dict[str, Any], rule: str) -> str:
    """One MODELS.md row per control, from a `run_controls` report."""
    negative, positive, plan = report["negative"], report["positive"], report["plan"]
    size = f"{plan['pairs']} pairs, {plan['timeframe']}, {plan['days']} d, {plan['epochs']} ep"
    return "\n".join(
        [
            f"| {rule} | negative: {negative['retrains']} retrains, {size} | {negative['retrains_serving']} of "
            f"{negative['retrains']} retrains serve a plan | {_ci(negative['false_positive_rate'])} "
            f"| {negative['positive_models']} of {negative['models']} models positive | {report['seconds']:.0f} s |",
            f"| {rule} | positive: {positive['retrains']} retrains, {plan['planted_pairs']} planted of {size} "
            f"| {positive['detected']} of {positive['planted_models']} planted models pass "
            f"| {_ci(positive['detection_rate'])} | noise beside them: {positive['noise_positive']} of "
            f"{positive['noise_models']} positive | |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from signals.controls import ControlPlan, run_controls

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrains", type=int, default=20)
    parser.add_argument("--positive-retrains", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--planted", type=int, default=3)
    parser.add_argument("--timeframe", default="1h")
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule-universe", type=int, default=None, help="The universe rule's least m (default N).")
    parser.add_argument("--rule", default="universe-bh-1", help="Which verdict rule the pipeline applied.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = replace(
        ControlPlan(),
        retrains=args.retrains,
        positive_retrains=args.positive_retrains,
        pairs=args.pairs,
        planted_pairs=args.planted,
        timeframe=args.timeframe,
        days=args.days,
        epochs=args.epochs,
        seed=args.seed,
        rule_universe=args.rule_universe,
    )
    report = run_controls(plan)
    out = args.out or RESULTS / f"gate-controls-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(table_rows(report, args.rule) + "\n")
    sys.stdout.write(f"report: {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
