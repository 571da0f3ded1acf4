"""Reward replicas placed by a real local Ray (ray.init(num_cpus=2)), each serving gRPC itself."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import numpy as np
import portpicker
import pytest
import reward_fixtures as fx

from reward_server.dataset import build_dataset
from reward_server.finetune import finetune_data
from robofume.config import ExperimentConfig
from robofume.config.reward import RewardConfig
from robofume.reward_client import RewardClient

ray = pytest.importorskip("ray")


def test_two_ray_replicas_serve_and_survive_one_dying(tmp_path):
    reward = RewardConfig(
        backend="cnn",
        text_encoder="hash",
        image_size=32,
        batch_size=8,
        replica_cpus=1.0,
        health_check_interval_s=0.2,
    )
    data = build_dataset(fx.episodes(n_target=4, n_failure=2), reward)
    ckpt = finetune_data(data, reward, tmp_path / "reward", steps=5, device="cpu").checkpoint
    cfg = ExperimentConfig(reward=reward)
    run_dir = str(tmp_path / "run")
    cfg = cfg.replace(
        deploy=dataclasses.replace(cfg.deploy, num_reward_replicas=2, run_dir=run_dir)
    )

    from reward_server.ray_replicas import launch_replicas

    # address="local": a fresh instance even when a cluster already runs on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    replicas = None
    try:
        port = portpicker.pick_unused_port()
        while portpicker.is_port_free(port + 1) is False:
            port = portpicker.pick_unused_port()
        replicas = launch_replicas(ckpt, cfg, port=port)  # a fixed port: Ray restarts them
        assert len(replicas.addresses) == 2 and len(set(replicas.addresses)) == 2
        assert all(a.startswith("127.0.0.1:") for a in replicas.addresses)
        info = replicas.info()
        assert len({i["pid"] for i in info}) == 2  # two processes placed by Ray
        with RewardClient(replicas.addresses, cfg) as client:
            client.wait_ready(all_replicas=True)
            imgs = np.stack([fx.frame(np.random.default_rng(i), "left") for i in range(2)])
            seen = {client.score(imgs, "vase_forward").address for _ in range(4)}
            assert seen == set(replicas.addresses)
            os.kill(info[0]["pid"], signal.SIGKILL)  # replica 0's process dies
            while True:  # wait until it is really gone
                try:
                    os.kill(info[0]["pid"], 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            later = [client.score(imgs, "vase_forward") for _ in range(4)]
            assert {r.address for r in later} == {info[1]["address"]}
            assert all(r.probs.shape == (2,) for r in later)
            client.wait_ready(all_replicas=True, timeout=120)  # Ray restarted it, same port
            again = client.info(info[0]["address"])
            assert again["restarts"] == 1 and client.info(info[1]["address"])["restarts"] == 0
            assert again["checkpoint"] == str(Path(ckpt).resolve())
            assert abs(again["checkpoint_time"] - Path(ckpt).stat().st_mtime) < 1e-3
            assert again["started_at"] > info[0]["started_at"]
            from deploy.status import reward_restart_line

            line = reward_restart_line({**again, "healthy": True})
            assert "restarts=1 checkpoint=reward/model.pt checkpoint_age=" in line
    finally:
        if replicas is not None:
            replicas.stop()
        ray.shutdown()
