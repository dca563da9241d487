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


def test_report_cli_matches_evaluate_and_renders(tiny_data: Path, tiny_model: Path, tmp_path: Path) -> None:
    from salus.data import SalusDataset
    from salus.predictor import TrainedPredictor, episodes_from_dataset, run_evaluation

    out = tmp_path / "report"
    res = _invoke("report", str(tiny_model), str(tiny_data), "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    index = Path(summary["index"])
    assert index.is_file() and summary["primary_method"] == "salus-mlp"
    assert summary["episodes"]["unseen"]["total"] > 0 and summary["episodes"]["seen"]["total"] > 0

    # the report's ROC-AUC at T is the protocol's number from `salus evaluate`
    episodes = episodes_from_dataset(SalusDataset(tiny_data))
    reference = run_evaluation(episodes, [TrainedPredictor.load(tiny_model)], include=("salus", "baseline"))
    for entry in reference["methods"]:
        for split in ("seen", "unseen"):
            assert summary["roc_auc"][split][entry["name"]] == pytest.approx(
                entry[split]["auroc_T"], abs=1e-9
            )
    html = index.read_text()
    assert "salus-mlp" in html and "signal:" in html and "ROC-AUC@T" in html
    if CHROMIUM is not None:
        images = _browser_images(index)
        assert len(images) == 5 and all(w > 300 for w, _ in images.values()), images


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
