"""What the `embedded` and `cnn` backends share: image features + question embedding -> FiLM
fusion head -> log-odds of "yes".

The question is embedded with ``robofume.text.make_text_encoder(cfg.text_encoder)`` (MiniLM,
frozen, one embedding per distinct question; or the model-free ``hash`` embedding) and fused
with the image feature map by FiLM; an MLP gives the log-odds. A backend subclasses
:class:`FusionRewardModel` and supplies the image encoder (``make_encoder``, ``features``) and
which of its weights a checkpoint holds (``encoder_state``, ``load_encoder_state``).
"""

from __future__ import annotations

import functools
import hashlib
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


class FusionRewardModel(RewardModel):
    """An image encoder and the fusion head; the encoder comes from the subclass."""

    def __init__(self, cfg: RewardConfig, device: str = "auto"):
        super().__init__(cfg, device)
        torch.manual_seed(cfg.seed)
        self.size = int(cfg.image_size)
        self.encoder = self.make_encoder().to(self.device)
        self.text = QuestionEmbedder(cfg.text_encoder)
        with torch.inference_mode():
            feat = self.features(torch.zeros(1, 3, self.size, self.size, device=self.device))
        self.head = FusionHead(
            feat.shape[1], feat.shape[-1], self.text.dim, cfg.head_channels, cfg.head_hidden
        ).to(self.device)
        self._rng = torch.Generator().manual_seed(cfg.seed)

    # --- what a backend supplies -------------------------------------------------------------
    def make_encoder(self) -> nn.Module:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images as floats in [0, 1], (N, 3, H, W) -> feature map (N, C, s, s)."""
        raise NotImplementedError

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder weights a checkpoint keeps."""
        raise NotImplementedError

    def load_encoder_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    # --- scoring ---------------------------------------------------------------------------
    def logits(self, images: np.ndarray, questions: list[str]) -> torch.Tensor:
        x = to_float(images, self.size, self.device)
        return self.head(self.features(x), self.text(questions, self.device))

    def eval(self) -> None:
        self.encoder.eval()
        self.head.eval()

    # --- fine-tuning -----------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.head.parameters())
        params += [p for p in self.encoder.parameters() if p.requires_grad]
        return params

    def finish_training(self) -> None:
        self.eval()

    def train_features(self, idx: np.ndarray, data: ClassifierData, augment_: bool) -> torch.Tensor:
        """Features of the training frames ``idx`` (augmented when asked)."""
        self.encoder.train()
        x = to_float(data.images[idx], self.size, self.device)
        if augment_:
            x = augment(x, self._rng, self.cfg.augment_strength, self.cfg.augment_tilt)
        return self.features(x)

    def train_logits(self, idx: np.ndarray, data: ClassifierData, augment_: bool) -> torch.Tensor:
        self.head.train()
        text = self.text([data.questions[i] for i in idx], self.device)
        return self.head(self.train_features(idx, data, augment_), text)

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        state.update({f"encoder.{k}": v for k, v in self.encoder_state().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        self.load_encoder_state({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
