"""The Ray cluster's auth token: one per run directory, handed explicitly to every process.

Ray 2.60 turns token authentication on by itself and, unless told otherwise, keeps the token
in ``~/.ray/auth_token``: `ray start` fails on a machine that has never run Ray, and works on
a used one only because an earlier ``ray.init`` left a token behind. robofume keeps its own
token instead: ``<run_dir>/ray/auth_token`` (``deploy.ray_token_path`` to choose another
file), created with mode 0600 when missing and reused when present. :func:`ray_auth_env`
gives the variables for `ray start` (the head, and the workers it spawns, inherit them);
:func:`use_run_token` points this process's own Ray at it before ``ray.init``. A token in the
home directory or in the caller's ``RAY_AUTH_TOKEN`` is ignored.

On a multi-node cluster, copy the file to the same path on every node (deploy/cluster.yaml).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from robofume.config import DeployConfig
from robofume.run_dir import RunDir
from robofume.secret_file import read_or_create_secret

log = logging.getLogger(__name__)

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def token_path(deploy: DeployConfig) -> Path:
    """Where this run's token lives (absolute: Ray workers run in other directories)."""
    path = (
        Path(deploy.ray_token_path)
        if deploy.ray_token_path
        else RunDir.at(deploy.run_dir).ray_token
    )
    return path.expanduser().resolve()


def ensure_token(path: Path) -> Path:
    """Create the token file (0600, 256 random bits, atomically) unless it exists."""
    if not read_or_create_secret(path, 32, "the Ray cluster's auth token"):
        raise RuntimeError(f"the Ray auth token file {path} is empty; delete it")
    return path


def ray_auth_env(deploy: DeployConfig) -> dict[str, str]:
    """Environment that makes Ray use this run's token (the token file is created if missing)."""
    path = ensure_token(token_path(deploy))
    return {MODE_ENV: "token", TOKEN_PATH_ENV: str(path)}


def use_run_token(deploy: DeployConfig) -> dict[str, str]:
    """Point this process's Ray (drivers, ``ray.init``) at the run's token.

    Returns the variables set (:func:`ray_auth_env`), to hand to a `ray start` as well.

    Ray reads ``RAY_AUTH_TOKEN`` before ``RAY_AUTH_TOKEN_PATH``, so an inherited
    ``RAY_AUTH_TOKEN`` is dropped. Ray caches the mode and the token per process; both caches
    are refreshed when Ray was imported already.
    """
    env = ray_auth_env(deploy)
    os.environ.update(env)
    os.environ.pop(TOKEN_ENV, None)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # raylet chatter on the console
    if "ray" in sys.modules:
        with contextlib.suppress(ImportError, AttributeError):  # another Ray: env vars suffice
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
    return env
