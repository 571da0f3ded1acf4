"""The success classifier on the frames a policy makes online: ``python -m
benchmarks.reward_online_frames --preset sim-shift --policies CKPT ... --reward-models M ...``.

Each policy checkpoint acts reset-free in the online scene (``env.online``), alternating the
forward and reset task (150 steps at most each, sampled actions, as an actor acts); every
frame is kept with the simulator's ground truth. Each reward model then scores every frame
with its own question, and an episode "ends" where the actor would end it: at the first
``actor.success_frames`` consecutive "yes" frames. Reported per reward model: the per-frame
false-positive and false-negative rate, and the episodes that would have ended on a false
success. The same frames for every model, so they compare on what a policy really does (a
tipped object, the wrong bin), which demos never show. ``--success-frames 2 3 4`` judges each
model under several consecutive-frame rules; ``--split validation`` and ``--split test`` roll
out on disjoint seeds, so a rule chosen on one is checked on the other. ``--cache`` keeps the
rollouts (an ``.npz``) for the next model. ``--episodes FILE.hdf5`` scores a dataset file's
episodes instead of policy rollouts (fresh failure rollouts of one kind, say). Writes
``benchmarks/results/reward_online_frames[_SPLIT].json``. Config overrides follow ``--``
(``-- --env.image_size 64`` renders the rollouts at 64 px; the policies act on state, so the
same seeds give the same episodes at every image size).
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
SEEDS = {"validation": 30_000_000, "test": 40_000_000}
"""Rollout seeds per split (disjoint from each other and from the evaluation and validation
seeds of the learning benchmarks)."""

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


def save_episodes(path: Path, episodes: list[dict[str, Any]]) -> None:
    arrays = {}
    for i, ep in enumerate(episodes):
        arrays[f"frames_{i}"], arrays[f"success_{i}"] = ep["frames"], ep["success"]
        arrays[f"task_{i}"] = np.array(ep["task"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_episodes(path: Path) -> list[dict[str, Any]]:
    with np.load(path) as z:
        n = sum(1 for k in z.files if k.startswith("frames_"))
        return [{"frames": z[f"frames_{i}"], "success": z[f"success_{i}"],
                 "task": str(z[f"task_{i}"])} for i in range(n)]  # fmt: skip


def dataset_episodes(path: Path) -> list[dict[str, Any]]:
    """A dataset file's episodes as rollouts: the frame after each action, its ground truth."""
    from robofume.data import read_episodes

    return [{"frames": ep.images[1:], "success": np.asarray(ep.success, bool), "task": ep.task}
            for ep in read_episodes(path)]  # fmt: skip


def scores(model: Any, episodes: list[dict[str, Any]]) -> list[np.ndarray]:
    """P(yes) of every frame, asked its episode's own question."""
    return [model.score(ep["frames"], [model.question_for(ep["task"])] * len(ep["frames"]))
            for ep in episodes]  # fmt: skip


def judge(
    episodes: list[dict[str, Any]], probs: list[np.ndarray], threshold: float, success_frames: int
) -> dict[str, Any]:
    """All episodes together, then ``per_task``: the same on each task's episodes alone."""
    row = _judge(episodes, probs, threshold, success_frames)
    row["per_task"] = {
        task: _judge(*zip(*[(e, p) for e, p in zip(episodes, probs, strict=True)
                            if e["task"] == task], strict=True), threshold, success_frames)
        for task in sorted({e["task"] for e in episodes})
    }  # fmt: skip
    return row


def _judge(episodes: Any, probs: Any, threshold: float, success_frames: int) -> dict[str, Any]:
    fp = neg = fn = pos = ended = false_end = missed = truly = 0
    for ep, p in zip(episodes, probs, strict=True):
        yes = p >= threshold
        truth = ep["success"]
        fp += int((yes & ~truth).sum())
        neg += int((~truth).sum())
        fn += int((~yes & truth).sum())
        pos += int(truth.sum())
        truly += int(truth.any())
        run = 0
        for t, y in enumerate(yes):
            run = run + 1 if y else 0
            if run >= success_frames:
                ended += 1
                false_end += int(not truth[t])
                break
        else:
            missed += int(truth.any())  # succeeded, and the actor never saw it
    return {
        "frame_fpr": fp / neg if neg else None,
        "frame_fnr": fn / pos if pos else None,
        "frames": neg + pos,
        "episodes": len(episodes),
        "ended_on_predicted_success": ended,
        "false_success_episodes": false_end,
        "false_success_fraction": false_end / len(episodes) if episodes else None,
        "successful_episodes": truly,
        "missed_success_episodes": missed,
        "threshold": threshold,
        "success_frames": success_frames,
    }


def table_row(name: str, r: dict[str, Any]) -> str:
    return (f"| {name} | {r['success_frames']} | {100 * (r['frame_fpr'] or 0):.1f}% "
            f"| {100 * (r['frame_fnr'] or 0):.1f}% | {r['false_success_episodes']} of "
            f"{r['episodes']} ({100 * (r['false_success_fraction'] or 0):.1f}%) "
            f"| {r['missed_success_episodes']} of {r['successful_episodes']} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="sim-shift")
    parser.add_argument("--policies", nargs="+", default=[], help="policy checkpoints")
    parser.add_argument(
        "--episodes", type=Path, default=None, help="score this dataset file's episodes instead"
    )
    parser.add_argument("--reward-models", nargs="+", required=True, help="reward checkpoints")
    parser.add_argument("--pairs", type=int, default=8, help="forward+reset pairs per policy")
    parser.add_argument("--split", choices=tuple(SEEDS), default="validation")
    parser.add_argument(
        "--success-frames",
        type=int,
        nargs="+",
        default=None,
        help="consecutive-frame rules to judge (default: the preset's)",
    )
    parser.add_argument("--cache", type=Path, default=None, help="rollouts .npz, kept")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="also judge the reward models as one ensemble: the mean P(yes) against the mean "
        "of their thresholds",
    )
    parser.add_argument(
        "overrides", nargs="*", help="--section.field value overrides of the preset (after --)"
    )
    args = parser.parse_args()

    import torch

    from reward_server.backends import load_reward_model
    from robofume.config import load_config
    from robofume.logs import progress

    torch.set_num_threads(1)
    cfg = load_config(args.preset, overrides=args.overrides)
    if not args.policies and args.episodes is None:
        parser.error("give --policies or --episodes")
    if args.episodes is not None:
        episodes = dataset_episodes(args.episodes)
        log.info("%d episodes from %s", len(episodes), args.episodes)
    elif args.cache is not None and args.cache.exists():
        episodes = load_episodes(args.cache)
        log.info("%d episodes from %s", len(episodes), args.cache)
    else:
        episodes = []
        for i, ckpt in enumerate(progress(args.policies, desc="policies", unit="ckpt")):
            episodes += rollouts(cfg, ckpt, args.pairs, SEEDS[args.split] + 1000 * i)
        if args.cache is not None:
            save_episodes(args.cache, episodes)
    rows, members = [], []
    rules = args.success_frames or [cfg.actor.success_frames]
    for path in args.reward_models:
        model = load_reward_model(path, "cpu")
        probs = scores(model, episodes)
        members.append((probs, model.threshold))
        for frames in rules:
            row = {"reward_model": path, **judge(episodes, probs, model.threshold, frames)}
            rows.append(row)
            log.info("%s", json.dumps(row))
    if args.ensemble:
        mean = [np.mean(ps, axis=0) for ps in zip(*(m[0] for m in members), strict=True)]
        threshold = float(np.mean([m[1] for m in members]))
        name = "ensemble of " + ", ".join(args.reward_models)
        for frames in rules:
            rows.append({"reward_model": name, **judge(episodes, mean, threshold, frames)})
    suffix = ("" if args.split == "validation" else f"_{args.split}") + (
        f"_{args.tag}" if args.tag else ""
    )
    out = RESULTS.with_name(f"{RESULTS.stem}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"preset": args.preset, "overrides": args.overrides, "policies": args.policies,
              "episodes": str(args.episodes or ""), "split": args.split, "pairs": args.pairs,
              "rows": rows}  # fmt: skip
    out.write_text(json.dumps(record, indent=1))
    print(
        "| reward model | success frames | frame FPR | frame FNR | false-success episodes "
        "| successes never seen |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(table_row(r["reward_model"], r))
        for task, t in r["per_task"].items():
            print(table_row(f"  {task}", t))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from robofume.logs import setup_logging

    setup_logging()
    sys.exit(main())
