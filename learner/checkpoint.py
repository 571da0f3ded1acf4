"""Checkpoint files: ``<dir>/ckpt_<step>.pt`` plus a ``latest`` pointer, written atomically.

A checkpoint holds the learner state (networks, optimisers, update counter, RNG), the extra
state of the training loop (sampler RNG, numpy/torch global RNG), the full config, its hash
and the *resume hash*: the hash of everything that changes the numbers of training (the
schedule fields such as ``learner.steps`` or ``eval_every`` are left out, so a run can be
extended or resumed with another step budget).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from robofume.config import ConfigError, ExperimentConfig, config_hash
from robofume.config.base import to_dict

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCHEDULE_FIELDS = (
    "steps",
    "eval_every",
    "eval_episodes",
    "checkpoint_every",
    "checkpoint_keep",
    "log_every",
    "device",
    "compile",
)
ONLINE_ONLY_FIELDS = (
    "utd_ratio",
    "mixing_ratio",
    "bc_on_online",
    "online_calibration",
    "publish_every",
)
"""Learner fields only online fine-tuning reads: offline training's numbers never depend on
them, so offline continuation of a checkpoint may differ in them (as may ``env.online``)."""
REWARD_DATA_FIELDS = ("failure_episodes", "failure_noise", "failure_modes")
"""Data fields of the failure rollouts, which train the reward model only (the learner never
reads ``failures.hdf5``): a policy's training numbers never depend on them."""
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def resume_hash(cfg: ExperimentConfig) -> str:
    """Hash of the config parts that determine training numerics."""
    defaults = type(cfg.learner)()
    schedule = {f: getattr(defaults, f) for f in (*SCHEDULE_FIELDS, *ONLINE_ONLY_FIELDS)}
    cfg = cfg.replace(
        learner=dataclasses.replace(cfg.learner, **schedule),
        data=dataclasses.replace(
            cfg.data, dir="", **{f: getattr(type(cfg.data)(), f) for f in REWARD_DATA_FIELDS}
        ),
        env=dataclasses.replace(cfg.env, online=type(cfg.env.online)()),
    )
    return config_hash(cfg, exclude=("deploy", "reward", "replay", "actor", "name"))


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt_{step}.pt"


def write_checkpoint(
    path: str | Path, cfg: ExperimentConfig, learner_state: dict, extra: dict
) -> Path:
    """Save atomically (temp file + rename) and point ``latest`` at it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format_version": FORMAT_VERSION,
        "learner": learner_state,
        "extra": extra,
        "config": to_dict(cfg),
        "config_hash": cfg.hash,
        "resume_hash": resume_hash(cfg),
        "step": int(learner_state.get("num_updates", 0)),
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(blob, tmp)
    tmp.replace(path)
    latest = path.parent / "latest"
    tmp_latest = path.parent / f".latest.tmp{os.getpid()}"
    tmp_latest.write_text(path.name + "\n")
    tmp_latest.replace(latest)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (or a checkpoint directory: its newest) onto the CPU."""
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path) or latest_checkpoint(path / "checkpoints")
        if newest is None:
            raise FileNotFoundError(f"no checkpoint (ckpt_<step>.pt) under {path}")
        path = newest
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"checkpoint {path} is unreadable: {err}") from err
    if not isinstance(ckpt, dict) or "learner" not in ckpt:
        raise ValueError(f"{path} is not a robofume learner checkpoint")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> ExperimentConfig:
    """The experiment config stored in a checkpoint (fields unknown today are skipped)."""
    from robofume.policy import config_from_checkpoint

    return config_from_checkpoint(ckpt["config"])


def check_compatible(ckpt: dict[str, Any], cfg: ExperimentConfig, path: str | Path) -> None:
    """Refuse to resume a run whose training-relevant config differs from ``cfg``.

    The resume hash is recomputed from the checkpoint's stored config, so checkpoints written
    before a field became irrelevant to training (:data:`ONLINE_ONLY_FIELDS`) still resume.
    """
    saved = checkpoint_config(ckpt)
    if resume_hash(saved) != resume_hash(cfg):
        diffs = _diff(to_dict(saved), to_dict(cfg))
        raise ConfigError(
            f"checkpoint {path} was trained with a different config "
            f"(resume hash {resume_hash(saved)} vs {resume_hash(cfg)}); "
            f"differences: {', '.join(diffs[:8]) or 'unknown'}; use another --out directory"
        )


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    ignored = (*SCHEDULE_FIELDS, *ONLINE_ONLY_FIELDS)
    if a != b and not any(prefix.endswith(f"learner.{f}") for f in ignored):
        if prefix.startswith(
            ("deploy", "reward", "replay", "actor", "name", "data.dir", "env.online")
        ):
            return []
        return [f"{prefix}: {a!r} -> {b!r}"]
    return []


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``ckpt_<step>.pt`` in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint: the ``latest`` pointer when valid, else the highest step."""
    directory = Path(directory)
    pointer = directory / "latest"
    if pointer.exists():
        candidate = directory / pointer.read_text().strip()
        if candidate.exists():
            return candidate
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (keep <= 0: keep all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(directory)[:-keep]:
        try:
            path.unlink()
        except OSError as err:  # pragma: no cover
            log.warning("could not delete old checkpoint %s: %s", path, err)


def load_config_or_fail(path: str | Path) -> ExperimentConfig:
    """Config of the checkpoint at ``path`` with a clear error for non-checkpoints."""
    ckpt = read_checkpoint(path)
    try:
        return checkpoint_config(ckpt)
    except ConfigError as err:
        raise ConfigError(f"checkpoint {path}: stored config does not load: {err}") from err
