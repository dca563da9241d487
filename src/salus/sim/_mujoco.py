"""Import MuJoCo only after an offscreen GL backend has been chosen (see ``salus.sim.gl``).

Every module of ``salus.sim`` gets MuJoCo with ``from salus.sim._mujoco import mujoco``.
"""

from __future__ import annotations

from salus.sim.gl import select_backend

select_backend()

import mujoco  # noqa: E402

__all__ = ["mujoco"]
