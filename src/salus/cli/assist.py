"""`salus assist DATA --models DIR --fresh FRESH`: what the monitor's alarm buys in closed loop.

Handover to a person (the scripted expert) or a stop at the first alarm, on fresh episodes, for our
validation pick and the fixed comparators at the calibrated alphas, and at equal cost (curves of
success against help requests, swept thresholds, random requests matched per group); see
``salus.monitor.assist`` and ``salus.predictor.closed_loop``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import out_dir, positive_int, seed_option

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("assist")
    def assist(
        data: Path = typer.Argument(..., help="The benchmark dataset the models were trained on."),
        models: Path = typer.Option(
            ..., "--models", help="A directory of checkpoints of one split (`salus train --model all`)."
        ),
        fresh: Path = typer.Option(
            ...,
            "--fresh",
            help="Fresh episodes of the same policy and perturbation mix, collected with another --seed.",
        ),
        out: Path = typer.Option(
            Path("runs/assist"), "--out", callback=out_dir, help="Results folder (resumes)."
        ),
        alphas: str = typer.Option(
            "",
            "--alphas",
            help="Comma-separated alphas (default: salus.predictor.closed_loop.CLOSED_LOOP_ALPHAS).",
        ),
        sweep_rates: str = typer.Option(
            "",
            "--sweep-rates",
            help="Comma-separated help rates in (0, 1] whose thresholds the equal-cost curves simulate per "
            "group (default: salus.predictor.closed_loop.SWEEP_RATES).",
        ),
        workers: int = typer.Option(
            1,
            "--workers",
            "-w",
            callback=positive_int,
            help="Worker processes for the counterfactual episodes.",
        ),
        seed: int = typer.Option(
            0, "--seed", callback=seed_option, help="Seeds the random help requests and the bootstrap."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print the pooled results as JSON."),
    ) -> None:
        """Closed-loop evaluation: success with handover, stops, help requests; resumable."""
        import json

        from salus.cli._common import RichReporter
        from salus.jobs.assist import CLOSED_LOOP_MD, AssistJob
        from salus.monitor.assist import RESULT_FILE

        job = AssistJob(
            data=data, models=models, fresh=fresh, out=out, alphas=alphas, sweep_rates=sweep_rates,
            workers=workers, seed=seed,
        )  # fmt: skip
        with RichReporter() as reporter:
            result = job.run(reporter)
        md = (out / CLOSED_LOOP_MD).read_text()
        if json_out:
            keep = ("selected", "policy_alone", "ceiling", "replay_mismatches", "total_s")
            typer.echo(json.dumps({k: result[k] for k in keep}, indent=1, default=str))
        else:
            typer.echo(md)
        reporter.console.print(f"results: {out / RESULT_FILE}, {out / CLOSED_LOOP_MD}")
