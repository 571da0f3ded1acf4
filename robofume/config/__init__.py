"""One typed config schema for every robofume process.

``load_config("sim-cpu", overrides=["--learner.utd_ratio", "4"])`` builds an
:class:`ExperimentConfig` from the defaults, a preset and CLI overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from robofume.config.actor import ActorConfig
from robofume.config.agent import LearnerConfig, NetworkConfig
from robofume.config.base import (
    ConfigError,
    config_hash,
    merge,
    parse_overrides,
    preset_path,
    to_dict,
)
from robofume.config.data import DataConfig
from robofume.config.deploy import DeployConfig
from robofume.config.env import EnvConfig, SceneShift, SceneVariation
from robofume.config.replay import ReplayConfig
from robofume.config.reward import RewardConfig

__all__ = [
    "ActorConfig",
    "ConfigError",
    "DataConfig",
    "DeployConfig",
    "EnvConfig",
    "ExperimentConfig",
    "LearnerConfig",
    "NetworkConfig",
    "ReplayConfig",
    "RewardConfig",
    "SceneShift",
    "SceneVariation",
    "config_hash",
    "load_config",
    "save_config",
]


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment: every process reads its own section."""

    name: str = "sim"
    """Human-readable name of the preset/run."""
    seed: int = 0
    """Global seed."""
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)

    @property
    def hash(self) -> str:
        """Hash of everything but deploy/actor/name; actor and learner must agree on it."""
        return config_hash(self)

    def replace(self, **sections: object) -> ExperimentConfig:
        """Copy with whole sections or top-level fields replaced."""
        return dataclasses.replace(self, **sections)


def load_config(
    preset: str | None = None,
    config_path: str | Path | None = None,
    overrides: list[str] | dict | None = None,
) -> ExperimentConfig:
    """Defaults <- preset YAML <- config file <- overrides (later wins)."""
    config = ExperimentConfig()
    for path in (preset_path(preset) if preset else None, config_path):
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        config = merge(config, data, "")
    if overrides:
        data = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        config = merge(config, data, "")
    check_observation(config)
    check_tasks(config)
    return config


def check_observation(config: ExperimentConfig) -> None:
    """``env.observation`` and the network's proprio size must agree (4 pixels, 7 state)."""
    want = 7 if config.env.observation == "state" else 4
    if config.env.kind == "sim" and config.network.proprio_dim != want:
        raise ConfigError(
            f"env.observation {config.env.observation!r} gives {want}-d proprio but "
            f"network.proprio_dim is {config.network.proprio_dim}; set --network.proprio_dim "
            f"{want} (the sim-state preset does)"
        )


def check_tasks(config: ExperimentConfig) -> None:
    """The real robot's tasks (``env.widowx.languages``) must fit the simulated suite: a name it
    shares must keep its instruction. The task table itself is a value each process builds
    from the config (``robofume.tasks.task_table``); loading a config changes nothing."""
    if config.env.widowx.languages:
        from robofume.tasks import task_table

        try:
            task_table(config)
        except ValueError as err:
            raise ConfigError(f"env.widowx.languages: {err}") from None


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the full resolved config as YAML (reloadable with --config_path)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
