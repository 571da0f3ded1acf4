"""Dataset directories: ``prior.hdf5``, ``target.hdf5``, ``failures.hdf5`` and ``manifest.json``.

The manifest is written last by ``robofume generate``, so a directory with a manifest and the
three files is complete.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from robofume.config import ExperimentConfig
from robofume.data.errors import DatasetError
from robofume.data.hdf5 import read_episodes
from robofume.data.returns import with_mc_returns
from robofume.types import Episode

log = logging.getLogger(__name__)

PARTS = ("prior", "target", "failures")
"""Keys of :func:`load_dataset_dir`'s result; each is stored as ``<key>.hdf5``."""


def _missing(path: Path) -> list[str]:
    names = [f"{p}.hdf5" for p in PARTS] + ["manifest.json"]
    return [n for n in names if not (path / n).is_file()]


def dataset_exists(path: str | Path) -> bool:
    """Whether ``path`` holds a complete generated dataset."""
    path = Path(path)
    return path.is_dir() and not _missing(path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a dataset directory (DatasetError when absent or unreadable)."""
    file = Path(path) / "manifest.json"
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise DatasetError(str(file), "missing; the dataset is incomplete") from None
    except (OSError, ValueError) as err:
        raise DatasetError(str(file), f"unreadable: {err}") from None


def load_dataset_dir(
    path: str | Path, discount: float | None = None, preset: str = "sim-cpu"
) -> dict[str, list[Episode]]:
    """Load every episode of a dataset directory: ``{"prior", "target", "failures"}``.

    With ``discount`` the episodes get Monte-Carlo returns (:func:`~robofume.data.mc_returns`).
    """
    path = Path(path)
    missing = _missing(path) if path.is_dir() else ["the directory itself"]
    if missing:
        raise DatasetError(
            str(path),
            f"no dataset here (missing {', '.join(missing)}); run "
            f"`robofume generate --preset {preset} --out {path}` first",
        )
    out = {part: read_episodes(path / f"{part}.hdf5") for part in PARTS}
    if discount is not None:
        for episodes in out.values():
            for episode in episodes:
                with_mc_returns(episode, discount)
    return out


def ensure_dataset(cfg: ExperimentConfig, out_dir: str | Path | None = None) -> Path:
    """Return the dataset directory of ``cfg``, generating it first if absent or stale.

    Stale means the manifest's config hash (env + data sections) differs from ``cfg``'s.
    """
    from robofume.data.generate import data_hash, generate_dataset

    path = Path(out_dir or cfg.data.dir)
    if dataset_exists(path):
        have = read_manifest(path).get("config_hash")
        if have == data_hash(cfg):
            log.info("dataset %s is up to date (config %s)", path, have)
            return path
        log.warning(
            "dataset %s was generated with config %s, not %s: regenerating",
            path,
            have,
            data_hash(cfg),
        )
    return generate_dataset(cfg, path)
