"""RewardClient against real replicas on 127.0.0.1: round-robin, dead replica, deadlines."""

from __future__ import annotations

import socket
from concurrent.futures import Future

import numpy as np
import pytest
import reward_fixtures as fx

from reward_server.dataset import build_dataset
from reward_server.finetune import finetune_data
from reward_server.server import start_server_thread
from robofume.config.reward import RewardConfig
from robofume.reward_client import RewardClient, RewardRequestError, RewardUnavailable

CFG = RewardConfig(
    backend="cnn",
    text_encoder="hash",
    image_size=32,
    batch_size=16,
    max_wait_ms=2,
    client_timeout_s=10,
    client_backoff_s=0.02,
    health_check_interval_s=0.2,
)


@pytest.fixture(scope="module")
def model():
    data = build_dataset(fx.episodes(n_target=6, n_failure=2), CFG)
    return finetune_data(data, CFG, None, steps=10, device="cpu").model


def frames(n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.stack([fx.frame(rng, "right") for _ in range(n)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_round_robin_and_a_dead_replica_is_routed_around(model):
    a, b = start_server_thread(model, CFG), start_server_thread(model, CFG)
    client = RewardClient([a.address, b.address], CFG)
    try:
        assert sorted(client.wait_ready(all_replicas=True)) == sorted([a.address, b.address])
        imgs = frames(2)
        expected = model.score(imgs, [model.question_for("vase_forward")] * 2)
        results = [client.score(imgs, "vase_forward") for _ in range(4)]
        assert {r.address for r in results} == {a.address, b.address}  # both replicas used
        for r in results:
            np.testing.assert_allclose(r.probs, expected, atol=1e-5)
            assert r.version == model.version
            assert r.decisions.dtype == bool and r.decisions.shape == (2,)

        a.stop()  # replica a dies
        later = [client.score(imgs, "vase_forward") for _ in range(6)]
        assert {r.address for r in later} == {b.address}
        futures = [client.score_async(imgs, "vase_forward") for _ in range(4)]
        assert all(isinstance(f, Future) for f in futures)
        assert all(f.result(timeout=30).address == b.address for f in futures)
        assert client.healthy() == [b.address]
    finally:
        client.close()
        a.stop()
        b.stop()


def test_bad_request_and_no_replica_fail_clearly(model):
    handle = start_server_thread(model, CFG)
    dead = f"127.0.0.1:{free_port()}"
    try:
        with RewardClient([handle.address, dead], CFG, health_checks=False) as client:
            assert client.healthy() == [handle.address]  # probed on demand, not assumed
        with RewardClient([handle.address], CFG, health_checks=False) as client:
            with pytest.raises(RewardRequestError, match="unknown task 'nope'"):
                client.score(frames(1), "nope")
            with pytest.raises(ValueError, match="uint8"):
                client.score(frames(1).astype(np.float32), "vase_forward")
            assert client.score(frames(1)[0], question="done?").probs.shape == (1,)
            info = client.info()
            assert info["model_version"] == model.version and info["rejected"] >= 1
    finally:
        handle.stop()
    with RewardClient([dead], CFG, timeout_s=1.0, health_checks=False) as client:
        with pytest.raises(RewardUnavailable, match="no reward replica"):
            client.score(frames(1), "vase_forward")
        future = client.score_async(frames(1), "vase_forward")
        assert isinstance(future.exception(timeout=30), RewardUnavailable)
