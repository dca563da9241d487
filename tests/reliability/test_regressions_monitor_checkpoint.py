"""Regression tests of "Reliability, second round" (and two parts of "Any robot, live"), one group
per defect; each failed before its fix:

1. a checkpoint whose band values were NaN, or that lacked ``signal_names``, or lacked ``files``
   while its weights had changed, loaded silently (a NaN band: a monitor that never alarms);
2. ``Monitor.step`` handed a NaN/inf action to the robot, returned ``None`` without fail-safe and
   raised on a string action;
3. inputs of the wrong shape were masked as fail-safe "internal error"s, and a single observation
   without ``task`` was refused with "needs 'state' (22,) or (B, 22); got (22,)";
4. a band too small to ever fire was reported with "FPR 0.00 / recall 0.00" by train, evaluate
   and report, as if measured.

Real checkpoints (the session fixture ``checkpoint``), the real built-in policy network, the real CLI.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.errors import CheckpointError, InvalidInputError

from .test_regressions import _builtin_policy, good_obs


def _copy(checkpoint: Path, tmp_path: Path) -> tuple[Path, dict]:
    d = tmp_path / "ck"
    shutil.copytree(checkpoint, d)
    return d, json.loads((d / "predictor.json").read_text())


def _write(d: Path, meta: dict) -> None:
    (d / "predictor.json").write_text(json.dumps(meta))  # NaN as the bare NaN token, as json does


def _refused(d: Path, match: str) -> None:
    from salus.monitor import Monitor
    from salus.predictor import TrainedPredictor

    for load in (TrainedPredictor.load, Monitor.load):
        with pytest.raises(CheckpointError, match=match):
            load(d)


def _quiet_monitor(path: Path, **kw: Any):  # type: ignore[no-untyped-def]
    from salus.monitor import Monitor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "never alarms" at alphas too strict for the fixture
        return Monitor.load(path, **kw)


# --------------------------------------------------------------------------- 1: checkpoints
def _alpha_key(meta: dict) -> str:
    return next(k for k in meta["conformal"]["bands"] if abs(float(k) - meta["conformal"]["alpha"]) < 1e-12)


@pytest.mark.parametrize(
    "damage",
    [
        "nan_mu",
        "null_mu",
        "inf_h",
        "nan_half_width",
        "null_half_width",
        "short_h",
        "empty_mu",
        "inf_not_earned",
    ],
)
def test_1_a_band_that_is_not_finite_or_shaped_right_is_refused(
    checkpoint: Path, tmp_path: Path, damage: str
) -> None:
    d, meta = _copy(checkpoint, tmp_path)
    key = _alpha_key(meta)
    band = meta["conformal"]["bands"][key]
    assert band["half_width"] != "inf"  # the checkpoint's own alpha can fire
    field = {"nan_mu": "mu", "null_mu": "mu", "inf_h": "h", "empty_mu": "mu", "short_h": "h"}.get(
        damage, "half_width"
    )
    if damage == "nan_mu":
        band["mu"][2] = float("nan")
    elif damage == "null_mu":  # how to_json(non_finite="null") stores a NaN
        band["mu"][0] = None
    elif damage == "inf_h":
        band["h"][1] = float("inf")
    elif damage == "nan_half_width":
        band["half_width"] = float("nan")
    elif damage == "null_half_width":
        band["half_width"] = None
    elif damage == "short_h":
        band["h"] = band["h"][:-1]
    elif damage == "empty_mu":
        band["mu"], band["h"] = [], []
    else:  # an infinite band where the calibration gives a finite one: it would never fire
        band["half_width"] = "inf"
    _write(d, meta)
    _refused(d, rf"conformal\.bands\['{key}'\].*{field}")


def test_1_the_nan_band_no_longer_makes_a_silent_monitor(checkpoint: Path, tmp_path: Path) -> None:
    """The defect as reported: every band value NaN, and the monitor raised no alarm and no fail-safe."""
    d, meta = _copy(checkpoint, tmp_path)
    for band in meta["conformal"]["bands"].values():
        band["mu"] = [float("nan")] * len(band["mu"])
        band["h"] = [float("nan")] * len(band["h"])
        band["half_width"] = float("nan")
    _write(d, meta)
    _refused(d, "conformal.bands")


def test_1_a_band_stored_under_another_alpha_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    d, meta = _copy(checkpoint, tmp_path)
    key = _alpha_key(meta)
    meta["conformal"]["bands"][key]["alpha"] = 0.33
    _write(d, meta)
    _refused(d, rf"conformal\.bands\['{key}'\]")


def test_1_an_infinite_band_that_calibration_gives_still_loads(checkpoint: Path) -> None:
    """+inf is how a band that legitimately cannot fire is stored ("inf"): it stays loadable."""
    from salus.predictor import TrainedPredictor

    meta = json.loads((checkpoint / "predictor.json").read_text())
    infinite = [k for k, b in meta["conformal"]["bands"].items() if b["half_width"] == "inf"]
    assert infinite, "the fixture's calibration is small enough for alpha 0.05 to be infinite"
    pred = TrainedPredictor.load(checkpoint)
    assert not pred.band(float(infinite[0])).can_fire
    mon = _quiet_monitor(checkpoint, alpha=float(infinite[0]))
    risk = mon.observe_signals(np.full(12, 50.0))
    assert np.isinf(risk.threshold[0]) and not risk.alarm[0] and not risk.failsafe[0]


def test_1_missing_signal_names_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    d, meta = _copy(checkpoint, tmp_path)
    del meta["signal_names"]
    _write(d, meta)
    _refused(d, "signal_names")


def test_1_a_horizon_model_without_horizons_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    """salus-mlp's objective scores a horizon's probability (the objectives table says so, not a
    list of model names): a checkpoint whose horizons were emptied cannot load."""
    d, meta = _copy(checkpoint, tmp_path)
    meta["horizons"] = []
    _write(d, meta)
    _refused(d, "horizons are empty")


@pytest.mark.parametrize("record", ["no_files_key", "no_weights_entry"])
def test_1_changed_weights_without_their_hash_are_refused(
    checkpoint: Path, tmp_path: Path, record: str
) -> None:
    from safetensors.torch import load_file, save_file

    d, meta = _copy(checkpoint, tmp_path)
    weights = load_file(str(d / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 0.5  # finite, right shapes: only a hash can tell
    save_file(weights, str(d / "model.safetensors"))
    if record == "no_files_key":
        del meta["files"]
        match = "'files'"
    else:
        del meta["files"]["model.safetensors"]
        match = "files.*model.safetensors"
    _write(d, meta)
    _refused(d, match)


def test_1_a_valid_checkpoint_loads_and_behaves_as_trained(checkpoint: Path, tmp_path: Path) -> None:
    """Re-saved by the code (so written the way training writes it), the checkpoint loads, scores
    like the original and its band equals the trained one."""
    from salus.predictor import TrainedPredictor

    pred = TrainedPredictor.load(checkpoint)
    again = TrainedPredictor.load(pred.save(tmp_path / "resaved"))
    band, band2 = pred.band(), again.band()
    np.testing.assert_array_equal(band.mu, band2.mu)
    assert band.half_width == band2.half_width and band.can_fire
    risk = _quiet_monitor(tmp_path / "resaved").observe_signals(np.zeros((2, 12)))
    assert not risk.failsafe.any() and np.isfinite(risk.threshold).all()


# --------------------------------------------------------------------------- 2: bad actions
class _FaultyPolicy:
    """The real built-in policy whose returned action is replaced by ``bad(action)`` (a user policy
    with a bug): its internals are the real ones of that step."""

    def __init__(self, bad: Any) -> None:
        self.inner = _builtin_policy()
        self.bad = bad
        self.action_dim = self.inner.action_dim
        self.armed = False

    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        self.inner.reset(env_index)

    def act(self, observation: Any) -> Any:
        action = self.inner.act(observation)
        return self.bad(action) if self.armed else action

    @property
    def last_internals(self) -> Any:
        return self.inner.last_internals


def _nan(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a[..., 0] = np.nan
    return a


def _inf(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a[..., 2] = np.inf
    return a


BAD_ACTIONS = {
    "nan": (_nan, "NaN or inf"),
    "inf": (_inf, "NaN or inf"),
    "none": (lambda a: None, "None"),
    "string": (lambda a: "0.1, 0.2, 0.0, 1.0", "not numbers"),
    "strings": (lambda a: np.array(["a", "b", "c", "d"]), "not numbers"),
    "objects": (lambda a: [object()] * 4, "not numbers"),
    "short": (lambda a: np.asarray(a)[..., :3], "shape"),
    "batched_for_single": (lambda a: np.asarray(a)[None], "shape"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ACTIONS))
def test_2_step_returns_the_hold_action_for_anything_bad_the_policy_returns(
    checkpoint: Path, kind: str
) -> None:
    bad, needle = BAD_ACTIONS[kind]
    policy = _FaultyPolicy(bad)
    mon = _quiet_monitor(checkpoint, policy=policy)
    rng = np.random.default_rng(0)
    mon.reset()
    for _ in range(3):
        good, risk = mon.step(good_obs(rng))
        assert not risk.failsafe[0], risk.reason
    policy.armed = True
    action, risk = mon.step(good_obs(rng))  # must not raise
    assert isinstance(action, np.ndarray) and action.shape == (4,) and action.dtype == np.float32
    assert np.isfinite(action).all()
    np.testing.assert_array_equal(action[:3], 0.0)  # hold: no motion, gripper command unchanged
    assert action[3] == pytest.approx(float(good[3]))
    assert risk.failsafe[0] and risk.alarm[0] and needle in str(risk.reason[0]), risk.reason
    assert "internal error" not in str(risk.reason[0])
    policy.armed = False
    _, risk = mon.step(good_obs(rng))  # sticky until reset
    assert risk.failsafe[0]
    mon.reset()
    _, risk = mon.step(good_obs(rng))
    assert not risk.failsafe[0]


def test_2_a_nan_row_of_a_batch_holds_only_that_environment(checkpoint: Path) -> None:
    def one_row(a: np.ndarray) -> np.ndarray:
        a = np.array(a, copy=True)
        a[1, 3] = np.nan
        return a

    policy = _FaultyPolicy(one_row)
    mon = _quiet_monitor(checkpoint, policy=policy)
    rng = np.random.default_rng(1)
    mon.reset()
    mon.step(good_obs(rng, 3))
    policy.armed = True
    obs = good_obs(rng, 3)
    action, risk = mon.step(obs)
    assert action.shape == (3, 4) and np.isfinite(action).all()
    assert risk.failsafe.tolist() == [False, True, False]
    np.testing.assert_array_equal(action[1, :3], 0.0)
    assert np.isfinite(risk.probability[[0, 2]]).all()


def test_2_a_wrong_width_action_of_a_batch_holds_every_environment(checkpoint: Path) -> None:
    policy = _FaultyPolicy(lambda a: np.zeros((2, 7), np.float32))
    mon = _quiet_monitor(checkpoint, policy=policy)
    mon.reset()
    policy.armed = True
    action, risk = mon.step(good_obs(np.random.default_rng(2), 2))
    assert action.shape == (2, 4) and np.isfinite(action).all() and risk.failsafe.all()
    assert "(2, 7)" in str(risk.reason[0]) and "(2, 4)" in str(risk.reason[0])


# --------------------------------------------------------------------------- 3: input shapes
def test_3_wrong_state_shapes_raise_naming_expected_and_received(checkpoint: Path) -> None:
    rng = np.random.default_rng(3)
    mon = _quiet_monitor(checkpoint, policy=_builtin_policy())
    mon.reset()
    cases = [
        ({**good_obs(rng), "state": np.zeros(21, np.float32)}, r"\(22,\).*\(21,\)"),
        ({**good_obs(rng), "state": np.zeros((2, 22), np.float32)}, r"\(22,\).*\(2, 22\)"),
        ({**good_obs(rng, 2), "state": np.zeros((2, 21), np.float32)}, r"\(B, 22\).*\(2, 21\)"),
        ({**good_obs(rng, 2), "state": np.zeros((3, 22), np.float32)}, r"'task' lists 2.*\(3, 22\)"),
        (
            {**good_obs(rng), "image_front": np.zeros((96, 96), np.uint8)},
            r"image_front.*\(H, W, 3\).*\(96, 96\)",
        ),
    ]
    for obs, match in cases:
        with pytest.raises(InvalidInputError, match=match):
            mon.step(obs)
        with pytest.raises(InvalidInputError, match=match):
            mon.observe(obs)
    # nothing was recorded: the next good step is step 0 and not fail-safe
    _, risk = mon.step(good_obs(rng))
    assert not risk.failsafe[0] and risk.step[0] == 0


def test_3_batch_size_change_without_reset_raises(checkpoint: Path) -> None:
    rng = np.random.default_rng(4)
    mon = _quiet_monitor(checkpoint, policy=_builtin_policy())
    mon.reset()
    mon.step(good_obs(rng, 2))
    with pytest.raises(InvalidInputError, match=r"runs 2 environment.*expected \(2, 22\).*reset"):
        mon.step(good_obs(rng, 3))
    sig = _quiet_monitor(checkpoint)
    sig.observe_signals(np.zeros((2, 12)))
    with pytest.raises(InvalidInputError, match=r"expected \(2, 12\)"):
        sig.observe_signals(np.zeros((3, 12)))


def test_3_wrong_signal_and_action_shapes_raise(checkpoint: Path) -> None:
    mon = _quiet_monitor(checkpoint)
    with pytest.raises(InvalidInputError, match=r"\(12,\) or \(B, 12\), got \(11,\)"):
        mon.observe_signals(np.zeros(11))
    with pytest.raises(InvalidInputError, match=r"valid.*\(12,\), got \(5,\)"):
        mon.observe_signals(np.zeros(12), np.ones(5, bool))
    policy = _builtin_policy()
    mon = _quiet_monitor(checkpoint, policy=policy)
    mon.reset()
    obs = good_obs(np.random.default_rng(5))
    policy.act(obs)
    with pytest.raises(InvalidInputError, match=r"executed action must have shape \(4,\).*got \(3,\)"):
        mon.observe(obs, np.zeros(3, np.float32))


def test_3_faults_stay_failsafe_and_are_not_called_internal_errors(checkpoint: Path) -> None:
    mon = _quiet_monitor(checkpoint, policy=_builtin_policy())
    mon.reset()
    _, risk = mon.step(None)  # type: ignore[arg-type]
    assert risk.failsafe.all() and "internal error" not in str(risk.reason[0])
    lone = _quiet_monitor(checkpoint)
    risk = lone.observe_signals("not signals")
    assert risk.failsafe.all() and "not numbers" in str(risk.reason[0])
    risk = lone.observe_signals(np.full(12, np.nan), np.ones(12, bool))  # a run-time fault
    assert risk.failsafe.all()


def test_3_a_single_observation_without_task_is_read_as_one_environment(checkpoint: Path) -> None:
    """It was refused with the self-contradicting "needs 'state' (22,) or (B, 22); got (22,)"."""
    policy = _builtin_policy()
    mon = _quiet_monitor(checkpoint, policy=policy)
    mon.reset()
    obs = good_obs(np.random.default_rng(6))
    policy.act(obs)
    del obs["task"]
    risk = mon.observe(obs)
    assert not risk.failsafe[0], risk.reason
    assert risk.probability.shape[0] == 1 and np.isfinite(risk.probability).all()


# --------------------------------------------------------------------------- 4: can the band fire
def test_4_the_minimum_calibration_follows_the_conformal_rule() -> None:
    from salus.predictor.conformal import (
        fit_functional_bands,
        min_calibration_scores,
        min_calibration_successes,
    )

    assert [min_calibration_scores(a) for a in (0.2, 0.1, 0.05, 0.01)] == [4, 9, 19, 99]
    rng = np.random.default_rng(0)
    for alpha in (0.2, 0.1, 0.05):
        need = min_calibration_successes(alpha, 0.3)
        for total, finite in ((need - 1, False), (need, True)):
            trajs = [rng.random(12) for _ in range(total)]
            band = fit_functional_bands(trajs, [alpha], fit_fraction=0.3)[alpha]
            assert band.can_fire is finite, (alpha, total, band.n_cal)


def test_4_monitor_load_states_per_alpha_whether_the_band_can_fire(checkpoint: Path) -> None:
    from salus.monitor import Monitor

    with pytest.warns(UserWarning, match=r"never alarms.*cannot fire.*needs >= \d+"):
        mon = Monitor.load(checkpoint, alpha=0.05)
    status = {s["alpha"]: s for s in mon.band_status}
    assert sorted(status) == [0.05, 0.1, 0.2]
    assert not status[0.05]["can_fire"] and status[0.2]["can_fire"]
    assert status[0.05]["n_successes"] < status[0.05]["successes_needed"]
    assert status[0.05]["n_cal_needed"] == 19


@pytest.fixture(scope="module")
def cli_runs(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``salus train``, ``salus evaluate`` and ``salus report`` (text output) on the fixture's dataset,
    whose calibration is too small for alpha 0.05."""
    from salus.cli.main import app

    data = json.loads((checkpoint / "predictor.json").read_text())["dataset"]["source"]
    out = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    common = ["--holdout-task", "stack", "--calib-fraction", "0.3", "--test-fraction", "0.3"]
    train = runner.invoke(
        app, ["train", data, "--model", "salus-mlp", "--out", str(out / "m"), "--epochs", "1", *common]
    )
    assert train.exit_code == 0, train.output
    ev = runner.invoke(app, ["evaluate", str(out / "m"), data, "--out", str(out / "ev")])
    assert ev.exit_code == 0, ev.output
    rep = runner.invoke(app, ["report", str(out / "m"), data, "--out", str(out / "rep"), "--alpha", "0.05"])
    assert rep.exit_code == 0, rep.output
    return {"train": train.output, "evaluate": ev.output, "report": rep.output, "out": out}


def test_4_train_says_which_alphas_can_fire(cli_runs: dict[str, Any]) -> None:
    text = cli_runs["train"]
    assert "conformal band at alpha 0.05: cannot fire" in text, text
    assert "conformal band at alpha 0.2: can fire" in text
    assert "needs >=" in text


def test_4_evaluate_prints_cannot_fire_instead_of_fpr(cli_runs: dict[str, Any]) -> None:
    md = cli_runs["evaluate"]
    section = md.split("## Alarms: one-sided functional band, alpha = 0.05")[1].split("## ")[0]
    assert "**This threshold cannot fire** at alpha 0.05" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "method" not in line]
    assert rows and all("cannot fire" in r and "0.00" not in r for r in rows), rows
    assert (
        "functional band at alpha 0.05: CANNOT FIRE" in md and "functional band at alpha 0.2: can fire" in md
    )
    results = json.loads((cli_runs["out"] / "ev" / "results.json").read_text())
    entry = results["methods"][0]["seen"]["alarms"]["band"]["0.05"]
    assert entry["finite"] is False and entry["successes_needed"] > entry["n_successes"]


def test_4_report_says_the_band_cannot_fire(cli_runs: dict[str, Any]) -> None:
    text = " ".join(cli_runs["report"].split())  # rich wraps long lines
    assert "band at alpha 0.05 cannot fire" in text and "band FPR" not in text, text
    assert "functional band at alpha 0.2: can fire" in text
    page = (cli_runs["out"] / "rep" / "results.md").read_text()
    assert "**This threshold cannot fire** at alpha 0.05" in page
