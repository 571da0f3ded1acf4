"""The reward backends behind one factory: a fresh model of ``reward.backend``, or a fine-tuned
one from its checkpoint. ``reward_server.model`` holds what every backend shares (the
:class:`RewardModel` interface, the checkpoint format); each backend is one class in its own module
(``embedded``, ``cnn``, ``vlm``; the first two share the fusion head of ``fusion``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from reward_server.model import RewardModel, checkpoint_file, read_reward_checkpoint
from robofume.config.base import from_dict
from robofume.config.reward import RewardConfig

log = logging.getLogger(__name__)


def make_reward_model(cfg: RewardConfig, device: str = "auto") -> RewardModel:
    """A fresh (not fine-tuned) model of ``cfg.backend``."""
    if cfg.backend == "embedded":
        from reward_server.embedded import EmbeddedRewardModel

        return EmbeddedRewardModel(cfg, device)
    if cfg.backend == "cnn":
        from reward_server.cnn import CNNRewardModel

        return CNNRewardModel(cfg, device)
    if cfg.backend == "vlm":
        from reward_server.vlm import VLMRewardModel

        return VLMRewardModel(cfg, device)
    raise ValueError(f"unknown reward backend {cfg.backend!r}; use embedded, vlm or cnn")


def load_reward_model(
    path: str | Path, device: str = "auto", base_model: str | None = None
) -> RewardModel:
    """Load a fine-tuned reward model from a checkpoint file or directory.

    ``base_model`` replaces the vlm base model's hub id/path recorded at training time (when
    the weights moved). The model keeps the questions and threshold it was tuned with.
    """
    payload = read_reward_checkpoint(path)
    file = checkpoint_file(path)
    cfg = from_dict(RewardConfig, payload["reward_cfg"], "reward_cfg")
    if base_model:
        cfg = dataclasses.replace(cfg, model=base_model)
    model = make_reward_model(cfg, device)
    model.load_state_dict(payload["state"])
    model.version = str(payload["version"])
    model.threshold = float(payload["threshold"])
    model.questions = dict(payload.get("questions", {}))
    model.meta = dict(payload.get("meta", {}))
    model.checkpoint = str(file.resolve())
    model.checkpoint_time = file.stat().st_mtime
    model.eval()
    log.info("loaded reward model %s from %s on %s", model.version, path, model.device)
    return model
