"""Plot and table of the online runs through the product (``benchmarks/online_system.py``).

Reads ``benchmarks/results/learning.json`` (records with ``path: "system"``) and draws, per
algorithm, the evaluator's curve of every seed (online scene, deterministic, from the
product's TensorBoard) with the controls beside it: the start, offline continuation for the
same number of updates, and BC at its best (all on the evaluation seeds, at the final point).

    python -m benchmarks.online_system_report --preset sim-shift
    python -m benchmarks.online_system_report --preset sim-shift --labels "five modes" \
        --plot benchmarks/online_sim-shift_current.png   # one setting's seeds only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.learning_records import load_records

ALGORITHM_LABELS = {"robofume": "Cal-QL + BC", "cql": "CQL + BC", "sac": "SAC + BC"}


def system_records(preset: str) -> list[dict]:
    recs = [r for r in load_records() if r.get("path") == "system" and r["preset"] == preset]
    return sorted(recs, key=lambda r: (list(ALGORITHM_LABELS).index(r["algorithm"]), r["seed"]))


def plot(records: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algorithm"] for r in records))
    settings = {r.get("labels") or r["reward"] for r in records}
    shared = settings.pop() if len(settings) == 1 else None  # said once, in the title
    fig, axes = plt.subplots(1, len(algos), figsize=(max(5.6, 4.6 * len(algos)), 5.6), dpi=120,
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, algo in zip(axes[0], algos, strict=True):
        every = [r for r in records if r["algorithm"] == algo]
        runs = [r for r in every if r["reward"] == "model"] or every
        for i, r in enumerate(every):
            curve = [p for p in r["curve"] if "success" in p]
            x = [p["env_steps"] for p in curve]
            gt = r["reward"] == "ground_truth"
            label = f"online, seed {r['seed']}"
            if shared is None:
                label += f": {r.get('labels') or r['reward']}"
            ax.plot(x, [p["success"] for p in curve], color=f"C{i}", lw=1.2, marker=".",
                    ls="--" if gt else "-", label=label)  # fmt: skip
            end = r["env_steps"]
            ax.scatter([end], [r["final_success"]], color=f"C{i}", marker="*", s=90, zorder=3)
            ax.scatter([end], [r["control_success"]], color=f"C{i}", marker="x", s=50, zorder=3)
        start = np.mean([r["start_success"] for r in runs])
        control = np.mean([r["control_success"] for r in runs])
        ax.axhline(start, color="grey", ls="--", lw=1, label=f"start ({start:.2f})")
        ax.axhline(control, color="k", ls=":", lw=1.5,
                   label=f"offline continuation, mean ({control:.2f})")  # fmt: skip
        bc = [r["bc_best_success"] for r in runs if r.get("bc_best_success") is not None]
        if bc:
            ax.axhline(bc[0], color="C3", ls="-.", lw=1, label=f"BC at its best ({bc[0]:.2f})")
        ax.set_title(f"{ALGORITHM_LABELS.get(algo, algo)}: {runs[0]['task']}")
        ax.set_xlabel("environment steps (online scene)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    axes[0][0].set_ylabel("ground-truth success")
    title = ("online through `robofume up`\n(lines: evaluator, 10 episodes; *: final and "
             "x: control, 40 episodes; evaluation seeds)")  # fmt: skip
    if shared is not None:
        title += f"\nlabels: {shared}"
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def table(records: list[dict]) -> str:
    rows = ["| algorithm | labels | seed | env steps | updates | UTD (target) | start | control "
            "| online | online - control | stochastic: start / control / online "
            "| false-success episodes | FPR per frame |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        rm = r.get("reward_model") or {}
        fse, fpr = rm.get("false_success_episode_fraction"), rm.get("false_positive_rate")
        rows.append(
            f"| {ALGORITHM_LABELS.get(r['algorithm'], r['algorithm'])} | "
            f"{r.get('labels') or r['reward']} "
            f"| {r['seed']} "
            f"| {r['env_steps']} | {r['updates']} | {r['utd_effective']:.3f} "
            f"({r['utd_target']}) | {r['start_success']:.2f} | {r['control_success']:.2f} "
            f"| {r['final_success']:.2f} | {r['final_success'] - r['control_success']:+.2f} "
            f"| {r['start_success_stochastic']:.2f} / {r['control_success_stochastic']:.2f} / "
            f"{r['final_success_stochastic']:.2f} "
            f"| {'-' if fse is None else f'{fse:.1%}'} | {'-' if fpr is None else f'{fpr:.2%}'} |"
        )
    groups = dict.fromkeys((r["algorithm"], r.get("labels") or r["reward"]) for r in records
                           if r["reward"] == "model")  # fmt: skip
    for algo, labels in groups:
        runs = [r for r in records if r["algorithm"] == algo and r["reward"] == "model"
                and (r.get("labels") or r["reward"]) == labels]  # fmt: skip
        gain = [r["final_success"] - r["control_success"] for r in runs]
        rows.append(
            f"| **{ALGORITHM_LABELS.get(algo, algo)} mean** | {labels} | {len(runs)} seed(s) "
            "| | | | "
            f"{np.mean([r['start_success'] for r in runs]):.2f} "
            f"| {np.mean([r['control_success'] for r in runs]):.2f} "
            f"| {np.mean([r['final_success'] for r in runs]):.2f} | {np.mean(gain):+.2f} "
            f"({sum(g > 0 for g in gain)}/{len(gain)} above) | | | |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="sim-shift")
    p.add_argument("--plot", type=Path, default=None, help="benchmarks/online_<preset>.png")
    p.add_argument("--labels", default="", help="plot only the runs whose labels contain this")
    args = p.parse_args(argv)
    records = system_records(args.preset)
    if not records:
        raise SystemExit(f"no system records for preset {args.preset} in learning.json")
    shown = [r for r in records if args.labels in (r.get("labels") or r["reward"])]
    if not shown:
        raise SystemExit(f"no system records of preset {args.preset} with labels {args.labels!r}")
    path = plot(shown, args.plot or Path(f"benchmarks/online_{args.preset}.png"))
    print(table(records))
    print(f"\nplot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
