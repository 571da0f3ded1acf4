"""The reward model interface, checkpoints and the factory over backends.

``RewardModel.score(images, questions) -> P(yes)`` is all the server, the fine-tuning and the
evaluation code rely on. Backends (``reward_server.embedded``, ``.cnn``, ``.vlm``) add the
training hooks :meth:`RewardModel.trainable_parameters`, :meth:`RewardModel.prepare_training`
and :meth:`RewardModel.train_logits`.

Checkpoint layout: one file ``<dir>/model.pt`` (``torch.save`` of a dict) with ``format``,
``backend``, ``version``, ``threshold``, ``reward_cfg`` (the RewardConfig it was trained with,
which also fixes its questions), ``questions`` (task -> question seen in training), ``state``
(trainable weights only: the fusion head, or the LoRA adapter of a vlm) and ``meta`` (data dir,
held-out episode ids, held-out metrics, creation time).
"""

from __future__ import annotations

import abc
import hashlib
import io
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robofume.config.base import to_dict
from robofume.config.reward import RewardConfig
from robofume.questions import question_for

if TYPE_CHECKING:
    import torch

    from reward_server.dataset import ClassifierData

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model.pt"
FORMAT = 1


class CheckpointError(ValueError):
    """A reward checkpoint that is missing, unreadable or of another format."""


def resolve_device_name(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_images(images: Any, questions: Any) -> np.ndarray:
    """Validate a scoring batch; return the images as a contiguous uint8 array."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch")
    if isinstance(questions, str) or len(questions) != images.shape[0]:
        n = 1 if isinstance(questions, str) else len(questions)
        raise ValueError(f"got {images.shape[0]} images but {n} questions; pass one per image")
    return np.ascontiguousarray(images)


class RewardModel(abc.ABC):
    """A success classifier: P(yes) that an image shows the question answered with yes."""

    backend: str = ""
    score_chunk: int = 64
    """Largest number of frames run through the network at once while scoring."""

    def __init__(self, cfg: RewardConfig, device: str = "auto"):
        self.cfg = cfg
        self.device = resolve_device_name(device if device != "auto" else cfg.device)
        self.version = f"{self.backend}-untrained"
        self.threshold = float(cfg.threshold)
        self.questions: dict[str, str] = {}
        """Task -> question the model was trained with (answers for tasks beyond the registry)."""
        self.meta: dict[str, Any] = {}
        self.checkpoint = ""
        """The checkpoint file the model was loaded from ("" when trained in this process)."""
        self.checkpoint_time = 0.0
        """That file's modification time (unix seconds; 0 when not loaded from a file)."""

    # --- inference -------------------------------------------------------------------------
    def score(self, images: np.ndarray, questions: list[str]) -> np.ndarray:
        """P(yes) per image, float32 (N,)."""
        import torch

        images = check_images(images, questions)
        out = []
        self.eval()
        with torch.inference_mode():
            for i in range(0, len(images), self.score_chunk):
                chunk = images[i : i + self.score_chunk]
                logits = self.logits(chunk, list(questions[i : i + self.score_chunk]))
                out.append(torch.sigmoid(logits.float()).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The yes/no decision for each probability (``probs >= threshold``)."""
        return np.asarray(probs, np.float32) >= np.float32(self.threshold)

    def question_for(self, task: str) -> str:
        """The question this model is asked for ``task`` (UnknownTaskError if none)."""
        return question_for(task, self.cfg, known=self.questions)

    @abc.abstractmethod
    def logits(self, images: np.ndarray, questions: list[str]) -> torch.Tensor:
        """Log-odds of yes vs no, (N,), differentiable (no validation, one chunk)."""

    @abc.abstractmethod
    def eval(self) -> None:
        """Switch to inference mode."""

    # --- fine-tuning hooks -----------------------------------------------------------------
    @abc.abstractmethod
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the fine-tuning optimiser updates."""

    def prepare_training(self, data: ClassifierData) -> None:  # noqa: B027 - optional hook
        """Called once before fine-tuning on ``data`` (e.g. to cache backbone features)."""

    def finish_training(self) -> None:  # noqa: B027 - optional hook
        """Called after fine-tuning (drop caches)."""

    @abc.abstractmethod
    def train_logits(self, idx: np.ndarray, data: ClassifierData, augment: bool) -> torch.Tensor:
        """Log-odds for the training rows ``idx`` of ``data`` in training mode."""

    # --- checkpoints -----------------------------------------------------------------------
    @abc.abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint stores (trainable parts only)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write ``<path>/model.pt`` (``path`` may also name the file); set a new version."""
        import torch

        path = Path(path)
        file = path if path.suffix == ".pt" else path / CHECKPOINT_NAME
        file.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        self.version = make_version(self.backend, state, self.threshold)
        self.meta.update(meta or {})
        payload = {
            "format": FORMAT,
            "backend": self.backend,
            "version": self.version,
            "threshold": float(self.threshold),
            "reward_cfg": to_dict(self.cfg),
            "questions": dict(self.questions),
            "state": state,
            "meta": self.meta,
        }
        tmp = file.with_suffix(".pt.tmp")
        torch.save(payload, tmp)
        tmp.replace(file)
        log.info("saved reward model %s (threshold %.4f) to %s", self.version, self.threshold, file)
        return file


def make_version(backend: str, state: dict[str, Any], threshold: float) -> str:
    """``<backend>-<content hash>-<UTC time>``: unique per saved model, stable per content."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(state):
        buf = io.BytesIO()
        torch.save(state[key].contiguous(), buf)
        digest.update(key.encode())
        digest.update(buf.getvalue())
    digest.update(f"{threshold:.8f}".encode())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{backend}-{digest.hexdigest()[:10]}-{stamp}"


def checkpoint_file(path: str | Path) -> Path:
    """``model.pt`` inside a checkpoint directory, or the file itself."""
    path = Path(path)
    file = path / CHECKPOINT_NAME if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"reward checkpoint {file} does not exist")
    return file


def read_reward_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated."""
    import torch

    file = checkpoint_file(path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"reward checkpoint {file} is unreadable: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a robofume reward checkpoint (format {FORMAT})")
    for key in ("backend", "version", "threshold", "reward_cfg", "state"):
        if key not in payload:
            raise CheckpointError(f"reward checkpoint {file} lacks {key!r}")
    return payload
