"""Where the Franka Panda model comes from: the installed ``gymnasium-robotics`` wheel.

The kinematic chain (``chain.xml``), actuators (``actuator.xml``), defaults (``assets.xml``) and
collision meshes are read from the installed package at run time (no download, no copy). The
display meshes are replaced by the simplified ones shipped next to this file
(``panda_visual_simplified.npz``, see ``NOTICE`` and ``scripts/simplify_meshes.py``).
"""

from __future__ import annotations

import functools
import importlib.util
import struct
from pathlib import Path

import numpy as np

from salus.errors import MissingDependencyError

__all__ = [
    "franka_assets_dir",
    "read_binary_stl",
    "write_binary_stl",
    "simplified_visual_meshes",
    "franka_vfs",
]

_FRANKA_SUBDIR = ("envs", "assets", "kitchen_franka", "franka_assets")
SIMPLIFIED_MESHES = Path(__file__).with_name("panda_visual_simplified.npz")
_STL_DTYPE = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


@functools.cache
def franka_assets_dir() -> Path:
    """Directory of the Franka assets inside the installed gymnasium-robotics package.

    Found through the import system without importing the package (its ``__init__`` registers
    environments and prints notices).
    """
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the Franka Panda model is loaded from the 'gymnasium-robotics' package, which is not "
            "installed; install it with `pip install gymnasium-robotics`."
        )
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*_FRANKA_SUBDIR)
        if (path / "chain.xml").is_file():
            return path
    raise MissingDependencyError(
        "the installed 'gymnasium-robotics' package has no kitchen_franka/franka_assets/chain.xml; "
        "install gymnasium-robotics>=1.3."
    )


def read_binary_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse a binary STL into unique vertices ``(V, 3) float32`` and faces ``(F, 3) int64``."""
    (count,) = struct.unpack("<I", data[80:84])
    records = np.frombuffer(data[84 : 84 + count * _STL_DTYPE.itemsize], dtype=_STL_DTYPE)
    corners = records["v"].reshape(-1, 3)
    vertices, inverse = np.unique(corners, axis=0, return_inverse=True)
    return vertices.astype(np.float32), inverse.reshape(-1, 3).astype(np.int64)


def write_binary_stl(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """Encode a triangle mesh ``(V, 3)``, ``(F, 3)`` as binary STL bytes (normals left to MuJoCo)."""
    records = np.zeros(len(faces), dtype=_STL_DTYPE)
    records["v"] = np.asarray(vertices, dtype=np.float32)[np.asarray(faces)]
    return b"salus simplified panda mesh".ljust(80, b" ") + struct.pack("<I", len(faces)) + records.tobytes()


@functools.cache
def simplified_visual_meshes() -> dict[str, bytes]:
    """Simplified display meshes as STL bytes, keyed by the stem of the original file (``link0``)."""
    with np.load(SIMPLIFIED_MESHES) as npz:
        stems = sorted({key.split("/")[0] for key in npz.files})
        return {s: write_binary_stl(npz[f"{s}/vertices"], npz[f"{s}/faces"]) for s in stems}


@functools.cache
def franka_vfs(simplified: bool = True) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """In-memory files for ``MjSpec.from_string``: ``(include, assets)``.

    ``include`` holds the three Franka XML files; ``assets`` every mesh. MuJoCo keys assets by
    base name, so ``collision/link0.stl`` becomes ``col_link0.stl`` and ``visual/link0.stl``
    ``viz_link0.stl`` (``assets.xml`` is rewritten to match).
    """
    root = franka_assets_dir()
    include = {name: (root / name).read_bytes() for name in ("assets.xml", "chain.xml", "actuator.xml")}
    text = include["assets.xml"].decode()
    text = text.replace('file="collision/', 'file="col_').replace('file="visual/', 'file="viz_')
    include["assets.xml"] = text.encode()
    assets: dict[str, bytes] = {}
    for kind, prefix in (("collision", "col_"), ("visual", "viz_")):
        for path in sorted((root / "meshes" / kind).glob("*.stl")):
            assets[prefix + path.name] = path.read_bytes()
    if simplified and SIMPLIFIED_MESHES.is_file():
        for stem, data in simplified_visual_meshes().items():
            assets[f"viz_{stem}.stl"] = data
    return include, assets
