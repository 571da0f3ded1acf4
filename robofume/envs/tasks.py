"""The simulated task suite: 3 target bin-sorting tasks with their reset tasks, 20 prior tasks.

Order is stable and global: the 6 target tasks first (forward, reset per object), then the 20
prior tasks. ``task_index(name)`` is the position in that order (used as the task id in batches).

Target tasks: each target object has its correct bin (vase and dumbbell: left, bench: right).
The forward task starts with the object in the centre area and ends with it in that bin; the
reset task starts in the bin and ends back in the centre, so each task's end states are the
other's start states (reset-free).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from robofume.envs.layout import OBJECTS, PLACES

TaskKind = Literal["target_forward", "target_reset", "prior"]


@dataclass(frozen=True)
class Task:
    """One instruction: move ``obj`` from its ``source`` place to its ``destination`` place."""

    name: str
    """Unique task name (``vase_forward``, ``prior_cube_left_bin``)."""
    language: str
    """The instruction given to the policy."""
    kind: TaskKind
    """``target_forward``, ``target_reset`` or ``prior``."""
    obj: str
    """Name of the object to move (a key of ``layout.OBJECTS``)."""
    destination: str
    """Place the object must end up in (a key of ``layout.PLACES``)."""
    pair: str | None = None
    """Target tasks: the name of the matching reset/forward task; priors: None."""
    source: str = "centre"
    """Place the object starts in when an episode of this task is reset."""


CORRECT_BIN: dict[str, str] = {"vase": "left_bin", "bench": "right_bin", "dumbbell": "left_bin"}
"""The correct bin of each target object."""

_PRIORS: tuple[tuple[str, str, str], ...] = (
    # (object, source, destination)
    ("cube", "centre", "left_bin"),
    ("cube", "right_bin", "plate"),
    ("can", "centre", "right_bin"),
    ("can", "plate", "mat"),
    ("block", "centre", "plate"),
    ("block", "left_bin", "centre"),
    ("bottle", "mat", "left_bin"),
    ("bottle", "centre", "right_bin"),
    ("brick", "centre", "mat"),
    ("brick", "right_bin", "left_bin"),
    ("mug", "centre", "left_bin"),
    ("mug", "plate", "centre"),
    ("house", "mat", "right_bin"),
    ("house", "centre", "plate"),
    ("barrel", "left_bin", "mat"),
    ("barrel", "centre", "right_bin"),
    ("cube", "mat", "centre"),
    ("can", "left_bin", "plate"),
    ("block", "right_bin", "mat"),
    ("bottle", "plate", "centre"),
)


def _build() -> tuple[Task, ...]:
    tasks: list[Task] = []
    for obj, bin_name in CORRECT_BIN.items():
        fwd, rst = f"{obj}_forward", f"{obj}_reset"
        tasks.append(
            Task(fwd, f"put the {obj} in the correct bin", "target_forward", obj, bin_name, rst)
        )
        tasks.append(
            Task(
                rst,
                f"put the {obj} back in the centre of the table",
                "target_reset",
                obj,
                "centre",
                fwd,
                source=bin_name,
            )
        )
    for obj, src, dst in _PRIORS:
        noun = OBJECTS[obj].noun
        tasks.append(
            Task(
                f"prior_{obj}_{dst}",
                f"put the {noun} {PLACES[dst].phrase}",
                "prior",
                obj,
                dst,
                None,
                source=src,
            )
        )
    return tuple(tasks)


TASKS: tuple[Task, ...] = _build()
"""Every task, in the stable global order (targets first, then priors)."""

_BY_NAME: dict[str, Task] = {t.name: t for t in TASKS}
_INDEX: dict[str, int] = {t.name: i for i, t in enumerate(TASKS)}


def task_names() -> list[str]:
    """All task names in the global order."""
    return [t.name for t in TASKS]


def target_task_names() -> list[str]:
    """The 6 target task names (``<obj>_forward``, ``<obj>_reset`` per target object)."""
    return [t.name for t in TASKS if t.kind != "prior"]


def prior_task_names() -> list[str]:
    """The 20 prior task names in order."""
    return [t.name for t in TASKS if t.kind == "prior"]


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (a Task is returned as is); KeyError lists the known names."""
    if isinstance(name, Task):
        return name
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def task_index(name: str) -> int:
    """Stable integer id of a task: its position in ``task_names()``."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def register_tasks(languages: dict[str, str], forward: str = "", reset: str = "") -> list[str]:
    """Add real-robot tasks (name -> instruction) after the simulated ones; idempotent.

    The real robot's tasks are declared in the config (``env.widowx.languages``), so the
    learner and every actor that load the same config get the same global order and ids.
    ``forward``/``reset`` name the actor's pair, which become each other's ``pair``.
    """
    global TASKS, _BY_NAME, _INDEX
    added = []
    for name, language in languages.items():
        if name in _BY_NAME:
            if _BY_NAME[name].language != language:
                raise ValueError(f"task {name!r} is already registered with another instruction")
            continue
        kind: TaskKind = "target_reset" if name == reset else "target_forward"
        pair = {forward: reset, reset: forward}.get(name) or None
        task = Task(name, language, kind, obj="real", destination="real", pair=pair, source="real")
        TASKS = (*TASKS, task)
        added.append(name)
    _BY_NAME = {t.name: t for t in TASKS}
    _INDEX = {t.name: i for i, t in enumerate(TASKS)}
    return added
