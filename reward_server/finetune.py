"""Fine-tuning a reward model into a success classifier, and tuning its decision threshold.

``finetune(cfg, data_dir, out_dir)`` = label the demos and failures, split by episode into
train / validation / held-out, train with a weighted binary cross-entropy on the yes-vs-no
log-odds (negatives weighted by ``negative_weight``; batches hold ``positive_fraction``
yes-examples), choose the threshold that keeps the validation false-positive rate at
``target_fpr``, measure FP/FN/accuracy/precision on the held-out episodes (untouched by both
training and tuning) and save a checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from reward_server.backends import make_reward_model
from reward_server.dataset import (
    ClassifierData,
    load_classifier_data,
    near_success,
    split_three,
    with_hard_negatives,
)
from reward_server.model import RewardModel
from reward_server.thresholds import choose_threshold, classification_metrics
from robofume import metrics as tags
from robofume.config.reward import RewardConfig
from robofume.logs import progress

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FinetuneResult:
    model: RewardModel
    checkpoint: Path | None
    heldout: dict[str, Any]
    """Held-out metrics at the chosen threshold (paper Table II)."""
    train_seconds: float


def sample_batch(
    labels: np.ndarray,
    batch_size: int,
    positive_fraction: float,
    rng: np.random.Generator,
    hard: np.ndarray | None = None,
) -> np.ndarray:
    """Row indices: ``positive_fraction`` of the batch from "yes" rows, the rest from "no";
    with ``hard`` (bool per row), as many of the "no" rows from the hard ones as "yes" rows."""
    pos = np.flatnonzero(labels > 0.5)
    neg = np.flatnonzero(labels <= 0.5)
    hard_rows = np.flatnonzero(hard & (labels <= 0.5)) if hard is not None else neg[:0]
    n_pos = round(batch_size * positive_fraction) if len(pos) else 0
    n_pos = batch_size if not len(neg) else n_pos
    n_hard = min(n_pos, batch_size - n_pos) if len(hard_rows) else 0
    idx = []
    if n_pos:
        idx.append(rng.choice(pos, n_pos, replace=len(pos) < n_pos))
    if n_hard:
        idx.append(rng.choice(hard_rows, n_hard, replace=len(hard_rows) < n_hard))
    rest = batch_size - n_pos - n_hard
    if rest:
        idx.append(rng.choice(neg, rest, replace=len(neg) < rest))
    return np.concatenate(idx)


def train_model(
    model: RewardModel,
    train: ClassifierData,
    cfg: RewardConfig,
    steps: int,
    writer: Any = None,
) -> list[float]:
    """Run ``steps`` optimiser steps on ``train``; return the loss curve (every step)."""
    import torch

    if len(train) == 0:
        raise ValueError("no training frames")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    model.prepare_training(train)
    params = model.trainable_parameters()
    if not params:
        raise ValueError(f"{model.backend} model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    losses: list[float] = []
    labels_all = torch.from_numpy(train.labels)
    hard = near_success(train, cfg.near_success_frames)
    extra = torch.from_numpy(np.where(hard, cfg.near_success_weight, 1.0).astype(np.float32))
    bar = progress(range(steps), desc=f"fine-tune {model.backend}", unit="step")
    for step in bar:
        idx = sample_batch(train.labels, cfg.batch_size, cfg.positive_fraction, rng, hard)
        logits = model.train_logits(idx, train, cfg.augment).float()
        labels = labels_all[idx].to(logits.device)
        weights = torch.where(labels > 0.5, 1.0, cfg.negative_weight) * extra[idx].to(labels)
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels, weight=weights, reduction="sum"
            )
            / weights.sum()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % max(1, cfg.log_every) == 0 or step + 1 == steps:
            recent = float(np.mean(losses[-cfg.log_every :]))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{recent:.4f}")
            if writer is not None:
                writer.add_scalar(tags.REWARD_TRAIN_LOSS, recent, step + 1)
    model.finish_training()
    return losses


def tune_threshold(model: RewardModel, heldout: ClassifierData, cfg: RewardConfig) -> np.ndarray:
    """Score ``heldout``, set ``model.threshold`` for ``cfg.target_fpr`` on the "no" frames
    of every episode kind (the highest kind's threshold; not below ``cfg.min_threshold``);
    return the probs."""
    probs = model.score(heldout.images, heldout.questions)
    neg, kinds = heldout.labels <= 0.5, heldout.kinds()
    per_kind = {
        str(k): choose_threshold(probs[neg & (kinds == k)], cfg.target_fpr, cfg.threshold)
        for k in sorted(set(kinds[neg].tolist()))
    }
    tuned = max(per_kind.values(), default=cfg.threshold)
    log.info("thresholds for FPR %.3f per kind: %s", cfg.target_fpr,
             ", ".join(f"{k} {v:.4f}" for k, v in per_kind.items()))  # fmt: skip
    if tuned < cfg.min_threshold:
        log.info("tuned threshold %.4f raised to min_threshold %.2f", tuned, cfg.min_threshold)
    model.threshold = max(tuned, cfg.min_threshold)
    return probs


def finetune_data(
    data: ClassifierData,
    cfg: RewardConfig,
    out_dir: str | Path | None,
    steps: int | None = None,
    device: str = "auto",
    tb_dir: str | Path | None = None,
    model: RewardModel | None = None,
    meta: dict[str, Any] | None = None,
) -> FinetuneResult:
    """Split ``data`` by episode, fine-tune, tune the threshold on the validation episodes,
    measure on the held-out ones, save to ``out_dir``."""
    steps = cfg.steps if steps is None else steps
    train_ids, val_ids, held_ids = split_three(
        data, cfg.val_fraction, cfg.heldout_fraction, cfg.seed
    )
    train, val, held = (data.for_episodes(i) for i in (train_ids, val_ids, held_ids))
    if cfg.hard_negatives:  # training and the threshold; held-out keeps the labelling rule
        train, val = with_hard_negatives(train), with_hard_negatives(val)
    log.info("train %s, validation %s, held-out %s", train.summary(), val.summary(), held.summary())
    if len(held) == 0:
        log.warning("no held-out episodes: measuring on the training frames")
        held = train
    if len(val) == 0:
        log.warning("no validation episodes: the threshold is tuned on the held-out ones")
        val = held
    model = model or make_reward_model(cfg, device)
    model.questions = data.task_questions
    writer = None
    if tb_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tb_dir))
    start = time.perf_counter()
    losses = train_model(model, train, cfg, steps, writer)
    seconds = time.perf_counter() - start
    val_probs = tune_threshold(model, val, cfg)
    probs = val_probs if held is val else model.score(held.images, held.questions)
    report = classification_metrics(probs, held.labels, model.threshold)
    report.update(frames=len(held), episodes=len(held_ids), target_fpr=cfg.target_fpr)
    report["validation"] = classification_metrics(val_probs, val.labels, model.threshold)
    log.info(
        "held-out at threshold %.4f: FPR %s FNR %s accuracy %s precision %s",
        model.threshold,
        _fmt(report["false_positive_rate"]),
        _fmt(report["false_negative_rate"]),
        _fmt(report["accuracy"]),
        _fmt(report["precision"]),
    )
    if writer is not None:
        for key, tag in (
            ("false_positive_rate", tags.HELD_OUT_FALSE_POSITIVE_RATE),
            ("false_negative_rate", tags.HELD_OUT_FALSE_NEGATIVE_RATE),
            ("accuracy", tags.REWARD_ACCURACY),
            ("precision", tags.REWARD_PRECISION),
        ):
            if report[key] is not None:
                writer.add_scalar(tag, report[key], steps)
        writer.close()
    checkpoint = None
    if out_dir is not None:
        info = {
            "heldout_episodes": held_ids,
            "validation_episodes": val_ids,
            "train_episodes": train_ids,
            "heldout_metrics": report,
            "steps": steps,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "train_seconds": seconds,
            "created": time.time(),
        }
        info.update(meta or {})
        checkpoint = model.save(out_dir, meta=info)
    return FinetuneResult(model, checkpoint, report, seconds)


def finetune(
    cfg: RewardConfig,
    data_dir: str | Path,
    out_dir: str | Path | None,
    steps: int | None = None,
    device: str = "auto",
    tb_dir: str | Path | None = None,
) -> FinetuneResult:
    """``robofume reward finetune``: the whole recipe from a dataset directory."""
    data = load_classifier_data(data_dir, cfg)
    return finetune_data(
        data, cfg, out_dir, steps, device, tb_dir, meta={"data_dir": str(Path(data_dir).resolve())}
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
