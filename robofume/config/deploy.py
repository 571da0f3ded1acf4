"""Hosts, ports and process counts: the only place addresses live."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeployConfig:
    """How the processes are placed and reach each other."""

    run_dir: str = "runs/sim"
    """Root of logs, checkpoints, TensorBoard and replay checkpoints of this run."""
    session: str = ""
    """Set by `up` (its start time, ``YYYYmmdd-HHMMSS``): names this `up`'s TensorBoard runs
    (``tb/<session>/<component>``) and lets a restarted actor continue its step counter.
    Empty: no session (a process started by hand)."""
    start_timeout_s: float = 300.0
    """How long a service may take to come up (replay listening) before starting fails; a
    loaded 2-core machine needs minutes to import TensorFlow and Reverb in a fresh worker."""
    bind_host: str = "127.0.0.1"
    """Interface services listen on (loopback unless set)."""
    replay_address: str = "127.0.0.1:8000"
    """Where actors and the learner reach the Reverb server."""
    reward_addresses: tuple[str, ...] = ("127.0.0.1:8010",)
    """Reward server replica addresses (clients round-robin over them)."""
    reward_port: int = 8010
    """First port of the reward replicas (replica i listens on reward_port + i)."""
    replay_port: int = 8000
    """Port of the Reverb server."""
    control_port: int = 8020
    """Port of the actor's small control RPC (human intervention)."""
    head_port: int = 8030
    """Port of the head's registry (deploy/registry.py), which `up` starts on the head."""
    head_address: str = ""
    """``host:port`` of the head's registry, for a process on another machine (the robot PC):
    it then takes the cluster's config and the replay and reward addresses from the head, and
    sends its heartbeats and dashboard summaries there. Empty: this machine is the head."""
    tensorboard_port: int = 6006
    """TensorBoard port."""
    ray_address: str = "auto"
    """Ray cluster address (`auto`: join the head on ray_port, starting one if none runs)."""
    ray_port: int = 6390
    """Port of the Ray head that `make up` starts on this machine."""
    dashboard_port: int = 8265
    """Port of the Ray dashboard (bound to loopback)."""
    ray_num_cpus: int = 0
    """CPUs the local Ray head offers (0: all of this machine's)."""
    worker_niceness: int = 0
    """Nice value of the local head's workers (the services: actor, learner, replay, reward).
    Ray's own default, 15, makes them yield to everything else on the machine: TensorBoard
    reloading images or a polling `status` then starves the actor's control loop and the
    learner (seen: minutes to start a service on a busy 2-core machine)."""
    ray_token_path: str = ""
    """File holding the Ray cluster's auth token (empty: <run_dir>/ray/auth_token). Created
    (mode 0600) when missing and handed to the head and every driver; ~/.ray is never used.
    On a multi-node cluster every node needs the same file."""
    secret_path: str = ""
    """File holding the deployment secret that signs policy weights (empty:
    <run_dir>/auth/secret). Created (mode 0600) when missing; a robot PC or another node
    needs a copy of the learner's file at the path its own config names."""
    num_reward_replicas: int = 1
    """Reward server replicas."""
    num_actors: int = 1
    """Simulated actors (robot mode: 0; the robot PC runs its own)."""
    evaluator_every_s: float = 300.0
    """In simulation, evaluate the newest policy on the fixed evaluation seeds this often during
    online fine-tuning (deploy/evaluator.py; ground truth, on the dashboard's headline). 0: no
    evaluator."""
    evaluator_episodes: int = 5
    """Episodes per forward target task in each online evaluation."""
    evaluator_every_steps: int = 0
    """When > 0, evaluate each time the environment steps in replay pass another multiple of
    this (and once at start), instead of every evaluator_every_s: a schedule that does not
    depend on the machine's speed (the learning benchmarks use it)."""
    evaluator_tasks: tuple[str, ...] = ()
    """Tasks the online evaluator rolls out (empty: every forward target task)."""
    evaluator_stochastic: bool = False
    """Also evaluate with sampled actions, as the actors act
    (``Headline/eval_true_success_stochastic``), beside the deterministic mean action."""
    reward_gpus: float = 0.0
    """GPUs per reward replica."""
    learner_gpus: float = 0.0
    """GPUs for the learner."""
    torch_threads: int = 0
    """torch/OpenMP threads of every robofume process (0: each its share of the cores; see
    robofume/threads.py): components `up` runs side by side (learner, actors, reward replicas)
    max(1, cores // their number), steps that run alone (pretrain, reward finetune, evaluate)
    all cores, each generation worker cores // data.workers. actor.policy_threads and
    reward.torch_threads, when set, win for their process."""
    storage: str = ""
    """Where artifacts live for services on other nodes (robofume/artifacts.py): empty, the
    head's registry serves them from its run directory; or a URI fsspec opens (``file:///...``,
    ``s3://bucket/run``, ``gs://...``; s3/gs need s3fs/gcsfs installed), to which `up` uploads
    the head's reward model, checkpoints and dataset."""
    replay_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources the replay server needs (e.g. ``{"replay_node": 1}`` pins it to
    the node started with ``ray start --resources '{"replay_node": 1}'``). Empty: the Ray head,
    where its checkpoints survive a worker node going away."""
    learner_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources the online learner needs (beside ``learner_gpus``)."""
    reward_resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each reward replica needs; the replicas are spread over the nodes
    that have them."""
    prepare_resources: dict[str, float] = field(default_factory=dict)
    """Ray resources for the reward fine-tune and pre-training (e.g. ``{"GPU": 1}`` or
    ``{"gpu_node": 1}``): they run on a node that offers them, fetch the dataset there and
    upload what they make. Empty: on the head, where `up` runs."""
    token: str = ""
    """Shared token required on cross-machine links (empty: no check, loopback only)."""
    allow_insecure_remote: bool = False
    """Let gRPC servers listen beyond loopback without a token (loudly logged); by default
    they refuse to start."""
    tls_cert: str = ""
    """PEM certificate for TLS on gRPC links (empty: plaintext)."""
    tls_key: str = ""
    """PEM private key matching tls_cert."""
