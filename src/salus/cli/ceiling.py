"""`salus ceiling DATA`: the Monte-Carlo ceiling of the at-risk ROC-AUC (see ``salus.predictor.ceiling_replay``).

For a seeded sample of episodes at risk at each time, the recorded actions are replayed to that step
and the same policy continues K times with fresh policy and world noise; the share of failed
continuations estimates P(fail), whose ROC-AUC against the recorded outcomes is the ceiling.
"""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import check_range, in_range, out_dir, positive_int, seed_option, split_values

__all__ = ["register"]


def _times(text: str) -> tuple[tuple[float, ...], bool]:
    """``--times``: seconds > 0 and optionally ``T`` (the SAFE-prediction step) -> (seconds, at T)."""
    from salus.errors import InvalidInputError

    items = [t.strip() for t in text.split(",") if t.strip()]
    at_T = "T" in items
    try:
        values = tuple(float(t) for t in items if t != "T")
    except ValueError as exc:
        raise InvalidInputError(
            f"--times must be comma-separated seconds > 0 or T (e.g. 1,2,3,T), got {text!r}"
        ) from exc
    if not values:
        raise InvalidInputError(
            f"--times must list at least one time in seconds > 0 (e.g. 1,2,3 or 1,2,3,T), got {text!r}"
        )
    for t in values:
        check_range(t, "every --times value", 0, lo_open=True)
    return values, at_T


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

        from salus.cli._common import progress_bar
        from salus.predictor.ceiling_replay import CEILING_FILE, CeilingConfig, run_ceiling

        seconds, at_T = _times(times)
        config = CeilingConfig(
            times_s=seconds,
            at_T=at_T,
            k=k,
            sample=sample,
            seed=seed,
            workers=workers,
            policy=policy,
            split_seed=split_seed,
            holdout_tasks=tuple(split_values(holdout_tasks)),
            n_boot=n_boot,
        )
        with progress_bar() as bar:
            task = bar.add_task("episodes continued", total=None, info="")
            result = run_ceiling(
                data,
                out,
                config,
                say=lambda m: bar.console.print(m),
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
        if json_out:
            typer.echo(json.dumps(json.loads((out / CEILING_FILE).read_text()), indent=1))
        else:
            typer.echo("\n".join(result.table_lines()))
        stage = result.to_dict()["stage"]
        bar.console.print(
            f"results: {out / CEILING_FILE} ({result.continuations} continuations, "
            f"{stage['job_s']:g} s of simulation, {stage['wall_s']:g} s this run)"
        )
