"""`salus ceiling DATA`: the Monte-Carlo ceiling of the at-risk ROC-AUC (see ``salus.predictor.ceiling_replay``).

For a seeded sample of episodes at risk at each time, the recorded actions are replayed to that step
and the same policy continues K times with fresh policy and world noise; the share of failed
continuations estimates P(fail), whose ROC-AUC against the recorded outcomes is the ceiling.
"""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option, split_values

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("ceiling")
    def ceiling(
        data: Path = typer.Argument(..., help="A dataset collected by `salus collect` in our simulator."),
        policy: str | None = typer.Option(
            None,
            "--policy",
            help="Policy spec (builtin, builtin:DIR, smolvla:PATH, ...); default: the policy that collected "
            "DATA (the ceiling is that policy's).",
        ),
        times: str = typer.Option(
            "1,2,3",
            "--times",
            help="At-risk times in seconds, comma-separated; T adds the step of the "
            "protocol's SAFE-prediction view (T - 2, T the shortest rollout).",
        ),
        k: int = typer.Option(8, "--k", callback=positive_int, help="Continuations per episode and time."),
        sample: int = typer.Option(
            200,
            "--sample",
            callback=positive_int,
            help="At most this many at-risk episodes per time (seeded).",
        ),
        seed: int = typer.Option(
            0, "--seed", callback=seed_option, help="Seeds the sample, the continuations and the bootstrap."
        ),
        workers: int = typer.Option(1, "--workers", "-w", callback=positive_int, help="Worker processes."),
        out: Path = typer.Option(
            Path("runs/ceiling"), "--out", callback=out_dir, help="Results folder (resumes)."
        ),
        split_seed: int | None = typer.Option(
            None,
            "--split-seed",
            callback=seed_option,
            help="Sample from the test part of this split (salus train's defaults) instead of every episode.",
        ),
        holdout_tasks: list[str] = typer.Option(
            [],
            "--holdout-task",
            help="With --split-seed: the unseen task(s) of the split (repeatable); 'rotate': the "
            "task `salus train --holdout-task rotate` holds out for its first split seed.",
        ),
        n_boot: int = typer.Option(
            1000, "--n-boot", callback=in_range(0), help="Bootstrap resamples of the 95% intervals."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print ceiling.json instead of the table."),
    ) -> None:
        """Monte-Carlo ceiling of the at-risk ROC-AUC (resumable, parallel)."""
        import json

        from salus.cli._common import RichReporter
        from salus.jobs.ceiling import MonteCarloCeilingJob
        from salus.predictor.ceiling_replay import CEILING_FILE

        job = MonteCarloCeilingJob(
            data=data, out=out, policy=policy, times=times, k=k, sample=sample, seed=seed, workers=workers,
            split_seed=split_seed, holdout_tasks=tuple(split_values(holdout_tasks)), n_boot=n_boot,
        )  # fmt: skip
        with RichReporter() as reporter:
            result = job.run(reporter)
        if json_out:
            typer.echo(json.dumps(json.loads((out / CEILING_FILE).read_text()), indent=1))
        else:
            typer.echo("\n".join(result.table_lines()))
        stage = result.to_dict()["stage"]
        reporter.console.print(
            f"results: {out / CEILING_FILE} ({result.continuations} continuations, "
            f"{stage['job_s']:g} s of simulation, {stage['wall_s']:g} s this run)"
        )
