"""An ensemble of policy adapters run in lockstep (the seed's ``SmolVLAEnsemble``, done per step).

Every member acts on the same observation; the internals are member 0's, with ``samples`` holding
every member's chunk (B, M, C, A) so that ensemble disagreement can be measured like K samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from salus.errors import InvalidInputError, InvalidNameError
from salus.policies.base import PolicyAdapter, StepInternals

__all__ = ["EnsembleAdapter", "load_ensemble", "EXECUTE_MODES"]

EXECUTE_MODES = ("first", "mean")


class EnsembleAdapter(PolicyAdapter):
    """M member adapters with the same action dimension and chunk schedule.

    ``execute="first"`` executes member 0's action; ``"mean"`` executes the members' mean action (and
    reports the mean chunk). Members must compute chunks at the same steps (same ``n_action_steps``).
    """

    def __init__(self, members: Sequence[PolicyAdapter], execute: str = "first"):
        if len(members) < 2:
            raise InvalidInputError(f"an ensemble needs at least 2 member policies, got {len(members)}")
        if execute not in EXECUTE_MODES:
            raise InvalidNameError("ensemble execute mode", execute, EXECUTE_MODES)
        dims = {m.action_dim for m in members}
        if len(dims) != 1:
            raise InvalidInputError(f"ensemble members disagree on action_dim: {sorted(dims)}")
        for attr in ("chunk_size", "n_action_steps"):
            values = {getattr(m, attr, None) for m in members}
            if len(values) != 1:
                raise InvalidInputError(f"ensemble members disagree on {attr}: {values}")
        self.members = list(members)
        self.execute = execute
        self.action_dim = members[0].action_dim
        self._last: StepInternals | None = None

    def reset(self, env_index: int | None = None, seed: int | None = None) -> None:
        """Reset every member; member i gets ``seed + 1_000_003 * i`` so members draw different noise."""
        for i, member in enumerate(self.members):
            member.reset(env_index, seed=None if seed is None else seed + 1_000_003 * i)
        if env_index is None:
            self._last = None

    @property
    def last_internals(self) -> StepInternals | None:
        return self._last

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        actions = [np.asarray(m.act(observation)) for m in self.members]
        records = [m.last_internals for m in self.members]
        if any(r is None for r in records):
            raise InvalidInputError("an ensemble member reported no internals")
        recs: list[StepInternals] = [r for r in records if r is not None]
        first = recs[0]
        if any(not np.array_equal(r.chunk_offset, first.chunk_offset) for r in recs[1:]):
            raise InvalidInputError(
                "ensemble members went out of step (different chunk offsets); reset them together"
            )
        chunks = np.stack([r.chunk for r in recs], axis=1)  # (B, M, C, A)
        if self.execute == "mean":
            chunk = chunks.mean(axis=1)
            action_b = np.stack([r.action for r in recs], axis=1).mean(axis=1)
            action = np.mean(actions, axis=0)
        else:
            chunk, action_b, action = first.chunk, first.action, actions[0]
        self._last = replace(first, chunk=chunk, action=action_b, samples=chunks)
        return action.astype(np.float32, copy=False)


def load_ensemble(path: str | None = None, **kwargs: Any) -> EnsembleAdapter:
    """Loader for ``ensemble:SPEC,SPEC[,...]`` (each SPEC a policy spec such as ``builtin:DIR``)."""
    from salus.policies.spec import PolicySpec

    if not path:
        raise InvalidInputError(
            "an ensemble spec lists its members: ensemble:SPEC,SPEC (e.g. ensemble:builtin,builtin:DIR)"
        )
    execute = str(kwargs.pop("execute", "first"))
    seed = int(kwargs.pop("seed", 0))
    specs = PolicySpec.parse(f"ensemble:{path}").members
    members = [spec.load(seed=seed + 1_000_003 * i, **kwargs) for i, spec in enumerate(specs)]
    return EnsembleAdapter(members, execute=execute)
