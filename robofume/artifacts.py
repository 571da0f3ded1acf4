"""Artifacts across machines: what a service needs reaches the node it runs on.

A service that Ray places on a worker node shares no disk with the head. What it needs from
the head, and what it must leave behind for a restart elsewhere, travel as *artifacts*, named
by keys that mirror the head's run directory:

| key | what | written by |
|---|---|---|
| ``reward/model.pt`` | the fine-tuned reward model | the reward phase, where it runs |
| ``pretrain/checkpoints/ckpt_N.pt`` | offline pre-training | the pretrain phase, where it runs |
| ``data/<file>`` | the offline dataset (``data.dir`` on the head) | the head (generate) |
| ``online/checkpoints/ckpt_N.pt`` | the online learner | the learner, wherever it runs |

Two stores hold them, the same keys in both:

- the **head** (default): the head's registry serves its own files
  (``GET /v1/artifacts/<key>``) and keeps what services upload (``PUT``), in its run directory;
- a **storage URI** (``deploy.storage``: ``file:///...``, ``s3://bucket/run``, ``gs://...``),
  through fsspec; ``up`` uploads the head's artifacts there once they exist.

The reward fine-tune and pre-training run where ``deploy.prepare_resources`` places them
(``deploy/remote_phase.py``); on another node they fetch the dataset and upload what they
made, which then also lands in the head's run directory.

Every artifact carries an HMAC of its key and content under the deployment secret
(:func:`artifact_mac`): a node loads nothing that a holder of the secret did not write, and
a file that arrives damaged is refused, not loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)

READ_ONLY = ("data/",)
"""Prefixes only the head writes."""
PREPARED = {"reward": "reward/", "pretrain": "pretrain/checkpoints/"}
"""What each preparation phase produces, by phase: it may run on another node and upload it."""
WRITABLE = ("online/checkpoints/", *PREPARED.values())
"""Prefixes services upload to."""
KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
CKPT = re.compile(r"(?:^|/)ckpt_(\d+)\.pt$")
MAC_SUFFIX = ".mac"


class ArtifactError(RuntimeError):
    """An artifact is missing, refused, or does not authenticate."""


def check_key(key: str, writable: bool = False) -> str:
    """``key`` if it is a plain relative name under an artifact prefix, else ValueError."""
    if not isinstance(key, str) or not KEY.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"artifact key must be a plain relative path, got {key!r}")
    allowed = WRITABLE if writable else READ_ONLY + WRITABLE
    if not key.startswith(allowed) or key.endswith(MAC_SUFFIX):
        raise ValueError(f"artifact key {key!r} is not under {', '.join(allowed)}")
    return key


def artifact_mac(secret: bytes, key: str, data: bytes) -> str:
    """HMAC-SHA256 of the key and the content's SHA-256, hex."""
    digest = hashlib.sha256(data).digest()
    return hmac.new(secret, key.encode() + b"\0" + digest, hashlib.sha256).hexdigest()


def head_path(cfg: ExperimentConfig, key: str) -> Path:
    """Where the head keeps ``key``: ``data/...`` in ``data.dir``, the rest in its run dir."""
    from robofume.run_dir import RunDir

    check_key(key)
    if key.startswith("data/"):
        return Path(cfg.data.dir) / key[len("data/") :]
    return RunDir.of(cfg).root / key


def local_keys(cfg: ExperimentConfig, prefix: str) -> list[str]:
    """The keys under ``prefix`` that the head's files hold (hidden and partial files left out)."""
    base = head_path(cfg, prefix.rstrip("/") + "/x").parent
    if not base.is_dir():
        return []
    keys = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            key = prefix.rstrip("/") + "/" + rel
            if KEY.fullmatch(key) and not key.endswith((MAC_SUFFIX, ".tmp")):
                keys.append(key)
    return keys


class ArtifactStore(Protocol):
    where: str

    def keys(self, prefix: str) -> list[str]: ...

    def get(self, key: str) -> tuple[bytes, str]:
        """(content, mac); ArtifactError when absent."""
        ...

    def put(self, key: str, data: bytes, mac: str) -> None: ...


class HeadStore:
    """The head's registry as the store (``robofume.telemetry.HeadClient``)."""

    def __init__(self, client: object):
        self.client = client
        self.where = f"the head's registry at {client.address}"  # type: ignore[attr-defined]

    def keys(self, prefix: str) -> list[str]:
        return self.client.artifact_keys(prefix)  # type: ignore[attr-defined]

    def get(self, key: str) -> tuple[bytes, str]:
        return self.client.get_artifact(key)  # type: ignore[attr-defined]

    def put(self, key: str, data: bytes, mac: str) -> None:
        self.client.put_artifact(key, data, mac)  # type: ignore[attr-defined]


class FsspecStore:
    """A storage URI through fsspec; each artifact's MAC in ``<key>.mac`` beside it."""

    def __init__(self, uri: str):
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.root = self.root.rstrip("/")
        self.where = uri

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not self.fs.exists(base):
            return []
        found = []
        for path in self.fs.find(base):
            key = path[len(self.root) + 1 :] if path.startswith(self.root) else path
            key = key.lstrip("/")
            if KEY.fullmatch(key) and not key.endswith(MAC_SUFFIX):
                found.append(key)
        return sorted(found)

    def get(self, key: str) -> tuple[bytes, str]:
        try:
            data = self.fs.cat_file(self._path(key))
            mac = self.fs.cat_file(self._path(key) + MAC_SUFFIX).decode().strip()
        except FileNotFoundError:
            raise ArtifactError(f"{key} is not in {self.where}") from None
        return data, mac

    def put(self, key: str, data: bytes, mac: str) -> None:
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)
        self.fs.pipe_file(path + MAC_SUFFIX, mac.encode())  # last: a key without it is unread


def fetch(store: ArtifactStore, key: str, dest: Path, secret: bytes) -> Path:
    """Download ``key`` to ``dest`` (atomically) after checking its MAC."""
    check_key(key)
    data, mac = store.get(key)
    if not hmac.compare_digest(str(mac), artifact_mac(secret, key, data)):
        raise ArtifactError(
            f"{key} from {store.where} is not signed with this deployment's secret (or arrived "
            "damaged); refused"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    log.info("artifact %s: %d bytes from %s", key, len(data), store.where)
    return dest


def publish(store: ArtifactStore, key: str, src: Path, secret: bytes) -> None:
    """Upload the file ``src`` as ``key``, signed."""
    check_key(key)
    data = Path(src).read_bytes()
    store.put(key, data, artifact_mac(secret, key, data))


def newest_checkpoint(keys: list[str]) -> tuple[int, str] | None:
    """(update, key) of the newest ``ckpt_N.pt`` among ``keys``."""
    found = [(int(m.group(1)), k) for k in keys if (m := CKPT.search(k))]
    return max(found) if found else None
