"""`salus assist DATA --models DIR --fresh FRESH`: what the monitor's alarm buys in closed loop.

Handover to a person (the scripted expert) or a stop at the first alarm, on fresh episodes, for our
validation pick and the fixed comparators at the calibrated alphas, and at equal cost (curves of
success against help requests, swept thresholds, random requests matched per group); see
``salus.monitor.assist`` and ``salus.predictor.closed_loop``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import check_range, out_dir, positive_int, seed_option

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

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from salus.errors import InvalidInputError
        from salus.monitor.assist import RESULT_FILE, run_assist
        from salus.predictor.tables import closed_loop_lines

        try:
            parsed = tuple(float(a) for a in alphas.split(",") if a.strip()) or None
        except ValueError as exc:
            raise InvalidInputError(
                f"--alphas must be comma-separated numbers in (0, 1), got {alphas!r}"
            ) from exc
        for a in parsed or ():
            check_range(a, "every --alphas value", 0, 1, lo_open=True, hi_open=True)
        try:
            rates = tuple(float(q) for q in sweep_rates.split(",") if q.strip()) or None
        except ValueError as exc:
            raise InvalidInputError(
                f"--sweep-rates must be comma-separated numbers in (0, 1], got {sweep_rates!r}"
            ) from exc
        for q in rates or ():
            check_range(q, "every --sweep-rates value", 0, 1, lo_open=True)
        console = Console(stderr=True)
        with Progress(
            TextColumn("counterfactual episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("episodes", total=None)
            result = run_assist(
                data,
                models,
                fresh,
                out,
                alphas=parsed,
                sweep_rates=rates,
                workers=workers,
                seed=seed,
                say=lambda m: console.print(m),
                progress=lambda k, n: bar.update(task, completed=k, total=n),
            )
        md = "\n".join(closed_loop_lines(result)) + "\n"
        (out / "closed_loop.md").write_text(md)
        if json_out:
            keep = ("selected", "policy_alone", "ceiling", "replay_mismatches", "total_s")
            typer.echo(json.dumps({k: result[k] for k in keep}, indent=1, default=str))
        else:
            typer.echo(md)
        console.print(f"results: {out / RESULT_FILE}, {out / 'closed_loop.md'}")
