"""`salus benchmark`: the fixed benchmark that ranks failure detectors, end to end and resumable
(the benchmark job, :mod:`salus.jobs.benchmark`). The results file (``docs/results.md`` by default)
is this command's output, never edited by hand, and starts with the commands and the time each
stage took."""

from __future__ import annotations

from pathlib import Path

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option
from salus.jobs.benchmark import BENCHMARK_SIZES, EFFICIENCY_SIZES, FRESH_SEED
from salus.policies import DEFAULT_POLICY

__all__ = ["register"]


def _sizes(field: str) -> str:
    """``builtin 1200, smolvla 600``: a field of every policy's benchmark size, for the help."""
    return ", ".join(f"{name} {getattr(size, field)}" for name, size in BENCHMARK_SIZES.items())


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark(
        out: Path = typer.Option(
            Path("runs/benchmark"),
            "--out",
            callback=out_dir,
            help="Folder for data, models, evaluation, report.",
        ),
        episodes: int | None = typer.Option(
            None,
            "--episodes",
            "-n",
            callback=positive_int,
            help=f"Episodes of the fixed dataset (resumed); default: the policy's ({_sizes('episodes')}).",
        ),
        samples: int | None = typer.Option(
            None,
            "--samples",
            callback=positive_int,
            help="K chunks sampled per computed chunk in the collections (STAC, action total variance and "
            f"the sample signals read them); default: the policy's ({_sizes('samples')}).",
        ),
        seed: int = typer.Option(
            2026, "--seed", callback=seed_option, help="Collection seed of the fixed dataset."
        ),
        workers: int = typer.Option(
            2,
            "--workers",
            "-w",
            callback=positive_int,
            help="Worker processes: collection, the ceiling, the closed loop and the split seeds' evaluation.",
        ),
        holdout_task: str = typer.Option(
            "rotate",
            "--holdout-task",
            help="The unseen task, or 'rotate' (the default): each split seed holds out the next of the "
            "dataset's sorted tasks (salus train --holdout-task rotate), so with as many seeds as tasks "
            "every task is unseen once.",
        ),
        split_seeds: str = typer.Option(
            "0,1,2,3",
            "--split-seeds",
            help="Split seeds (>= 3 for the results; with 'rotate', one per task: 4 for our tasks).",
        ),
        epochs: int = typer.Option(
            20,
            "--epochs",
            callback=positive_int,
            help="Maximum training epochs (early stopping after 4 without improvement).",
        ),
        results: Path | None = typer.Option(
            None,
            "--results",
            help="Where the results markdown goes (JSON beside it); default docs/results.md for the "
            "default policy (and --data), docs/results-<policy>.md for another (results-builtin.md).",
        ),
        skip_report: bool = typer.Option(False, "--skip-report", help="Do not write the HTML report."),
        data_path: Path = typer.Option(
            None,
            "--data",
            help="Benchmark an existing dataset (e.g. your robot's) instead of collecting one.",
        ),
        fresh_episodes: int | None = typer.Option(
            None,
            "--fresh-episodes",
            callback=in_range(0),
            help=f"Fresh episodes for the closed loop (`salus assist`; default: the policy's, {_sizes('fresh_episodes')}); 0: none. "
            "Not with --data: the closed loop needs our simulator.",
        ),
        fresh_seed: int | None = typer.Option(
            None,
            "--fresh-seed",
            callback=seed_option,
            help=f"Collection seed of the fresh episodes (default {FRESH_SEED}; not with --data).",
        ),
        ceiling_sample: int | None = typer.Option(
            None,
            "--ceiling-sample",
            callback=in_range(0),
            help=f"At-risk episodes per time (1, 2, 3 s) of the Monte-Carlo ceiling (`salus ceiling`; "
            f"default: the policy's, {_sizes('ceiling_sample')}); 0: none. Not with --data: the ceiling needs our simulator.",
        ),
        efficiency: str = typer.Option(
            ",".join(str(n) for n in EFFICIENCY_SIZES),
            "--efficiency-sizes",
            help="Training-episode counts of the data-efficiency curve (comma list; sizes not below the "
            "training split are skipped; '' for none).",
        ),
        select: str = typer.Option(
            "auto",
            "--select",
            help="How our model is chosen (salus train --select): auto, validation or cross-validation.",
        ),
        policy: str = typer.Option(
            DEFAULT_POLICY,
            "--policy",
            help="Policy spec the dataset is collected with: smolvla (the packaged SmolVLA, the "
            "default) or builtin (the light option); ignored with --data.",
        ),
    ) -> None:
        """Collect, train (per split seed), ablate, evaluate and report: the benchmark, resumable."""
        from salus.cli._common import run_pipeline
        from salus.jobs.benchmark import BenchmarkJob, run_benchmark

        job = BenchmarkJob(
            out=out, episodes=episodes, samples=samples, seed=seed, workers=workers, holdout_task=holdout_task,
            split_seeds=split_seeds, epochs=epochs, results=results, skip_report=skip_report, data=data_path,
            fresh_episodes=fresh_episodes, fresh_seed=fresh_seed, ceiling_sample=ceiling_sample,
            efficiency=efficiency, select=select, policy=policy,
        )  # fmt: skip
        result, console = run_pipeline(run_benchmark, job)
        console.print(f"results: {result.results} (total {result.seconds:.0f} s)")
