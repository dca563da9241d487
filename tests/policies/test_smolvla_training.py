"""`salus policy demos --format lerobot` and `salus policy train --arch smolvla`: LeRobot's real classes, offline.

A tiny SmolVLA (VLM width 32, 32-pixel images) is trained for a few steps on two scripted
demonstrations recorded in the simulator; it must load back through LeRobot and through salus, resume
after a SIGKILL to the same weights as an uninterrupted run, and map the simulator's observation only
as its ``salus_mapping.json`` (or the spec's options) says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from the model hub
os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("lerobot", reason="LeRobot extra not installed (make install-lerobot)")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from salus.cli.main import app  # noqa: E402
from salus.errors import CheckpointError, InvalidInputError, InvalidNameError  # noqa: E402
from salus.policies import PolicySpec, load_policy  # noqa: E402
from salus.policies.smolvla import ensure_torchvision_importable  # noqa: E402
from salus.policies.smolvla.configuration_smolvla import MAPPING_FILE  # noqa: E402

# Real dims of the demonstrations: the default state groups (no joint velocities) and the 4-D action.
STATE_INDICES = (*range(0, 7), *range(14, 22))
TRAIN_ARGS = [
    "--steps", "40", "--batch-size", "4", "--hidden-size", "32", "--text-layers", "2", "--vision-layers", "1",
    "--image-size", "32", "--patch-size", "8", "--chunk-size", "4", "--n-action-steps", "2", "--num-steps", "2",
    "--checkpoint-every", "2", "--seed", "3",
]  # fmt: skip


def run_cli(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "lerobot"
    args = ["policy", "demos", "--format", "lerobot", "--tasks", "pick_color", "--demos", "2"]
    run_cli([*args, "--image-size", "32", "--seed", "1", "--out", str(out), "--json"])
    return out


@pytest.fixture(scope="module")
def trained(demos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smolvla") / "policy"
    result = run_cli(["policy", "train", "--arch", "smolvla", "--dataset", str(demos_dir), *TRAIN_ARGS,
                      "--out", str(out), "--json"])  # fmt: skip
    log = json.loads(result.stdout)
    assert log["arch"] == "smolvla" and log["resumed_from_step"] == 0 and log["episodes"] == 2
    assert np.isfinite(log["loss_last"]) and log["train_config"]["steps"] == 40
    return out


def sim_obs(task: str = "pick_color", seed: int = 0) -> dict[str, Any]:
    from salus.sim import make_env

    env = make_env(task, image_size=32)
    obs, _ = env.reset(seed=seed)
    env.close()
    return obs


# -- the LeRobot dataset ---------------------------------------------------------------------------
def test_demos_export_loads_with_lerobots_own_dataset_class(demos_dir: Path) -> None:
    ensure_torchvision_importable()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(
        "salus/demos", root=demos_dir, delta_timestamps={"action": [i / 20 for i in range(4)]}
    )
    assert ds.num_episodes == 2 and ds.fps == 20 and len(ds) > 20
    feats = ds.meta.features
    assert feats["observation.images.front"]["shape"] == (32, 32, 3)
    assert feats["observation.images.wrist"]["dtype"] == "image"
    assert feats["observation.state"]["shape"] == (15,)
    assert (
        feats["observation.state"]["names"][0] == "joint_pos.0"
        and "joint_vel.0" not in feats["observation.state"]["names"]
    )
    assert feats["action"]["names"] == ["dx", "dy", "dz", "gripper"]
    last = ds[len(ds) - 1]  # the final frame: its action chunk runs past the episode's end
    assert last["action"].shape == (4, 4) and last["action_is_pad"].tolist() == [False, True, True, True]
    assert last["observation.images.front"].shape == (3, 32, 32) and last["task"] in (
        "pick up the red cube",
        "pick up the blue cube",
    )
    assert set(ds.meta.stats["action"]) >= {"mean", "std"}
    salus = json.loads((demos_dir / "meta" / "salus.json").read_text())
    assert tuple(salus["state_indices"]) == STATE_INDICES
    assert salus["recording"] == {"tasks": ["pick_color"], "demos_per_task": 2, "seed": 1, "demo_noise": 0.0}
    # the frames are the simulator's: the exported state is the picked entries of a real salus state
    first = ds[0]["observation.state"].numpy()
    np.testing.assert_allclose(first[7], 0.08, atol=0.01)  # gripper opening at the start: wide open


def test_demos_per_task_counts_are_recorded_in_the_dataset(tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["policy", "demos", "--tasks", "pick_color,push", "--demos", "1", "--task-demos", "pick_color=2",
            "--image-size", "32", "--demo-noise", "0.2", "--out", str(out), "--json"]  # fmt: skip
    report = json.loads(run_cli(args).stdout)
    assert report["episodes"] == 3
    salus = json.loads((out / "meta" / "salus.json").read_text())
    assert salus["episodes_per_task"] == {"pick_color": 2, "push": 1}
    assert salus["recording"] == {
        "tasks": ["pick_color", "push"],
        "demos_per_task": {"pick_color": 2, "push": 1},
        "seed": 0,
        "demo_noise": 0.2,
    }


def test_demos_rejects_bad_format_and_state_features(tmp_path: Path) -> None:
    base = ["policy", "demos", "--tasks", "pick_color", "--demos", "1", "--out", str(tmp_path / "d")]
    result = CliRunner().invoke(app, [*base, "--format", "rlds"])
    assert isinstance(result.exception, InvalidNameError) and "lerobot" in str(result.exception)
    result = CliRunner().invoke(app, [*base, "--state-features", "joint_pos,elbow"])
    assert isinstance(result.exception, InvalidNameError) and "ee_quat" in str(result.exception)
    assert not (tmp_path / "d").exists()


# -- training and loading back -----------------------------------------------------------------------
def test_trained_checkpoint_loads_through_lerobot_and_salus(trained: Path) -> None:
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
            "vlm", MAPPING_FILE, "train_log.json"} <= names  # fmt: skip
    assert "checkpoints" not in names  # removed once the run finished
    ensure_torchvision_importable()
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(trained)
    assert policy.config.input_features["observation.state"].shape == (15,)
    assert (policy.config.chunk_size, policy.config.n_action_steps, policy.config.num_steps) == (4, 2, 2)
    assert not policy.config.train_expert_only and not policy.config.freeze_vision_encoder
    saved, loaded = load_file(str(trained / "model.safetensors")), policy.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in saved.items())

    adapter = load_policy(f"smolvla:{trained}", seed=0)
    assert adapter.config.state_indices == STATE_INDICES  # type: ignore[attr-defined]  # from salus_mapping.json
    assert adapter.n_action_steps == 2 and adapter.action_dim == 4
    adapter.reset()
    obs = sim_obs()
    action = adapter.act(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1.0)
    assert adapter.last_internals is not None and adapter.last_internals.obs_embedding.shape == (1, 32)


def test_masked_loss_counts_only_real_action_dims_and_unpadded_positions(trained: Path) -> None:
    """lerobot#1707: SmolVLAPolicy.forward ignores action_is_pad and averages over 32 padded dims."""
    from lerobot.processor import PolicyProcessorPipeline

    from salus.policies.smolvla.training import masked_flow_loss

    ensure_torchvision_importable()
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy.from_pretrained(trained)
    pre = PolicyProcessorPipeline.from_pretrained(trained, config_filename="policy_preprocessor.json")
    rng = np.random.default_rng(0)
    raw = {
        "observation.images.front": torch.rand(3, 3, 32, 32),
        "observation.images.wrist": torch.rand(3, 3, 32, 32),
        "observation.state": torch.from_numpy(rng.normal(size=(3, 15)).astype(np.float32)),
        "action": torch.from_numpy(rng.normal(size=(3, 4, 4)).astype(np.float32)),
        "task": ["pick up the red cube"] * 3,
    }
    batch = pre(raw)
    pad = torch.tensor([[False] * 4, [False, False, True, True], [False, True, True, True]])

    def lerobot_losses(gen_seed: int) -> torch.Tensor:  # the same noise and time as masked_flow_loss draws
        g = torch.Generator().manual_seed(gen_seed)
        noise = torch.randn((3, 4, 32), generator=g)
        t = torch.rand(3, generator=g).pow(1 / 1.5) * 0.999 + 0.001
        imgs, masks = policy.prepare_images(batch)
        return policy.model.forward(imgs, masks, batch["observation.language.tokens"],
                                    batch["observation.language.attention_mask"], policy.prepare_state(batch),
                                    policy.prepare_action(batch), noise, t)  # fmt: skip

    with torch.no_grad():
        ours = masked_flow_loss(policy, batch, pad, torch.Generator().manual_seed(7))
        losses = lerobot_losses(7)  # (3, 4, 32)
    keep = ~pad
    expected = losses[..., :4][keep].mean()
    torch.testing.assert_close(ours, expected)
    assert not torch.isclose(ours, losses.mean())  # what LeRobot's forward() would have returned


def test_resume_after_kill_gives_the_uninterrupted_weights(
    demos_dir: Path, trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "salus.cli.main", "policy", "train", "--arch", "smolvla",
           "--dataset", str(demos_dir), *TRAIN_ARGS, "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "last.json"
    deadline = time.monotonic() + 240
    try:
        while not pointer.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pointer.is_file(), "no checkpoint was written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "train_log.json").exists(), "the run finished before it was killed"
    step = json.loads(pointer.read_text())["step"]
    assert 2 <= step < 40

    result = run_cli(["policy", "train", "--arch", "smolvla", "--dataset", str(demos_dir), *TRAIN_ARGS,
                      "--out", str(out), "--json"])  # fmt: skip
    log = json.loads(result.stdout)
    assert log["resumed_from_step"] >= step
    resumed = load_file(str(out / "model.safetensors"))
    reference = load_file(str(trained / "model.safetensors"))
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert log["loss_last"] == json.loads((trained / "train_log.json").read_text())["loss_last"]


def test_resume_with_other_options_is_an_error(demos_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    from salus.policies.smolvla.lerobot_dataset import read_lerobot_dataset
    from salus.policies.smolvla.training import SmolVLATrainConfig, train_smolvla

    data = read_lerobot_dataset(demos_dir)
    small = dict(hidden_size=32, text_layers=1, vision_layers=1, image_size=32, patch_size=8, chunk_size=4,
                 n_action_steps=2, num_steps=2, batch_size=2, checkpoint_every=1)  # fmt: skip

    def stop(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_smolvla(data, out, SmolVLATrainConfig(steps=4, **small), progress=stop)
    with pytest.raises(CheckpointError, match="another training config"):
        train_smolvla(data, out, SmolVLATrainConfig(steps=4, lr=1e-3, **small))
    log = train_smolvla(data, out, SmolVLATrainConfig(steps=4, **small))
    assert log["resumed_from_step"] == 2
    with pytest.raises(InvalidInputError, match="already holds a trained policy"):
        train_smolvla(data, out, SmolVLATrainConfig(steps=4, **small))


def test_resume_checks_the_dataset(demos_dir: Path, tmp_path: Path) -> None:
    """Another dataset is refused; same-shaped data with other content (re-recorded) continues, recorded."""
    import dataclasses

    from salus.policies.smolvla.lerobot_dataset import read_lerobot_dataset
    from salus.policies.smolvla.training import SmolVLATrainConfig, train_smolvla

    data = read_lerobot_dataset(demos_dir)
    config = SmolVLATrainConfig(hidden_size=32, text_layers=1, vision_layers=1, image_size=32, patch_size=8,
                                chunk_size=4, n_action_steps=2, num_steps=2, batch_size=2, checkpoint_every=1,
                                steps=4)  # fmt: skip

    def stop(step: int, total: int, loss: float) -> None:
        if step == 2:
            raise KeyboardInterrupt

    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        train_smolvla(data, out, config, progress=stop)
    first = data.episode_ends[0]
    fewer = dataclasses.replace(
        data, images={k: v[:first] for k, v in data.images.items()}, state=data.state[:first],
        action=data.action[:first], frame_task=data.frame_task[:first], episode_ends=data.episode_ends[:1],
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="another dataset.*frames"):
        train_smolvla(fewer, out, config)
    action = data.action.copy()
    action[0, 0] = np.nextafter(action[0, 0], np.float32(np.inf))  # one float, last bit
    log = train_smolvla(dataclasses.replace(data, action=action), out, config)
    assert log["resumed_from_step"] == 2
    assert [c["step"] for c in log["data_changes"]] == [2]
    assert log["data"]["sha256"] == log["data_changes"][0]["sha256"] != data.fingerprint()["sha256"]


def test_train_reuses_its_demonstrations_only_when_recorded_alike(demos_dir: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "p"
    shutil.copytree(demos_dir, out / "demos")  # as a killed run would have left them
    small = ["--steps", "2", "--batch-size", "2", "--hidden-size", "32", "--text-layers", "1", "--vision-layers",
             "1", "--image-size", "32", "--patch-size", "8", "--chunk-size", "4", "--n-action-steps", "2"]  # fmt: skip
    base = [
        "policy",
        "train",
        "--arch",
        "smolvla",
        "--tasks",
        "pick_color",
        "--demos",
        "2",
        *small,
        "--out",
        str(out),
    ]
    other = CliRunner().invoke(app, [*base, "--seed", "2"])
    assert isinstance(other.exception, InvalidInputError) and "was recorded with" in str(other.exception)
    log = json.loads(run_cli([*base, "--seed", "1", "--json"]).stdout)
    assert (
        log["record_seconds"] == 0.0
        and log["dataset"] == str(out / "demos")
        and log["tasks"] == ["pick_color"]
    )


def test_init_from_continues_a_finished_run_and_refuses_another_shape(
    demos_dir: Path, trained: Path, tmp_path: Path
) -> None:
    """--init-from: the weights of a finished run start a new one (fresh optimiser and schedule)."""
    args = ["policy", "train", "--arch", "smolvla", "--dataset", str(demos_dir), *TRAIN_ARGS]
    args[args.index("--steps") + 1] = "4"
    args[args.index("--seed") + 1] = "4"  # another seed: a fresh start would not be near `trained`
    out = tmp_path / "longer"
    log = json.loads(run_cli([*args, "--init-from", str(trained), "--out", str(out), "--json"]).stdout)
    assert log["init_from"] == {"path": str(trained), "steps": 40, "total_steps": 40}
    before, after = load_file(str(trained / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on ...
    change = sum(float((after[k] - before[k]).norm() ** 2) for k in before) ** 0.5
    size = sum(float(before[k].norm() ** 2) for k in before) ** 0.5
    assert change < 0.05 * size  # ... from the trained weights (a fresh start is ~100% away)
    assert load_policy(f"smolvla:{out}", seed=0).act(sim_obs()).shape == (4,)
    other = list(args)
    other[other.index("--hidden-size") + 1] = "48"
    result = CliRunner().invoke(app, [*other, "--init-from", str(trained), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, InvalidInputError) and "hidden_size" in str(result.exception)
    result = CliRunner().invoke(app, [*args, "--init-from", str(demos_dir), "--out", str(tmp_path / "o2")])
    assert isinstance(result.exception, InvalidInputError) and "not a finished" in str(result.exception)


def test_package_makes_a_folder_that_loads_from_anywhere(trained: Path, tmp_path: Path) -> None:
    """`salus policy package`: how the shipped weights are made; no path of the training machine."""
    import shutil

    staged = tmp_path / "staged"
    shutil.copytree(trained, staged)
    run_cli(["policy", "package", str(staged), "--out", str(tmp_path / "pkg")])
    moved = tmp_path / "elsewhere" / "weights"
    moved.parent.mkdir()
    (tmp_path / "pkg").rename(moved)
    shutil.rmtree(staged)  # the training folder (and its vlm/) is gone
    assert json.loads((moved / "config.json").read_text())["vlm_model_name"] == "vlm"
    assert str(tmp_path) not in (moved / "policy_preprocessor.json").read_text()
    adapter = load_policy(f"smolvla:{moved}", seed=0)
    assert adapter.act(sim_obs()).shape == (4,)
    result = CliRunner().invoke(
        app, ["policy", "package", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]
    )
    assert isinstance(result.exception, InvalidInputError) and "config.json" in str(result.exception)


def test_builtin_rejects_smolvla_only_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["policy", "train", "--out", str(tmp_path), "--hidden-size", "64"])
    assert isinstance(result.exception, InvalidInputError) and "--hidden-size" in str(result.exception)
    result = CliRunner().invoke(app, ["policy", "train", "--out", str(tmp_path), "--arch", "act"])
    assert isinstance(result.exception, InvalidNameError) and "smolvla" in str(result.exception)


# -- spec options and the mapping file -----------------------------------------------------------------
def _parts(spec: str) -> tuple[str, str | None, dict]:
    parsed = PolicySpec.parse(spec)
    assert str(parsed) == spec  # the text it came from
    return parsed.name, parsed.path, dict(parsed.options)


def test_policy_spec_options() -> None:
    assert _parts("builtin") == ("builtin", None, {})
    assert _parts("smolvla:/a/b?state_indices=0-6,14-21&n_action_steps=4&action_clip=none") == (
        "smolvla",
        "/a/b",
        {"state_indices": STATE_INDICES, "n_action_steps": 4, "action_clip": None},
    )
    name, path, opts = _parts("smolvla:D?image_keys=image_front:observation.images.top&device=cuda:0")
    assert opts == {"image_keys": "image_front:observation.images.top", "device": "cuda:0"}
    assert _parts("smolvla:D?action_indices=0+1+2+5")[2] == {"action_indices": (0, 1, 2, 5)}
    assert _parts("builtin?seed=3") == ("builtin", None, {"seed": 3})
    ensemble = PolicySpec.parse("ensemble:smolvla:A?state_indices=1+2,builtin")
    assert (ensemble.name, ensemble.path, dict(ensemble.options)) == (
        "ensemble",
        "smolvla:A?state_indices=1+2,builtin",
        {},
    )
    assert [(m.name, m.path, dict(m.options)) for m in ensemble.members] == [
        ("smolvla", "A", {"state_indices": (1, 2)}), ("builtin", None, {})
    ]  # fmt: skip
    assert PolicySpec.parse(ensemble) is ensemble and PolicySpec.parse("builtin").members == ()
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        PolicySpec.parse("smolvla:D?state_indices")
    with pytest.raises(InvalidInputError, match="twice"):
        PolicySpec.parse("smolvla:D?seed=1&seed=2")
    with pytest.raises(InvalidNameError, match="valid policies"):
        PolicySpec.parse("")


def test_policy_spec_weights_dir_check_and_load(tmp_path: Path) -> None:
    from salus.policies import packaged_weights_dir

    assert PolicySpec.parse("builtin").weights_dir == packaged_weights_dir("builtin")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert PolicySpec.parse(f"smolvla:{tmp_path}?n_action_steps=2").weights_dir == tmp_path
    assert PolicySpec.parse(f"smolvla:{tmp_path / 'model.safetensors'}").weights_dir == tmp_path
    assert PolicySpec.parse("python:x.py:make").weights_dir is None
    assert PolicySpec.parse("ensemble:builtin,builtin").weights_dir is None
    with pytest.raises(InvalidInputError, match="lists no member"):
        PolicySpec.parse("ensemble:").check()
    (tmp_path / "factory.py").write_text("make = 3\n")
    spec = PolicySpec.parse(f"python:{tmp_path / 'factory.py'}:make")
    assert spec.check() is spec  # the factory is not resolved without factories=True
    with pytest.raises(InvalidInputError, match="not callable"):
        PolicySpec.parse(f"ensemble:builtin,python:{tmp_path / 'factory.py'}:make").check(factories=True)
    with pytest.raises(InvalidInputError, match="both in the spec"):
        PolicySpec.parse("builtin?seed=1").load(seed=2)


def test_signal_stats_path_ignores_spec_options(tmp_path: Path) -> None:
    from salus.signals import signal_stats_path

    assert signal_stats_path(f"smolvla:{tmp_path}?state_indices=0-6") == tmp_path / "extractor_stats"


def test_spec_options_override_the_mapping_file(trained: Path) -> None:
    obs = sim_obs()
    with pytest.raises(
        InvalidInputError, match="the policy's state has 15 entries but the observation gives 22"
    ):
        policy = load_policy(f"smolvla:{trained}?state_indices=none")
        policy.act(obs)
    policy = load_policy(f"smolvla:{trained}?n_action_steps=1&action_clip=0.5")
    assert policy.n_action_steps == 1 and policy.config.state_indices == STATE_INDICES  # type: ignore[attr-defined]
    assert np.all(np.abs(policy.act(obs)) <= 0.5)
    with pytest.raises(InvalidInputError, match="given both in the spec"):
        load_policy(f"smolvla:{trained}?seed=1", seed=2)
    with pytest.raises(InvalidNameError, match="state_indices"):
        load_policy(f"smolvla:{trained}?stat_indices=0-14")


def test_a_camera_the_mapping_does_not_provide_is_an_error(trained: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"observation\.images\.wrist") as err:
        load_policy(f"smolvla:{trained}?image_keys=image_front:observation.images.front")
    assert "empty_cameras=0" in str(err.value)
    # both cameras from the front image: allowed (the mapping is explicit)
    policy = load_policy(
        f"smolvla:{trained}?image_keys=image_front:observation.images.front+image_wrist:observation.images.wrist"
    )
    assert policy.act(sim_obs()).shape == (4,)


def test_a_bad_mapping_file_is_a_checkpoint_error(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / MAPPING_FILE).write_text(json.dumps({"state_indices": ["a"]}))
    with pytest.raises(CheckpointError, match="state_indices"):
        load_policy(f"smolvla:{copy}")
    (copy / MAPPING_FILE).write_text(json.dumps({"state_idx": [1]}))
    with pytest.raises(InvalidNameError, match="image_keys"):
        load_policy(f"smolvla:{copy}")
    (copy / MAPPING_FILE).unlink()  # no mapping: the whole 22-D state, which this checkpoint does not take
    with pytest.raises(InvalidInputError, match="salus_mapping.json"):
        load_policy(f"smolvla:{copy}").act(sim_obs())


def test_collect_warns_without_fitted_signal_statistics(trained: Path, tmp_path: Path) -> None:
    args = ["collect", "--policy", f"smolvla:{trained}", "--episodes", "1", "--max-steps", "2", "--samples", "1",
            "--tasks", "pick_color", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.zarr")])
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert (
        "no fitted signal statistics" in stderr
        and f"salus signals fit --policy 'smolvla:{trained}'" in stderr
    )
    quiet = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.zarr"), "--signal-stats", "none"])
    assert quiet.exit_code == 0, quiet.output
    assert "no fitted signal statistics" not in quiet.stderr
