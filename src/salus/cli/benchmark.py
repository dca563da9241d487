"""`salus benchmark`: the fixed benchmark that ranks failure detectors, end to end and resumable.

collect a fixed dataset of the embedded default policy under the default perturbation mix -> train
every model once per split seed (each seed holding out another task: leave-one-task-out) -> ablations of our model (split seed 0) ->
evaluate every method under the protocol over the seeds -> the report. Every stage is the command a
person would type (so each resumes: collection continues where it stopped, existing checkpoints are
kept); the results file (``docs/results.md`` by default) is this command's output, never edited by
hand, and starts with the commands and the time each stage took.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from salus.cli._common import in_range, out_dir, positive_int, seed_option
from salus.policies import DEFAULT_POLICY

__all__ = ["register", "benchmark_stages", "results_path", "ABLATIONS"]

# K chunks sampled per computed chunk in the benchmark's collections: the papers' count for STAC and
# action total variance (10; collection's default is 4). Measured on the built-in policy, 24 episodes
# with K = 4 and K = 10 took 38 s and 33 s (one batched sampling pass; within the machine's noise).
BENCHMARK_SAMPLES = 10

# (label, feature groups, other `salus train` arguments) of the ablation variants of salus-risk,
# fixed in advance.
_ALL_GROUPS = "signals,baselines,state,embedding,hidden,knn"
ABLATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("salus-risk[-knn]", "signals,baselines,state,embedding,hidden", ()),
    ("salus-risk[-embedding,-hidden]", "signals,baselines,state,knn", ()),
    ("salus-risk[signals only]", "signals", ()),
    ("salus-risk[knn only]", "knn", ()),
    ("salus-risk[horizon objective]", _ALL_GROUPS, ("--objective", "horizons")),
    ("salus-risk[score ramp 0.1/s]", _ALL_GROUPS, ("--score-ramp", "0.1")),
)


def benchmark_stages(
    out: Path,
    *,
    episodes: int,
    seed: int,
    workers: int,
    holdout_task: str,
    split_seeds: str,
    epochs: int,
    data: Path | None = None,
    fresh_episodes: int = 0,
    fresh_seed: int = 7001,
    policy: str = DEFAULT_POLICY,
    ceiling_sample: int = 0,
    select: str = "auto",
    efficiency_sizes: tuple[int, ...] = (),
) -> list[tuple[str, list[str]]]:
    """The benchmark as (stage name, salus CLI arguments); with ``data`` (a dataset the user already
    has) there is no collection stage and no closed loop (it needs our simulator). ``fresh_episodes``
    > 0 adds the closed-loop stages: fresh episodes collected with ``fresh_seed``, then ``salus
    assist`` with the first split seed's models; ``ceiling_sample`` > 0 the Monte-Carlo ceiling
    (``salus ceiling``, at most that many at-risk episodes per time, K = ``CEILING_K``);
    ``efficiency_sizes`` one training of every model per size on that many training episodes (split
    seed ``first``), the data-efficiency curve."""
    stages: list[tuple[str, list[str]]] = []
    own_data = data is not None
    if data is None:
        data = out / "data.zarr"
        collect = ["collect", "--policy", policy, "--episodes", str(episodes), "--seed", str(seed)]
        collect += ["--workers", str(workers), "--save-hidden", "--samples", str(BENCHMARK_SAMPLES)]
        collect += ["--out", str(data)]
        stages.append(("collect", collect))
    common = ["--holdout-task", holdout_task, "--epochs", str(epochs), "--patience", "4", "--resume"]
    train = ["train", str(data), "--model", "all", "--out", str(out / "models"), "--split-seeds", split_seeds]
    train += ["--select", select]
    stages.append(("train", [*train, *common]))
    first = split_seeds.split(",")[0].strip()
    if ceiling_sample > 0 and not own_data:
        # drawn from every episode: under a rotated held-out task each is a test episode of some seed,
        # and the table pairs each seed's test episodes with the ceiling's (salus.predictor.ceiling)
        ceiling = ["ceiling", str(data), "--policy", policy, "--times", CEILING_TIMES, "--k", str(CEILING_K)]
        ceiling += ["--sample", str(ceiling_sample), "--workers", str(workers), "--out", str(out / "ceiling")]
        stages.append(("ceiling", ceiling))
    for n in efficiency_sizes:  # the data-efficiency curve: every model on n training episodes
        args = ["train", str(data), "--model", "all", "--max-train-episodes", str(n), "--seed", first]
        args += ["--select", select, "--out", str(out / "efficiency" / f"n{n}"), *common]
        stages.append((f"efficiency {n}", args))
    for label, groups, extra in ABLATIONS:
        args = ["train", str(data), "--model", "salus-risk", "--feature-groups", groups, "--label", label]
        args += ["--out", str(out / "ablation" / label), "--seed", first, *common, *extra]
        stages.append((f"ablation {label}", args))
    if fresh_episodes > 0 and not own_data:
        fresh = out / "assist" / "fresh.zarr"
        collect = [
            "collect",
            "--policy",
            policy,
            "--episodes",
            str(fresh_episodes),
            "--seed",
            str(fresh_seed),
        ]
        collect += ["--workers", str(workers), "--save-hidden", "--samples", str(BENCHMARK_SAMPLES)]
        collect += ["--out", str(fresh)]
        stages.append(("collect fresh", collect))
        assist = [
            "assist",
            str(data),
            "--models",
            str(out / "models" / f"seed{first}"),
            "--fresh",
            str(fresh),
        ]
        stages.append(("assist", [*assist, "--out", str(out / "assist"), "--workers", str(workers)]))
    return stages


STAGE_TIMES = "stage_seconds.json"
# The defaults fit the benchmark in 90 minutes on a 2-core machine (the budget); larger
# values narrow the intervals at proportional cost (stage times are in the results header).
EPISODES = 1200  # episodes of the fixed dataset (300 per task)
CEILING_SAMPLE = 50  # default at-risk episodes per time of the benchmark's Monte-Carlo ceiling
ALWAYS_RUN = ("evaluate", "report")  # stages that do all their work in every run (no resume)
CEILING_TIMES = "1,2,3,T"  # the at-risk times and the SAFE-prediction step (T - 2)
CEILING_K = 8  # continuations per episode and time
EFFICIENCY_SIZES = (50, 100, 200, 400, 800, 1600)  # training episodes of the data-efficiency curve
FRESH_EPISODES = 240  # default closed-loop episodes of `salus benchmark` (not with --data)
FRESH_SEED = 7001


def _stage_seconds(out: Path, now: dict[str, float]) -> dict[str, float]:
    """Per stage, the longest time it took over the runs in ``out`` (the run that did its work;
    resumed stages only check), merged with this run's and saved. ``evaluate`` and ``report``
    never resume (every run does all their work): this run's time."""
    path = out / STAGE_TIMES
    seen: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
    merged = {
        k: float(v) if k in ALWAYS_RUN else max(float(seen.get(k, 0.0)), float(v)) for k, v in now.items()
    }
    path.write_text(json.dumps(merged, indent=1))
    return merged


def _recorded_seconds(
    out: Path, now: dict[str, float], closed_loop: dict[str, Any] | None
) -> dict[str, float]:
    """Stage times the artifacts record about the runs that did the work (a collection's
    ``collect_seconds``, ``salus assist``'s ``total_s``, the ceiling's simulation time over its
    workers), so a stage first run by hand and resumed here still shows its work; each at least
    this run's time."""
    from salus.data import SalusDataset
    from salus.predictor.ceiling import CEILING_FILE, load_ceiling

    found: dict[str, float] = {}
    for name, path in (("collect", out / "data.zarr"), ("collect fresh", out / "assist" / "fresh.zarr")):
        if name in now and path.is_dir():
            found[name] = float(SalusDataset(path).attrs.get("collect_seconds") or 0.0)
    if "ceiling" in now and (out / "ceiling" / CEILING_FILE).is_file():
        c = load_ceiling(out / "ceiling")
        workers = max(1, int((c.get("config") or {}).get("workers") or 1))
        found["ceiling"] = float((c.get("stage") or {}).get("job_s") or 0.0) / workers
    if closed_loop is not None and "assist" in now:
        found["assist"] = float(closed_loop.get("total_s") or 0.0)
    return {k: max(v, now[k]) for k, v in found.items()}


def _recorded_groups(args: list[str], data: Path) -> list[str]:
    """``args`` with ``--feature-groups`` restricted to the groups whose step keys ``data`` has."""
    from salus.data import SalusDataset

    keys = set(SalusDataset(data).keys)
    need = {
        "hidden": "hidden",
        "state": "state",
        "baselines": "baselines",
        "embedding": "obs_embedding",
        "knn": "obs_embedding",
    }
    i = args.index("--feature-groups") + 1
    kept = [g for g in args[i].split(",") if need.get(g, "signals") in keys]
    return [*args[:i], ",".join(kept or ["signals"]), *args[i + 1 :]]


def _ablation_lines(out: Path, data: Any, seed: int) -> list[str]:
    """The ablation table: each variant against the full salus-risk of split seed ``seed``."""
    import math

    from salus.predictor import TrainedPredictor, evaluate_detailed
    from salus.predictor.protocol import ci95
    from salus.predictor.tables import fmt

    full = [
        TrainedPredictor.load(out / "models" / f"seed{seed}" / n)
        for n in ("salus-risk", "oracle-risk")
        if (out / "models" / f"seed{seed}" / n / "predictor.json").is_file()
    ]
    variants = [
        TrainedPredictor.load(out / "ablation" / label)
        for label, _, _ in ABLATIONS
        if (out / "ablation" / label / "predictor.json").is_file()
    ]
    ev = evaluate_detailed(data, [*full, *variants], include=("salus", "oracle", "ablation"))
    names = [m.name for m in ev.methods]
    if "salus-risk" not in names:
        return []
    ref = names.index("salus-risk")
    lines = [
        f"## Ablations (split seed {seed})",
        "",
        "What each input group, the objective and the score ramp buy: salus-risk with a group removed (or "
        "alone), the seed's horizon-only objective, with a time ramp of 0.1 per second on its score, and the oracle (NOT deployable: also reads privileged simulator "
        "state and the perturbation parameters). Difference to the full salus-risk with a 95% paired "
        "bootstrap interval.",
        "",
        "| model | seen SAFE | seen at-risk 2 s | unseen SAFE | unseen at-risk 2 s | seen SAFE - full | unseen SAFE - full |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in enumerate(ev.report["methods"]):
        cells = [m["name"]]
        for g in ("seen", "unseen"):
            cells += [fmt(m[g]["safe"]["auroc"]), fmt(m[g]["at_risk"]["2s"]["auroc"])]
        for g in ("seen", "unseen"):
            if k == ref:
                cells.append("-")
                continue
            b = ev.boot[g]["safe"]
            d = m[g]["safe"]["auroc"] - ev.report["methods"][ref][g]["safe"]["auroc"]
            lo, hi = ci95(b[k] - b[ref])
            cells.append(f"{d:+.3f} ({lo:+.3f}, {hi:+.3f})" if not math.isnan(lo) else f"{d:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark(
        out: Path = typer.Option(
            Path("runs/benchmark"),
            "--out",
            callback=out_dir,
            help="Folder for data, models, evaluation, report.",
        ),
        episodes: int = typer.Option(
            EPISODES,
            "--episodes",
            "-n",
            callback=positive_int,
            help="Episodes of the fixed dataset (resumed).",
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
            help=f"Fresh episodes for the closed loop (`salus assist`; default {FRESH_EPISODES}); 0: none. "
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
            f"default {CEILING_SAMPLE}); 0: none. Not with --data: the ceiling needs our simulator.",
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
        from rich.console import Console
        from rich.markup import escape

        from salus._json import to_json
        from salus.cli.main import app as root_app
        from salus.data import SalusDataset
        from salus.errors import InvalidInputError
        from salus.jobs.evaluate import EvaluateJob, run_evaluate
        from salus.jobs.train import parse_split_seeds
        from salus.predictor import DEFAULT_ALPHAS, episodes_from_dataset
        from salus.predictor.tables import format_benchmark

        parse_split_seeds(split_seeds, 0)  # a bad --split-seeds fails now, not after the collection
        if results is None:
            results = results_path(policy if data_path is None else DEFAULT_POLICY)
        sizes = _efficiency_sizes(efficiency)
        if data_path is not None and ceiling_sample:
            raise InvalidInputError(
                "--ceiling-sample runs the Monte-Carlo ceiling (`salus ceiling`), which replays episodes "
                "in our simulator; with --data (your own dataset) there is none: drop it"
            )
        if data_path is not None and (fresh_episodes or fresh_seed is not None):
            raise InvalidInputError(
                "--fresh-episodes / --fresh-seed run the closed loop (`salus assist`), which needs our "
                "simulator; with --data (your own dataset) there is none: drop them, or benchmark without --data"
            )
        console = Console(stderr=True)
        command = typer.main.get_command(root_app)
        out.mkdir(parents=True, exist_ok=True)
        stages = benchmark_stages(
            out,
            episodes=episodes,
            seed=seed,
            workers=workers,
            holdout_task=holdout_task,
            split_seeds=split_seeds,
            epochs=epochs,
            data=data_path,
            fresh_episodes=FRESH_EPISODES if fresh_episodes is None else fresh_episodes,
            fresh_seed=FRESH_SEED if fresh_seed is None else fresh_seed,
            policy=policy,
            ceiling_sample=CEILING_SAMPLE if ceiling_sample is None else ceiling_sample,
            select=select,
            efficiency_sizes=sizes,
        )
        timings: list[tuple[str, float]] = []
        started = time.perf_counter()
        skipped: list[str] = []
        for k, (name, args) in enumerate(stages):
            if name.startswith("efficiency") and _not_below_training(out, split_seeds, int(name.split()[1])):
                skipped.append(name)  # no cut: the full training is the curve's last point
                continue
            if name.startswith("ablation"):  # only the groups this dataset records (e.g. no --save-hidden)
                args = _recorded_groups(args, data_path or out / "data.zarr")
                stages[k] = (name, args)
            console.rule(f"[bold]{escape(name)}[/bold]: salus {escape(shlex.join(args))}")
            t0 = time.perf_counter()
            code = command.main(args=args, prog_name="salus", standalone_mode=False)
            if isinstance(code, int) and code:
                raise typer.Exit(code)
            timings.append((name, time.perf_counter() - t0))
        stages = [(n, a) for n, a in stages if n not in skipped]
        console.rule("[bold]evaluate")
        t0 = time.perf_counter()
        data_file = data_path or out / "data.zarr"
        data = episodes_from_dataset(SalusDataset(data_file))
        with console.status("evaluating") as status:
            job = EvaluateJob(out / "models", data_file, DEFAULT_ALPHAS, workers)
            evaluated = run_evaluate(job, progress=lambda m: status.update(m), episodes=data)
            evals, agg = evaluated.evaluations, evaluated.aggregate
            status.update("ablations")
            first = int(split_seeds.split(",")[0])
            ablation = _ablation_lines(out, data, first)
            if sizes:
                status.update("data-efficiency curve")
                ablation += _efficiency_lines(out, data, sizes, evals[0].report)
        timings.append(("evaluate", time.perf_counter() - t0))
        if agg is not None and any(n == "ceiling" for n, _ in stages):
            ablation = _ceiling_lines(out / "ceiling", data_path or out / "data.zarr", evals, agg) + ablation
        closed_loop = _closed_loop(out) if any(n == "assist" for n, _ in stages) else None
        if closed_loop is not None:
            from salus.predictor.tables import closed_loop_lines

            ablation += closed_loop_lines(closed_loop)
        if not skip_report:  # the first seed's evaluation, drawn (not recomputed)
            from salus.monitor.report import render_report

            console.rule(f"[bold]report[/bold]: {out / 'report'}")
            t0 = time.perf_counter()
            render_report(
                evals[0],
                out / "report",
                commands=[f"salus {shlex.join(a)}" for _, a in stages],
                closed_loop=closed_loop,
            )
            timings.append(("report", time.perf_counter() - t0))
        total = time.perf_counter() - started
        me = "salus " + shlex.join(sys.argv[1:]) if "benchmark" in sys.argv else "salus benchmark"
        commands = [
            me,
            "# which runs these stages (each resumes):",
            *[f"salus {shlex.join(a)}" for _, a in stages],
        ]
        worked = _stage_seconds(out, {**dict(timings), **_recorded_seconds(out, dict(timings), closed_loop)})
        header = [
            "Time of each stage when it did its work (a resumed stage only checks; kept in "
            f"`{out / STAGE_TIMES}`): "
            + ", ".join(f"{n} {t:.0f} s" for n, t in worked.items())
            + f"; {sum(worked.values()):.0f} s in all on a 2-core CPU machine. This run: {total:.0f} s.",
        ]
        reports = [e.report for e in evals]
        if agg is None:
            raise typer.Exit(2)
        md = format_benchmark(agg, reports, commands=commands, header=header, extra=ablation)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(md)
        payload: dict[str, Any] = {
            "aggregate": agg,
            "seeds": reports,
            "commands": commands,
            "timings_s": dict(timings),
            "closed_loop": closed_loop,
        }
        results.with_suffix(".json").write_text(
            json.dumps(to_json(_slim(payload), non_finite="null"), indent=1) + "\n"
        )
        console.print(f"results: {results} (total {total:.0f} s)")


def results_path(policy: str) -> Path:
    """The default results file of a benchmark of ``policy``: ``docs/results.md`` for the default
    policy, ``docs/results-<name>.md`` for another (``builtin:DIR`` -> ``results-builtin.md``)."""
    from salus.policies import PolicySpec

    name = PolicySpec.parse(policy).name
    return Path("docs/results.md" if name == DEFAULT_POLICY else f"docs/results-{name}.md")


def _efficiency_sizes(text: str) -> tuple[int, ...]:
    """``--efficiency-sizes`` as increasing distinct positive ints (``''``: none)."""
    from salus.errors import InvalidInputError

    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidInputError(
            f"--efficiency-sizes must be a comma list of integers, got {text!r}"
        ) from None
    if any(n < 2 for n in sizes) or list(sizes) != sorted(set(sizes)):
        raise InvalidInputError(f"--efficiency-sizes must be increasing distinct integers >= 2, got {text!r}")
    return sizes


def _ceiling_lines(ceiling_dir: Path, data: Path, evals: Sequence[Any], agg: dict[str, Any]) -> list[str]:
    """The ceiling table: the ceiling and every method on the same (seed, episode) rows."""
    import math

    import numpy as np

    from salus.data import SalusDataset
    from salus.predictor.ceiling import episode_key, load_ceiling, paired_gap, view_metric
    from salus.predictor.tables import BASELINE_FAMILIES, ceiling_lines

    ceiling = load_ceiling(ceiling_dir)
    positions = {episode_key(v): i for i, v in enumerate(np.asarray(SalusDataset(data).episode_index))}
    methods = agg.get("methods") or []
    names = [m["name"] for m in evals[0].report["methods"]]
    baselines = [r["name"] for r in methods if r["family"] in BASELINE_FAMILIES]
    ours = [r["name"] for r in methods if r["family"] == "salus"]
    seed = int(evals[0].report["protocol"].get("seed") or 0)
    keys = {f"{g}/{view_metric(t)}" for t in ceiling.get("times") or {} for g in ("seen", "unseen")}
    reference = {k: {r["name"]: (r.get(k) or {}).get("mean", math.nan) for r in methods} for k in keys}
    paired = paired_gap(
        ceiling, [e.samples for e in evals], positions, names, baselines, seed=seed, reference=reference
    )
    return ceiling_lines(ceiling, paired, ours)


def _not_below_training(out: Path, split_seeds: str, n: int) -> bool:
    """Whether ``n`` training episodes are at least the first split seed's training split (read
    from one of its checkpoints): such a size would retrain the full models."""
    from salus.predictor.discovery import checkpoint_dirs

    first = split_seeds.split(",")[0].strip()
    try:
        meta = json.loads(
            (checkpoint_dirs(out / "models" / f"seed{first}")[0] / "predictor.json").read_text()
        )
    except Exception:  # no checkpoint to read: run the stage
        return False
    return n >= len(meta["split"]["train"])


def _efficiency_lines(out: Path, data: Any, sizes: tuple[int, ...], full: dict[str, Any]) -> list[str]:
    """Evaluate each size's models (split seed ``first``) and format the curve; sizes whose
    training split was not cut (not below the available training episodes) are left out."""
    from salus.predictor import evaluate_detailed
    from salus.predictor.discovery import load_checkpoints, read_selection_record
    from salus.predictor.tables import efficiency_lines

    rows = []
    for n in sizes:
        d = out / "efficiency" / f"n{n}"
        if not d.is_dir():
            continue
        preds = load_checkpoints(d)
        if len(preds[0].meta["split"]["train"]) >= int(full["split"]["train"]):
            continue  # no smaller than all: the full row says it
        ev = evaluate_detailed(data, preds, selection=read_selection_record(d))
        rows.append((n, ev.report))
    return efficiency_lines([*rows, (int(full["split"]["train"]), full)])


def _closed_loop(out: Path) -> dict[str, Any] | None:
    """``salus assist``'s results of this benchmark, without the per-episode rows."""
    from salus.monitor.assist import RESULT_FILE

    path = out / "assist" / RESULT_FILE
    if not path.is_file():
        return None
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "episodes"}


def _slim(value: Any) -> Any:
    """Drop per-episode lists (lead times) from the saved JSON; the report draws them."""
    if isinstance(value, dict):
        return {k: _slim(v) for k, v in value.items() if k != "lead_s"}
    if isinstance(value, list):
        return [_slim(v) for v in value]
    return value
