"""Learner update speed: updates/s, peak memory and FLOPs per update vs the matmul rate.

    python -m benchmarks.learner_speed --presets sim-cpu sim-gpu --batch 256 --updates 3

Each preset runs in a fresh subprocess (so peak memory is its own) on a fixed synthetic batch
of the preset's image size (sampling cost excluded: batches live on the device already).
FLOPs of one update (forward + backward of every network, matmuls and convolutions) are
counted with ``torch.utils.flop_counter``; the machine's fp32 matmul rate is measured with
the same thread count, so ``achieved / matmul`` says how close to the hardware an update is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import time


def matmul_gflops(device: str, n: int = 1024, repeats: int = 10) -> float:
    """Best-of fp32 matmul rate in GFLOP/s."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def synthetic_learner(preset: str, batch: int, device: str, **learner) -> tuple:
    """A fresh Learner of ``preset`` and one fixed synthetic batch on its device."""
    import numpy as np
    import torch

    from learner.learner import Learner
    from robofume.config import load_config
    from robofume.tasks import task_names

    cfg = load_config(preset)
    cfg = cfg.replace(
        learner=dataclasses.replace(cfg.learner, batch_size=batch, device=device, **learner)
    )
    n_tasks = len(task_names())
    learner = Learner(cfg, task_table=np.random.default_rng(0).normal(size=(n_tasks, 384)))
    dev, s, a = learner.device, cfg.env.image_size, cfg.env.action_dim
    g = torch.Generator(device=dev).manual_seed(0)

    def u8():
        return torch.randint(0, 256, (batch, s, s, 3), dtype=torch.uint8, device=dev, generator=g)

    data = {
        "image": u8(),
        "next_image": u8(),
        "proprio": torch.rand(batch, 4, device=dev, generator=g),
        "next_proprio": torch.rand(batch, 4, device=dev, generator=g),
        "task": torch.randint(0, n_tasks, (batch,), device=dev, generator=g),
        "action": torch.rand(batch, a, device=dev, generator=g) * 2 - 1,
        "reward": torch.zeros(batch, device=dev),
        "terminal": torch.zeros(batch, device=dev),
        "mc_return": torch.rand(batch, device=dev, generator=g),
    }
    return cfg, learner, data


def measure(preset: str, batch: int, updates: int, threads: int, device: str, **learner) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    cfg, learner, data = synthetic_learner(preset, batch, device, **learner)
    dev, s = learner.device, cfg.env.image_size
    counter = FlopCounterMode(display=False)
    with counter:
        learner.update(data)  # also the warm-up
    flops = counter.get_total_flops()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for _ in range(updates):
        metrics = learner.update(data)
    float(metrics["critic_loss"])
    sync()
    seconds = (time.perf_counter() - start) / updates
    peak_mb = (
        torch.cuda.max_memory_allocated() / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "preset": preset,
        "image_size": s,
        "batch": batch,
        "cql_n_actions": cfg.learner.cql_n_actions,
        "device": str(dev),
        "threads": threads,
        "updates_per_s": 1.0 / seconds,
        "ms_per_update": seconds * 1000,
        "gflop_per_update": flops / 1e9,
        "achieved_gflops": flops / 1e9 / seconds,
        "matmul_gflops": matmul_gflops(str(dev) if dev.type == "cuda" else "cpu"),
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": "CUDA max allocated" if dev.type == "cuda" else "process max RSS",
        **learner_extra(learner),
    }


def learner_extra(learner) -> dict:
    lc = learner.cfg.learner
    return {"amp_bf16": lc.amp_bf16, "compile": lc.compile, "channels_last": lc.channels_last}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["sim-cpu", "sim-gpu"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true", help="learner.amp_bf16")
    parser.add_argument("--compile", action="store_true", help="learner.compile")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    extra = {"amp_bf16": args.amp, "compile": args.compile}
    if args.one:
        row = measure(args.one, args.batch, args.updates, args.threads, args.device, **extra)
        print(json.dumps(row))
        return
    rows = []
    for preset in args.presets:
        cmd = [sys.executable, "-m", "benchmarks.learner_speed", "--one", preset]
        cmd += ["--batch", str(args.batch), "--updates", str(args.updates)]
        cmd += ["--threads", str(args.threads), "--device", args.device]
        cmd += ["--amp"] * args.amp + ["--compile"] * args.compile
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"machine: {platform.machine()} {platform.processor() or ''}".strip())
    print(
        "| preset | image | batch | CQL actions | device | updates/s | ms/update | "
        "GFLOP/update | achieved GFLOP/s | matmul GFLOP/s | peak memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['image_size']} | {r['batch']} | {r['cql_n_actions']} | "
            f"{r['device']} ({r['threads']} threads) | {r['updates_per_s']:.3f} | "
            f"{r['ms_per_update']:.0f} | {r['gflop_per_update']:.1f} | "
            f"{r['achieved_gflops']:.1f} | {r['matmul_gflops']:.1f} | "
            f"{r['peak_memory_mb']:.0f} MB ({r['peak_memory_kind']}) |"
        )


if __name__ == "__main__":
    main()
