"""The `cnn` backend (the ablation): the fusion head on a small convolutional encoder trained
from scratch with it."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from reward_server.fusion import FusionRewardModel


def small_cnn() -> nn.Sequential:
    """The from-scratch encoder: 4 stride-2 3x3 convs (32-64-128-128), GroupNorm + ReLU."""
    layers: list[nn.Module] = []
    chans = [3, 32, 64, 128, 128]
    for cin, cout in itertools.pairwise(chans):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]
    return nn.Sequential(*layers)


class CNNRewardModel(FusionRewardModel):
    """Success classifier with a from-scratch encoder (:func:`small_cnn`), trained whole."""

    backend = "cnn"

    def make_encoder(self) -> nn.Module:
        return small_cnn()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x - 0.5)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.state_dict()

    def load_encoder_state(self, state: dict[str, torch.Tensor]) -> None:
        self.encoder.load_state_dict(state)
