"""`salus signals list | check | fit` and the collection checks, on a real zarr dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.cli.main import app
from salus.data import DatasetWriter, EpisodeRecord
from salus.errors import InvalidInputError
from salus.signals import ONLINE_BASELINE_NAMES, SIGNAL_NAMES, OnlineBaselines, SignalExtractor
from salus.signals.analysis import signal_stats_path, summarize_signals

from .helpers import random_stream

runner = CliRunner()


def _dataset(path, episodes: int = 4) -> None:
    rng = np.random.default_rng(0)
    ex = SignalExtractor(1)
    ex.fit(rng.normal(size=(50, 5)), rng.normal(scale=0.3, size=(6, 6, 8, 4)))
    ob = OnlineBaselines(1)
    attrs = {"signal_names": list(SIGNAL_NAMES), "baseline_names": list(ONLINE_BASELINE_NAMES)}
    with DatasetWriter(path, attrs) as writer:
        for i in range(episodes):
            ex.reset()
            ob.reset()
            stream = random_stream(rng, 24, b=1)
            out = [ex.step(it, st) for it, st in stream]
            base = np.concatenate([ob.step(it).values for it, _ in stream])
            success = i % 2 == 0
            writer.append(
                EpisodeRecord(
                    steps={
                        "signals": np.concatenate([o.values for o in out]),
                        "signal_valid": np.concatenate([o.valid for o in out]),
                        "obs_embedding": np.concatenate([it.obs_embedding for it, _ in stream]),
                        "baselines": base,
                    },
                    success=success,
                    failure_step=-1 if success else 20,
                    failure_type="none" if success else "drop",
                    task="pick_place",
                    seed=i,
                )
            )


def test_list_prints_all_signals():
    res = runner.invoke(app, ["signals", "list", "--json", "--baselines"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output)
    assert [s["name"] for s in obj["signals"]] == list(SIGNAL_NAMES)
    assert all(s["formula"] and s["units"] and s["typical_range"] for s in obj["signals"])
    assert "stac" in obj["baselines"]
    res = runner.invoke(app, ["signals", "list"])
    assert res.exit_code == 0 and "ood_distance" in res.output


def test_check_dataset_json(tmp_path):
    path = tmp_path / "ds.zarr"
    _dataset(path)
    res = runner.invoke(app, ["signals", "check", str(path), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["rows"] == 4 * 24 and report["episodes"] == 4
    assert report["checks"] == {"finite": True, "nonzero_variance": True, "distinct": True}
    for name in SIGNAL_NAMES:
        s = report["signals"][name]
        assert set(s) == {"mean", "std", "min", "max", "nan_count", "valid_rate"}
        assert s["nan_count"] == 0 and 0 < s["valid_rate"] <= 1
    assert set(report["baselines"]) == set(ONLINE_BASELINE_NAMES)
    assert all(0 < b["nonzero_rate"] <= 1 for b in report["baselines"].values())
    res = runner.invoke(app, ["signals", "check"])
    assert res.exit_code != 0


def test_fit_from_dataset_writes_loadable_stats(tmp_path):
    path = tmp_path / "ds.zarr"
    _dataset(path)
    out = tmp_path / "stats" / "extractor_stats"
    res = runner.invoke(app, ["signals", "fit", "--data", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["successful"] == 2 and summary["embedding_rows"] == 48
    ex = SignalExtractor.load(out, batch_size=2)
    assert ex.fitted and ex.ood.dim == 5


def test_summary_flags_constant_identical_and_nan_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12))
    x[:, 3] = 1.0  # zero variance
    x[:, 5] = x[:, 4]  # identical
    x[0, 7] = np.nan
    rep = summarize_signals(x, np.ones_like(x, dtype=bool))
    assert rep["checks"] == {"finite": False, "nonzero_variance": False, "distinct": False}
    assert rep["zero_variance"] == [SIGNAL_NAMES[3]]
    assert [SIGNAL_NAMES[4], SIGNAL_NAMES[5]] in rep["identical_pairs"]
    assert rep["signals"][SIGNAL_NAMES[7]]["nan_count"] == 1
    with pytest.raises(InvalidInputError):
        summarize_signals(x[:, :5], np.ones((30, 5), bool))


def test_stats_path_of_packaged_policies_is_beside_their_weights(tmp_path):
    assert signal_stats_path("builtin").parent.name == "weights"
    assert signal_stats_path("builtin").parent.parent.name == "builtin"
    assert signal_stats_path("smolvla").parent.parent.name == "smolvla"  # the packaged SmolVLA
    assert signal_stats_path(f"builtin:{tmp_path}") == tmp_path / "extractor_stats"
    with pytest.raises(InvalidInputError, match="builtin"):
        signal_stats_path("python")  # not packaged: it needs a path


def test_stats_fitted_for_other_weights_are_stale(tmp_path):
    from salus.errors import CheckpointError
    from salus.signals.analysis import load_extractor_for_policy, policy_weights_fingerprint

    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    spec = f"builtin:{folder}"
    ex = SignalExtractor(1).fit(np.random.default_rng(0).normal(size=(20, 3)))
    ex.meta = {"policy": spec, "weights_sha256": policy_weights_fingerprint(spec)}
    ex.save(signal_stats_path(spec))
    loaded = load_extractor_for_policy(spec, batch_size=2)
    assert loaded.batch_size == 2 and loaded.meta["weights_sha256"] == ex.meta["weights_sha256"]
    (folder / "model.safetensors").write_bytes(b"weights v2")
    with pytest.raises(CheckpointError, match="stale"):
        load_extractor_for_policy(spec)
    assert load_extractor_for_policy(spec, check_weights=False).fitted
    with pytest.raises(CheckpointError, match="salus signals fit"):
        load_extractor_for_policy(f"builtin:{tmp_path / 'none'}")
