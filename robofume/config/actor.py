"""The robot-side actor: the reset-free loop on the robot PC."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActorConfig:
    """The reset-free loop on the robot PC."""

    forward_task: str = "vase_forward"
    """Task name of the forward instruction l_f."""
    reset_task: str = "vase_reset"
    """Task name of the reset instruction l_b."""
    human_reset_every: int = 1000
    """Simulation: a (simulated) human resets the scene every this many steps (0 = never)."""
    total_steps: int = 30_000
    """Environment steps to collect (0 = until stopped)."""
    policy_device: str = "cpu"
    """Where the actor runs the policy."""
    policy_threads: int = 1
    """CPU threads for the policy (torch.set_num_threads; 0: the actor's share of the cores,
    robofume/threads.py). One image per tick gains nothing from more, and spare threads only
    add tick jitter."""
    weights_poll_s: float = 1.0
    """How often the background thread checks for newer policy weights."""
    reward_deadline_s: float = 2.0
    """Deadline of one reward-server call."""
    local_buffer_episodes: int = 100
    """Episodes kept in memory while replay is unreachable before spilling to disk
    (one 150-step episode of 100 px frames is ~4.5 MB)."""
    spill_dir: str = ""
    """Where undelivered episodes are spilled (empty: <run_dir>/spill)."""
    outbox_memory_episodes: int = 50
    """Delivered episodes not yet in a replay checkpoint kept in memory (the rest go to
    <spill dir>/outbox); they are delivered again if replay restarts from its checkpoint."""
    outbox_max_episodes: int = 20_000
    """At most this many delivered episodes are kept for a replay checkpoint (the oldest are
    forgotten beyond, with a warning); size it to replay.checkpoint_every_s of collection."""
    marker_poll_s: float = 5.0
    """While idle, how often the actor reads replay's checkpoint marker (to learn which kept
    episodes a checkpoint holds and to notice a restarted replay server)."""
    strip_every: int = 5
    """Every n-th finished episode is drawn on the dashboard as a strip of frames with the
    reward model's P(success) per frame and, in simulation, the true success (0: none)."""
    success_frames: int = 2
    """Consecutive frames the reward model must call a success before the episode ends on
    success (and earns its reward). 1 ends on any single positive frame, which the policy
    learns to exploit; 2-3 survive an isolated false positive."""
    use_ground_truth_reward: bool = False
    """Simulation ablation: end episodes on true success instead of the reward model."""
    seed: int = 0
    """Seed of the actor's environment and policy sampling (actor i uses seed + i)."""
    label_wait_s: float = 5.0
    """How long a closed episode waits for its outstanding labels before the missing ones are
    requested again (the episode is kept and delivered once labelled, never dropped)."""
    retry_s: float = 1.0
    """First back-off after replay or the reward server is found unreachable (doubles, max 30 s)."""
    hold_when_unreachable: bool = False
    """Stop acting (real robot: hold pose) while replay or the reward server is unreachable;
    when false the simulated robot keeps acting and episodes are buffered."""
    initial_weights_timeout_s: float = 30.0
    """Wait this long at start for the learner's first weights (then act with the initial
    policy and keep polling)."""
    keyboard: bool = True
    """Listen for interventions on stdin (`r` + Enter) when it is a terminal."""
    control_rpc: bool = True
    """Serve the intervention endpoint on loopback at deploy.control_port + actor id."""
    report_every_s: float = 5.0
    """Seconds between TensorBoard scalars and the status heartbeat file."""
    pace_to_learner: bool = True
    """Simulation only: hold the tick while replay holds more than ``pace_lead_steps`` steps
    the learner has not consumed at ``learner.utd_ratio``, so a simulator ticking faster than
    real time keeps the target UTD (actor/pace.py). The real robot never waits."""
    pace_lead_steps: int = 0
    """Steps the actors may be ahead of the learner before a paced actor waits (0: two
    episodes, 2 * env.max_episode_steps)."""
    tick_hz: float = 0.0
    """Control-loop rate (0: env.control_hz, the robot's rate; a simulated actor may tick
    faster or, with a negative value, as fast as it can)."""
    shutdown_timeout_s: float = 10.0
    """On stop, how long to keep delivering before undelivered episodes are spilled to disk."""
