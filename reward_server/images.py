"""Image tensors for the reward backends: uint8 frames to float, and training augmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_float(images: np.ndarray, size: int, device: str) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,size,size) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def augment(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    strength: float = 1.0,
    tilt: float = 0.0,
) -> torch.Tensor:
    """Training views of float frames (N,3,H,W) in [0, 1], each drawn on its own.

    At ``strength`` 1 the camera moves (shift +-8% of the side, zoom +-8%, roll +-5 degrees,
    border-padded; with ``tilt`` > 0 also the homography of a camera turned towards a flat
    table, one side of the image shrunk by up to ``tilt`` against the other) and the light
    changes (brightness +-0.15, contrast +-25%, a colour cast of
    +-12% per channel); larger ``strength`` scales every range, 0 returns ``x`` unchanged.

    No synthetic clutter: a pasted box can hide the task's object (a "yes" frame nobody could
    answer) or, in the object's colour in the goal, fake a success; scene clutter comes from
    real distractors in the data (measured: benchmarks/reward_robustness.py).
    """
    if strength <= 0:
        return x
    n = x.shape[0]

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1), drawn on the CPU generator
        return (torch.rand(shape, generator=generator) * 2 - 1).to(x.device)

    s = float(strength)
    shift, zoom, roll = uniform(n, 2) * 0.16 * s, 1 + uniform(n) * 0.08 * s, uniform(n) * s
    angle = roll * (5.0 * torch.pi / 180.0)
    theta = torch.zeros((n, 2, 3), device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) / zoom
    theta[:, 0, 1] = -torch.sin(angle) / zoom
    theta[:, 1, 0] = torch.sin(angle) / zoom
    theta[:, :, 2] = shift
    if tilt > 0:
        grid = tilted_grid(theta, uniform(n, 2) * tilt * s, list(x.shape))
    else:  # the same draws as without the option
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    brightness = uniform(n, 1, 1, 1) * 0.15 * s
    contrast = 1.0 + uniform(n, 1, 1, 1) * 0.25 * s
    cast = 1.0 + uniform(n, 3, 1, 1) * 0.12 * s
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * cast + brightness
    return x.clamp(0.0, 1.0)


def tilted_grid(theta: torch.Tensor, tilt: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """Sampling grid (N,H,W,2) of the homography ``theta`` (N,2,3 affine) after ``tilt`` (N,2).

    Output pixel (u, v) in [-1, 1] is read at ``theta @ (u, v, 1) / (1 + tilt . (u, v))``: the
    projective part is what a change of viewpoint adds to a shift, zoom and roll.
    """
    n = theta.shape[0]
    eye = torch.eye(2, 3, device=theta.device).expand(n, 2, 3)
    uv = F.affine_grid(eye, shape, align_corners=False)  # (N,H,W,2)
    w = 1.0 + (uv * tilt[:, None, None, :]).sum(-1, keepdim=True)
    return (uv / w) @ theta[:, None, :, :2].transpose(-1, -2) + theta[:, None, None, :, 2]
