"""``run_actor``: wire the reset-free loop to its environment, policy, reward server and replay.

Every dependency can be injected (tests, benchmarks, other transports); by default they come
from the config: ``make_env`` (or the WidowX adapter), ``InferencePolicy``, ``RewardClient``
on ``deploy.reward_addresses``, and Reverb's ``EpisodeWriter`` / ``WeightsClient`` on
``deploy.replay_address``. Works on the robot PC (main thread: SIGUSR1 and the keyboard work)
or on a thread inside a Ray actor (``run_actor(cfg, stop_event, actor_id=i)``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actor.control import Commands, ControlServer, install_signal_handler, start_keyboard
from actor.delivery import DeliveryQueue
from actor.labels import Labeller, LabelTracker
from actor.loop import Actor, ResetFreeLoop
from actor.outbox import Outbox
from actor.pace import LearnerPace, make_pace
from actor.replay_link import EpisodeSink
from actor.report import Reporter
from actor.scheduler import TickScheduler
from robofume.auth import deployment_secret, link_token
from robofume.config import ExperimentConfig
from robofume.config.base import hashed_values
from robofume.run_dir import RunDir
from robofume.status import read_statuses, window_rate
from robofume.threads import size_threads
from robofume.weights_puller import ActingPolicy, WeightsPuller, WeightsSource

log = logging.getLogger(__name__)


def make_actor_env(cfg: ExperimentConfig, seed: int) -> Any:
    """The simulator or, with ``env.kind: widowx``, the real robot."""
    if cfg.env.kind == "widowx":
        from robofume.envs.widowx import WidowXEnv

        return WidowXEnv(cfg.env, task=cfg.actor.forward_task)
    from robofume.envs import make_env, online_env

    return make_env(online_env(cfg.env), task=cfg.actor.forward_task, seed=seed)


def steps_before_restart(cfg: ExperimentConfig, name: str) -> int:
    """Environment steps this actor took earlier in the same `up` session (its last heartbeat),
    so a restarted actor continues its step counter and its TensorBoard axis."""
    if not cfg.deploy.session:
        return 0
    earlier = read_statuses(cfg.deploy.run_dir).get(name, {})
    if earlier.get("session") != cfg.deploy.session:
        return 0
    return int(earlier.get("env_steps", 0))


def tick_rate(cfg: ExperimentConfig) -> float:
    """Ticks per second of the control loop (0: as fast as possible)."""
    hz = cfg.actor.tick_hz or cfg.env.control_hz
    return max(0.0, hz)


def _default_labeller(cfg: ExperimentConfig) -> Labeller:
    from robofume.reward_client import RewardClient

    return RewardClient(cfg.deploy.reward_addresses, cfg, timeout_s=cfg.actor.reward_deadline_s)


def _default_sink(cfg: ExperimentConfig) -> Callable[[], EpisodeSink]:
    def make() -> EpisodeSink:
        from robofume.replay_client.writer import EpisodeWriter

        return EpisodeWriter(cfg.deploy.replay_address, cfg)

    return make


def _default_weights(cfg: ExperimentConfig) -> WeightsSource:
    from robofume.replay_client.weights import WeightsClient

    return WeightsClient(cfg.deploy.replay_address, timeout_s=5.0)


def outbox_status(outbox: Outbox | None) -> dict[str, Any]:
    """What the actor keeps for replay restarts: retained (delivered, not yet in a replay
    checkpoint), redelivered episodes, replay restarts seen and replay's epoch."""
    if outbox is None:
        return {}
    marker = outbox.last_marker
    return {
        "retained_episodes": len(outbox),
        "redelivered_episodes": outbox.redelivered,
        "replay_restarts_seen": outbox.restarts_seen,
        "replay_epoch": marker.epoch if marker else None,
        "replay_checkpoints": marker.completed if marker else None,
        "outbox_overflow": outbox.overflow,
        "replay_forged_markers": outbox.forged_markers,
    }


def _percentile(values: Any, q: float) -> float | None:
    recent = list(values)[-1000:]
    return float(np.percentile(recent, q)) if recent else None


def run_actor(
    cfg: ExperimentConfig,
    stop_event: threading.Event | None = None,
    *,
    actor_id: int = 0,
    max_steps: int | None = None,
    env: Any = None,
    policy: ActingPolicy | None = None,
    labeller: Labeller | None = None,
    sink_factory: Callable[[], EpisodeSink] | None = None,
    weights: WeightsSource | None = None,
    commands: Commands | None = None,
    on_loop: Callable[[ResetFreeLoop], None] | None = None,
    pace: LearnerPace | None = None,
) -> dict[str, Any]:
    """Run actor ``actor_id`` until ``max_steps`` (default ``actor.total_steps``; 0 = until
    stopped), a ``stop`` command or ``stop_event``. Returns the final status dict.

    Status: ``<run_dir>/status/actor_<id>.json`` every ``actor.report_every_s``;
    TensorBoard: ``<run_dir>/tb/actor_<id>``; spill: ``actor.spill_dir`` (default
    ``<run_dir>/spill``) ``/actor_<id>``; control endpoint: 127.0.0.1:``control_port + id``.
    """
    a = cfg.actor
    name = f"actor_{actor_id}"
    seed = a.seed + actor_id
    run_dir = Path(cfg.deploy.run_dir)
    spill_dir = RunDir.of(cfg).spill(name)
    stop_event = stop_event or threading.Event()
    secret = deployment_secret(cfg.deploy)  # none copied from the head: stop before the robot
    own_env = env is None
    env = make_actor_env(cfg, seed) if own_env else env  # the likeliest to fail (robot)
    size_threads(cfg, "actor")  # actor.policy_threads, else the actor's share of the cores
    if policy is None:
        from robofume.policy import InferencePolicy

        policy = InferencePolicy(cfg, device=a.policy_device, seed=seed)
    own_labeller = labeller is None and not a.use_ground_truth_reward
    if own_labeller:
        labeller = _default_labeller(cfg)
    weights = weights if weights is not None else _default_weights(cfg)

    puller = WeightsPuller(
        weights,
        policy,
        cfg.hash,
        secret,
        a.weights_poll_s,
        cfg.deploy.replay_address,
        config_values=hashed_values(cfg),
    )
    actor = Actor(
        policy,
        None,
        puller,
        ground_truth_reward=a.use_ground_truth_reward,
        success_frames=a.success_frames,
        meta={"actor_id": actor_id, "config_hash": cfg.hash},
    )
    tracker = None
    if labeller is not None and not a.use_ground_truth_reward:
        tracker = LabelTracker(labeller, step_clock=lambda: actor.next_step_id)
    actor.tracker = tracker
    scheduler = TickScheduler(tick_rate(cfg))
    commands = commands or Commands()
    reporter: Reporter | None = None
    delivery = DeliveryQueue(
        sink_factory or _default_sink(cfg),
        tracker,
        spill_dir=spill_dir,
        memory_limit=a.local_buffer_episodes,
        label_wait_s=a.label_wait_s,
        retry_s=a.retry_s,
        discount=cfg.learner.discount,
        address=cfg.deploy.replay_address,
        on_finalized=lambda seg, eps: reporter.on_finalized(seg, eps) if reporter else None,
        outbox=Outbox(spill_dir / "outbox", a.outbox_memory_episodes, a.outbox_max_episodes),
        marker_poll_s=a.marker_poll_s,
    )
    actor.next_seq, actor.next_step_id = delivery.recover()
    earlier = steps_before_restart(cfg, name)
    actor.next_step_id = max(actor.next_step_id, earlier)
    if pace is None and sink_factory is None:  # paced on the real replay server's counters
        pace = make_pace(cfg)
    loop = ResetFreeLoop(cfg, env, actor, delivery, commands, scheduler, pace)
    if on_loop is not None:
        on_loop(loop)

    server: ControlServer | None = None
    history: deque[tuple[float, int]] = deque(maxlen=32)

    def snapshot() -> dict[str, Any]:
        snap = loop.snapshot()
        lags = list(tracker.lags) if tracker is not None else []
        snap.update(
            session=cfg.deploy.session,
            env_steps=earlier + loop.steps,
            actor_id=actor_id,
            config_hash=cfg.hash,
            policy_version=int(policy.version),
            learner_version=puller.learner_version,
            policy_lag=puller.policy_lag,
            weights_refused=sorted(puller.refused),
            weights_refusals=dict(puller.refusals),
            label_lag_steps_mean=float(np.mean(lags[-1000:])) if lags else None,
            label_lag_steps_max=int(max(lags[-1000:])) if lags else None,
            label_latency_p50_ms=_percentile(tracker.latency_ms, 50) if tracker else None,
            label_latency_p99_ms=_percentile(tracker.latency_ms, 99) if tracker else None,
            tick_jitter_p50_ms=scheduler.jitter_ms(50, last=1000),
            tick_jitter_p99_ms=scheduler.jitter_ms(99, last=1000),
            tick_jitter_max_ms=scheduler.jitter_ms(100, last=1000),
            ticks=scheduler.ticks,
            tick_overruns=scheduler.overruns,
            tick_hz=tick_rate(cfg),
            steps_per_sec=window_rate(history, time.monotonic(), loop.steps),
            pending_episodes=delivery.pending,
            spilled_episodes=delivery.spilled,
            delivered_segments=delivery.delivered_segments,
            delivered_episodes=delivery.delivered_episodes,
            rejected_episodes=delivery.rejected,
            spill_dir=str(spill_dir),
            **outbox_status(delivery.outbox),
            replay={
                "address": cfg.deploy.replay_address,
                "reachable": delivery.replay_reachable,
                "weights_reachable": puller.reachable,
            },
            reward={
                "addresses": list(cfg.deploy.reward_addresses),
                "reachable": tracker.reachable if tracker else None,
                "failures": tracker.failures if tracker else 0,
            },
            control_port=server.port if server else None,
            last_error=delivery.last_error
            or puller.last_error
            or (tracker.last_error if tracker else ""),
        )
        return snap

    head = None
    if cfg.deploy.head_address:  # another machine: the head's status and dashboard show us
        from robofume.telemetry import HeadClient, HeadReporter

        head = HeadReporter(HeadClient(cfg.deploy.head_address, link_token(cfg.deploy)), name)
    reporter = Reporter(
        name,
        run_dir,
        snapshot,
        a.report_every_s,
        tb_dir=RunDir.of(cfg).tb(name),
        strip_every=a.strip_every,
        head=head,
    )
    restore_signal = install_signal_handler(commands)
    try:
        if a.control_rpc:
            port = cfg.deploy.control_port + actor_id if cfg.deploy.control_port else 0
            server = ControlServer(commands, port, snapshot, link_token(cfg.deploy)).start()
        if a.keyboard:
            start_keyboard(commands)
        delivery.start()
        puller.start()
        if pace is not None:
            pace.start()
        reporter.start()
        if not puller.wait_for_first(a.initial_weights_timeout_s):
            log.warning(
                "no policy weights at %s after %.0f s; holding until they arrive",
                cfg.deploy.replay_address,
                a.initial_weights_timeout_s,
            )
        log.info(
            "%s: %s <-> %s at %s, replay %s, reward %s",
            name,
            a.forward_task,
            a.reset_task,
            f"{tick_rate(cfg):g} Hz" if tick_rate(cfg) else "free-running ticks",
            cfg.deploy.replay_address,
            "ground truth" if tracker is None else ",".join(cfg.deploy.reward_addresses),
        )
        loop.run(a.total_steps if max_steps is None else max_steps, stop_event)
    finally:
        puller.stop()
        if pace is not None:
            pace.stop()
        left = delivery.close(a.shutdown_timeout_s)
        if left:
            log.warning("%s stopped with %d episode(s) spilled to %s", name, left, spill_dir)
        reporter.close()
        if server is not None:
            server.close()
        if restore_signal is not None:
            restore_signal()
        if own_env:
            env.close()
        if own_labeller:
            labeller.close()
    final = reporter.last or snapshot()
    log.info(
        "%s done: %d steps, %d episodes delivered, %d interventions",
        name,
        final["steps"],
        final["delivered_episodes"],
        final["interventions"],
    )
    return final
