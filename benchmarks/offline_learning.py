"""Offline pre-training, then ground-truth success on the forward target tasks, per algorithm.

    python -m benchmarks.offline_learning --preset sim-cpu --data data/sim-cpu \
        --algorithms robofume bc --seeds 0 1 2 --steps 3000 --episodes 50

Each (algorithm, seed) run trains into ``<out>/<algorithm>_s<seed>`` (resuming if a
checkpoint is there) and writes ``result.json`` with the per-task success of the final
checkpoint; finished runs are skipped, so the script can be stopped and restarted. The table
(per run, and mean +- std over seeds) is printed as markdown at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.offline_learning")


def run_one(cfg, data_dir: Path, out: Path, episodes: int, eval_seed: int) -> dict:
    from learner.evaluate import default_eval_tasks, evaluate_policy, write_media
    from learner.pretrain import pretrain
    from robofume.policy import load_policy

    result_file = out / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    start = time.perf_counter()
    trained = pretrain(cfg, data_dir, out)
    train_s = time.perf_counter() - start
    policy = load_policy(trained.checkpoint)
    start = time.perf_counter()
    tasks = default_eval_tasks(cfg)
    evaluation = evaluate_policy(cfg, policy, tasks, episodes, record=2, seed=eval_seed)
    write_media(evaluation, out, "final")
    summary = evaluation.summary()
    summary.update(
        algorithm=cfg.learner.algorithm,
        seed=cfg.learner.seed,
        steps=trained.steps,
        train_seconds=round(train_s, 1),
        eval_seconds=round(time.perf_counter() - start, 1),
        final_metrics=trained.metrics,
        periodic_evaluations=trained.evaluations,
    )
    result_file.write_text(json.dumps(summary, indent=2))
    return summary


def table(results: list[dict]) -> str:
    results = sorted(results, key=lambda r: (r["algorithm"], r["seed"]))
    tasks = sorted({t for r in results for t in r["tasks"]})
    lines = [
        "| algorithm | seed | " + " | ".join(tasks) + " | mean |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for r in results:
        cells = [f"{r['tasks'][t]['successes']}/{r['tasks'][t]['episodes']}" for t in tasks]
        lines.append(
            f"| {r['algorithm']} | {r['seed']} | "
            + " | ".join(cells)
            + f" | {r['mean_success_rate']:.2f} |"
        )
    for algo in dict.fromkeys(r["algorithm"] for r in results):
        runs = [r for r in results if r["algorithm"] == algo]
        cells = []
        for t in tasks:
            rates = [r["tasks"][t]["success_rate"] for r in runs]
            cells.append(f"{np.mean(rates):.2f} ± {np.std(rates):.2f}")
        means = [r["mean_success_rate"] for r in runs]
        lines.append(
            f"| **{algo}** | {len(runs)} seeds | "
            + " | ".join(cells)
            + f" | **{np.mean(means):.2f} ± {np.std(means):.2f}** |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sim-cpu")
    parser.add_argument("--data", default=None, help="dataset dir (default: data.dir)")
    parser.add_argument("--algorithms", nargs="+", default=["robofume", "bc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="updates (default: preset)")
    parser.add_argument("--episodes", type=int, default=50, help="eval episodes per task")
    parser.add_argument("--eval-seed", type=int, default=20_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out/offline_learning")
    parser.add_argument(
        "--plot", default=None, help="bar plot of final success (default: benchmarks/<preset>.png)"
    )
    parser.add_argument("overrides", nargs="*", help="--section.field=VALUE config overrides")
    args, unknown = parser.parse_known_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from robofume.config import load_config
    from robofume.logs import setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    base = load_config(args.preset, overrides=list(args.overrides) + unknown)
    data_dir = Path(args.data or base.data.dir)
    results = []
    for seed in args.seeds:
        for algo in args.algorithms:
            learner = dataclasses.replace(base.learner, algorithm=algo, seed=seed)
            if args.steps is not None:
                learner = dataclasses.replace(learner, steps=args.steps)
            cfg = base.replace(learner=learner)
            out = Path(args.out) / f"{algo}_s{seed}"
            log.info("run %s seed %d -> %s", algo, seed, out)
            results.append(run_one(cfg, data_dir, out, args.episodes, args.eval_seed))
            log.info("%s seed %d: mean success %.2f", algo, seed, results[-1]["mean_success_rate"])
    print(table(results))
    records = learning_records(base, results, args, argv)
    from benchmarks.learning_records import plot_final_success, save_records

    save_records(records)
    plot = Path(args.plot or f"benchmarks/offline_{base.name}.png")
    title = f"offline, {base.name} ({base.env.observation}), {records[0]['updates']} updates"
    plot_final_success(records, plot, title)
    log.info("%d records -> benchmarks/results/learning.json, plot %s", len(records), plot)


def learning_records(cfg, results: list[dict], args, argv: list[str] | None) -> list[dict]:
    """One ``learning.json`` record per (run, task)."""
    import datetime
    import sys

    from benchmarks.common import machine

    command = "python -m benchmarks.offline_learning " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    return [
        {
            "obs": cfg.env.observation,
            "phase": "offline",
            "algorithm": r["algorithm"],
            "reward": "ground_truth",
            "seed": r["seed"],
            "updates": r["steps"],
            "env_steps": 0,
            "start_success": None,
            "final_success": v["success_rate"],
            "task": task,
            "episodes": v["episodes"],
            "preset": cfg.name,
            "command": command,
            "machine": machine(load=False),
            "date": datetime.date.today().isoformat(),
        }
        for r in results
        for task, v in r["tasks"].items()
    ]


if __name__ == "__main__":
    main()
