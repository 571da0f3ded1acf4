"""The processes share only the library: who may import what, checked on the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = ("actor", "learner", "reward_server", "replay", "deploy")
MODULE_NAME = re.compile(
    r"^(actor|learner|reward_server|replay|deploy|robofume)(\.[a-z_0-9]+)+(:[a-z_0-9]+)?$"
)
"""A string naming one of our modules (``"learner.cli"``, ``"deploy.entry:run_learner"``):
what ``importlib.import_module`` or a Ray service target imports."""


def _imports(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in ``package``, lazy ones included, and every
    module named in a string (imports through importlib and service targets)."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((where, node.module))
            elif isinstance(node, ast.Import):
                found += [(where, alias.name) for alias in node.names]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and MODULE_NAME.match(node.value)
            ):
                found.append((where, node.value.split(":")[0]))
    return found


def test_imports_through_importlib_are_seen():
    found = set(_imports("deploy"))
    assert ("deploy/command.py", "learner.cli") in found  # importlib.import_module(module)
    assert ("deploy/launch.py", "deploy.entry") in found  # "deploy.entry:run_learner"


def test_the_library_does_not_import_the_processes():
    upward = [(f, m) for f, m in _imports("robofume") if m.split(".")[0] in PROCESSES]
    assert upward == []


def test_the_task_table_is_library_not_simulator():
    """Every process agrees on task ids without importing the simulator."""
    assert not [m for f, m in _imports("robofume") if f == "robofume/tasks.py"
                and m.startswith("robofume.envs")]  # fmt: skip


def test_reverb_and_tensorflow_stay_in_replay():
    """Only the replay server and the replay clients (and the Bridge TFRecord reader)."""
    leaks = [
        (f, m)
        for package in ("actor", "learner", "robofume", "reward_server", "deploy")
        for f, m in _imports(package)
        if m.split(".")[0] in ("reverb", "tensorflow")
        and not f.startswith("robofume/replay_client/")
        and f != "robofume/data/bridge_tf.py"  # reads Bridge TFRecord / RLDS files
    ]
    assert leaks == []


def test_the_processes_share_only_the_library():
    """The actor, the learner, the reward server and the replay server import robofume and
    themselves, never one another or the orchestration (deploy)."""
    crossing = [
        (f, m)
        for package in ("actor", "learner", "reward_server", "replay")
        for f, m in _imports(package)
        if m.split(".")[0] in PROCESSES and m.split(".")[0] != package
        and not (f.endswith("__main__.py") and m == "deploy.command")  # `python -m actor`
    ]  # fmt: skip
    assert crossing == []


def test_the_run_directory_layout_is_defined_once():
    """Folders under the run directory are named in robofume/run_dir.py only."""
    import re

    joins = re.compile(r"run_dir\)?\s*/\s*[\"']|\broot\s*/\s*[\"'](tb|status|spill|replay|auth)")
    found = [
        str(path.relative_to(ROOT))
        for package in (*PROCESSES, "robofume")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "run_dir.py" and joins.search(path.read_text())
    ]
    assert found == []


def test_no_import_cycles():
    """Module-level imports between robofume's own modules form no cycle (lazy imports inside
    functions and ``TYPE_CHECKING`` blocks aside)."""
    import sys

    packages = (*PROCESSES, "robofume", "protos")
    modules = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # module level only
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                found = resolve(target)
                if found and found != name:
                    graph[name].add(found)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
