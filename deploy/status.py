"""`robofume status`: every component's health, address and counters, live or from heartbeats."""

from __future__ import annotations

import time
from typing import Any

from robofume.config import ExperimentConfig
from robofume.status import read_statuses

STALE_S = 30.0
SERVICE_BEAT_PREFIX = "service_"
"""Heartbeat files of the Ray-hosted services (``deploy.services``): ``service_<name>``."""


def _secret_if_any(cfg: ExperimentConfig) -> bytes | None:
    """The deployment secret when its file exists (status never creates one)."""
    from robofume.auth import ensure_secret, secret_path

    path = secret_path(cfg.deploy)
    return ensure_secret(path) if path.exists() else None


def _probe_replay(address: str, secret: bytes | None = None) -> dict[str, Any]:
    try:
        from robofume.replay_client.info import stats_client, table_stats
        from robofume.replay_client.marker import read_marker

        client = stats_client(address)
        stats = table_stats(client, timeout_s=3.0)
        try:  # live: a restart shows even before the new server's first heartbeat
            marker = read_marker(client, timeout_s=3.0, address=address, secret=secret)
            stats.update(epoch=marker.epoch, checkpoints_completed=marker.completed)
        except Exception as err:  # an older server without markers, or starting
            stats["marker_error"] = str(err).splitlines()[0][:200]
        return {"healthy": True, **stats}
    except Exception as err:  # unreachable, not started, or no Reverb installed
        return {"healthy": False, "error": str(err).splitlines()[0][:200]}


def _probe_reward(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    out = []
    try:
        from robofume.reward_client import RewardClient
    except ImportError as err:
        return [{"healthy": False, "error": str(err)}]
    client = RewardClient(list(cfg.deploy.reward_addresses), cfg)
    try:
        healthy = set(client.healthy())
        for address in cfg.deploy.reward_addresses:
            entry: dict[str, Any] = {"address": address, "healthy": address in healthy}
            if entry["healthy"]:
                try:
                    entry.update(client.info(address, timeout=3.0))
                except Exception as err:  # the replica answered health but not info
                    entry["error"] = str(err)[:200]
            out.append(entry)
    finally:
        client.close()
    return out


def discovered(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with where replay and the reward replicas really listen, as the head's registry
    knows it (a service on another node); the config's addresses when no registry answers."""
    import dataclasses

    from robofume.auth import link_token
    from robofume.node import head_address
    from robofume.telemetry import HeadClient

    try:
        found = HeadClient(head_address(cfg.deploy), link_token(cfg.deploy), 3.0).services()
    except Exception:  # no registry, no secret here: what the config says
        return cfg
    d = cfg.deploy
    replay = found.get("replay") or d.replay_address
    reward = tuple(found.get("reward") or d.reward_addresses)
    d = dataclasses.replace(d, replay_address=replay, reward_addresses=reward)
    return cfg.replace(deploy=d)


def collect(cfg: ExperimentConfig, live: bool = True) -> dict[str, Any]:
    """Status of a run: heartbeats (learner, actors, replay, reward) plus live probes, at the
    addresses the head's registry knows."""
    if live:
        cfg = discovered(cfg)
    now = time.time()
    beats = read_statuses(cfg.deploy.run_dir)
    for beat in beats.values():
        beat["age_s"] = round(now - float(beat.get("time", 0)), 1)
        beat["stale"] = beat["age_s"] > STALE_S
    report: dict[str, Any] = {
        "run_dir": cfg.deploy.run_dir,
        "config_hash": cfg.hash,
        "learner": beats.get("learner"),
        "actors": {k: v for k, v in beats.items() if k.startswith("actor_")},
        "replay": {"address": cfg.deploy.replay_address, **(beats.get("replay") or {})},
        "reward": [],
        "phases": beats.get("phases"),
        "services": {
            name.removeprefix(SERVICE_BEAT_PREFIX): {
                **beat,
                "alive": not beat["stale"],  # its process beats; "state" says the rest
            }
            for name, beat in beats.items()
            if name.startswith(SERVICE_BEAT_PREFIX)
        },
    }
    if live:
        report["replay"].update(_probe_replay(cfg.deploy.replay_address, _secret_if_any(cfg)))
        report["reward"] = _probe_reward(cfg)
    return report


def _fields(data: dict[str, Any], keys: tuple[str, ...]) -> str:
    return " ".join(f"{k}={data.get(k, '?')}" for k in keys)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def format_phases(runner: dict[str, Any] | None) -> list[str]:
    """One line per phase: state, done/total, rate and ETA of its current step."""
    if not runner:
        return ["phases   no heartbeat (no phase runner)"]
    flag = " STALE" if runner.get("stale") and runner.get("state") == "running" else ""
    lines = [f"phases   runner {runner.get('state')}{flag}"]
    for name, phase in (runner.get("phases") or {}).items():
        line = f"phase    {name:<9} {phase.get('state', '?'):<8}"
        if phase.get("state") not in ("pending", "reused"):
            total = phase.get("total")
            rate = phase.get("rate")
            line += f" {phase.get('done', 0)}/{total if total else '?'}"
            line += f" {rate:.2f}/s" if rate else " ?/s"
            line += f" eta {_duration(phase.get('eta_s'))}"
            if phase.get("desc"):
                line += f" ({phase['desc']})"
            if phase.get("node"):
                line += f" on {phase['node']}"
        if phase.get("error"):
            line += f"  error: {phase['error']}"
        lines.append(line)
    return lines


def replay_restart_line(rp: dict[str, Any], now: float | None = None) -> str:
    """Replay's epoch, start, restore and checkpoint age (from its heartbeat)."""
    now = time.time() if now is None else now
    if rp.get("epoch") is None:
        return "checkpoints: no heartbeat"
    started = rp.get("started_at")
    restored = rp.get("restored_checkpoint")
    done = rp.get("last_checkpoint_time")
    parts = [
        f"epoch={rp['epoch']}",
        f"up={_duration(now - started) if started else '?'}",
        "restored=" + (restored.rsplit("/", 1)[-1] if restored else "none (started empty)"),
        f"checkpoints={rp.get('checkpoints_completed', '?')}",
        f"last_checkpoint_age={_duration(now - done) if done else 'never'}",
    ]
    return " ".join(parts)


def reward_restart_line(r: dict[str, Any], now: float | None = None) -> str:
    """A reward replica's uptime, restarts and the age of the model checkpoint it serves."""
    now = time.time() if now is None else now
    started, made = r.get("started_at"), r.get("checkpoint_time")
    checkpoint = r.get("checkpoint") or ""
    parts = [
        f"up={_duration(now - started) if started else '?'}",
        f"restarts={r.get('restarts', 0)}",
        "checkpoint=" + ("/".join(checkpoint.split("/")[-2:]) or "?"),
        f"checkpoint_age={_duration(now - made) if made else '?'}",
    ]
    return " ".join(parts)


def format_report(report: dict[str, Any]) -> str:
    """A compact human-readable table of :func:`collect`'s report."""
    lines = [f"run {report['run_dir']}  (config {report['config_hash']})"]
    lines += format_phases(report.get("phases"))
    rp = report["replay"]
    state = "up" if rp.get("healthy") else f"DOWN ({rp.get('error', 'no answer')})"
    lines.append(
        f"replay   {rp['address']:<22} {state}  " + _fields(rp, ("size", "inserts", "samples"))
    )
    lines.append(f"{'':<8} {replay_restart_line(rp)}")
    for r in report["reward"]:
        state = "up" if r.get("healthy") else "DOWN"
        lines.append(
            f"reward   {r['address']:<22} {state}  "
            + _fields(r, ("model_version", "batches", "frames", "largest_batch"))
        )
        if r.get("healthy"):
            lines.append(f"{'':<8} {reward_restart_line(r)}")
    learner = report.get("learner")
    if learner:
        flag = " STALE" if learner.get("stale") else ""
        keys = ("step", "updates_per_sec", "utd_ratio", "policy_version")
        keys += ("replay_duplicates_dropped", "replay_forged_dropped")
        lines.append("learner  " + _fields(learner, keys) + flag)
        if learner.get("replay_wipes"):
            lines.append(
                f"{'':<8} REPLAY WIPED {learner['replay_wipes']}x: "
                f"{learner.get('last_replay_wipe')}"
            )
    else:
        lines.append("learner  no heartbeat")
    for name, actor in sorted(report["actors"].items()):
        flag = " STALE" if actor.get("stale") else ""
        actor = {**actor, "episodes": sum((actor.get("episodes_closed") or {}).values())}
        keys = (
            "state",
            "steps",
            "episodes",
            "policy_version",
            "policy_lag",
            "interventions",
            "pending_episodes",
            "label_lag_steps_mean",
        )
        lines.append(f"{name:<8} " + _fields(actor, keys) + flag)
        keys = ("replay_restarts_seen", "redelivered_episodes", "retained_episodes")
        keys += ("replay_forged_markers",)
        lines.append(f"{'':<8} " + _fields(actor, keys))
        refusals = actor.get("weights_refusals") or {}
        if refusals:
            counts = ", ".join(f"{n} {reason}" for reason, n in sorted(refusals.items()))
            lines.append(
                f"{'':<8} REFUSED policy weights: {counts} (last: {actor.get('last_error')})"
            )
    if not report["actors"]:
        lines.append("actors   no heartbeat")
    return "\n".join(lines)
