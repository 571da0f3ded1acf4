"""The VLM success classifier and its server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RewardModelConfig:
    """The model: the classifier's backend, its inputs and the question it answers."""

    backend: Literal["embedded", "vlm", "cnn"] = "embedded"
    """`embedded`: EfficientNet-Lite0 + MiniLM + fusion head (offline default);
    `vlm`: a transformers image-text-to-text model scored by yes/no logits;
    `cnn`: the same classifier from scratch (ablation)."""
    model: str = ""
    """`vlm` backend: a hub id or local path of the image-text-to-text model."""
    checkpoint: str = ""
    """Fine-tuned reward model checkpoint (empty: the default under the run directory)."""
    image_size: int = 224
    """Input size of the pretrained image backbone."""
    text_encoder: str = "minilm"
    """`embedded`/`cnn`: question embedding (`minilm`, a local transformers model dir, see
    robofume.text.make_text_encoder; or `hash`, a model-free bag of words for smoke runs)."""
    question_model: str = ""
    """Optional text-generation model (hub id or local path) that rephrases an instruction
    into a yes/no question; empty: the template (overrides always win)."""
    question_template: str = "Is the robot done with the task: {instruction}? Answer yes or no."
    """Template turning a task instruction into a yes/no question."""
    question_overrides: dict[str, str] = field(default_factory=dict)
    """Per-task questions, keyed by task name, replacing the template."""
    lora_rank: int = 8
    """LoRA rank for the vlm backend."""
    train_backbone_blocks: int = 0
    """`embedded`: how many of the last EfficientNet blocks are fine-tuned (0: frozen backbone,
    features computed once per frame and cached)."""
    feature_tap_block: int = 7
    """`embedded`: EfficientNet-Lite0 block (0-15) whose finer feature map (stride 16) is
    concatenated with the upsampled last map; -1: the last map only."""
    head_channels: int = 64
    """Channels of the fusion head's projected feature map."""
    head_hidden: int = 256
    """Width of the fusion head's MLP."""
    vlm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`vlm`: weight dtype (`auto`: bfloat16 on CUDA, float32 on CPU)."""


@dataclass(frozen=True)
class RewardFinetuneConfig:
    """Fine-tuning: labels from the demos, splits, training, a threshold for few false positives."""

    positive_frames: int = 3
    """The last N frames of each target demo are labelled 'yes'."""
    include_prior: bool = False
    """Also use prior demos as training data."""
    heldout_fraction: float = 0.2
    """Fraction of episodes held out for evaluation (split by episode)."""
    val_fraction: float = 0.2
    """Fraction of episodes (besides the held-out ones) on which the threshold is tuned, so
    the held-out rates are not biased by the tuning (0: tune on the held-out episodes)."""
    positive_fraction: float = 0.25
    """Share of 'yes' examples in each fine-tuning batch (the rest are drawn from 'no')."""
    target_fpr: float = 0.02
    """The decision threshold is chosen for this false-positive rate on validation data, on
    the frames of each episode kind (forward demos, reset demos, failures) separately: the
    highest of those thresholds, so no kind's frames exceed it."""
    threshold: float = 0.5
    """Decision threshold on P(yes) (replaced by the tuned one in a checkpoint)."""
    min_threshold: float = 0.5
    """Floor of the tuned threshold: a confident model tuned on clean validation frames can get
    a threshold near 0 that lets through many false positives once the scene shifts."""
    steps: int = 2_000
    """Fine-tuning steps."""
    batch_size: int = 32
    """Fine-tuning batch size."""
    lr: float = 1e-3
    """Fine-tuning learning rate (head; LoRA for vlm)."""
    negative_weight: float = 2.0
    """Loss weight of 'no' examples (pushes towards a low false-positive rate)."""
    near_success_frames: int = 3
    """The last this many 'no' frames before a demo's 'yes' frames (the object placed, the
    gripper still on it or opening) are hard negatives: as many of them as 'yes' frames fill
    each batch (chosen on validation seeds, benchmarks/reward_robustness.py)."""
    near_success_weight: float = 1.0
    """Loss weight of those near-success frames, times a 'no' frame's."""
    augment: bool = True
    """Augment the training frames (`cnn`, `vlm`, and `embedded` through extra cached views):
    camera shift, zoom and roll, lighting and colour cast (reward_server/images.py)."""
    augment_strength: float = 1.0
    """Scale of every augmentation range (1: the ranges in reward_server/images.py)."""
    augment_tilt: float = 0.03
    """Training views also tilt, as a camera turned towards the table: one side of the image
    shrunk by up to this fraction against the other (0: off). Chosen on validation seeds
    against a camera pose never trained on (benchmarks/RESULTS.md: 0.03 lowered forward false
    positives and kept recall; 0.06 halved recall)."""
    hard_negatives: bool = True
    """Also train on each demo's success frames asked with the question of another task on
    the same object that ends elsewhere (the forward task's goal is the reset task's start):
    'no'. Teaches the model to look at where the object is, not that the arm is done (chosen
    on validation seeds, benchmarks/reward_robustness.py)."""
    augment_views: int = 2
    """`embedded` with a frozen backbone: augmented copies of each training frame cached."""
    log_every: int = 50
    """Fine-tuning: steps between TensorBoard scalars."""
    seed: int = 0
    """Seed of fine-tuning."""


@dataclass(frozen=True)
class RewardServingConfig:
    """Serving: batching, request limits and the replicas' resources."""

    max_batch_size: int = 32
    """Server: largest dynamic batch."""
    max_wait_ms: float = 5.0
    """Server: longest a request waits for its batch to fill."""
    max_message_mb: int = 16
    """Server: largest accepted request message."""
    max_frames_per_request: int = 256
    """Server: most frames accepted in one Score request."""
    max_frame_pixels: int = 1024 * 1024
    """Server: most pixels (height x width) of one frame, checked from the image header before
    anything is decoded (a small PNG can decode to gigabytes)."""
    max_request_pixels: int = 16 * 1024 * 1024
    """Server: most pixels of all frames of one request together (16 Mpx: 48 MB decoded)."""
    executor_threads: int = 1
    """Server: threads running the model (one keeps batches serial on a small CPU)."""
    replica_cpus: float = 1.0
    """Ray: CPUs reserved per reward replica actor."""
    health_check_interval_s: float = 1.0
    """Client: seconds between health probes of each replica."""


@dataclass(frozen=True)
class RewardClientConfig:
    """The client: how actors call the replicas."""

    client_timeout_s: float = 10.0
    """Client: deadline of one score call, retries included."""
    client_retries: int = 3
    """Client: extra attempts after an UNAVAILABLE replica."""
    client_backoff_s: float = 0.05
    """Client: first retry delay (doubles per attempt, jittered)."""
    client_encoding: Literal["raw", "png", "jpeg"] = "raw"
    """Client: how frames travel (`raw` uint8 on loopback; `png`/`jpeg` across machines)."""


@dataclass(frozen=True)
class RewardComputeConfig:
    """The hardware: where the model runs and with how many threads."""

    device: str = "auto"
    """`auto`, `cpu` or `cuda`."""
    torch_threads: int = 0
    """Server: torch intra-op threads of a replica (0: its share of the cores next to the
    learner and actors, robofume/threads.py)."""


@dataclass(frozen=True)
class RewardConfig(
    RewardComputeConfig,
    RewardClientConfig,
    RewardServingConfig,
    RewardFinetuneConfig,
    RewardModelConfig,
):
    """The ``reward`` section: the success classifier, its fine-tuning, its gRPC replicas and their
    clients, defined by concern above.

    One flat section on the command line (``--reward.target_fpr``) and in presets.
    """
