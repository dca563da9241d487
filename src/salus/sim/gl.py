"""Choose a working offscreen OpenGL backend for MuJoCo before MuJoCo is imported.

MuJoCo (and PyOpenGL) fix their OpenGL platform from ``MUJOCO_GL`` when ``mujoco`` is first
imported; the default (GLFW) needs a display. On a headless CPU machine EGL (Mesa llvmpipe) or
OSMesa work. ``select_backend`` probes each in a short subprocess (a broken backend can crash the
process that tries it) and exports the first that works, so child processes (workers) inherit the
choice without probing again. ``salus.sim.env`` calls it before its first ``import mujoco``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from salus.errors import MissingDependencyError

__all__ = ["select_backend", "require_backend", "BACKENDS", "INSTALL_HINT"]

BACKENDS = ("egl", "osmesa")
INSTALL_HINT = (
    "On Debian/Ubuntu install `apt-get install libegl-mesa0 libgl1-mesa-dri` (EGL) or "
    "`apt-get install libosmesa6` (OSMesa)"
)
_PROBE = "import mujoco\nctx = mujoco.GLContext(16, 16)\nctx.make_current()\nprint('salus-gl-ok')\n"
_NO_BACKEND = "none"


def probe(backend: str) -> bool:
    """Whether MuJoCo can create an offscreen context with ``backend`` (run in a subprocess)."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "salus-gl-ok" in out.stdout


def select_backend() -> str | None:
    """Export ``MUJOCO_GL`` (``egl`` or ``osmesa``) if unset; returns the backend or None.

    A value already set (by the user or a parent process) is kept. Does nothing useful once
    ``mujoco`` has been imported, since MuJoCo has then committed to a backend.
    """
    current = os.environ.get("MUJOCO_GL", "").strip().lower()
    if current:
        return None if current == _NO_BACKEND else current
    if "mujoco" in sys.modules:
        return None
    for backend in BACKENDS:
        if probe(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    # Remember the failure for child processes, without breaking physics-only use.
    os.environ["SALUS_GL_PROBE"] = _NO_BACKEND
    return None


def require_backend() -> None:
    """Raise ``MissingDependencyError`` (with what to install) if MuJoCo cannot render offscreen.

    A ``MUJOCO_GL`` the user set (``glfw`` with a display, say) is trusted; failures then surface
    when the renderer is created (``render_error``).
    """
    current = os.environ.get("MUJOCO_GL", "").strip().lower()
    if current and current != _NO_BACKEND:
        return
    if os.environ.get("SALUS_GL_PROBE") == _NO_BACKEND:
        raise MissingDependencyError(
            f"MuJoCo offscreen rendering needs EGL or OSMesa and neither works here (tried MUJOCO_GL="
            f"{' and '.join(BACKENDS)}). {INSTALL_HINT}, or use render=False for physics-only rollouts."
        )
    raise MissingDependencyError(
        "MuJoCo was imported before salus.sim with MUJOCO_GL unset, so it uses GLFW, which needs a "
        "display. Set MUJOCO_GL=egl (or osmesa) before importing mujoco, or import salus.sim first. "
        f"{INSTALL_HINT}."
    )


def render_error(exc: BaseException) -> MissingDependencyError:
    """The error to raise when creating a MuJoCo renderer failed."""
    backend = os.environ.get("MUJOCO_GL", "")
    return MissingDependencyError(
        f"MuJoCo could not create an offscreen renderer with MUJOCO_GL={backend!r} ({exc}). "
        f"{INSTALL_HINT}, set MUJOCO_GL to a backend that works, or use render=False."
    )
