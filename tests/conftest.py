"""Shared test set-up: single-threaded torch and a headless MuJoCo rendering backend."""

from __future__ import annotations

import os

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
