"""Task definitions: names, natural-language strings and step limits (cheap to import).

Every task shares one tabletop scene: a Franka Panda at the origin on a table whose top is the
plane z = 0, a front camera and a wrist camera. Objects are 4 cm cubes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from salus.errors import InvalidNameError

__all__ = [
    "TaskSpec",
    "TASK_SPECS",
    "TASKS",
    "COLOURS",
    "task_text",
    "task_texts",
    "get_task",
    "check_tasks",
    "TASK_CHARSET",
]

# Cube colours (RGBA) by name; used by pick_color texts and by the scene.
COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.1, 1.0),
    "blue": (0.1, 0.25, 0.85, 1.0),
    "green": (0.15, 0.7, 0.2, 1.0),
    "yellow": (0.9, 0.8, 0.1, 1.0),
}


@dataclass(frozen=True)
class TaskSpec:
    """One task: its objects, whether it has a target marker, its texts and default step limit.

    ``texts`` has one entry per episode variant; ``pick_color`` has one per named colour.
    """

    name: str
    texts: tuple[str, ...]
    n_objects: int
    has_target: bool
    max_steps: int

    def __post_init__(self) -> None:
        if not self.texts or self.n_objects not in (1, 2) or self.max_steps <= 0:
            raise ValueError(f"invalid task spec {self!r}")


TASK_SPECS: dict[str, TaskSpec] = {
    "pick_place": TaskSpec(
        "pick_place", ("pick up the red cube and place it on the green target",), 1, True, 120
    ),
    "push": TaskSpec("push", ("push the red cube onto the green target",), 1, True, 150),
    "stack": TaskSpec("stack", ("stack the red cube on top of the blue cube",), 2, False, 120),
    "pick_color": TaskSpec("pick_color", ("pick up the red cube", "pick up the blue cube"), 2, False, 100),
}
TASKS: tuple[str, ...] = tuple(TASK_SPECS)

# Characters of every task string (for ``gymnasium.spaces.Text``).
TASK_CHARSET = "".join(sorted({c for spec in TASK_SPECS.values() for t in spec.texts for c in t}))


def get_task(task: str) -> TaskSpec:
    """The spec of a task; raises ``InvalidNameError`` listing the valid task names."""
    try:
        return TASK_SPECS[task]
    except (KeyError, TypeError):
        raise InvalidNameError("task", task, TASKS) from None


def check_tasks(tasks: Sequence[str]) -> list[str]:
    """``tasks`` as a list after checking each name (``InvalidNameError`` lists the valid ones)."""
    for task in tasks:
        get_task(task)
    return list(tasks)


def task_texts(task: str) -> tuple[str, ...]:
    """Every natural-language string a task's episodes can carry."""
    return get_task(task).texts


def task_text(task: str, variant: int = 0) -> str:
    """The natural-language string of a task (``variant`` picks the colour of ``pick_color``)."""
    texts = get_task(task).texts
    return texts[variant % len(texts)]
