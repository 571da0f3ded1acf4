"""The success classifier on the frames a policy makes online: ``python -m
benchmarks.reward_online_frames --preset sim-shift --policies CKPT ... --reward-models M ...``.

Each policy checkpoint acts reset-free in the online scene (``env.online``), alternating the
forward and reset task (150 steps at most each, sampled actions, as an actor acts); every
frame is kept with the simulator's ground truth. Each reward model then scores every frame
with its own question, and an episode "ends" where the actor would end it: at the first
``actor.success_frames`` consecutive "yes" frames. Reported per reward model: the per-frame
false-positive and false-negative rate, and the episodes that would have ended on a false
success. The same frames for every model, so they compare on what a policy really does (a
tipped object, the wrong bin), which demos never show. Writes
``benchmarks/results/reward_online_frames.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reward_online_frames.json"
SEED = 30_000_000
"""Rollout seeds (disjoint from the evaluation and validation seeds)."""

log = logging.getLogger("benchmarks.reward_online_frames")


def rollouts(cfg: Any, checkpoint: str, pairs: int, seed: int) -> list[dict[str, Any]]:
    """Reset-free forward/reset episodes of one policy: frames, tasks, ground truth."""
    from robofume.envs import make_env, online_env
    from robofume.policy import load_policy

    policy = load_policy(checkpoint)
    env = make_env(online_env(cfg.env), task=cfg.actor.forward_task, seed=seed)
    obs, _ = env.reset(seed=seed, options={"task": cfg.actor.forward_task})
    episodes = []
    try:
        for _ in range(pairs):
            for task in (cfg.actor.forward_task, cfg.actor.reset_task):
                env.unwrapped.set_task(task)
                frames, success = [], []
                for _ in range(cfg.env.max_episode_steps):
                    obs, _, _, _, info = env.step(policy.act(obs, task, deterministic=False))
                    frames.append(obs["image"])
                    success.append(bool(info["success"]))
                    if success[-1] and len(success) >= 3 and all(success[-3:]):
                        break  # settled: the episode ends here whatever the model says
                episodes.append(
                    {"task": task, "frames": np.stack(frames), "success": np.array(success)}
                )
    finally:
        env.close()
    return episodes


def judge(model: Any, episodes: list[dict[str, Any]], success_frames: int) -> dict[str, Any]:
    fp = neg = fn = pos = ended = false_end = 0
    for ep in episodes:
        q = [model.question_for(ep["task"])] * len(ep["frames"])
        yes = model.score(ep["frames"], q) >= model.threshold
        truth = ep["success"]
        fp += int((yes & ~truth).sum())
        neg += int((~truth).sum())
        fn += int((~yes & truth).sum())
        pos += int(truth.sum())
        run = 0
        for t, y in enumerate(yes):
            run = run + 1 if y else 0
            if run >= success_frames:
                ended += 1
                false_end += int(not truth[t])
                break
    return {
        "frame_fpr": fp / neg if neg else None,
        "frame_fnr": fn / pos if pos else None,
        "frames": neg + pos,
        "episodes": len(episodes),
        "ended_on_predicted_success": ended,
        "false_success_episodes": false_end,
        "false_success_fraction": false_end / len(episodes) if episodes else None,
        "threshold": model.threshold,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="sim-shift")
    parser.add_argument("--policies", nargs="+", required=True, help="policy checkpoints")
    parser.add_argument("--reward-models", nargs="+", required=True, help="reward checkpoints")
    parser.add_argument("--pairs", type=int, default=8, help="forward+reset pairs per policy")
    args = parser.parse_args()

    import torch

    from reward_server.backends import load_reward_model
    from robofume.config import load_config
    from robofume.logs import progress

    torch.set_num_threads(1)
    cfg = load_config(args.preset)
    episodes = []
    for i, ckpt in enumerate(progress(args.policies, desc="policies", unit="ckpt")):
        episodes += rollouts(cfg, ckpt, args.pairs, SEED + 1000 * i)
    rows = []
    for path in args.reward_models:
        row = {"reward_model": path, **judge(load_reward_model(path, "cpu"), episodes,
                                              cfg.actor.success_frames)}  # fmt: skip
        rows.append(row)
        log.info("%s", json.dumps(row))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"preset": args.preset, "policies": args.policies,
                                   "pairs": args.pairs, "rows": rows}, indent=1))  # fmt: skip
    print("| reward model | frame FPR | frame FNR | false-success episodes |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['reward_model']} | {100 * (r['frame_fpr'] or 0):.1f}% "
              f"| {100 * (r['frame_fnr'] or 0):.1f}% | {r['false_success_episodes']} of "
              f"{r['episodes']} ({100 * (r['false_success_fraction'] or 0):.1f}%) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from robofume.logs import setup_logging

    setup_logging()
    sys.exit(main())
