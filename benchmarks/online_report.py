"""Plots, records and the table of the online fine-tuning runs (``benchmarks/online_state.py``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ALGORITHM_LABELS = {"robofume": "Cal-QL + BC", "cql": "CQL + BC", "sac": "SAC + BC"}


def window_counts(curve: list[dict]) -> dict[int, tuple[int, int]]:
    """Per window between evaluation points (keyed by its last env step): the actor's own
    forward episodes and how many of them truly succeeded."""
    counts, prev = {}, (0, 0)
    for point in curve[1:]:
        lab = point["labels"]
        now = (lab["forward_episodes"], lab["forward_true_success"])
        counts[point["env_steps"]] = (now[0] - prev[0], now[1] - prev[1])
        prev = now
    return counts


def online_success(*curves: list[dict]) -> tuple[list[int], list[float]]:
    """(env steps, ground-truth success of the actor's own forward episodes in each window
    between evaluation points): what the robot achieved while it learned. Several curves (seeds)
    are pooled: each episode counts once, whichever seed it came from."""
    pooled: dict[int, tuple[int, int]] = {}
    for curve in curves:
        for step, (n, k) in window_counts(curve).items():
            n0, k0 = pooled.get(step, (0, 0))
            pooled[step] = (n0 + n, k0 + k)
    steps = sorted(s for s, (n, _) in pooled.items() if n)
    return steps, [pooled[s][1] / pooled[s][0] for s in steps]


def plot_curves(results: list[dict], references: dict[str, float], path: Path, title: str) -> Path:
    """Left: evaluation success vs env steps per algorithm (mean over seeds, seeds thin), with
    reference lines. Right: success of the actor's own forward episodes per window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120, sharey=True)
    algos = list(dict.fromkeys(r["algorithm"] for r in results))
    for i, algo in enumerate(algos):
        runs = [r for r in results if r["algorithm"] == algo]
        label = f"{ALGORITHM_LABELS.get(algo, algo)} ({len(runs)} seed(s))"
        steps = [p["env_steps"] for p in runs[0]["curve"]]
        ys = np.array([[p["success"] for p in r["curve"]][: len(steps)] for r in runs])
        for y in ys:
            ax.plot(steps[: len(y)], y, color=f"C{i}", alpha=0.3, lw=0.8)
        ax.plot(steps, ys.mean(0), color=f"C{i}", lw=2, label=label)
        for r in runs:
            ax2.plot(*online_success(r["curve"]), color=f"C{i}", alpha=0.3, lw=0.8)
        ax2.plot(
            *online_success(*(r["curve"] for r in runs)),
            color=f"C{i}",
            lw=2,
            marker="o",
            ms=3,
            label=label,
        )
    styles = iter(["--", ":", "-."])
    for name, value in references.items():
        style = next(styles, "--")
        ax.axhline(value, color="gray", ls=style, lw=1, label=name)
        ax2.axhline(value, color="gray", ls=style, lw=1)
    ax.set_xlabel("environment steps (online, reset-free)")
    ax.set_ylabel("ground-truth success")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("evaluation: deterministic policy, 20 held-out initial states", fontsize=8)
    ax2.set_xlabel("environment steps (online, reset-free)")
    ax2.set_title(
        "the actor's own forward episodes (stochastic), per window: all seeds pooled", fontsize=8
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def rerun_command(result: dict, args: argparse.Namespace) -> str:
    """The command line that reproduces one run."""
    return (
        f"python -m benchmarks.online_state --preset {args.preset} "
        f"--pretrained {result['pretrained']} --reward {args.reward} "
        f"--algorithms {result['algorithm']} --seeds {result['seed']} "
        f"--env-steps {result['env_steps']} --eval-every {args.eval_every} "
        f"--episodes {result['episodes']} --utd {result['utd_ratio']}"
    )


def report(results: list[dict], args: argparse.Namespace, obs: str) -> None:
    """Plot the curves, save the records (unless ``--no-records``) and print the table."""
    from benchmarks.learning_records import save_records

    start = float(np.mean([r["start_success"] for r in results]))
    refs = {f"offline start ({start:.2f})": start}
    if args.bc_reference is not None:
        refs[f"BC, same offline budget ({args.bc_reference:.2f})"] = args.bc_reference
    plot_curves(
        results,
        refs,
        args.plot,
        f"{args.preset}: online, reset-free, reward model labels "
        f"(success_frames {results[0]['success_frames']}, UTD {results[0]['utd_ratio']})",
    )
    if not args.no_records:
        from benchmarks.common import machine

        save_records(
            [
                {
                    "obs": obs,
                    "phase": "online",
                    "algorithm": r["algorithm"],
                    "reward": "model",
                    "seed": r["seed"],
                    "updates": r["updates"],
                    "env_steps": r["env_steps"],
                    "start_success": r["start_success"],
                    "final_success": r["final_success"],
                    "task": r["task"],
                    "episodes": r["episodes"],
                    "preset": args.preset,
                    "command": rerun_command(r, args),
                    "online_forward_success": r["labels"]["forward_true_success"]
                    / max(r["labels"]["forward_episodes"], 1),
                    "online_false_positive_rate": r["labels"]["false_positive_rate"],
                    "machine": machine(load=False),
                    "date": r.get("date") or time.strftime("%Y-%m-%d"),
                }
                for r in results
            ]
        )
    header = (
        "| algorithm | seed | start | final | best | env steps | updates | online FPR "
        "| ended on false success |"
    )
    print(header + "\n|" + "---|" * 9)
    for r in results:
        lab = r["labels"]
        print(
            f"| {r['algorithm']} | {r['seed']} | {r['start_success']:.2f} | "
            f"{r['final_success']:.2f} | {r['best_success']:.2f} | {r['env_steps']} | "
            f"{r['updates']} | {lab['false_positive_rate']:.3f} | "
            f"{lab['ended_on_false_success']}/{lab['episodes']} |"
        )
    print(summary_table(results))


def summary_table(results: list[dict]) -> str:
    """Per algorithm over its seeds: final success (mean and spread), the gain over the offline
    start per seed and on average, evaluation success averaged over the run's evaluation points
    (less noisy than the last one), and how often the actor's own forward episodes succeeded."""
    lines = [
        "| algorithm | seeds | final (mean ± sd) | gain per seed (points) | mean gain "
        "| over the run | own forward episodes: true success |",
        "|" + "---|" * 7,
    ]
    for algo in dict.fromkeys(r["algorithm"] for r in results):
        runs = [r for r in results if r["algorithm"] == algo]
        final = np.array([r["final_success"] for r in runs])
        gains = [round(100 * (r["final_success"] - r["start_success"])) for r in runs]
        during = np.mean([[p["success"] for p in r["curve"][1:]] for r in runs])
        own = sum(r["labels"]["forward_true_success"] for r in runs)
        tries = sum(r["labels"]["forward_episodes"] for r in runs)
        lines.append(
            f"| {ALGORITHM_LABELS.get(algo, algo)} | {len(runs)} | "
            f"{final.mean():.2f} ± {final.std():.2f} | {', '.join(f'{g:+d}' for g in gains)} | "
            f"{np.mean(gains):+.0f} | {during:.2f} | {own}/{tries} ({own / max(tries, 1):.0%}) |"
        )
    return "\n".join(lines)
