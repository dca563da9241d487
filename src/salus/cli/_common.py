"""Small helpers shared by the CLI modules (cheap imports only)."""

from __future__ import annotations

from typing import Any

__all__ = ["split_values", "progress_bar", "POLICY_SPEC_HELP"]

# The --policy help of every command that takes a policy spec (the default is salus.policies.DEFAULT_POLICY).
POLICY_SPEC_HELP = (
    "Policy spec: smolvla (the packaged SmolVLA, the default), builtin (the light option), "
    "builtin:DIR, smolvla:PATH, ..."
)


def split_values(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values: ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def progress_bar() -> Any:
    """A rich progress bar on stderr (so ``--json`` output on stdout stays clean)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
