"""Loading the offline dataset for pre-training, checked against the config before training."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from robofume.config import ExperimentConfig
from robofume.types import Episode

log = logging.getLogger(__name__)

PRETRAIN_KINDS = ("prior", "target_forward", "target_reset")
"""Episode kinds used for pre-training (failure rollouts are only for the reward model)."""


class DatasetMismatchError(ValueError):
    """The dataset does not fit the config (image size, action/proprio size, task list)."""


def load_pretrain_episodes(cfg: ExperimentConfig, data_dir: str | Path) -> list[Episode]:
    """Prior + target (forward and reset) demos from ``data_dir``, validated against ``cfg``."""
    from robofume.data import DatasetError

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(
            data_dir, "dataset directory does not exist; create it with `robofume generate`"
        )
    parts = _read_dir(data_dir)
    episodes = [ep for key in ("prior", "target") for ep in parts.get(key, [])]
    episodes = [ep for ep in episodes if ep.kind in PRETRAIN_KINDS]
    validate_episodes(cfg, episodes, str(data_dir))
    counts = Counter(ep.kind for ep in episodes)
    log.info(
        "loaded %d episodes (%d transitions) from %s: %s",
        len(episodes),
        sum(len(ep) for ep in episodes),
        data_dir,
        dict(counts),
    )
    return episodes


def _read_dir(data_dir: Path) -> dict[str, list[Episode]]:
    """``load_dataset_dir`` when the data layer provides it, else the two HDF5 files directly."""
    from robofume.data import DatasetError, read_episodes

    try:
        from robofume.data.dataset import load_dataset_dir
    except ImportError:
        load_dataset_dir = None
    if load_dataset_dir is not None:
        return load_dataset_dir(data_dir)
    parts = {}
    for key in ("prior", "target"):
        path = data_dir / f"{key}.hdf5"
        if not path.exists():
            raise DatasetError(path, "missing; create the dataset with `robofume generate`")
        parts[key] = read_episodes(path)
    return parts


def validate_episodes(cfg: ExperimentConfig, episodes: list[Episode], source: str) -> None:
    """Raise DatasetMismatchError naming the first episode that does not fit ``cfg``."""
    from robofume.tasks import task_table

    if not episodes:
        raise DatasetMismatchError(f"{source}: no prior or target episodes to train on")
    known = set(task_table(cfg).names())
    size, adim, pdim = cfg.env.image_size, cfg.env.action_dim, cfg.network.proprio_dim
    for i, ep in enumerate(episodes):
        where = f"{source}: episode {i} (task {ep.task!r}, kind {ep.kind})"
        h, w = ep.images.shape[1:3]
        if (h, w) != (size, size):
            raise DatasetMismatchError(
                f"{where} has {h}x{w} images but env.image_size is {size}; regenerate the "
                f"dataset for this preset or set --env.image_size {h}"
            )
        if ep.actions.shape[1] != adim:
            raise DatasetMismatchError(
                f"{where} has {ep.actions.shape[1]}-d actions but env.action_dim is {adim}"
            )
        if ep.proprio.shape[1] != pdim:
            raise DatasetMismatchError(
                f"{where} has {ep.proprio.shape[1]}-d proprio but network.proprio_dim is {pdim}"
            )
        if ep.task not in known:
            raise DatasetMismatchError(
                f"{where}: task {ep.task!r} is not in the task list ({len(known)} tasks: "
                f"{', '.join(sorted(known)[:6])}, ...)"
            )
    present = {ep.task for ep in episodes if ep.kind == "target_forward"}
    wanted = {f"{obj}_forward" for obj in cfg.data.target_tasks}
    missing = sorted(wanted - present)
    if missing:
        raise DatasetMismatchError(
            f"{source}: no forward demos of target task(s) {missing} named by "
            f"data.target_tasks={list(cfg.data.target_tasks)}"
        )
