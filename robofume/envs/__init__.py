"""Simulated robot: the MuJoCo tabletop, its task suite and a scripted expert.

``make_env(cfg.env, task, seed)`` builds the environment; MuJoCo is imported only then (after
``MUJOCO_GL`` is set from ``cfg.env.render_backend``), so importing this package is cheap.
``make_env(online_env(cfg.env), ...)`` builds the online scene (``env.online``), the one the
actors and the online evaluator run in.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from robofume.envs.errors import InvalidActionError
from robofume.envs.expert import ScriptedExpert

if TYPE_CHECKING:
    from robofume.config.env import EnvConfig
    from robofume.envs.tabletop import TabletopEnv
    from robofume.tasks import Task

__all__ = ["InvalidActionError", "ScriptedExpert", "TabletopEnv", "make_env", "online_env"]


def make_env(cfg_env: EnvConfig, task: str | Task = "vase_forward", seed: int | None = None):
    """The environment for ``cfg_env`` (``kind: sim``: the MuJoCo tabletop), set to ``task``.

    ``seed`` seeds the first ``reset()`` that does not pass its own seed.
    """
    if cfg_env.kind != "sim":
        raise ValueError(
            f"make_env builds the simulated tabletop (env.kind: sim); env.kind={cfg_env.kind!r} "
            "is the real robot, which robofume.envs does not provide"
        )
    from robofume.envs.tabletop import TabletopEnv

    return TabletopEnv(cfg_env, task=task, seed=seed)


def online_env(cfg_env: EnvConfig) -> EnvConfig:
    """``cfg_env`` as the actors and the online evaluator run it: the online scene shift
    (``env.online``) applied. Data generation and offline evaluation use ``cfg_env`` as is."""
    return dataclasses.replace(cfg_env, shift=cfg_env.online)


def __getattr__(name: str):
    if name == "TabletopEnv":
        from robofume.envs.tabletop import TabletopEnv

        return TabletopEnv
    raise AttributeError(f"module 'robofume.envs' has no attribute {name!r}")
