"""Collection with the real simulator, the real built-in policy, real zarr and a real (local) Ray:
episode planning, backend independence, Ctrl-C / SIGKILL and resume, locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from salus.collect import CollectConfig, PerturbationMix, parse_perturb_arg, plan_episode
from salus.collect.collector import collect
from salus.data import DatasetWriter, SalusDataset, check_dataset
from salus.errors import DatasetError, InvalidInputError, InvalidNameError

EPISODES, MAX_STEPS, SEED = 6, 20, 3


def config(policy_spec: str, **kw) -> CollectConfig:
    return CollectConfig(
        **{"policy": policy_spec, "episodes": EPISODES, "max_steps": MAX_STEPS, "seed": SEED, **kw}
    )


def assert_same_dataset(a: Path, b: Path) -> None:
    A, B = SalusDataset(a), SalusDataset(b)
    assert (A.num_episodes, A.num_steps) == (B.num_episodes, B.num_steps)
    assert A.keys == B.keys
    for key in A.keys:
        np.testing.assert_array_equal(A.steps(key), B.steps(key), err_msg=key)
    for name in A._meta:
        np.testing.assert_array_equal(A._meta[name], B._meta[name], err_msg=name)


@pytest.fixture(scope="module")
def reference(policy_spec, tmp_path_factory) -> Path:
    """An uninterrupted serial collection."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    result = collect(config(policy_spec), path)
    assert result.episodes == EPISODES and not result.interrupted and result.backend == "serial"
    return path


# --------------------------------------------------------------------------- planning
def test_episode_plan_is_a_pure_function_of_seed_and_index():
    mix = PerturbationMix.default(["push", "mass"])
    tasks = ("pick_place", "push", "stack")
    a = [plan_episode(i, 7, tasks, mix) for i in range(400)]
    assert a == [plan_episode(i, 7, tasks, mix) for i in range(400)]
    assert a[5] != plan_episode(5, 8, tasks, mix)
    assert [s.task for s in a[:4]] == ["pick_place", "push", "stack", "pick_place"]
    assert len({s.seed for s in a}) == 400
    unperturbed = sum(not s.perturbations for s in a) / len(a)
    assert 0.3 < unperturbed < 0.5
    strengths = [p[1] for s in a for p in s.perturbations]
    assert all(len(s.perturbations) <= 1 for s in a) and min(strengths) >= 0.25 and max(strengths) <= 1.0
    fixed = PerturbationMix.fixed([("push", 0.5)])
    assert plan_episode(3, 0, tasks, fixed).perturbations == (("push", 0.5),)
    mix2 = PerturbationMix.from_obj([{"weight": 1, "perturb": {"push": [0.2, 0.4], "mass": 1.0}}])
    assert PerturbationMix.from_obj(mix2.to_obj()) == mix2
    p = dict(plan_episode(0, 0, tasks, mix2).perturbations)
    assert 0.2 <= p["push"] <= 0.4 and p["mass"] == 1.0


def test_bad_collection_settings_are_named():
    assert parse_perturb_arg("push=0.5") == ("push", 0.5)
    for bad in ("push", "push=2", "push=x", "=0.3"):
        with pytest.raises(InvalidInputError):
            parse_perturb_arg(bad)
    with pytest.raises(InvalidNameError, match="perturbation"):
        CollectConfig(mix=PerturbationMix.fixed([("wobble", 0.5)]))
    with pytest.raises(InvalidNameError, match="task"):
        CollectConfig(tasks=("juggle",))
    with pytest.raises(InvalidInputError, match="episodes"):
        CollectConfig(episodes=0)
    with pytest.raises(InvalidInputError, match="JSON list"):
        PerturbationMix.from_obj({"push": 1})


def test_ray_flag_takes_an_optional_address():
    from salus.cli.collect import normalize_ray_argv

    assert normalize_ray_argv(["salus", "collect", "--ray"]) == ["salus", "collect", "--ray=local"]
    assert normalize_ray_argv(["collect", "--ray", "--workers", "2"]) == [
        "collect",
        "--ray=local",
        "--workers",
        "2",
    ]
    assert normalize_ray_argv(["collect", "--ray", "10.0.0.1:6379"]) == ["collect", "--ray", "10.0.0.1:6379"]


def test_pending_episodes_round_trip_without_pickles(tmp_path):
    from salus.collect.collector import load_pending, save_pending
    from salus.data import EpisodeRecord

    steps = {"action": np.ones((5, 4), np.float32), "signal_valid": np.zeros((5, 12), bool)}
    rec = EpisodeRecord(steps, False, 3, "drop", "push", 42, [("push", 0.5)], episode_index=7)
    save_pending(tmp_path, rec, "abc")
    save_pending(tmp_path, EpisodeRecord(steps, True, -1, "none", "push", 1, [], episode_index=2), "abc")
    save_pending(tmp_path, EpisodeRecord(steps, True, -1, "none", "push", 1, [], episode_index=8), "other")
    got = load_pending(tmp_path, "abc", start=5, stop=10)
    assert list(got) == [7]
    r = got[7]
    assert (r.failure_step, r.failure_type, r.seed, r.episode_index) == (3, "drop", 42, 7)
    assert r.perturbations == [{"name": "push", "strength": 0.5, "params": {}}]
    np.testing.assert_array_equal(r.steps["action"], steps["action"])
    # Episodes below the resume point and those of other settings are discarded.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_000000007.npz"]


# --------------------------------------------------------------------------- backends
def test_reference_dataset_is_complete_and_labelled(reference):
    ds = SalusDataset(reference)
    assert ds.num_episodes == EPISODES and check_dataset(reference).ok
    assert set(ds.keys) >= {"signals", "signal_valid", "baselines", "action", "state", "obs_embedding"}
    assert ds.attrs["signal_names"] and len(ds.attrs["signal_names"]) == 12
    assert ds.attrs["collect"]["episodes"] == EPISODES and ds.attrs["policy"]["spec"]
    assert ds.attrs["collect_seconds"] > 0  # the wall time of the runs that collected
    assert ds.state("extractor")["format_version"] == 1
    assert ds.steps("obs_embedding").dtype == np.float16 and ds.steps("signals").shape[1] == 12
    mix = PerturbationMix.default(__import__("salus.sim", fromlist=["x"]).PERTURBATION_NAMES)
    specs = [plan_episode(i, SEED, ds.attrs["env"]["tasks"], mix) for i in range(EPISODES)]
    assert ds.seed.tolist() == [s.seed for s in specs]
    assert ds.task.tolist() == [s.task for s in specs]
    assert [[p["name"] for p in ep] for ep in ds.perturbations] == [
        [n for n, _ in s.perturbations] for s in specs
    ]
    assert np.all(ds.lengths <= MAX_STEPS)
    fs = ds.failure_step
    assert np.all((fs == -1) == ds.success) and np.all(fs < ds.lengths)


def test_a_reused_simulator_gives_the_same_episode(policy_spec):
    """Workers reuse one simulator per task for unperturbed episodes: an episode must not depend
    on what ran on that simulator before."""
    from salus.collect.worker import EpisodeWorker

    cfg = config(policy_spec, mix=PerturbationMix.fixed([]))
    tasks = cfg.task_list
    a, b = plan_episode(0, SEED, tasks, cfg.mix), plan_episode(len(tasks), SEED, tasks, cfg.mix)
    assert a.task == b.task and a.seed != b.seed
    worker = EpisodeWorker(cfg)
    try:
        fresh = worker.run(b)  # on a new simulator, which is then kept
        worker.run(a)
        reused = worker.run(b)
        assert set(worker._envs) == {b.task}
    finally:
        worker.close()
    assert (fresh.success, fresh.failure_step, fresh.failure_type) == (
        reused.success,
        reused.failure_step,
        reused.failure_type,
    )
    assert fresh.steps.keys() == reused.steps.keys()
    for key in fresh.steps:
        np.testing.assert_array_equal(fresh.steps[key], reused.steps[key], err_msg=key)


# Worker count, backend and lockstep batch size leave every stored bit as the serial B = 1 run
# (three tests, so that the parallel suite runs them on different workers).
def test_same_dataset_in_lockstep(reference, policy_spec, tmp_path):
    out = tmp_path / "lockstep.zarr"
    result = collect(config(policy_spec), out, batch_size=4)
    assert result.backend == "serial" and result.episodes == EPISODES
    assert_same_dataset(reference, out)


def test_same_dataset_from_worker_processes(reference, policy_spec, tmp_path):
    out = tmp_path / "procs.zarr"
    result = collect(config(policy_spec), out, workers=2, batch_size=2)
    assert result.backend == "processes" and result.episodes == EPISODES
    assert_same_dataset(reference, out)


def test_same_dataset_from_ray(reference, policy_spec, tmp_path):
    pytest.importorskip("ray")
    out_ray = tmp_path / "ray.zarr"
    result = collect(config(policy_spec), out_ray, workers=2, use_ray=True, batch_size=3)
    assert result.backend == "ray" and result.episodes == EPISODES
    assert_same_dataset(reference, out_ray)


def test_lockstep_slots_refill_at_chunk_boundaries_with_the_single_run_records(policy_spec):
    """Episodes of different lengths streamed through 2 slots: each slot takes the next episode at
    the next chunk boundary, and every record (signals, baselines, internals) has the bits of the
    episode run alone (the policy computes in fixed-size passes)."""
    from salus.collect.runner import EpisodeJob, run_episodes
    from salus.collect.worker import build_extractor
    from salus.policies import load_policy
    from salus.signals import OnlineBaselines, SignalExtractor
    from salus.sim import make_env

    cfg = config(policy_spec)
    policy = load_policy(policy_spec, num_samples=cfg.num_samples)
    policy.set_compute_batch(cfg.compute_batch)
    fitted = build_extractor(cfg)
    limits = [3, 11, 6, 9, 5]
    tasks = ["pick_place", "push", "stack", "pick_color", "push"]

    def run(b: int) -> dict[int, object]:
        envs = [make_env(t, max_steps=m) for t, m in zip(tasks, limits, strict=True)]
        jobs = iter(
            [EpisodeJob(e, 40 + i, m, tag=i) for i, (e, m) in enumerate(zip(envs, limits, strict=True))]
        )
        out: dict[int, object] = {}
        ex = SignalExtractor(b, fitted.config)
        ex.load_state_dict(fitted.state_dict())
        run_episodes(
            lambda slot: next(jobs),
            policy,
            ex,
            OnlineBaselines(b),
            lambda job, rec: out.__setitem__(job.tag, rec),
            batch_size=b,
        )
        for e in envs:
            e.close()
        return out

    single, paired = run(1), run(2)
    assert sorted(paired) == list(range(5))
    for i in range(5):
        a, b = single[i], paired[i]
        assert a.length == b.length == limits[i] and a.seed == b.seed == 40 + i
        assert a.steps.keys() == b.steps.keys()
        for key in a.steps:
            np.testing.assert_array_equal(a.steps[key], b.steps[key], err_msg=f"episode {i} {key}")


# --------------------------------------------------------------------------- interruption
def _committed(path: Path) -> int:
    try:
        return int(json.loads((path / "zarr.json").read_text())["attributes"]["salus_committed_episodes"])
    except (OSError, ValueError, KeyError):
        return 0


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def _wait_for_commit(proc: subprocess.Popen, path: Path, more_than: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _committed(path)
        if n > more_than:
            return n
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"collector exited early (rc {proc.returncode}): {err[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no episode was committed in time")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def test_ctrl_c_and_sigkill_then_resume_gives_the_uninterrupted_dataset(reference, policy_spec, tmp_path):
    out = tmp_path / "killed.zarr"
    cmd = [
        sys.executable,
        "-m",
        "salus.cli.main",
        "collect",
        "--policy",
        policy_spec,
        "--episodes",
        str(EPISODES),
    ]
    cmd += ["--max-steps", str(MAX_STEPS), "--seed", str(SEED), "--workers", "2", "--out", str(out)]

    # 1. Ctrl-C (SIGINT to the whole process group, as a terminal sends it): clean stop.
    proc = _start(cmd)
    _wait_for_commit(proc, out, 0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    first = _committed(out)
    print(f"after Ctrl-C: {first} episodes")
    if first < EPISODES:  # it may legitimately finish before the signal lands
        assert proc.returncode == 130, err[-2000:]
        assert "resume" in err
    assert not (tmp_path / "killed.zarr.lock").exists()
    assert check_dataset(out).ok

    # 2. SIGKILL of the collector alone, right after a commit: its workers must exit by themselves.
    proc = _start(cmd)
    if first < EPISODES:
        _wait_for_commit(proc, out, first)
        kids = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        ds = SalusDataset(out)
        print(
            f"after SIGKILL: {ds.num_episodes} episodes, pending {list((tmp_path / 'killed.zarr.pending').glob('*'))}"
        )
        assert first <= ds.num_episodes <= EPISODES
        assert check_dataset(out).ok
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
            time.sleep(0.2)
        alive = [k for k in kids if Path(f"/proc/{k}").exists()]
        for k in alive:  # do not leak them if the assertion below fails
            os.kill(k, signal.SIGKILL)
        assert not alive, "worker processes outlived a killed collector"
        # 3. The same command again: resumes and completes.
        proc = _start(cmd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert_same_dataset(reference, out)
    assert not (tmp_path / "killed.zarr.pending").exists() and not (tmp_path / "killed.zarr.lock").exists()


def test_resume_commits_spilled_episodes_instead_of_rerunning_them(reference, policy_spec, tmp_path):
    """An episode finished out of order by a killed run (spilled to DATA.zarr.pending) is committed
    in its turn, not run again: mark it and find the mark in the dataset."""
    from salus.collect.collector import resolve_signal_stats, save_pending

    cfg = resolve_signal_stats(config(policy_spec))  # as collect() sees it
    spilled = SalusDataset(reference).episode(4)
    spilled.steps["state"][0, 0] = 123.0  # the mark
    out = tmp_path / "resumed.zarr"
    save_pending(tmp_path / "resumed.zarr.pending", spilled, cfg.spec_hash())
    result = collect(cfg, out)
    assert result.episodes == EPISODES and result.new_episodes == EPISODES
    ds = SalusDataset(out)
    assert ds.episode(4).steps["state"][0, 0] == 123.0
    assert ds.seed.tolist() == SalusDataset(reference).seed.tolist()
    assert not (tmp_path / "resumed.zarr.pending").exists()


def test_signal_statistics_beside_the_weights_are_used_and_stored(policy_spec, tmp_path):
    import shutil

    from salus.policies.builtin.adapter import DEFAULT_WEIGHTS_DIR
    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.signals import SignalExtractor

    src = DEFAULT_WEIGHTS_DIR if policy_spec == "builtin" else Path(policy_spec.split(":", 1)[1])
    weights = tmp_path / "weights"
    shutil.copytree(src, weights)
    cfg = BuiltinConfig.load(weights)
    rng = np.random.default_rng(0)
    fitted = SignalExtractor(1).fit(
        rng.normal(size=(300, cfg.embed_dim)), rng.normal(size=(20, 4, cfg.chunk_size, 4)) * 0.1
    )
    fitted.save(weights / "extractor_stats")
    out = tmp_path / "fitted.zarr"
    collect(CollectConfig(policy=f"builtin:{weights}", episodes=1, max_steps=12), out)
    ds = SalusDataset(out)
    assert ds.attrs["extractor"]["fitted"] is True
    assert ds.attrs["collect"]["signal_stats"] == str((weights / "extractor_stats").resolve())
    ood = ds.signal_names.index("ood_distance")
    assert ds.steps("signal_valid")[:, ood].all()
    restored = SignalExtractor(1)
    restored.load_state_dict(ds.state("extractor"))
    assert restored.fitted and restored.cluster_radius == pytest.approx(fitted.cluster_radius)
    # "none" collects without them.
    collect(
        CollectConfig(policy=f"builtin:{weights}", episodes=1, max_steps=12, signal_stats="none"),
        tmp_path / "n.zarr",
    )
    assert not SalusDataset(tmp_path / "n.zarr").steps("signal_valid")[:, ood].any()


def test_lock_resume_settings_and_nothing_to_do(reference, policy_spec, tmp_path):
    # Already complete: the same settings do nothing.
    result = collect(config(policy_spec), reference)
    assert result.new_episodes == 0 and result.episodes == EPISODES
    with pytest.raises(DatasetError, match="different settings.*seed"):
        collect(config(policy_spec, seed=SEED + 1), reference)
    with DatasetWriter(reference), pytest.raises(DatasetError, match="another collector"):
        collect(config(policy_spec), reference)
    assert SalusDataset(reference).num_episodes == EPISODES


def test_dataset_cli(reference, tmp_path):
    from salus.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["dataset", "info", str(reference), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["episodes"] == EPISODES and len(info["signals"]) == 12
    res = runner.invoke(app, ["dataset", "check", str(reference)])
    assert res.exit_code == 0 and "ok" in res.stdout
    (tmp_path / "junk").mkdir()
    res = runner.invoke(app, ["dataset", "check", str(tmp_path / "junk"), "--json"])
    assert res.exit_code == 1 and "not a zarr store" in json.loads(res.stdout)["problems"][0]


def test_resume_accepts_the_same_signal_statistics_at_another_path(tmp_path):
    """The packaged statistics live under each install's own path: a dataset collected from one
    checkout resumes from another when the statistics hold the same bytes, and not otherwise."""
    from salus.collect.collector import same_setting

    for d, payload in (("a", b"x"), ("b", b"x"), ("c", b"y")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "stats.json").write_text("{}")
        (tmp_path / d / "stats.safetensors").write_bytes(payload)
    a, b, c = (str(tmp_path / d / "stats") for d in "abc")
    assert same_setting("signal_stats", a, b)
    assert not same_setting("signal_stats", a, c)  # other statistics
    assert not same_setting("signal_stats", a, str(tmp_path / "missing" / "stats"))
    assert not same_setting("policy", "builtin", "smolvla") and same_setting("policy", "builtin", "builtin")
