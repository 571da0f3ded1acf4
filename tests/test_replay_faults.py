"""Replay server killed and restarted mid-run: clients survive, checkpointed items are kept."""

from __future__ import annotations

import time

import portpicker
import pytest
from replay_support import coded_episode, replay_config, start_server_process, stop_process

from replay.server import list_replay_checkpoints
from robofume.auth import deployment_secret
from robofume.replay_client.errors import ReplayUnavailableError
from robofume.replay_client.info import stats_at
from robofume.replay_client.sampler import OnlineSampler
from robofume.replay_client.weights import WeightsClient
from robofume.replay_client.writer import EpisodeWriter

OVERRIDES = ("--replay.min_size_to_sample", "1", "--learner.utd_ratio", "100")


def test_server_kill_and_restart(tmp_path):
    import reverb

    run_dir = tmp_path / "run"
    cfg = replay_config(run_dir, replay={"min_size_to_sample": 1}, learner={"utd_ratio": 100})
    port = portpicker.pick_unused_port()
    address = f"127.0.0.1:{port}"
    proc = start_server_process(port, run_dir, *OVERRIDES)
    sampler = None
    try:
        writer = EpisodeWriter(address, cfg, timeout_s=2)
        weights = WeightsClient(address, timeout_s=2, secret=b"0" * 64)
        writer.write(coded_episode(cfg, 1, 20))
        weights.publish({"w": [1.0, 2.0]}, version=4, config_hash=cfg.hash)
        reverb.Client(address).checkpoint()
        writer.write(coded_episode(cfg, 2, 5))  # after the checkpoint: lost with a hard kill
        sampler = OnlineSampler(
            address, 8, timeout_s=0.5, rpc_timeout_s=2, secret=deployment_secret(cfg.deploy)
        )
        assert sampler.next(timeout=20) is not None

        proc.kill()  # a crash: no final checkpoint
        proc.wait()
        with pytest.raises(ReplayUnavailableError):
            writer.write(coded_episode(cfg, 3, 5))
        with pytest.raises(ReplayUnavailableError):
            weights.latest_version()
        for _ in range(3):  # the sampler neither raises nor blocks the learner
            sampler.next(timeout=0.5)
        assert sampler._thread.is_alive()

        proc = start_server_process(port, run_dir, *OVERRIDES)
        stats = stats_at(address)
        assert stats["size"] == 20  # everything checkpointed is back
        assert weights.latest_version() == 4
        writer.write(coded_episode(cfg, 3, 20))
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while 3 not in seen and time.monotonic() < deadline:
            batch = sampler.next(timeout=1.0)
            if batch is not None:
                seen |= set(batch["image"][:, 0, 0, 0].tolist())
        assert 3 in seen, f"sampler did not resume after the restart ({sampler.state})"
        assert seen <= {1, 2, 3}
    finally:
        if sampler is not None:
            sampler.close()
        before = {p.name for p in list_replay_checkpoints(run_dir / "replay")}
        stop_process(proc)  # SIGTERM: the server checkpoints on the way out
    after = {p.name for p in list_replay_checkpoints(run_dir / "replay")}
    assert after and after != before
