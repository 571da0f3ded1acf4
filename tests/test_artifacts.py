"""Artifacts reach a node that shares no disk with the head, signed, and come back from it.

The head: its run directory and the registry on loopback (``deploy/registry.py``). The other
node: a run directory of its own (``ROBOFUME_RUN_DIR``) holding only a copy of the secret.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from robofume.artifacts import ArtifactError, FsspecStore, artifact_mac, fetch, publish
from robofume.auth import deployment_secret, link_token
from robofume.config import load_config
from robofume.node import (
    NODE_RUN_DIR_ENV,
    node_config,
    open_store,
    publish_head_artifacts,
    sync_learner,
    upload,
)
from robofume.telemetry import HeadClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def head(tmp_path):
    from deploy.registry import RegistryServer

    run = tmp_path / "head" / "run"
    data = tmp_path / "head" / "data"
    cfg = load_config("smoke", overrides=["--deploy.run_dir", str(run), "--data.dir", str(data)])
    secret = deployment_secret(cfg.deploy, create=True)
    (run / "reward").mkdir(parents=True)
    (run / "reward" / "model.pt").write_bytes(b"reward model bytes")
    (run / "pretrain" / "checkpoints").mkdir(parents=True)
    for step in (100, 200):
        (run / "pretrain" / "checkpoints" / f"ckpt_{step}.pt").write_bytes(b"pre %d" % step)
    (data / "sub").mkdir(parents=True)
    (data / "manifest.json").write_text("{}")
    (data / "sub" / "target.hdf5").write_bytes(b"episodes")
    server = RegistryServer(cfg, link_token(cfg.deploy), "127.0.0.1", 0, secret).start()
    cfg = cfg.replace(deploy=dataclasses.replace(cfg.deploy, head_address=server.address))
    try:
        yield cfg, server
    finally:
        server.stop()


def away_node(tmp_path, cfg, monkeypatch):
    """A node with its own run directory and a copy of the head's secret."""
    local = tmp_path / "node" / "run"
    (local / "auth").mkdir(parents=True)
    shutil.copy(tmp_path / "head" / "run" / "auth" / "secret", local / "auth" / "secret")
    monkeypatch.setenv(NODE_RUN_DIR_ENV, str(local))
    return node_config(cfg), local


def test_a_learner_away_from_the_head_fetches_its_start_and_the_dataset(head, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    cfg, _ = head
    node_cfg, local = away_node(tmp_path, cfg, monkeypatch)
    assert node_cfg.deploy.run_dir == str(local) and node_cfg.hash == cfg.hash
    got = sync_learner(node_cfg)
    ckpts = local / "pretrain" / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == ["ckpt_200.pt"]  # the newest only
    assert (ckpts / "ckpt_200.pt").read_bytes() == b"pre 200"
    assert (local / "data" / "sub" / "target.hdf5").read_bytes() == b"episodes"
    assert (local / "data" / "manifest.json").exists() and len(got) == 3
    assert sync_learner(node_cfg) == []  # what the node has is not fetched again

    # the learner's online checkpoint goes back to the head; a restart anywhere resumes there
    mine = local / "online" / "checkpoints" / "ckpt_250.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"online 250")
    assert upload(node_cfg, "online/checkpoints/ckpt_250.pt", mine)
    head_copy = tmp_path / "head" / "run" / "online" / "checkpoints" / "ckpt_250.pt"
    assert head_copy.read_bytes() == b"online 250"
    other, other_local = tmp_path / "other" / "run", None
    (other / "auth").mkdir(parents=True)
    shutil.copy(local / "auth" / "secret", other / "auth" / "secret")
    monkeypatch.setenv(NODE_RUN_DIR_ENV, str(other))
    other_cfg = node_config(cfg)
    sync_learner(other_cfg)
    other_local = other / "online" / "checkpoints" / "ckpt_250.pt"
    assert other_local.read_bytes() == b"online 250"
    assert not (other / "pretrain" / "checkpoints").exists()  # it resumes, not restarts


def test_the_head_refuses_unsigned_uploads_and_paths_outside_the_artifacts(head, tmp_path):
    cfg, server = head
    client = HeadClient(server.address, link_token(cfg.deploy))
    with pytest.raises(ArtifactError, match="not signed"):
        client.put_artifact("online/checkpoints/ckpt_9.pt", b"evil", "0" * 64)
    secret = deployment_secret(cfg.deploy)
    for key in ("data/manifest.json", "auth/secret", "online/../auth/secret"):  # head's, outside
        with pytest.raises(ArtifactError, match="400"):
            client.put_artifact(key, b"x", artifact_mac(secret, key, b"x"))
    for key in ("auth/secret", "online/../../etc/passwd", "status/learner.json"):
        with pytest.raises(ArtifactError, match="400"):
            client.get_artifact(key)
    with pytest.raises(ArtifactError, match="404"):
        client.get_artifact("online/checkpoints/ckpt_1.pt")
    stranger = HeadClient(server.address, "wrong token")
    with pytest.raises(ArtifactError, match="401"):
        stranger.get_artifact("reward/model.pt")
    assert not (tmp_path / "head" / "run" / "online").exists()


def test_a_node_with_another_secret_loads_nothing(head, tmp_path):
    cfg, _ = head
    other = cfg.replace(deploy=dataclasses.replace(cfg.deploy, run_dir=str(tmp_path / "x")))
    wrong = deployment_secret(other.deploy, create=True)
    with pytest.raises(ArtifactError, match="not signed with this deployment's secret"):
        fetch(open_store(cfg.deploy), "reward/model.pt", tmp_path / "x" / "model.pt", wrong)
    assert not (tmp_path / "x" / "model.pt").exists()


def test_a_storage_uri_holds_the_same_keys(tmp_path):
    store = FsspecStore(f"file://{tmp_path / 'bucket'}")
    src = tmp_path / "ckpt_7.pt"
    src.write_bytes(b"seven")
    secret = b"s" * 32
    publish(store, "online/checkpoints/ckpt_7.pt", src, secret)
    assert store.keys("online/checkpoints/") == ["online/checkpoints/ckpt_7.pt"]
    out = fetch(store, "online/checkpoints/ckpt_7.pt", tmp_path / "got" / "ckpt_7.pt", secret)
    assert out.read_bytes() == b"seven"
    (tmp_path / "bucket" / "online" / "checkpoints" / "ckpt_7.pt").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="damaged"):
        fetch(store, "online/checkpoints/ckpt_7.pt", tmp_path / "got2.pt", secret)
    with pytest.raises(ArtifactError, match="not in"):
        fetch(store, "reward/model.pt", tmp_path / "m.pt", secret)


def test_with_a_storage_uri_the_head_publishes_and_a_node_fetches_from_it(head, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    cfg, server = head
    server.stop()  # the bucket alone carries the artifacts
    bucket = f"file://{tmp_path / 'bucket'}"
    cfg = cfg.replace(deploy=dataclasses.replace(cfg.deploy, storage=bucket))
    assert publish_head_artifacts(cfg) == 4  # reward, newest pre-trained, two dataset files
    assert publish_head_artifacts(cfg) == 0  # already there: nothing sent twice
    assert FsspecStore(bucket).keys("pretrain/") == ["pretrain/checkpoints/ckpt_200.pt"]
    node_cfg, local = away_node(tmp_path, cfg, monkeypatch)
    got = sync_learner(node_cfg)
    assert (local / "pretrain" / "checkpoints" / "ckpt_200.pt").read_bytes() == b"pre 200"
    assert len(got) == 3 and (local / "data" / "sub" / "target.hdf5").read_bytes() == b"episodes"
