"""Regenerate ``src/salus/sim/assets/panda_visual_simplified.npz`` from the installed Franka meshes.

The Panda display meshes inside the ``gymnasium-robotics`` wheel (Apache-2.0, see
``src/salus/sim/assets/NOTICE``) have ~135k triangles; rendering them on a CPU (Mesa llvmpipe)
caps a 96 px frame at ~30 fps. This script reduces each mesh by 95% with ``fast-simplification``
(deterministic: same input, same output) and stores vertices ``(V, 3) float32`` and faces
``(F, 3) int32`` per mesh in one small ``.npz``. Collision meshes are untouched.

Usage: ``python scripts/simplify_meshes.py [--reduction 0.95]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "salus" / "sim" / "assets" / "panda_visual_simplified.npz"


def main() -> None:
    import fast_simplification

    from salus.sim.assets import franka_assets_dir, read_binary_stl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduction", type=float, default=0.95)
    args = parser.parse_args()
    visual = franka_assets_dir() / "meshes" / "visual"
    arrays: dict[str, np.ndarray] = {}
    for path in sorted(visual.glob("*.stl")):
        vertices, faces = read_binary_stl(path.read_bytes())
        v2, f2 = fast_simplification.simplify(
            vertices.astype(np.float32), faces.astype(np.int32), target_reduction=args.reduction
        )
        arrays[f"{path.stem}/vertices"] = np.asarray(v2, dtype=np.float32)
        arrays[f"{path.stem}/faces"] = np.asarray(f2, dtype=np.int32)
        print(f"{path.name}: {len(faces)} -> {len(f2)} triangles")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
