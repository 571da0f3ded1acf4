"""Reward server throughput and latency: ``python -m benchmarks.reward_server``.

Starts 1 or 2 replicas as separate ``robofume reward serve`` processes (torch 1 thread each)
with the ``embedded`` backend on CPU, drives them with closed-loop grpc.aio clients (each
sends one frame per request, as the actor does, round-robin over replicas) and reports
frames/s, p50/p99 latency, the server CPU per frame, the gain of dynamic batching over
``max_batch_size 1``, and the time from process spawn to health SERVING.
Prints a markdown table (and writes JSON to benchmarks/out/reward_server.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def make_checkpoint(path: Path, image_size: int) -> Path:
    """An embedded model (pretrained backbone, fresh head): speed does not depend on training."""
    from reward_server.backends import make_reward_model
    from robofume.config import load_config

    cfg = load_config("sim-cpu").reward
    import dataclasses

    model = make_reward_model(dataclasses.replace(cfg, image_size=image_size), device="cpu")
    model.questions = {"vase_forward": model.question_for("vase_forward")}
    return model.save(path)


def start_replica(ckpt: Path, port: int, overrides: list[str]) -> tuple[subprocess.Popen, float]:
    """Spawn ``robofume reward serve``; return the process and seconds until SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    env = dict(os.environ, OMP_NUM_THREADS="1", ROBOFUME_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable, "-m", "deploy.command", "reward", "serve", "--checkpoint", str(ckpt),
        "--port", str(port), "--device", "cpu", "--reward.torch_threads", "1",
        "--deploy.run_dir", str(OUT / "reward_run"), *overrides,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"replica on port {port} exited with {proc.returncode}")
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                break
        except grpc.RpcError:
            time.sleep(0.1)
    channel.close()
    return proc, time.perf_counter() - start


async def drive(addresses: list[str], clients: int, seconds: float, size: int) -> dict:
    """Closed loop: ``clients`` coroutines, one frame per request, for ``seconds``."""
    import grpc

    from protos import reward_pb2, reward_pb2_grpc

    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [reward_pb2_grpc.RewardStub(c) for c in channels]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(16)]
    reqs = [
        reward_pb2.ScoreRequest(
            task="vase_forward",
            frames=[
                reward_pb2.Frame(
                    raw=reward_pb2.RawImage(
                        data=f.tobytes(), height=size, width=size, channels=3, dtype="uint8"
                    )
                )
            ],
        )
        for f in frames
    ]
    latencies: list[float] = []
    counter = iter(range(10**12))
    # warm-up
    await asyncio.gather(*[stubs[i % len(stubs)].Score(reqs[0], timeout=60) for i in range(4)])
    end = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        while time.perf_counter() < end:
            i = next(counter)
            t = time.perf_counter()
            await stubs[i % len(stubs)].Score(reqs[i % len(reqs)], timeout=60)
            latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker(k) for k in range(clients)])
    wall = time.perf_counter() - t0
    for c in channels:
        await c.close()
    lat = np.array(latencies) * 1000
    return {
        "frames": len(lat),
        "frames_per_s": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    total = 0.0
    for p in procs:
        t = psutil.Process(p.pid).cpu_times()
        total += t.user + t.system
    return total


def run_setting(ckpt, replicas, clients_list, seconds, size, overrides, base_port):
    procs, ready = [], []
    try:
        for i in range(replicas):
            proc, secs = start_replica(ckpt, base_port + i, overrides)
            procs.append(proc)
            ready.append(secs)
        addresses = [f"127.0.0.1:{base_port + i}" for i in range(replicas)]
        rows = []
        for clients in clients_list:
            cpu0 = cpu_seconds(procs)
            res = asyncio.run(drive(addresses, clients, seconds, size))
            res["server_cpu_ms_per_frame"] = (cpu_seconds(procs) - cpu0) * 1000 / res["frames"]
            res.update(replicas=replicas, clients=clients, ready_s=max(ready))
            rows.append(res)
            print(json.dumps(res), flush=True)
        return rows
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--frame-size", type=int, default=64, help="env image size (sim-cpu)")
    parser.add_argument("--image-size", type=int, default=96, help="model input (sim-cpu)")
    parser.add_argument("--port", type=int, default=18110)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(OUT / "reward_bench", args.image_size)
    load = os.getloadavg()[0]
    rows = []
    for replicas in (1, 2):
        rows += run_setting(ckpt, replicas, (1, 8, 32), args.seconds, args.frame_size, [],
                            args.port)  # fmt: skip
    nobatch = run_setting(
        ckpt, 1, (8, 32), args.seconds, args.frame_size, ["--reward.max_batch_size", "1"],
        args.port,
    )  # fmt: skip
    for r in nobatch:
        r["max_batch_size"] = 1
    (OUT / "reward_server.json").write_text(json.dumps({"rows": rows, "nobatch": nobatch}))
    print(f"\nload average at start {load:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print("| replicas | clients | max batch | frames/s | p50 ms | p99 ms | server CPU ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for r in rows + nobatch:
        print(
            f"| {r['replicas']} | {r['clients']} | {r.get('max_batch_size', 32)} "
            f"| {r['frames_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['server_cpu_ms_per_frame']:.2f} |"
        )
    ready = [r["ready_s"] for r in rows + nobatch]
    print(f"\ntime to ready (spawn -> SERVING): {min(ready):.1f}-{max(ready):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
