"""Finding checkpoints on disk: a checkpoint, a directory of them (``salus train --model all``),
``seed<S>/`` directories (``--split-seeds``), and the model chosen on validation (``selection.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from salus.errors import CheckpointError, InvalidNameError

from .checkpoint import is_checkpoint_dir

__all__ = [
    "SELECTION_FILE",
    "checkpoint_dirs",
    "load_checkpoints",
    "seed_dirs",
    "choose_checkpoint",
    "write_selection",
    "read_selection",
    "read_selection_record",
]

SELECTION_FILE = "selection.json"
# Used only when no selection.json says which model won on validation.
FALLBACK_ORDER = ("salus-risk", "salus-tcn", "salus-mlp", "safe-lstm", "safe-mlp")


def seed_dirs(model_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(seed, dir)]`` of ``seed<S>/`` sub-directories, sorted by seed (empty if none)."""
    d = Path(model_dir)
    out = []
    if d.is_dir():
        for p in d.iterdir():
            if p.is_dir() and p.name.startswith("seed") and p.name[4:].isdigit():
                out.append((int(p.name[4:]), p))
    return sorted(out)


def checkpoint_dirs(model_dir: str | Path) -> list[Path]:
    """A checkpoint directory, or the checkpoints inside a directory (the first seed's for
    ``seed<S>/`` layouts)."""
    d = Path(model_dir)
    if is_checkpoint_dir(d):
        return [d]
    seeds = seed_dirs(d)
    if seeds:
        d = seeds[0][1]
    dirs = sorted(p for p in d.iterdir() if p.is_dir() and is_checkpoint_dir(p)) if d.is_dir() else []
    if not dirs:
        raise CheckpointError(f"{d} holds no predictor checkpoint (predictor.json + model.safetensors)")
    return dirs


def load_checkpoints(model_dir: str | Path) -> list[Any]:
    """Every ``TrainedPredictor`` of :func:`checkpoint_dirs` (one checkpoint, or a directory's)."""
    from .checkpoint import TrainedPredictor

    return [TrainedPredictor.load(d) for d in checkpoint_dirs(model_dir)]


def write_selection(directory: str | Path, selection: dict[str, Any]) -> Path:
    """Record which model won on validation (``{"selected": name, "val_auroc_T": {...}}``)."""
    path = Path(directory) / SELECTION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(selection, indent=1, sort_keys=True, default=float))
    tmp.replace(path)
    return path


def read_selection_record(directory: str | Path) -> dict[str, Any] | None:
    """The whole ``selection.json`` of ``directory`` (None when absent)."""
    path = Path(directory) / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(record).__name__}")
    return record


def read_selection(directory: str | Path) -> str | None:
    record = read_selection_record(directory)
    name = record.get("selected") if record else None
    return str(name) if name else None


def choose_checkpoint(model_dir: str | Path, model: str | None = None) -> Path:
    """The checkpoint to load: ``model_dir`` itself, the named ``model`` inside it, else the model
    chosen on validation (``selection.json``), else the first present of ``FALLBACK_ORDER``."""
    dirs = {p.name: p for p in checkpoint_dirs(model_dir)}
    if model is not None:
        if model not in dirs:
            raise InvalidNameError("checkpoint", model, tuple(dirs))
        return dirs[model]
    if len(dirs) == 1:
        return next(iter(dirs.values()))
    parent = next(iter(dirs.values())).parent
    picked = read_selection(parent)
    if picked in dirs:
        return dirs[picked]
    for name in FALLBACK_ORDER:
        if name in dirs:
            return dirs[name]
    return dirs[sorted(dirs)[0]]
