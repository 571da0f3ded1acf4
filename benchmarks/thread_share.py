"""Learner updates/s alone and beside the actor and the reward server, before and after
sizing each process's torch threads to its share of the cores (robofume/threads.py).

    python -m benchmarks.thread_share [--preset sim-cpu] [--seconds 20] [--no-record]

Real processes: the learner (``Learner.update`` on a fixed synthetic batch of the preset's
size, timed for ``--seconds`` after a warm-up), a simulated actor (``python -m actor`` at the
preset's control rate, policy weights from a publisher thread, frames labelled by the reward
server, episodes written to a Reverb server in this process) and a reward server
(``robofume reward serve``, the preset's backend, untrained: the cost is the same).
"before": torch's defaults (one thread per core in the learner and the reward server; the
actor already used ``actor.policy_threads`` = 1); "after": the automatic shares.
Results go to ``benchmarks/RESULTS.md`` under ``## Threads``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path

from benchmarks.common import machine as describe_machine
from benchmarks.common import record_section

log = logging.getLogger("benchmarks.thread_share")
ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Threads"


def run_learner(preset: str, threads: int, seconds: float) -> dict:
    """Child mode: updates/s of one learner with ``threads`` (0: torch's default)."""
    import torch

    from benchmarks.learner_speed import synthetic_learner

    if threads > 0:
        torch.set_num_threads(threads)
    _, learner, data = synthetic_learner(preset, load_batch(preset), "cpu")
    for _ in range(2):
        learner.update(data)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.update(data)
        done += 1
    elapsed = time.perf_counter() - start
    return {"threads": torch.get_num_threads(), "updates": done, "updates_per_s": done / elapsed}


def load_batch(preset: str) -> int:
    from robofume.config import load_config

    return load_config(preset).learner.batch_size


def _clean_env() -> dict[str, str]:
    """This environment without thread variables, so each child gets its own default."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return {**env, "ROBOFUME_NO_PROGRESS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def learner_rate(preset: str, threads: int, seconds: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.thread_share", "--learner-child", str(threads)]
    cmd += ["--preset", preset, "--seconds", str(seconds)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"learner child failed:\n{out.stderr[-3000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def _wait_serving(address: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"reward server exited with {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                req = health_pb2.HealthCheckRequest(service="")
                if stub.Check(req, timeout=0.5).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"reward server at {address} not serving after {timeout:.0f} s")


class Neighbours:
    """The actor and the reward server (plus replay and a weights publisher in this process)."""

    def __init__(self, preset: str, run_dir: Path, reward_threads: int | None):
        import portpicker

        from benchmarks.actor_timing import Publisher, _overrides
        from benchmarks.reward_server import make_checkpoint
        from replay.server import start_replay_server
        from robofume.config import load_config

        self.run_dir = run_dir
        cfg = load_config(preset, overrides=["--deploy.run_dir", str(run_dir)])
        self.replay = start_replay_server(
            cfg, port=0, checkpoint_dir=run_dir / "replay", checkpoint_every_s=0, heartbeat=False
        )
        ckpt = make_checkpoint(run_dir / "reward", cfg.reward.image_size)
        port = portpicker.pick_unused_port()
        address = f"127.0.0.1:{port}"
        threads = [] if reward_threads is None else ["--reward.torch_threads", str(reward_threads)]
        env = _clean_env()
        self.logs = [open(run_dir / f"{n}.log", "w") for n in ("reward", "actor")]  # noqa: SIM115
        cmd = [sys.executable, "-m", "deploy.command", "reward", "serve", "--preset", preset,
               "--checkpoint", str(ckpt), "--port", str(port), "--device", "cpu",
               "--deploy.run_dir", str(run_dir), *threads]  # fmt: skip
        self.reward = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.logs[0], stderr=subprocess.STDOUT
        )
        _wait_serving(address, self.reward)
        overrides = [*_overrides(run_dir, cfg.env.control_hz),
                     "--deploy.replay_address", self.replay.address,
                     "--deploy.reward_addresses", address]  # fmt: skip
        cfg = load_config(preset, overrides=overrides)
        self.publisher = Publisher(cfg, every=10.0)
        self.publisher.start()
        cmd = [sys.executable, "-m", "actor", "--preset", preset, "--actor_id", "0",
               "--steps", "0", *overrides]  # fmt: skip
        self.actor = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.logs[1], stderr=subprocess.STDOUT
        )
        self.status = run_dir / "status" / "actor_0.json"
        deadline = time.monotonic() + 180
        while self.heartbeat().get("steps", 0) < 5:
            if self.actor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the actor did not start ticking; see {run_dir}/actor.log")
            time.sleep(0.5)
        self.steps0, self.t0 = self.heartbeat()["steps"], time.time()

    def heartbeat(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def summary(self) -> dict:
        beat = self.heartbeat()
        rate = (beat.get("steps", 0) - self.steps0) / max(1e-6, beat.get("time", 0) - self.t0)
        return {"actor_steps_per_s": rate, "actor_tick_p99_ms": beat.get("tick_jitter_p99_ms")}

    def stop(self) -> None:
        for proc in (self.actor, self.reward):
            proc.terminate()
        for proc in (self.actor, self.reward):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self.logs:
            f.close()
        self.publisher.stop.set()
        self.replay.stop(checkpoint=False)


def run(preset: str, seconds: float) -> list[dict]:
    from robofume.config import load_config
    from robofume.threads import machine_cores, thread_share

    cfg = load_config(preset)
    cores = machine_cores(cfg)
    variants = [
        # before: torch's default in the learner and the reward server (one thread per core)
        ("before", 0, cores),
        # after: every process its share; the reward server resolves reward.torch_threads 0
        ("after", thread_share(cfg, "learner"), None),
    ]
    rows = []
    for name, learner_threads, reward_threads in variants:
        alone = learner_rate(preset, learner_threads, seconds)
        log.info("%s, alone: %s", name, alone)
        run_dir = Path(tempfile.mkdtemp(prefix=f"thread_share_{name}_"))
        neighbours = Neighbours(preset, run_dir, reward_threads)
        try:
            shared = learner_rate(preset, learner_threads, seconds)
            extra = neighbours.summary()
        finally:
            neighbours.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # kept (logs) only when something failed
        log.info("%s, shared: %s %s", name, shared, extra)
        share = cfg.reward.torch_threads or thread_share(cfg, "reward")
        rows.append(
            {
                "variant": name,
                "learner_threads": alone["threads"],
                "reward_threads": reward_threads if reward_threads is not None else share,
                "actor_threads": thread_share(cfg, "actor"),
                "alone": alone["updates_per_s"],
                "shared": shared["updates_per_s"],
                "load_alone": alone["load"],
                "load_shared": shared["load"],
                **extra,
            }
        )
    return rows


def table(rows: list[dict], preset: str, seconds: float, machine: str) -> str:
    about = (
        "Learner updates/s (Cal-QL + BC on a fixed batch of the preset) without and with a "
        "simulated actor ticking at the control rate, its frames labelled by a reward server "
        "(each in its own process). Before: torch's default threads (one per core) in the "
        "learner and the reward server; after: each process its share of the cores "
        "(`robofume/threads.py`, `deploy.torch_threads` 0)."
    )
    lines = [
        HEADING,
        "",
        f"`python -m benchmarks.thread_share --preset {preset} --seconds {seconds:g}` on "
        f"{machine}; {date.today().isoformat()}.",
        "",
        *textwrap.wrap(about, 96),
        "",
        "| threads | learner / reward / actor threads | learner alone (updates/s) | "
        "beside actor + reward (updates/s) | shared / alone | actor steps/s (tick p99 ms) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        p99 = r.get("actor_tick_p99_ms")
        p99_text = f"{p99:.0f}" if isinstance(p99, (int, float)) else "?"
        lines.append(
            f"| {r['variant']} | {r['learner_threads']} / {r['reward_threads']} / "
            f"{r['actor_threads']} | {r['alone']:.2f} | {r['shared']:.2f} | "
            f"{r['shared'] / r['alone']:.0%} | {r['actor_steps_per_s']:.1f} ({p99_text}) |"
        )
    loads = ", ".join(f"{r['load_alone']:.1f}/{r['load_shared']:.1f}" for r in rows)
    note = (
        f"Load average when each learner run started (without/with the neighbours, before "
        f"then after): {loads}. On a machine shared with other jobs single runs are noisy."
    )
    lines += ["", *textwrap.wrap(note, 96), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sim-cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed learner updates")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--learner-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.learner_child is not None:
        print(json.dumps(run_learner(args.preset, args.learner_child, args.seconds)))
        return 0
    from robofume.logs import setup_logging

    setup_logging()
    machine = describe_machine()  # the load average before this benchmark adds its own
    rows = run(args.preset, args.seconds)
    text = table(rows, args.preset, args.seconds, machine)
    print(text)
    if not args.no_record:
        record_section(HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
