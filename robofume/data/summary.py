"""Look at datasets: a summary table (``robofume inspect``) and frame strips/GIFs (``render``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robofume.data.errors import DatasetError
from robofume.data.hdf5 import EpisodeFile

DATASET_FILES = ("prior.hdf5", "target.hdf5", "failures.hdf5")


def summarize(path: str | Path) -> dict[str, Any]:
    """Summary of one episode file, or of every file of a dataset directory."""
    path = Path(path)
    if path.is_dir():
        files = [path / name for name in DATASET_FILES if (path / name).exists()]
        if not files:
            raise DatasetError(str(path), f"no dataset files ({', '.join(DATASET_FILES)}) here")
        out: dict[str, Any] = {"dir": str(path), "files": {}}
        for file in files:
            out["files"][file.stem] = summarize(file)
        manifest = path / "manifest.json"
        if manifest.exists():
            out["manifest"] = json.loads(manifest.read_text())
        return out
    with EpisodeFile(path) as f:
        return f.summary()


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable table of :func:`summarize`'s output."""
    if "files" in summary:
        parts = [f"dataset {summary['dir']}"]
        parts += [format_summary(s) for s in summary["files"].values()]
        return "\n\n".join(parts)
    shape = "x".join(str(s) for s in summary["image_shape"] or []) or "-"
    lines = [
        f"{summary['file']}: {summary['episodes']} episodes, {summary['steps']} steps "
        f"(min/mean/max {summary['min_steps']}/{summary['mean_steps']:.1f}/"
        f"{summary['max_steps']}), images {shape}, action dim {summary['action_dim']}, "
        f"success at end {summary['success_rate']:.0%}, {summary['size_mb']:.1f} MB",
        f"  {'task':<40} {'kind':<28} {'episodes':>8} {'steps':>7} {'success':>8}",
    ]
    for task, entry in sorted(summary["tasks"].items()):
        kinds = ",".join(f"{k}:{v}" for k, v in sorted(entry["kinds"].items()))
        lines.append(
            f"  {task:<40} {kinds:<28} {entry['episodes']:>8} {entry['steps']:>7} "
            f"{entry['success_rate']:>8.0%}"
        )
    return "\n".join(lines)


def _pick_frames(n_frames: int, max_frames: int) -> list[int]:
    if n_frames <= max_frames:
        return list(range(n_frames))
    return sorted({round(float(i)) for i in np.linspace(0, n_frames - 1, max_frames)})


def frame_strip(
    frames: np.ndarray, success: np.ndarray | None = None, border: int = 2
) -> np.ndarray:
    """Frames side by side with a border: green under success frames, grey otherwise."""
    h, w = frames.shape[1:3]
    out = np.full((h + 2 * border, len(frames) * (w + border) + border, 3), 40, np.uint8)
    for i, frame in enumerate(frames):
        x = border + i * (w + border)
        if success is not None and success[i]:
            out[:, x - border : x + w + border] = (40, 200, 40)
        out[border : border + h, x : x + w] = frame
    return out


def render_episode(
    path: str | Path,
    index: int,
    out: str | Path | None = None,
    gif: bool = False,
    max_frames: int = 16,
    scale: int = 1,
    fps: float = 5.0,
) -> Path:
    """Write episode ``index`` of ``path`` as a PNG strip (or an animated GIF); returns its path.

    In the strip a green border marks frames where the ground truth says success (frame 0 is
    the initial observation; frame t+1 has the success flag of step t).
    """
    import imageio.v2 as imageio

    path = Path(path)
    with EpisodeFile(path) as f:
        if not -len(f) <= index < len(f):
            raise DatasetError(str(path), f"episode index {index} out of range (0..{len(f) - 1})")
        episode = f[index]
    frames = episode.images
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    success = np.concatenate([[False], episode.success])
    suffix = ".gif" if gif else ".png"
    out = Path(out) if out else Path(f"{path.stem}_episode{index}{suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if gif:
        imageio.mimsave(out, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
    else:
        keep = _pick_frames(len(frames), max_frames)
        imageio.imwrite(out, frame_strip(frames[keep], success[keep]), format="PNG")
    return out
