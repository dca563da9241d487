"""Behaviour cloning of LeRobot's real ``SmolVLAPolicy`` on salus demonstrations, at a CPU size.

``build_smolvla_policy`` builds the policy from scratch offline (a small SmolVLM config and a
word-level tokenizer in ``OUT/vlm``, LeRobot's ``SmolVLAConfig`` with ``load_vlm_weights=False``,
``train_expert_only=False``, ``freeze_vision_encoder=False``) and its pre/post-processors with the
dataset's statistics. ``train_smolvla`` fits it on a :class:`LeRobotDemos` (the LeRobot dataset that
``salus policy demos --format lerobot`` writes) with the flow-matching loss **masked to the real
action dimensions and chunk positions** (lerobot 0.4.4's ``forward()`` reads ``actions_id_pad``,
lerobot#1707, so its own loss averages over all 32 padded dimensions and padded positions), writes
a checkpoint every ``checkpoint_every`` steps and resumes from the last one after a kill.

Every random draw (batch indices, image shifts, flow noise and time) comes from one seeded
``torch.Generator`` saved with each checkpoint, so a resumed run ends with the same weights as an
uninterrupted one. Shapes: B batch, C chunk size, A action dimension, A_m = ``max_action_dim``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salus.errors import CheckpointError, InvalidInputError
from salus.policies.demonstrations import chunk_indices, random_shift
from salus.policies.smolvla._compat import import_lerobot_smolvla
from salus.policies.smolvla.configuration_smolvla import DEFAULT_STATE_KEY, MAPPING_FILE, SalusMapping
from salus.policies.smolvla.lerobot_dataset import LeRobotDemos
from salus.policies.smolvla.tiny import TINY_VLM_DIRNAME, build_vlm_folder

__all__ = [
    "SmolVLATrainConfig",
    "build_smolvla_policy",
    "train_smolvla",
    "masked_flow_loss",
    "package_smolvla",
    "CHECKPOINTS_DIRNAME",
    "TRAIN_LOG_FILE",
]

CHECKPOINTS_DIRNAME = "checkpoints"
TRAIN_LOG_FILE = "train_log.json"
_STATE_JSON = "training_state.json"
_STATE_TENSORS = "training_state.safetensors"
_LAST = "last.json"


@dataclass
class SmolVLATrainConfig:
    """Model size and behaviour-cloning recipe (every field is saved with each checkpoint).

    Model: a SmolVLM of width ``hidden_size`` with ``text_layers`` text and ``vision_layers``
    vision layers on ``image_size`` px images cut in ``patch_size`` px patches; the action expert is
    ``expert_width_multiplier * hidden_size`` wide. Recipe: AdamW (betas 0.9 / 0.95), linear warm-up
    then cosine decay to 5% of ``lr``, gradient clipping, random-shift augmentation of
    ``image_shift`` px, state / action standard deviations floored at ``std_floor``.
    """

    hidden_size: int = 128
    text_layers: int = 4
    vision_layers: int = 2
    image_size: int = 96
    patch_size: int = 12
    expert_width_multiplier: float = 0.75
    chunk_size: int = 16
    n_action_steps: int = 4
    num_steps: int = 10
    tokenizer_max_length: int = 24
    steps: int = 7000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    image_shift: int = 2
    std_floor: float = 1e-2
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, int) or isinstance(value, bool)):
                raise InvalidInputError(f"SmolVLATrainConfig.{f.name} must be an int, got {value!r}")
        positive = ("hidden_size", "text_layers", "vision_layers", "image_size", "patch_size", "chunk_size",
                    "n_action_steps", "num_steps", "tokenizer_max_length", "steps", "batch_size",
                    "checkpoint_every", "keep_checkpoints")  # fmt: skip
        bad = [name for name in positive if getattr(self, name) < 1]
        if bad:
            raise InvalidInputError(f"SmolVLATrainConfig fields {bad} must be >= 1")
        if self.n_action_steps > self.chunk_size:
            raise InvalidInputError(
                f"n_action_steps ({self.n_action_steps}) must be <= chunk_size ({self.chunk_size})"
            )
        if self.hidden_size % 16:
            raise InvalidInputError(
                f"hidden_size must be a multiple of 16 (head width), got {self.hidden_size}"
            )
        numbers = (self.lr, self.weight_decay, self.grad_clip, self.std_floor, self.expert_width_multiplier)
        if not all(math.isfinite(v) for v in numbers) or not (
            self.lr > 0 and self.weight_decay >= 0 and self.grad_clip > 0 and self.std_floor > 0
        ):
            raise InvalidInputError(
                "SmolVLATrainConfig needs finite lr > 0, weight_decay >= 0, grad_clip > 0, std_floor > 0; got "
                f"lr={self.lr}, weight_decay={self.weight_decay}, grad_clip={self.grad_clip}, std_floor={self.std_floor}"
            )
        if self.warmup_steps < 0 or self.image_shift < 0 or not 0 < self.expert_width_multiplier <= 4:
            raise InvalidInputError(
                "SmolVLATrainConfig needs warmup_steps >= 0, image_shift >= 0, 0 < expert_width_multiplier <= 4"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at 0-based ``step``: linear warm-up, then cosine decay to 0.05."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _floored_stats(data: LeRobotDemos, floor: float) -> dict[str, dict[str, torch.Tensor]]:
    """The dataset's state / action mean and std (std floored: near-constant entries stay finite)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, values in ((DEFAULT_STATE_KEY, data.state), ("action", data.action)):
        st = data.stats.get(key, {})
        mean = np.asarray(st["mean"], np.float32) if "mean" in st else values.mean(0).astype(np.float32)
        std = np.asarray(st["std"], np.float32) if "std" in st else values.std(0).astype(np.float32)
        out[key] = {"mean": torch.from_numpy(mean.copy()), "std": torch.from_numpy(np.maximum(std, floor))}
    return out


def build_smolvla_policy(
    out_dir: str | Path, config: SmolVLATrainConfig, data: LeRobotDemos
) -> tuple[Any, Any, Any]:
    """A fresh (seeded, random) ``SmolVLAPolicy`` for ``data``'s features, with its processors.

    Writes the VLM folder (config, tokenizer with the dataset's task words, processor) into
    ``OUT/vlm``; returns (policy, preprocessor, postprocessor).
    """
    lr = import_lerobot_smolvla()
    out = Path(out_dir)
    vlm_dir = out / TINY_VLM_DIRNAME
    build_vlm_folder(
        vlm_dir,
        image_size=config.image_size,
        hidden_size=config.hidden_size,
        num_layers=config.text_layers,
        vision_layers=config.vision_layers,
        patch_size=config.patch_size,
        texts=sorted(set(data.frame_task)),
    )
    ft, pf, nm = lr.FeatureType, lr.PolicyFeature, lr.NormalizationMode
    input_features = {
        key: pf(type=ft.VISUAL, shape=(3, int(img.shape[1]), int(img.shape[2])))
        for key, img in data.images.items()
    }
    input_features[DEFAULT_STATE_KEY] = pf(type=ft.STATE, shape=(int(data.state.shape[1]),))
    action_dim = int(data.action.shape[1])
    policy_config = lr.SmolVLAConfig(
        input_features=input_features,
        output_features={"action": pf(type=ft.ACTION, shape=(action_dim,))},
        chunk_size=config.chunk_size,
        n_action_steps=config.n_action_steps,
        num_steps=config.num_steps,
        vlm_model_name=str(vlm_dir.resolve()),
        load_vlm_weights=False,
        train_expert_only=False,
        freeze_vision_encoder=False,
        num_vlm_layers=config.text_layers,
        expert_width_multiplier=config.expert_width_multiplier,
        resize_imgs_with_padding=(config.image_size, config.image_size),
        tokenizer_max_length=config.tokenizer_max_length,
        max_state_dim=max(32, int(data.state.shape[1])),
        max_action_dim=max(32, action_dim),
        optimizer_lr=config.lr,
        device="cpu",
        push_to_hub=False,
        normalization_mapping={"VISUAL": nm.IDENTITY, "STATE": nm.MEAN_STD, "ACTION": nm.MEAN_STD},
    )
    torch.manual_seed(config.seed)
    with contextlib.redirect_stdout(sys.stderr):  # LeRobot print()s while building the model
        policy = lr.SmolVLAPolicy(policy_config)
    pre, post = lr.make_smolvla_pre_post_processors(
        policy_config, dataset_stats=_floored_stats(data, config.std_floor)
    )
    return policy, pre, post


def masked_flow_loss(
    policy: Any, batch: dict[str, Any], is_pad: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Flow-matching loss of a preprocessed batch over the real action dims and unpadded positions.

    ``is_pad`` (B, C) marks chunk positions past the episode's end. Noise (B, C, A_m) and time (B,)
    (Beta(1.5, 1) as SmolVLA draws it: ``U ** (1 / 1.5)``) come from ``gen``.
    """
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    actions = policy.prepare_action(batch)  # (B, C, A_m)
    noise = torch.randn(actions.shape, generator=gen)
    t = torch.rand(actions.shape[0], generator=gen).pow(1.0 / 1.5) * 0.999 + 0.001
    losses = policy.model.forward(
        images,
        img_masks,
        batch[OBS_LANGUAGE_TOKENS],
        batch[OBS_LANGUAGE_ATTENTION_MASK],
        state,
        actions,
        noise,
        t,
    )  # (B, C, A_m)
    a = int(policy.config.action_feature.shape[0])
    keep = (~is_pad).to(losses.dtype)[..., None]  # (B, C, 1)
    return (losses[..., :a] * keep).sum() / (keep.sum() * a).clamp_min(1.0)


# -- checkpoints -----------------------------------------------------------------------------------
def _save_training_state(
    folder: Path, opt: torch.optim.Optimizer, gen: torch.Generator, meta: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {"generator": gen.get_state()}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    save_file(tensors, str(folder / _STATE_TENSORS))
    meta = {**meta, "param_groups": state["param_groups"]}
    (folder / _STATE_JSON).write_text(json.dumps(meta) + "\n")


def _load_training_state(folder: Path, opt: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, Any]:
    from safetensors.torch import load_file

    meta = json.loads((folder / _STATE_JSON).read_text())
    tensors = load_file(str(folder / _STATE_TENSORS))
    gen.set_state(tensors.pop("generator"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


def _write_policy(folder: Path, policy: Any, pre: Any, post: Any) -> None:
    with contextlib.redirect_stdout(sys.stderr):
        policy.save_pretrained(folder)
        pre.save_pretrained(folder)
        post.save_pretrained(folder)


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB (None where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _last_checkpoint(ckpt_root: Path) -> Path | None:
    pointer = ckpt_root / _LAST
    if not pointer.is_file():
        return None
    folder = ckpt_root / json.loads(pointer.read_text())["dir"]
    if not (folder / _STATE_JSON).is_file():
        raise CheckpointError(f"{pointer} points to {folder}, which has no {_STATE_JSON}; delete {ckpt_root}")
    return folder


def _checkpoint(
    ckpt_root: Path,
    step: int,
    policy: Any,
    pre: Any,
    post: Any,
    opt: Any,
    gen: Any,
    meta: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step-N`` atomically (folder renamed into place, pointer replaced), prune old ones."""
    name = f"step-{step:07d}"
    partial = ckpt_root / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _write_policy(partial, policy, pre, post)
    _save_training_state(partial, opt, gen, meta)
    final = ckpt_root / name
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    tmp = ckpt_root / f"{_LAST}.tmp"
    tmp.write_text(json.dumps({"dir": name, "step": step}) + "\n")
    os.replace(tmp, ckpt_root / _LAST)
    done = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _check_resume_data(
    resume: Path, meta: dict[str, Any], fingerprint: dict[str, Any]
) -> list[dict[str, Any]]:
    """Refuse a resume on another dataset; return the record of same-shaped data that differs in content.

    The demonstrations are re-recorded when a checkpoint moves to a fresh machine (``runs/`` is not
    kept): the same seeds give the same frames, episodes and tasks, but another CPU may change the
    floats in their last bits, so a changed SHA-256 alone continues, and is recorded (``data_changes``)
    in every later checkpoint and the final ``train_log.json``.
    """
    recorded = meta.get("data")
    changes = list(meta.get("data_changes", []))
    if recorded is None:  # a checkpoint written before fingerprints were kept
        return changes
    shape = ("frames", "episodes", "tasks")
    diff = {k: (recorded.get(k), fingerprint[k]) for k in shape if recorded.get(k) != fingerprint[k]}
    if diff:
        raise CheckpointError(
            f"{resume} was trained on another dataset (recorded, given): {diff}; resume with the same "
            "--dataset, or choose another --out"
        )
    if recorded.get("sha256") != fingerprint["sha256"]:
        changes.append({"step": int(meta["step"]), "sha256": fingerprint["sha256"]})
        print(
            f"warning: resuming {resume} on data of the same frames, episodes and tasks but other content "
            "(re-recorded on another machine?); recorded in train_log.json's data_changes",
            file=sys.stderr,
        )
    return changes


_MODEL_FIELDS = ("hidden_size", "text_layers", "vision_layers", "image_size", "patch_size",
                 "expert_width_multiplier", "chunk_size", "n_action_steps", "num_steps",
                 "tokenizer_max_length", "std_floor")  # fmt: skip


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_init_from(init: Path, out: Path, config: SmolVLATrainConfig, pre: Any) -> dict[str, Any]:
    """Check that the finished policy folder ``init`` can seed this run; returns what to record.

    The model shape, the tokenizer (``vlm/``) and the normalisation statistics must equal this
    run's, so its weights mean the same thing here; anything else is an ``InvalidInputError``.
    """
    import tempfile

    log_file = init / TRAIN_LOG_FILE
    if not (log_file.is_file() and (init / "model.safetensors").is_file()):
        raise InvalidInputError(
            f"--init-from {init} is not a finished `salus policy train --arch smolvla` folder "
            f"(it needs {TRAIN_LOG_FILE} and model.safetensors)"
        )
    log = json.loads(log_file.read_text())
    recorded = log.get("train_config", {})
    wanted = config.to_dict()
    diff = {k: (recorded.get(k), wanted[k]) for k in _MODEL_FIELDS if recorded.get(k) != wanted[k]}
    if diff:
        raise InvalidInputError(f"--init-from {init} has another model shape (its, this run's): {diff}")
    if _folder_files(init / TINY_VLM_DIRNAME) != _folder_files(out / TINY_VLM_DIRNAME):
        raise InvalidInputError(
            f"--init-from {init} has another tokenizer/VLM config ({TINY_VLM_DIRNAME}/): train it on the same tasks"
        )
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(sys.stderr):
            pre.save_pretrained(tmp)
        stats = sorted(Path(tmp).glob("*normalizer*.safetensors"))
        theirs = sorted(init.glob("policy_preprocessor*normalizer*.safetensors"))
        if [p.name for p in stats] != [p.name for p in theirs] or any(
            a.read_bytes() != b.read_bytes() for a, b in zip(stats, theirs, strict=True)
        ):
            raise InvalidInputError(
                f"--init-from {init} was trained with other normalisation statistics: use the same dataset"
            )
    steps_before = int((log.get("init_from") or {}).get("total_steps", 0)) + int(recorded.get("steps", 0))
    return {"path": str(init), "steps": int(recorded.get("steps", 0)), "total_steps": steps_before}


def train_smolvla(
    data: LeRobotDemos,
    out_dir: str | Path,
    config: SmolVLATrainConfig,
    *,
    init_from: str | Path | None = None,
    extra_log: dict[str, Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train a SmolVLA on ``data`` into the LeRobot checkpoint folder ``out_dir``; returns the log.

    Resumes from ``OUT/checkpoints`` when a checkpoint of the same config is there (else
    ``CheckpointError``). ``init_from``: a finished folder of this trainer whose weights start the
    run (fine-tuning, with a fresh optimiser and schedule), checked by ``_check_init_from``. The
    finished folder holds ``config.json``, ``model.safetensors``, the pre/post-processors and
    statistics, ``vlm/``, ``salus_mapping.json`` and ``train_log.json``; the checkpoints are
    removed. ``progress(step, steps, mean loss of the last 50 steps)``.
    """
    from safetensors.torch import load_model

    out = Path(out_dir)
    if (out / TRAIN_LOG_FILE).is_file():
        raise InvalidInputError(
            f"{out} already holds a trained policy ({TRAIN_LOG_FILE}); choose another --out"
        )
    if data.state_indices is not None and len(data.state_indices) != data.state.shape[1]:
        raise InvalidInputError("the dataset's meta/salus.json state_indices do not match observation.state")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_root = out / CHECKPOINTS_DIRNAME
    resume = _last_checkpoint(ckpt_root)
    wanted = config.to_dict()
    if resume is not None:
        resume_meta = json.loads((resume / _STATE_JSON).read_text())
        recorded = resume_meta["train_config"]
        init_recorded = resume_meta.get("init_from")
        init_wanted = None if init_from is None else str(Path(init_from))
        if (init_recorded or {}).get("path") != init_wanted:
            raise CheckpointError(
                f"{resume} was started from --init-from {init_recorded and init_recorded['path']}, not "
                f"{init_wanted}; rerun with the same options to resume, or delete {ckpt_root} to start over"
            )
        if recorded != wanted:
            diff = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
            raise CheckpointError(
                f"{resume} was written with another training config (recorded, requested): {diff}; rerun with "
                f"the same options to resume, or delete {ckpt_root} to start over"
            )
    fingerprint = data.fingerprint()
    data_changes: list[dict[str, Any]] = []
    if resume is not None:
        data_changes = _check_resume_data(resume, resume_meta, fingerprint)
    policy, pre, post = build_smolvla_policy(out, config, data)
    init: dict[str, Any] | None = None
    if init_from is not None:
        init = _check_init_from(Path(init_from), out, config, pre)
        if resume is None:  # a resumed run loads its checkpoint's weights below instead
            load_model(policy, str(Path(init_from) / "model.safetensors"))
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    start, elapsed, cpu_before = 0, 0.0, 0.0
    if resume is not None:
        load_model(policy, str(resume / "model.safetensors"))
        meta = _load_training_state(resume, opt, gen)
        start, losses, elapsed = int(meta["step"]), list(meta["losses"]), float(meta["train_seconds"])
        cpu_before = float(meta.get("train_cpu_seconds", 0.0))
    policy.train()

    chunk_idx, chunk_pad = chunk_indices(data.episode_ends, config.chunk_size)
    chunk_idx_t, chunk_pad_t = torch.from_numpy(chunk_idx), torch.from_numpy(chunk_pad)
    images = {k: torch.from_numpy(v) for k, v in data.images.items()}
    state = torch.from_numpy(data.state)
    action = torch.from_numpy(data.action)
    n = data.num_frames
    t0 = time.perf_counter() - elapsed
    cpu0 = time.process_time() - cpu_before
    for step in range(start, config.steps):
        idx = torch.randint(0, n, (config.batch_size,), generator=gen)
        raw: dict[str, Any] = {}
        for key, img in images.items():
            x = img[idx].permute(0, 3, 1, 2).float().div_(255.0)
            raw[key] = random_shift(x, config.image_shift, gen)
        raw[DEFAULT_STATE_KEY] = state[idx]
        raw["action"] = action[chunk_idx_t[idx]]  # (B, C, A)
        raw["task"] = [data.frame_task[int(i)] for i in idx]
        batch = pre(raw)
        for g in opt.param_groups:
            g["lr"] = config.lr * config.lr_factor(step)
        loss = masked_flow_loss(policy, batch, chunk_pad_t[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % config.checkpoint_every == 0 and done < config.steps:
            meta = {
                "step": done,
                "losses": losses,
                "train_seconds": time.perf_counter() - t0,
                "train_cpu_seconds": time.process_time() - cpu0,
                "train_config": wanted,
                "init_from": init,
                "data": fingerprint,
                "data_changes": data_changes,
            }
            _checkpoint(ckpt_root, done, policy, pre, post, opt, gen, meta, config.keep_checkpoints)
        if progress is not None:
            progress(done, config.steps, float(np.mean(losses[-50:])))
    policy.eval()
    window = max(1, min(100, config.steps // 10))
    log: dict[str, Any] = {
        "arch": "smolvla",
        "train_config": wanted,
        "frames": n,
        "episodes": data.num_episodes,
        "parameters": int(sum(p.numel() for p in policy.parameters())),
        "trainable_parameters": int(sum(p.numel() for p in params)),
        "resumed_from_step": start,
        "init_from": init,
        "data": fingerprint,
        "data_changes": data_changes,
        "loss_first": float(np.mean(losses[:window])),
        "loss_last": float(np.mean(losses[-window:])),
        "losses_every_100": [
            round(float(np.mean(losses[i : i + 100])), 5) for i in range(0, len(losses), 100)
        ],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "train_cpu_seconds": round(time.process_time() - cpu0, 1),
        "peak_rss_mb": _peak_rss_mb(),
        **(extra_log or {}),
    }
    _write_policy(out, policy, pre, post)
    SalusMapping(
        state_indices=data.state_indices,
        image_keys=data.image_keys,
        state_names=tuple(data.salus["state_names"]) if "state_names" in data.salus else None,
    ).save(out)
    (out / TRAIN_LOG_FILE).write_text(json.dumps(log, indent=2) + "\n")
    shutil.rmtree(ckpt_root, ignore_errors=True)
    return log


# Files of a finished folder that a packaged copy keeps (plus ``vlm/``); fitted signal statistics too
# (salus.signals.analysis.STATS_FILENAME; policies sit below signals, so the name is spelled here).
_PACKAGE_GLOBS = ("config.json", "model.safetensors", "policy_*processor*.json", "policy_*processor*.safetensors",
                  MAPPING_FILE, TRAIN_LOG_FILE, "extractor_stats.json", "extractor_stats.safetensors")  # fmt: skip


def package_smolvla(src: str | Path, dst: str | Path) -> Path:
    """Copy the finished policy folder ``src`` to ``dst`` as a relocatable folder; returns ``dst``.

    The trainer writes the absolute path of its ``vlm/`` folder into ``config.json``
    (``vlm_model_name``) and the preprocessor (``tokenizer_name``); the copy names ``vlm`` instead, so
    it loads from wherever it is installed (salus resolves it against the folder; with LeRobot
    alone set ``config.vlm_model_name`` to ``DST/vlm``). Checkpoints and demonstrations stay behind.
    """
    src_dir, out = Path(src), Path(dst)
    for name in ("config.json", "model.safetensors", TRAIN_LOG_FILE):
        if not (src_dir / name).is_file():
            raise InvalidInputError(f"{src_dir} is not a finished smolvla policy folder: it has no {name}")
    if not (src_dir / TINY_VLM_DIRNAME).is_dir():
        raise InvalidInputError(f"{src_dir} has no {TINY_VLM_DIRNAME}/ folder (VLM config and tokenizer)")
    if out.resolve() == src_dir.resolve():
        raise InvalidInputError("package_smolvla needs a destination other than its source")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for pattern in _PACKAGE_GLOBS:
        for f in sorted(src_dir.glob(pattern)):
            shutil.copy2(f, tmp / f.name)
    shutil.copytree(src_dir / TINY_VLM_DIRNAME, tmp / TINY_VLM_DIRNAME)
    cfg = json.loads((tmp / "config.json").read_text())
    cfg["vlm_model_name"] = TINY_VLM_DIRNAME
    (tmp / "config.json").write_text(json.dumps(cfg, indent=4) + "\n")
    pre_file = tmp / "policy_preprocessor.json"
    if pre_file.is_file():
        pre = json.loads(pre_file.read_text())
        for step in pre.get("steps", []):
            if "tokenizer_name" in step.get("config", {}):
                step["config"]["tokenizer_name"] = TINY_VLM_DIRNAME
        pre_file.write_text(json.dumps(pre, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
