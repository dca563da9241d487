"""salus adapter for LeRobot's SmolVLA (an optional extra: ``make install-lerobot``).

Importing this package is cheap; torch and LeRobot are imported when an adapter is built.
``load_smolvla("PATH")`` (the ``smolvla:PATH`` policy spec), ``SmolVLAAdapter.from_pretrained``,
``build_tiny_smolvla(DIR)`` (a tiny random checkpoint for offline tests),
``ensure_torchvision_importable()`` (call it before importing ``lerobot`` yourself on a CPU torch),
``SalusMapping`` (a checkpoint's ``salus_mapping.json``), ``train_smolvla`` / ``SmolVLATrainConfig``
(behaviour cloning in the simulator), ``export_lerobot_dataset`` / ``read_lerobot_dataset``
(demonstrations as a LeRobotDataset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salus._lazy import load_lazy
from salus.policies.smolvla.configuration_smolvla import (
    DEFAULT_IMAGE_KEYS,
    DEFAULT_STATE_KEY,
    HOOK_MODULE,
    MAPPING_FILE,
    PREFIX_MODULE,
    SalusMapping,
    SmolVLAAdapterConfig,
)

if TYPE_CHECKING:
    from salus.policies.smolvla._compat import ensure_torchvision_importable
    from salus.policies.smolvla.adapter import SmolVLAAdapter, load_smolvla
    from salus.policies.smolvla.lerobot_dataset import export_lerobot_dataset, read_lerobot_dataset
    from salus.policies.smolvla.tiny import build_tiny_smolvla
    from salus.policies.smolvla.training import SmolVLATrainConfig, train_smolvla

__all__ = [
    "SmolVLAAdapterConfig",
    "SmolVLAAdapter",
    "load_smolvla",
    "build_tiny_smolvla",
    "ensure_torchvision_importable",
    "SalusMapping",
    "MAPPING_FILE",
    "SmolVLATrainConfig",
    "train_smolvla",
    "export_lerobot_dataset",
    "read_lerobot_dataset",
    "DEFAULT_IMAGE_KEYS",
    "DEFAULT_STATE_KEY",
    "HOOK_MODULE",
    "PREFIX_MODULE",
]

_LAZY = {
    "SmolVLAAdapter": "salus.policies.smolvla.adapter",
    "load_smolvla": "salus.policies.smolvla.adapter",
    "build_tiny_smolvla": "salus.policies.smolvla.tiny",
    "ensure_torchvision_importable": "salus.policies.smolvla._compat",
    "SmolVLATrainConfig": "salus.policies.smolvla.training",
    "train_smolvla": "salus.policies.smolvla.training",
    "export_lerobot_dataset": "salus.policies.smolvla.lerobot_dataset",
    "read_lerobot_dataset": "salus.policies.smolvla.lerobot_dataset",
}


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, name)
