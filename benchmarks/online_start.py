"""The start of an online run: the offline curve on the online scene and the fixed start rule.

Every pre-training checkpoint is evaluated with `robofume evaluate` on the *validation* seeds
(disjoint from the evaluation seeds every reported number uses), in the online scene
(``env.online`` of the preset), deterministically. The rule, fixed before any online run:

    START RULE: the start is the earliest checkpoint whose validation success is at least the
    best validation success of all checkpoints minus ``--tolerance`` (5 points): the point
    where more offline updates stop helping.

The same curve picks "BC at its best": the BC checkpoint with the highest validation success.

    python -m benchmarks.online_start --checkpoints runs/exp/pre-robofume/checkpoints \
        --preset sim-shift --task vase_forward --episodes 20
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from benchmarks.cluster_run import robofume
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.online_start")

TOLERANCE = 0.05
"""Points below the best validation success that still count as 'stopped helping'."""


def online_scene_overrides(preset: str) -> list[str]:
    """``--env.online.*`` of ``preset``: the checkpoint's own config has the data's scene."""
    from robofume.config import load_config

    shift = load_config(preset).env.online
    out = []
    for f in dataclasses.fields(shift):
        value = getattr(shift, f.name)
        text = json.dumps(list(value)) if isinstance(value, tuple) else str(value)
        out += [f"--env.online.{f.name}", text]
    return out


def evaluate(
    ckpt: Path,
    task: str,
    episodes: int,
    split: str,
    preset: str,
    out: Path,
    stochastic: bool = False,
) -> dict:
    """`robofume evaluate` of one checkpoint in the online scene; cached in ``out``."""
    mode = "stochastic" if stochastic else "deterministic"
    scene = online_scene_overrides(preset)
    key = hashlib.sha1(f"{Path(ckpt).resolve()} {scene}".encode()).hexdigest()[:10]
    cache = out / f"{Path(ckpt).stem}_{key}_{task}_{split}_{episodes}_{mode}.json"
    if cache.exists() and cache.stat().st_mtime >= Path(ckpt).stat().st_mtime:
        return json.loads(cache.read_text())
    args = [
        "evaluate",
        str(ckpt),
        "--task",
        task,
        "--episodes",
        str(episodes),
        "--record",
        "0",
        "--split",
        split,
        "--scene",
        "online",
        "--out",
        str(out / "media"),
        "--json",
        *scene,
    ]
    if stochastic:
        args.append("--stochastic")
    res = robofume(*args, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"robofume evaluate {ckpt} failed:\n{res.stderr[-3000:]}")
    summary = json.loads(res.stdout)
    row = {
        "checkpoint": str(ckpt),
        "update": summary["update"],
        "split": split,
        "mode": mode,
        "task": task,
        **summary["tasks"][task],
    }
    out.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row, indent=1))
    log.info("%s %s %s: %.2f", ckpt, split, mode, row["success_rate"])
    return row


def start_rule(curve: list[dict], tolerance: float = TOLERANCE) -> dict:
    """The earliest point within ``tolerance`` of the best validation success."""
    best = max(r["success_rate"] for r in curve)
    return next(
        r for r in sorted(curve, key=lambda r: r["update"]) if r["success_rate"] >= best - tolerance
    )


def best_point(curve: list[dict]) -> dict:
    """The highest validation success (the earliest of ties)."""
    return max(sorted(curve, key=lambda r: r["update"]), key=lambda r: r["success_rate"])


def offline_curve(ckpt_dir: Path, task: str, episodes: int, preset: str, out: Path) -> list[dict]:
    from learner.checkpoint import list_checkpoints

    found = [path for _, path in list_checkpoints(ckpt_dir)]
    if not found:
        raise FileNotFoundError(f"no ckpt_*.pt under {ckpt_dir}")
    return [evaluate(c, task, episodes, "validation", preset, out) for c in found]


def plot_curves(curves: dict[str, list[dict]], marks: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            [r["update"] for r in curve],
            [r["success_rate"] for r in curve],
            "o-",
            color=f"C{i}",
            label=f"{name} (validation, online scene)",
        )
        if name in marks:
            m = marks[name]
            ax.scatter(
                [m["update"]],
                [m["success_rate"]],
                s=140,
                facecolors="none",
                edgecolors=f"C{i}",
                linewidths=2,
                zorder=3,
            )
    ax.axhline(0.6, color="grey", ls=":", lw=1, label="headroom bar (60%)")
    ax.set_xlabel("offline updates")
    ax.set_ylabel(f"{next(iter(curves.values()))[0]['task']} success")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("offline training, evaluated on the online scene (circled: chosen)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--checkpoints",
        type=Path,
        nargs="+",
        required=True,
        help="checkpoint directories, one curve each (name: the run directory)",
    )
    p.add_argument(
        "--bc-checkpoints",
        type=Path,
        nargs="*",
        default=[],
        help="BC checkpoint directories: their best validation point is chosen",
    )
    p.add_argument("--preset", default="sim-shift", help="its env.online is the online scene")
    p.add_argument("--task", default="vase_forward")
    p.add_argument("--episodes", type=int, default=20, help="validation episodes per point")
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/online_start"))
    p.add_argument("--plot", type=Path, default=Path("benchmarks/offline_curve_online_scene.png"))
    args = p.parse_args(argv)
    setup_logging()
    curves, marks, chosen = {}, {}, {}
    for ckpt_dir in [*args.checkpoints, *args.bc_checkpoints]:
        name = ckpt_dir.parent.name
        curve = offline_curve(ckpt_dir, args.task, args.episodes, args.preset, args.out)
        curves[name] = curve
        bc = ckpt_dir in args.bc_checkpoints
        rule = best_point(curve) if bc else start_rule(curve, args.tolerance)
        marks[name] = chosen[name] = rule
    (args.out / "curves.json").write_text(
        json.dumps({"curves": curves, "chosen": chosen}, indent=1)
    )
    plot_curves(curves, marks, args.plot)
    for name, rule in chosen.items():
        print(
            f"{name}: update {rule['update']} ({rule['checkpoint']}), validation "
            f"{rule['success_rate']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
