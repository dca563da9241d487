"""The demo and the benchmark are lists of jobs, and each stage's printed command is that job.

The results header and the report print ``stage.command()`` for each stage, so that a person can
rerun one stage by hand. Here every stage's command line is parsed by the real CLI (the job's
``run`` replaced by a probe that returns the job the command built), and must build the very job
the pipeline runs; the demo's and the benchmark's own command lines too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from salus.cli.main import main
from salus.jobs.assist import AssistJob
from salus.jobs.benchmark import BenchmarkJob
from salus.jobs.ceiling import MonteCarloCeilingJob
from salus.jobs.collect import CollectJob
from salus.jobs.demo import DemoJob
from salus.jobs.evaluate import EvaluateJob
from salus.jobs.options import job_options, option_words
from salus.jobs.report import ReportJob
from salus.jobs.stages import SilentReporter, Stage, run_stages
from salus.jobs.train import TrainJob

STAGE_JOBS = (TrainJob, CollectJob, EvaluateJob, ReportJob, MonteCarloCeilingJob, AssistJob)


class Built(Exception):
    """Raised by the probe in place of a job's run: carries the job the command built."""


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``parse(argv)``: the job that ``salus ARGV`` builds (nothing runs)."""
    import salus.jobs.benchmark
    import salus.jobs.demo

    def probe(job: Any, *args: Any, **kwargs: Any) -> Any:
        raise Built(job)

    for cls in STAGE_JOBS:
        monkeypatch.setattr(cls, "run", probe)
    monkeypatch.setattr(salus.jobs.demo, "run_demo", probe)
    monkeypatch.setattr(salus.jobs.benchmark, "run_benchmark", probe)

    def built(argv: list[str]) -> Any:
        with pytest.raises(Built) as got:
            main(argv)
        return got.value.args[0]

    return built


def _pipelines(tmp: Path) -> list[tuple[Any, list[Stage]]]:
    demo = DemoJob(out=tmp / "demo", episodes=12, policy="builtin", max_steps=30, holdout_task="stack")
    full = BenchmarkJob(out=tmp / "bench", policy="builtin", split_seeds="0,1", ceiling_sample=7)
    own = BenchmarkJob(out=tmp / "own", data=tmp / "mine.zarr", efficiency="24,48", select="validation")
    return [(job, job.stages()) for job in (demo, full, own)]


def test_every_stage_command_builds_the_job_the_pipeline_runs(tmp_path: Path, parse: Any) -> None:
    kinds = set()
    for pipeline, stages in _pipelines(tmp_path):
        assert parse(pipeline.argv()) == pipeline, pipeline.argv()
        for stage in stages:
            assert stage.command().startswith("salus " + stage.job.argv()[0])
            assert parse(stage.job.argv()) == stage.job, stage.command()
            kinds.add(type(stage.job))
    assert kinds == set(STAGE_JOBS)  # every kind of stage was checked
    names = [s.name for s in _pipelines(tmp_path)[1][1]]
    assert names[:3] == ["collect", "train", "ceiling"] and names[-2:] == ["collect fresh", "assist"]


def test_option_words_leave_out_defaults_and_repeat_tuples(tmp_path: Path) -> None:
    job = TrainJob(tmp_path / "d", tmp_path / "m", holdout_tasks=("a", "b"), resume=True, epochs=60)
    assert job.argv() == ["train", str(tmp_path / "d"), "--out", str(tmp_path / "m"),
                          "--holdout-task", "a", "--holdout-task", "b", "--resume"]  # fmt: skip
    assert option_words(job, {"resume": "--resume", "label": "--label"}) == ["--resume"]


def test_jobs_built_from_strings_and_lists_equal_jobs_built_from_paths_and_tuples(tmp_path: Path) -> None:
    """A library caller may pass strings and lists; the job holds the annotated types (so it equals
    the CLI's job and prints the same command line), and None stays None."""
    d = str(tmp_path / "d")
    loose = CollectJob(out=d, tasks=["push"], perturb=["object_pose=0.5"], robot=None)  # type: ignore[arg-type]
    assert loose == CollectJob(out=Path(d), tasks=("push",), perturb=("object_pose=0.5",))
    assert isinstance(loose.out, Path) and loose.tasks == ("push",) and loose.robot is None
    evaluate = EvaluateJob(d, d, transfer_from=d)  # type: ignore[arg-type]
    assert isinstance(evaluate.model_dir, Path) and isinstance(evaluate.transfer_from, Path)
    assert (
        evaluate.out is None
        and evaluate.argv() == EvaluateJob(Path(d), Path(d), transfer_from=Path(d)).argv()
    )
    ceiling = MonteCarloCeilingJob(d, split_seed=0, holdout_tasks=["stack"])  # type: ignore[arg-type]
    assert ceiling.holdout_tasks == ("stack",) and isinstance(ceiling.data, Path)


@dataclass(frozen=True)
class Touch:
    """A stage job that writes one file (the runner's own test: no command line of its own)."""

    path: Path

    def argv(self) -> list[str]:
        return ["touch", str(self.path)]

    def run(self, reporter: Any) -> None:
        self.path.write_text("done")


def test_a_stage_is_prepared_when_the_stages_before_it_are_done(tmp_path: Path) -> None:
    """``prepare`` sees what earlier stages made (the benchmark skips an efficiency size only once
    the training shows the split, and reads the groups a collected dataset records)."""
    first, second, third = (Stage(n, Touch(tmp_path / n)) for n in ("a", "b", "c"))
    seen: list[tuple[str, bool]] = []

    def prepare(stage: Stage) -> Stage | None:
        seen.append((stage.name, (tmp_path / "a").exists()))
        return None if stage.name == "c" else stage

    timings = run_stages([first, second, third], SilentReporter(), prepare)
    assert seen == [("a", False), ("b", True), ("c", True)]
    assert list(timings) == ["a", "b"] and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "job_cls",
    [TrainJob, CollectJob, EvaluateJob, ReportJob, MonteCarloCeilingJob, AssistJob, DemoJob, BenchmarkJob],
)
def test_each_command_option_has_its_job_fields_default(job_cls: Any) -> None:
    """Every option a job writes in its command line is an option of that command, with the job
    field's default or unset (so a default left out of ``argv`` is the one the command takes)."""
    import dataclasses
    import importlib

    import typer

    from salus.cli.main import app

    module = importlib.import_module(job_cls.__module__)
    fields = {f.name: f.default for f in dataclasses.fields(job_cls)}
    name = {"MonteCarloCeilingJob": "ceiling"}.get(job_cls.__name__, job_cls.__name__[:-3].lower())
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    options = {opt: p for p in command.params for opt in p.opts}
    flags = getattr(module, "_FLAGS", None) or {n: o.flag for n, o in job_options(job_cls).items()}
    assert flags, f"{job_cls.__name__} declares no options"
    for field_name, flag in flags.items():
        assert flag in options, f"salus {name} has no {flag}"
        default, want = options[flag].default, fields[field_name]
        if want is dataclasses.MISSING:
            continue
        if isinstance(want, tuple):
            want = list(want) if want else None
        got = list(default) if isinstance(default, tuple) and default else default
        if got is None or got == []:  # unset: the command passes the job's own default (or None)
            continue
        assert got == want or str(got) == str(want), (name, flag, got, want)


def test_an_option_is_declared_once_on_its_job_field(tmp_path: Path) -> None:
    """The command's option is the job field's declaration: its help and default come from there,
    and a library caller gets the command line's range refusal, naming the flag."""
    import typer

    from salus.cli.main import app
    from salus.errors import InvalidInputError

    opts = job_options(TrainJob)
    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    epochs = next(p for p in command.params if "--epochs" in p.opts)
    assert epochs.help == opts["epochs"].help_text() and epochs.default == 60
    with pytest.raises(InvalidInputError, match="--epochs must be an integer >= 1, got 0"):
        TrainJob(tmp_path / "d", tmp_path / "m", epochs=0)
    with pytest.raises(InvalidInputError, match="--alpha"):
        TrainJob(tmp_path / "d", tmp_path / "m", alpha=1.5)


def test_repeated_options_split_commas_unless_a_value_holds_them(tmp_path: Path, parse: Any) -> None:
    """``--tasks a,b`` is two tasks, ``--obs state=a,b`` one mapping (its value holds the comma)."""
    out = str(tmp_path / "d.zarr")
    job = parse(["collect", "--out", out, "--tasks", "push,stack", "--tasks", "pick_place"])
    assert job.tasks == ("push", "stack", "pick_place")
    job = parse(["collect", "--out", out, "--env", "my.mod:make", "--obs", "state=a,b", "--obs", "task=t"])
    assert job.obs == ("state=a,b", "task=t")
