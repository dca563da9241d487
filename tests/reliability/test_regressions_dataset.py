"""Regression tests of the dataset defects of "Reliability, second round" and "Any robot, live"; each
failed before its fix.

1. Damage that went unmentioned: ``salus dataset info`` called a store with a missing chunk
   healthy (exit 0) and never said it had not verified checksums; ``salus dataset check`` passed a
   store without its ``state/`` group, which ``train`` / ``evaluate`` then refused; ``salus
   collect`` resumed without a word onto a store with an earlier corrupt chunk or without
   ``state/``.
2. A typo in a factory (``python:`` policy, ``--success``, ``--failure``) or a success key the
   environment never sets left an empty store behind, and the corrected command was then refused
   ("collected with different settings") until ``--overwrite``.

Real zarr stores on disk, the real writer, reader, collector and CLI; the ``--env`` cases run
gym-pusht's PushT (a real third-party environment) with the example's policy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from salus.data import DatasetWriter, SalusDataset, check_dataset, dataset_info
from salus.errors import DatasetError, InvalidInputError

from .helpers import small_chunks, write_dataset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "byo_pusht.py"
HELPERS = ROOT / "tests" / "collect" / "byo_helpers.py"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``salus ARGS`` in-process through the real entry point: (exit code, stdout + stderr)."""
    from salus.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def _flip(chunk: Path) -> None:
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    chunk.write_bytes(bytes(raw))


def _files(path: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- 1. info
def test_info_lists_missing_chunk_files_and_says_it_did_not_verify_checksums(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.zarr"
    write_dataset(path, 12)
    # Healthy: info says what it verified (files listed) and what it did not (checksums).
    info = dataset_info(path)
    assert info["integrity"]["missing_chunks"] == 0 and info["integrity"]["checksums_verified"] is False
    code, out = _cli(capsys, "dataset", "info", str(path))
    assert code == 0 and "checksums" in out and "salus dataset check" in out
    # A corrupt chunk of a key info does not read: info cannot know, and says so; check finds it.
    emb = path / "data" / "obs_embedding" / "c" / "1" / "0"
    _flip(emb)
    code, out = _cli(capsys, "dataset", "info", str(path))
    assert code == 0 and "checksums are verified only for" in out
    assert not check_dataset(path).ok
    # Missing chunk files of keys info does not read (it used to exit 0): listed, exit 2.
    (path / "data" / "obs_embedding" / "c" / "2" / "0").unlink()
    (path / "data" / "image_front" / "c" / "0" / "0" / "0" / "0").unlink()
    with pytest.raises(
        DatasetError, match=r"data/obs_embedding chunk 2 \(steps 32\.\.47\) is missing"
    ) as exc:
        dataset_info(path)
    assert "data/image_front chunk 0 (steps 0..15) is missing" in str(exc.value)
    code, out = _cli(capsys, "dataset", "info", str(path), "--json")
    assert code == 2 and "data/obs_embedding chunk 2" in out and "data/image_front chunk 0" in out


# --------------------------------------------------------------------------- 1. check
def test_check_refuses_a_store_without_the_groups_the_readers_need(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from salus.predictor import episodes_from_dataset

    path = tmp_path / "d.zarr"
    write_dataset(path, 6)
    assert check_dataset(path).ok
    ds = SalusDataset(path)
    shutil.rmtree(path / "state")
    with pytest.raises(DatasetError, match="state"):  # what `salus train` / `evaluate` read
        episodes_from_dataset(SalusDataset(path))
    report = check_dataset(path)
    assert not report.ok and any("state, state/extractor are missing" in p for p in report.problems)
    code, out = _cli(capsys, "dataset", "check", str(path))
    assert code == 1 and "state/extractor" in out
    with pytest.raises(DatasetError, match="state/extractor"):
        dataset_info(path)
    from salus.data.reader import required_nodes  # the one list of what readers open

    assert "state/extractor" in required_nodes(ds.attrs, ds.schema)
    # A store written by `salus collect` names its state in attrs["extractor"] (older stores too).
    attrs = {k: v for k, v in ds.attrs.items() if k != "salus_state_owners"}
    assert "state/extractor" in required_nodes({**attrs, "extractor": {}}, ds.schema)
    assert "state/extractor" not in required_nodes(attrs, ds.schema)  # a store written from code without
    # Every missing group or array is named at once (not only the first one opened).
    other = tmp_path / "e.zarr"
    write_dataset(other, 3)
    shutil.rmtree(other / "meta" / "task")
    shutil.rmtree(other / "data" / "obs_embedding")
    report = check_dataset(other)
    assert not report.ok and any("meta/task, data/obs_embedding are missing" in p for p in report.problems)


# --------------------------------------------------------------------------- 1. resume
def test_resume_refuses_an_earlier_corrupt_chunk(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    records = write_dataset(path, 12)
    total = sum(r.length for r in records)
    assert total > 3 * 16  # chunk 0 is long before the last episode's chunks
    chunk = path / "data" / "signals" / "c" / "0" / "0"
    _flip(chunk)
    before = _files(path)
    with (
        small_chunks(),
        pytest.raises(DatasetError, match=r"refusing to append.*data/signals chunk 0 .*corrupt") as exc,
    ):
        DatasetWriter(path)
    assert "salus dataset repair" in str(exc.value) and _files(path) == before


def test_resume_refuses_a_store_without_its_state(tmp_path: Path) -> None:
    other = tmp_path / "e.zarr"
    write_dataset(other, 4)
    shutil.rmtree(other / "state")
    with (
        small_chunks(),
        pytest.raises(DatasetError, match=r"refusing to append.*state/extractor.*repair"),
    ):
        DatasetWriter(other)
    assert not (other / "state").exists()


def test_resume_decodes_older_image_chunks_only_at_read_time(tmp_path: Path) -> None:
    """The chosen compromise: a resume decodes every committed chunk except image chunks older than
    the last episode (most of a store with images); check and the readers still refuse them."""
    path = tmp_path / "d.zarr"
    write_dataset(path, 12)
    _flip(path / "data" / "image_front" / "c" / "0" / "0" / "0" / "0")
    with small_chunks(), DatasetWriter(path) as w:
        assert w.num_episodes == 12
    report = check_dataset(path)
    assert not report.ok and 0 in report.damaged_episodes
    with pytest.raises(DatasetError, match="data/image_front chunk 0"):
        SalusDataset(path).episode(0)


# --------------------------------------------------------------------------- 2. --env collect
@pytest.fixture(scope="module")
def pusht() -> None:
    pytest.importorskip("gym_pusht")
    import torch

    torch.set_num_threads(1)


def _config(**over):
    from salus.collect import CollectConfig, ObservationMap

    kw = {
        "policy": f"python:{EXAMPLE}:make_policy",
        "episodes": 1,
        "max_steps": 6,
        "seed": 5,
        "env": f"{EXAMPLE}:make_env",
        "observation": ObservationMap(state=(".",), task=None, task_text="push the T onto the goal"),
        "failure": f"{EXAMPLE}:failure",
        "signal_stats": "none",
        "num_samples": 1,
        **over,
    }
    return CollectConfig(**kw)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"policy": "python:nosuch.py:f"}, "nosuch.py does not exist"),
        ({"policy": f"python:{EXAMPLE}:nosuch"}, "has no attribute 'nosuch'"),
        ({"success": f"{HELPERS}:nosuch"}, "success rule .* has no attribute 'nosuch'"),
        ({"failure": f"{EXAMPLE}:nosuch"}, "failure rule .* has no attribute 'nosuch'"),
        ({"success": "no_such_key"}, r"probed before the dataset is created.*info has no 'no_such_key'"),
        ({"env": f"{HELPERS}:make_env_without_success"}, r"probed before.*info has no 'is_success'"),
    ],
)
def test_a_typo_is_refused_before_the_store_exists(pusht: None, tmp_path: Path, bad, message: str) -> None:
    from salus.collect.collector import collect

    out = tmp_path / "d.zarr"
    with pytest.raises(InvalidInputError, match=message):
        collect(_config(**bad), out)
    assert not out.exists()
    result = collect(_config(), out)  # the corrected command, without --overwrite
    assert result.episodes == 1 and check_dataset(out).ok


def test_a_run_that_fails_before_its_first_commit_removes_the_store_it_created(
    pusht: None, tmp_path: Path
) -> None:
    from salus.collect.collector import collect

    out = tmp_path / "d.zarr"
    # A 2-D policy on a 3-D environment fails in the first episode, after the store was created.
    with pytest.raises(InvalidInputError, match=r"action of shape \(2,\)"):
        collect(_config(policy=f"python:{HELPERS}:make_2d_policy"), out)
    assert not out.exists() and not Path(f"{out}.lock").exists()
    assert collect(_config(), out).episodes == 1
    # A store that existed before the run is never removed, even an empty one.
    empty = tmp_path / "empty.zarr"
    DatasetWriter(empty).close()
    writer = DatasetWriter(empty)
    assert writer.discard_if_empty() is False and SalusDataset(empty).num_episodes == 0


def test_cli_typo_in_the_policy_factory_leaves_nothing_behind(
    pusht: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.zarr"
    args = [
        "collect", "--out", str(out), "--episodes", "1", "--max-steps", "6", "--samples", "1",
        "--signal-stats", "none", "--env", f"{EXAMPLE}:make_env", "--obs", "state=.",
        "--task-text", "push the T onto the goal", "--failure", f"{EXAMPLE}:failure",
    ]  # fmt: skip
    code, text = _cli(capsys, *args, "--policy", f"python:{EXAMPLE}:make_polcy")
    assert code == 2 and "make_polcy" in text and not out.exists()
    code, text = _cli(capsys, *args, "--policy", f"python:{EXAMPLE}:make_policy")
    assert code == 0, text
    assert SalusDataset(out).num_episodes == 1 and np.all(SalusDataset(out).lengths == 6)
