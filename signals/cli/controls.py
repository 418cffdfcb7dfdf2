"""`signals gate-check`: measure the skill gate both ways (false positives on noise, detection of planted edges).

The work is `signals.controls.run_controls`; this module is its options, progress and summary. It never touches
the user's candle or model store: each retrain trains into a scratch store that is removed afterwards.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from signals.cli.app import JsonOption, app, fail, progress_bar, stdout
from signals.cli.report import with_interval
from signals.core.errors import SignalsError


@app.command("gate-check")
def gate_check(
    retrains: Annotated[
        int | None, typer.Option("--retrains", min=1, help="Negative-control universe retrains K. Default: 20.")
    ] = None,
    pairs: Annotated[int | None, typer.Option("--pairs", min=1, help="Pairs per universe N. Default: 6.")] = None,
    positive_retrains: Annotated[
        int | None, typer.Option("--positive-retrains", min=0, help="Positive-control retrains. Default: 3.")
    ] = None,
    planted: Annotated[
        int | None, typer.Option("--planted", min=1, help="Planted pairs per positive universe. Default: N / 2.")
    ] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Timeframe trained. Default: 1h.")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Days of candles per pair. Default: 240.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per fit. Default: 3.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="First market seed; retrain k uses seed + k.")] = 0,
    rule_universe: Annotated[
        int | None,
        typer.Option(
            "--rule-universe",
            min=1,
            help="The universe rule's least m. Default: the pair-models each retrain tests (N).",
        ),
    ] = None,
    tiny_network: Annotated[
        bool, typer.Option("--tiny-network", help="An 8-unit network instead of the served size (CPU-light runs).")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="CI size: 2 + 1 retrains of 2 pairs, 40 days, tiny network, 1 epoch.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain universes with no edge K times and count the retrains in which any pair-model would serve plans
    (false-positive rate per retrain, Wilson 95 % interval); retrain universes with planted edges and count the
    planted pair-models that pass (detection rate). Target: at most 1 retrain in 20 serves by chance."""
    from dataclasses import replace

    from signals.controls import QUICK_PLAN, ControlPlan, Retrain, run_controls

    base = QUICK_PLAN if quick else ControlPlan()
    n_pairs = pairs if pairs is not None else base.pairs
    given: dict[str, Any] = {
        "retrains": retrains,
        "positive_retrains": positive_retrains,
        "pairs": n_pairs,
        "planted_pairs": planted if planted is not None else max(1, n_pairs // 2),
        "timeframe": timeframe,
        "days": days,
        "epochs": epochs,
        "seed": seed,
        "tiny_network": tiny_network or None,
        "rule_universe": rule_universe,
    }
    try:
        plan = replace(base, **{key: value for key, value in given.items() if value is not None})
    except SignalsError as error:
        raise fail(error) from error
    total = plan.retrains + plan.positive_retrains
    try:
        with progress_bar() as progress:
            task = progress.add_task("gate-check", total=total)

            def advance(control: str, retrain: Retrain) -> None:
                progress.update(task, advance=1, description=f"{control} seed {retrain.seed}")

            report = run_controls(plan, on_retrain=advance)
    except (SignalsError, ValueError) as error:
        raise fail(error) from error
    if as_json:
        stdout.print_json(data=report)
        return
    for line in summary_lines(report):
        stdout.print(line, highlight=False, markup=False)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report in a few lines a person reads: both rates with their intervals, and the target."""
    negative, positive, plan = report["negative"], report["positive"], report["plan"]
    fp = negative["false_positive_rate"]
    target = report["target"]["max_false_positive_rate"]
    lines = [
        f"gate-check: {plan['pairs']} pairs, {plan['timeframe']}, {plan['days']} days, {plan['epochs']} epoch(s), "
        f"{report['seconds']:.0f} s",
        f"negative control: {negative['retrains_serving']} of {negative['retrains']} retrains would serve a plan; "
        f"false-positive rate per retrain {with_interval(fp)} (target <= {target:.2f}); "
        f"{negative['positive_models']} of {negative['models']} pair-models positive; "
        f"verdicts {negative['verdicts']}",
    ]
    if positive["retrains"]:
        lines.append(
            f"positive control: {positive['detected']} of {positive['planted_models']} planted pair-models pass; "
            f"detection rate {with_interval(positive['detection_rate'])}; "
            f"noise pairs beside them positive: {positive['noise_positive']} of {positive['noise_models']}"
        )
    return lines
