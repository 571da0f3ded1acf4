"""Online fine-tuning from the offline checkpoint in simulation: a learning curve.

Starts an isolated cluster with `robofume up` (one simulated actor, reset-free forward/reset
loop labelled by the reward model; the learner starts from the source run's pre-trained
checkpoint), lets it run for --seconds while sampling the heartbeats, stops it, then evaluates
the ground-truth forward-task success of the pre-trained checkpoint (update 0 of the curve)
and of --points online checkpoints with `robofume evaluate`. Also reports what the actor saw
online: episodes per task, ground-truth success of its episodes, interventions and human
resets, and the reward model's false-positive / false-negative rates against ground truth.

    python -m benchmarks.online_curve --seconds 900 --tick-hz 10 --episodes 20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.cluster_run import (
    Cluster,
    cluster_overrides,
    link_prepared,
    load_average,
    robofume,
    running_cluster,
)
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.online_curve")


def pick_checkpoints(ckpt_dir: Path, points: int) -> list[Path]:
    """``points`` online checkpoints spread evenly over the run, the last one included."""
    from learner.checkpoint import list_checkpoints

    found = [path for _, path in list_checkpoints(ckpt_dir)]
    if len(found) <= points:
        return found
    idx = sorted({round((len(found) - 1) * (i + 1) / points) for i in range(points)})
    return [found[i] for i in idx]


def evaluate(ckpt: Path, task: str, episodes: int, out: Path) -> dict:
    """Ground-truth success of one checkpoint; cached in ``out`` per (checkpoint, task, n)."""
    real = Path(ckpt).resolve()
    key = hashlib.sha1(f"{real}:{real.stat().st_mtime_ns}".encode()).hexdigest()[:10]
    cache = out / f"{real.stem}_{key}_{task}_{episodes}.json"
    if cache.exists():
        log.info("%s: cached evaluation %s", ckpt, cache)
        return json.loads(cache.read_text())
    res = robofume(
        "evaluate",
        str(ckpt),
        "--task",
        task,
        "--episodes",
        str(episodes),
        "--record",
        "0",
        "--out",
        str(out),
        "--json",
        timeout=1800,
    )
    if res.returncode != 0:
        raise RuntimeError(f"robofume evaluate {ckpt} failed:\n{res.stderr[-3000:]}")
    summary = json.loads(res.stdout)
    row = summary["tasks"][task]
    log.info(
        "%s: %s success %.2f (%d/%d)",
        ckpt.name,
        task,
        row["success_rate"],
        row["successes"],
        row["episodes"],
    )
    result = {"checkpoint": str(ckpt), "update": summary["update"], **row}
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    return result


def online_stats(cluster: Cluster) -> dict:
    """The actor's and learner's final counters, and a training-success time series."""
    last = cluster.samples[-1]
    actor = last.get("actor_0") or {}
    learner = last.get("learner") or {}
    series = []
    for s in cluster.samples:
        a, lr = s.get("actor_0") or {}, s.get("learner") or {}
        gt = (a.get("ground_truth_success") or {}).get("vase_forward") or {}
        series.append(
            {
                "t": round(s["t"] - cluster.samples[0]["t"]),
                "steps": a.get("steps"),
                "online_updates": lr.get("online_updates"),
                "forward_episodes": gt.get("episodes"),
                "forward_successes": gt.get("successes"),
            }
        )
    return {
        "seconds": round(last["t"] - cluster.samples[0]["t"]),
        "actor_steps": actor.get("steps"),
        "tick_hz": actor.get("tick_hz"),
        "episodes_closed": actor.get("episodes_closed"),
        "ground_truth_success": actor.get("ground_truth_success"),
        "interventions": actor.get("interventions"),
        "human_resets": actor.get("human_resets"),
        "reward_model": actor.get("reward_model"),
        "policy_lag": actor.get("policy_lag"),
        "learner_step": learner.get("step"),
        "online_updates": learner.get("online_updates"),
        "utd_ratio": learner.get("utd_ratio"),
        "utd_target": learner.get("utd_target"),
        "updates_per_sec_last": learner.get("updates_per_sec"),
        "wait_fraction_last": learner.get("wait_fraction"),
        "series": series,
        "load_mean": sum(s["load"] for s in cluster.samples) / len(cluster.samples),
    }


def episode_stats(run_dir: Path) -> dict:
    """From the actor's TensorBoard: episode lengths, and how many ended on a predicted success
    (labelled return > 0) rather than at the step limit or a human reset."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from robofume import metrics as M

    lengths: list[float] = []
    returns: list[float] = []
    for events in sorted((run_dir / "tb" / "actor_0").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        if M.EPISODE_LENGTH in tags:
            lengths += [e.value for e in acc.Scalars(M.EPISODE_LENGTH)]
        if M.EPISODE_RETURN in tags:
            returns += [e.value for e in acc.Scalars(M.EPISODE_RETURN)]
    return {
        "episodes": len(lengths),
        "mean_length": sum(lengths) / len(lengths) if lengths else None,
        "ended_on_predicted_success": sum(r > 0 for r in returns),
    }


def plot(curve: list[dict], stats: dict, pretrain_step: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [max(0, r["update"] - pretrain_step) for r in curve]
    y = [r["success_rate"] for r in curve]
    ax.plot(x, y, "o-", label="online fine-tuning (eval, ground truth)")
    ax.axhline(y[0], color="grey", ls="--", label="offline checkpoint")
    ax.set_xlabel("online updates")
    ax.set_ylabel("vase_forward success")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"evaluation ({curve[0]['episodes']} episodes per point)")
    ax.legend(fontsize=8)
    pts = [s for s in stats["series"] if s["forward_episodes"]]
    ax2.plot(
        [s["steps"] for s in pts],
        [s["forward_successes"] / s["forward_episodes"] for s in pts],
        "-",
        label="forward episodes succeeded (cumulative)",
    )
    ax2.set_xlabel("actor env steps")
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_title(f"online episodes (tick {stats['tick_hz']:g} Hz)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log.info("wrote %s", path)


def run_cluster(args: argparse.Namespace, run_dir: Path) -> tuple[Path, dict]:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    pretrained = link_prepared(args.source_run, run_dir)
    extra = [
        "--deploy.num_actors",
        "1",
        "--actor.tick_hz",
        str(args.tick_hz),
        "--actor.total_steps",
        "1000000",
        "--actor.keyboard",
        "false",
        "--learner.checkpoint_every",
        str(args.checkpoint_every),
        "--learner.checkpoint_keep",
        "0",
        *args.overrides,
    ]
    overrides = cluster_overrides(args.preset, run_dir, args.data, extra)
    log.info(
        "online run for %.0f s at %g Hz, load %.1f", args.seconds, args.tick_hz, load_average()
    )
    with running_cluster(run_dir, overrides) as cluster:
        cluster.poll(args.seconds, every_s=args.every)
    cluster.sample()  # the final heartbeats written at stop
    return pretrained, online_stats(cluster)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="sim-cpu")
    p.add_argument("--seconds", type=float, default=900.0, help="online run length")
    p.add_argument("--tick-hz", type=float, default=10.0, help="simulated actor tick rate")
    p.add_argument("--checkpoint-every", type=int, default=500, help="online updates")
    p.add_argument("--points", type=int, default=3, help="online checkpoints to evaluate")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per point")
    p.add_argument("--task", default="vase_forward")
    p.add_argument("--eval-workers", type=int, default=2, help="evaluations run at once")
    p.add_argument("--every", type=float, default=15.0, help="heartbeat sampling period, s")
    p.add_argument("--source-run", type=Path, default=Path("runs/sim-cpu"))
    p.add_argument("--data", default="data/sim-cpu", help="dataset dir (must exist)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/online_curve"))
    p.add_argument("--plot", type=Path, default=Path("benchmarks/online_curve.png"))
    p.add_argument("--eval-only", action="store_true", help="evaluate an existing run")
    p.add_argument("overrides", nargs="*", help="extra --section.field value overrides")
    args = p.parse_args(argv)
    setup_logging()
    run_dir = (args.out / "run").resolve()
    stats_path = args.out / "online.json"
    if args.eval_only:
        stats = json.loads(stats_path.read_text())
        pretrained = Path(stats["pretrained"])
    else:
        pretrained, stats = run_cluster(args, run_dir)
        stats["pretrained"] = str(pretrained)
        stats_path.write_text(json.dumps(stats, indent=1))
    stats["episode_stats"] = episode_stats(run_dir)
    ckpts = [pretrained, *pick_checkpoints(run_dir / "online" / "checkpoints", args.points)]
    evals = args.out / "evaluation"
    with ThreadPoolExecutor(max_workers=args.eval_workers) as pool:  # one process each
        curve = list(pool.map(lambda c: evaluate(c, args.task, args.episodes, evals), ckpts))
    (args.out / "curve.json").write_text(json.dumps(curve, indent=1))
    plot(curve, stats, curve[0]["update"], args.plot)
    print(json.dumps({k: v for k, v in stats.items() if k != "series"}, indent=1))
    for r in curve:
        print(
            f"update {r['update']:>6}  {args.task} success {r['success_rate']:.2f} "
            f"({r['successes']}/{r['episodes']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
