"""Scripted-expert demonstrations and the behaviour-cloning helpers every policy trainer shares.

``record_demonstrations`` runs ``salus.sim.ScriptedExpert`` in the simulator (with DART-style noise
on the executed action, the expert's clean action as the label, so the data shows recoveries) and
keeps successful episodes; the built-in trainer fits them directly and ``salus policy demos
--format lerobot`` exports them as a LeRobotDataset for the SmolVLA trainer. ``chunk_indices`` and
``random_shift`` build both trainers' batches. Cheap: torch is imported only by ``random_shift``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from salus.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FrameEpisodes",
    "Demonstrations",
    "record_demonstrations",
    "check_demo_noise",
    "resolve_demo_counts",
    "task_demo_counts",
    "chunk_indices",
    "random_shift",
    "DEMO_SEED_OFFSET",
]

# Demonstration episodes use seeds DEMO_SEED_OFFSET + i, far from the evaluation seeds (0, 1, ...).
DEMO_SEED_OFFSET = 1_000_000

Progress = Callable[[str, int, int], None]


class FrameEpisodes:
    """What every in-memory demonstration set has: frames ``state`` (N, D) over episodes that end at
    ``episode_ends`` (cumulative); a base of :class:`Demonstrations` and the SmolVLA trainer's
    ``LeRobotDemos``."""

    state: np.ndarray
    episode_ends: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.state.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.shape[0])


@dataclass
class Demonstrations(FrameEpisodes):
    """Successful expert episodes, concatenated: N frames over episodes ``episode_ends`` (cumulative)."""

    images: dict[str, np.ndarray]  # camera -> (N, S, S, 3) uint8
    state: np.ndarray  # (N, state_dim) float32
    action: np.ndarray  # (N, action_dim) float32, the expert's clean action
    task: list[str]  # (episodes,) task text of each episode
    task_name: list[str]  # (episodes,) task name of each episode
    episode_ends: np.ndarray  # (episodes,) int64
    attempts: dict[str, int] = field(default_factory=dict)  # task -> episodes run (incl. failed ones)


def check_demo_noise(demo_noise: float) -> float:
    """Validate the DART noise std (normalised action units): a finite number in [0, 1]."""
    value = float(demo_noise)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"demo noise std must be a number in [0, 1], got {demo_noise}")
    return value


def resolve_demo_counts(tasks: Sequence[str], demos_per_task: int | Mapping[str, int]) -> dict[str, int]:
    """Successful demonstrations to record per task: ``{task: count}`` in the order of ``tasks``.

    ``demos_per_task`` is one count for every task or a mapping that names every task of ``tasks``
    and no other; each count is an int >= 1 (anything else is an ``InvalidInputError``).
    """
    if isinstance(demos_per_task, Mapping):
        unknown = sorted(set(demos_per_task) - set(tasks))
        missing = [t for t in tasks if t not in demos_per_task]
        if unknown or missing:
            raise InvalidInputError(
                f"per-task demonstration counts must name exactly the tasks {list(tasks)}; "
                f"unknown {unknown}, missing {missing}"
            )
        counts = {t: demos_per_task[t] for t in tasks}
    else:
        counts = dict.fromkeys(tasks, demos_per_task)
    for task, n in counts.items():
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise InvalidInputError(f"demos_per_task must be >= 1 for every task, got {n!r} for {task!r}")
    return {t: int(n) for t, n in counts.items()}


def task_demo_counts(tasks: Sequence[str], demos: int, task_demos: Sequence[str]) -> int | dict[str, int]:
    """``--demos`` and ``--task-demos`` (``TASK=N`` items) -> the count per task: ``demos`` itself when
    nothing overrides it (the recording record of datasets written before the option existed), else
    ``{task: count}``."""
    if not task_demos:
        return demos
    counts = dict.fromkeys(tasks, demos)
    named: set[str] = set()
    for item in task_demos:
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise InvalidInputError(f"--task-demos takes TASK=N with an integer N >= 1, got {item!r}")
        if name not in tasks:
            raise InvalidInputError(
                f"--task-demos names {name!r}, which is not a training task {list(tasks)}"
            )
        if name in named:
            raise InvalidInputError(f"--task-demos names {name!r} twice")
        named.add(name)
        counts[name] = int(value)
    return counts


def record_demonstrations(
    tasks: Sequence[str],
    demos_per_task: int | Mapping[str, int],
    *,
    seed: int = 0,
    image_size: int = 96,
    cameras: Sequence[str] = ("front", "wrist"),
    action_noise: float = 0.1,
    demo_noise: float = 0.0,
    max_attempts_factor: float = 2.0,
    progress: Progress | None = None,
) -> Demonstrations:
    """Run the scripted expert until ``demos_per_task`` successful episodes per task are recorded.

    ``demos_per_task``: one count for every task, or ``{task: count}`` naming every task (see
    :func:`resolve_demo_counts`); a task's episodes and seeds do not depend on the other tasks' counts.
    Episode i of a task uses env seed ``DEMO_SEED_OFFSET + seed * 10_000 + i``. With ``demo_noise`` 0 (the
    default, the original recipe) an episode executes, with probability 0.5, the expert action plus
    Gaussian noise (std ``action_noise``, position axes only). With ``demo_noise`` > 0 (DART-style noise
    injection) every episode executes the expert action plus Gaussian noise of std ``demo_noise`` on the
    position axes (normalised action units; the gripper is untouched). In both cases the recorded label
    is the expert's clean action for the observed state and only successful episodes are kept.
    """
    from salus.sim import ScriptedExpert, make_env
    from salus.sim.rollout import run_loop

    counts = resolve_demo_counts(tasks, demos_per_task)
    check_demo_noise(demo_noise)
    rng = np.random.default_rng(seed)
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    states: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    texts: list[str] = []
    names: list[str] = []
    ends: list[int] = []
    attempts: dict[str, int] = {}
    total = 0
    for task in tasks:
        env = make_env(task, image_size=image_size, cameras=tuple(cameras))
        expert = ScriptedExpert(env)
        wanted = counts[task]
        kept = tried = 0
        limit = max(wanted, math.ceil(wanted * max_attempts_factor))
        while kept < wanted and tried < limit:
            ep_seed = DEMO_SEED_OFFSET + seed * 10_000 + tried
            tried += 1
            if demo_noise > 0:
                noisy, noise_std = True, demo_noise
            else:  # the original recipe, bit for bit (same generator draws)
                noisy, noise_std = bool(rng.random() < 0.5), action_noise
            ep_img: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
            ep_state: list[np.ndarray] = []
            ep_action: list[np.ndarray] = []

            def act(
                obs: dict[str, Any],
                ep_img: dict[str, list[np.ndarray]] = ep_img,
                ep_state: list[np.ndarray] = ep_state,
                ep_action: list[np.ndarray] = ep_action,
                noisy: bool = noisy,
                noise_std: float = noise_std,
                expert: Any = expert,
            ) -> np.ndarray:
                label = np.asarray(expert.act(obs), dtype=np.float32)
                for c in cameras:
                    ep_img[c].append(obs[f"image_{c}"])
                ep_state.append(np.asarray(obs["state"], dtype=np.float32))
                ep_action.append(label)
                executed = label.copy()
                if noisy:
                    executed[:3] += rng.normal(0.0, noise_std, 3).astype(np.float32)
                return np.clip(executed, -1.0, 1.0)

            first: list[dict[str, Any]] = []

            def on_reset(
                obs: dict[str, Any], first: list[dict[str, Any]] = first, expert: Any = expert
            ) -> None:
                expert.reset()
                first.append(obs)

            end = run_loop(env, act, seed=ep_seed, on_reset=on_reset)
            text = first[0]["task"]
            success = bool(end.info.get("label", {}).get("success", end.info.get("success", False)))
            if not success:
                continue
            kept += 1
            for c in cameras:
                images[c].append(np.stack(ep_img[c]))
            states.append(np.stack(ep_state))
            actions.append(np.stack(ep_action))
            texts.append(text)
            names.append(task)
            total += len(ep_state)
            ends.append(total)
            if progress is not None:
                progress(task, kept, wanted)
        attempts[task] = tried
        env.close()
        if kept == 0:
            raise InvalidInputError(
                f"the scripted expert did not succeed on task {task!r} in {tried} episodes"
            )
    return Demonstrations(
        images={c: np.concatenate(v) for c, v in images.items()},
        state=np.concatenate(states),
        action=np.concatenate(actions),
        task=texts,
        task_name=names,
        episode_ends=np.asarray(ends, dtype=np.int64),
        attempts=attempts,
    )


def chunk_indices(episode_ends: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For every frame, the frame indices of its target chunk (N, C) and the padding mask (N, C)."""
    starts = np.concatenate([[0], episode_ends[:-1]])
    n = int(episode_ends[-1])
    end_of = np.repeat(episode_ends, episode_ends - starts)  # (N,) end (exclusive) of each frame's episode
    idx = np.arange(n)[:, None] + np.arange(chunk_size)[None, :]
    pad = idx >= end_of[:, None]
    return np.minimum(idx, end_of[:, None] - 1), pad


def random_shift(images: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by ``shift`` (replicate) and crop back at a random offset per sample: (B, 3, S, S)."""
    import torch
    import torch.nn.functional as F

    if shift == 0:
        return images
    b, _, s, _ = images.shape
    padded = F.pad(images, (shift,) * 4, mode="replicate")
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    return torch.stack([padded[i, :, oy[i] : oy[i] + s, ox[i] : ox[i] + s] for i in range(b)])
