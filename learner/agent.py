"""The networks of the learner and the algorithm switches.

``Agent`` extends the actor-side ``PolicyModel`` (encoder, policy, task table: the variables
actors load) with the twin critic, the target encoder + critic, the entropy temperature and the
CQL Lagrange multiplier.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from robofume.config import ExperimentConfig, LearnerConfig
from robofume.networks import POLICY_PREFIXES, EnsembleCritic, PolicyModel


@dataclass(frozen=True)
class Algorithm:
    """What one update trains, resolved from ``learner.algorithm``."""

    rl: bool
    """Train the critic and the RL part of the actor loss."""
    conservative: bool
    """Add the CQL regulariser to the critic loss."""
    calibrated: bool
    """Cal-QL: lower-bound the policy-action Q values by Monte-Carlo returns."""
    bc_weight: float
    """Weight of the BC term in the actor loss."""


def resolve_algorithm(cfg: LearnerConfig) -> Algorithm:
    """robofume = Cal-QL + BC; each other switch removes exactly the component it names.

    * ``robofume_nobc``: BC weight 0.
    * ``cql``: no calibration (plain CQL + BC).
    * ``sac``: no conservative term at all (SAC + BC; set bc_weight 0 for plain SAC).
    * ``bc``: the BC term only; the encoder is then trained through the BC loss.
    """
    match cfg.algorithm:
        case "robofume":
            return Algorithm(True, True, True, cfg.bc_weight)
        case "robofume_nobc":
            return Algorithm(True, True, True, 0.0)
        case "cql":
            return Algorithm(True, True, False, cfg.bc_weight)
        case "sac":
            return Algorithm(True, False, False, cfg.bc_weight)
        case "bc":
            return Algorithm(False, False, False, 1.0)
    raise ValueError(f"unknown learner.algorithm {cfg.algorithm!r}")


class Agent(PolicyModel):
    """Encoder + policy + task table (actor variables) + critics, targets and temperatures."""

    def __init__(self, cfg: ExperimentConfig, task_table: torch.Tensor):
        net = cfg.network
        super().__init__(net, cfg.env.image_size, cfg.env.action_dim, net.proprio_dim, task_table)
        self.critic = EnsembleCritic(net, self.state_dim, cfg.env.action_dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        init_alpha = max(cfg.learner.init_entropy_alpha, 1e-8)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))
        self.log_cql_alpha = nn.Parameter(torch.tensor(0.0))

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.critic.parameters()]

    def target_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(target tensors, online tensors) for the Polyak update."""
        online = [*self.encoder.parameters(), *self.critic.parameters()]
        target = [*self.target_encoder.parameters(), *self.target_critic.parameters()]
        return target, online

    def policy_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(POLICY_PREFIXES)}


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"learner.device={spec!r} but CUDA is not available")
    return device
