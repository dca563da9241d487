"""Range checks with messages that name the option, the allowed range and the value (cheap).

One home for the CLI's option callbacks (``salus.cli._common.in_range``) and the jobs' specs
(``salus.jobs``), which check the same values outside the CLI.
"""

from __future__ import annotations

import math
from typing import Any

from salus.errors import InvalidInputError

__all__ = ["SEED_MAX", "range_text", "check_range"]

#: The largest seed a command takes (every seeded generator salus uses accepts it).
SEED_MAX = 2**32 - 1


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def range_text(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> str:
    """The allowed range in words: ``in [0, 1)``, ``>= 1``, ``> 0``."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return ""


def check_range(
    value: Any,
    what: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """``value`` if it is a finite number in the range, else an ``InvalidInputError`` naming
    ``what`` (e.g. ``--lr``), the range and the value. ``None`` (an option not given) passes."""
    if value is None:
        return None
    kind = "an integer" if isinstance(value, int) else "a finite number"
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (lo is None or (value > lo if lo_open else value >= lo))
        and (hi is None or (value < hi if hi_open else value <= hi))
    )
    if not ok:
        rng = range_text(lo, hi, lo_open=lo_open, hi_open=hi_open)
        raise InvalidInputError(f"{what} must be {kind}{' ' + rng if rng else ''}, got {value!r}")
    return value
