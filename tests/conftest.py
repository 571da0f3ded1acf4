"""Shared test setup: an empty home, headless rendering, one thread per library, no bars.

The suite runs with a fresh, empty ``HOME`` (and no inherited Ray auth settings), as CI does
and as a machine that has never run anything would: state a previous run left in the home
directory (``~/.ray/auth_token``, caches) must not decide whether a test passes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

_HOME = tempfile.mkdtemp(prefix="robofume-test-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["HOME"] = _HOME
for _var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "ROBOFUME_CACHE_DIR"):
    os.environ.pop(_var, None)
for _var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
    os.environ.pop(_var, None)

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROBOFUME_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    yield
