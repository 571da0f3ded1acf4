"""Heartbeat files: every long-running component reports its state for ``robofume status``.

Each component calls :func:`write_status` every few seconds; the file is replaced atomically
so readers never see half a JSON document.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robofume.run_dir import RunDir

StatusSink = Callable[[str, dict[str, Any]], None]
_SINKS: list[StatusSink] = []


def add_status_sink(sink: StatusSink) -> None:
    """Also hand every heartbeat this process writes to ``sink(name, payload)`` (a process on a
    node away from the head relays them to the head's registry: robofume.telemetry)."""
    _SINKS.append(sink)


def status_dir(run_dir: str | Path) -> Path:
    return RunDir.at(run_dir).status


def write_status(run_dir: str | Path, name: str, data: dict[str, Any]) -> Path:
    """Atomically write ``<run_dir>/status/<name>.json`` with time, pid and host added."""
    folder = status_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "time": time.time(), "pid": os.getpid(), "host": socket.gethostname()}
    payload.update(data)
    for sink in _SINKS:
        sink(name, payload)
    return write_json(folder / f"{name}.json", payload)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically replace ``path`` with ``payload`` as JSON (readers never see half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, default=_jsonable, indent=1))
    os.replace(tmp, path)
    return path


def read_statuses(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All heartbeats of a run, keyed by component name (unreadable files are skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(status_dir(run_dir).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def window_rate(history: deque[tuple[float, int]], now: float, steps: int) -> float | None:
    """Steps per second over the recorded window (appends the current sample)."""
    history.append((now, steps))
    if len(history) < 2:
        return None
    (t0, s0), (t1, s1) = history[0], history[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else None
