"""The VLM success classifier and its server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RewardConfig:
    """Reward model, fine-tuning and the batched gRPC reward server."""

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
    question_template: str = "Is the robot done with the task: {instruction}? Answer yes or no."
    """Template turning a task instruction into a yes/no question."""
    question_overrides: dict[str, str] = field(default_factory=dict)
    """Per-task questions, keyed by task name, replacing the template."""
    positive_frames: int = 3
    """The last N frames of each target demo are labelled 'yes'."""
    include_prior: bool = False
    """Also use prior demos as training data."""
    heldout_fraction: float = 0.2
    """Fraction of episodes held out for evaluation (split by episode)."""
    target_fpr: float = 0.02
    """The decision threshold is chosen for this false-positive rate on held-out data."""
    threshold: float = 0.5
    """Decision threshold on P(yes) (replaced by the tuned one in a checkpoint)."""
    steps: int = 2_000
    """Fine-tuning steps."""
    batch_size: int = 32
    """Fine-tuning batch size."""
    lr: float = 1e-3
    """Fine-tuning learning rate (head; LoRA for vlm)."""
    lora_rank: int = 8
    """LoRA rank for the vlm backend."""
    negative_weight: float = 2.0
    """Loss weight of 'no' examples (pushes towards a low false-positive rate)."""
    max_batch_size: int = 32
    """Server: largest dynamic batch."""
    max_wait_ms: float = 5.0
    """Server: longest a request waits for its batch to fill."""
    max_message_mb: int = 16
    """Server: largest accepted request message."""
    device: str = "auto"
    """`auto`, `cpu` or `cuda`."""
    seed: int = 0
    """Seed of fine-tuning."""
