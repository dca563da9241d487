"""`salus train` and `salus evaluate` on a real zarr dataset written by salus.data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.cli.main import app
from salus.errors import InvalidInputError, InvalidNameError
from salus.predictor import episodes_from_dataset, synthetic_episodes

from .helpers import write_dataset

EPISODES = synthetic_episodes(120, seed=11, embedding_dim=16)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "ds.zarr", EPISODES)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "models"
    args = ["train", str(dataset), "--model", "all", "--out", str(out), "--epochs", "3", "--patience", "2"]
    res = CliRunner().invoke(app, [*args, "--holdout-task", "stack", "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout.strip().splitlines()[-1])


def test_dataset_adapter_reads_what_was_written(dataset):
    from salus.data import SalusDataset

    eps = episodes_from_dataset(SalusDataset(dataset))
    assert eps.fingerprint() == EPISODES.fingerprint()
    assert eps.baseline_names == EPISODES.baseline_names
    a, b = eps[7], EPISODES[7]
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(np.isnan(a.signals), np.isnan(b.signals))
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-2)  # stored as float16
    assert np.isnan(a.baselines[:2, -1]).all() and np.isfinite(a.baselines[2:]).all()  # baseline_valid
    assert eps.control_hz == 20.0 and eps.info["collect"]["policy"] == "synthetic"
    assert eps.extractor_statistics["tensors"]["ood.mean"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_train_writes_one_checkpoint_per_model(trained):
    out, summary = trained
    names = [m["name"] for m in summary["models"]]
    assert names == [
        "salus-risk",
        "salus-trees",
        "salus-mlp",
        "salus-tcn",
        "safe-mlp",
        "safe-lstm",
        "oracle-risk",
    ]
    # The data has no `hidden` (collected without --save-hidden): salus-risk uses the groups it has.
    risk = json.loads((out / "salus-risk" / "predictor.json").read_text())
    assert "hidden" not in risk["features"]["groups"] and "knn" in risk["features"]["groups"]
    record = json.loads((out / "selection.json").read_text())
    selected = record["selected"]
    assert selected in ("salus-risk", "salus-trees", "salus-mlp", "salus-tcn")  # ours, picked by the rule
    # a small validation set: 5-fold cross-validation over train + val decided it
    assert record["rule"] == "cross-validation" and record["folds"] == 5
    assert selected == max(record["scores"], key=record["scores"].get)
    for m in summary["models"]:
        assert (out / m["name"] / "model.safetensors").is_file()
        meta = json.loads((out / m["name"] / "predictor.json").read_text())
        assert meta["command"].startswith("salus train ") and "--model all" in meta["command"]


def test_evaluate_puts_every_method_in_one_table(trained, dataset, tmp_path):
    out, _ = trained
    res = CliRunner().invoke(app, ["evaluate", str(out), str(dataset), "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    names = {m["name"] for m in report["methods"]}
    assert {"salus-risk", "salus-mlp", "salus-tcn", "safe-mlp", "safe-lstm", "oracle-risk"} <= names
    assert {"baseline:baseline_0", "baseline:baseline_1"} <= names
    assert {"embedding:mahalanobis", "embedding:knn_euclidean", "embedding:knn_cosine"} <= names
    assert sum(n.startswith("signal:") for n in names) == 12
    for m in report["methods"]:
        assert m["seen"]["n"] > 0 and m["unseen"]["n"] > 0
        assert set(m["seen"]["alarms"]["band"]) == {"0.05", "0.1", "0.2"}
    by_name = {m["name"]: m for m in report["methods"]}
    # The planted signal (0 rises before failures) is informative at T on the training episodes.
    assert by_name["signal:signal_0"]["train_auroc_T"] > 0.6  # fixed data and seeds: deterministic
    assert by_name["signal:signal_2"]["sign"] == -1.0  # signal 2 falls before failures: sign from training
    ours = report["selection"]["selected"]
    assert ours == json.loads((out / "selection.json").read_text())["selected"]  # evaluation follows training
    assert ours in ("salus-risk", "salus-trees", "salus-mlp", "salus-tcn")
    assert set(report["selection"]["val_auroc_T"]) == {"salus-risk", "salus-trees", "salus-mlp", "salus-tcn"}
    comp = report["comparisons"]
    assert comp["ours"] == ours and "safe-mlp" in comp["rows"] and "embedding:knn_cosine" in comp["rows"]
    assert sum(k.startswith("signal:") for k in comp["rows"]) == 12  # every single signal, fixed in advance
    d = comp["rows"]["safe-lstm"]["seen/safe"]
    assert d["ci95"][0] <= d["delta"] <= d["ci95"][1]
    md = (tmp_path / "results.md").read_text()
    assert "| salus-tcn |" in md and "alpha = 0.05" in md and "against each fixed comparator" in md
    # Reproduce: the real command, built from the parsed arguments (not "salus evaluate ...")
    assert f"salus evaluate {out} {dataset} --out {tmp_path}" in md and "evaluate ..." not in md
    assert json.loads((tmp_path / "results.json").read_text())["split"] == report["split"]


def test_bad_inputs_are_clear_errors(trained, dataset, tmp_path):
    out, _ = trained
    res = CliRunner().invoke(app, ["train", str(dataset), "--model", "bert", "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, InvalidNameError) and "salus-tcn" in str(res.exception)
    res = CliRunner().invoke(app, ["train", str(dataset), "--horizons", "10,5", "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, InvalidInputError) and "horizons" in str(res.exception)
    other = write_dataset(tmp_path / "other.zarr", synthetic_episodes(30, seed=2, embedding_dim=16))
    res = CliRunner().invoke(app, ["evaluate", str(out / "salus-mlp"), str(other)])
    assert isinstance(res.exception, InvalidInputError) and "another dataset" in str(res.exception)


def test_split_seeds_train_and_evaluate_over_seeds(dataset, tmp_path):
    out = tmp_path / "seeds"
    args = ["train", str(dataset), "--model", "salus-mlp,safe-mlp", "--out", str(out), "--epochs", "2"]
    res = CliRunner().invoke(app, [*args, "--holdout-task", "stack", "--split-seeds", "0,1", "--json"])
    assert res.exit_code == 0, res.output
    assert (out / "seed0" / "salus-mlp").is_dir() and (out / "seed1" / "safe-mlp").is_dir()
    again = CliRunner().invoke(
        app, [*args, "--holdout-task", "stack", "--split-seeds", "0,1", "--resume", "--json"]
    )
    assert all(m.get("resumed") for m in json.loads(again.stdout.strip().splitlines()[-1])["models"])
    # asked with another training setting, a kept checkpoint would be another model: retrained
    other = CliRunner().invoke(
        app,
        [
            *args,
            "--holdout-task",
            "stack",
            "--split-seeds",
            "0,1",
            "--resume",
            "--score-ramp",
            "0.3",
            "--json",
        ],
    )
    models = json.loads(other.stdout.strip().splitlines()[-1])["models"]
    assert models and not any(m.get("resumed") for m in models)
    assert json.loads((out / "seed0" / "salus-mlp" / "predictor.json").read_text())["score_ramp"] > 0
    res = CliRunner().invoke(
        app, ["evaluate", str(out), str(dataset), "--json", "--out", str(tmp_path / "ev")]
    )
    assert res.exit_code == 0, res.output
    agg = json.loads(res.stdout)["aggregate"]
    assert agg["n_seeds"] == 2 and agg["selected"] == ["salus-mlp", "salus-mlp"]
    row = next(m for m in agg["methods"] if m["name"] == "safe-mlp")
    assert len(row["seen/safe"]["values"]) == 2
    assert row["seen/safe"]["min"] <= row["seen/safe"]["mean"] <= row["seen/safe"]["max"]
    assert "mean [min, max] over seeds" in (tmp_path / "ev" / "results.md").read_text()
    # the split seeds evaluated in two processes: the same numbers as in one
    two = CliRunner().invoke(app, ["evaluate", str(out), str(dataset), "--json", "--workers", "2"])
    assert two.exit_code == 0, two.output
    assert json.loads(two.stdout)["aggregate"] == json.loads(res.stdout)["aggregate"]
    assert json.loads(two.stdout)["seeds"] == json.loads(res.stdout)["seeds"]
    # the cross-policy check pairs seed<S>/ with seed<S>/: a layout without them is refused up front
    from salus.jobs import EvaluateJob, run_evaluate

    with pytest.raises(InvalidInputError, match="no seed0/"):
        run_evaluate(EvaluateJob(out, dataset, transfer_from=out / "seed0" / "salus-mlp"))


def test_evaluate_job_runs_without_the_cli(trained, dataset):
    """The evaluate job is called directly (the CLI only builds its spec); a bad spec is refused."""
    from salus.jobs import EvaluateJob, run_evaluate

    out, _ = trained
    result = run_evaluate(EvaluateJob(out, dataset, alphas=(0.2, 0.1, 0.1)))
    assert result.aggregate is None and len(result.evaluations) == 1
    report = result.evaluations[0].report
    assert {m["name"] for m in report["methods"]} >= {"salus-mlp", "embedding:knn_cosine"}
    assert set(report["methods"][0]["seen"]["alarms"]["band"]) == {"0.1", "0.2"}  # sorted, once each
    assert result.commands and all(c.startswith("salus train") for c in result.commands)
    assert "fingerprint" in result.meta["dataset"] and str(out) in result.meta["checkpoints"]
    assert result.payload(["salus evaluate X"])["commands"][-1] == "salus evaluate X"
    for bad in (
        {"alphas": ()},
        {"alphas": (1.0,)},
        {"alphas": (float("nan"),)},
        {"workers": 0},
        {"workers": True},
    ):
        with pytest.raises(InvalidInputError):
            EvaluateJob(out, dataset, **bad)  # type: ignore[arg-type]


def test_train_job_runs_without_the_cli(dataset, tmp_path):
    """The train job is called directly; the same spec resumes; a bad spec fails before any work."""
    from salus.jobs import TrainJob, run_train

    job = TrainJob(dataset, tmp_path / "m", models="salus-mlp,knn-cosine", holdout_tasks=("stack",), epochs=2)
    seen: list[tuple[str, int, int]] = []
    result = run_train(job, progress=lambda key, done, total, info: seen.append((key, done, total)))
    assert [m["name"] for m in result.models] == ["salus-mlp", "knn-cosine"]
    assert (tmp_path / "m" / "salus-mlp" / "predictor.json").is_file()
    assert result.selection["0"]["selected"] == "salus-mlp"  # the only salus model
    assert ("salus-mlp (seed 0)", 0, 2) in seen and seen[-1][0] == "knn-cosine (seed 0)"
    again = run_train(TrainJob(**{**job.__dict__, "resume": True}))
    assert all(m.get("resumed") for m in again.models)
    with pytest.raises(InvalidNameError, match="salus-tcn"):
        TrainJob(dataset, tmp_path / "x", models="bert")
    with pytest.raises(InvalidInputError, match="split-seeds"):
        TrainJob(dataset, tmp_path / "x", split_seeds="1,1")
    with pytest.raises(InvalidInputError, match="not both"):
        TrainJob(dataset, tmp_path / "x", horizons="5", horizons_s="0.5")
    missing = tmp_path / "no_such.zarr"  # spec errors come before the dataset is read
    with pytest.raises(InvalidNameError, match="feature group"):
        TrainJob(missing, tmp_path / "x", models="salus-risk", feature_groups="bogus")
    with pytest.raises(InvalidInputError, match="fraction"):
        TrainJob(missing, tmp_path / "x", val_fraction=0.5, calib_fraction=0.5, test_fraction=0.5)


def test_signal_models_of_another_policy_are_scored_as_transfer_comparators(trained, tmp_path):
    """The cross-policy check: models trained on dataset A's episodes, scored on dataset B's test
    episodes beside B's own; only signal models cross (the embedding is the policy's own)."""
    from salus.jobs import EvaluateJob, run_evaluate

    source, _ = trained
    other = write_dataset(tmp_path / "b.zarr", synthetic_episodes(90, seed=12, embedding_dim=8))
    mine = tmp_path / "b_models"
    args = ["train", str(other), "--model", "salus-mlp,knn-cosine", "--out", str(mine), "--epochs", "2"]
    res = CliRunner().invoke(app, [*args, "--holdout-task", "stack"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(mine),
            str(other),
            "--json",
            "--transfer-from",
            str(source),
            "--transfer-label",
            "A",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    rows = {m["name"]: m for m in report["methods"]}
    assert {"transfer:A:salus-mlp", "transfer:A:salus-tcn"} <= set(rows)  # the signal models of A
    assert not any(n.startswith("transfer:A:salus-risk") for n in rows)  # embedding widths differ: left out
    assert (
        rows["transfer:A:salus-mlp"]["family"] == "transfer" and rows["transfer:A:salus-mlp"]["seen"]["n"] > 0
    )
    assert report["selection"]["selected"] == "salus-mlp"  # a transferred model is never our pick
    assert "transfer:A:salus-mlp" in report["comparisons"]["rows"]  # ours minus it, with an interval
    from salus.predictor.tables import format_markdown

    table = format_markdown(report).split("## Cross-policy check")[1].split("\n## ")[0]
    assert "| salus-mlp | this policy |" in table and "| salus-mlp | A |" in table
    assert "| salus-tcn | A |" in table and "| salus-tcn | this policy |" not in table  # B has no tcn
    with pytest.raises(InvalidInputError, match="no signal model"):
        run_evaluate(EvaluateJob(mine, other, transfer_from=mine / "knn-cosine", transfer_label="B"))
    with pytest.raises(InvalidInputError, match="transfer label"):
        EvaluateJob(mine, other, transfer_from=source, transfer_label="a b")
