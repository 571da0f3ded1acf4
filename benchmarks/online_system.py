"""Online fine-tuning through the product, beside offline continuation: paper Fig. 4 on `up`.

For each (algorithm, seed), from one start checkpoint per algorithm (chosen by the start rule
of ``benchmarks/online_start.py`` on validation seeds):

1. **online**: an isolated `robofume up --skip-prepare` cluster (replay with its UTD rate
   limiter, a gRPC reward replica, the online learner, a simulated actor paced to the learner,
   the evaluator on the online scene), the learner starting from the start checkpoint, until
   the actor's ``--env-steps``; the numbers come from what the product records: the
   evaluator's TensorBoard curve, the learner's and the actor's heartbeats (effective UTD, the
   reward model's false positives against ground truth);
2. **offline continuation** (the control): `robofume pretrain` resumed from the same start for
   as many gradient updates as the online learner made, on the offline data only;
3. `robofume evaluate` of the start, the online learner's final checkpoint and the control's,
   on the *evaluation* seeds of the online scene, deterministic and stochastic.

Records go to ``benchmarks/results/learning.json`` with ``path: "system"``.

    python -m benchmarks.online_system --preset sim-shift --algorithm robofume \
        --start runs/exp/pre-robofume/checkpoints/ckpt_6000.pt --reward runs/exp/reward \
        --seeds 0 1 2 3 4 --env-steps 20000 --episodes 40
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks.cluster_run import cluster_overrides, load_average, robofume, running_cluster
from benchmarks.common import machine
from benchmarks.online_start import TOLERANCE, evaluate
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.online_system")

START_RULE = (
    "earliest offline checkpoint whose validation success (online scene, deterministic, 20 "
    f"episodes) is within {TOLERANCE:.2f} of the best of all offline checkpoints"
)
SEEDS = {"validation": "20000000 + 1000*task + k", "evaluation": "10000000 + 1000*task + k"}
POLL_S = 15.0


def prepare_run_dir(run_dir: Path, start: Path, reward: Path) -> None:
    """A fresh run directory holding (links to) the reward model and the start checkpoint."""
    shutil.rmtree(run_dir, ignore_errors=True)
    ckpts = run_dir / "pretrain" / "checkpoints"
    ckpts.mkdir(parents=True)
    (run_dir / "reward").symlink_to(reward.resolve(), target_is_directory=True)
    (ckpts / start.name).symlink_to(start.resolve())


def wait_online(cluster, timeout_s: float) -> dict:
    """Poll the heartbeats until the phase runner says the online phase is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        snap = cluster.sample()
        phase = ((snap.get("phases") or {}).get("phases") or {}).get("online") or {}
        lr, actor = snap.get("learner") or {}, snap.get("actor_0") or {}
        log.info(
            "online: %s %s/%s steps, learner %s updates (utd %s), actor %s, load %.1f",
            phase.get("state"),
            phase.get("done"),
            phase.get("total"),
            lr.get("online_updates"),
            lr.get("utd_ratio"),
            actor.get("state"),
            snap["load"],
        )
        if phase.get("state") == "done":
            return snap
        if phase.get("state") == "failed" or (snap.get("phases") or {}).get("state") == "failed":
            raise RuntimeError(f"online phase failed: {phase.get('error')}")
    raise TimeoutError(f"online phase not done after {timeout_s:.0f} s")


def evaluator_curve(run_dir: Path, task: str) -> list[dict]:
    """The evaluator's points from TensorBoard: env steps, deterministic, stochastic."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from robofume import metrics as M

    points: dict[int, dict] = {}
    for events in sorted(run_dir.glob("tb/*/evaluator/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        found = acc.Tags()["scalars"]
        for key, prefix in (
            ("success", M.EVAL_TRUE_SUCCESS),
            ("success_stochastic", M.EVAL_TRUE_SUCCESS_STOCHASTIC),
        ):
            tag = M.per_task(prefix, task)
            if tag in found:
                for e in acc.Scalars(tag):
                    points.setdefault(int(e.step), {"env_steps": int(e.step)})[key] = e.value
    return [points[k] for k in sorted(points)]


def run_online(args: argparse.Namespace, algo: str, seed: int, start: Path) -> dict:
    """The online run of (algo, seed), or the one this run directory finished before."""
    run_dir = (args.out / "runs" / f"{algo}_s{seed}").resolve()
    done = run_dir / "online_result.json"
    if done.exists() and not args.rerun:
        result = json.loads(done.read_text())
        if result.get("start") == str(start) and result.get("env_steps") == args.env_steps:
            log.info("%s: reusing its finished online run (--rerun to run it again)", run_dir)
            return result
    result = cluster_online(args, run_dir, algo, seed, start)
    result["start"] = str(start)
    done.write_text(json.dumps(result, indent=1))
    return result


def cluster_online(args: argparse.Namespace, run_dir: Path, algo: str, seed: int, start: Path):
    prepare_run_dir(run_dir, start, args.reward)
    extra = [
        "--learner.algorithm",
        algo,
        "--learner.seed",
        str(seed),
        "--actor.seed",
        str(seed),
        "--actor.total_steps",
        str(args.env_steps),
        "--actor.keyboard",
        "false",
        "--learner.checkpoint_keep",
        "0",
        *args.overrides,
    ]
    overrides = cluster_overrides(args.preset, run_dir, args.data, extra)
    t0 = time.monotonic()
    with running_cluster(run_dir, overrides) as cluster:
        wait_online(cluster, args.timeout)
    final = cluster.sample()  # the heartbeats written at stop
    lr, actor = final.get("learner") or {}, final.get("actor_0") or {}
    from learner.checkpoint import latest_checkpoint

    return {
        "run_dir": str(run_dir),
        "seconds": round(time.monotonic() - t0),
        "checkpoint": str(latest_checkpoint(run_dir / "online" / "checkpoints")),
        "online_updates": int(lr.get("online_updates") or 0),
        "env_steps": int(actor.get("steps") or 0),
        "utd_effective": lr.get("utd_ratio"),
        "utd_target": lr.get("utd_target"),
        "actor_paced_s": actor.get("paced_s"),
        "reward_model": actor.get("reward_model"),
        "actor_ground_truth": actor.get("ground_truth_success"),
        "interventions": actor.get("interventions"),
        "human_resets": actor.get("human_resets"),
        "curve": evaluator_curve(run_dir, args.task),
        "load_mean": round(sum(s["load"] for s in cluster.samples) / len(cluster.samples), 2),
        "overrides": overrides,
    }


def run_control(args: argparse.Namespace, algo: str, seed: int, start: Path, updates: int) -> Path:
    """Offline continuation: the same start, ``updates`` more gradient updates, no online data.

    It resumes the start's own training run (its config, ``learner.seed`` included: a resume
    with other numbers is refused), so the seed of the online run changes only ``updates``.
    """
    from learner.checkpoint import latest_checkpoint, read_checkpoint

    out = (args.out / "control" / f"{algo}_s{seed}").resolve()
    saved = read_checkpoint(start)
    begin = int(saved["learner"]["num_updates"])
    start_seed = int(saved["config"]["learner"]["seed"])
    target = begin + updates
    done = latest_checkpoint(out / "checkpoints")
    if done is not None and done.stem == f"ckpt_{target}":
        return done
    shutil.rmtree(out, ignore_errors=True)
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy2(start, out / "checkpoints" / start.name)
    res = robofume(
        "pretrain",
        "--preset",
        args.preset,
        "--data",
        args.data,
        "--out",
        str(out),
        "--steps",
        str(target),
        "--learner.algorithm",
        algo,
        "--learner.seed",
        str(start_seed),
        "--learner.eval_every",
        "0",
        "--learner.checkpoint_every",
        "1000",  # the control's own curve (benchmarks/online_validation_curves.py)
        "--learner.checkpoint_keep",
        "0",
        *args.overrides,
        timeout=6 * 3600,
    )
    if res.returncode != 0:
        raise RuntimeError(f"offline continuation failed:\n{res.stderr[-3000:]}")
    return latest_checkpoint(out / "checkpoints")


def both_modes(args: argparse.Namespace, ckpt: Path) -> dict:
    ev = args.out / "evaluation"
    det = evaluate(ckpt, args.task, args.episodes, "evaluation", args.preset, ev)
    sto = evaluate(ckpt, args.task, args.episodes, "evaluation", args.preset, ev, stochastic=True)
    return {
        "deterministic": det["success_rate"],
        "stochastic": sto["success_rate"],
        "update": det["update"],
    }


def label_source(overrides: list[str]) -> str:
    """``ground_truth`` when the actor was told to label with the simulator's success (an
    ablation, not RoboFuME), else ``model``."""
    pairs = dict(zip(overrides[::2], overrides[1::2], strict=False))
    gt = pairs.get("--actor.use_ground_truth_reward", "false").lower() in ("true", "1", "yes")
    return "ground_truth" if gt else "model"


def record(args: argparse.Namespace, algo: str, seed: int, start: Path) -> dict:
    online = run_online(args, algo, seed, start)
    control_ckpt = run_control(args, algo, seed, start, online["online_updates"])
    s, f, c = (both_modes(args, p) for p in (start, Path(online["checkpoint"]), control_ckpt))
    bc = both_modes(args, args.bc) if args.bc else None
    cmd = " ".join(
        shlex.quote(a) for a in ["python", "-m", "benchmarks.online_system", *sys.argv[1:]]
    )
    return {
        "path": "system",
        "obs": "state",
        "phase": "online",
        "algorithm": algo,
        "reward": label_source(args.overrides),
        "labels": args.labels or f"reward model {args.reward}",
        "seed": seed,
        "task": args.task,
        "preset": args.preset,
        "updates": online["online_updates"],
        "env_steps": online["env_steps"],
        "episodes": args.episodes,
        "start_rule": START_RULE,
        "start_checkpoint": str(start),
        "start_update": s["update"],
        "validation_seeds": SEEDS["validation"],
        "evaluation_seeds": SEEDS["evaluation"],
        "start_success": s["deterministic"],
        "control_success": c["deterministic"],
        "final_success": f["deterministic"],
        "bc_best_success": bc and bc["deterministic"],
        "start_success_stochastic": s["stochastic"],
        "control_success_stochastic": c["stochastic"],
        "final_success_stochastic": f["stochastic"],
        "bc_best_success_stochastic": bc and bc["stochastic"],
        "control_checkpoint": str(control_ckpt),
        **{
            k: online[k]
            for k in (
                "utd_effective",
                "utd_target",
                "actor_paced_s",
                "reward_model",
                "actor_ground_truth",
                "interventions",
                "human_resets",
                "curve",
                "seconds",
                "load_mean",
                "checkpoint",
            )
        },
        "command": cmd,
        "machine": machine(load=False),
        "date": date.today().isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="sim-shift")
    p.add_argument("--algorithm", default="robofume", choices=("robofume", "cql", "sac"))
    p.add_argument("--start", type=Path, required=True, help="start checkpoint (start rule)")
    p.add_argument("--bc", type=Path, default=None, help="BC at its best (validation)")
    p.add_argument("--reward", type=Path, required=True, help="fine-tuned reward model dir")
    p.add_argument("--data", default=None, help="the offline dataset (default: data.dir)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--env-steps", type=int, default=20_000)
    p.add_argument("--episodes", type=int, default=40, help="evaluation episodes per point")
    p.add_argument("--task", default="vase_forward")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="per online run, s")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/online_system"))
    p.add_argument(
        "--labels",
        default="",
        help="what labelled the online data (the record's "
        "'labels': reward model version, success rule)",
    )
    p.add_argument("--no-records", action="store_true", help="do not touch learning.json")
    p.add_argument(
        "--online-only",
        action="store_true",
        help="the online run only (no control, no evaluation, no record): for a variant judged "
        "by its checkpoints on validation seeds (benchmarks/online_validation_curves.py)",
    )
    p.add_argument("--rerun", action="store_true", help="run finished online runs again")
    p.add_argument("overrides", nargs="*", help="extra --section.field value overrides")
    args = p.parse_args(argv)
    setup_logging()
    from benchmarks.learning_records import save_records
    from robofume.config import load_config

    args.data = args.data or load_config(args.preset).data.dir

    for seed in args.seeds:
        log.info("%s seed %d from %s (load %.1f)", args.algorithm, seed, args.start, load_average())
        if args.online_only:
            online = run_online(args, args.algorithm, seed, args.start)
            (args.out / "records").mkdir(parents=True, exist_ok=True)
            (args.out / "records" / f"{args.algorithm}_s{seed}_online.json").write_text(
                json.dumps(online, indent=1)
            )
            log.info("%s seed %d online only: %s", args.algorithm, seed, online["checkpoint"])
            continue
        rec = record(args, args.algorithm, seed, args.start)
        (args.out / "records").mkdir(parents=True, exist_ok=True)
        (args.out / "records" / f"{args.algorithm}_s{seed}.json").write_text(
            json.dumps(rec, indent=1)
        )
        if not args.no_records:
            save_records([rec])
        log.info(
            "%s seed %d: start %.2f, control %.2f, online %.2f (utd %.3f of %.2f)",
            args.algorithm,
            seed,
            rec["start_success"],
            rec["control_success"],
            rec["final_success"],
            rec["utd_effective"] or 0.0,
            rec["utd_target"] or 0.0,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
