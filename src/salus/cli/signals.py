"""`salus signals list | check | fit`: the 12 signals' table, checks on a collection, fitted statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import (
    POLICY_SPEC_HELP,
    in_range,
    positive_int,
    progress_bar,
    seed_option,
    split_values,
)
from salus.policies import DEFAULT_POLICY

__all__ = ["register"]

signals_app = typer.Typer(
    help="The 12 per-step failure signals and the baseline scores.", no_args_is_help=True
)


def _tasks(values: list[str] | None) -> list[str]:
    from salus.sim import TASKS
    from salus.sim.tasks import check_tasks

    return check_tasks(split_values(values) or list(TASKS))


def _perturbation_schedule(spec: str) -> Any:
    """``none``, ``mixed`` or ``NAME=STRENGTH[+NAME=STRENGTH]`` -> callable(i, rng) -> [(name, strength)]."""
    import numpy as np

    from salus.signals.analysis import mixed_perturbations
    from salus.sim import PERTURBATION_NAMES, parse_perturbation

    if spec == "none":
        return None
    if spec == "mixed":
        return lambda i, rng: mixed_perturbations(i, rng, PERTURBATION_NAMES)
    fixed = []
    for part in spec.split("+"):
        parsed = parse_perturbation(part.strip())
        if isinstance(parsed, tuple):
            fixed.append((str(parsed[0]), float(parsed[1])))
        else:
            fixed.append((str(parsed.name), float(parsed.strength)))

    def schedule(i: int, rng: np.random.Generator) -> list[tuple[str, float]]:
        return list(fixed)

    return schedule


def list_signals(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    baselines: bool = typer.Option(False, "--baselines", help="Also list the baseline scores."),
) -> None:
    """Print the 12 signals: name, formula, inputs, units, typical range, when invalid."""
    from dataclasses import asdict

    from salus.signals import BASELINE_DEFINITIONS, SIGNAL_DEFINITIONS

    if json_out:
        obj: dict[str, Any] = {"signals": [asdict(d) for d in SIGNAL_DEFINITIONS]}
        if baselines:
            obj["baselines"] = BASELINE_DEFINITIONS
        typer.echo(json.dumps(obj))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="salus signals (per control step)", show_lines=True)
    for col in ("#", "name", "formula", "inputs", "units", "typical range", "invalid when"):
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "name"))
    for i, d in enumerate(SIGNAL_DEFINITIONS):
        table.add_row(str(i), d.name, d.formula, d.inputs, d.units, d.typical_range, d.invalid_when)
    console = Console()
    console.print(table)
    if baselines:
        bt = Table(title="baseline scores", show_lines=True)
        bt.add_column("name")
        bt.add_column("definition", overflow="fold")
        for name, text in BASELINE_DEFINITIONS.items():
            bt.add_row(name, text)
        console.print(bt)


def check(
    data: Path | None = typer.Argument(
        None, help="A salus dataset (reads data/signals and data/signal_valid)."
    ),
    rollouts: int = typer.Option(
        0, "--rollouts", callback=in_range(0), help="Instead of DATA: run N fresh rollouts of --policy."
    ),
    policy: str = typer.Option(
        DEFAULT_POLICY, "--policy", help="Policy spec for --rollouts (default: the packaged SmolVLA)."
    ),
    stats: Path | None = typer.Option(
        None, "--stats", help="Fitted extractor statistics (default: beside the policy)."
    ),
    task: list[str] | None = typer.Option(
        None, "--task", help="Task(s) for --rollouts (repeat or comma-separate; default: all, cycled)."
    ),
    perturb: str = typer.Option("mixed", "--perturb", help="For --rollouts: none, mixed or NAME=S[+NAME=S]."),
    num_samples: int = typer.Option(
        4, "--samples", callback=positive_int, help="K sampled chunks per inference for --rollouts."
    ),
    seed: int = typer.Option(0, "--seed", callback=seed_option, help="Seeds the rollouts."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Per-signal mean, std, min, max, NaN count and validity rate, and the checks (finite, varying, distinct)."""
    import numpy as np

    from salus.errors import InvalidInputError
    from salus.signals.analysis import (
        check_dataset_signals,
        load_extractor_for_policy,
        run_policy_rollouts,
        summarize_signals,
    )

    if (data is None) == (rollouts <= 0):
        raise InvalidInputError("give either a dataset path DATA or --rollouts N (N >= 1), not both")
    if data is not None:
        from salus.data import SalusDataset

        report = check_dataset_signals(SalusDataset(data))
    else:
        tasks = _tasks(task)
        extractor = load_extractor_for_policy(policy, batch_size=1, stats=stats)
        with progress_bar() as bar:
            tid = bar.add_task("rollouts", total=rollouts, info="")
            ok = [0]

            def tick(i: int, success: bool) -> None:
                ok[0] += int(success)
                bar.update(tid, advance=1, info=f"success {ok[0]}/{i + 1}")

            res = run_policy_rollouts(
                policy,
                rollouts,
                tasks=tasks,
                num_samples=num_samples,
                seed=seed,
                extractor=extractor,
                perturbations=_perturbation_schedule(perturb),
                progress=tick,
            )
        report = summarize_signals(np.concatenate(res.signals), np.concatenate(res.valid))
        report.update(
            {
                "source": f"rollouts:{policy}",
                "episodes": rollouts,
                "successful_episodes": int(sum(res.success)),
                "perturbed_episodes": int(sum(1 for p in res.perturbations if p)),
                "tasks": tasks,
                "num_samples": num_samples,
            }
        )
    if json_out:
        typer.echo(json.dumps(report))
    else:
        _print_report(report)
    if not report["passed"]:
        raise typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"signals of {report.get('source')} ({report['rows']} steps, {report.get('episodes')} episodes)"
    )
    for col in ("signal", "mean", "std", "min", "max", "NaN", "valid"):
        table.add_column(col, justify="right" if col != "signal" else "left", no_wrap=col == "signal")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    for name, s in report["signals"].items():
        table.add_row(
            name,
            fmt(s["mean"]),
            fmt(s["std"]),
            fmt(s["min"]),
            fmt(s["max"]),
            str(s["nan_count"]),
            f"{s['valid_rate']:.1%}",
        )
    console = Console()
    console.print(table)
    for name, ok in report["checks"].items():
        console.print(f"{'PASS' if ok else 'FAIL'} {name}")
    if report["zero_variance"]:
        console.print(f"zero variance: {', '.join(report['zero_variance'])}")
    if report["identical_pairs"]:
        console.print(f"identical: {report['identical_pairs']}")


def fit(
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--policy",
        help=POLICY_SPEC_HELP,
    ),
    episodes: int = typer.Option(
        30,
        "--episodes",
        callback=positive_int,
        help="Unperturbed rollouts to run; the successful ones are fitted.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output base path (writes .safetensors + .json); default: beside the policy's weights.",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Fit on a dataset's successful unperturbed episodes instead."
    ),
    task: list[str] | None = typer.Option(
        None, "--task", help="Task(s) (repeat or comma-separate; default: all, cycled)."
    ),
    num_samples: int = typer.Option(
        4,
        "--samples",
        callback=positive_int,
        help="K sampled chunks per inference (>= 2 fits the cluster radius).",
    ),
    source: str = typer.Option(
        "policy", "--source", help="policy: its own successful rollouts; expert: the scripted expert's demos."
    ),
    seed: int = typer.Option(0, "--seed", callback=seed_option, help="Seeds the rollouts."),
    batch_size: int = typer.Option(
        1,
        "--batch-size",
        callback=positive_int,
        help="Rollouts run in lockstep per batched policy call (faster for a large policy).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fit the extractor's frozen statistics (OOD Gaussian, cluster radius) on successful rollouts."""
    from salus.errors import InvalidNameError
    from salus.signals.analysis import (
        fit_extractor_from_dataset,
        fit_extractor_from_rollouts,
        signal_stats_path,
    )

    if source not in ("policy", "expert"):
        raise InvalidNameError("fit source", source, ("policy", "expert"))

    if data is not None:
        from salus.data import SalusDataset

        extractor, summary = fit_extractor_from_dataset(SalusDataset(data))
        target = out
        if target is None:
            raise typer.BadParameter("--out is required with --data")
    else:
        tasks = _tasks(task)
        with progress_bar() as bar:
            tid = bar.add_task("fit rollouts", total=episodes, info="")
            ok = [0]

            def tick(i: int, success: bool) -> None:
                ok[0] += int(success)
                bar.update(tid, advance=1, info=f"success {ok[0]}/{i + 1}")

            extractor, summary = fit_extractor_from_rollouts(
                policy,
                episodes,
                tasks=tasks,
                num_samples=num_samples,
                seed=seed,
                source=source,
                progress=tick,
                batch_size=batch_size,
            )
        target = out if out is not None else signal_stats_path(policy)
    st_path, js_path = extractor.save(target)
    summary.update({"safetensors": str(st_path), "json": str(js_path)})
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        for k, v in summary.items():
            typer.echo(f"{k}: {v}")


def register(app: typer.Typer) -> None:
    signals_app.command("list")(list_signals)
    signals_app.command("check")(check)
    signals_app.command("fit")(fit)
    app.add_typer(signals_app, name="signals")
