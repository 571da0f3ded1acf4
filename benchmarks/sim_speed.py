"""Simulator speed and scripted-expert success rates.

``python -m benchmarks.sim_speed [--steps 400] [--episodes 20] [--prior-episodes 5]
[--no-record]``

Speed: environment steps per second including physics (0.2 s of simulated time per step) and
rendering, on one CPU core (the process is pinned to one core; torch/OpenMP/Mesa use one
thread), at 64x64 and 100x100, driven by the noisy expert on the target tasks. Success: the
expert's ground-truth success rate on every target forward and reset task (noise 0 and 0.1),
on reset-free forward -> reset chains, and on the prior tasks. Results go to
``benchmarks/RESULTS.md`` under ``## Simulator``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import time

from benchmarks.common import machine as describe_machine
from benchmarks.common import record_section

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

HEADING = "## Simulator"


def _one_core() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def speed(size: int, steps: int) -> dict:
    """Steps/s of env.step (physics + render) at ``size`` px, plus the split between them."""
    from robofume.config import EnvConfig
    from robofume.envs import ScriptedExpert, make_env
    from robofume.tasks import target_task_names

    env = make_env(EnvConfig(image_size=size), seed=0)
    expert = ScriptedExpert(env, noise=0.1, seed=0)
    tasks = target_task_names()
    step_time, cpu_time, resets, reset_time, done = 0.0, 0.0, 0, 0.0, 0
    obs = None
    while done < steps:
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=resets, options={"task": tasks[resets % len(tasks)]})
        reset_time += time.perf_counter() - t0
        resets += 1
        expert.reset()
        for _ in range(min(40, steps - done)):
            action = expert.act(obs)
            t0, c0 = time.perf_counter(), time.process_time()
            obs, *_ = env.step(action)
            step_time += time.perf_counter() - t0
            cpu_time += time.process_time() - c0
            done += 1
    u = env.unwrapped
    c0 = time.process_time()
    for _ in range(200):
        u._finish_step()  # arm pose + render + downsample, no physics
    render_ms = (time.process_time() - c0) / 200 * 1e3
    env.close()
    return {
        "size": size,
        "steps_per_s": steps / step_time,
        "steps_per_cpu_s": steps / cpu_time,
        "step_ms": step_time / steps * 1e3,
        "step_cpu_ms": cpu_time / steps * 1e3,
        "render_ms": render_ms,
        "reset_ms": reset_time / resets * 1e3,
    }


def success(tasks: list[str], noise: float, episodes: int, max_steps: int) -> dict[str, dict]:
    """Expert success rate and mean steps to success per task (32 px images: physics only)."""
    from robofume.config import EnvConfig
    from robofume.envs import ScriptedExpert, make_env
    from robofume.envs.rollout import run_episodes, summarize

    env = make_env(EnvConfig(image_size=32), seed=0)
    expert = ScriptedExpert(env, noise=noise, seed=1000)
    out = {}
    for task in tasks:
        res = run_episodes(env, expert, task, episodes, max_steps, seed=0, keep_frames=False)
        s = summarize(res)
        hit = [r.first_success_step for r in res if r.success]
        out[task] = {
            "rate": s["success_rate"],
            "n": s["episodes"],
            "steps": float(np.mean(hit)) if hit else float("nan"),
        }
    env.close()
    return out


def chains(objects: list[str], noise: float, episodes: int, max_steps: int) -> dict[str, dict]:
    """Reset-free chains: forward then reset from where forward ended, no env.reset between."""
    from robofume.config import EnvConfig
    from robofume.envs import ScriptedExpert, make_env

    env = make_env(EnvConfig(image_size=32), seed=0)
    expert = ScriptedExpert(env, noise=noise, seed=2000)
    out = {}
    for obj in objects:
        fwd_ok = both_ok = 0
        for ep in range(episodes):
            obs, _ = env.reset(seed=ep, options={"task": f"{obj}_forward"})
            ok = []
            for task in (f"{obj}_forward", f"{obj}_reset"):
                env.set_task(task)
                expert.reset()
                hit = False
                for _ in range(max_steps):
                    obs, _, _, _, info = env.step(expert.act(obs))
                    if info["success"]:
                        hit = True
                        break
                ok.append(hit)
                if not hit:
                    break
            fwd_ok += ok[0]
            both_ok += all(ok) and len(ok) == 2
        out[obj] = {"forward": fwd_ok / episodes, "both": both_ok / episodes, "n": episodes}
    env.close()
    return out


def report(machine: str, speeds: list[dict], succ: dict, chain: dict, prior: dict) -> str:
    lines = [
        f"{HEADING}\n",
        f"`python -m benchmarks.sim_speed` on {machine}; "
        f"{subprocess.run(['date'], capture_output=True, text=True).stdout.strip()}.\n",
        "Environment steps per second on one core (process pinned to one CPU; torch, OpenMP "
        "and Mesa llvmpipe single-threaded; MUJOCO_GL=egl), one step = 0.2 s of simulated time "
        "(100 physics steps of 2 ms) + one render, driven by the expert (noise 0.1) on the "
        "target tasks. Goal: >= 50 steps/s at 100x100. The machine is shared with other jobs: "
        "wall-clock steps/s depend on their load, steps per CPU-second are what one dedicated "
        "core delivers. Rendering = arm pose + 2x supersampled render + downsample (CPU time); "
        "reset = wall time of env.reset.\n",
        "| image | steps/s (wall) | steps per CPU-second | CPU ms per step | of which render "
        "| reset |",
        "|---|---|---|---|---|---|",
    ]
    for s in speeds:
        lines.append(
            f"| {s['size']}x{s['size']} | {s['steps_per_s']:.0f} | {s['steps_per_cpu_s']:.0f} | "
            f"{s['step_cpu_ms']:.1f} | {s['render_ms']:.1f} ms | {s['reset_ms']:.1f} ms |"
        )
    noises = sorted(succ)
    lines += [
        "",
        "Scripted expert, ground-truth success within 150 steps (episodes per cell in "
        "brackets; mean steps to success after the slash). Success = the object rests inside "
        "the destination region, released by the gripper.\n",
        "| task | " + " | ".join(f"noise {n}" for n in noises) + " |",
        "|---|" + "---|" * len(noises),
    ]
    for task in succ[noises[0]]:
        cells = [
            f"{succ[n][task]['rate']:.0%} ({succ[n][task]['n']}) / {succ[n][task]['steps']:.1f}"
            for n in noises
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reset-free chains (no env.reset between forward and reset task; fraction of chains "
        "where forward succeeded / where both succeeded):\n",
        "| object | " + " | ".join(f"noise {n}" for n in sorted(chain)) + " |",
        "|---|" + "---|" * len(chain),
    ]
    for obj in chain[sorted(chain)[0]]:
        cells = [
            f"{chain[n][obj]['forward']:.0%} / {chain[n][obj]['both']:.0%} ({chain[n][obj]['n']})"
            for n in sorted(chain)
        ]
        lines.append(f"| {obj} | " + " | ".join(cells) + " |")
    rates = [v["rate"] for v in prior.values()]
    worst = min(prior.items(), key=lambda kv: kv[1]["rate"])
    lines += [
        "",
        f"Prior tasks (20, expert noise 0.1, {next(iter(prior.values()))['n']} episodes each): "
        f"mean success {np.mean(rates):.0%}, lowest {worst[1]['rate']:.0%} ({worst[0]}).\n",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per image size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 100])
    parser.add_argument("--episodes", type=int, default=20, help="episodes per target task")
    parser.add_argument("--prior-episodes", type=int, default=5, help="episodes per prior task")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROBOFUME_NO_PROGRESS", "1")
    from robofume.logs import setup_logging

    setup_logging(logging.WARNING)
    machine = describe_machine()
    _one_core()
    from robofume.tasks import prior_task_names, target_task_names

    speeds = []
    for size in args.sizes:
        speeds.append(speed(size, args.steps))
        print(speeds[-1], flush=True)
    succ, chain = {}, {}
    for noise in (0.0, 0.1):
        succ[noise] = success(target_task_names(), noise, args.episodes, args.max_steps)
        chain[noise] = chains(["vase", "bench", "dumbbell"], noise, args.episodes, args.max_steps)
        print(noise, succ[noise], chain[noise], flush=True)
    prior = success(prior_task_names(), 0.1, args.prior_episodes, args.max_steps)
    section = report(machine, speeds, succ, chain, prior)
    print(section)
    if not args.no_record:
        record_section(HEADING, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
