"""The benchmark job: the fixed benchmark that ranks failure detectors, end to end and resumable.

collect a fixed dataset of the embedded default policy under the default perturbation mix -> train
every model once per split seed (each seed holding out another task: leave-one-task-out) -> the
Monte-Carlo ceiling -> the data-efficiency curve -> ablations of our model (split seed 0) -> the
closed loop -> evaluate every method under the protocol over the seeds -> the report. Every stage
is a job that resumes (collection continues where it stopped, existing checkpoints are kept) and
whose ``salus`` command line the results header prints; the results file (``docs/results.md`` by
default) is this job's output, never edited by hand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salus._checks import SEED_MAX
from salus.errors import InvalidInputError
from salus.jobs.assist import AssistJob
from salus.jobs.ceiling import MonteCarloCeilingJob
from salus.jobs.collect import CollectJob
from salus.jobs.options import check_options, option, option_words
from salus.jobs.stages import Stage, coerce_fields, command_line, run_stages
from salus.jobs.train import TrainJob, parse_split_seeds
from salus.policies.spec import DEFAULT_POLICY

if TYPE_CHECKING:
    from salus.jobs.stages import Reporter

__all__ = [
    "ABLATIONS",
    "BENCHMARK_SIZES",
    "BenchmarkSize",
    "benchmark_size",
    "BenchmarkJob",
    "BenchmarkResult",
    "run_benchmark",
    "results_path",
]


# (label, feature groups, other TrainJob fields) of the ablation variants of salus-risk, fixed in advance.
_ALL_GROUPS = "signals,baselines,state,embedding,hidden,knn"
ABLATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("salus-risk[-knn]", "signals,baselines,state,embedding,hidden", {}),
    ("salus-risk[-embedding,-hidden]", "signals,baselines,state,knn", {}),
    ("salus-risk[signals only]", "signals", {}),
    ("salus-risk[knn only]", "knn", {}),
    ("salus-risk[horizon objective]", _ALL_GROUPS, {"objective": "horizons"}),
    ("salus-risk[score ramp 0.1/s]", _ALL_GROUPS, {"score_ramp": 0.1}),
)

STAGE_TIMES = "stage_seconds.json"


@dataclass(frozen=True)
class BenchmarkSize:
    """The sizes of one policy's benchmark: episodes of the fixed dataset, K chunks sampled per
    computed chunk in its collections (STAC, action total variance and the sample signals read
    them), at-risk episodes per time of the Monte-Carlo ceiling, fresh episodes of the closed loop."""

    episodes: int
    samples: int
    ceiling_sample: int
    fresh_episodes: int


# Each policy's sizes, fixed from its measured cost before its benchmark data existed, so that the
# benchmark fits 90 minutes on a 2-core machine (the budget; larger values narrow the
# intervals at proportional cost, stage times are in the results header). builtin: the papers' K = 10
# for STAC and action total variance (measured on it, 24 episodes with K = 4 and K = 10 took 38 s and
# 33 s), 5,331 s of stage work in its run. smolvla: a control step costs 3.4 times the built-in
# policy's per episode at K = 10 and 1.75 times at K = 4 (docs/policies.md, "What the SmolVLA
# benchmark will cost"), so the built-in policy's sizes would take about 4 hours; K = 4
# (collection's default: STAC and action total variance then read 4 samples, not the papers' 10),
# half the episodes and half the fresh episodes: about 72 minutes estimated, 1,812 s measured. Its
# ceiling sample was 20 at-risk episodes per time in that run: with 22% of this policy's episodes
# failing, that left 0 to 4 failed rows per cell, too few for any ROC-AUC; 100 per time (about 5
# times the 204 s it took) gives about 20. Fixed from the failure rate, not from the ceiling's values.
BENCHMARK_SIZES: dict[str, BenchmarkSize] = {
    "builtin": BenchmarkSize(episodes=1200, samples=10, ceiling_sample=50, fresh_episodes=240),
    "smolvla": BenchmarkSize(episodes=600, samples=4, ceiling_sample=100, fresh_episodes=120),
}
OTHER_POLICY_SIZE = BENCHMARK_SIZES["builtin"]  # any other policy spec (python:..., ensemble:...)


def benchmark_size(policy: str) -> BenchmarkSize:
    """The sizes of ``policy``'s benchmark (by its spec name; another policy gets the built-in's)."""
    from salus.policies import PolicySpec

    return BENCHMARK_SIZES.get(PolicySpec.parse(policy).name, OTHER_POLICY_SIZE)


ALWAYS_RUN = ("evaluate", "report")  # stages that do all their work in every run (no resume)
CEILING_TIMES = "1,2,3,T"  # the at-risk times and the SAFE-prediction step (T - 2)
CEILING_K = 8  # continuations per episode and time
EFFICIENCY_SIZES = (50, 100, 200, 400, 800, 1600)  # training episodes of the data-efficiency curve
FRESH_SEED = 7001


def _sizes(field: str) -> str:
    """``builtin 1200, smolvla 600``: a field of every policy's benchmark size, for the help."""
    return ", ".join(f"{name} {getattr(size, field)}" for name, size in BENCHMARK_SIZES.items())


@dataclass(frozen=True)
class BenchmarkJob:
    """What ``salus benchmark`` runs (each field is the option of the same name; see ``salus
    benchmark --help``). ``data``: a dataset the user already has (no collection, no ceiling and
    no closed loop: they need our simulator); ``episodes``, ``samples``, ``fresh_episodes``,
    ``ceiling_sample`` None: the policy's :data:`BENCHMARK_SIZES` (no ceiling and no fresh episodes
    with ``data``); ``fresh_seed`` None: :data:`FRESH_SEED`; ``results`` None: :func:`results_path`."""

    out: Path = option(
        Path("runs/benchmark"), "--out", "Folder for data, models, evaluation, report.", out_dir=True
    )
    episodes: int | None = option(
        None,
        "--episodes",
        lambda: f"Episodes of the fixed dataset (resumed); default: the policy's ({_sizes('episodes')}).",
        lo=1,
        aliases=("-n",),
    )
    samples: int | None = option(
        None,
        "--samples",
        lambda: (
            "K chunks sampled per computed chunk in the collections (STAC, action total variance and "
            f"the sample signals read them); default: the policy's ({_sizes('samples')})."
        ),
        lo=1,
    )
    seed: int = option(2026, "--seed", "Collection seed of the fixed dataset.", lo=0, hi=SEED_MAX)
    workers: int = option(
        2,
        "--workers",
        "Worker processes: collection, the ceiling, the closed loop and the split seeds' evaluation.",
        lo=1,
        aliases=("-w",),
    )
    holdout_task: str = option(
        "rotate",
        "--holdout-task",
        "The unseen task, or 'rotate' (the default): each split seed holds out the next of the dataset's "
        "sorted tasks (salus train --holdout-task rotate), so with as many seeds as tasks every task is "
        "unseen once.",
    )
    split_seeds: str = option(
        "0,1,2,3",
        "--split-seeds",
        "Split seeds (>= 3 for the results; with 'rotate', one per task: 4 for our tasks).",
    )
    epochs: int = option(
        20, "--epochs", "Maximum training epochs (early stopping after 4 without improvement).", lo=1
    )
    results: Path | None = option(
        None,
        "--results",
        "Where the results markdown goes (JSON beside it); default docs/results.md for the default policy "
        "(and --data), docs/results-<policy>.md for another (results-builtin.md).",
    )
    skip_report: bool = option(False, "--skip-report", "Do not write the HTML report.")
    data: Path | None = option(
        None, "--data", "Benchmark an existing dataset (e.g. your robot's) instead of collecting one."
    )
    fresh_episodes: int | None = option(
        None,
        "--fresh-episodes",
        lambda: (
            "Fresh episodes for the closed loop (`salus assist`; default: the policy's, "
            f"{_sizes('fresh_episodes')}); 0: none. Not with --data: the closed loop needs our simulator."
        ),
        lo=0,
    )
    fresh_seed: int | None = option(
        None,
        "--fresh-seed",
        f"Collection seed of the fresh episodes (default {FRESH_SEED}; not with --data).",
        lo=0,
        hi=SEED_MAX,
    )
    ceiling_sample: int | None = option(
        None,
        "--ceiling-sample",
        lambda: (
            "At-risk episodes per time (1, 2, 3 s) of the Monte-Carlo ceiling (`salus ceiling`; default: "
            f"the policy's, {_sizes('ceiling_sample')}); 0: none. Not with --data: the ceiling needs our simulator."
        ),
        lo=0,
    )
    efficiency: str = option(
        ",".join(str(n) for n in EFFICIENCY_SIZES),
        "--efficiency-sizes",
        "Training-episode counts of the data-efficiency curve (comma list; sizes not below the training "
        "split are skipped; '' for none).",
    )
    select: str = option(
        "auto",
        "--select",
        "How our model is chosen (salus train --select): auto, validation or cross-validation.",
    )
    policy: str = option(
        DEFAULT_POLICY,
        "--policy",
        "Policy spec the dataset is collected with: smolvla (the packaged SmolVLA, the default) or builtin "
        "(the light option); ignored with --data.",
    )

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_options(self)
        parse_split_seeds(self.split_seeds, 0)  # a bad --split-seeds fails now, not after the collection
        self.efficiency_sizes()
        if self.data is not None and self.ceiling_sample:
            raise InvalidInputError(
                "--ceiling-sample runs the Monte-Carlo ceiling (`salus ceiling`), which replays episodes "
                "in our simulator; with --data (your own dataset) there is none: drop it"
            )
        if self.data is not None and (self.fresh_episodes or self.fresh_seed is not None):
            raise InvalidInputError(
                "--fresh-episodes / --fresh-seed run the closed loop (`salus assist`), which needs our "
                "simulator; with --data (your own dataset) there is none: drop them, or benchmark without --data"
            )

    def efficiency_sizes(self) -> tuple[int, ...]:
        """``efficiency`` as increasing distinct ints >= 2 (``''``: none)."""
        return _efficiency_sizes(self.efficiency)

    def size(self) -> BenchmarkSize:
        """The sizes this run uses: the options given, the policy's :data:`BENCHMARK_SIZES` for the
        rest (no ceiling and no fresh episodes with ``data``)."""
        own = benchmark_size(self.policy)
        return BenchmarkSize(
            episodes=own.episodes if self.episodes is None else self.episodes,
            samples=own.samples if self.samples is None else self.samples,
            ceiling_sample=0
            if self.data is not None
            else (own.ceiling_sample if self.ceiling_sample is None else self.ceiling_sample),
            fresh_episodes=0
            if self.data is not None
            else (own.fresh_episodes if self.fresh_episodes is None else self.fresh_episodes),
        )

    def fresh_count(self) -> int:
        """Fresh episodes of the closed loop (0: none; never with ``data``)."""
        return self.size().fresh_episodes

    def ceiling_count(self) -> int:
        """At-risk episodes per time of the Monte-Carlo ceiling (0: none; never with ``data``)."""
        return self.size().ceiling_sample

    def data_path(self) -> Path:
        return self.data if self.data is not None else self.out / "data.zarr"

    def results_file(self) -> Path:
        if self.results is not None:
            return self.results
        return results_path(self.policy if self.data is None else DEFAULT_POLICY)

    def first_seed(self) -> int:
        return parse_split_seeds(self.split_seeds, 0)[0]

    def argv(self) -> list[str]:
        """The ``salus benchmark`` arguments that run this job."""
        return ["benchmark", *option_words(self)]

    def stages(self) -> list[Stage]:
        """The stages, in order (evaluation and the report are the job's own, after them)."""
        out, data, first = self.out, self.data_path(), self.first_seed()
        stages: list[Stage] = []
        if self.data is None:
            collect = self._collect(data, self.size().episodes, self.seed)
            stages.append(Stage("collect", collect))
        common: dict[str, Any] = {
            "holdout_tasks": (self.holdout_task,),
            "epochs": self.epochs,
            "patience": 4,
            "resume": True,
        }
        train = TrainJob(
            data, out / "models", models="all", split_seeds=self.split_seeds, select=self.select, **common
        )
        stages.append(Stage("train", train))
        if self.ceiling_count() > 0:
            # drawn from every episode: under a rotated held-out task each is a test episode of some
            # seed, and the table pairs each seed's test episodes with the ceiling's (salus.predictor.ceiling)
            ceiling = MonteCarloCeilingJob(
                data, out / "ceiling", policy=self.policy, times=CEILING_TIMES, k=CEILING_K,
                sample=self.ceiling_count(), workers=self.workers,
            )  # fmt: skip
            stages.append(Stage("ceiling", ceiling))
        for n in self.efficiency_sizes():  # the data-efficiency curve: every model on n training episodes
            job = TrainJob(
                data,
                out / "efficiency" / f"n{n}",
                models="all",
                max_train=n,
                seed=first,
                select=self.select,
                **common,
            )
            stages.append(Stage(f"efficiency {n}", job))
        for label, groups, extra in ABLATIONS:
            job = TrainJob(
                data, out / "ablation" / label, models="salus-risk", feature_groups=groups, label=label,
                seed=first, **common, **extra,
            )  # fmt: skip
            stages.append(Stage(f"ablation {label}", job))
        if self.fresh_count() > 0:
            fresh = out / "assist" / "fresh.zarr"
            seed = FRESH_SEED if self.fresh_seed is None else self.fresh_seed
            collect = self._collect(fresh, self.fresh_count(), seed)
            stages.append(Stage("collect fresh", collect))
            assist = AssistJob(
                data, out / "models" / f"seed{first}", fresh, out / "assist", workers=self.workers
            )
            stages.append(Stage("assist", assist))
        return stages

    def _collect(self, out: Path, episodes: int, seed: int) -> CollectJob:
        """A collection of the benchmark's policy with the hidden states and the K samples its methods read."""
        return CollectJob(
            out=out, policy=self.policy, episodes=episodes, seed=seed, workers=self.workers,
            save_hidden=True, samples=self.size().samples,
        )  # fmt: skip

    def run(self, reporter: Reporter) -> BenchmarkResult:
        return run_benchmark(self, reporter)


@dataclass
class BenchmarkResult:
    """Where the results went, and the time of this run."""

    results: Path
    seconds: float


def _runnable(job: BenchmarkJob, stage: Stage) -> Stage | None:
    """``stage`` as this run runs it: None for an efficiency size not below the training split (the
    full training is the curve's last point); an ablation reads only the groups the dataset records
    (e.g. no ``--save-hidden``)."""
    if stage.name.startswith("efficiency") and _not_below_training(
        job.out, job.split_seeds, int(stage.name.split()[1])
    ):
        return None
    if stage.name.startswith("ablation") and isinstance(stage.job, TrainJob):
        return Stage(stage.name, _recorded_groups(stage.job, job.data_path()))
    return stage


def run_benchmark(job: BenchmarkJob, reporter: Reporter) -> BenchmarkResult:
    """Run every stage (each resumes), evaluate, write the results file (and the report)."""
    import torch

    from salus._json import to_json
    from salus.data import SalusDataset
    from salus.jobs.evaluate import EvaluateJob, run_evaluate
    from salus.predictor import DEFAULT_ALPHAS, episodes_from_dataset
    from salus.predictor.tables import format_benchmark

    torch.set_num_threads(1)  # every stage on one thread, as each command's --threads default
    out, data_file = job.out, job.data_path()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ran: dict[str, Stage] = {}

    def prepare(stage: Stage) -> Stage | None:  # asked when the stages before it are done
        runnable = _runnable(job, stage)
        if runnable is not None:
            ran[stage.name] = runnable
        return runnable

    timings = run_stages(job.stages(), reporter, prepare)
    stages = list(ran.values())
    reporter.say("== evaluate")
    t0 = time.perf_counter()
    data = episodes_from_dataset(SalusDataset(data_file))

    def say(m: str) -> None:
        reporter.progress("evaluate", 0, None, m)

    evaluated = run_evaluate(
        EvaluateJob(out / "models", data_file, DEFAULT_ALPHAS, job.workers), progress=say, episodes=data
    )
    evals, agg = evaluated.evaluations, evaluated.aggregate
    say("ablations")
    extra = _ablation_lines(out, data, job.first_seed())
    sizes = job.efficiency_sizes()
    if sizes:
        say("data-efficiency curve")
        extra += _efficiency_lines(out, data, sizes, evals[0].report)
    timings["evaluate"] = time.perf_counter() - t0
    names = [s.name for s in stages]
    if agg is not None and "ceiling" in names:
        extra = _ceiling_lines(out / "ceiling", data_file, evals, agg) + extra
    closed_loop = _closed_loop(out) if "assist" in names else None
    if closed_loop is not None:
        from salus.predictor.tables import closed_loop_lines

        extra += closed_loop_lines(closed_loop)
    if not job.skip_report:  # the first seed's evaluation, drawn (not recomputed)
        from salus.monitor.report import render_report

        reporter.say(f"== report: {out / 'report'}")
        t0 = time.perf_counter()
        render_report(
            evals[0], out / "report", commands=[s.command() for s in stages], closed_loop=closed_loop
        )
        timings["report"] = time.perf_counter() - t0
    total = time.perf_counter() - started
    commands = [
        command_line(job),
        "# which runs these stages (each resumes):",
        *[s.command() for s in stages],
    ]
    worked = _stage_seconds(out, {**timings, **_recorded_seconds(out, timings, closed_loop)})
    header = [
        "Time of each stage when it did its work (a resumed stage only checks; kept in "
        f"`{out / STAGE_TIMES}`): "
        + ", ".join(f"{n} {t:.0f} s" for n, t in worked.items())
        + f"; {sum(worked.values()):.0f} s in all on a 2-core CPU machine. This run: {total:.0f} s.",
    ]
    if agg is None:
        raise InvalidInputError(
            f"no seed<S>/ checkpoints under {out / 'models'} to aggregate over split seeds"
        )
    reports = [e.report for e in evals]
    md = format_benchmark(agg, reports, commands=commands, header=header, extra=extra)
    results = job.results_file()
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(md)
    payload: dict[str, Any] = {
        "aggregate": agg,
        "seeds": reports,
        "commands": commands,
        "timings_s": timings,
        "closed_loop": closed_loop,
    }
    results.with_suffix(".json").write_text(
        json.dumps(to_json(_slim(payload), non_finite="null"), indent=1) + "\n"
    )
    return BenchmarkResult(results, total)


def _recorded_groups(job: TrainJob, data: Path) -> TrainJob:
    """``job`` with its feature groups restricted to those whose step keys ``data`` has."""
    from salus.data import SalusDataset

    keys = set(SalusDataset(data).keys)
    need = {
        "hidden": "hidden",
        "state": "state",
        "baselines": "baselines",
        "embedding": "obs_embedding",
        "knn": "obs_embedding",
    }
    kept = [g for g in job.groups() if need.get(g, "signals") in keys]
    return replace(job, feature_groups=",".join(kept or ["signals"]))


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
