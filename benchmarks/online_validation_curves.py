"""Every checkpoint of online runs and of offline continuation, on the *validation* seeds.

The evaluator's curve of a `robofume up` run has 10 episodes a point; the final 40-episode
evaluation has one point. This script evaluates every checkpoint a run kept (the online
learner writes one every 1,000 updates) with `robofume evaluate` on the validation seeds of
the online scene, so online and offline training from the same start can be compared update
by update without touching the evaluation seeds:

    python -m benchmarks.online_validation_curves --episodes 20 \
        --run "offline continuation=benchmarks/out/offline_continuation/checkpoints" \
        --run "online s0=benchmarks/out/online_system_r2/runs/robofume_s0/online/checkpoints"

The curves are kept in ``benchmarks/results/online_validation_curves.json`` (a run evaluated
again replaces its curve of the same name; the others stay, so the plot keeps every run even
after the checkpoints are gone) and drawn in ``benchmarks/online_validation_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from benchmarks.online_start import offline_curve
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.online_validation_curves")

RESULTS = Path("benchmarks/results/online_validation_curves.json")


def plot(curves: dict[str, list[dict]], episodes: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.2), dpi=120)
    for i, (name, curve) in enumerate(curves.items()):
        pts = sorted((r["update"], r["success_rate"]) for r in curve)
        if name.startswith("offline"):  # the control, drawn to stand out
            ax.plot(*zip(*pts, strict=True), "s--", color="black", lw=2.5, label=name, ms=5)
        else:
            ax.plot(*zip(*pts, strict=True), "o-", color=f"C{i % 10}", label=name, ms=3.5)
    ax.set_xlabel("gradient updates in total (offline pre-training, then online or offline)")
    task = next(iter(curves.values()))[0]["task"]
    ax.set_ylabel(f"{task} success ({episodes} validation episodes)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("online and offline continuation from the same start, online scene", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", action="append", default=[], metavar="NAME=CHECKPOINT_DIR")
    p.add_argument("--preset", default="sim-shift", help="its env.online is the online scene")
    p.add_argument("--task", default="vase_forward")
    p.add_argument("--episodes", type=int, default=20, help="validation episodes per point")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/online_validation_curves"))
    p.add_argument("--plot", type=Path, default=Path("benchmarks/online_validation_curves.png"))
    p.add_argument("--results", type=Path, default=RESULTS, help="the curves kept so far")
    args = p.parse_args(argv)
    setup_logging()
    curves = json.loads(args.results.read_text()) if args.results.exists() else {}
    for spec in args.run:
        name, _, ckpt_dir = spec.partition("=")
        if not ckpt_dir:
            p.error(f"--run {spec!r}: expected NAME=CHECKPOINT_DIR")
        curves[name] = offline_curve(
            Path(ckpt_dir), args.task, args.episodes, args.preset, args.out
        )
    if not curves:
        p.error(f"no --run given and no curves in {args.results}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(curves, indent=1) + "\n")
    plot(curves, args.episodes, args.plot)
    for name, curve in curves.items():
        points = ", ".join(f"{r['update'] // 1000}k {r['success_rate']:.2f}" for r in curve)
        print(f"{name}: {points}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
