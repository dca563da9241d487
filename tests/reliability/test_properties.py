"""Property-based reliability suite (Hypothesis) over the reader, the writer, repair, checkpoint
loading and ``Monitor.step``, on real zarr stores, real processes, real checkpoints and the real
built-in policy network.

Invariants: a clear salus error or a correct result; nothing committed is lost; the monitor never
raises and stays in fail-safe until reset. CI runs a short deterministic profile; ``make soak``
(``SALUS_SOAK=1``) runs hundreds of random examples per property.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salus.data import DatasetWriter, SalusDataset, check_dataset
from salus.errors import CheckpointError, DatasetError, InvalidInputError, SalusError

from .helpers import RELIABILITY, make_record, same_episode, same_state, small_chunks, write_dataset
from .test_regressions import _builtin_policy, _in_child, die_at_store_write, good_obs

# --------------------------------------------------------------------------- damage
DAMAGE_KINDS = ("delete", "truncate", "flip", "garbage")
damage_ops = st.lists(
    st.tuples(
        st.sampled_from(DAMAGE_KINDS),
        st.sampled_from(("chunk", "chunk", "chunk", "metadata")),  # mostly chunk files
        st.integers(0, 2**31),
        st.integers(0, 2**31),
    ),
    min_size=1,
    max_size=3,
)


def _store_files(path: Path, which: str) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if which == "metadata":
        return [p for p in files if p.name == "zarr.json"]
    return [p for p in files if p.name != "zarr.json"]


def _damage(path: Path, kind: str, which: str, a: int, b: int) -> Path | None:
    """Damage one file of the store; returns it (None when there was nothing to damage)."""
    files = _store_files(path, which)
    if not files:
        return None
    target = files[a % len(files)]
    raw = target.read_bytes()
    if kind == "delete":
        target.unlink()
    elif kind == "truncate":
        target.write_bytes(raw[: b % max(1, len(raw))])
    elif kind == "flip" and raw:
        buf = bytearray(raw)
        buf[b % len(buf)] ^= 1 + (a % 255)
        target.write_bytes(bytes(buf))
    elif raw:
        junk = np.random.default_rng(b).integers(0, 256, len(raw), dtype=np.uint8).tobytes()
        if junk == raw:
            return None
        target.write_bytes(junk)
    else:
        return None
    return target


def _readable(path: Path, records: list) -> dict[int, bool]:
    """For each committed episode: True if it reads back exactly, False if refused with a
    DatasetError. Anything else (another exception, wrong data) fails the property."""
    try:
        ds = SalusDataset(path)
    except DatasetError:
        return {}
    with contextlib.suppress(DatasetError):
        assert same_state(ds.state("extractor")), "the stored state read back wrong"
    out = {}
    for i in range(ds.num_episodes):
        try:
            ep = ds.episode(i)
        except DatasetError:
            out[i] = False
            continue
        assert same_episode(ep, records[int(ep.episode_index)]), f"episode {i} read back wrong"
        out[i] = True
    return out


@RELIABILITY
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    ops=damage_ops,
    resume=st.booleans(),
)
def test_damaged_stores_give_a_clear_error_or_the_exact_data(lengths: list[int], ops, resume: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.zarr"
        records = write_dataset(path, len(lengths), lengths)
        damaged_chunks = False
        for kind, which, a, b in ops:
            hit = _damage(path, kind, which, a, b)
            damaged_chunks |= hit is not None and hit.name != "zarr.json"
        before = _readable(path, records)
        report = check_dataset(path)
        if damaged_chunks:
            assert not report.ok, "damage to a chunk file went unnoticed"
        if report.ok:  # check's verdict agrees with the reads
            assert all(before.values()) and len(before) == len(records)
        elif before and report.damaged_episodes:
            assert sorted(i for i, ok in before.items() if not ok) == report.damaged_episodes
        # repair: the kept episodes are exact copies, the new dataset checks, the source is untouched
        out = Path(tmp) / "fixed.zarr"
        snapshot = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
        try:
            from salus.data.repair import repair_dataset

            rep = repair_dataset(path, out)
        except DatasetError:
            pass
        else:
            assert check_dataset(out).ok
            fixed = SalusDataset(out)
            assert same_state(fixed.state("extractor"))
            kept = fixed.episode_index.tolist()
            assert len(kept) == rep.kept and not set(kept) & set(rep.dropped_episode_index)
            for j in range(len(fixed)):
                assert same_episode(fixed.episode(j), records[kept[j]])
            if before and len(before) == len(records):
                assert kept == [i for i, ok in before.items() if ok]
        assert snapshot == {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
        if resume:  # resume: refused, or nothing committed is lost and the new episode is exact
            try:
                with small_chunks(), DatasetWriter(path) as w:
                    n = w.num_episodes
                    w.append(make_record(len(records), 7))
            except DatasetError:
                return
            after = _readable(path, [*records, make_record(len(records), 7)])
            if before:  # the dataset opened before the resume: it still does, with the new episode
                assert len(after) == n + 1 and after[n]
            for i, ok in before.items():
                assert after[i] or not ok, f"episode {i} was readable before the resume and is not now"


# --------------------------------------------------------------------------- kills
@RELIABILITY
@given(
    n=st.integers(1, 5),
    committed=st.integers(0, 3),
    kill=st.one_of(
        st.tuples(st.just("write"), st.integers(0, 120)),
        st.tuples(st.just("time"), st.integers(0, 300)),
    ),
    overwrite=st.booleans(),
)
def test_a_killed_writer_loses_nothing_committed(n: int, committed: int, kill, overwrite: bool) -> None:
    """Kill a writer (at its k-th store write, or SIGKILL after t ms) while it creates, resumes or
    overwrites a dataset: afterwards there is no dataset or a valid one holding a prefix of the
    episodes, every episode committed before the run survives (unless overwritten), and the next
    writer finishes the job."""
    records = [make_record(i) for i in range(n + committed)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.zarr"
        if committed:
            with small_chunks(), DatasetWriter(path) as w:
                for r in records[:committed]:
                    w.append(r)
        mode, value = kill

        def run() -> None:
            if mode == "write":
                die_at_store_write(value)
            with small_chunks(), DatasetWriter(path, overwrite=overwrite) as w:
                for r in records[w.num_episodes :]:
                    w.append(r)

        if mode == "write":
            assert _in_child(run) in (0, 9)
        else:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    run()
                finally:
                    os._exit(0)
            time.sleep(value / 1000.0)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if not path.exists():
            assert committed == 0 or overwrite
        else:
            ds = SalusDataset(path)
            assert check_dataset(path).ok
            assert ds.num_episodes >= (0 if overwrite else committed)
            for i in range(ds.num_episodes):
                assert same_episode(ds.episode(i), records[i])
        with small_chunks(), DatasetWriter(path) as w:  # the next run resumes and finishes
            for r in records[w.num_episodes :]:
                w.append(r)
        ds = SalusDataset(path)
        assert ds.num_episodes == len(records)
        assert all(same_episode(ds.episode(i), records[i]) for i in range(len(records)))


# --------------------------------------------------------------------------- checkpoints
def _semantic_mutation(meta: dict, which: int, value: int) -> None:
    """One of many ways a predictor.json can be wrong while still being JSON."""
    from salus.signals import SIGNAL_NAMES

    keys = sorted(meta)
    cases = [
        lambda: meta.pop(keys[value % len(keys)]),
        lambda: meta["normalization"].update(mean=meta["normalization"]["mean"][: value % 12]),
        lambda: meta["normalization"].update(std=[float(value % 3 - 1)] * 12),
        lambda: meta.update(signal_names=list(np.random.default_rng(value).permutation(SIGNAL_NAMES))),
        lambda: meta.update(signal_names=list(SIGNAL_NAMES)[: value % 12]),
        lambda: meta.update(horizons=[int(value % 5) - 2]),
        lambda: meta.update(score_index=int(value % 7) - 2),
        lambda: meta.update(control_hz=[0.0, -1.0, None, "fast"][value % 4]),
        lambda: meta["conformal"].update(alpha=[0.0, 1.5, None, 0.33][value % 4]),
        lambda: meta["conformal"].update(bands={"0.5": {"mu": [0.1]}}),
        lambda: meta["model"].update(in_dim=int(value % 50)),
        lambda: meta["model"]["config"].update(mlp_hidden=[int(value % 9) + 1]),
        lambda: meta.update(failure_types=[1, 2]),
        lambda: meta.update(normalization=[1, 2]),
        lambda: meta.update(extractor_statistics={}),
        lambda: meta.update(input_kind="embedding"),
    ]
    cases[which % len(cases)]()


def _usable(predictor_dir: Path) -> None:
    """A checkpoint that loads must work: the monitor scores valid signals without fail-safe."""
    from salus.monitor import Monitor

    try:
        mon = Monitor.load(predictor_dir)
    except SalusError:
        return
    rng = np.random.default_rng(0)
    for _ in range(3):
        risk = mon.observe_signals(rng.normal(size=(2, 12)))
        assert not risk.failsafe.any(), risk.reason
        assert np.isfinite(risk.probability).all()


@pytest.fixture(scope="module")
def reference_scores(checkpoint: Path) -> np.ndarray:
    from salus.predictor import TrainedPredictor

    return _scores(TrainedPredictor.load(checkpoint))


def _scores(predictor) -> np.ndarray:  # type: ignore[no-untyped-def]
    from salus.predictor.episodes import Episode

    rng = np.random.default_rng(3)
    ep = Episode(
        signals=rng.normal(size=(20, 12)).astype(np.float32),
        valid=np.ones((20, 12), bool),
        success=True,
        failure_step=-1,
    )
    return np.asarray(predictor.episode_probs([ep])[0])


@RELIABILITY
@given(
    target=st.sampled_from(("model.safetensors", "extractor.safetensors", "predictor.json", "semantic")),
    kind=st.sampled_from(("truncate", "flip", "garbage")),
    a=st.integers(0, 2**31),
    b=st.integers(0, 2**31),
)
def test_damaged_checkpoints_are_refused_or_correct(
    checkpoint: Path, reference_scores: np.ndarray, target: str, kind: str, a: int, b: int
) -> None:
    import warnings

    from salus.predictor import TrainedPredictor

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "ck"
        shutil.copytree(checkpoint, d)
        if target == "semantic":
            meta = json.loads((d / "predictor.json").read_text())
            _semantic_mutation(meta, a, b)
            (d / "predictor.json").write_text(json.dumps(meta))
        else:
            f = d / target
            raw = bytearray(f.read_bytes())
            if kind == "truncate":
                f.write_bytes(bytes(raw[: b % len(raw)]))
            elif kind == "flip":
                raw[b % len(raw)] ^= 1 + a % 255
                f.write_bytes(bytes(raw))
            else:
                f.write_bytes(np.random.default_rng(b).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "the band never alarms" on small calibrations
            try:
                loaded = TrainedPredictor.load(d)
            except CheckpointError:
                return
            if target.endswith(".safetensors"):  # weights are checksummed: loaded means unchanged
                np.testing.assert_array_equal(_scores(loaded), reference_scores)
            _usable(d)


# --------------------------------------------------------------------------- monitor
EVENTS = (
    "good",
    "good",
    "good",
    "none",
    "empty",
    "no_task",
    "nan_row",
    "bad_dim",
    "text_state",
    "nan_signals",
    "reset",
    "reset0",
)


@RELIABILITY
@given(
    batched=st.booleans(),
    events=st.lists(st.tuples(st.sampled_from(EVENTS), st.integers(0, 7)), min_size=1, max_size=10),
)
def test_monitor_never_raises_and_failsafe_holds_until_reset(checkpoint: Path, batched: bool, events) -> None:
    import warnings

    from salus.monitor import Monitor

    b = 2 if batched else 1
    rng = np.random.default_rng(len(events))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mon = Monitor.load(checkpoint, policy=_builtin_policy())
    mon.reset()
    expected = np.zeros(b, dtype=bool)
    layout: tuple[bool, int] | None = None  # (single, B) of the last readable observation
    for event, k in events:
        if event == "reset":
            mon.reset()
            expected[:] = False
            continue
        if event == "reset0":
            mon.reset(0)
            expected[0] = False
            continue
        if event == "nan_signals":
            risk = mon.observe_signals(np.full((b, 12), np.nan), np.ones((b, 12), bool))
            expected[:] = True
            assert risk.failsafe.tolist() == expected.tolist()
            continue
        obs = good_obs(rng, b if batched else None)
        if event == "none":
            obs = None
        elif event == "empty":
            obs = {}
        elif event == "no_task":
            del obs["task"]
        elif event == "nan_row":
            row = k % b
            if batched:
                obs["state"][row, k % 22] = np.nan
            else:
                obs["state"][k % 22] = np.nan
        elif event == "bad_dim":  # the wrong shape is the caller's mistake: raised, nothing changes
            obs["state"] = obs["state"][..., :21]
            with pytest.raises(InvalidInputError, match=r"\(2, 21\)|\(21,\)"):
                mon.step(obs)
            continue
        elif event == "text_state":
            obs["state"] = "joint angles"
        action, risk = mon.step(obs)  # type: ignore[arg-type]
        if event in ("none", "empty"):  # unreadable: the layout of the last readable observation
            if layout is None:
                assert np.shape(action) in ((1, 4), (b, 4)) and risk.failsafe.all()
                expected[:] = True
                continue
        else:
            layout = (not batched, b)
        if event in ("none", "empty", "no_task", "text_state"):
            expected[:] = True
        elif event == "nan_row":
            expected[k % b] = True
        want_shape = (4,) if layout[0] else (b, 4)
        assert np.shape(action) == want_shape and np.isfinite(action).all(), (event, np.shape(action))
        assert risk.failsafe.tolist() == expected.tolist(), (event, risk.reason)
        assert risk.alarm[expected].all()
        assert np.isfinite(risk.probability[~expected]).all()
