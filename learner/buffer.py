"""Offline transitions held on the learner's device, sampled as batch dicts.

Batch dict (same keys as the online replay sampler; tensors on the learner device):
``image`` uint8 (B, H, W, 3), ``proprio`` f32 (B, P), ``task`` int64 (B,), ``action`` f32 (B, A),
``reward`` f32 (B,), ``terminal`` f32 (B,), ``next_image`` uint8, ``next_proprio`` f32,
``mc_return`` f32 (B,). Images stay uint8 until the encoder.

Each frame is stored once; a transition holds the index of its observation frame, and the
next observation is the following frame of the same episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from robofume.data import mc_returns
from robofume.types import BATCH_KEYS, Episode, split_sizes

TARGET_KINDS = ("target_forward", "target_reset")


class OfflineBuffer:
    """All offline transitions in memory (on the GPU when the learner runs there)."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        discount: float,
        device: str | torch.device = "cpu",
        seed: int = 0,
        target_fraction: float = 0.0,
        task_index: Callable[[str], int] | None = None,
        terminal_on_success: bool = False,
    ):
        if not episodes:
            raise ValueError("OfflineBuffer needs at least one episode")
        if not 0.0 <= target_fraction <= 1.0:
            raise ValueError(f"target_fraction must be in [0, 1], got {target_fraction}")
        if task_index is None:
            from robofume.tasks import task_index
        self.device = torch.device(device)
        frames, proprio, obs_index, actions, rewards, terminals, returns, tasks, is_target = (
            [] for _ in range(9)
        )
        offset = 0
        for ep in episodes:
            t = len(ep)
            if t == 0:
                continue
            frames.append(ep.images)
            proprio.append(ep.proprio)
            obs_index.append(offset + np.arange(t))
            actions.append(ep.actions)
            rewards.append(ep.rewards)
            # terminal_on_success: the online convention (an episode ends at its success)
            done = ep.terminals | (ep.rewards > 0) if terminal_on_success else ep.terminals
            terminals.append(done)
            returns.append(mc_returns(ep.rewards, done, discount))
            tasks.append(np.full(t, task_index(ep.task), np.int64))
            is_target.append(np.full(t, ep.kind in TARGET_KINDS))
            offset += t + 1
        dev = self.device

        def put(arrays: list[np.ndarray], dtype: np.dtype) -> torch.Tensor:
            return torch.from_numpy(np.concatenate(arrays).astype(dtype, copy=False)).to(dev)

        self.images = put(frames, np.uint8)  # (F, H, W, 3)
        self.proprio = put(proprio, np.float32)  # (F, P)
        self.obs_index = put(obs_index, np.int64)  # (T,)
        self.actions = put(actions, np.float32)
        self.rewards = put(rewards, np.float32)
        self.terminals = put(terminals, np.float32)
        self.mc_returns = put(returns, np.float32)
        self.tasks = put(tasks, np.int64)
        target_mask = np.concatenate(is_target)
        self.target_ids = torch.from_numpy(np.flatnonzero(target_mask)).to(dev)
        self.target_fraction = target_fraction if len(self.target_ids) else 0.0
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def nbytes(self) -> int:
        tensors = (self.images, self.proprio, self.obs_index, self.actions, self.mc_returns)
        return sum(t.numel() * t.element_size() for t in tensors)

    def proprio_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of every stored proprio frame (see ``networks.proprio_statistics``)."""
        from robofume.networks import proprio_statistics

        return proprio_statistics(self.proprio)

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        """(B,) transition indices: uniform, with ``target_fraction`` of them from target demos."""
        gen, dev = self.generator, self.device
        idx = torch.randint(0, len(self), (batch_size,), generator=gen, device=dev)
        n_target = round(batch_size * self.target_fraction)
        if n_target:
            pick = torch.randint(0, len(self.target_ids), (n_target,), generator=gen, device=dev)
            idx[:n_target] = self.target_ids[pick]
        return idx

    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch dict of the transitions ``idx``."""
        frame = self.obs_index[idx]
        return {
            "image": self.images[frame],
            "proprio": self.proprio[frame],
            "task": self.tasks[idx],
            "action": self.actions[idx],
            "reward": self.rewards[idx],
            "terminal": self.terminals[idx],
            "next_image": self.images[frame + 1],
            "next_proprio": self.proprio[frame + 1],
            "mc_return": self.mc_returns[idx],
        }

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A random batch dict of ``batch_size`` transitions, on the buffer's device."""
        return self.gather(self.sample_indices(batch_size))

    def state_dict(self) -> dict:
        """Sampler state (the data itself is reloaded from the dataset)."""
        return {"generator": self.generator.get_state(), "size": len(self)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size", len(self)) != len(self):
            raise ValueError(
                f"checkpoint sampler was built on {state['size']} transitions, "
                f"this dataset has {len(self)}: not the same data"
            )
        self.generator.set_state(state["generator"])


def mix_batches(
    first: dict[str, torch.Tensor],
    second: dict[str, torch.Tensor],
    ratio: float,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Concatenate ``round(ratio * B)`` rows of ``first`` with ``B - that`` rows of ``second``.

    Typical online use: ``mix_batches(offline.sample(n1), online_batch, 0.5)`` with the two
    sizes from ``split_sizes``. B defaults to the size of ``first`` plus ``second`` capped to
    what the ratio allows. Both batches must have the contract keys on the same device.
    """
    missing = [k for k in BATCH_KEYS if k not in first or k not in second]
    if missing:
        raise KeyError(f"mix_batches: batches lack keys {missing}")
    n1_avail, n2_avail = len(first["action"]), len(second["action"])
    if batch_size is None:
        batch_size = n1_avail + n2_avail
    n1, n2 = split_sizes(batch_size, ratio)
    if n1 > n1_avail or n2 > n2_avail:
        raise ValueError(
            f"mix_batches: need {n1} + {n2} rows for batch {batch_size} at ratio {ratio}, "
            f"got {n1_avail} + {n2_avail}"
        )
    out = {}
    for key in BATCH_KEYS:
        a, b = first[key][:n1], second[key][:n2]
        if b.device != a.device:
            b = b.to(a.device, non_blocking=True)
        out[key] = torch.cat([a, b.to(a.dtype)], 0)
    return out
