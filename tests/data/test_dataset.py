"""The zarr dataset format on real zarr stores: round trip, atomic commits, corruption, locks,
splits, horizon labels and windows. Episodes here are synthetic EpisodeRecords (the collection
tests write real simulator episodes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from salus.data import DatasetLock, DatasetWriter, EpisodeRecord, SalusDataset, check_dataset, dataset_info
from salus.errors import DatasetError, InvalidInputError, InvalidNameError


def make_record(i: int, length: int | None = None, fail_at: int | None = None) -> EpisodeRecord:
    rng = np.random.default_rng(i)
    T = length if length is not None else 20 + 3 * (i % 4)
    failed = fail_at is not None or i % 3 == 0
    f = (fail_at if fail_at is not None else T // 2) if failed else -1
    return EpisodeRecord(
        steps={
            "signals": rng.normal(size=(T, 12)).astype(np.float32),
            "signal_valid": rng.random((T, 12)) > 0.1,
            "baselines": rng.normal(size=(T, 4)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(T, 4)).astype(np.float32),
            "state": rng.normal(size=(T, 22)).astype(np.float32),
            "obs_embedding": rng.normal(size=(T, 16)).astype(np.float16),
        },
        success=not failed,
        failure_step=f,
        failure_type="drop" if failed else "none",
        task=("pick_place", "push", "stack")[i % 3],
        seed=1000 + i,
        perturbations=[{"name": "push", "strength": 0.5, "params": {"force": [1.0, 2.0]}}] if i % 2 else [],
    )


def write(path: Path, n: int, **kw) -> list[EpisodeRecord]:
    records = [make_record(i) for i in range(n)]
    with DatasetWriter(path, {"signal_names": [f"s{j}" for j in range(12)]}, **kw) as w:
        for r in records:
            w.append(r)
    return records


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "d.zarr"
    state = {"extractor": {"format_version": 1, "config": {"w": 5}, "tensors": {"ood.mean": np.arange(4.0)}}}
    records = write(path, 7, state=state)
    ds = SalusDataset(path)
    assert (ds.num_episodes, ds.num_steps) == (7, sum(r.length for r in records))
    assert ds.episode_ends.tolist() == np.cumsum([r.length for r in records]).tolist()
    for i, rec in enumerate(records):
        got = ds.episode(i)
        assert got.steps.keys() == rec.steps.keys()
        for k in rec.steps:
            np.testing.assert_array_equal(got.steps[k], rec.steps[k])
            assert got.steps[k].dtype == rec.steps[k].dtype
        assert (got.success, got.failure_step, got.failure_type, got.task, got.seed) == (
            rec.success,
            rec.failure_step,
            rec.failure_type,
            rec.task,
            rec.seed,
        )
        assert got.perturbations == rec.perturbations
        assert got.episode_index == i
    per_ep = ds.episode_arrays("action", [3, 1])
    np.testing.assert_array_equal(per_ep[0], records[3].steps["action"])
    np.testing.assert_array_equal(per_ep[1], records[1].steps["action"])
    st = ds.state("extractor")
    np.testing.assert_array_equal(st["tensors"]["ood.mean"], np.arange(4.0))
    assert st["config"] == {"w": 5} and st["format_version"] == 1
    assert ds.attrs["signal_names"][0] == "s0"
    with pytest.raises(InvalidNameError):
        ds.state("nope")
    with pytest.raises(InvalidNameError):
        ds.steps("hidden")
    # Chunks are compressed and long along time (sequential reads).
    arr = zarr.open_group(str(path), mode="r")["data/signals"]
    assert arr.chunks[0] >= 1024 and arr.compressors


def test_resume_appends_and_dtypes_are_cast(tmp_path):
    path = tmp_path / "d.zarr"
    write(path, 3)
    rec = make_record(3)
    rec.steps["obs_embedding"] = rec.steps["obs_embedding"].astype(np.float64)
    rec = EpisodeRecord(**{**rec.__dict__, "episode_index": -1})
    with DatasetWriter(path) as w:
        assert w.num_episodes == 3
        assert w.append(rec) == 3
    ds = SalusDataset(path)
    assert ds.num_episodes == 4 and ds.episode(3).steps["obs_embedding"].dtype == np.float16


def test_record_and_schema_validation(tmp_path):
    with pytest.raises(InvalidInputError, match="failure_step=-1"):
        EpisodeRecord({"action": np.zeros((3, 4))}, True, 1, "none", "push", 0, [])
    with pytest.raises(InvalidInputError, match="0 <= failure_step < T"):
        EpisodeRecord({"action": np.zeros((3, 4))}, False, 3, "drop", "push", 0, [])
    with pytest.raises(InvalidInputError, match="disagree"):
        EpisodeRecord(
            {"action": np.zeros((3, 4)), "state": np.zeros((4, 22))}, True, -1, "none", "push", 0, []
        )
    with pytest.raises(InvalidInputError, match="name"):
        EpisodeRecord({"action": np.zeros((3, 4))}, True, -1, "none", "push", 0, [{"strength": 1}])
    path = tmp_path / "d.zarr"
    write(path, 2)
    bad = make_record(5)
    bad.steps["signals"] = np.zeros((bad.length, 11), np.float32)
    with DatasetWriter(path) as w, pytest.raises(InvalidInputError, match="per-step shape"):
        w.append(bad)
    missing = make_record(5)
    del missing.steps["baselines"]
    with DatasetWriter(path) as w, pytest.raises(InvalidInputError, match="missing"):
        w.append(missing)
    assert SalusDataset(path).num_episodes == 2


_CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_dataset import make_record
    from salus.data import DatasetWriter
    w = DatasetWriter({path!r})
    def crash(*a, **k):  # the process dies just before the commit record is written
        os._exit(9)
    w._commit = crash
    w.append(make_record(2))
    """
)


def test_crash_just_before_commit_leaves_no_partial_episode(tmp_path):
    path = tmp_path / "d.zarr"
    records = write(path, 2)
    script = _CRASH_SCRIPT.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    # The data and meta of episode 2 were written past the committed end, but not committed.
    raw = zarr.open_group(str(path), mode="r")
    assert raw["meta/episode_ends"].shape[0] == 3
    assert raw["data/signals"].shape[0] > sum(r.length for r in records)
    ds = SalusDataset(path)
    assert ds.num_episodes == 2 and ds.num_steps == sum(r.length for r in records)
    report = check_dataset(path)
    assert report.ok and any("past the last commit" in n for n in report.notes)
    # The lock died with the process: a new writer takes it, truncates the tail and goes on.
    with DatasetWriter(path) as w:
        w.append(make_record(2))
    ds = SalusDataset(path)
    assert ds.num_episodes == 3
    np.testing.assert_array_equal(ds.episode(2).steps["signals"], make_record(2).steps["signals"])
    assert zarr.open_group(str(path), mode="r")["data/signals"].shape[0] == ds.num_steps


def test_commit_is_one_root_metadata_write_after_all_data(tmp_path):
    """The protocol itself: every chunk and array-metadata write of an append precedes a single
    write of the root zarr.json (the commit record)."""
    path = tmp_path / "d.zarr"
    write(path, 1)
    with DatasetWriter(path) as w:
        store = w._root.store_path.store
        keys: list[str] = []
        real_set = store.set

        async def recording_set(key, value, *args, **kwargs):
            keys.append(key)
            return await real_set(key, value, *args, **kwargs)

        store.set = recording_set
        w.append(make_record(1))
        written = list(keys)  # close() trims afterwards; only the append matters here
    assert written.count("zarr.json") == 1 and written[-1] == "zarr.json"
    assert any(k.startswith("data/") for k in written)
    last_meta = max(i for i, k in enumerate(written) if k.startswith("meta/"))
    assert written[last_meta].startswith("meta/episode_ends")


_APPEND_LOOP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_dataset import make_record
    from salus.data import DatasetWriter
    w = DatasetWriter({path!r})
    print("ready", flush=True)
    for i in range(w.num_episodes, {total}):
        w.append(make_record(i))
        print("committed", i, flush=True)
    w.close()
    """
)


def test_sigkill_at_random_moments_never_exposes_a_partial_episode(tmp_path):
    """SIGKILL an appending writer at random times; every survivor is a clean prefix of the episodes."""
    path, total = tmp_path / "d.zarr", 40
    script = _APPEND_LOOP.format(tests=str(Path(__file__).parent), path=str(path), total=total)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.stdout.readline()  # one episode committed (or the run is done): then kill at a random moment
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.kill()
        proc.wait()
        ds = SalusDataset(path)
        seen.append(ds.num_episodes)
        assert check_dataset(path).ok
        for i in range(ds.num_episodes):
            np.testing.assert_array_equal(ds.episode(i).steps["state"], make_record(i).steps["state"])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ds = SalusDataset(path)
    assert ds.num_episodes == total and ds.seed.tolist() == [1000 + i for i in range(total)]
    assert max(seen[:-1]) > 0 and min(seen) < total  # the kills did land mid-run


def test_foreign_missing_and_corrupt_stores(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        SalusDataset(tmp_path / "nothing.zarr")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "x.txt").write_text("hi")
    with pytest.raises(DatasetError, match="not a zarr store"):
        SalusDataset(plain)
    with pytest.raises(DatasetError, match="not a zarr store"):
        DatasetWriter(plain)
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").create_array("x", shape=(3,), dtype="f4")
    with pytest.raises(DatasetError, match="not a salus dataset"):
        SalusDataset(foreign)
    with pytest.raises(DatasetError, match="not a salus dataset"):
        DatasetWriter(foreign)
    assert not check_dataset(foreign).ok

    # A corrupt chunk: zstd's checksum catches flipped bytes.
    path = tmp_path / "d.zarr"
    write(path, 4)
    chunk = path / "data" / "state" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    report = check_dataset(path)
    assert not report.ok and any("data/state" in p and "corrupt" in p for p in report.problems)
    with pytest.raises(DatasetError, match="data/state"):
        SalusDataset(path).steps("state")

    # A missing chunk file (truncated copy) would read as zeros: check notices.
    path2 = tmp_path / "d2.zarr"
    write(path2, 4)
    (path2 / "data" / "action" / "c" / "0" / "0").unlink()
    report = check_dataset(path2)
    assert not report.ok and any("data/action" in p and "missing" in p for p in report.problems)

    # A commit record that claims more than the arrays hold: truncated.
    path3 = tmp_path / "d3.zarr"
    write(path3, 3)
    meta = json.loads((path3 / "zarr.json").read_text())
    meta["attributes"]["salus_committed_episodes"] = 5
    (path3 / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="truncated"):
        SalusDataset(path3)
    # Unparseable root metadata.
    (path3 / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt"):
        SalusDataset(path3)


def test_lock_refuses_second_writer_and_recovers_stale_lock(tmp_path):
    path = tmp_path / "d.zarr"
    w = DatasetWriter(path)
    with pytest.raises(DatasetError, match=f"another collector \\(pid {os.getpid()}"):
        DatasetWriter(path)
    w.close()
    assert not (tmp_path / "d.zarr.lock").exists()
    # A stale lock file (its holder was killed): taken over.
    (tmp_path / "d.zarr.lock").write_text(json.dumps({"pid": 999999, "host": "x", "started": "then"}))
    with DatasetLock(path) as lock:
        assert lock.held
        assert json.loads((tmp_path / "d.zarr.lock").read_text())["pid"] == os.getpid()
    # A lock held by another live process.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; from salus.data import DatasetLock; l = DatasetLock({str(path)!r}).acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatasetError, match=f"pid {holder.pid}"):
            DatasetWriter(path)
    finally:
        holder.kill()
        holder.wait()
    with DatasetWriter(path) as w2:  # the kernel released the dead holder's lock
        assert w2.num_episodes == 0


def test_overwrite_only_replaces_salus_datasets(tmp_path):
    path = tmp_path / "d.zarr"
    write(path, 3)
    with DatasetWriter(path, overwrite=True) as w:
        assert w.num_episodes == 0
    with pytest.raises(InvalidInputError, match="reserved"):
        DatasetWriter(tmp_path / "e.zarr", {"salus_committed_episodes": 3})


def test_info_summary(tmp_path):
    path = tmp_path / "d.zarr"
    records = write(path, 6)
    info = dataset_info(path)
    assert info["episodes"] == 6 and info["steps"] == sum(r.length for r in records)
    assert info["success_rate"] == pytest.approx(np.mean([r.success for r in records]))
    assert info["failure_types"] == {"drop": 2, "none": 4}
    assert info["perturbations"] == {"none": 3, "push": 3}
    sig = np.concatenate([r.steps["signals"] for r in records])
    valid = np.concatenate([r.steps["signal_valid"] for r in records])
    assert info["signals"]["s0"]["mean"] == pytest.approx(float(sig[valid[:, 0], 0].mean()), rel=1e-5)
    json.dumps(info)
