"""Datasets: the HDF5 episode store, Monte-Carlo returns, simulated demos, Bridge importers.

```python
from robofume.data import write_episodes, read_episodes, DatasetError, mc_returns
from robofume.data import load_dataset_dir, generate_dataset
```
"""

from __future__ import annotations

import importlib
from typing import Any

from robofume.data.errors import DatasetError
from robofume.data.hdf5 import EpisodeFile, read_episodes
from robofume.data.hdf5_writer import DatasetWriter, write_episodes
from robofume.data.returns import mc_returns, with_mc_returns

__all__ = [
    "DatasetError",
    "DatasetWriter",
    "EpisodeFile",
    "dataset_exists",
    "ensure_dataset",
    "generate_dataset",
    "load_dataset_dir",
    "mc_returns",
    "read_episodes",
    "with_mc_returns",
    "write_episodes",
]

_LAZY = {
    "generate_dataset": "robofume.data.generate",
    "load_dataset_dir": "robofume.data.dataset",
    "dataset_exists": "robofume.data.dataset",
    "ensure_dataset": "robofume.data.dataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robofume.data' has no attribute {name!r}")
