"""Synthetic data for the reward-model tests: a success is a bright square on the task's side.

Task ``vase_forward`` succeeds when a red square sits in the left half of the frame,
``bench_forward`` when it sits in the right half, so a classifier has to read the question.
"""

from __future__ import annotations

import numpy as np

from robofume.types import Episode

SIZE = 32
TASKS = {
    "vase_forward": ("put the vase in the correct bin", "left"),
    "bench_forward": ("put the bench in the correct bin", "right"),
}


def frame(rng: np.random.Generator, side: str | None, big: bool = False) -> np.ndarray:
    """Noisy grey frame; with ``side`` a red square in that half (``big``: the whole half)."""
    img = rng.integers(40, 90, (SIZE, SIZE, 3), dtype=np.uint8)
    if side is not None and big:
        cols = slice(0, SIZE // 2) if side == "left" else slice(SIZE // 2, SIZE)
        img[:, cols] = (230, 30, 30)
    elif side is not None:
        x0 = 3 if side == "left" else SIZE // 2 + 3
        y0 = int(rng.integers(4, SIZE - 14))
        img[y0 : y0 + 10, x0 : x0 + 10] = (230, 30, 30)
    return img


def episode(
    rng: np.random.Generator,
    task: str,
    kind: str,
    steps: int = 8,
    success_at: int | None = None,
    big: bool = False,
) -> Episode:
    """``steps`` transitions; frames from ``success_at`` on show the task's success."""
    language, side = TASKS.get(task, ("do the thing", "left"))
    if success_at is None:
        success_at = steps - 2 if kind in ("target_forward", "target_reset", "prior") else 10**9
    images = np.stack(
        [frame(rng, side if t >= success_at else None, big) for t in range(steps + 1)]
    )
    success = np.array([t + 1 >= success_at for t in range(steps)])
    return Episode(
        images=images,
        proprio=np.zeros((steps + 1, 4), np.float32),
        actions=np.zeros((steps, 4), np.float32),
        rewards=success.astype(np.float32),
        terminals=np.zeros(steps, bool),
        success=success,
        task=task,
        language=language,
        kind=kind,  # type: ignore[arg-type]
    )


def episodes(
    n_target: int = 8, n_failure: int = 4, seed: int = 0, big: bool = False
) -> dict[str, list[Episode]]:
    """Groups as the dataset files hold them: target demos of both tasks, and failures.

    Failures of one task show the other task's success (the square on the wrong side).
    """
    rng = np.random.default_rng(seed)
    names = list(TASKS)
    target = [episode(rng, names[i % 2], "target_forward", big=big) for i in range(n_target)]
    failures = []
    for i in range(n_failure):
        ep = episode(rng, names[i % 2], "failure", big=big)
        other = TASKS[names[(i + 1) % 2]][1]
        ep.images[-3:] = np.stack([frame(rng, other, big) for _ in range(3)])
        failures.append(ep)
    return {"target": target, "failures": failures}
