"""Shared test set-up: single-threaded torch, a headless MuJoCo rendering backend, and a built-in
policy checkpoint (``policy_spec``): the shipped weights when present, else a freshly initialised
(untrained, seeded) model saved through the real checkpoint format."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Choose EGL/OSMesa before any test module imports mujoco (e.g. through pytest.importorskip):
# MuJoCo fixes its OpenGL platform at first import.
from salus.sim.gl import select_backend  # noqa: E402

select_backend()

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def policy_spec(tmp_path_factory) -> str:
    from salus.policies.builtin.adapter import DEFAULT_WEIGHTS_DIR

    if (DEFAULT_WEIGHTS_DIR / "config.json").is_file() and (
        DEFAULT_WEIGHTS_DIR / "model.safetensors"
    ).is_file():
        return "builtin"
    import numpy as np
    import torch

    from salus.policies.builtin.configuration_builtin import BuiltinConfig
    from salus.policies.builtin.modeling_builtin import BuiltinFlowPolicy, NormalizationStats, save_pretrained

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("policy")
    stats = NormalizationStats(np.zeros(22), np.ones(22), np.zeros(4), np.full(4, 0.5))
    save_pretrained(directory, BuiltinFlowPolicy(BuiltinConfig()), stats)
    return f"builtin:{directory}"
