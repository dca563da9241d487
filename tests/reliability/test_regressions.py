"""One regression test per numbered defect of the reliability issue (16): each failed before the fix.

1. a missing chunk read as zeros (info/train numbers changed, resume rewrote committed rows);
2. a kill while the dataset was being created bricked it (even for --overwrite);
3. raw library tracebacks (Zstd, JSONDecodeError, SafetensorError) instead of salus errors;
4. checkpoints that loaded but were wrong (normalisation width, signal_names, zero std);
5. the monitor's fail-safe was not sticky right after reset(), and its hold action had shape
   (22, 4) when ``task`` was missing;
6. a --policy typo left an empty dataset behind and said "valid policys".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import zarr

from salus.data import DatasetWriter, SalusDataset, check_dataset, dataset_info
from salus.errors import CheckpointError, DatasetError, SalusError

from .helpers import make_record, same_episode, small_chunks, write_dataset


def _episodes_in_rows(records, lo: int, hi: int) -> list[int]:
    ends = np.cumsum([r.length for r in records])
    starts = ends - np.array([r.length for r in records])
    return [int(i) for i in np.flatnonzero((starts < hi) & (ends > lo))]


def _salus(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "salus.cli.main", *args], capture_output=True, text=True, timeout=300, env=env
    )


# --------------------------------------------------------------------------- defect 1
def test_1_missing_chunk_is_refused_by_readers_resume_check_and_repaired(tmp_path: Path) -> None:
    from salus.predictor import episodes_from_dataset

    path = tmp_path / "d.zarr"
    records = write_dataset(path, 12)
    chunk = path / "data" / "signals" / "c" / "2" / "0"  # steps 32..47 (16-step chunks)
    hit = _episodes_in_rows(records, 32, 48)
    chunk.unlink()
    # Readers: `dataset info` and what `train` / `evaluate` read refuse, naming array, chunk, episodes.
    with pytest.raises(DatasetError, match=r"data/signals chunk 2 \(steps 32\.\.47\) is missing") as exc:
        dataset_info(path)
    assert f"episodes affected: {hit[0]}" in str(exc.value)
    with pytest.raises(DatasetError, match="data/signals chunk 2"):
        episodes_from_dataset(SalusDataset(path))
    ds = SalusDataset(path)
    for i in hit:
        with pytest.raises(DatasetError, match="missing"):
            ds.episode(i)
    clean = [i for i in range(12) if i not in hit]
    for i in clean:  # everything else still reads, exactly
        assert same_episode(ds.episode(i), records[i])
    # Resume never writes into the damaged store (it would have re-created the chunk from zeros).
    with pytest.raises(DatasetError, match="refusing to append.*data/signals chunk 2"):
        DatasetWriter(path)
    assert not chunk.exists()
    # check names it; repair drops exactly those episodes into a new, consistent dataset.
    report = check_dataset(path)
    assert not report.ok and report.damaged_episodes == hit
    assert any("data/signals chunk 2" in p and "missing" in p for p in report.problems)
    from salus.data.repair import repair_dataset

    fixed = tmp_path / "fixed.zarr"
    rep = repair_dataset(path, fixed)
    assert rep.dropped == hit and rep.kept == len(clean)
    assert check_dataset(fixed).ok
    out = SalusDataset(fixed)
    assert out.episode_index.tolist() == clean
    for j, i in enumerate(clean):
        assert same_episode(out.episode(j), records[i])
    assert not chunk.exists()  # the source is never written to


def test_1_cli_info_check_and_repair_on_a_missing_chunk(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    records = write_dataset(path, 6)
    (path / "data" / "signals" / "c" / "1" / "0").unlink()
    hit = _episodes_in_rows(records, 16, 32)
    info = _salus("dataset", "info", str(path))
    assert info.returncode == 2 and "data/signals chunk 1" in info.stderr and "Traceback" not in info.stderr
    check = _salus("dataset", "check", str(path), "--json")
    assert check.returncode == 1 and json.loads(check.stdout)["damaged_episodes"] == hit
    rep = _salus("dataset", "repair", str(path), "--out", str(tmp_path / "new.zarr"), "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["dropped"] == hit
    assert _salus("dataset", "check", str(tmp_path / "new.zarr")).returncode == 0
    again = _salus("dataset", "repair", str(path), "--out", str(path))
    assert again.returncode == 2 and "in place" in again.stderr


# --------------------------------------------------------------------------- defect 2
def _in_child(fn) -> int:
    """Run ``fn`` in a forked child (the real writer, a real process death); its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def die_at_store_write(k: int) -> None:
    """In this (child) process, die like a SIGKILL just before the ``k``-th write to any zarr store."""
    from zarr.storage import LocalStore

    real = LocalStore.set
    count = [0]

    async def set_or_die(self, key, value, *args, **kwargs):  # type: ignore[no-untyped-def]
        if count[0] == k:
            os._exit(9)
        count[0] += 1
        return await real(self, key, value, *args, **kwargs)

    LocalStore.set = set_or_die  # type: ignore[method-assign]


def test_2_a_kill_at_any_write_of_creation_leaves_no_dataset_or_a_valid_one(tmp_path: Path) -> None:
    state = {"extractor": {"format_version": 1, "tensors": {"ood.mean": np.arange(3.0)}}}
    killed = 0
    for k in range(40):  # creation (~15 store writes) and the first append
        path = tmp_path / f"k{k}" / "d.zarr"

        def create_and_append(path: Path = path, k: int = k) -> None:
            die_at_store_write(k)
            with small_chunks(), DatasetWriter(path, {"signal_names": ["a"]}, state=state) as w:
                w.append(make_record(0))

        code = _in_child(create_and_append)
        assert code in (0, 9)
        killed += code == 9
        if path.exists():
            ds = SalusDataset(path)  # never half-created
            assert ds.num_episodes in (0, 1) and ds.attrs["signal_names"] == ["a"]
            if ds.num_episodes:
                assert same_episode(ds.episode(0), make_record(0))
        with DatasetWriter(path, {"signal_names": ["a"]}, state=state) as w:  # the next run just works
            if w.num_episodes == 0:
                w.append(make_record(0))
        assert SalusDataset(path).num_episodes == 1
        assert not (path.parent / "d.zarr.creating").exists()
        with DatasetWriter(path, overwrite=True) as w:
            assert w.num_episodes == 0
    assert killed > 10  # the kills did land inside creation and the append


def test_2_overwrite_and_resume_work_on_a_store_left_half_created(tmp_path: Path) -> None:
    """What salus before atomic creation left after a kill: the root group and empty arrays, no
    format attributes (`collect` refused it, even with --overwrite)."""
    for overwrite in (False, True):
        path = tmp_path / f"half{overwrite}.zarr"
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.create_group("data")
        meta = root.create_group("meta")
        for name in ("episode_index", "success"):
            meta.create_array(name, shape=(0,), chunks=(8,), dtype="i8")
        with DatasetWriter(path, {"signal_names": ["a"]}, overwrite=overwrite) as w:
            assert w.num_episodes == 0
            w.append(make_record(1))
        assert SalusDataset(path).num_episodes == 1
    # A store whose root metadata is garbage: --overwrite replaces it.
    (path / "zarr.json").write_text("{garbage")
    with pytest.raises(DatasetError, match="--overwrite"):
        DatasetWriter(path)
    with DatasetWriter(path, overwrite=True) as w:
        assert w.num_episodes == 0
    # But a foreign zarr store with data is never replaced.
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").create_array("x", shape=(3,), dtype="f4")[:] = 1.0
    with pytest.raises(DatasetError, match="not a salus dataset"):
        DatasetWriter(foreign, overwrite=True)
    assert (foreign / "x").exists()


# --------------------------------------------------------------------------- defect 3
def test_3_truncated_chunk_and_garbage_root_give_salus_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    records = write_dataset(path, 5)
    total = sum(r.length for r in records)
    tail = path / "data" / "signals" / "c" / str(total // 16) / "0"  # the chunk the next append fills
    assert total % 16 and tail.is_file()
    tail.write_bytes(tail.read_bytes()[:10])
    with pytest.raises(
        DatasetError, match=rf"refusing to append.*data/signals chunk {total // 16} .*corrupt"
    ):
        DatasetWriter(path)
    with pytest.raises(DatasetError, match="corrupt"):
        SalusDataset(path).steps("signals")
    (path / "zarr.json").write_text("not json at all")
    for make in (SalusDataset, DatasetWriter, check_dataset):
        try:
            out = make(path)
        except DatasetError as exc:
            assert "zarr.json" in str(exc) and "JSONDecodeError" in str(exc)
        else:
            assert make is check_dataset and not out.ok


def test_3_datasets_without_the_crc32c_codec_still_read_and_are_verified(tmp_path: Path) -> None:
    from unittest import mock

    from zarr.codecs import ZstdCodec

    old = (ZstdCodec(level=3, checksum=True),)
    path = tmp_path / "old.zarr"
    with (
        mock.patch("salus.data.writer.data_compressors", lambda: old),
        mock.patch("salus.data.writer.meta_compressors", lambda: old),
    ):
        records = write_dataset(path, 4)
    assert "crc32c" not in (path / "data" / "state" / "zarr.json").read_text()
    ds = SalusDataset(path)
    assert all(same_episode(ds.episode(i), records[i]) for i in range(4))
    chunk = path / "data" / "state" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    chunk.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="data/state chunk 0"):
        SalusDataset(path).episode(0)
    assert 0 in check_dataset(path).damaged_episodes


@pytest.mark.parametrize("name", ["model.safetensors", "extractor.safetensors"])
@pytest.mark.parametrize("recorded_hash", [True, False])
def test_3_truncated_safetensors_give_checkpoint_errors(
    checkpoint: Path, tmp_path: Path, name: str, recorded_hash: bool
) -> None:
    from salus.monitor import Monitor
    from salus.predictor import TrainedPredictor

    d = tmp_path / "ck"
    shutil.copytree(checkpoint, d)
    if not recorded_hash:  # without the SHA-256 record a checkpoint is refused, naming 'files'
        meta = json.loads((d / "predictor.json").read_text())
        meta.pop("files", None)
        (d / "predictor.json").write_text(json.dumps(meta))
    raw = (d / name).read_bytes()
    (d / name).write_bytes(raw[: len(raw) // 2])
    for load in (TrainedPredictor.load, Monitor.load):
        with pytest.raises(CheckpointError, match=name if recorded_hash else "'files'"):
            load(d)


# --------------------------------------------------------------------------- defect 4
def _mutate(meta: dict, what: str) -> None:
    from salus.signals import SIGNAL_NAMES

    if what == "width":
        meta["normalization"]["mean"] = meta["normalization"]["mean"][:-1]
        meta["normalization"]["std"] = meta["normalization"]["std"][:-1]
    elif what == "reversed_names":
        meta["signal_names"] = list(reversed(SIGNAL_NAMES))
    elif what == "short_names":
        meta["signal_names"] = list(SIGNAL_NAMES)[:-1]
    elif what == "zero_std":
        meta["normalization"]["std"] = [0.0] * len(meta["normalization"]["std"])
    elif what == "nan_mean":
        meta["normalization"]["mean"][3] = None  # how JSON stores a NaN that got in
    elif what == "score_index":
        meta["score_index"] = len(meta["horizons"])


@pytest.mark.parametrize(
    "what", ["width", "reversed_names", "short_names", "zero_std", "nan_mean", "score_index"]
)
def test_4_wrong_checkpoints_are_refused_at_load(checkpoint: Path, tmp_path: Path, what: str) -> None:
    from salus.monitor import Monitor
    from salus.predictor import TrainedPredictor

    d = tmp_path / "ck"
    shutil.copytree(checkpoint, d)
    meta = json.loads((d / "predictor.json").read_text())
    _mutate(meta, what)
    (d / "predictor.json").write_text(json.dumps(meta))
    field = {"reversed_names": "signal_names", "short_names": "signal_names", "score_index": "score_index"}
    for load in (TrainedPredictor.load, Monitor.load):
        with pytest.raises(CheckpointError, match=field.get(what, "normalization")):
            load(d)


def test_4_the_untouched_checkpoint_loads(checkpoint: Path) -> None:
    from salus.monitor import Monitor

    risk = Monitor.load(checkpoint).observe_signals(np.zeros(12))
    assert not risk.failsafe[0] and np.isfinite(risk.probability).all()


# --------------------------------------------------------------------------- defect 5
def _builtin_policy():
    """The real built-in policy network (untrained weights: fast and deterministic)."""
    import torch

    from salus.policies.builtin.adapter import BuiltinPolicyAdapter
    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stats = NormalizationStats.fit(
        rng.normal(0.0, 0.3, size=(64, 22)).astype(np.float32),
        rng.uniform(-1, 1, size=(64, 4)).astype(np.float32),
    )
    return BuiltinPolicyAdapter(BuiltinFlowPolicy(BuiltinConfig()), stats, seed=0)


def good_obs(rng: np.random.Generator, b: int | None = None) -> dict:
    shape = () if b is None else (b,)
    return {
        "image_front": rng.integers(0, 255, (*shape, 96, 96, 3), dtype=np.uint8),
        "image_wrist": rng.integers(0, 255, (*shape, 96, 96, 3), dtype=np.uint8),
        "state": rng.normal(0.0, 0.1, (*shape, 22)).astype(np.float32),
        "task": "pick up the red cube" if b is None else ["pick up the red cube"] * b,
    }


def test_5_failsafe_is_sticky_from_the_first_step_after_reset(checkpoint: Path) -> None:
    from salus.monitor import Monitor

    rng = np.random.default_rng(0)
    mon = Monitor.load(checkpoint, policy=_builtin_policy())
    mon.reset()
    _, risk = mon.step(None)  # type: ignore[arg-type]
    assert risk.failsafe.all()
    for _ in range(3):
        action, risk = mon.step(good_obs(rng))
        assert risk.failsafe.all() and risk.alarm.all() and action.shape == (4,)
    mon.reset()
    _, risk = mon.step(good_obs(rng))
    assert not risk.failsafe.any()
    # Batched too: a fault before the batch size is known puts every environment in fail-safe.
    mon.reset()
    mon.observe_signals("not signals")
    _, risk = mon.step(good_obs(rng, 3))
    assert risk.failsafe.tolist() == [True, True, True]


def test_5_hold_action_has_the_policy_action_shape_without_task(checkpoint: Path) -> None:
    from salus.monitor import Monitor
    from salus.sim import make_env

    rng = np.random.default_rng(1)
    mon = Monitor.load(checkpoint, policy=_builtin_policy())
    mon.reset()
    obs = good_obs(rng)
    del obs["task"]
    action, risk = mon.step(obs)
    assert action.shape == (4,) and risk.failsafe.all() and np.isfinite(action).all()
    batched = good_obs(rng, 2)
    del batched["task"]
    mon.reset()
    action, risk = mon.step(batched)
    assert action.shape == (2, 4) and risk.failsafe.all()
    env = make_env("pick_place", render=False)
    try:
        env.reset(seed=0)
        single = good_obs(rng)
        del single["task"]
        mon.reset()
        env.step(mon.step(single)[0])  # the hold action is something env.step accepts
    finally:
        env.close()


# --------------------------------------------------------------------------- defect 6
def test_6_policy_typo_leaves_nothing_behind_and_says_policies(tmp_path: Path) -> None:
    out = tmp_path / "d.zarr"
    proc = _salus("collect", "--out", str(out), "--policy", "biultin", "-n", "1")
    assert not any(tmp_path.iterdir())  # no dataset, lock or leftover: the corrected command is free to run
    assert proc.returncode == 2, proc.stderr
    assert "unknown policy 'biultin'; valid policies: builtin" in proc.stderr

    from salus.errors import InvalidNameError, plural
    from salus.policies import PolicySpec

    with pytest.raises(InvalidNameError, match="valid policies"):
        PolicySpec.parse("ensemble:builtin,biultin").check()
    with pytest.raises(SalusError, match="does not exist"):
        PolicySpec.parse(f"builtin:{tmp_path / 'no_weights'}").check()
    PolicySpec.parse("builtin").check()
    assert [plural(w) for w in ("policy", "task", "key", "box", "step key")] == [
        "policies",
        "tasks",
        "keys",
        "boxes",
        "step keys",
    ]
