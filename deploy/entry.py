"""Entry points the cluster runs: each blocks until its ``stop_event`` is set.

They adapt the components' own functions to one calling convention
``fn(config, stop_event, **kwargs)`` used by :class:`deploy.services.ComponentService`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)


def serve_replay(cfg: ExperimentConfig, stop_event: threading.Event) -> dict[str, Any]:
    """The Reverb server on ``deploy.replay_port``, checkpointing until stopped."""
    from replay.server import start_replay_server

    server = start_replay_server(cfg, port=cfg.deploy.replay_port)
    try:
        stop_event.wait()
    finally:
        server.stop()
    return {"stopped": True}


def run_learner(cfg: ExperimentConfig, stop_event: threading.Event) -> Any:
    """The online learner: resumes its own checkpoint, else starts from the pre-trained one."""
    from learner.online import run_online_learner
    from robofume.node import data_dir, sync_learner

    sync_learner(cfg)  # on a node away from the head: its checkpoint and the dataset
    return run_online_learner(cfg, stop_event=stop_event, data_dir=data_dir(cfg))


def run_evaluator(cfg: ExperimentConfig, stop_event: threading.Event) -> Any:
    """Ground-truth evaluations of the newest policy during online fine-tuning (simulation)."""
    from deploy.evaluator import run_evaluator as evaluate

    return evaluate(cfg, stop_event)


def run_sim_actor(cfg: ExperimentConfig, stop_event: threading.Event, actor_id: int = 0) -> Any:
    """One simulated robot running the reset-free loop."""
    from actor.run import run_actor

    return run_actor(cfg, stop_event, actor_id=actor_id)
