"""The one JSON sanitiser: numpy and container values to plain JSON types.

``to_json(value)`` maps mappings (keys become ``str``), lists and tuples, numpy arrays and numpy
scalars to dicts, lists and Python numbers, recursively. Options cover what the callers differ in:
``non_finite="null"`` writes NaN and inf as null (strict JSON) instead of keeping them;
``digits=6`` rounds floats to 6 significant digits (compact, stable metadata); ``other="str"``
turns values of any other type into their ``str`` instead of passing them through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

__all__ = ["to_json"]


def to_json(
    value: Any,
    *,
    non_finite: Literal["keep", "null"] = "keep",
    digits: int | None = None,
    other: Literal["keep", "str"] = "keep",
) -> Any:
    """``value`` as plain JSON types (see the module docstring for the options)."""
    if isinstance(value, Mapping):
        return {
            str(k): to_json(v, non_finite=non_finite, digits=digits, other=other) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [to_json(v, non_finite=non_finite, digits=digits, other=other) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist(), non_finite=non_finite, digits=digits, other=other)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None if non_finite == "null" else value
        return float(f"{value:.{digits}g}") if digits is not None else value
    if value is None or isinstance(value, bool | int | str) or other == "keep":
        return value
    return str(value)
