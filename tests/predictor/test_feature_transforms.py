"""The feature transforms' handling of NaN and infinities (the monitor's per-step fast path keeps
the exact numbers of the reference formulas)."""

from __future__ import annotations

import numpy as np

from salus.predictor import features as F


def _inputs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(300, 20)) * 50).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.02] = np.inf
    x[rng.random(x.shape) < 0.02] = -np.inf
    return x


def test_z_scores_clip_infinities_and_zero_nan_exactly_as_the_reference():
    x = _inputs()
    rng = np.random.default_rng(1)
    mean, std = rng.normal(size=20).astype(np.float32), rng.uniform(0.5, 2.0, 20).astype(np.float32)
    ref = np.clip(np.nan_to_num((x - mean) / std, nan=0.0, posinf=F.CLIP, neginf=-F.CLIP), -F.CLIP, F.CLIP)
    for rows in (x, np.where(np.isfinite(x), x, 1.0)):  # with and without non-finite values
        want = np.clip(
            np.nan_to_num((rows - mean) / std, nan=0.0, posinf=F.CLIP, neginf=-F.CLIP), -F.CLIP, F.CLIP
        )
        got = F._z(rows, mean, std)
        assert got.dtype == np.float32 and np.array_equal(got, want.astype(np.float32))
    assert np.isfinite(F._z(x, mean, std)).all() and (np.abs(ref) <= F.CLIP).all()


def test_pca_maps_non_finite_inputs_like_nan_to_num():
    x = _inputs(2)
    p = F._pca_fit(np.where(np.isfinite(x), x, 0.0), 5)
    want = np.clip((np.nan_to_num(x) - p["mean"]) @ p["components"].T / p["scale"], -F.CLIP, F.CLIP)
    got = F._pca(x, p)
    assert got.dtype == np.float32 and np.array_equal(got, want.astype(np.float32))
    clean = np.where(np.isfinite(x), x, 0.0)
    np.testing.assert_array_equal(
        F._pca(clean, p),
        np.clip((clean - p["mean"]) @ p["components"].T / p["scale"], -F.CLIP, F.CLIP).astype(np.float32),
    )
