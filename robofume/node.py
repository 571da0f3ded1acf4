"""This node's own files, and the artifacts it fetches from the head or the storage URI.

Services run wherever Ray places them. On the head they use the head's run directory. A node
started with ``ROBOFUME_RUN_DIR`` in its environment (``ROBOFUME_RUN_DIR=/data/robofume ray
start --address ...``) is another machine: its services keep their files there, fetch what
they need that the node lacks (:func:`sync_learner`, :func:`sync_reward`) from the store
(:func:`open_store`), and upload what a restart elsewhere needs (:func:`upload`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from robofume.artifacts import (
    ArtifactError,
    ArtifactStore,
    FsspecStore,
    HeadStore,
    fetch,
    newest_checkpoint,
    publish,
)
from robofume.config import DeployConfig, ExperimentConfig

log = logging.getLogger(__name__)

NODE_RUN_DIR_ENV = "ROBOFUME_RUN_DIR"
"""Set on a node that shares no disk with the head: its services' run directory."""


def node_run_dir() -> str:
    return os.environ.get(NODE_RUN_DIR_ENV, "")


def away_from_head() -> bool:
    """True on a node with its own run directory (it must fetch, upload and report)."""
    return bool(node_run_dir())


def node_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as this node runs it: its own run directory (``deploy`` is each process's own;
    what the processes must agree on, the config hash, is unchanged)."""
    local = node_run_dir()
    if not local or Path(local).resolve() == Path(cfg.deploy.run_dir).resolve():
        return cfg
    return cfg.replace(deploy=dataclasses.replace(cfg.deploy, run_dir=local))


def data_dir(cfg: ExperimentConfig) -> Path:
    """Where this node reads the offline dataset: ``data.dir`` on the head, a copy inside its
    own run directory elsewhere."""
    from robofume.run_dir import RunDir

    return RunDir.of(cfg).data if away_from_head() else Path(cfg.data.dir)


def head_address(deploy: DeployConfig) -> str:
    """The head's registry: ``deploy.head_address``; else, with the cluster open to other
    machines (``deploy.bind_host`` not loopback), the Ray head's host as this process's Ray
    knows it; else this machine."""
    if deploy.head_address:
        return deploy.head_address
    host = "127.0.0.1"
    if deploy.bind_host not in ("127.0.0.1", "localhost", "::1"):
        try:
            import ray

            if ray.is_initialized():
                host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]
        except Exception:  # not in Ray: this machine is the head
            pass
    return f"{host}:{deploy.head_port}"


def open_store(deploy: DeployConfig) -> ArtifactStore:
    """``deploy.storage`` when set, else the head's registry."""
    if deploy.storage:
        return FsspecStore(deploy.storage)
    from robofume.auth import link_token
    from robofume.telemetry import HeadClient

    return HeadStore(HeadClient(head_address(deploy), link_token(deploy), timeout_s=60.0))


def _secret(deploy: DeployConfig) -> bytes:
    from robofume.auth import deployment_secret

    return deployment_secret(deploy)


def sync_newest_checkpoint(
    deploy: DeployConfig, store: ArtifactStore, prefix: str, local_dir: Path
) -> Path | None:
    """Fetch the store's newest checkpoint under ``prefix`` unless ``local_dir`` has it or a
    newer one."""
    newest = newest_checkpoint(store.keys(prefix))
    if newest is None:
        return None
    mine = newest_checkpoint([p.name for p in local_dir.glob("ckpt_*.pt")])
    if mine is not None and mine[0] >= newest[0]:
        return None
    return fetch(store, newest[1], local_dir / Path(newest[1]).name, _secret(deploy))


def sync_learner(cfg: ExperimentConfig, store: ArtifactStore | None = None) -> list[Path]:
    """What the online learner needs on this node: its newest online checkpoint (a restart
    resumes there), else the pre-trained one; and the offline dataset."""
    if not away_from_head() and not cfg.deploy.storage:
        return []
    from robofume.run_dir import RunDir

    store = store or open_store(cfg.deploy)
    paths = RunDir.of(cfg)
    got = []
    online = sync_newest_checkpoint(
        cfg.deploy, store, "online/checkpoints/", paths.online / "checkpoints"
    )
    if online is not None:
        got.append(online)
    if online is None and not any((paths.online / "checkpoints").glob("ckpt_*.pt")):
        pre = sync_newest_checkpoint(
            cfg.deploy, store, "pretrain/checkpoints/", paths.pretrain / "checkpoints"
        )
        got += [pre] if pre is not None else []
    got += sync_dataset(cfg, store)
    log.info("learner node: %d artifact(s) fetched from %s", len(got), store.where)
    return got


def sync_dataset(cfg: ExperimentConfig, store: ArtifactStore) -> list[Path]:
    """The offline dataset's files this node lacks, fetched into :func:`data_dir`."""
    got = []
    for key in store.keys("data/"):
        dest = data_dir(cfg) / key[len("data/") :]
        if not dest.exists():
            got.append(fetch(store, key, dest, _secret(cfg.deploy)))
    return got


def upload_prepared(cfg: ExperimentConfig, phase: str) -> int:
    """After the reward fine-tune (``reward``) or pre-training (``pretrain``) ran on this
    node: its outputs go to the store, where the head and the other nodes find them; returns
    how many (0 on the head's own disk without a storage URI: they are in place)."""
    from robofume.artifacts import PREPARED, head_path, local_keys

    if not away_from_head() and not cfg.deploy.storage:
        return 0
    keys = local_keys(cfg, PREPARED[phase])  # this node's files: cfg is its own
    for key in keys:
        if not upload(cfg, key, head_path(cfg, key)):
            raise ArtifactError(f"{key} could not be uploaded from this node")
    return len(keys)


def fetch_prepared(cfg: ExperimentConfig, phase: str) -> list[Path]:
    """On the head, with ``deploy.storage`` set: bring back what a phase run elsewhere
    uploaded (the head's own checks and commands read its run directory)."""
    if not cfg.deploy.storage:
        return []
    from robofume.artifacts import PREPARED, head_path

    store = open_store(cfg.deploy)
    return [fetch(store, key, head_path(cfg, key), _secret(cfg.deploy))
            for key in store.keys(PREPARED[phase]) if not head_path(cfg, key).exists()]  # fmt: skip


def sync_reward(deploy: DeployConfig, checkpoint: Path) -> Path:
    """The reward model at ``checkpoint`` (a directory or a file), fetched if missing."""
    target = checkpoint / "model.pt" if checkpoint.suffix != ".pt" else checkpoint
    if target.exists():
        return checkpoint
    store = open_store(deploy)
    try:
        fetch(store, "reward/model.pt", target, _secret(deploy))
    except ArtifactError as err:
        raise FileNotFoundError(f"no reward model on this node and none fetched: {err}") from None
    return checkpoint


def upload(cfg: ExperimentConfig, key: str, path: Path) -> bool:
    """Leave ``path`` in the store as ``key`` when this node is not the head's disk (or a
    storage URI is set); False (logged) when the store is unreachable: the file stays here."""
    if not away_from_head() and not cfg.deploy.storage:
        return False
    try:
        publish(open_store(cfg.deploy), key, path, _secret(cfg.deploy))
        return True
    except (OSError, ArtifactError) as err:
        log.warning("could not upload %s (%s); kept on this node only", key, err)
        return False


def publish_head_artifacts(cfg: ExperimentConfig) -> int:
    """On the head, with ``deploy.storage`` set: upload the reward model, the pre-trained
    checkpoints' newest and the dataset (what is already there is left)."""
    if not cfg.deploy.storage:
        return 0
    from robofume.artifacts import head_path, local_keys

    store = open_store(cfg.deploy)
    present = set(store.keys("reward/")) | set(store.keys("pretrain/")) | set(store.keys("data/"))
    keys = ["reward/model.pt"] if head_path(cfg, "reward/model.pt").exists() else []
    newest = newest_checkpoint(local_keys(cfg, "pretrain/checkpoints/"))
    keys += [newest[1]] if newest else []
    keys += local_keys(cfg, "data/")
    sent = 0
    for key in keys:
        if key not in present:
            publish(store, key, head_path(cfg, key), _secret(cfg.deploy))
            sent += 1
    log.info("storage %s: %d artifact(s) uploaded", cfg.deploy.storage, sent)
    return sent
