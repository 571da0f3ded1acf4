"""Networks shared by the learner and the actor: image encoder, tanh-Gaussian policy, twin Q.

Shapes use B = batch, N = sampled actions per state, E = critics in the ensemble (2),
A = action size, F = image feature size, D = task-embedding size, P = proprio size.

* ``Encoder``: uint8 (B, H, W, 3) -> 4 x [conv 3x3 -> LayerNorm -> ReLU] -> linear ->
  LayerNorm -> tanh -> (B, F). Trained only through the critic loss.
* ``Policy``: [features, task embedding, proprio] -> MLP -> tanh-Gaussian over actions.
* ``EnsembleCritic``: E Q-networks on [features, task embedding, proprio, action]. The state
  part of the first layer is computed once per state and shared by its N sampled actions,
  which makes the CQL terms (3 x N actions per state) cheap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robofume.config import NetworkConfig

LOG_2 = math.log(2.0)
POLICY_PREFIXES = ("encoder.", "policy.", "task_table", "proprio_mean", "proprio_std")
"""State-dict entries of ``PolicyModel``: the variables actors load."""


def conv_output_size(image_size: int, strides: tuple[int, ...], kernel: int = 3) -> int:
    """Spatial side after the unpadded 3x3 convolutions."""
    size = image_size
    for stride in strides:
        size = (size - kernel) // stride + 1
    if size < 1:
        raise ValueError(f"image size {image_size} is too small for conv strides {strides}")
    return size


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of an NCHW tensor (flax-style NHWC LayerNorm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H, W, C): free for channels_last tensors
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """The paper's 4-layer CNN: uint8 images in, a (B, feature_dim) tanh feature out."""

    def __init__(self, cfg: NetworkConfig, image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stride in cfg.encoder_strides:
            layers += [
                nn.Conv2d(channels, cfg.encoder_channels, 3, stride=stride),
                ChannelLayerNorm(cfg.encoder_channels),
                nn.ReLU(inplace=True),
            ]
            channels = cfg.encoder_channels
        self.convs = nn.Sequential(*layers)
        side = conv_output_size(image_size, cfg.encoder_strides)
        self.image_size = image_size
        self.flat_dim = side * side * channels
        self.proj = nn.Linear(self.flat_dim, cfg.feature_dim)
        self.proj_norm = nn.LayerNorm(cfg.feature_dim)
        self.feature_dim = cfg.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images uint8 (B, H, W, 3) -> features float (B, F) in (-1, 1)."""
        if images.shape[-3:-1] != (self.image_size, self.image_size):
            raise ValueError(
                f"encoder built for {self.image_size}x{self.image_size} images, "
                f"got shape {tuple(images.shape)}"
            )
        x = images.permute(0, 3, 1, 2)  # NHWC storage viewed as NCHW == channels_last
        x = x.to(self.proj.weight.dtype) / 255.0 - 0.5  # [-0.5, 0.5]
        x = self.convs(x)
        x = x.permute(0, 2, 3, 1).flatten(1)  # HWC order: independent of the memory format
        return torch.tanh(self.proj_norm(self.proj(x)))


class NoEncoder(nn.Module):
    """``network.encoder: none``: no image features, (B, H, W, 3) -> (B, 0)."""

    feature_dim = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros((images.shape[0], 0), dtype=torch.float32)


def make_encoder(cfg: NetworkConfig, image_size: int) -> nn.Module:
    """The image encoder named by ``cfg.encoder``."""
    if cfg.encoder == "none":
        return NoEncoder()
    if cfg.encoder == "cnn":
        return Encoder(cfg, image_size)
    raise ValueError(f"unknown network.encoder {cfg.encoder!r} (cnn or none)")


def feature_dim(cfg: NetworkConfig) -> int:
    """Size of the encoder's output for ``cfg``."""
    return 0 if cfg.encoder == "none" else cfg.feature_dim


def proprio_statistics(proprio: torch.Tensor, min_std: float = 1e-2) -> tuple:
    """(mean (P,), std (P,)) of proprio rows (N, P), std floored at ``min_std``.

    The floor keeps a nearly constant coordinate (an object's height at rest) from being
    blown up when it does change.
    """
    proprio = proprio.double()
    return proprio.mean(0).float(), proprio.std(0).clamp_min(min_std).float()


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(inplace=True)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- policy


def tanh_log_det(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) computed stably as 2 * (log 2 - u - softplus(-2u))."""
    return 2.0 * (LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density, summed over the last axis."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def sample_tanh_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(mean + std * noise) and its log-prob.

    mean, log_std: (..., A) broadcastable against noise (..., A). Returns action (..., A) and
    log pi(a|s) (...,) including the tanh change-of-variables correction.
    """
    pre_tanh = mean + torch.exp(log_std) * noise
    log_prob = gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_det(pre_tanh).sum(-1)
    return torch.tanh(pre_tanh), log_prob


def tanh_gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor, eps: float = 1e-4
) -> torch.Tensor:
    """log pi(a|s) of a given action in [-1, 1] (clipped to +-(1 - eps) before atanh)."""
    action = action.clamp(-1.0 + eps, 1.0 - eps)
    pre_tanh = torch.atanh(action)
    return gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_det(pre_tanh).sum(-1)


class Policy(nn.Module):
    """MLP on [features, task embedding, proprio] -> (mean, log_std) of a tanh-Gaussian."""

    def __init__(self, cfg: NetworkConfig, state_dim: int, action_dim: int):
        super().__init__()
        self.net = mlp(state_dim, cfg.hidden_dims, 2 * action_dim)
        self.log_std_min = cfg.log_std_min
        self.log_std_max = cfg.log_std_max

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state (B, S) -> mean (B, A), log_std (B, A)."""
        mean, log_std = self.net(state).float().chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)


# ----------------------------------------------------------------------------- critic


class EnsembleLinear(nn.Module):
    """E independent linear layers applied with one batched matmul: (E, M, I) -> (E, M, O)."""

    def __init__(self, ensemble: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # torch.nn.Linear's default init range
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleCritic(nn.Module):
    """E Q-networks Q_e(state, action); N actions per state share the state's first-layer term."""

    def __init__(self, cfg: NetworkConfig, state_dim: int, action_dim: int, ensemble: int = 2):
        super().__init__()
        if not cfg.hidden_dims:
            raise ValueError("network.hidden_dims must name at least one hidden layer")
        first = cfg.hidden_dims[0]
        self.ensemble = ensemble
        bound = 1.0 / math.sqrt(state_dim + action_dim)
        self.w_state = nn.Parameter(torch.empty(ensemble, state_dim, first).uniform_(-bound, bound))
        self.w_action = nn.Parameter(
            torch.empty(ensemble, action_dim, first).uniform_(-bound, bound)
        )
        self.b_first = nn.Parameter(torch.empty(ensemble, 1, 1, first).uniform_(-bound, bound))
        layers: list[nn.Module] = []
        for width_in, width_out in zip(cfg.hidden_dims, cfg.hidden_dims[1:], strict=False):
            layers += [EnsembleLinear(ensemble, width_in, width_out), nn.ReLU(inplace=True)]
        layers.append(EnsembleLinear(ensemble, cfg.hidden_dims[-1], 1))
        self.trunk = nn.Sequential(*layers)

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state (B, S), actions (B, N, A) -> Q (E, B, N)."""
        b, n, a = actions.shape
        h_state = torch.matmul(state, self.w_state)  # (E, B, H)
        h_action = torch.matmul(actions.reshape(b * n, a), self.w_action)  # (E, B*N, H)
        h = h_state[:, :, None] + h_action.view(self.ensemble, b, n, -1) + self.b_first
        h = F.relu(h).view(self.ensemble, b * n, -1)
        return self.trunk(h).view(self.ensemble, b, n).float()


# ----------------------------------------------------------------------------- augmentation


def random_shift(
    images: torch.Tensor, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DrQ random shift on uint8 (B, H, W, C): replicate-pad by ``pad`` and crop back.

    Implemented as one gather with per-sample integer offsets (clamped indices == replicate
    padding), so it stays uint8 and costs one pass over the batch on any device.
    """
    if pad <= 0:
        return images
    b, h, w, _ = images.shape
    dev = images.device
    shift = torch.randint(0, 2 * pad + 1, (b, 2), device=dev, generator=generator) - pad
    rows = (torch.arange(h, device=dev)[None] + shift[:, :1]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=dev)[None] + shift[:, 1:]).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=dev)[:, None, None]
    return images[batch, rows[:, :, None], cols[:, None, :]]


def policy_input(
    features: torch.Tensor, task_embedding: torch.Tensor, proprio: torch.Tensor
) -> torch.Tensor:
    """The state the policy and critic see: [features (B, F), task emb (B, D), proprio (B, P)]."""
    return torch.cat([features, task_embedding.to(features.dtype), proprio.to(features.dtype)], -1)


class PolicyModel(nn.Module):
    """What the actor needs: the encoder, the policy and the task-embedding table.

    Parameter names match the learner's so ``get_variables()`` loads here directly.
    """

    def __init__(
        self,
        net: NetworkConfig,
        image_size: int,
        action_dim: int,
        proprio_dim: int,
        task_table: torch.Tensor,
    ):
        super().__init__()
        self.encoder = make_encoder(net, image_size)
        self.register_buffer("task_table", task_table.float().clone())
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.state_dim = feature_dim(net) + task_table.shape[1] + proprio_dim
        self.policy = Policy(net, self.state_dim, action_dim)

    def set_proprio_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise proprio with these statistics from now on (saved with the weights)."""
        self.proprio_mean.copy_(mean)
        self.proprio_std.copy_(std)

    def state(
        self, features: torch.Tensor, task: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        """``policy_input`` of image features, int64 task ids and standardised proprio."""
        proprio = (proprio.float() - self.proprio_mean) / self.proprio_std
        return policy_input(features, self.task_table[task], proprio)

    def distribution(
        self, images: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-tanh Gaussian for uint8 images and int64 task ids."""
        return self.policy(self.state(self.encoder(images), task, proprio))
