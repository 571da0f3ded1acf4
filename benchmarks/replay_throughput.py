"""Replay throughput: transitions/s written with EpisodeWriter and sampled with OnlineSampler.

``python -m benchmarks.replay_throughput [--sizes 64 100] [--transitions 4000]
[--batches 64 256] [--episode-steps 50] [--json]``

For each image size a replay server runs in its own process (``robofume replay serve``, so
every byte crosses loopback gRPC as between real processes), with the UTD limiter opened wide
(``learner.utd_ratio`` huge, min size 1) so neither side waits on it. Frames are real
simulator frames (the scripted expert on the target tasks), cycled; episodes of
``--episode-steps`` steps are written with the actor's writer, then batches are drawn with the
learner's sampler (prefetch 2, CPU tensors) after a warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from robofume.auth import deployment_secret

log = logging.getLogger("benchmarks.replay_throughput")
ROOT = Path(__file__).resolve().parents[1]


def sim_frames(image_size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` frames and proprio vectors from the simulator driven by the scripted expert."""
    from robofume.config import load_config
    from robofume.envs import ScriptedExpert, make_env

    cfg = load_config("sim-cpu", overrides={"env": {"image_size": image_size}})
    env = make_env(cfg.env, task="vase_forward", seed=0)
    expert = ScriptedExpert(env, noise=0.1, seed=0)
    frames, proprio = [], []
    try:
        obs, _ = env.reset(seed=0)
        expert.reset()
        for i in range(count):
            frames.append(obs["image"])
            proprio.append(obs["proprio"])
            obs, *_ = env.step(expert.act(obs))
            if (i + 1) % 40 == 0:
                obs, _ = env.reset()
                expert.reset()
    finally:
        env.close()
    return np.stack(frames), np.stack(proprio)


def make_episode(cfg, frames, proprio, start: int, steps: int):
    from robofume.types import Episode

    idx = (start + np.arange(steps + 1)) % len(frames)
    rewards = np.zeros(steps, np.float32)
    return Episode(
        images=frames[idx],
        proprio=proprio[idx].astype(np.float32),
        actions=np.random.default_rng(start).uniform(-1, 1, (steps, 4)).astype(np.float32),
        rewards=rewards,
        terminals=np.zeros(steps, bool),
        success=np.zeros(steps, bool),
        task="vase_forward",
        language="put the vase in the correct bin",
        kind="online",
        mc_returns=rewards.copy(),
    )


def serve(port: int, run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    import reverb

    cmd = [sys.executable, "-m", "deploy.command", "replay", "serve", "--preset", "sim-cpu"]
    cmd += ["--port", str(port), "--deploy.run_dir", str(run_dir), *overrides]
    logf = open(run_dir / "server.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
    client = reverb.Client(f"127.0.0.1:{port}")
    for _ in range(600):
        try:
            client.server_info(timeout=1)
            return proc
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError((run_dir / "server.log").read_text()[-2000:]) from None
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def run_size(size: int, transitions: int, batches: list[int], steps: int) -> list[dict]:
    import portpicker

    from robofume.config import load_config
    from robofume.replay_client.sampler import OnlineSampler
    from robofume.replay_client.writer import EpisodeWriter

    overrides = [
        f"--env.image_size={size}",
        f"--replay.online_max_size={transitions + steps}",
        "--replay.min_size_to_sample=1",
        "--learner.utd_ratio=100000",
        "--replay.checkpoint_every_s=0",
    ]
    cfg = load_config("sim-cpu", overrides=overrides)
    frames, proprio = sim_frames(size, 400)
    rows = []
    with TemporaryDirectory() as tmp:
        port = portpicker.pick_unused_port()
        proc = serve(port, Path(tmp), overrides)
        address = f"127.0.0.1:{port}"
        try:
            writer = EpisodeWriter(address, cfg)
            episodes = [
                make_episode(cfg, frames, proprio, i * steps, steps)
                for i in range(max(1, transitions // steps))
            ]
            writer.write(episodes[0])  # warm-up (stream set-up)
            t0 = time.perf_counter()
            written = sum(writer.write(ep) for ep in episodes[1:])
            dt = time.perf_counter() - t0
            frame_mb = frames[0].nbytes / 1e6
            rows.append(
                {
                    "image": f"{size}x{size}",
                    "op": f"insert (episodes of {steps})",
                    "transitions_per_s": written / dt,
                    "mb_per_s": written * frame_mb / dt,
                    "seconds": dt,
                    "transitions": written,
                }
            )
            for batch in batches:
                with OnlineSampler(
                    address, batch, prefetch=2, timeout_s=5, secret=deployment_secret(cfg.deploy)
                ) as sampler:
                    for _ in range(3):
                        sampler.next(timeout=60)
                    n = max(10, 20_000 // batch)
                    t0 = time.perf_counter()
                    got = sum(sampler.next(timeout=60) is not None for _ in range(n))
                    dt = time.perf_counter() - t0
                rows.append(
                    {
                        "image": f"{size}x{size}",
                        "op": f"sample (batch {batch})",
                        "transitions_per_s": got * batch / dt,
                        "mb_per_s": got * batch * 2 * frame_mb / dt,
                        "seconds": dt,
                        "transitions": got * batch,
                    }
                )
            import reverb

            t0 = time.perf_counter()
            path = Path(reverb.Client(address).checkpoint())
            dt = time.perf_counter() - t0
            disk = sum(f.stat().st_size for f in path.iterdir()) / 1e6
            rows.append(
                {
                    "image": f"{size}x{size}",
                    "op": f"checkpoint ({disk:.0f} MB on disk)",
                    "transitions_per_s": (written + steps) / dt,
                    "mb_per_s": (written + steps) * frame_mb / dt,
                    "seconds": dt,
                    "transitions": written + steps,
                }
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 100])
    parser.add_argument("--transitions", type=int, default=4000)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--episode-steps", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MUJOCO_GL", "egl")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    rows = []
    for size in args.sizes:
        rows += run_size(size, args.transitions, args.batches, args.episode_steps)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| image | operation | transitions/s | MB/s (raw frames) | transitions | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['image']} | {r['op']} | {r['transitions_per_s']:,.0f} | "
            f"{r['mb_per_s']:.1f} | {r['transitions']} | {r['seconds']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
