"""Reward model quality (paper Table II): ``python -m benchmarks.reward_quality``.

For each backend (``embedded``: pretrained EfficientNet-Lite0 + MiniLM; ``cnn``: from
scratch) on simulated sim-cpu data: fine-tune on the plain scene and report FP/FN/accuracy/
precision on held-out episodes at the threshold tuned for ``reward.target_fpr``; score the
scene-varied dataset (lighting, camera jitter, distractors) with that same model; and fine-tune
and evaluate on the varied data itself. Datasets are generated when missing (small prior set:
the classifier does not use prior demos). Prints a markdown table; JSON in benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
KEYS = (
    "false_positive_rate",
    "false_negative_rate",
    "accuracy",
    "precision",
    "tp",
    "fp",
    "tn",
    "fn",
)
VARIATION = {"lighting": 0.3, "camera_jitter": 0.03, "distractors": 2}


def ensure_data(path: Path, varied: bool, seed: int) -> Path:
    from robofume.config import load_config
    from robofume.data import dataset_exists, generate_dataset

    if dataset_exists(path):
        return path
    overrides = [
        "--data.num_prior_tasks", "1", "--data.prior_episodes_per_task", "1",
        "--data.max_attempts", "100", "--data.seed", str(seed), "--data.workers", "1",
    ]  # fmt: skip
    if varied:
        for key, value in VARIATION.items():
            overrides += [f"--env.scene.{key}", str(value)]
    return generate_dataset(load_config("sim-cpu", overrides=overrides), path)


def row(name: str, backend: str, metrics: dict, extra: dict) -> dict:
    out = {"setting": name, "backend": backend}
    out.update({k: metrics.get(k) for k in KEYS})
    out.update(extra)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plain", default=str(OUT / "reward_data_plain"))
    parser.add_argument("--varied", default=str(OUT / "reward_data_varied"))
    parser.add_argument("--backends", nargs="+", default=["embedded", "cnn"])
    parser.add_argument("--steps", type=int, default=None, help="default: sim-cpu reward.steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from reward_server.evaluate import evaluate
    from reward_server.finetune import finetune
    from robofume.config import load_config

    OUT.mkdir(parents=True, exist_ok=True)
    plain = ensure_data(Path(args.plain), False, seed=0)
    varied = ensure_data(Path(args.varied), True, seed=5)
    load = os.getloadavg()[0]
    rows = []
    for backend in args.backends:
        cfg = load_config("sim-cpu", overrides=["--reward.backend", backend]).reward
        for name, data in (("plain", plain), ("varied", varied)):
            out = OUT / f"reward_quality_{backend}_{name}"
            start = time.perf_counter()
            result = finetune(cfg, data, out, steps=args.steps, device="cpu")
            secs = time.perf_counter() - start
            rows.append(row(f"train {name}, held-out {name}", backend, result.heldout,
                            {"threshold": result.model.threshold, "train_s": secs}))  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            if name == "plain":  # robustness: the plain model on the varied scenes
                report = evaluate(result.model, varied, split="all")
                rows.append(row("train plain, all varied", backend, report["labels"],
                                {"threshold": result.model.threshold}))  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    (OUT / "reward_quality.json").write_text(json.dumps(rows, indent=1))

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    print(f"\nload average at start {load:.1f}; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"target FPR {cfg.target_fpr}; steps {args.steps or cfg.steps}")  # fmt: skip
    print("| backend | setting | FPR | FNR | accuracy | precision | TP/FP/TN/FN | threshold |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['setting']} | {pct(r['false_positive_rate'])} "
            f"| {pct(r['false_negative_rate'])} | {pct(r['accuracy'])} | {pct(r['precision'])} "
            f"| {r['tp']}/{r['fp']}/{r['tn']}/{r['fn']} | {r['threshold']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ROBOFUME_NO_PROGRESS", "1")
    from robofume.logs import setup_logging

    setup_logging()
    sys.exit(main())
