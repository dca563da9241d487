"""The training-free baselines as checkpoints (``salus.predictor.baseline_models``): their names
are the evaluation's methods, ``salus train --model all`` leaves them out, a dataset that lacks what
one reads is a clear error, and their checkpoints are validated at load like every model's. Their
live runs and their equality with the evaluation: ``tests/monitor/test_any_robot.py``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from salus.errors import CheckpointError, DatasetError, InvalidInputError
from salus.predictor import (
    BASELINE_MODELS,
    MODEL_NAMES,
    ModelConfig,
    TrainConfig,
    TrainedPredictor,
    split_episodes,
    synthetic_episodes,
    train_model,
)
from salus.predictor.registry import ModelSpec, get_model_spec

torch.set_num_threads(1)
EPISODES = synthetic_episodes(60, seed=3, embedding_dim=8)
# The synthetic data's two baseline columns, named as two online baselines the monitor computes.
ONLINE = dataclasses.replace(EPISODES, baseline_names=("stac", "stac_single"))
CFG = TrainConfig()


def test_names_are_the_evaluation_methods_and_all_leaves_them_out() -> None:
    from salus.predictor.evaluate import COMPARATORS
    from salus.signals import EMBEDDING_BASELINE_NAMES, ONLINE_BASELINE_NAMES

    methods = {get_model_spec(n).method for n in BASELINE_MODELS}
    assert methods == {f"embedding:{n}" for n in EMBEDDING_BASELINE_NAMES} | {
        f"baseline:{n}" for n in ONLINE_BASELINE_NAMES
    }
    assert {c for c in COMPARATORS if c.startswith(("embedding:", "baseline:"))} <= methods
    for name in BASELINE_MODELS:
        spec = get_model_spec(name)
        assert name == spec.method.partition(":")[2].replace("_", "-")
        assert spec.family == spec.method.partition(":")[0] and spec.training_free and spec.deployable
    assert not set(BASELINE_MODELS) & set(MODEL_NAMES)  # `salus train --model all` trains MODEL_NAMES
    with pytest.raises(InvalidInputError, match="objective 'baseline'"):
        ModelSpec("x", "embedding", "salus", "baseline", "m:C", "", method="embedding:knn_cosine")
    with pytest.raises(InvalidInputError, match="reads 'baselines'"):
        ModelSpec("x", "embedding", "baseline", "baseline", "m:C", "", method="baseline:stac")


def test_a_dataset_without_what_a_baseline_reads_is_a_clear_error() -> None:
    no_embedding = dataclasses.replace(
        EPISODES, episodes=[dataclasses.replace(ep, embedding=None) for ep in EPISODES.episodes]
    )
    with pytest.raises(DatasetError, match="knn-cosine needs obs_embedding"):
        train_model(no_embedding, ModelConfig(name="knn-cosine"), CFG)
    with pytest.raises(
        DatasetError, match=r"needs the online baseline 'stac'.*records baseline_0, baseline_1"
    ):
        train_model(EPISODES, ModelConfig(name="stac"), CFG)
    none = dataclasses.replace(
        EPISODES,
        baseline_names=(),
        episodes=[dataclasses.replace(ep, baselines=None) for ep in EPISODES.episodes],
    )
    with pytest.raises(DatasetError, match=r"'fiper_chunk_entropy' recorded per step .*records none"):
        train_model(none, ModelConfig(name="fiper-chunk-entropy"), CFG)
    nan = dataclasses.replace(
        ONLINE,
        episodes=[
            dataclasses.replace(
                ep, baselines=np.where(np.arange(2) == 0, np.nan, np.asarray(ep.baselines)).astype(np.float32)
            )
            for ep in ONLINE.episodes
        ],
    )
    with pytest.raises(DatasetError, match="no training step has a finite 'stac'"):
        train_model(nan, ModelConfig(name="stac"), CFG)


def _resave(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Rewrite the weights and record their new SHA-256 (a consistent but wrong checkpoint)."""
    import hashlib

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "model.safetensors"))
    meta = json.loads((directory / "predictor.json").read_text())
    meta["files"]["model.safetensors"] = hashlib.sha256(
        (directory / "model.safetensors").read_bytes()
    ).hexdigest()
    (directory / "predictor.json").write_text(json.dumps(meta))


def test_checkpoints_round_trip_and_are_validated_at_load(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from salus.predictor import FailurePredictor

    split = split_episodes(ONLINE, CFG.split)
    test = [ONLINE[i] for i in split.test_seen]
    for name in ("knn-euclidean", "mahalanobis", "stac-single", "rnd", "logpzo"):
        trained = train_model(ONLINE, ModelConfig(name=name), CFG, split=split)
        loaded = TrainedPredictor.load(trained.save(tmp_path / name))
        for a, b in zip(trained.episode_scores(test), loaded.episode_scores(test), strict=True):
            np.testing.assert_array_equal(a, b)
        assert loaded.horizons == () and loaded.meta["training"]["epochs_run"] == 0
    stac = TrainedPredictor.load(tmp_path / "stac-single")
    ep = test[0]
    assert ep.baselines is not None
    fill = stac.meta["baseline"]["fill"]
    want = np.where(np.isfinite(ep.baselines[:, 1]), ep.baselines[:, 1], fill)
    np.testing.assert_array_equal(stac.episode_scores([ep])[0], want)  # column 1, NaN at the fill
    stream = FailurePredictor(stac)
    live = [stream.predict(None, baselines=ep.baselines[t : t + 1])[0, 0] for t in range(ep.length)]
    np.testing.assert_array_equal(live, want)
    with pytest.raises(InvalidInputError, match=r"pass baselines=\(1, 2\)"):
        stream.predict(None, baselines=ep.baselines[:1, :1])

    knn = tmp_path / "knn-euclidean"
    weights = load_file(str(knn / "model.safetensors"))
    assert set(weights) == {"reference", "k"} and weights["reference"].shape[1] == 8
    _resave(knn, {"reference": weights["reference"]})
    with pytest.raises(CheckpointError, match="neighbour count 'k'"):
        TrainedPredictor.load(knn)
    _resave(knn, {**weights, "reference": weights["reference"][:, :5]})
    with pytest.raises(CheckpointError, match="width 5, the model reads 8"):
        TrainedPredictor.load(knn)
    maha = tmp_path / "mahalanobis"
    weights = load_file(str(maha / "model.safetensors"))
    assert set(weights) == {"gauss.mean", "gauss.whitener", "gauss.shrinkage", "k"}
    _resave(maha, {**weights, "gauss.whitener": weights["gauss.whitener"][:4]})
    with pytest.raises(CheckpointError, match="scorer's state is malformed"):
        TrainedPredictor.load(maha)
    online = tmp_path / "stac-single"
    _resave(online, {"column": torch.tensor(2), "fill": torch.tensor(0.0, dtype=torch.float64)})
    with pytest.raises(CheckpointError, match="column 2 is outside the 2 baseline scores"):
        TrainedPredictor.load(online)
    meta = json.loads((online / "predictor.json").read_text())
    meta["baseline_names"] = ["stac", "baseline_1"]
    (online / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="needs baseline_names, 2 .* of"):
        TrainedPredictor.load(online)


def test_learned_embedding_checkpoints_are_the_evaluated_scores(tmp_path: Path) -> None:
    """``salus train --model rnd|logpzo`` (FAIL-Detect's scores): the checkpoint's per-step score,
    saved and loaded, is the evaluation's ``embedding:rnd`` / ``embedding:logpzo`` score (same
    reference, same seed: the same weights), streaming one step at a time gives it too, and a
    malformed network or a wrong width is a ``CheckpointError``."""
    from safetensors.torch import load_file

    from salus.predictor import FailurePredictor
    from salus.predictor.evaluate import COMPARATORS, embedding_methods

    split = split_episodes(EPISODES, CFG.split)
    test = list(split.test_seen)
    evaluated = {m.name: m for m in embedding_methods(EPISODES, split, test, seed=CFG.seed)}
    for name, prefix in (("rnd", "rnd.predictor."), ("logpzo", "flow.")):
        method = f"embedding:{name}"
        assert method in COMPARATORS and get_model_spec(name).method == method
        trained = train_model(EPISODES, ModelConfig(name=name), CFG, split=split)
        loaded = TrainedPredictor.load(trained.save(tmp_path / name))
        assert loaded.meta["baseline"]["method"] == method
        scores = loaded.episode_scores([EPISODES[i] for i in test])
        for i, got in zip(test, scores, strict=True):
            np.testing.assert_array_equal(got, evaluated[method].scores[i].astype(np.float32))
        assert np.ptp(np.concatenate(scores)) > 0
        ep = EPISODES[test[0]]
        assert ep.embedding is not None
        stream = FailurePredictor(loaded)
        live = [stream.predict(None, embedding=ep.embedding[t : t + 1])[0, 0] for t in range(ep.length)]
        np.testing.assert_allclose(live, scores[0], rtol=1e-6, atol=0)

        weights = load_file(str(tmp_path / name / "model.safetensors"))
        top = prefix.split(".")[0]
        assert {"k", f"{top}.mean", f"{top}.std", f"{prefix}w0", f"{prefix}b0"} <= set(weights)
        _resave(tmp_path / name, {**weights, f"{prefix}w0": weights[f"{prefix}w0"][:, :5]})
        with pytest.raises(CheckpointError, match="scorer's state is malformed"):
            TrainedPredictor.load(tmp_path / name)
        narrow = {
            **weights,
            f"{top}.mean": weights[f"{top}.mean"][:5],
            f"{top}.std": weights[f"{top}.std"][:5],
        }
        _resave(tmp_path / name, narrow)
        with pytest.raises(CheckpointError, match="malformed|width 5, the model reads 8"):
            TrainedPredictor.load(tmp_path / name)
        _resave(tmp_path / name, {k: v for k, v in weights.items() if k != f"{top}.std"})
        with pytest.raises(CheckpointError, match="missing"):
            TrainedPredictor.load(tmp_path / name)
