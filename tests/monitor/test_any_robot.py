"""Every model kind monitors a robot that is not our Panda, live: a third-party-style Gymnasium arm
(24-value state, 4-D actions, 10 Hz; ``any_robot_env.py``) collected with ``salus collect --env``'s
machinery, every model that collection can train, and for each checkpoint the live
``Monitor.observe`` / ``Monitor.step`` on the recorded episodes' inputs against ``offline_risk``.
Also the robot description (``salus.data.RobotSpec``): validation, JSON, the dataset attributes it
comes from, the recorder and the checkpoint that carry it, and ``salus train --horizons-s``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from salus.errors import InvalidInputError

torch.set_num_threads(1)
HELPER = Path(__file__).resolve().parent / "any_robot_env.py"
TASK_TEXT = "reach the goal"
EPISODES, MAX_STEPS = 72, 40
# Scores are float32 features through float32 networks: the streaming step and the whole-episode
# sequence path differ only by float32 rounding (accumulation order, measured <= 1.5e-7), below this
# tolerance; live features that skip the dataset's float16 rounding of the embedding differ by 4-7e-6,
# above it (the check fails then; measured).
RTOL, ATOL = 0.0, 1e-6
# The training-free baselines' scores are not probabilities but distances and MMDs (kNN Euclidean
# about 20 on this arm, where one float32 step is 1.9e-6): their tolerance is relative, about 8
# float32 steps. The kNN distances' float32 matrix products round differently for one live row than
# for a whole episode (measured <= 1.8e-7 relative); a live embedding that skips the float16 rounding
# moves them by far more (measured 1e-4 relative for each embedding baseline: the check fails then).
BASELINE_RTOL = 1e-6
MODELS = ("salus-risk", "salus-trees", "salus-mlp", "salus-tcn", "safe-mlp", "safe-lstm")
# The training-free baselines (``salus.predictor.baseline_models``), each the evaluation's method:
BASELINES = {
    "knn-cosine": "embedding:knn_cosine",
    "knn-euclidean": "embedding:knn_euclidean",
    "mahalanobis": "embedding:mahalanobis",
    "stac": "baseline:stac",
    "stac-single": "baseline:stac_single",
    "action-total-variance": "baseline:action_total_variance",
    "fiper-chunk-entropy": "baseline:fiper_chunk_entropy",
    "rnd": "embedding:rnd",
    "logpzo": "embedding:logpzo",
}


def _load_helper():
    import importlib.util

    spec = importlib.util.spec_from_file_location("any_robot_env", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def arm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salus.collect import CollectConfig, ObservationMap
    from salus.collect.collector import collect

    out = tmp_path_factory.mktemp("arm") / "arm.zarr"
    config = CollectConfig(
        policy=f"python:{HELPER}:make_policy",
        episodes=EPISODES,
        max_steps=MAX_STEPS,
        seed=11,
        env=f"{HELPER}:make_env",
        observation=ObservationMap(state=(".",), task=None, task_text=TASK_TEXT),
        failure=f"{HELPER}:failure",
        signal_stats="none",
        save_hidden=True,  # SAFE's feature hidden_mean: the SAFE models read it live
    )
    collect(config, out)
    return out


@pytest.fixture(scope="module")
def arm_models(arm_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from salus.data import SalusDataset
    from salus.predictor import (
        ConformalConfig,
        ModelConfig,
        SplitConfig,
        TrainConfig,
        episodes_from_dataset,
        split_episodes,
        train_model,
    )

    episodes = episodes_from_dataset(SalusDataset(arm_data))
    cfg = TrainConfig(
        max_epochs=2,
        patience=2,
        horizons=(3, 5, 8),
        score_ramp_s=0.2,  # our models' time ramp, so that live == offline covers it
        split=SplitConfig(calib_fraction=0.35, val_fraction=0.15, test_fraction=0.2),
        conformal=ConformalConfig(alphas=(0.1, 0.2), alpha=0.2),
    )
    split = split_episodes(episodes, cfg.split)
    small = {
        "salus-risk": ModelConfig(
            name="salus-risk",
            gru_hidden=16,
            pca=4,
            dropout=0.0,
            feature_groups=("signals", "baselines", "state", "embedding", "knn"),
        ),
        "salus-trees": ModelConfig(
            name="salus-trees",
            trees=30,
            tree_min_leaf=20,
            pca=4,
            feature_groups=("signals", "baselines", "state", "embedding", "knn"),
        ),
        "salus-mlp": ModelConfig(name="salus-mlp", mlp_hidden=(32, 32), dropout=0.0),
        "salus-tcn": ModelConfig(name="salus-tcn", tcn_channels=8, tcn_dilations=(1, 2), dropout=0.0),
        "safe-mlp": ModelConfig(name="safe-mlp", safe_hidden=(32,), dropout=0.0),
        "safe-lstm": ModelConfig(name="safe-lstm", lstm_hidden=16),  # an LSTM without dropout
        **{name: ModelConfig(name=name) for name in BASELINES},  # nothing to size: fitted, not trained
    }
    base = tmp_path_factory.mktemp("arm_models")
    out = {}
    for name in (*MODELS, *BASELINES):
        model = train_model(episodes, small[name], cfg, split=split)
        out[name] = model.save(base / name)
    return out


def test_the_dataset_describes_the_robot(arm_data: Path) -> None:
    from salus.data import SalusDataset
    from salus.data.robot import dataset_robot

    ds = SalusDataset(arm_data)
    robot = dataset_robot(ds)
    assert robot is not None
    assert (robot.state_dim, robot.action_dim, robot.control_hz) == (24, 4, 10.0)
    assert not robot.reads_panda_layout
    assert set(robot.invalid_signals()) == {"execution_mismatch", "constraint_margin"}
    assert 0 < ds.success.sum() < ds.num_episodes  # the noisy reacher fails sometimes


@pytest.mark.parametrize("name", [*MODELS, *BASELINES])
def test_every_model_runs_live_on_the_arm(name: str, arm_data: Path, arm_models: dict[str, Path]) -> None:
    """Replaying the recorded episodes (same seeds, same policy noise), the monitor's per-step
    scores equal offline_risk on the stored episode, and its alarms are the band test."""
    from salus.data import SalusDataset
    from salus.monitor import Monitor, offline_risk

    helper = _load_helper()
    ds = SalusDataset(arm_data)
    model_dir = arm_models[name]
    policy = helper.make_policy(num_samples=4)  # as collected (CollectConfig's default K)
    with _nowarn():
        mon = Monitor.load(model_dir, policy=policy, alpha=0.2)
    assert mon.robot.state_dim == 24 and mon.robot.control_hz == 10.0
    env = helper.make_env(MAX_STEPS)
    failed = [i for i in range(ds.num_episodes) if not ds.success[i]][:1]
    succeeded = [i for i in range(ds.num_episodes) if ds.success[i]][:1]
    for n, i in enumerate(failed + succeeded):
        steps = ds.episode(i).steps
        seed = int(ds.seed[i])
        obs, _ = env.reset(seed=seed)
        policy.reset(seed=seed)
        mon.reset(reset_policy=False)
        scores, alarms, thresholds, actions = [], [], [], []
        for _t in range(len(steps["action"])):
            o = {"state": obs, "task": TASK_TEXT}
            if n == 0:  # the policy called by the caller, then observe
                action = policy.act(o)
                risk = mon.observe(o, action)
            else:  # the monitor calls the policy
                action, risk = mon.step(o)
            assert not risk.failsafe[0], risk.reason
            scores.append(risk.score[0])
            alarms.append(risk.alarm[0])
            thresholds.append(risk.threshold[0])
            actions.append(action)
            obs, _r, terminated, truncated, _info = env.step(action)
            if terminated or truncated:
                break
        np.testing.assert_allclose(np.array(actions), steps["action"], rtol=0, atol=1e-6)
        off = offline_risk(model_dir, steps, alpha=0.2)
        if name in BASELINES:
            np.testing.assert_allclose(np.array(scores), off["score"], rtol=BASELINE_RTOL, atol=0)
        else:
            np.testing.assert_allclose(np.array(scores), off["score"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(np.array(thresholds), off["threshold"])
        assert np.isfinite(thresholds).all()  # the band at alpha 0.2 was calibrated and can fire
        alarms_arr = np.array(alarms)
        np.testing.assert_array_equal(alarms_arr, np.array(scores) > np.array(thresholds))
        first = int(np.flatnonzero(alarms_arr)[0]) if alarms_arr.any() else -1
        if abs(off["score"] - off["threshold"]).min() > 1e-4:  # no tie within the tolerance
            assert first == off["alarm_step"]


def test_safe_models_read_safes_feature(arm_data: Path, arm_models: dict[str, Path]) -> None:
    """Collected with --save-hidden, the SAFE models read SAFE's own feature (the output layer's
    input averaged over the chunk, ``hidden_mean``), recorded as the policy reports it; the
    embedding baselines keep the observation embedding."""
    from salus.data import SalusDataset
    from salus.predictor import TrainedPredictor

    helper = _load_helper()
    ds = SalusDataset(arm_data)
    steps = ds.episode(0).steps
    policy = helper.make_policy(num_samples=4)
    env = helper.make_env(MAX_STEPS)
    obs, _ = env.reset(seed=int(ds.seed[0]))
    policy.reset(seed=int(ds.seed[0]))
    policy.act({"state": obs, "task": TASK_TEXT})
    live = policy.last_internals.hidden_mean[0]
    assert steps["hidden_mean"].shape == (len(steps["action"]), live.shape[0])
    np.testing.assert_array_equal(steps["hidden_mean"][0], live.astype(np.float16))
    assert not np.array_equal(steps["hidden_mean"], steps["hidden"])  # averaged, not the step's own
    for name in ("safe-mlp", "safe-lstm"):
        pred = TrainedPredictor.load(arm_models[name])
        assert pred.meta["normalization"]["source"] == "hidden_mean"
        assert pred.meta["model"]["in_dim"] == live.shape[0]
    knn = TrainedPredictor.load(arm_models["knn-cosine"])
    assert knn.meta["normalization"].get("source", "obs_embedding") == "obs_embedding"


def test_baseline_checkpoints_score_as_the_evaluation(arm_data: Path, arm_models: dict[str, Path]) -> None:
    """A trained baseline checkpoint's per-step score on the validation, calibration and test
    episodes is the evaluation's score of its method (the same fitting rule), and its calibrated
    band is the evaluation's band of that method: the baseline that runs live is the evaluated one."""
    from salus.data import SalusDataset
    from salus.predictor import episodes_from_dataset, evaluate_detailed
    from salus.predictor.checkpoint import TrainedPredictor

    episodes = episodes_from_dataset(SalusDataset(arm_data))
    preds = [TrainedPredictor.load(arm_models[name]) for name in BASELINES]
    ev = evaluate_detailed(episodes, preds, alphas=(0.1, 0.2), include=("baseline", "embedding"))
    methods = {m.name: m for m in ev.methods}
    split = ev.split
    for pred in preds:
        name, method = pred.name, BASELINES[pred.name]
        assert pred.meta["baseline"]["method"] == method
        ours, theirs = methods[name], methods[method]
        assert ours.family == theirs.family == method.partition(":")[0]
        assert set(split.test_seen) | set(split.test_unseen) <= set(ours.scores)
        for i in theirs.scores:
            np.testing.assert_allclose(ours.scores[i], theirs.scores[i], rtol=BASELINE_RTOL, atol=0)
        assert np.ptp(np.concatenate(list(theirs.scores.values()))) > 0, method  # a score, not a constant
        for alpha in (0.1, 0.2):
            band, evaluated = pred.band(alpha), ev.bands[method]["band"][alpha]
            for field in ("mu", "h"):
                np.testing.assert_allclose(getattr(band, field), getattr(evaluated, field), rtol=1e-5)
            np.testing.assert_allclose(band.half_width, evaluated.half_width, rtol=1e-5)
    md = next(m for m in ev.methods if m.name == "baseline:stac")
    assert np.isfinite(np.concatenate(list(md.scores.values()))).all()  # NaN steps took the fill


class _nowarn:
    """Allow (but do not require) the band warning of a small calibration set."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", UserWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def test_shape_errors_name_the_robot_widths(arm_models: dict[str, Path]) -> None:
    from salus.monitor import Monitor

    helper = _load_helper()
    for name in ("salus-risk", "safe-mlp"):
        with _nowarn():
            mon = Monitor.load(arm_models[name], policy=helper.make_policy())
        mon.reset()
        with pytest.raises(InvalidInputError, match=r"must have shape \(24,\), got \(22,\).*24 values"):
            mon.observe({"state": np.zeros(22, np.float32), "task": TASK_TEXT})
        with pytest.raises(InvalidInputError, match=r"reads .* not only signals: call monitor.observe"):
            mon.observe_signals(np.zeros(12, np.float32))


def test_checkpoint_carries_the_robot(arm_models: dict[str, Path]) -> None:
    from salus.data.robot import RobotSpec, panda_robot
    from salus.errors import CheckpointError
    from salus.predictor.checkpoint import TrainedPredictor, validate_meta

    pred = TrainedPredictor.load(arm_models["salus-mlp"])
    # derived from the dataset: named by the environment factory's function (no Gymnasium id)
    assert pred.robot == RobotSpec(state_dim=24, control_hz=10.0, action_dim=4, name="make_env")
    meta = dict(pred.meta)
    meta["robot"] = {"state_dim": 0}
    with pytest.raises(CheckpointError, match="robot description is malformed: RobotSpec.state_dim"):
        validate_meta(meta)
    meta.pop("robot")
    pred.meta = meta
    assert pred.robot == panda_robot()  # a checkpoint from before robot descriptions: the Panda


def test_robot_spec_validates_and_round_trips(tmp_path: Path) -> None:
    from salus.data.robot import RobotSpec, load_robot, panda_robot, robot_from_attrs

    arm = RobotSpec(
        state_dim=24,
        control_hz=10,
        action_dim=4,
        name="arm",
        joint_pos=tuple(range(6)),
        joint_target=tuple(range(12, 18)),
        joint_lower=(-3.0,) * 6,
        joint_upper=(3.0,) * 6,
        ee_pos=(18, 19, 20),
    )
    assert RobotSpec.from_json(arm.to_json()) == arm
    (tmp_path / "arm.json").write_text(arm.to_json())
    assert load_robot(tmp_path / "arm.json") == arm
    assert RobotSpec.from_dict(json.loads(panda_robot().to_json())) == panda_robot()
    assert panda_robot().reads_panda_layout and panda_robot().invalid_signals() == {}
    bad = [
        ({"state_dim": 0}, "state_dim must be a positive integer"),
        ({"state_dim": 4, "control_hz": -1}, "control_hz must be a positive number"),
        ({"state_dim": 4, "joint_pos": (0, 4)}, r"index 4 lies outside the state \(state_dim 4"),
        ({"state_dim": 4, "joint_pos": (0, 1), "joint_target": (2,)}, "one target per joint"),
        ({"state_dim": 4, "joint_pos": (0,), "joint_lower": (1.0,), "joint_upper": (0.0,)}, "must be below"),
        ({"state_dim": 4, "joint_lower": (0.0,), "joint_upper": (1.0,)}, "need joint_pos"),
        ({"state_dim": 4, "ee_pos": (0, 1)}, "ee_pos must name 3 state indices"),
        ({"state_dim": 2, "state_names": ("a",)}, "state_names must be 2 non-empty strings"),
        ({"state_dim": 4, "action_dim": 0}, "action_dim must be a positive integer"),
        ({"state_dim": 4, "joint_pos": (1.5,)}, "joint_pos must be integers"),
    ]
    for kw, msg in bad:
        with pytest.raises(InvalidInputError, match=msg):
            RobotSpec(**kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"unknown robot description field\(s\) \['width'\]"):
        RobotSpec.from_dict({"state_dim": 3, "width": 3})
    with pytest.raises(InvalidInputError, match="malformed robot description"):
        RobotSpec.from_dict({"state_dim": 3, "state_names": 5})
    with pytest.raises(InvalidInputError, match="needs 'state_dim'"):
        RobotSpec.from_dict({"control_hz": 3})
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        RobotSpec.from_json("{")
    # what the dataset attributes say: our simulator, a gym env, a recorder (inferred Panda layout)
    assert robot_from_attrs({"env": {"simulator": "salus.sim"}, "control_hz": 20}) == panda_robot()
    gym = robot_from_attrs({"control_hz": 10, "env": {"state_dim": 5, "action_shape": [3], "env": "x"}})
    assert gym is not None and (gym.state_dim, gym.action_dim, gym.control_hz) == (5, 3, 10.0)
    rec = robot_from_attrs(
        {"control_hz": 30, "recorder": {"observation": {"state": ["state"], "robot_state": "state"}}}, 22
    )
    assert rec is not None and rec.reads_panda_layout and rec.control_hz == 30.0
    assert robot_from_attrs({}, None) is None


def test_recorder_stores_the_robot(tmp_path: Path) -> None:
    from salus import Recorder
    from salus.collect import ObservationMap
    from salus.data import SalusDataset
    from salus.data.robot import RobotSpec, dataset_robot

    helper = _load_helper()
    robot = RobotSpec(state_dim=24, control_hz=10, action_dim=4, name="arm", ee_pos=(18, 19, 20))
    env = helper.make_env(10)
    omap = ObservationMap(state=(".",), task=None, task_text=TASK_TEXT)
    with pytest.raises(InvalidInputError, match="control_hz 30 differs"):
        Recorder(tmp_path / "bad.zarr", helper.make_policy(), robot=robot, control_hz=30)
    with Recorder(tmp_path / "rec.zarr", helper.make_policy(), observation=omap, robot=robot) as rec:
        obs, _ = env.reset(seed=0)
        rec.start()
        for _ in range(3):
            obs, *_ = env.step(rec.step(obs))
        with pytest.raises(InvalidInputError, match=r"'arm' has a 24-value state: expected \(24,\)"):
            rec.step(obs[:22])
        rec.end(success=True)
    ds = SalusDataset(tmp_path / "rec.zarr")
    assert dataset_robot(ds) == robot and ds.attrs["control_hz"] == 10.0


def test_train_horizons_in_seconds(arm_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from salus.cli.main import app
    from salus.predictor.checkpoint import TrainedPredictor

    out = tmp_path / "m"
    args = ["train", str(arm_data), "--out", str(out), "--model", "salus-mlp", "--epochs", "1"]
    res = CliRunner().invoke(app, [*args, "--horizons-s", "0.3,0.5,1"])
    assert res.exit_code == 0, res.output
    pred = TrainedPredictor.load(out)
    assert pred.horizons == (3, 5, 10)  # seconds times the dataset's 10 Hz
    assert [round(h, 6) for h in pred.meta["horizons_s"]] == [0.3, 0.5, 1.0]
    res = CliRunner().invoke(app, [*args, "--horizons-s", "0.33"])  # `salus` prints it, exit code 2
    assert isinstance(res.exception, InvalidInputError)
    assert "0.33 s is 3.3 control steps at 10 Hz" in str(res.exception)
    res = CliRunner().invoke(app, [*args, "--horizons-s", "1", "--horizons", "6,10"])
    assert isinstance(res.exception, InvalidInputError) and "not both" in str(res.exception)
    assert math.isclose(10.0, TrainedPredictor.load(out).control_hz)


def test_salus_train_writes_baseline_checkpoints(arm_data: Path, tmp_path: Path) -> None:
    """`salus train DATA --model knn-cosine,stac`: one ordinary checkpoint per baseline, which the
    monitor loads, and which `salus evaluate` scores as a method of its family."""
    from typer.testing import CliRunner

    from salus.cli.main import app
    from salus.monitor import Monitor

    out = tmp_path / "baselines"
    res = CliRunner().invoke(app, ["train", str(arm_data), "--out", str(out), "--model", "knn-cosine,stac"])
    assert res.exit_code == 0, res.output
    again = CliRunner().invoke(
        app, ["train", str(arm_data), "--out", str(out), "--model", "knn-cosine,stac", "--resume"]
    )
    assert again.exit_code == 0, again.output  # a kept baseline has no validation loss to print
    assert "knn-cosine (seed 0): fitted, no training" in again.output and "(kept)" in again.output
    helper = _load_helper()
    for name in ("knn-cosine", "stac"):
        with _nowarn():
            mon = Monitor.load(out, policy=helper.make_policy(num_samples=4), model=name, alpha=0.2)
        assert mon.predictor.meta["baseline"]["method"] == BASELINES[name]
    res = CliRunner().invoke(app, ["evaluate", str(out), str(arm_data), "--json"])
    assert res.exit_code == 0, res.output
    families = {m["name"]: m["family"] for m in json.loads(res.stdout)["methods"]}
    assert families["knn-cosine"] == families["embedding:knn_cosine"] == "embedding"
    assert families["stac"] == families["baseline:stac"] == "baseline"


def _described_arm(**over: object):
    from salus.data.robot import RobotSpec

    kw: dict = {
        "state_dim": 24,
        "control_hz": 10,
        "action_dim": 4,
        "name": "reach-arm",
        "joint_pos": tuple(range(6)),
        "joint_target": tuple(range(12, 18)),
        "joint_lower": (-3.0,) * 6,
        "joint_upper": (3.0,) * 6,
        "ee_pos": (18, 19, 20),
        "ee_action_scale": 0.05,
        **over,
    }
    return RobotSpec(**kw)


def test_robot_signals_come_from_the_description(
    arm_data: Path, arm_models: dict[str, Path], tmp_path: Path
) -> None:
    """execution_mismatch and constraint_margin on a described robot: computed from its entries
    (recorder and live monitor alike); on an undescribed one invalid, with the reason."""
    from salus import Recorder
    from salus.collect import ObservationMap
    from salus.data import SalusDataset
    from salus.monitor import Monitor, offline_risk
    from salus.predictor import (
        ConformalConfig,
        ModelConfig,
        SplitConfig,
        TrainConfig,
        episodes_from_dataset,
        train_model,
    )
    from salus.signals import SIGNAL_NAMES

    em, cm = SIGNAL_NAMES.index("execution_mismatch"), SIGNAL_NAMES.index("constraint_margin")
    plain = SalusDataset(arm_data)  # collected without a description: both invalid at every step
    valid = plain.steps("signal_valid")
    assert not valid[:, em].any() and not valid[:, cm].any()

    helper = _load_helper()
    omap = ObservationMap(state=(".",), task=None, task_text=TASK_TEXT)
    env = helper.make_env(MAX_STEPS)
    path = tmp_path / "described.zarr"
    with Recorder(path, helper.make_policy(), observation=omap, robot=_described_arm()) as rec:
        for seed in range(36):
            obs, _ = env.reset(seed=seed)
            rec.start(seed=seed)
            steps = 0
            while True:
                obs, _r, terminated, truncated, info = env.step(rec.step(obs))
                steps += 1
                if terminated or truncated:
                    break
            if info["is_success"]:
                rec.end(success=True)
            else:
                rec.end(failure_step=steps - 1, failure_type="timeout")
    ds = SalusDataset(path)
    ep = ds.episode(0).steps
    state, action, sig, ok = ep["state"].astype(np.float64), ep["action"], ep["signals"], ep["signal_valid"]
    assert ok[1:, em].all() and not ok[0, em] and ok[:, cm].all()
    ee = state[:, 18:21]
    want_em = np.linalg.norm((ee[1:] - ee[:-1]) / 0.05 - np.clip(action[:-1, :3], -1, 1), axis=1)
    np.testing.assert_allclose(sig[1:, em], want_em, rtol=1e-5, atol=1e-6)
    q = state[:, :6]
    want_cm = np.minimum(q + 3.0, 3.0 - q).min(axis=1) / 6.0
    np.testing.assert_allclose(sig[:, cm], want_cm, rtol=1e-5, atol=1e-6)

    # commanded joint targets instead of the end effector: the joints' distance from the target
    joints_only = _described_arm(ee_pos=(), ee_action_scale=None)
    with Recorder(tmp_path / "joints.zarr", helper.make_policy(), observation=omap, robot=joints_only) as rec:
        obs, _ = env.reset(seed=0)
        rec.start()
        for _ in range(6):
            obs, *_ = env.step(rec.step(obs))
        rec.end(success=True)
    j = SalusDataset(tmp_path / "joints.zarr").episode(0).steps
    js = j["state"].astype(np.float64)
    want = np.linalg.norm((js[:, :6] - js[:, 12:18]) / 6.0, axis=1)
    np.testing.assert_allclose(j["signals"][1:, em], want[1:], rtol=1e-5, atol=1e-6)

    # trained on the described robot, the live monitor computes the same signals and scores
    episodes = episodes_from_dataset(ds)
    assert episodes.robot == _described_arm()
    cfg = TrainConfig(
        max_epochs=2,
        patience=2,
        horizons=(3, 5),
        split=SplitConfig(calib_fraction=0.3),
        conformal=ConformalConfig(alphas=(0.2,), alpha=0.2),
    )
    mlp = ModelConfig(name="salus-mlp", mlp_hidden=(16,))
    model_dir = train_model(episodes, mlp, cfg).save(tmp_path / "mlp")
    policy = helper.make_policy()
    with _nowarn():
        mon = Monitor.load(model_dir, policy=policy)
    assert mon.invalid_signals == {}
    with _nowarn():
        undescribed = Monitor.load(arm_models["salus-mlp"], policy=policy)
    assert set(undescribed.invalid_signals) == {
        "execution_mismatch",
        "constraint_margin",
    }
    obs, _ = env.reset(seed=int(ds.seed[0]))
    policy.reset(seed=int(ds.seed[0]))
    mon.reset(reset_policy=False)
    scores = []
    for _ in range(len(ep["action"])):
        _action, risk = mon.step({"state": obs, "task": TASK_TEXT})
        scores.append(risk.score[0])
        obs, _r, terminated, truncated, _ = env.step(_action)
        if terminated or truncated:
            break
    np.testing.assert_allclose(np.array(scores), offline_risk(model_dir, ep)["score"], rtol=RTOL, atol=ATOL)
