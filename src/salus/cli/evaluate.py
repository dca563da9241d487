"""`salus evaluate MODEL_DIR DATA`: every method side by side under the protocol.

MODEL_DIR is a checkpoint, a directory of checkpoints (`salus train --model all`), or a directory of
``seed<S>/`` directories (`salus train --split-seeds ...`): then every seed is evaluated and the
results are aggregated (mean and spread over seeds, headline differences with intervals).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range, invoked_command, out_dir, positive_int

__all__ = ["register", "evaluate_seeds", "clean_json"]


def clean_json(value: Any) -> Any:
    """NaN/inf -> null, numpy -> Python, so the output is strict JSON."""
    from salus._json import to_json

    return to_json(value, non_finite="null")


def evaluate_seeds(
    model_dir: Path, episodes: Any, alphas: Any, progress: Any = None, *, workers: int = 1
) -> tuple[list[Any], dict[str, Any] | None]:
    """Evaluations of MODEL_DIR (one per seed directory, or one) and their aggregate (None for one).

    ``workers`` > 1: the seeds are dealt round-robin to this process (the first seed among them)
    and that many - 1 forked processes; each seed's evaluation is deterministic, so the numbers are
    those of one process. Seeds evaluated in a fork come back as their ``report`` and ``samples``
    only (what the aggregate and the tables read); the first seed's evaluation is whole (the report
    page draws it)."""
    from salus.predictor import aggregate_seeds
    from salus.predictor.discovery import seed_dirs

    seeds = seed_dirs(model_dir)
    dirs = [d for _, d in seeds] or [model_dir]
    if workers > 1 and len(dirs) > 1:
        evals = _evaluate_parallel(dirs, episodes, alphas, progress, workers)
    else:
        evals = [_evaluate_dir(d, episodes, alphas, progress) for d in dirs]
    agg = aggregate_seeds([e.report for e in evals], [e.samples for e in evals]) if seeds else None
    return evals, agg


def _evaluate_dir(d: Path, episodes: Any, alphas: Any, progress: Any = None) -> Any:
    from salus.predictor import evaluate_detailed
    from salus.predictor.discovery import load_checkpoints, read_selection_record

    preds = load_checkpoints(d)
    record = read_selection_record(d) if not (d / "predictor.json").is_file() else None
    return evaluate_detailed(episodes, preds, alphas=alphas, progress=progress, selection=record)


_FORKED: dict[str, Any] = {}  # what a forked worker inherits (episodes are large: never pickled)


def _evaluate_forked(dirs: list[Path]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    import torch

    torch.set_num_threads(1)
    out = []
    for d in dirs:
        ev = _evaluate_dir(d, _FORKED["episodes"], _FORKED["alphas"])
        out.append((ev.report, ev.samples))
    return out


def _evaluate_parallel(
    dirs: list[Path], episodes: Any, alphas: Any, progress: Any, workers: int
) -> list[Any]:
    """Seeds dealt round-robin to this process (which takes the first) and workers - 1 forks."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    share = [list(range(i, len(dirs), workers)) for i in range(min(workers, len(dirs)))]
    _FORKED.update(episodes=episodes, alphas=alphas)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=len(share) - 1, mp_context=ctx) as pool:
            futures = [pool.submit(_evaluate_forked, [dirs[i] for i in idx]) for idx in share[1:]]
            mine = [_evaluate_dir(dirs[i], episodes, alphas, progress) for i in share[0]]
            theirs = [f.result() for f in futures]
    finally:
        _FORKED.clear()
    evals: list[Any] = [None] * len(dirs)
    for i, ev in zip(share[0], mine, strict=True):
        evals[i] = ev
    first = evals[0]
    for idx, results in zip(share[1:], theirs, strict=True):
        for i, (report, samples) in zip(idx, results, strict=True):
            evals[i] = replace(first, report=report, samples=samples, methods=[], bands={}, boot={})
    return evals


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        model_dir: Path = typer.Argument(
            ...,
            help="A checkpoint, a directory of checkpoints (`salus train --model all`), or of seed<S>/ "
            "directories (`salus train --split-seeds`).",
        ),
        data: Path = typer.Argument(..., help="The dataset the checkpoints were trained on."),
        alpha: list[float] = typer.Option(
            None,
            "--alpha",
            callback=in_range(0, 1, lo_open=True, hi_open=True),
            help="Conformal alpha; repeatable (default 0.05 0.1 0.2).",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the report as one JSON object instead of markdown."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            callback=out_dir,
            help="Also write results.json and results.md into this directory.",
        ),
        threads: int = typer.Option(1, "--threads", callback=positive_int, help="torch CPU threads (>= 1)."),
        workers: int = typer.Option(
            1,
            "--workers",
            "-w",
            callback=positive_int,
            help="Processes for the split seeds (forked; the same numbers as one process).",
        ),
    ) -> None:
        """SAFE-comparable, at-risk and time-matched ROC-AUC, and conformal alarms, for every method."""
        import torch
        from rich.console import Console

        from salus.data import SalusDataset
        from salus.predictor import DEFAULT_ALPHAS, episodes_from_dataset
        from salus.predictor.tables import format_benchmark, format_markdown

        torch.set_num_threads(threads)
        alphas = tuple(sorted(set(alpha))) if alpha else DEFAULT_ALPHAS
        episodes = episodes_from_dataset(SalusDataset(data), embeddings=True)
        console = Console(stderr=True)
        with console.status("evaluating") as status:
            evals, agg = evaluate_seeds(
                model_dir, episodes, alphas, progress=lambda m: status.update(m), workers=workers
            )
        reports = [e.report for e in evals]
        commands = [p.get("command") for r in reports for p in r.get("predictors", []) if p.get("command")]
        commands = list(dict.fromkeys(commands))
        commands.append(invoked_command(ctx))
        if agg is None:
            payload: dict[str, Any] = {**reports[0], "commands": commands}
            md = format_markdown(reports[0], commands=commands)
        else:
            payload = {"aggregate": agg, "seeds": reports, "commands": commands}
            md = format_benchmark(agg, reports, commands=commands)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(clean_json(payload), indent=1) + "\n")
            (out / "results.md").write_text(md)
        if as_json:
            typer.echo(json.dumps(clean_json(payload)))
        else:
            typer.echo(md)
