"""`salus report` and `salus replay` on a real dataset and checkpoint, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.cli.main import app

from .test_report import CHROMIUM, _browser_images

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=True)
    return result


def test_report_cli_draws_the_evaluation_of_the_first_seed(
    tiny_data: Path, tiny_model: Path, tmp_path: Path
) -> None:
    import shutil

    from salus._json import to_json
    from salus.data import SalusDataset
    from salus.predictor import TrainedPredictor, episodes_from_dataset, run_evaluation

    models = tmp_path / "models"  # the layout of `salus train --split-seeds 1,2`
    for seed in (2, 1):
        shutil.copytree(tiny_model, models / f"seed{seed}" / tiny_model.name)
    out = tmp_path / "report"
    res = _invoke("report", str(models), str(tiny_data), "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    index = Path(summary["index"])
    assert index.is_file() and summary["primary_method"] == "salus-mlp" and summary["alpha"] == 0.1
    assert set(summary["headline"]) == {"seen", "unseen"}

    # the report's numbers are the protocol's, exactly as `salus evaluate` computes them
    episodes = episodes_from_dataset(SalusDataset(tiny_data), embeddings=True)
    reference = run_evaluation(episodes, [TrainedPredictor.load(models / "seed1" / tiny_model.name)])
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == to_json(reference["methods"], non_finite="null")
    assert results["selection"] == to_json(reference["selection"], non_finite="null")
    seen = next(m for m in reference["methods"] if m["name"] == "salus-mlp")["seen"]
    assert summary["headline"]["seen"]["safe_auroc"] == pytest.approx(seen["safe"]["auroc"])
    html = index.read_text()
    assert "salus-mlp" in html and "signal:" in html and "Alarms: constant threshold" in html
    assert "1 (the first of 2 seed directories)" in html and "seed1" in html
    command = f"salus report {models} {tiny_data} --out {out}"  # real arguments (--json is output only)
    assert command in (out / "results.md").read_text() and command in html
    if CHROMIUM is not None:
        images = _browser_images(index)
        assert len(images) == 5 and all(w > 300 for w, _ in images.values()), images


def test_report_cli_errors_are_clear(tiny_data: Path, tiny_model: Path, tmp_path: Path) -> None:
    res = _invoke("report", str(tmp_path), str(tiny_data), "--out", str(tmp_path / "r"))
    assert res.exit_code != 0 and "holds no predictor checkpoint" in str(res.exception or res.output)
    res = _invoke("report", str(tiny_model), str(tiny_data), "--out", str(tmp_path / "r"), "--alpha", "1.5")
    assert res.exit_code == 2 and "'--alpha': must be a finite number in (0, 1), got 1.5" in res.output


def test_replay_cli_writes_frames_with_the_risk_curve(
    tiny_data: Path, tiny_model: Path, tmp_path: Path
) -> None:
    import imageio.v3 as iio

    from salus.data import SalusDataset

    ds = SalusDataset(tiny_data)
    i = int(np.flatnonzero(~np.asarray(ds.success))[0])
    gif = tmp_path / "ep.gif"
    res = _invoke(
        "replay", str(tiny_data), "--episode", str(i), "--out", str(gif), "--model", str(tiny_model), "--json"
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout.strip().splitlines()[-1])
    frames = iio.imread(gif)
    assert frames.shape[0] == info["steps"] == int(ds.lengths[i]) and frames.shape[-1] in (3, 4)
    assert info["failure_step"] == int(ds.failure_step[i])
    assert not np.array_equal(frames[0], frames[-1])  # the cursor and the image move

    import importlib.util

    if importlib.util.find_spec("av") is not None:  # PyAV comes with the LeRobot extra
        mp4 = tmp_path / "ep.mp4"
        res = _invoke("replay", str(tiny_data), "--episode", str(i), "--out", str(mp4))
        assert res.exit_code == 0, res.output
        assert iio.imread(mp4, plugin="pyav").shape[0] == info["steps"]

    png = tmp_path / "strip.png"
    res = _invoke("replay", str(tiny_data), "--episode", "0", "--out", str(png))
    assert res.exit_code == 0, res.output
    assert iio.imread(png).shape[1] > 200

    res = _invoke("replay", str(tiny_data), "--episode", "999", "--out", str(png))
    assert res.exit_code != 0 and "out of range" in str(res.exception or res.output)
    res = _invoke("replay", str(tiny_data), "--episode", "0", "--out", str(tmp_path / "x.avi"))
    assert res.exit_code != 0 and "replay format" in str(res.exception or res.output)


def test_replay_without_images_is_a_clear_error(tiny_data: Path, tmp_path: Path) -> None:
    from salus.data import DatasetWriter, EpisodeRecord, SalusDataset
    from salus.errors import DatasetError
    from salus.monitor.replay import replay_episode

    src = SalusDataset(tiny_data)
    ep = src.episode(0)
    path = tmp_path / "noimg.zarr"
    with DatasetWriter(path, {"control_hz": 20.0}) as w:
        w.append(
            EpisodeRecord(
                steps={k: v for k, v in ep.steps.items() if not k.startswith("image_")},
                success=ep.success,
                failure_step=ep.failure_step,
                failure_type=ep.failure_type,
                task=ep.task,
                seed=ep.seed,
            )
        )
    with pytest.raises(DatasetError, match="no saved camera images"):
        replay_episode(path, 0, tmp_path / "x.gif")
