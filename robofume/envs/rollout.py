"""Running policies in the tabletop: episodes, success rates and PNG strips of frames.

``run_episodes(env, policy_fn, task, n, max_steps)`` is the one loop every evaluation uses.
``policy_fn(obs, task_name) -> action``; if it has a ``reset()`` method that is called at the
start of every episode. ``policy_from_spec(spec, cfg, env=...)`` turns a ``--policy`` argument into
such a callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robofume.logs import progress

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)

PolicyFn = Callable[[dict, str], np.ndarray]


@dataclass
class EpisodeResult:
    """The outcome of one evaluation episode."""

    success: bool
    """Ground-truth success was reached at some step."""
    steps: int
    """Actions taken (the episode stops at the first success or at ``max_steps``)."""
    first_success_step: int | None
    """1-based step after which the task first succeeded (None: never)."""
    frames: np.ndarray | None
    """uint8 (steps+1, H, W, 3) camera frames, when kept."""
    seed: int | None
    """Seed the episode's reset used."""


def run_episodes(
    env,
    policy_fn: PolicyFn,
    task: str,
    n: int,
    max_steps: int,
    *,
    seed: int | None = None,
    keep_frames: bool | str = True,
    stop_on_success: bool = True,
    show_progress: bool = False,
) -> list[EpisodeResult]:
    """Run ``n`` episodes of ``task``: reset, then act until success or ``max_steps``.

    Episode i resets with seed ``seed + i`` (or unseeded when ``seed`` is None).
    ``keep_frames``: True keeps every episode's frames, ``"first"`` only the first episode's,
    False none.
    """
    if n < 1 or max_steps < 1:
        raise ValueError(f"need n >= 1 and max_steps >= 1, got n={n}, max_steps={max_steps}")
    results: list[EpisodeResult] = []
    episodes = range(n)
    if show_progress:
        episodes = progress(episodes, desc=f"rollout {task}", unit="ep")
    for i in episodes:
        ep_seed = None if seed is None else seed + i
        obs, info = env.reset(seed=ep_seed, options={"task": task})
        reset = getattr(policy_fn, "reset", None)
        if callable(reset):
            reset()
        keep = keep_frames is True or (keep_frames == "first" and i == 0)
        frames = [obs["image"]] if keep else []
        first = None
        steps = 0
        for t in range(max_steps):
            obs, _, _, _, info = env.step(policy_fn(obs, task))
            steps = t + 1
            if keep:
                frames.append(obs["image"])
            if info["success"] and first is None:
                first = steps
                if stop_on_success:
                    break
        results.append(
            EpisodeResult(
                success=first is not None,
                steps=steps,
                first_success_step=first,
                frames=np.stack(frames) if keep else None,
                seed=ep_seed,
            )
        )
    return results


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Success rate and step counts of a list of episodes (JSON-friendly)."""
    n = len(results)
    wins = sum(r.success for r in results)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "mean_steps": float(np.mean([r.steps for r in results])) if n else 0.0,
        "per_episode": [{"seed": r.seed, "success": r.success, "steps": r.steps} for r in results],
    }


def save_strip(
    frames: np.ndarray, path: str | Path, max_frames: int = 12, min_size: int = 96
) -> Path:
    """Write frames side by side as one PNG, each labelled with its step number.

    At most ``max_frames`` evenly spaced frames (always the first and the last); frames
    smaller than ``min_size`` are enlarged (nearest neighbour) so the labels stay readable.
    """
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    count = min(max_frames, len(frames))
    idx = np.unique(np.linspace(0, len(frames) - 1, count).round().astype(int))
    h, w = frames.shape[1:3]
    scale = max(1, -(-min_size // min(h, w)))
    fh, fw, band = h * scale, w * scale, 14
    strip = Image.new("RGB", (len(idx) * fw, fh + band), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for k, i in enumerate(idx):
        img = Image.fromarray(frames[i]).resize((fw, fh), Image.NEAREST)
        strip.paste(img, (k * fw, band))
        draw.text((k * fw + 3, 1), f"t={i}", fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)
    return path


def policy_from_spec(
    spec: str,
    cfg: ExperimentConfig,
    *,
    env=None,
    noise: float | None = None,
    seed: int | None = None,
) -> PolicyFn:
    """The policy named by ``spec`` as a ``policy_fn(obs, task_name) -> action``.

    ``"expert"``: the scripted expert on ``env`` with ``noise`` (default
    ``cfg.data.expert_noise``). Anything else is rejected with the list of known policies.
    """
    if spec == "expert":
        if env is None:
            raise ValueError(
                "the expert policy needs the environment (policy_from_spec(..., env=env))"
            )
        from robofume.envs.expert import ScriptedExpert

        return ScriptedExpert(
            env,
            noise=cfg.data.expert_noise if noise is None else noise,
            seed=cfg.seed if seed is None else seed,
        )
    if spec.endswith(".pt") or Path(spec).is_dir():
        return _checkpoint_policy(spec, cfg)
    raise ValueError(
        f"{spec!r} is not a known policy; known policies: expert, or a learner checkpoint "
        "(ckpt_<step>.pt or its run directory)"
    )


def _checkpoint_policy(spec: str, cfg: ExperimentConfig) -> PolicyFn:
    """A learner checkpoint as a deterministic policy_fn (robofume.policy.load_policy)."""
    from robofume.policy import load_policy as load_checkpoint

    try:
        policy = load_checkpoint(spec)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err
    size = policy.cfg.env.image_size
    if size != cfg.env.image_size:
        raise ValueError(
            f"checkpoint {spec} was trained on {size}x{size} images; "
            f"run with --env.image_size {size} (or its preset)"
        )

    def act(obs: dict, task_name: str) -> np.ndarray:
        return policy.act(obs, task_name, deterministic=True)

    return act
