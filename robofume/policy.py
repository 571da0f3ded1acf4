"""The policy as actors run it: CPU inference from the learner's published variables.

```python
policy = InferencePolicy(cfg)
policy.load_variables(learner.get_variables(), version=7)
action = policy.act({"image": uint8 (H, W, 3), "proprio": f32 (P,)}, "vase_forward")
```

The variables (encoder, policy and task-embedding table) are all an actor needs: it never
loads the text model. Networks are built from the config on the first ``load_variables``
(the table's width fixes the policy's input size).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from robofume.config import ExperimentConfig, load_config
from robofume.networks import POLICY_PREFIXES, PolicyModel, sample_tanh_gaussian
from robofume.run_dir import RunDir


class InferencePolicy:
    """Language-conditioned image policy for one observation at a time."""

    def __init__(self, cfg: ExperimentConfig, device: str = "cpu", seed: int | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.version = -1
        self.source: Path | None = None
        """Checkpoint the variables came from (``load_policy``), else None."""
        self.model: PolicyModel | None = None
        self._lock = threading.Lock()
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(cfg.actor.seed if seed is None else seed)
        from robofume.tasks import task_table

        self.tasks = task_table(cfg)
        """Task name -> id, as the learner that trained the weights numbered them."""

    def _build(self, table: np.ndarray) -> PolicyModel:
        env, net = self.cfg.env, self.cfg.network
        model = PolicyModel(
            net,
            env.image_size,
            env.action_dim,
            net.proprio_dim,
            torch.from_numpy(np.asarray(table, np.float32)),
        )
        return model.to(self.device).eval().requires_grad_(False)

    def load_variables(self, variables: Mapping[str, np.ndarray], version: int) -> None:
        """Replace the weights with ``variables`` (from ``Learner.get_variables``)."""
        if "task_table" not in variables:
            raise KeyError("policy variables lack 'task_table'")
        model = self._build(variables["task_table"])
        expected = model.state_dict()
        missing = sorted(set(expected) - set(variables))
        unexpected = sorted(set(variables) - set(expected))
        if missing or unexpected:
            raise KeyError(f"policy variables mismatch: missing {missing}, unexpected {unexpected}")
        state = {}
        for key, ref in expected.items():
            value = torch.as_tensor(np.asarray(variables[key]))
            if tuple(value.shape) != tuple(ref.shape):
                raise ValueError(
                    f"policy variable {key!r} has shape {tuple(value.shape)}, the config "
                    f"(image {self.cfg.env.image_size}, network {self.cfg.network}) "
                    f"needs {tuple(ref.shape)}"
                )
            state[key] = value
        model.load_state_dict(state)
        with self._lock:
            self.model = model
            self.version = int(version)

    @property
    def ready(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def act(
        self, obs: Mapping[str, np.ndarray], task_name: str, deterministic: bool = False
    ) -> np.ndarray:
        """Action (A,) float32 in [-1, 1] for one observation and a task name."""
        with self._lock:
            model = self.model
        if model is None:
            raise RuntimeError("InferencePolicy.act before load_variables")
        image = torch.as_tensor(np.asarray(obs["image"], np.uint8), device=self.device)[None]
        proprio = torch.as_tensor(np.asarray(obs["proprio"], np.float32), device=self.device)
        task = torch.tensor([self.tasks.index(task_name)], device=self.device)
        mean, log_std = model.distribution(image, proprio[None], task)
        if deterministic:
            action = torch.tanh(mean)
        else:
            noise = torch.randn(mean.shape, generator=self._generator, device=self.device)
            action = sample_tanh_gaussian(mean, log_std, noise)[0]
        return action[0].cpu().numpy().astype(np.float32)


def config_from_checkpoint(data: dict) -> ExperimentConfig:
    """The config stored in a checkpoint, tolerating fields the current schema dropped.

    Unknown fields (e.g. from an older version) are skipped with a warning; missing ones take
    today's defaults.
    """
    import dataclasses
    import logging

    def known(cls: type, values: dict, where: str) -> dict:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {}
        for key, value in values.items():
            if key not in fields:
                logging.getLogger(__name__).warning(
                    "checkpoint config field %s%s is unknown here; ignored", where, key
                )
                continue
            default = getattr(ExperimentConfig(), key, None) if cls is ExperimentConfig else None
            sub = type(default) if dataclasses.is_dataclass(default) else None
            if sub is not None and isinstance(value, dict):
                value = known(sub, value, f"{where}{key}.")
            out[key] = value
        return out

    return load_config(overrides=known(ExperimentConfig, data, ""))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file: ``path`` itself, or the newest under a run/checkpoint directory."""
    path = Path(path)
    if path.is_file():
        return path
    for directory in (path, path / "checkpoints", RunDir.at(path).pretrain / "checkpoints"):
        pointer = directory / "latest"
        if pointer.is_file() and (directory / pointer.read_text().strip()).is_file():
            return directory / pointer.read_text().strip()
        found = sorted(directory.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
        if found:
            return found[-1]
    raise FileNotFoundError(f"no checkpoint file (ckpt_<step>.pt) at {path}")


def load_policy(path: str | Path, device: str = "cpu") -> InferencePolicy:
    """An InferencePolicy with the config and weights of a learner checkpoint."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        agent = ckpt["learner"]["agent"]
        config = ckpt["config"]
    except Exception as err:
        raise ValueError(f"{path} is not a readable robofume learner checkpoint: {err}") from err
    cfg = config_from_checkpoint(config)
    variables = {k: v.float().numpy() for k, v in agent.items() if k.startswith(POLICY_PREFIXES)}
    policy = InferencePolicy(cfg, device=device)
    policy.load_variables(variables, int(ckpt.get("step", 0)))
    policy.source = path
    return policy
