"""`salus benchmark` end to end on a dataset the user already has (``--data``): every model per
split seed, the ablations, the evaluation over seeds, the report, and a results file that starts
with the commands and is resumable."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from salus.cli.main import app
from salus.jobs.benchmark import ABLATIONS, BenchmarkJob, results_path
from salus.predictor import synthetic_episodes

from .helpers import write_dataset


def _stages(tmp_path, **kw):
    """(name, salus arguments) of each stage of a benchmark job."""
    return [(st.name, st.job.argv()) for st in BenchmarkJob(out=tmp_path, **kw).stages()]


def test_stages_are_the_commands_a_person_types(tmp_path):
    stages = _stages(
        tmp_path, episodes=3200, seed=2026, workers=2, holdout_task="pick_color", split_seeds="0,1,2",
        epochs=20, fresh_episodes=0, ceiling_sample=0, efficiency="", policy="builtin",
    )  # fmt: skip
    names = [n for n, _ in stages]
    assert names[:2] == ["collect", "train"] and len(names) == 2 + len(ABLATIONS)
    collect = stages[0][1]
    assert collect[:2] == ["collect", "--policy"] and "--save-hidden" in collect and "3200" in collect
    assert collect[collect.index("--samples") + 1] == "10"  # STAC / action variance as published (K = 10)
    assert "--split-seeds" in stages[1][1] and "--resume" in stages[1][1]
    own = _stages(tmp_path, episodes=1, seed=0, workers=1, holdout_task="t", split_seeds="0", epochs=1,
                  data=tmp_path / "d", efficiency="")  # fmt: skip
    assert own[0][0] == "train"  # a user's dataset: no collection
    closed = _stages(
        tmp_path, episodes=10, seed=1, workers=2, holdout_task="t", split_seeds="3,4", epochs=1,
        fresh_episodes=8, ceiling_sample=0, efficiency="",
    )  # fmt: skip
    assert [n for n, _ in closed][-2:] == ["collect fresh", "assist"]
    fresh_collect, assist = closed[-2][1], closed[-1][1]
    assert fresh_collect[fresh_collect.index("--seed") + 1] == "7001" and "8" in fresh_collect
    assert assist[0] == "assist" and assist[assist.index("--models") + 1].endswith("seed3")
    own_closed = _stages(
        tmp_path, episodes=1, seed=0, workers=1, holdout_task="t", split_seeds="0", epochs=1,
        data=tmp_path / "d", efficiency="",
    )  # fmt: skip
    assert "assist" not in [n for n, _ in own_closed]  # the closed loop needs our simulator


def test_each_policy_has_its_own_sizes_fixed_before_its_data():
    """The SmolVLA's benchmark is smaller than the built-in policy's (its step costs more: the sizes
    were fixed from that cost), options override them, and any other policy gets the built-in's."""
    from salus.jobs.benchmark import BENCHMARK_SIZES

    for policy in ("builtin", "smolvla", "builtin:/some/dir"):
        size = BENCHMARK_SIZES[policy.split(":")[0]]
        job = BenchmarkJob(out=Path("b"), policy=policy)
        collect = job.stages()[0].job
        assert (collect.episodes, collect.samples) == (size.episodes, size.samples)
        assert job.ceiling_count() == size.ceiling_sample and job.fresh_count() == size.fresh_episodes
        assert next(st.job for st in job.stages() if st.name == "collect fresh").samples == size.samples
    small, big = BENCHMARK_SIZES["smolvla"], BENCHMARK_SIZES["builtin"]
    assert small.episodes < big.episodes and small.samples < big.samples == 10
    mine = BenchmarkJob(out=Path("b"), episodes=40, samples=2, ceiling_sample=3, fresh_episodes=5)
    assert mine.size() == type(small)(40, 2, 3, 5) and mine.argv()[1:3] == ["--out", "b"]
    assert BenchmarkJob(out=Path("b"), policy="python:mine.py:make").size() == big
    assert BenchmarkJob(out=Path("b"), data=Path("d")).size().ceiling_sample == 0  # needs our simulator


def test_each_policy_has_its_own_results_file():
    """docs/results.md is the default policy's benchmark; another policy's never overwrites it."""
    assert str(results_path("smolvla")) == "docs/results.md"
    assert str(results_path("builtin")) == "docs/results-builtin.md"
    assert str(results_path("builtin:/some/dir")) == "docs/results-builtin.md"


def test_benchmark_on_an_existing_dataset(tmp_path):
    data = write_dataset(tmp_path / "d.zarr", synthetic_episodes(150, seed=4, embedding_dim=16))
    out, results = tmp_path / "bench", tmp_path / "docs" / "results.md"
    args = ["benchmark", "--data", str(data), "--out", str(out), "--holdout-task", "stack", "--epochs", "1"]
    # cross-validated selection is tested in test_selection.py / test_cli.py; here the validation rule
    args += ["--split-seeds", "0,1", "--results", str(results), "--select", "validation"]
    args += ["--efficiency-sizes", "24,5000"]  # 5000: not below the training split, left out
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    md = results.read_text()
    assert (
        md.startswith("# Benchmark results")
        and "salus benchmark" in md
        and "Time of each stage when it did its work" in md
    )
    assert "## Headline" in md and "## Ablations (split seed 0)" in md and "oracle-risk" in md
    # the data-efficiency curve: the cut size, then every training episode of the first seed
    eff = md.split("## Data efficiency")[1].split("\n## ")[0]
    sizes = [
        line.split("|")[1].strip() for line in eff.splitlines() if line.startswith("| ") and "---" not in line
    ]
    n_train = json.loads(results.with_suffix(".json").read_text())["seeds"][0]["split"]["train"]
    assert sizes[1:] == ["24", str(n_train)], sizes  # sizes[0] is the header
    assert not (out / "efficiency" / "n5000").exists()  # skipped once training showed its split is smaller
    meta = json.loads((out / "efficiency" / "n24" / "salus-risk" / "predictor.json").read_text())
    assert len(meta["split"]["train"]) <= 24 and meta["train_config"]["split"]["max_train"] == 24
    payload = json.loads(results.with_suffix(".json").read_text())
    assert payload["aggregate"]["n_seeds"] == 2 and len(payload["seeds"]) == 2
    assert (out / "report" / "index.html").is_file()
    for label, _, _ in ABLATIONS:
        meta = json.loads((out / "ablation" / label / "predictor.json").read_text())
        assert meta["label"] == label and "hidden" not in meta["features"]["groups"]  # not recorded
    # Resumable: a second run keeps every checkpoint and gives the same numbers (the page is not redrawn).
    again = CliRunner().invoke(app, [*args, "--skip-report"])
    assert again.exit_code == 0, again.output
    assert json.loads(results.with_suffix(".json").read_text())["aggregate"] == payload["aggregate"]


def test_the_ceiling_stage_draws_from_every_episode_at_1_2_3_s_and_T(tmp_path):
    """The ceiling runs after training, drawn from every episode (each is a test episode of some
    seed under rotation; the table pairs them, ``test_ceiling_pairing``), at 1, 2, 3 s and T."""
    stages = _stages(
        tmp_path, episodes=10, seed=1, workers=2, holdout_task="stack", split_seeds="3,4", epochs=1,
        ceiling_sample=40,
    )  # fmt: skip
    names = [n for n, _ in stages]
    assert names[:3] == ["collect", "train", "ceiling"]
    args = stages[2][1]
    for opt, value in (("--sample", "40"), ("--times", "1,2,3,T")):
        assert args[args.index(opt) + 1] == value
    ceiling = BenchmarkJob(out=tmp_path, ceiling_sample=40).stages()[2].job
    assert ceiling.k == 8 and ceiling.sample == 40 and "--k" not in args  # 8: the command's default
    assert "--split-seed" not in args and "--holdout-task" not in args
    own = _stages(tmp_path, episodes=1, seed=0, workers=1, holdout_task="t", split_seeds="0", epochs=1,
                  data=tmp_path / "d")  # fmt: skip
    assert "ceiling" not in [n for n, _ in own]  # the ceiling needs our simulator


def test_a_resumed_ceiling_stage_shows_the_work_its_records_hold(tmp_path):
    """The ceiling's stage time is its simulation time over its workers when resuming only checks."""
    from salus.jobs.benchmark import _recorded_seconds

    (tmp_path / "ceiling").mkdir()
    (tmp_path / "ceiling" / "ceiling.json").write_text(
        json.dumps({"times": {}, "config": {"workers": 2}, "stage": {"job_s": 100.0, "wall_s": 1.0}})
    )
    assert _recorded_seconds(tmp_path, {"ceiling": 3.0}, None) == {"ceiling": 50.0}
    assert _recorded_seconds(tmp_path, {"ceiling": 80.0}, None) == {"ceiling": 80.0}  # this run did more
    assert _recorded_seconds(tmp_path, {"train": 3.0}, None) == {}


def test_stage_times_keep_the_work_of_resumed_stages_and_the_last_evaluation(tmp_path):
    """A resumed stage keeps the time of the run that did its work; evaluate and report always do
    all of it, so their time is this run's."""
    from salus.jobs.benchmark import _stage_seconds

    assert _stage_seconds(tmp_path, {"collect": 100.0, "evaluate": 500.0}) == {
        "collect": 100.0,
        "evaluate": 500.0,
    }
    assert _stage_seconds(tmp_path, {"collect": 2.0, "evaluate": 300.0}) == {
        "collect": 100.0,
        "evaluate": 300.0,
    }
