"""Scripted-expert demonstrations as a LeRobot dataset (LeRobot's own ``LeRobotDataset`` format, v3).

``export_lerobot_dataset(demos, ROOT)`` writes the episodes of
:func:`salus.policies.demonstrations.record_demonstrations` with ``LeRobotDataset.create`` /
``add_frame`` / ``save_episode`` / ``finalize``: features ``observation.images.<camera>`` (uint8
images, H x W x 3), ``observation.state`` (the picked salus state entries, named), ``action`` (4,
the expert's clean action) and the task text; LeRobot computes ``meta/stats.json``. Load it with
``LeRobotDataset(repo_id, root=ROOT)`` (any LeRobot policy trains on it with LeRobot's tools) or
with :func:`read_lerobot_dataset` (what the SmolVLA trainer reads). ``meta/salus.json`` records
how the simulator's observation maps onto the features (state indices, cameras) and how the
demonstrations were recorded.

Shapes: N frames, H x W images, D picked state entries, A = 4 actions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus.errors import DatasetError, InvalidInputError, InvalidNameError
from salus.policies.demonstrations import Demonstrations, FrameEpisodes
from salus.policies.smolvla._compat import ensure_torchvision_importable
from salus.sim.spec import ACTION_NAMES, CONTROL_HZ, STATE_SLICES

__all__ = [
    "DEFAULT_STATE_FEATURES",
    "SALUS_META_FILE",
    "LeRobotDemos",
    "state_layout",
    "export_lerobot_dataset",
    "read_lerobot_dataset",
]

#: The salus state groups a dataset's ``observation.state`` holds by default: the built-in policy's
#: (joint velocities left out: in demonstrations they reveal the expert's last action).
DEFAULT_STATE_FEATURES: tuple[str, ...] = ("joint_pos", "gripper_opening", "ee_pos", "ee_quat")
SALUS_META_FILE = "meta/salus.json"
DEFAULT_REPO_ID = "salus/demos"


def state_layout(features: Sequence[str]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Salus state groups (``joint_pos``, ..., or ``all``) -> (indices into the 22-D state, entry names)."""
    names = list(STATE_SLICES) if list(features) == ["all"] else list(features)
    bad = [f for f in names if f not in STATE_SLICES]
    if bad or not names or len(set(names)) != len(names):
        raise InvalidNameError("state feature", bad[0] if bad else str(names), (*STATE_SLICES, "all"))
    indices: list[int] = []
    labels: list[str] = []
    for f in names:
        sl = STATE_SLICES[f]
        indices.extend(range(sl.start, sl.stop))
        labels.extend(f"{f}.{i}" if sl.stop - sl.start > 1 else f for i in range(sl.stop - sl.start))
    return tuple(indices), tuple(labels)


@dataclass
class LeRobotDemos(FrameEpisodes):
    """A LeRobot dataset of salus demonstrations, in memory (what the SmolVLA trainer reads)."""

    images: dict[str, np.ndarray]  # LeRobot image key -> (N, H, W, 3) uint8
    state: np.ndarray  # (N, D) float32, the dataset's observation.state
    action: np.ndarray  # (N, A) float32
    frame_task: list[str]  # (N,) task text of each frame
    episode_ends: np.ndarray  # (episodes,) int64, cumulative
    stats: dict[str, dict[str, np.ndarray]]  # LeRobot's meta/stats.json (observation.state, action, ...)
    fps: int
    salus: dict[str, Any] = field(default_factory=dict)  # meta/salus.json (empty for foreign datasets)

    @property
    def state_indices(self) -> tuple[int, ...] | None:
        """Salus state entries forming ``observation.state`` (None: unknown, a foreign dataset)."""
        value = self.salus.get("state_indices")
        return None if value is None else tuple(int(i) for i in value)

    def fingerprint(self) -> dict[str, Any]:
        """Frames, episodes, tasks and a SHA-256 of every array and task text: what a resume checks."""
        digest = hashlib.sha256()
        for key in sorted(self.images):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(self.images[key]).tobytes())
        for arr in (self.state, self.action, self.episode_ends):
            digest.update(np.ascontiguousarray(arr).tobytes())
        digest.update("\n".join(self.frame_task).encode())
        return {
            "frames": self.num_frames,
            "episodes": self.num_episodes,
            "tasks": sorted(set(self.frame_task)),
            "sha256": digest.hexdigest(),
        }

    @property
    def image_keys(self) -> dict[str, str]:
        """Salus observation key -> LeRobot image key (``image_front`` -> ``observation.images.front``)."""
        return {f"image_{key.rsplit('.', 1)[-1]}": key for key in self.images}


def _import_lerobot_dataset() -> Any:
    from salus.errors import require_package

    require_package("lerobot", extra="lerobot")
    ensure_torchvision_importable()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset


def export_lerobot_dataset(
    demos: Demonstrations,
    root: str | Path,
    *,
    state_features: Sequence[str] = DEFAULT_STATE_FEATURES,
    repo_id: str = DEFAULT_REPO_ID,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``demos`` as a LeRobot dataset at ``root`` (built in ``ROOT.partial``, then renamed).

    ``state_features`` picks the salus state groups of ``observation.state``; ``extra`` goes into
    ``meta/salus.json`` (e.g. how the demonstrations were recorded). Returns ``root``.
    """
    out = Path(root)
    if out.exists():
        if not overwrite:
            raise InvalidInputError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    indices, names = state_layout(state_features)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cameras = list(demos.images)
    if not cameras:
        raise InvalidInputError("the demonstrations hold no camera images")
    size = demos.images[cameras[0]].shape[1:]
    features: dict[str, dict[str, Any]] = {
        f"observation.images.{c}": {
            "dtype": "image",
            "shape": tuple(int(v) for v in demos.images[c].shape[1:]),
            "names": ["height", "width", "channels"],
        }
        for c in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (len(indices),), "names": list(names)}
    features["action"] = {"dtype": "float32", "shape": (demos.action.shape[1],), "names": list(ACTION_NAMES)}
    LeRobotDataset = _import_lerobot_dataset()
    with contextlib.redirect_stdout(sys.stderr):
        ds = LeRobotDataset.create(
            repo_id,
            fps=CONTROL_HZ,
            features=features,
            root=partial,
            robot_type="franka_panda",
            use_videos=False,
        )
        state = demos.state[:, list(indices)].astype(np.float32)
        start = 0
        for ep, end in enumerate(demos.episode_ends.tolist()):
            for i in range(start, end):
                frame: dict[str, Any] = {f"observation.images.{c}": demos.images[c][i] for c in cameras}
                frame["observation.state"] = state[i]
                frame["action"] = demos.action[i].astype(np.float32)
                frame["task"] = demos.task[ep]
                ds.add_frame(frame)
            ds.save_episode()
            start = end
            if progress is not None:
                progress(ep + 1, demos.num_episodes)
        ds.finalize()
    meta = {
        "format": "salus-demos-v1",
        "repo_id": repo_id,
        "state_features": list(state_features),
        "state_indices": list(indices),
        "state_names": list(names),
        "cameras": cameras,
        "image_size": list(size),
        "tasks": sorted(set(demos.task_name)),
        "episodes_per_task": {t: demos.task_name.count(t) for t in sorted(set(demos.task_name))},
        "expert_attempts_per_task": dict(demos.attempts),
        **(extra or {}),
    }
    (partial / SALUS_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    partial.rename(out)
    return out


def read_lerobot_dataset(root: str | Path, repo_id: str | None = None) -> LeRobotDemos:
    """Load a LeRobot dataset (images stored as images, not videos) into memory with ``LeRobotDataset``."""
    path = Path(root)
    if not (path / "meta" / "info.json").is_file():
        raise DatasetError(
            f"{path} is not a LeRobot dataset (no meta/info.json); write one with "
            "`salus policy demos --format lerobot --out DIR`"
        )
    salus_meta: dict[str, Any] = {}
    if (path / SALUS_META_FILE).is_file():
        salus_meta = json.loads((path / SALUS_META_FILE).read_text())
    LeRobotDataset = _import_lerobot_dataset()
    with contextlib.redirect_stdout(sys.stderr):
        ds = LeRobotDataset(repo_id or salus_meta.get("repo_id", DEFAULT_REPO_ID), root=path)
    image_keys = [k for k, f in ds.meta.features.items() if f["dtype"] == "image"]
    if any(f["dtype"] == "video" for f in ds.meta.features.values()):
        raise DatasetError(f"{path} stores videos; the SmolVLA trainer reads datasets with image features")
    for key in ("observation.state", "action"):
        if key not in ds.meta.features:
            raise DatasetError(f"{path} has no {key!r} feature (features: {sorted(ds.meta.features)})")
    if not image_keys:
        raise DatasetError(f"{path} has no image feature")
    hf = ds.hf_dataset.with_format("numpy")
    cols = [*image_keys, "observation.state", "action", "episode_index", "task_index"]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    n = len(hf)
    for start in range(0, n, 1024):
        block = hf.select_columns(cols)[start : start + 1024]
        for c in cols:
            parts[c].append(np.asarray(block[c]))
    data = {c: np.concatenate(v) for c, v in parts.items()}
    episodes = data["episode_index"].astype(np.int64)
    if np.any(np.diff(episodes) < 0):
        raise DatasetError(f"{path}: frames are not ordered by episode")
    ends = np.flatnonzero(np.diff(episodes)) + 1
    episode_ends = np.concatenate([ends, [n]]).astype(np.int64)
    task_names = {
        int(i): str(t) for t, i in zip(ds.meta.tasks.index, ds.meta.tasks["task_index"], strict=True)
    }
    stats = {
        key: {k: np.asarray(v, dtype=np.float32) for k, v in value.items()}
        for key, value in ds.meta.stats.items()
        if key in ("observation.state", "action")
    }
    return LeRobotDemos(
        images={k: data[k].astype(np.uint8, copy=False) for k in image_keys},
        state=data["observation.state"].astype(np.float32),
        action=data["action"].astype(np.float32),
        frame_task=[task_names[int(i)] for i in data["task_index"]],
        episode_ends=episode_ends,
        stats=stats,
        fps=int(ds.meta.fps),
        salus=salus_meta,
    )
