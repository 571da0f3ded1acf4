"""What each learner fix does: Cal-QL + BC on privileged state with one fix turned off at a time.

    python -m benchmarks.learner_ablation --steps 3000 --episodes 20

A small vase-only state dataset (2 prior tasks x 2 demos, 10 forward + 10 reset demos) is
generated once into ``<out>/data``; each variant pre-trains on it from the same seed and is
evaluated on ``vase_forward`` (ground truth, evaluation seeds the data never used). The
markdown table goes to stdout and ``<out>/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("benchmarks.learner_ablation")

DATA = {
    "target_tasks": ["vase"],
    "num_prior_tasks": 2,
    "prior_episodes_per_task": 2,
    "target_forward_episodes": 10,
    "target_reset_episodes": 10,
    "failure_episodes": 0,
    "workers": 1,
}
BASE = {
    "data": DATA,
    "network": {"hidden_dims": [128, 128]},
    "learner": {"batch_size": 128, "eval_every": 0, "log_every": 500},
}
VARIANTS = {
    "all fixes (default)": [],
    "BC as -log pi (nll)": ["--learner.bc_loss", "nll"],
    "raw proprio (no standardisation)": ["--network.normalize_proprio", "false"],
    "RL term not divided by mean |Q|": ["--learner.normalize_q", "false"],
    "demo hold steps kept (not terminal at success)": [
        "--learner.terminal_on_success",
        "false",
    ],
    "all four off (the previous learner)": [
        "--learner.bc_loss",
        "nll",
        "--network.normalize_proprio",
        "false",
        "--learner.normalize_q",
        "false",
        "--learner.terminal_on_success",
        "false",
    ],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/learner_ablation")
    args = parser.parse_args(argv)

    import torch

    from learner.evaluate import evaluate_policy
    from learner.pretrain import pretrain
    from robofume.config import load_config
    from robofume.config.base import merge, parse_overrides
    from robofume.data import generate_dataset
    from robofume.logs import setup_logging
    from robofume.policy import load_policy

    setup_logging()
    torch.set_num_threads(1)
    out = Path(args.out)
    base = load_config("sim-state", overrides=BASE)
    data = out / "data"
    if not (data / "manifest.json").exists():
        generate_dataset(base, data)
    rows = {}
    for name, overrides in VARIANTS.items():
        learner = ["--learner.steps", str(args.steps), "--learner.seed", str(args.seed)]
        cfg = merge(base, parse_overrides([*learner, *overrides]), "")
        run = out / name.split(" (")[0].replace(" ", "_").replace("|", "").replace("/", "")
        trained = pretrain(cfg, data, run)
        policy = load_policy(trained.checkpoint)
        result = evaluate_policy(cfg, policy, ["vase_forward"], args.episodes)
        rows[name] = {
            "overrides": " ".join(overrides),
            "success": result.success_rate("vase_forward"),
            "episodes": args.episodes,
            "metrics": trained.metrics,
        }
        log.info("%s: vase_forward %.2f", name, rows[name]["success"])
    (out / "ablation.json").write_text(json.dumps(rows, indent=1))
    print("| variant | overrides | vase_forward success |")
    print("|---|---|---|")
    for name, row in rows.items():
        n = round(row["success"] * row["episodes"])
        print(f"| {name} | `{row['overrides'] or '-'}` | {n}/{row['episodes']} |")


if __name__ == "__main__":
    main()
