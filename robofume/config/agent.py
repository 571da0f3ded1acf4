"""Networks and the Cal-QL + BC learner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NetworkConfig:
    """The language-conditioned image policy and the twin critic."""

    encoder: Literal["cnn", "none"] = "cnn"
    """`cnn`: the paper's image encoder. `none`: no image features (``env.observation: state``,
    where proprio carries the privileged state)."""
    encoder_channels: int = 32
    """Filters of each of the 4 conv layers."""
    encoder_strides: tuple[int, ...] = (2, 1, 1, 1)
    """Stride per conv layer (3x3 kernels)."""
    feature_dim: int = 50
    """Size of the projected image feature (LayerNorm + tanh)."""
    hidden_dims: tuple[int, ...] = (256, 256)
    """MLP widths of the policy and of each critic."""
    text_encoder: str = "minilm"
    """`minilm` (packaged MiniLM), `onehot` (task-id ablation) or a local CLIP model path."""
    augmentation: bool = True
    """DrQ random-shift augmentation of images during updates."""
    shift_pad: int = 4
    """Pixels of padding for the random shift."""
    log_std_min: float = -20.0
    """Lower clamp of the policy's log std."""
    log_std_max: float = 2.0
    """Upper clamp of the policy's log std."""
    proprio_dim: int = 4
    """Size of the proprio vector (end-effector xyz + gripper opening; 7 with the object's
    position in ``env.observation: state``)."""
    normalize_proprio: bool = True
    """Standardise proprio with the offline data's mean and std (stored with the weights, so
    actors apply the same statistics). Raw proprio is in metres (std 4-10 cm) next to unit-scale
    language features, and the networks then barely use it."""


@dataclass(frozen=True)
class CalQLConfig:
    """The objective: Cal-QL + BC losses, targets and their optimisers."""

    algorithm: Literal["robofume", "robofume_nobc", "cql", "sac", "bc"] = "robofume"
    """The one algorithm switch: robofume = Cal-QL + BC (calibrated CQL); robofume_nobc
    without the BC term; cql = CQL + BC (no calibration); sac = SAC + BC (no conservative
    term); bc = the BC term only. Pre-training and online fine-tuning both follow it."""
    discount: float = 0.99
    """Discount factor, also used for the Monte-Carlo returns."""
    actor_lr: float = 1e-4
    """Policy learning rate."""
    critic_lr: float = 3e-4
    """Critic (and encoder) learning rate."""
    alpha_lr: float = 3e-4
    """Entropy temperature learning rate."""
    tau: float = 0.005
    """Polyak rate of the target critic."""
    cql_alpha: float = 5.0
    """Weight of the CQL regulariser (initial value when lagrange is on)."""
    cql_lagrange: bool = False
    """Tune the CQL weight with a Lagrange multiplier against cql_target_gap."""
    cql_target_gap: float = 0.8
    """Target Q gap for the Lagrange variant."""
    cql_n_actions: int = 4
    """Sampled actions per type (random, current, next) in the CQL log-sum-exp."""
    cql_temperature: float = 1.0
    """Temperature of the CQL log-sum-exp."""
    bc_weight: float = 1.0
    """Weight of the behaviour-cloning term in the actor loss (relative to the RL term, which
    is divided by the batch's mean |Q| when ``normalize_q`` is on)."""
    normalize_q: bool = True
    """Divide the RL part of the actor loss by the batch's mean |Q| (TD3+BC), so RL and BC keep
    a similar scale throughout training as the paper asks, whatever ``reward_scale`` is."""
    init_entropy_alpha: float = 0.1
    """Initial entropy temperature (auto-tuned to target entropy -|A|)."""
    max_target_backup: bool = True
    """Cal-QL's backup: max over cql_n_actions next-policy actions of the min target Q."""
    backup_entropy: bool = False
    """Subtract alpha * log pi(a'|s') in the TD target (off in Cal-QL)."""
    cql_importance_sample: bool = True
    """Importance-sample the CQL log-sum-exp (subtract each proposal's log-density)."""
    cql_lagrange_lr: float = 3e-4
    """Learning rate of the CQL Lagrange multiplier (when cql_lagrange is on)."""
    bc_loss: Literal["nll", "mse"] = "mse"
    """BC term: squared error of the deterministic action tanh(mu) (mse), or -log pi(a_data|s)
    (nll). nll is ill-defined for demo actions clipped to +-1 (atanh diverges there): the
    policy then covers those with a wide std instead of learning the mean."""
    reward_scale: float = 10.0
    """Rewards and Monte-Carlo returns are multiplied by this inside the update (batches stay
    in 0/1 units). Cal-QL's sparse-reward setting: the CQL term lifts Q of dataset actions by
    about cql_alpha / 2 above its TD target, which must be small next to the returns."""
    terminal_on_success: bool = True
    """Offline episodes end at their first success frame, as online episodes do at the first
    predicted success: every transition into a success frame has reward 1 and is terminal, so
    demo "hold" steps do not inflate offline returns next to online ones."""


@dataclass(frozen=True)
class TrainingScheduleConfig:
    """The schedule: batches and their data mix, updates per environment step, evaluations,
    checkpoints, logs and weight publishes."""

    batch_size: int = 256
    """Transitions per update (offline and online combined when mixing)."""
    target_data_fraction: float = 0.0
    """Offline batches: fraction drawn from target-task demos (0 = uniform over all data)."""
    mixing_ratio: float = 0.5
    """Online: fraction of each batch drawn from the offline data."""
    bc_on_online: bool = True
    """Online: the BC term imitates every row of a batch, the robot's own transitions included
    (True), or the offline rows only (False: the demonstrations and prior data; the robot's own
    exploratory actions are then never imitated, and RL alone learns from them)."""
    online_calibration: bool = True
    """Online: calibrate with the online episodes' Monte-Carlo returns too."""
    utd_ratio: float = 1.0
    """Online: gradient updates per environment step collected."""
    steps: int = 50_000
    """Offline gradient steps."""
    eval_every: int = 5_000
    """Evaluate in the simulator every this many steps (0 = never)."""
    eval_episodes: int = 5
    """Episodes per target task in periodic evaluation."""
    checkpoint_every: int = 5_000
    """Write a checkpoint every this many steps."""
    checkpoint_keep: int = 3
    """Checkpoints kept on disk (older ones are deleted; 0 = keep all)."""
    log_every: int = 100
    """Log scalars every this many steps."""
    publish_every: int = 100
    """Online: publish policy weights every this many updates."""
    seed: int = 0
    """Seed of network init and sampling."""


@dataclass(frozen=True)
class LearnerComputeConfig:
    """The hardware: where and how the updates run (the maths is the same, up to rounding)."""

    device: str = "auto"
    """`auto` (cuda when present), `cpu`, `cuda`, `cuda:1` ..."""
    channels_last: bool = True
    """Run the encoder's convolutions in channels_last memory format."""
    amp_bf16: bool = False
    """Autocast the networks to bfloat16 (CUDA); losses stay float32."""
    compile: bool = False
    """torch.compile the networks (first steps are slow while it compiles)."""
    tf32: bool = True
    """CUDA: allow TF32 tensor cores for float32 matmuls and convolutions."""


@dataclass(frozen=True)
class LearnerConfig(LearnerComputeConfig, TrainingScheduleConfig, CalQLConfig):
    """The ``learner`` section: the Cal-QL + BC objective, its training schedule and its hardware
    settings, defined by concern above and used the same way offline and online.

    One flat section on the command line (``--learner.utd_ratio``) and in presets.
    """
