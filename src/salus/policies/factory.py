"""``python:FILE.py:FACTORY`` / ``python:MODULE:FACTORY`` policy specs: a user's function that builds
a :class:`~salus.policies.base.PolicyAdapter` (e.g. a ``TorchPolicyAdapter`` around their module)."""

from __future__ import annotations

from typing import Any

from salus._lazy import load_object
from salus.errors import InvalidInputError
from salus.policies.base import PolicyAdapter

__all__ = ["load_python_policy"]


def load_python_policy(path: str | None, **kwargs: Any) -> PolicyAdapter:
    """Call the factory named by ``path`` with ``kwargs`` (``num_samples``, ``seed``, spec options)
    and check that it returned a policy adapter (``act``, ``reset``, ``last_internals``)."""
    if not path:
        raise InvalidInputError(
            "the python policy spec needs a factory: python:FILE.py:FACTORY or python:MODULE:FACTORY"
        )
    factory = load_object(path, "policy factory")
    if not callable(factory):
        raise InvalidInputError(f"policy factory {path!r} is not callable")
    policy = factory(**kwargs)
    missing = [n for n in ("act", "reset") if not callable(getattr(policy, n, None))]
    if missing or not hasattr(policy, "last_internals"):
        raise InvalidInputError(
            f"policy factory {path!r} returned {type(policy).__name__}, which is not a policy adapter "
            f"(needs act(obs), reset() and last_internals; missing {missing or ['last_internals']})"
        )
    return policy  # type: ignore[no-any-return]
