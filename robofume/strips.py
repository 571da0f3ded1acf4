"""Episode strips: a few frames of an episode with what the reward model said about each.

Each tile is one camera frame with a bar under it: its height is the reward model's P(success)
(blue), the white tick the decision threshold when it is known. The tile's frame colour says how the
decision compares with the simulator's ground truth, when there is one:

* green: predicted success, truly a success (or predicted, when there is no ground truth);
* red: predicted success, not a success (a false positive, the mistake the policy exploits);
* orange: a true success the model missed (a false negative);
* grey: no success, none predicted (or no ground truth).

The last frame of the episode is always shown, so a strip tells at a glance whether the
episode ended on a real success.
"""

from __future__ import annotations

import numpy as np

GREEN = (40, 200, 60)
RED = (230, 40, 40)
ORANGE = (250, 150, 20)
GREY = (90, 90, 90)
BLUE = (60, 120, 240)


def pick_frames(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)``, the first and last included."""
    if n_total <= n:
        return list(range(n_total))
    return sorted({round(i * (n_total - 1) / (n - 1)) for i in range(n)})


def _tile(image: np.ndarray, prob: float, threshold: float | None, colour: tuple, scale: int):
    img = np.repeat(np.repeat(np.asarray(image, np.uint8), scale, 0), scale, 1)
    h, w, _ = img.shape
    border = max(2, h // 24)
    bar_h = max(6, h // 5)
    tile = np.zeros((h + 2 * border + bar_h, w + 2 * border, 3), np.uint8)
    tile[: h + 2 * border] = colour
    tile[border : border + h, border : border + w] = img
    bar = tile[h + 2 * border :]
    bar[:] = 20
    if np.isfinite(prob):
        fill = round(float(np.clip(prob, 0.0, 1.0)) * bar.shape[1])
        bar[:, :fill] = BLUE
    if threshold is not None:
        tick = round(float(np.clip(threshold, 0.0, 1.0)) * (bar.shape[1] - 1))
        bar[:, tick] = 255
    return tile


def _colour(said: bool, true: bool | None) -> tuple[int, int, int]:
    if said:
        return RED if true is False else GREEN
    return ORANGE if true else GREY


def episode_strip(
    images: np.ndarray,
    probs: np.ndarray,
    decisions: np.ndarray,
    ground_truth: np.ndarray | None = None,
    threshold: float | None = None,
    frames: int = 8,
) -> np.ndarray:
    """uint8 (H, W, 3): ``frames`` tiles of an episode.

    ``images`` holds obs 0..T (T+1 frames); ``probs``, ``decisions`` and ``ground_truth``
    describe obs 1..T (one per transition), so tile i of obs t>0 uses entry t-1; obs 0 has no
    label (an empty bar).
    """
    images = np.asarray(images)
    probs = np.asarray(probs, np.float32)
    decisions = np.asarray(decisions, np.float32)
    if len(images) != len(probs) + 1 or len(decisions) != len(probs):
        raise ValueError(
            f"episode strip: {len(images)} frames need {len(images) - 1} labels, got "
            f"{len(probs)} probabilities and {len(decisions)} decisions"
        )
    gt = None if ground_truth is None else np.asarray(ground_truth, bool)
    scale = max(1, 64 // max(1, images.shape[1]))
    tiles = []
    for t in pick_frames(len(images), frames):
        if t == 0:
            tiles.append(_tile(images[0], float("nan"), threshold, GREY, scale))
            continue
        said = decisions[t - 1] == 1.0
        true = bool(gt[t - 1]) if gt is not None else None
        colour = _colour(said, true)
        tiles.append(_tile(images[t], probs[t - 1], threshold, colour, scale))
    gap = np.full((tiles[0].shape[0], 2, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        row += [tile, gap]
    return np.concatenate(row[:-1], axis=1)
