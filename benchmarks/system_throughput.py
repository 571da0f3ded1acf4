"""The whole system under load: learner updates/s against the UTD target, with 1 and 4 actors.

For each actor count, starts an isolated cluster with `robofume up` (own Ray head, replay, one
reward replica, the online learner, N simulated actors at the preset's control rate; free
ports, a fresh run directory under --out, the dataset and the source run's reward model and
pre-trained policy reused), samples the heartbeats for --seconds, stops it with `robofume down`
and reports: learner online updates/s and effective UTD (online updates per inserted
transition) against learner.utd_ratio, the learner's wait fraction (time blocked on the replay
rate limiter), replay insert rate, policy lag, label lag and control-tick lateness p99.

    python -m benchmarks.system_throughput --actors 1 4 --seconds 200
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from benchmarks.cluster_run import (
    Cluster,
    cluster_overrides,
    link_prepared,
    load_average,
    running_cluster,
)
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.system_throughput")


def _rate(samples: list[dict], get) -> float | None:
    """Slope of a counter between the first sample where it is positive and the last."""
    points = [(s["t"], get(s)) for s in samples]
    points = [(t, v) for t, v in points if v]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def _learner(s: dict, key: str) -> float:
    return float((s.get("learner") or {}).get(key) or 0)


def _actors(s: dict) -> list[dict]:
    return [v for k, v in sorted(s.items()) if k.startswith("actor_") and isinstance(v, dict)]


def summarise(cluster: Cluster, actors: int, utd_target: float) -> dict:
    """Rates over the steady part of the run (after the learner's first online update)."""
    samples = [s for s in cluster.samples if _learner(s, "online_updates") > 0] or cluster.samples
    last = cluster.samples[-1]
    updates = _rate(samples, lambda s: _learner(s, "online_updates"))
    inserts = _rate(samples, lambda s: float((s.get("replay") or {}).get("inserts") or 0))
    steps = _rate(samples, lambda s: float(sum(a.get("steps") or 0 for a in _actors(s))))
    lags = [a.get("policy_lag") for s in samples for a in _actors(s)]
    lags = [x for x in lags if x is not None]
    waits = [_learner(s, "wait_fraction") for s in samples if s.get("learner")]
    final = _actors(last)
    return {
        "actors": actors,
        "seconds": round(last["t"] - cluster.samples[0]["t"]),
        "up_s": round(cluster.up_s),
        "learner_step": _learner(last, "step"),
        "online_updates": _learner(last, "online_updates"),
        "updates_per_sec": updates,
        "target_updates_per_sec": utd_target * inserts if inserts else None,
        "utd_window": updates / inserts if updates and inserts else None,
        "utd_cumulative": _learner(last, "utd_ratio"),
        "utd_target": utd_target,
        "wait_fraction_mean": float(np.mean(waits)) if waits else None,
        "inserts_per_sec": inserts,
        "env_steps_per_sec": steps,
        "policy_lag_mean": float(np.mean(lags)) if lags else None,
        "policy_lag_max": max(lags) if lags else None,
        "label_lag_mean": max((a.get("label_lag_steps_mean") or 0) for a in final),
        "label_lag_max": max((a.get("label_lag_steps_max") or 0) for a in final),
        "tick_p99_ms": max((a.get("tick_jitter_p99_ms") or 0) for a in final),
        "tick_max_ms": max((a.get("tick_jitter_max_ms") or 0) for a in final),
        "tick_overruns": sum(a.get("tick_overruns") or 0 for a in final),
        "pending_episodes_max": max(
            (a.get("pending_episodes") or 0) for s in samples for a in _actors(s)
        ),
        "spilled_episodes": sum(a.get("spilled_episodes") or 0 for a in final),
        "tick_hz": final[0].get("tick_hz") if final else None,
        "load_mean": float(np.mean([s["load"] for s in cluster.samples])),
    }


def run_one(args: argparse.Namespace, actors: int) -> dict:
    from robofume.config import load_config

    run_dir = (args.out / f"actors_{actors}").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    link_prepared(args.source_run, run_dir)
    extra = [
        "--deploy.num_actors",
        str(actors),
        "--actor.total_steps",
        "1000000",
        "--actor.keyboard",
        "false",
        *args.overrides,
    ]
    overrides = cluster_overrides(args.preset, run_dir, args.data, extra)
    utd = load_config(args.preset, overrides=overrides[2:]).learner.utd_ratio
    log.info("%d actor(s): starting (UTD target %s), load %.1f", actors, utd, load_average())
    with running_cluster(run_dir, overrides) as cluster:
        cluster.poll(args.seconds, every_s=args.every)
        report = cluster.status_json()
        summary = summarise(cluster, actors, utd)
        summary["healthy"] = bool(report["replay"].get("healthy")) and all(
            r.get("healthy") for r in report["reward"]
        )
    (run_dir / "samples.json").write_text(json.dumps(cluster.samples, indent=0, default=str))
    return summary


def _f(value, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict]) -> str:
    head = (
        "| actors | tick rate | run s | online updates | updates/s (target) | effective UTD "
        "window / cumulative (target) | learner wait fraction | replay inserts/s | policy lag "
        "mean / max | label lag steps mean / max | tick lateness p99 / max, ms | overruns | "
        "load avg |\n|" + "---|" * 13
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['actors']} | {_f(r['tick_hz'], '{:g} Hz')} | {r['seconds']} | "
            f"{r['online_updates']:.0f} | {_f(r['updates_per_sec'])} "
            f"({_f(r['target_updates_per_sec'])}) | {_f(r['utd_window'])} / "
            f"{_f(r['utd_cumulative'])} ({r['utd_target']:g}) | {_f(r['wait_fraction_mean'])} | "
            f"{_f(r['inserts_per_sec'])} | {_f(r['policy_lag_mean'])} / {r['policy_lag_max']} | "
            f"{_f(r['label_lag_mean'])} / {r['label_lag_max']} | {_f(r['tick_p99_ms'], '{:.1f}')}"
            f" / {_f(r['tick_max_ms'], '{:.1f}')} | {r['tick_overruns']} | {r['load_mean']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="sim-cpu")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 4], help="actor counts to run")
    p.add_argument("--seconds", type=float, default=200.0, help="measured seconds per run")
    p.add_argument("--every", type=float, default=10.0, help="heartbeat sampling period, s")
    p.add_argument("--source-run", type=Path, default=Path("runs/sim-cpu"))
    p.add_argument("--data", default="data/sim-cpu", help="dataset dir (must exist)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/system_throughput"))
    p.add_argument("overrides", nargs="*", help="extra --section.field value overrides")
    args = p.parse_args(argv)
    setup_logging()
    rows = [run_one(args, n) for n in args.actors]
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
