"""The task table: the contract every process shares on what a task is and its id.

The simulated task suite: 3 target bin-sorting tasks with their reset tasks, 20 prior tasks.

Order is stable: the 6 target tasks first (forward, reset per object), then the 20 prior
tasks; a task's id in batches is its position in the :class:`TaskTable`. A config that declares
real-robot tasks gets them after these (:func:`task_table`), as a value: no global changes.

Target tasks: each target object has its correct bin (vase and dumbbell: left, bench: right).
The forward task starts with the object in the centre area and ends with it in that bin; the
reset task starts in the bin and ends back in the centre, so each task's end states are the
other's start states (reset-free).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig

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


NOUNS: dict[str, str] = {
    "vase": "vase",
    "bench": "bench",
    "dumbbell": "dumbbell",
    "cube": "red cube",
    "can": "navy can",
    "block": "yellow block",
    "bottle": "green bottle",
    "brick": "pink brick",
    "mug": "white mug",
    "house": "orange house",
    "barrel": "cyan barrel",
}
"""How instructions name each object (the simulator draws them in these colours)."""

PHRASES: dict[str, str] = {
    "centre": "in the centre of the table",
    "left_bin": "in the left bin",
    "right_bin": "in the right bin",
    "plate": "on the plate",
    "mat": "on the green mat",
}
"""How instructions name each place of the table."""

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
        noun = NOUNS[obj]
        tasks.append(
            Task(
                f"prior_{obj}_{dst}",
                f"put the {noun} {PHRASES[dst]}",
                "prior",
                obj,
                dst,
                None,
                source=src,
            )
        )
    return tuple(tasks)


class TaskTable:
    """An ordered, immutable set of tasks: a task's id is its position (the id in batches).

    :data:`SIM_TASKS` holds the simulated suite; :func:`task_table` adds the tasks a config
    declares for the real robot after them, so every process that loads the same config builds
    the same table, ids included. Nothing changes a table once built.
    """

    def __init__(self, tasks: tuple[Task, ...]):
        self.tasks = tuple(tasks)
        self._by_name = {t.name: t for t in self.tasks}
        self._index = {t.name: i for i, t in enumerate(self.tasks)}
        if len(self._by_name) != len(self.tasks):
            raise ValueError("task names must be unique")

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskTable) and other.tasks == self.tasks

    def __hash__(self) -> int:
        return hash(self.tasks)

    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def target_names(self) -> list[str]:
        return [t.name for t in self.tasks if t.kind != "prior"]

    def prior_names(self) -> list[str]:
        return [t.name for t in self.tasks if t.kind == "prior"]

    def get(self, name: str | Task) -> Task:
        """The task called ``name`` (a Task is returned as is); KeyError lists the known names."""
        if isinstance(name, Task):
            return name
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown task {name!r}; known tasks: {', '.join(self.names())}"
            ) from None

    def index(self, name: str) -> int:
        """Stable integer id of a task: its position in :meth:`names`."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"unknown task {name!r}; known tasks: {', '.join(self.names())}"
            ) from None

    def with_real(self, languages: dict[str, str], forward: str = "", reset: str = "") -> TaskTable:
        """This table plus real-robot tasks (name -> instruction) after it.

        ``forward``/``reset`` name the actor's pair, which become each other's ``pair``. A name
        already in the table must keep its instruction.
        """
        added = []
        for name, language in languages.items():
            if name in self._by_name:
                if self._by_name[name].language != language:
                    raise ValueError(f"task {name!r} already exists with another instruction")
                continue
            kind: TaskKind = "target_reset" if name == reset else "target_forward"
            pair = {forward: reset, reset: forward}.get(name) or None
            added.append(
                Task(name, language, kind, obj="real", destination="real", pair=pair, source="real")
            )
        return TaskTable((*self.tasks, *added)) if added else self


SIM_TASKS = TaskTable(_build())
"""The simulated suite, in the stable order (targets first, then priors)."""
TASKS: tuple[Task, ...] = SIM_TASKS.tasks


def task_table(cfg: ExperimentConfig) -> TaskTable:
    """The tasks of ``cfg``: the simulated suite, then the real robot's
    (``env.widowx.languages``)."""
    languages = dict(cfg.env.widowx.languages)
    if not languages:
        return SIM_TASKS
    return SIM_TASKS.with_real(languages, cfg.actor.forward_task, cfg.actor.reset_task)


# The simulated suite, for code that only ever runs in simulation (the simulator, data
# generation, evaluation); anything that may meet a real robot's task takes a TaskTable.
def task_names() -> list[str]:
    """All simulated task names in order."""
    return SIM_TASKS.names()


def target_task_names() -> list[str]:
    """The 6 target task names (``<obj>_forward``, ``<obj>_reset`` per target object)."""
    return SIM_TASKS.target_names()


def prior_task_names() -> list[str]:
    """The 20 prior task names in order."""
    return SIM_TASKS.prior_names()


def get_task(name: str | Task) -> Task:
    """The simulated task called ``name``; KeyError lists the known names."""
    return SIM_TASKS.get(name)


def task_index(name: str) -> int:
    """Stable integer id of a simulated task."""
    return SIM_TASKS.index(name)
