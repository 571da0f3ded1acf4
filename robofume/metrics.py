"""TensorBoard tag names, defined once. Tags are ``<area>/<snake_case>``.

``Headline/`` (capitalised, so TensorBoard lists it before every other group) answers "is the
robot getting better?": ground-truth success, predicted success, episode counts, policy lag,
effective versus target UTD.
"""

from __future__ import annotations

# Headline: what the robot achieves, first on the dashboard
SUCCESS_RATE = "Headline/true_success_last20"
"""Ground-truth (simulator) success of the actor's last 20 episodes, per task."""
SUCCESS_RATE_ALL_FORWARD = "Headline/true_success_last20/all_forward_tasks"
"""Ground-truth success of the last 20 episodes of every forward task together."""
PREDICTED_SUCCESS_RATE = "Headline/predicted_success_last20"
"""Episodes the reward model ended on success, last 20, per task (compare with the truth)."""
EPISODES = "Headline/episodes"
"""Finished episodes, per task."""
HEADLINE_POLICY_LAG = "Headline/policy_lag"
"""Learner version minus the version the actor runs."""
HEADLINE_UTD = "Headline/utd_effective"
"""Updates per environment step the learner achieved (``Headline/utd_target`` beside it)."""
HEADLINE_UTD_TARGET = "Headline/utd_target"
EVAL_TRUE_SUCCESS = "Headline/eval_true_success"
"""Ground-truth success of the newest policy on the fixed evaluation seeds (deterministic), per
forward task, during online fine-tuning (the online evaluator)."""
EVAL_TRUE_SUCCESS_ALL_FORWARD = "Headline/eval_true_success/all_forward_tasks"
EVAL_TRUE_SUCCESS_STOCHASTIC = "Headline/eval_true_success_stochastic"
"""Per-task prefix: the same evaluation with sampled actions (deploy.evaluator_stochastic)."""
EVAL_TRUE_SUCCESS_STOCHASTIC_ALL_FORWARD = "Headline/eval_true_success_stochastic/all_forward_tasks"
EPISODE_RETURN = "episodes/return"
EPISODE_LENGTH = "episodes/length"

# losses: the learner's terms
CRITIC_LOSS = "losses/critic_loss"
ACTOR_LOSS = "losses/actor_loss"
BC_LOSS = "losses/bc_loss"
CQL_PENALTY = "losses/cql_penalty"
CRITIC_TOTAL = "losses/critic_total"
ACTOR_RL_LOSS = "losses/actor_rl_loss"
ALPHA_LOSS = "losses/alpha_loss"

# the learner's state (not losses)
CALQL_BOUND_RATE = "critic/calql_bound_rate"
Q_MEAN = "critic/q_mean"
TARGET_Q_MEAN = "critic/target_q_mean"
ALPHA = "temperature/alpha"
CQL_ALPHA = "temperature/cql_alpha"
ENTROPY = "policy/entropy"

# actor: the robot-side loop
ACTOR_STEPS_PER_SEC = "actor/steps_per_sec"
ACTOR_POLICY_LAG = HEADLINE_POLICY_LAG
ACTOR_LABEL_LAG_STEPS = "actor/label_lag_steps"
ACTOR_INTERVENTIONS = "actor/interventions"
ACTOR_TICK_JITTER_MS = "actor/tick_jitter_ms"
ACTOR_POLICY_VERSION = "actor/policy_version"
ACTOR_PENDING_EPISODES = "actor/pending_episodes"
ACTOR_HUMAN_RESETS = "actor/human_resets"
ACTOR_EPISODE_STRIP = "actor/episode_strip"
"""Image: frames of a finished episode with P(success) per frame (robofume/strips.py)."""
ACTOR_CAMERA = "actor/camera"
"""Image: the newest camera frame of the actor."""
ACTOR_WEIGHTS_REFUSED = "actor/weights_refused"
ACTOR_STATE = "actor/state"
"""Text, written when the actor's state changes (running, holding and why, stopped)."""
ACTOR_RETAINED_EPISODES = "actor/retained_episodes"
"""Delivered episodes kept until a replay checkpoint holds them."""
ACTOR_REDELIVERED_EPISODES = "actor/redelivered_episodes"
"""Episodes delivered again after a replay restart."""
ACTOR_REPLAY_RESTARTS = "actor/replay_restarts_seen"

# replay
REPLAY_SIZE = "replay/size"
REPLAY_INSERTS_PER_SEC = "replay/inserts_per_sec"

# learner
LEARNER_UPDATES_PER_SEC = "learner/updates_per_sec"
LEARNER_UTD_RATIO = HEADLINE_UTD
LEARNER_STEP = "learner/step"
LEARNER_WAIT_FRACTION = "learner/wait_fraction"
LEARNER_STATE = "learner/state"
"""Text, written when the learner's sampler changes state (sampling, waiting for data, ...)."""

# reward model / server
REWARD_LATENCY_MS = "reward/latency_ms"
REWARD_BATCH_SIZE = "reward/batch_size"
REWARD_FALSE_POSITIVE_RATE = "reward/online_false_positive_rate"
"""Per frame, the actor's labels against the simulator's ground truth (online)."""
REWARD_FALSE_NEGATIVE_RATE = "reward/online_false_negative_rate"
REWARD_FALSE_SUCCESS_EPISODES = "reward/false_success_episode_fraction"
"""Online episodes that ended on a predicted success the simulator does not confirm."""
# the reward model's fine-tuning, on its held-out episodes (not the online rates above)
REWARD_TRAIN_LOSS = "reward_finetune/train_loss"
HELD_OUT_FALSE_POSITIVE_RATE = "reward_finetune/held_out_false_positive_rate"
HELD_OUT_FALSE_NEGATIVE_RATE = "reward_finetune/held_out_false_negative_rate"
REWARD_ACCURACY = "reward_finetune/held_out_accuracy"
REWARD_PRECISION = "reward_finetune/held_out_precision"

# evaluation
EVAL_SUCCESS_RATE = "eval/success_rate"
EVAL_EPISODES = "eval/episodes"
SERVICE_RESTARTS = "service/restarts"
"""Times Ray restarted a service (its process died) in this session."""
SERVICE_STATE = "service/state"
"""Text: a service's restarts, with what it last reported."""
EVAL_PANEL = "eval/panel"
EVAL_POLICY_VERSION = "eval/policy_version"
"""The learner update the online evaluator evaluated."""
EVAL_EPISODE_LENGTH = "eval/episode_length"


def per_task(tag: str, task: str) -> str:
    """Tag of a per-task chart, e.g. ``Headline/true_success_last20/vase_forward``."""
    return f"{tag}/{task}"


# phases: `robofume up` runs the method's phases in order inside the running system
PHASE_GENERATE_PROGRESS = "phases/generate_progress"
PHASE_REWARD_PROGRESS = "phases/reward_progress"
PHASE_PRETRAIN_PROGRESS = "phases/pretrain_progress"
PHASE_ONLINE_PROGRESS = "phases/online_progress"
PHASE_PROGRESS = {
    "generate": PHASE_GENERATE_PROGRESS,
    "reward": PHASE_REWARD_PROGRESS,
    "pretrain": PHASE_PRETRAIN_PROGRESS,
    "online": PHASE_ONLINE_PROGRESS,
}
"""Fraction done (0..1) of each phase's current step, by phase name, in run order."""
