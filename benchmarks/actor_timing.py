"""Actor timing: control-tick jitter at 5 Hz, label lag and policy lag with 1 and 4 actors.

``python -m benchmarks.actor_timing [--seconds 60] [--actors 1 4] [--preset sim-cpu]
[--publish-every 2] [--free-seconds 20] [--no-record]``

Starts a local Reverb replay server and one gRPC reward server (the preset's reward backend,
untrained: the latency is the same) in this process, a stand-in learner thread that publishes
new policy weights every ``--publish-every`` seconds, and N simulated actors as separate
``python -m actor`` processes on the real control rate. From each actor's status heartbeat
it reports: tick lateness against the deadline grid (p50/p99/max), overruns, steps/s, label
latency (request -> label) and label lag in steps, and policy lag (learner version minus the
version acting) in versions and seconds. ``--free-seconds`` adds one actor ticking as fast as
it can (throughput). Results go to ``benchmarks/RESULTS.md`` under ``## Actor``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine as describe_machine
from benchmarks.common import record_section

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NOTE = (
    "\nThe free-running row is the actor's own throughput (policy + simulator + bookkeeping, "
    "no sleeping). There the single CPU reward replica cannot label that many frames per "
    "second, so requests queue and label lag grows to hundreds of steps; every label is still"
    " filed under its own transition and episodes wait for theirs before delivery. At the 5 "
    "Hz control rate labels return within the tick (lag 0-2 steps). Compare tick lateness "
    "with the bare timer: the part above it is contention for the CPU between the actor "
    "processes and the servers (each tick needs a few ms of CPU for policy, physics and "
    "rendering; here four actors, Reverb and the reward replica share 2 cores with other "
    "jobs). Network I/O (labels, replay writes, weight pulls) never runs on the tick thread; "
    "see the overruns column for ticks that missed a whole period.\n"
)
HEADING = "## Actor"
ROOT = Path(__file__).resolve().parents[1]


def _overrides(run_dir: Path, tick_hz: float) -> list[str]:
    return [
        "--deploy.run_dir", str(run_dir),
        "--deploy.control_port", "0",
        "--actor.keyboard", "false",
        "--actor.report_every_s", "0.5",
        "--actor.tick_hz", str(tick_hz),
        "--actor.human_reset_every", "1000",
        "--actor.weights_poll_s", "1.0",
    ]  # fmt: skip


BASELINE = """
import json, sys, time
import numpy as np
period, n = 1.0 / float(sys.argv[1]), int(sys.argv[2])
nxt, late = time.monotonic(), []
for _ in range(n):
    delay = nxt - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    late.append(time.monotonic() - nxt)
    nxt += period
ms = np.asarray(late) * 1e3
print(json.dumps({"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                  "max": float(ms.max())}))
"""
"""A bare timer on the same deadline grid, run alongside: the machine's own scheduling noise."""


class Publisher(threading.Thread):
    """Stands in for the learner: a new policy version every ``every`` seconds."""

    def __init__(self, cfg, every: float):
        super().__init__(daemon=True)
        import torch

        from robofume.networks import PolicyModel
        from robofume.replay_client.weights import WeightsClient
        from robofume.tasks import task_names

        net = cfg.network
        table = torch.randn(len(task_names()), 384)  # MiniLM-sized task embeddings
        model = PolicyModel(net, cfg.env.image_size, cfg.env.action_dim, net.proprio_dim, table)
        self.variables = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        self.cfg = cfg
        self.every = every
        from robofume.auth import deployment_secret

        self.client = WeightsClient(cfg.deploy.replay_address, secret=deployment_secret(cfg.deploy))
        self.published: dict[int, float] = {}
        self.stop = threading.Event()
        self.publish()

    def publish(self) -> None:
        version = len(self.published) + 1
        self.client.publish(self.variables, version, self.cfg.hash)
        self.published[version] = time.time()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.publish()


def run_config(preset: str, n_actors: int, seconds: float, tick_hz: float, every: float) -> dict:
    from replay.server import start_replay_server
    from reward_server.backends import make_reward_model
    from reward_server.server import start_server_thread
    from robofume.config import load_config

    run_dir = Path(tempfile.mkdtemp(prefix="actor_timing_"))
    overrides = _overrides(run_dir, tick_hz)
    cfg = load_config(preset, overrides=overrides)
    replay = start_replay_server(
        cfg, port=0, checkpoint_dir=run_dir / "replay", checkpoint_every_s=0, heartbeat=False
    )
    reward = start_server_thread(make_reward_model(cfg.reward, "cpu"), cfg.reward)
    addresses = ["--deploy.replay_address", replay.address,
                 "--deploy.reward_addresses", reward.address]  # fmt: skip
    cfg = load_config(preset, overrides=overrides + addresses)
    publisher = Publisher(cfg, every)
    publisher.start()
    hz = tick_hz if tick_hz > 0 else cfg.env.control_hz
    steps = int(seconds * hz) if tick_hz > 0 else 0
    env = dict(os.environ, OMP_NUM_THREADS="1", ROBOFUME_NO_PROGRESS="1", TF_CPP_MIN_LOG_LEVEL="2")
    procs = []
    logs = []
    for i in range(n_actors):
        log = open(run_dir / f"actor_{i}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        cmd = [sys.executable, "-m", "actor", "--preset", preset, "--actor_id", str(i),
               "--steps", str(steps), *overrides, *addresses]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
    baseline = None
    samples: list[dict] = []
    status_files = [run_dir / "status" / f"actor_{i}.json" for i in range(n_actors)]
    deadline = time.time() + seconds + 180
    started = None
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.5)
        for f in status_files:
            try:
                s = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            samples.append(s)
            if started is None and s.get("steps", 0) > 0:
                started = time.time()
                if tick_hz > 0:  # the bare timer runs while the actors tick
                    baseline = subprocess.Popen(
                        [sys.executable, "-c", BASELINE, str(hz), str(int(0.9 * steps))],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
        if tick_hz <= 0 and started and time.time() - started > seconds:
            for p in procs:
                p.terminate()  # SIGTERM: the actor stops cleanly after `seconds`
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    for log in logs:
        log.close()
    base = json.loads(baseline.communicate(timeout=seconds + 60)[0]) if baseline else None
    publisher.stop.set()
    finals = []
    for f in status_files:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            finals.append(json.loads(f.read_text()))
    reward.stop()
    replay.stop(checkpoint=False)
    if len(finals) != n_actors:
        raise RuntimeError(f"only {len(finals)} of {n_actors} actors reported; logs in {run_dir}")
    # policy lag from the heartbeats: versions behind, and seconds since the newer version
    lag_versions, staleness = [], []
    for s in samples:
        if s.get("state") != "running" or s.get("policy_version", -1) < 1:
            continue
        mine, when = s["policy_version"], s["time"]
        newer = [v for v, t in publisher.published.items() if v > mine and t <= when]
        lag_versions.append(len(newer))
        staleness.append(when - publisher.published[min(newer)] if newer else 0.0)

    def stat(key: str, fn=max) -> float:
        vals = [f[key] for f in finals if f.get(key) is not None]
        return float(fn(vals)) if vals else float("nan")

    return {
        "actors": n_actors,
        "hz": hz if tick_hz > 0 else 0.0,
        "ticks": int(sum(f.get("ticks", 0) for f in finals)),
        "steps": int(sum(f["steps"] for f in finals)),
        "jitter_p50": stat("tick_jitter_p50_ms", np.mean),
        "jitter_p99": stat("tick_jitter_p99_ms", np.mean),
        "jitter_p99_worst": stat("tick_jitter_p99_ms"),
        "jitter_max": stat("tick_jitter_max_ms"),
        "overruns": int(sum(f.get("tick_overruns", 0) for f in finals)),
        "steps_per_sec": stat("steps_per_sec", np.mean),
        "label_p50": stat("label_latency_p50_ms", np.mean),
        "label_p99": stat("label_latency_p99_ms"),
        "label_lag_mean": stat("label_lag_steps_mean", np.mean),
        "label_lag_max": stat("label_lag_steps_max"),
        "policy_lag_mean": float(np.mean(lag_versions)) if lag_versions else float("nan"),
        "policy_lag_max": int(max(lag_versions)) if lag_versions else -1,
        "stale_mean": float(np.mean(staleness)) if staleness else float("nan"),
        "stale_max": float(max(staleness)) if staleness else float("nan"),
        "delivered": int(sum(f.get("delivered_episodes", 0) for f in finals)),
        "pending": int(sum(f.get("pending_episodes", 0) for f in finals)),
        "load": os.getloadavg()[0],
        "baseline": base,
    }


def table(rows: list[dict]) -> str:
    head = (
        "| actors | tick rate | ticks | tick lateness p50 / p99 (worst actor) / max, ms | "
        "overruns | steps/s per actor | label latency p50 / p99, ms | label lag steps mean / max "
        "| policy lag versions mean / max | weights staleness s mean / max | bare timer p99 / max, "
        "ms | load avg |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        rate = f"{r['hz']:g} Hz" if r["hz"] else "free-running"
        b = r.get("baseline")
        base = f"{b['p99']:.2f} / {b['max']:.1f}" if b else "-"
        lines.append(
            f"| {r['actors']} | {rate} | {r['ticks']} | {r['jitter_p50']:.2f} / "
            f"{r['jitter_p99']:.2f} ({r['jitter_p99_worst']:.2f}) / {r['jitter_max']:.1f} | "
            f"{r['overruns']} | {r['steps_per_sec']:.1f} | {r['label_p50']:.1f} / "
            f"{r['label_p99']:.1f} | {r['label_lag_mean']:.2f} / {r['label_lag_max']:.0f} | "
            f"{r['policy_lag_mean']:.2f} / {r['policy_lag_max']} | {r['stale_mean']:.2f} / "
            f"{r['stale_max']:.2f} | {base} | {r['load']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sim-cpu")
    parser.add_argument("--seconds", type=float, default=60.0, help="run time per configuration")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--hz", type=float, default=5.0, help="control rate")
    parser.add_argument("--publish-every", type=float, default=2.0, help="seconds per version")
    parser.add_argument("--free-seconds", type=float, default=20.0, help="0: skip throughput")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROBOFUME_NO_PROGRESS", "1")
    from robofume.logs import setup_logging

    setup_logging(logging.WARNING)
    machine = describe_machine(load=False)
    rows = []
    for n in args.actors:
        rows.append(run_config(args.preset, n, args.seconds, args.hz, args.publish_every))
        print(table(rows[-1:]), flush=True)
    if args.free_seconds > 0:
        rows.append(run_config(args.preset, 1, args.free_seconds, -1.0, args.publish_every))
        print(table(rows[-1:]), flush=True)
    section = (
        f"{HEADING}\n\n"
        f"`python -m benchmarks.actor_timing --seconds {args.seconds:g}` on {machine}; "
        f"{time.strftime('%Y-%m-%d')}. The machine is shared with other jobs (load average in "
        "the last column), so these are upper bounds for a dedicated robot PC.\n\n"
        f"Preset `{args.preset}` (64 px sim, reward backend of the preset, untrained, behind one "
        "local gRPC replica; local Reverb). Each actor is its own `python -m actor` process; "
        f"a stand-in learner publishes new weights every {args.publish_every:g} s; actors poll "
        "every 1 s. *Tick lateness*: start of each control tick minus its deadline on the "
        "monotonic grid (the period is never stretched: work that overruns skips to the next "
        "deadline, counted as *overruns*). *Label latency*: frame sent -> label back; *label "
        "lag*: steps taken meanwhile (0 = the label is there at the next tick). *Policy lag*: "
        "published versions newer than the acting one, sampled from the heartbeats; "
        "*staleness*: seconds since the first newer version was published. *Bare timer*: a "
        "process doing nothing but sleep to the same 5 Hz grid during the run, i.e. what the "
        "machine's scheduler alone costs.\n\n" + table(rows) + NOTE
    )
    print(section)
    if not args.no_record:
        record_section(HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
