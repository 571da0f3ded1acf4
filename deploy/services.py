"""Ray actors that host robofume's long-running components.

Every component exposes a blocking ``run(cfg, stop_event, **kwargs)``-style entry point; a
:class:`ComponentService` runs it on a background thread inside a detached, named Ray actor,
so ``make up`` can return while the cluster keeps running and ``make down`` finds it again
by name. Ray restarts a crashed service (``max_restarts``); the learner then resumes from its
newest checkpoint and the replay server from its newest Reverb checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
import traceback
from typing import Any

import ray

from deploy.status import SERVICE_BEAT_PREFIX

log = logging.getLogger(__name__)

BEAT_S = 5.0


@ray.remote(max_restarts=3, max_task_retries=0)
class ComponentService:
    """Runs ``module:function(config, stop_event, **kwargs)`` on a thread; reports its state.

    ``role`` (``learner``, ``actor``...) sizes the process's torch threads to its share of
    the node's cores (:mod:`robofume.threads`) before the component starts; None leaves them.
    """

    def __init__(
        self,
        name: str,
        target: str,
        config_dict: dict,
        kwargs: dict[str, Any],
        role: str | None = None,
    ):
        from robofume.config import ExperimentConfig
        from robofume.config.base import from_dict
        from robofume.logs import setup_logging
        from robofume.node import away_from_head, node_config

        setup_logging()
        self.name = name
        self.target = target
        self.config = node_config(from_dict(ExperimentConfig, config_dict))
        if away_from_head():  # no shared disk: heartbeats and dashboards go to the head too
            report_to_head(self.config)
        self.threads = None
        if role is not None:
            from robofume.threads import size_threads

            self.threads = size_threads(self.config, role)  # type: ignore[arg-type]
        self.kwargs = kwargs
        self.stop_event = threading.Event()
        self.error: str | None = None
        self.started = time.time()
        self.result: Any = None
        self.restarts = self._count_restart()
        module_name, fn_name = target.split(":")
        self.fn = getattr(importlib.import_module(module_name), fn_name)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        threading.Thread(target=self._beat, name=f"{name}-beat", daemon=True).start()

    def _count_restart(self) -> int:
        """Restarts of this service by Ray in this session (0 on a first start); a restart is
        logged and written to the service's TensorBoard run, so the dashboard shows it."""
        if not ray.get_runtime_context().was_current_actor_reconstructed:
            return 0
        from robofume import metrics as tags
        from robofume.run_dir import RunDir
        from robofume.status import read_statuses

        deploy = self.config.deploy
        earlier = read_statuses(deploy.run_dir).get(SERVICE_BEAT_PREFIX + self.name, {})
        restarts = int(earlier.get("restarts", 0)) + 1
        why = (earlier.get("error") or "its process died").strip().splitlines()[-1]
        log.warning("%s restarted by Ray (restart %d): %s", self.name, restarts, why)
        with contextlib.suppress(Exception):  # the dashboard note must not stop the service
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(RunDir.of(self.config).tb(self.name))) as tb:
                tb.add_scalar(tags.SERVICE_RESTARTS, restarts, restarts)
                tb.add_text(tags.SERVICE_STATE, f"restarted by Ray ({restarts}): {why}", restarts)
        return restarts

    def _beat(self) -> None:
        """``status/service_<name>.json`` every :data:`BEAT_S`: `robofume status` reads the
        services' states from these files and never joins the cluster as a Ray job."""
        from robofume.status import write_status

        while True:
            with contextlib.suppress(OSError):
                write_status(self.config.deploy.run_dir, SERVICE_BEAT_PREFIX + self.name,
                             self.state())  # fmt: skip
            time.sleep(BEAT_S)

    def _run(self) -> None:
        try:
            self.result = self.fn(self.config, self.stop_event, **self.kwargs)
        except Exception:  # reported through state(); the thread must not die silently
            self.error = traceback.format_exc()
            log.error("%s crashed:\n%s", self.name, self.error)

    def state(self) -> dict[str, Any]:
        alive = self.thread.is_alive()
        return {
            "name": self.name,
            "target": self.target,
            "alive": alive,
            "state": "running" if alive else ("crashed" if self.error else "finished"),
            "error": self.error,
            "uptime_s": time.time() - self.started,
            "threads": self.threads,
            "niceness": os.nice(0),
            "restarts": self.restarts,
            "pid": os.getpid(),
        }

    def node_ip(self) -> str:
        """The address of the node Ray placed this service on."""
        return ray.util.get_node_ip_address()

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Ask the component to finish (flush, checkpoint) and wait for it."""
        self.stop_event.set()
        self.thread.join(timeout_s)
        return self.state()


def report_to_head(cfg: Any) -> None:
    """Relay this process's heartbeats and dashboard runs to the head's registry."""
    from robofume.auth import link_token
    from robofume.node import head_address
    from robofume.telemetry import HeadClient, relay_to_head

    relay_to_head(HeadClient(head_address(cfg.deploy), link_token(cfg.deploy)))


def launch(
    name: str,
    target: str,
    config_dict: dict,
    *,
    num_cpus: float = 0.0,
    num_gpus: float = 0.0,
    kwargs: dict[str, Any] | None = None,
    role: str | None = None,
    resources: dict[str, float] | None = None,
) -> ray.actor.ActorHandle:
    """Start (or find) the named detached service; ``role`` sizes its threads; ``resources``
    (custom Ray resources) pin it to the nodes that offer them."""
    return ComponentService.options(
        name=name,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=dict(resources or {}),
    ).remote(name, target, config_dict, kwargs or {}, role)


def find(name: str) -> ray.actor.ActorHandle | None:
    try:
        return ray.get_actor(name)
    except ValueError:
        return None
