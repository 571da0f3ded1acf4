"""``benchmarks/results/learning.json``: one record per (run, task) of every learning benchmark.

A record::

    {"obs": "state" | "pixels", "phase": "offline" | "online", "algorithm": "robofume",
     "reward": "model" | "ground_truth", "seed": 0, "updates": 5000, "env_steps": 0,
     "start_success": null, "final_success": 0.95, "task": "vase_forward",
     "episodes": 20, "preset": "sim-state", "command": "python -m benchmarks...",
     "machine": "2-core CPU (...)", "date": "2026-11-30"}

Success rates are ground truth from the simulator, on evaluation seeds that data generation
and training never use. A rerun replaces the record with the same identity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LEARNING_JSON = Path(__file__).resolve().parent / "results" / "learning.json"
IDENTITY = ("path", "obs", "phase", "algorithm", "reward", "seed", "task", "preset", "updates")


def load_records(path: Path = LEARNING_JSON) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def save_records(new: list[dict], path: Path = LEARNING_JSON) -> None:
    """Add ``new`` records, replacing any with the same identity."""
    keys = {tuple(r.get(k) for k in IDENTITY) for r in new}
    kept = [r for r in load_records(path) if tuple(r.get(k) for k in IDENTITY) not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept + new, indent=1) + "\n")


def plot_final_success(records: list[dict], path: Path, title: str) -> Path:
    """Bars: mean final success per task and algorithm; dots: the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algorithm"] for r in records))
    tasks = sorted({r["task"] for r in records})
    width = 0.8 / max(len(algos), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.2), dpi=120)
    for i, algo in enumerate(algos):
        for j, task in enumerate(tasks):
            vals = [
                r["final_success"] for r in records if r["algorithm"] == algo and r["task"] == task
            ]
            if not vals:
                continue
            x = j + (i - (len(algos) - 1) / 2) * width
            ax.bar(x, np.mean(vals), width * 0.9, color=f"C{i}", label=algo if j == 0 else None)
            ax.scatter([x] * len(vals), vals, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("ground-truth success")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(algos))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
