"""Online fine-tuning on privileged state, in one process: the algorithm ablation (paper Fig. 4).

The product's pieces, wired without servers so one run fits on one CPU thread:

* the reset-free loop of the actor (``ResetFreeLoop`` + ``Actor`` + ``LabelTracker``): forward
  and reset instructions alternate, an episode ends when the reward model says success on
  ``actor.success_frames`` consecutive frames or after ``env.max_episode_steps``, a simulated
  human resets the scene every ``actor.human_reset_every`` steps;
* the fine-tuned reward model, called in process (the training reward never sees ground
  truth; ground truth is kept for the statistics only);
* episodes finalised as the actor delivers them (``actor.episodes.finalize``: rewards,
  terminals and Monte-Carlo returns from the model's labels);
* the learner's own update on batches that mix offline data and the online episodes
  (``learner.mixing_ratio``), ``learner.utd_ratio`` updates per environment step, new policy
  weights for the actor every ``learner.publish_every`` updates.

Replay, gRPC and Ray are what the distributed system adds around these pieces
(``benchmarks/online_curve.py`` runs that). Every ``--eval-every`` environment steps the
current policy is evaluated on the forward task (ground truth, evaluation seeds, deterministic).

    python -m benchmarks.online_state --pretrained CKPT --reward DIR \
        --algorithms robofume cql sac --seeds 0 --env-steps 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import numpy as np

log = logging.getLogger("benchmarks.online_state")


class InProcessLabeller:
    """The actor's ``Labeller`` protocol on a reward model in this process (answers at once)."""

    def __init__(self, model):
        self.model = model

    def score(self, frames: np.ndarray, task: str):
        probs = self.model.score(frames, [self.model.question_for(task)] * len(frames))
        return SimpleNamespace(
            probs=probs, decisions=self.model.decide(probs), version=self.model.version
        )

    def score_async(self, frames: np.ndarray, task: str) -> Future:
        future: Future = Future()
        try:
            future.set_result(self.score(frames, task))
        except Exception as err:  # the tracker records the failure like a dead server's
            future.set_exception(err)
        return future


class OnlineEpisodes:
    """The actor's delivery, kept in memory: finalised episodes plus what they say about labels."""

    replay_reachable = True

    def __init__(self, discount: float, forward: str):
        self.discount = discount
        self.forward = forward
        self.episodes: list = []
        self.new = 0
        self.stats = {
            "transitions": 0,
            "false_positives": 0,
            "negatives": 0,
            "false_negatives": 0,
            "positives": 0,
            "forward_episodes": 0,
            "forward_true_success": 0,
            "ended_on_success": 0,
            "ended_on_false_success": 0,
            "episodes": 0,
        }

    def put(self, segment) -> None:
        from actor.episodes import finalize

        episodes = finalize(segment, self.discount)
        self.episodes.extend(episodes)
        self.new += len(episodes)
        s = self.stats
        decisions = np.asarray(segment.decisions) == 1.0
        gt = np.asarray(segment.gt_success, bool)
        s["transitions"] += len(gt)
        s["negatives"] += int((~gt).sum())
        s["false_positives"] += int((decisions & ~gt).sum())
        s["positives"] += int(gt.sum())
        s["false_negatives"] += int((~decisions & gt).sum())
        s["episodes"] += 1
        first = segment.first_success()
        if first is not None:
            s["ended_on_success"] += 1
            s["ended_on_false_success"] += int(not gt[first])
        if segment.task == self.forward:
            s["forward_episodes"] += 1
            s["forward_true_success"] += int(gt.any())

    def summary(self) -> dict:
        s = dict(self.stats)
        s["false_positive_rate"] = s["false_positives"] / max(s["negatives"], 1)
        s["false_negative_rate"] = s["false_negatives"] / max(s["positives"], 1)
        s["false_success_episode_fraction"] = s["ended_on_false_success"] / max(s["episodes"], 1)
        return s


class _NoCommands:
    def poll(self) -> list:
        return []


class _NoWait:
    def wait(self) -> None:
        return None


def evaluate(cfg, variables: dict, task: str, episodes: int) -> float:
    from learner.evaluate import evaluate_policy
    from robofume.policy import InferencePolicy

    policy = InferencePolicy(cfg)
    policy.load_variables(variables, 0)
    result = evaluate_policy(cfg, policy, [task], episodes, deterministic=True, record=0)
    return result.success_rate(task)


def run_one(
    cfg,
    pretrained: Path,
    reward_dir: Path,
    env_steps: int,
    eval_every: int,
    episodes: int,
    out: Path,
) -> dict:
    """One online run; writes ``out/result.json`` (with the curve) and returns it."""
    import torch

    from actor.labels import LabelTracker
    from actor.loop import Actor, ResetFreeLoop
    from learner.buffer import OfflineBuffer, mix_batches, split_sizes
    from learner.checkpoint import checkpoint_path, read_checkpoint
    from learner.data import load_pretrain_episodes
    from learner.learner import Learner
    from learner.online import NO_CALIBRATION
    from reward_server.backends import load_reward_model
    from robofume.envs import make_env
    from robofume.policy import InferencePolicy

    result_file = out / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    lc, ac = cfg.learner, cfg.actor
    start_time = time.perf_counter()
    ckpt = read_checkpoint(pretrained)
    learner = Learner(cfg, task_table=ckpt["learner"]["agent"]["task_table"])
    learner.load_state_dict(ckpt["learner"])
    start_updates = learner.num_updates
    offline = OfflineBuffer(
        load_pretrain_episodes(cfg, Path(cfg.data.dir)),
        lc.discount,
        seed=lc.seed + 1000,
        target_fraction=lc.target_data_fraction,
        terminal_on_success=lc.terminal_on_success,
    )
    n_offline, n_online = split_sizes(lc.batch_size, lc.mixing_ratio)

    policy = InferencePolicy(cfg, seed=ac.seed)
    version = 0
    policy.load_variables(learner.get_variables(), version)
    reward = load_reward_model(reward_dir, device="cpu")
    delivery = OnlineEpisodes(lc.discount, ac.forward_task)
    env = make_env(cfg.env, task=ac.forward_task, seed=ac.seed)
    loop_ref: list = []
    tracker = LabelTracker(InProcessLabeller(reward), step_clock=lambda: loop_ref[0].steps)
    actor = Actor(policy, tracker, meta={"actor": 0}, success_frames=ac.success_frames)
    loop = ResetFreeLoop(cfg, env, actor, delivery, _NoCommands(), _NoWait())
    loop_ref.append(loop)

    curve = [
        {
            "env_steps": 0,
            "updates": 0,
            "success": evaluate(cfg, learner.get_variables(), ac.forward_task, episodes),
        }
    ]
    log.info("%s seed %d: start %.2f", lc.algorithm, lc.seed, curve[0]["success"])
    online_buffer = None
    credit = 0.0
    online_updates = 0
    metrics: dict = {}
    loop._reset(ac.forward_task, "start")
    loop.state = "running"
    next_eval = eval_every
    while loop.steps < env_steps:
        before = loop.steps
        loop.tick()
        if loop.steps == before:
            continue
        credit += lc.utd_ratio
        if delivery.new:
            online_buffer = OfflineBuffer(
                delivery.episodes,
                lc.discount,
                seed=lc.seed + online_updates,
                terminal_on_success=lc.terminal_on_success,
            )
            delivery.new = 0
        while credit >= 1.0 and online_buffer is not None:
            batch_online = online_buffer.sample(n_online)
            if not lc.online_calibration:
                batch_online["mc_return"] = torch.full_like(
                    batch_online["mc_return"], NO_CALIBRATION
                )
            batch = mix_batches(
                offline.sample(n_offline), batch_online, lc.mixing_ratio, lc.batch_size
            )
            metrics = learner.update(batch)
            online_updates += 1
            credit -= 1.0
            if online_updates % lc.publish_every == 0:
                version += 1
                policy.load_variables(learner.get_variables(), version)
        if loop.steps >= next_eval:
            next_eval += eval_every
            learner.check_finite()
            point = {
                "env_steps": loop.steps,
                "updates": online_updates,
                "success": evaluate(cfg, learner.get_variables(), ac.forward_task, episodes),
                "labels": delivery.summary(),
                "q_mean": float(metrics.get("q_mean", torch.zeros(())).item()),
            }
            curve.append(point)
            log.info(
                "%s seed %d: %d env steps, %d updates, success %.2f, online FPR %.3f, "
                "forward episodes %d (true success %d)",
                lc.algorithm,
                lc.seed,
                loop.steps,
                online_updates,
                point["success"],
                point["labels"]["false_positive_rate"],
                point["labels"]["forward_episodes"],
                point["labels"]["forward_true_success"],
            )
    actor.apply_labels()
    loop._close("stop")
    env.close()
    result = {
        "algorithm": lc.algorithm,
        "seed": lc.seed,
        "task": ac.forward_task,
        "pretrained": str(pretrained),
        "pretrained_updates": start_updates,
        "env_steps": loop.steps,
        "updates": online_updates,
        "utd_ratio": lc.utd_ratio,
        "success_frames": ac.success_frames,
        "episodes": episodes,
        "start_success": curve[0]["success"],
        "final_success": curve[-1]["success"],
        "best_success": max(p["success"] for p in curve),
        "curve": curve,
        "labels": delivery.summary(),
        "human_resets": loop.human_resets,
        "seconds": time.perf_counter() - start_time,
        "date": time.strftime("%Y-%m-%d"),
    }
    out.mkdir(parents=True, exist_ok=True)
    # the fine-tuned policy, for `robofume evaluate` (e.g. --stochastic, as the actor acts)
    learner.save(
        checkpoint_path(out / "checkpoints", learner.num_updates),
        {"online_env_steps": loop.steps, "pretrained": str(pretrained)},
    )
    result_file.write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    from benchmarks.online_report import report
    from robofume.config import load_config
    from robofume.logs import setup_logging
    from robofume.threads import set_threads

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="sim-state")
    p.add_argument(
        "--pretrained", type=Path, required=True, help="offline checkpoint to start from"
    )
    p.add_argument("--reward", type=Path, required=True, help="fine-tuned reward model directory")
    p.add_argument("--algorithms", nargs="+", default=["robofume", "cql", "sac"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--env-steps", type=int, default=20000)
    p.add_argument("--eval-every", type=int, default=2500)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--utd", type=float, default=None, help="learner.utd_ratio (default: preset)")
    p.add_argument(
        "--bc-reference",
        type=float,
        default=None,
        help="ground-truth success of BC with the same offline budget (a line)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/online_state"))
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="learning-curve plot (default: benchmarks/online_<preset>.png; with --no-records, "
        "<out>/online.png, so that a trial run leaves the published plot alone)",
    )
    p.add_argument("--no-records", action="store_true")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: plot and record every finished run under --out",
    )
    args = p.parse_args(argv)
    if args.plot is None:
        published = Path(f"benchmarks/online_{args.preset}.png")
        args.plot = args.out / "online.png" if args.no_records else published
    setup_logging()
    set_threads(int(os.environ.get("ROBOFUME_THREADS", "1")))
    base = load_config(args.preset)
    results = []
    if args.report_only:
        found = sorted(args.out.glob("*_s*/result.json"))
        results = [
            {
                "date": time.strftime("%Y-%m-%d", time.gmtime(f.stat().st_mtime)),
                **json.loads(f.read_text()),
            }
            for f in found
        ]
        order = {a: i for i, a in enumerate(args.algorithms)}
        results.sort(key=lambda r: (order.get(r["algorithm"], 99), r["seed"]))
    for algo in [] if args.report_only else args.algorithms:
        for seed in args.seeds:
            learner = dataclasses.replace(base.learner, algorithm=algo, seed=seed)
            if args.utd is not None:
                learner = dataclasses.replace(learner, utd_ratio=args.utd)
            actor = dataclasses.replace(base.actor, seed=seed)
            cfg = dataclasses.replace(base, learner=learner, actor=actor)
            results.append(
                run_one(
                    cfg,
                    args.pretrained,
                    args.reward,
                    args.env_steps,
                    args.eval_every,
                    args.episodes,
                    args.out / f"{algo}_s{seed}",
                )
            )
    report(results, args, obs="state" if base.env.observation == "state" else "pixels")


if __name__ == "__main__":
    main()
