"""``robofume reward evaluate``: the paper's Table II on held-out episodes, plus a mistake panel.

Reported at the checkpoint's tuned threshold: false-positive rate, false-negative rate,
accuracy and precision against the labelling rule (last frames of demos = yes), the same
against the simulator's ground-truth success flags when the data has them, the
false-positive rate per episode kind, and the threshold this data would need for the target
false-positive rate. The panel shows the most confident mistakes with P(yes) and question.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from reward_server.dataset import ClassifierData, load_classifier_data
from reward_server.model import RewardModel
from reward_server.thresholds import choose_threshold, classification_metrics
from robofume.logs import progress

log = logging.getLogger(__name__)


def select_split(model: RewardModel, data: ClassifierData, data_dir: str | Path, split: str):
    """The rows to evaluate: held-out episodes of the training data, or everything."""
    held = model.meta.get("heldout_episodes") or []
    same_data = str(Path(data_dir).resolve()) == model.meta.get("data_dir")
    if split == "auto":
        split = "heldout" if held and same_data else "all"
    if split == "heldout":
        if not held:
            raise ValueError("the checkpoint records no held-out episodes; use --split all")
        subset = data.for_episodes(held)
        if len(subset) == 0:
            raise ValueError(f"none of the checkpoint's held-out episodes are in {data_dir}")
        return subset, "heldout"
    return data, "all"


def score_all(model: RewardModel, data: ClassifierData, chunk: int = 256) -> np.ndarray:
    out = []
    for i in progress(range(0, len(data), chunk), desc="scoring", unit="chunk"):
        out.append(model.score(data.images[i : i + chunk], data.questions[i : i + chunk]))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def evaluate_data(model: RewardModel, data: ClassifierData, probs: np.ndarray) -> dict[str, Any]:
    """Metrics of ``probs`` (scores of ``data``) at the model's threshold."""
    report: dict[str, Any] = {
        "model_version": model.version,
        "backend": model.backend,
        "threshold": model.threshold,
        "frames": len(data),
        "episodes": len(set(data.episode.tolist())),
        "labels": classification_metrics(probs, data.labels, model.threshold),
    }
    if data.success.any():
        report["simulator"] = classification_metrics(probs, data.success, model.threshold)
    kinds = data.kinds()
    neg = data.labels <= 0.5
    report["false_positive_rate_by_kind"] = {
        str(k): float(np.mean(model.decide(probs[neg & (kinds == k)])))
        for k in sorted(set(kinds[neg].tolist()))
    }
    target = model.cfg.target_fpr
    report["target_fpr"] = target
    report["threshold_for_target_fpr_here"] = choose_threshold(probs[neg], target, model.threshold)
    return report


def mistake_panel(
    data: ClassifierData,
    probs: np.ndarray,
    threshold: float,
    path: str | Path,
    k: int = 12,
) -> Path:
    """A PNG grid of the ``k`` most confident mistakes (half false positives, half FN)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neg = np.flatnonzero(data.labels <= 0.5)
    pos = np.flatnonzero(data.labels > 0.5)
    fps = neg[np.argsort(-probs[neg])][: k // 2]  # highest P(yes) among "no" frames
    fns = pos[np.argsort(probs[pos])][: k - len(fps)]  # lowest P(yes) among "yes" frames
    rows = [(i, "false yes" if probs[i] >= threshold else "near-miss no") for i in fps]
    rows += [(i, "false no" if probs[i] < threshold else "weak yes") for i in fns]
    cols = 4
    nrows = max(1, -(-len(rows) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (i, what) in zip(axes.ravel(), rows, strict=False):
        ax.imshow(data.images[i])
        ep = data.episode_ids[data.episode[i]]
        title = f"{what}: P(yes)={probs[i]:.3f}\n{ep} frame {data.frame[i]}\n"
        title += "\n".join(textwrap.wrap(data.questions[i], 38)[:3])
        ax.set_title(title, fontsize=7)
    fig.suptitle(f"most confident mistakes (threshold {threshold:.4f})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(
    model: RewardModel,
    data_dir: str | Path,
    split: str = "auto",
    panel: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data_dir`` (held-out episodes when it was trained on it)."""
    data = load_classifier_data(data_dir, model.cfg, questions=model.questions)
    data, used = select_split(model, data, data_dir, split)
    probs = score_all(model, data)
    report = evaluate_data(model, data, probs)
    report.update(split=used, data_dir=str(data_dir))
    if panel is not None:
        report["panel"] = str(mistake_panel(data, probs, model.threshold, panel))
    return report
