"""Decision thresholds for a target false-positive rate, and the paper's Table II metrics."""

from __future__ import annotations

import math

import numpy as np


def choose_threshold(neg_probs: np.ndarray, target_fpr: float, default: float = 0.5) -> float:
    """The lowest threshold whose false-positive rate on ``neg_probs`` is <= ``target_fpr``.

    A frame is "yes" when ``P(yes) >= threshold``. With n negatives, k = floor(target_fpr * n)
    of them may be false positives, so the threshold sits just above the (k+1)-th highest
    negative score (ties fall below it, so the rate can only be lower). Without negatives the
    ``default`` stays.
    """
    # float32 throughout: scores are float32, and numpy compares a float32 array with a Python
    # float in float32, so a float64 "just above" would round back onto the negative score
    neg = np.sort(np.asarray(neg_probs, dtype=np.float32).ravel())[::-1]
    if neg.size == 0:
        return float(default)
    allowed = math.floor(target_fpr * neg.size + 1e-9)
    if allowed >= neg.size:
        return 0.0
    return float(min(np.nextafter(neg[allowed], np.float32(np.inf)), np.float32(1.0)))


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, float | int | None]:
    """FP rate, FN rate, accuracy and precision of ``probs >= threshold`` against ``labels``.

    Rates whose denominator is zero are None (e.g. precision when nothing is called "yes").
    """
    pred = np.asarray(probs, np.float32) >= np.float32(threshold)
    truth = np.asarray(labels) > 0.5
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    tn = int(np.sum(~pred & ~truth))
    fn = int(np.sum(~pred & truth))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "false_positive_rate": ratio(fp, fp + tn),
        "false_negative_rate": ratio(fn, fn + tp),
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision": ratio(tp, tp + fp),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
    }
