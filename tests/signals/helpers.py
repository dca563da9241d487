"""Constructed StepInternals and robot states for the signal tests."""

from __future__ import annotations

import numpy as np

from salus.policies.base import StepInternals
from salus.sim.spec import STATE_DIM, STATE_SLICES


def robot_state(b: int = 1, ee=(0.5, 0.0, 0.2), joints=None) -> np.ndarray:
    """(B, 22) state with the end effector at ``ee`` and joints at the middle of their range by default."""
    s = np.zeros((b, STATE_DIM), dtype=np.float32)
    s[:, STATE_SLICES["ee_pos"]] = ee
    s[:, STATE_SLICES["joint_pos"]] = (
        joints if joints is not None else [0.0, 0.0, 0.0, -1.7359, 0.0, 0.2277, 0.0]
    )
    return s


def internals(
    *,
    action,
    chunk=None,
    chunk_id=0,
    chunk_offset=0,
    new_chunk=False,
    hidden=None,
    emb=None,
    samples=None,
    probs=None,
) -> StepInternals:
    """One-environment (or batch, if arrays have a leading B) StepInternals from small values."""
    a = np.atleast_2d(np.asarray(action, dtype=np.float32))
    b = a.shape[0]
    ch = np.repeat(a[:, None], 4, axis=1) if chunk is None else np.asarray(chunk, dtype=np.float32)
    if ch.ndim == 2:
        ch = ch[None]
    h = np.ones((b, 3), dtype=np.float32) if hidden is None else np.atleast_2d(np.asarray(hidden, np.float32))
    e = np.ones((b, 2), dtype=np.float32) if emb is None else np.atleast_2d(np.asarray(emb, np.float32))
    return StepInternals(
        chunk_id=np.broadcast_to(np.asarray(chunk_id, dtype=np.int64), (b,)).copy(),
        chunk_offset=np.broadcast_to(np.asarray(chunk_offset, dtype=np.int64), (b,)).copy(),
        new_chunk=np.broadcast_to(np.asarray(new_chunk, dtype=bool), (b,)).copy(),
        hidden_step=h,
        hidden_mean=h,
        velocities=np.zeros((b, 2, a.shape[1]), dtype=np.float32),
        obs_embedding=e,
        chunk=ch,
        action=a,
        samples=None if samples is None else np.asarray(samples, dtype=np.float32),
        action_token_probs=None if probs is None else np.atleast_2d(np.asarray(probs, dtype=np.float32)),
    )


def random_stream(rng: np.random.Generator, steps: int, b: int = 3, c: int = 8, n_exec: int = 4, k: int = 6):
    """A chunked-policy-like stream of (internals, robot_state) with K samples, for property tests."""
    e_dim, h_dim = 5, 7
    out = []
    ee = np.tile([0.5, 0.0, 0.2], (b, 1))
    samples = rng.normal(scale=0.2, size=(b, k, c, 4))
    emb = rng.normal(size=(b, e_dim))
    for t in range(steps):
        off = t % n_exec
        if off == 0:
            samples = np.clip(rng.normal(scale=rng.uniform(0.05, 0.6), size=(b, k, c, 4)), -1, 1)
            emb = emb + rng.normal(scale=0.3, size=(b, e_dim))
        act = samples[:, 0, off]
        ee = ee + 0.02 * act[:, :3] * rng.uniform(0.5, 1.0, size=(b, 1))
        state = robot_state(b, ee=ee)
        state[:, :7] += rng.normal(scale=0.3, size=(b, 7))
        it = internals(
            action=act,
            chunk=samples[:, 0],
            chunk_id=t // n_exec,
            chunk_offset=off,
            new_chunk=off == 0,
            hidden=rng.normal(size=(b, h_dim)) * rng.uniform(0.5, 2.0),
            emb=emb,
            samples=samples,
        )
        out.append((it, state))
    return out
