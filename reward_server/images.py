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


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shifts (+-6% of the side, border-padded) and brightness/contrast jitter."""
    n = x.shape[0]
    rand = torch.rand((n, 4), generator=generator, device="cpu").to(x.device)
    shift = (rand[:, :2] - 0.5) * 0.12  # in units of half the image side
    theta = torch.zeros((n, 2, 3), device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    brightness = (rand[:, 2] - 0.5) * 0.2
    contrast = 1.0 + (rand[:, 3] - 0.5) * 0.2
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]
    return x.clamp_(0.0, 1.0)
