"""What every Bridge reader produces: raw trajectories before mapping (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RawTrajectory:
    """One Bridge trajectory as stored, before mapping."""

    images: np.ndarray
    """uint8 (N, H, W, 3) frames."""
    states: np.ndarray
    """float (N, 7) end-effector states."""
    actions: np.ndarray
    """float (N-1 or N, 7) actions."""
    language: str
    """The instruction ('' when unlabeled)."""
    source: str
    """Where it came from (file and index), for error messages and meta."""
    meta: dict[str, Any] = field(default_factory=dict)


def first_language(value: Any) -> str:
    """The first non-empty instruction in ``value`` (str, bytes, a list or array of them)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, str)):
        value = [value]
    elif isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    for item in list(value):
        text = item.decode() if isinstance(item, bytes) else str(item)
        if text.strip():
            return text.strip()
    return ""
