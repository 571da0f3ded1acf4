"""kill -9 of the replay server: the actors deliver again what its restored checkpoint lacks,
and the learner's sampler sees every transition exactly once (real Reverb, real processes)."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict

import numpy as np
import portpicker
import pytest
from replay_support import replay_config, start_server_process, stop_process

from actor.delivery import DeliveryQueue
from actor.episodes import Segment
from actor.outbox import Outbox
from robofume.auth import deployment_secret
from robofume.replay_client.info import stats_at
from robofume.replay_client.marker import read_marker
from robofume.replay_client.sampler import OnlineSampler
from robofume.replay_client.writer import EpisodeWriter

pytestmark = pytest.mark.timeout(180)

# checkpoints only on SIGUSR1 (and a clean stop), so the test decides what each one holds
OVERRIDES = (
    "--replay.min_size_to_sample", "1",
    "--learner.utd_ratio", "100",
    "--replay.checkpoint_every_s", "0",
)  # fmt: skip
STEPS = 6


def coded_segment(cfg, seq: int) -> Segment:
    """A labelled segment (no success: one piece) whose frame t has pixel (0,0) = (seq, t)."""
    s, p, a = cfg.env.image_size, cfg.network.proprio_dim, cfg.env.action_dim

    def frame(t: int) -> np.ndarray:
        img = np.zeros((s, s, 3), np.uint8)
        img[0, 0] = (seq, t, 7)
        return img

    seg = Segment(seq, "vase_forward", "l", [frame(0)], [np.zeros(p, np.float32)])
    for t in range(STEPS):
        step_id = seq * 100 + t
        seg.add(np.zeros(a, np.float32), frame(t + 1), np.zeros(p, np.float32), step_id, False)
        seg.set_label(t, 0.0, False)
    return seg


def actor_queue(cfg, address: str, spill_dir) -> DeliveryQueue:
    queue = DeliveryQueue(
        lambda: EpisodeWriter(address, cfg, timeout_s=2.0),
        None,
        spill_dir=spill_dir,
        memory_limit=10,
        label_wait_s=0.0,
        retry_s=0.2,
        discount=cfg.learner.discount,
        address=address,
        outbox=Outbox(spill_dir / "outbox", memory_limit=2, max_episodes=100),
        marker_poll_s=3600.0,  # no idle polls: only writes read the marker here
    )
    queue.start()
    return queue


def deliver(queue: DeliveryQueue, cfg, seqs: range) -> None:
    for seq in seqs:
        queue.put(coded_segment(cfg, seq))
    assert queue.wait_idle(60), f"segments {list(seqs)} not delivered"


def checkpoint(proc, address: str, completed: int) -> None:
    """SIGUSR1: the server checkpoints; wait until its marker counts ``completed``."""
    import reverb

    os.kill(proc.pid, signal.SIGUSR1)
    client = reverb.Client(address)
    deadline = time.monotonic() + 30
    while read_marker(client, 2.0).completed < completed or read_marker(client, 2.0).in_progress:
        assert time.monotonic() < deadline, "the checkpoint did not complete"
        time.sleep(0.05)


def test_kill_9_loses_nothing_and_duplicates_never_reach_a_batch(tmp_path):
    import reverb

    run_dir = tmp_path / "run"
    cfg = replay_config(run_dir, replay={"min_size_to_sample": 1}, learner={"utd_ratio": 100})
    port = portpicker.pick_unused_port()
    address = f"127.0.0.1:{port}"
    proc = start_server_process(port, run_dir, *OVERRIDES)
    first, second = actor_queue(cfg, address, tmp_path / "a1"), None
    sampler = None
    try:
        second = actor_queue(cfg, address, tmp_path / "a2")
        deliver(first, cfg, range(0, 3))  # A: in checkpoint 1, and actor 1 learns it
        checkpoint(proc, address, 1)
        deliver(first, cfg, range(3, 6))  # B: in checkpoint 2, but actor 1 does not know
        assert len(first.outbox) == 3
        checkpoint(proc, address, 2)
        deliver(second, cfg, range(6, 9))  # C: after the last checkpoint
        assert len(second.outbox) == 3
        epoch = read_marker(reverb.Client(address), 2.0).epoch

        proc.kill()  # kill -9: no last checkpoint
        proc.wait()
        proc = start_server_process(port, run_dir, *OVERRIDES)
        restored = stats_at(address)["size"]
        assert restored == 6 * STEPS  # A and B are back; C is gone

        deliver(first, cfg, range(9, 10))  # the actors go on and notice the new epoch
        deliver(second, cfg, range(10, 11))
        for queue in (first, second):
            assert queue.outbox.restarts_seen == 1
            assert queue.outbox.epoch != epoch
        assert first.outbox.redelivered == 3  # B (a duplicate: the checkpoint has it)
        assert second.outbox.redelivered == 3  # C (lost without it)
        assert stats_at(address)["size"] == (11 + 3) * STEPS

        expected = {(seq, t) for seq in range(11) for t in range(STEPS)}
        keys_of: dict[tuple[int, int], set[int]] = defaultdict(set)
        sampler = OnlineSampler(
            address, 8, timeout_s=0.5, rpc_timeout_s=2, secret=deployment_secret(cfg.deploy)
        )
        keep_mask = sampler._keep_mask

        def recording(keys, ids, steps):  # which item each row that reaches a batch came from
            keep = keep_mask(keys, ids, steps)
            for key, eid, step in zip(keys[keep], ids[keep], steps[keep], strict=True):
                keys_of[(int(eid), int(step))].add(int(key))
            return keep

        sampler._keep_mask = recording
        seen: set[tuple[int, int]] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            seen != expected or sampler.duplicates_deleted < STEPS * 3
        ):
            batch = sampler.next(timeout=1.0)
            if batch is None:
                continue
            assert len(batch["reward"]) == 8  # dropped rows are refilled: full batches
            pixel = batch["image"][:, 0, 0, :2].tolist()
            seen |= {(int(seq), int(t)) for seq, t in pixel}
        assert seen == expected, f"lost: {sorted(expected - seen)[:10]}"
        assert sampler.duplicates_deleted == 3 * STEPS  # B's copies, each once
        assert sampler.duplicates_dropped >= sampler.duplicates_deleted
        assert all(len(keys) == 1 for keys in keys_of.values())  # one copy reaches batches
        assert len(keys_of) == len(expected)
        assert stats_at(address)["size"] == 11 * STEPS  # the duplicates were deleted
    finally:
        if sampler is not None:
            sampler.close()
        for queue in (first, second):
            if queue is not None:
                queue.close(1.0)
        stop_process(proc)


def test_a_sampler_running_across_a_restart_keeps_the_redelivered_copies(tmp_path):
    """The sampler saw items that the restart lost; their redelivered copies (new keys) are
    the only ones left and must not be taken for duplicates."""
    run_dir = tmp_path / "run"
    cfg = replay_config(run_dir, replay={"min_size_to_sample": 1}, learner={"utd_ratio": 100})
    port = portpicker.pick_unused_port()
    address = f"127.0.0.1:{port}"
    proc = start_server_process(port, run_dir, *OVERRIDES)
    queue = actor_queue(cfg, address, tmp_path / "a")
    sampler = OnlineSampler(
        address, 4, timeout_s=0.5, rpc_timeout_s=2, secret=deployment_secret(cfg.deploy)
    )
    try:
        deliver(queue, cfg, range(0, 2))
        checkpoint(proc, address, 1)
        deliver(queue, cfg, range(2, 4))  # after the last checkpoint: lost by the kill
        seen: set[tuple[int, int]] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 4 * STEPS:  # sample every item
            batch = sampler.next(timeout=1.0)
            if batch is not None:
                seen |= {(int(a), int(b)) for a, b in batch["image"][:, 0, 0, :2].tolist()}
        assert len(seen) == 4 * STEPS

        proc.kill()
        proc.wait()
        proc = start_server_process(port, run_dir, *OVERRIDES)
        deliver(queue, cfg, range(4, 5))  # the outbox notices the restart and redelivers 2-3
        assert queue.outbox.redelivered == 2
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sampler.next(timeout=1.0)
        assert sampler.duplicates_deleted == 0
        assert stats_at(address)["size"] == 5 * STEPS  # nothing deleted
    finally:
        sampler.close()
        queue.close(1.0)
        stop_process(proc)


def test_checkpoint_from_before_markers_is_refused(tmp_path):
    """A checkpoint whose tables have no episode ids or marker names the problem."""
    import reverb
    import tensorflow as tf

    from replay.server import start_replay_server
    from robofume.replay_client.errors import ReplayConfigMismatchError
    from robofume.replay_client.info import server_info
    from robofume.replay_client.tables import make_tables

    cfg = replay_config(tmp_path)
    ckpt = tmp_path / "old"
    old = [t for t in make_tables(cfg) if not t.name.startswith("replay_marker")]
    sig = {"x": tf.TensorSpec((), tf.int64)}
    old[0] = reverb.Table("online", reverb.selectors.Uniform(), reverb.selectors.Fifo(), 10,
                          reverb.rate_limiters.MinSize(1), signature=sig)  # fmt: skip
    server = reverb.Server(old, checkpointer=reverb.checkpointers.DefaultCheckpointer(str(ckpt)))
    client = reverb.Client(f"127.0.0.1:{server.port}")
    server_info(client, 5.0)  # connected (the port may be one an earlier test closed)
    client.checkpoint()
    server.stop()
    with pytest.raises(ReplayConfigMismatchError, match="without episode ids and checkpoint"):
        start_replay_server(cfg, checkpoint_dir=ckpt, heartbeat=False)


def test_server_stats_tell_a_restart(tmp_path):
    import reverb

    from replay.server import start_replay_server

    cfg = replay_config(tmp_path)
    first = start_replay_server(cfg, checkpoint_dir=tmp_path / "ckpt", heartbeat=False)
    try:
        stats = first.stats()
        assert stats["restored_checkpoint"] is None and stats["last_checkpoint_age_s"] is None
        assert read_marker(reverb.Client(first.address), 2.0).to_dict() == {
            "epoch": first.epoch, "completed": 0, "in_progress": False,
        }  # fmt: skip
        path = first.checkpoint()
        assert read_marker(reverb.Client(first.address), 2.0).completed == 1
        assert 0 <= first.stats()["last_checkpoint_age_s"] < 30
        port = first.port
    finally:
        first.stop(checkpoint=False)
    again = start_replay_server(cfg, port=port, checkpoint_dir=tmp_path / "ckpt", heartbeat=False)
    try:
        stats = again.stats()
        assert stats["epoch"] != first.epoch and stats["restored_epoch"] == first.epoch
        assert stats["restored_checkpoint"] == path and stats["checkpoints_completed"] == 1
        marker = read_marker(reverb.Client(again.address), 2.0)
        assert (marker.epoch, marker.completed, marker.in_progress) == (again.epoch, 1, False)
    finally:
        again.stop(checkpoint=False)


def test_status_shows_replay_restarts():
    from deploy.status import format_report

    now = time.time()
    replay = {"address": "127.0.0.1:8000", "healthy": True, "epoch": 42, "started_at": now - 65,
              "restored_checkpoint": "/r/replay/2026-01-01T00:00", "checkpoints_completed": 3,
              "last_checkpoint_time": now - 130}  # fmt: skip
    actor = {"state": "running", "replay_restarts_seen": 1, "redelivered_episodes": 7,
             "retained_episodes": 2}  # fmt: skip
    reward = {"address": "127.0.0.1:8010", "healthy": True, "model_version": "cnn-1",
              "started_at": now - 30, "restarts": 2, "checkpoint": "/r/reward/model.pt",
              "checkpoint_time": now - 3700}  # fmt: skip
    report = {"run_dir": "r", "config_hash": "h", "phases": None, "reward": [reward],
              "learner": None, "replay": replay, "actors": {"actor_0": actor}}  # fmt: skip
    text = format_report(report)
    assert "up=0m30s restarts=2 checkpoint=reward/model.pt checkpoint_age=1h01m" in text
    assert "epoch=42 up=1m0" in text and "restored=2026-01-01T00:00" in text
    assert "checkpoints=3 last_checkpoint_age=2m1" in text
    assert "replay_restarts_seen=1 redelivered_episodes=7 retained_episodes=2" in text


def test_a_forged_marker_covers_nothing_and_restarts_nothing(tmp_path):
    """Someone on the network overwrites the marker: more checkpoints than were written (the
    actors would forget what they keep), then a new epoch (a fake restart). Actors and the
    learner's sampler check its authenticator and ignore it; delivery goes on."""
    import reverb

    from replay.server import start_replay_server
    from robofume.replay_client.errors import ReplayMarkerForgedError
    from robofume.replay_client.marker import Marker, write_marker

    run_dir = tmp_path / "run"
    cfg = replay_config(run_dir, replay={"min_size_to_sample": 1}, learner={"utd_ratio": 100})
    server = start_replay_server(cfg, checkpoint_dir=run_dir / "replay", heartbeat=False)
    queue = actor_queue(cfg, server.address, tmp_path / "a")
    try:
        deliver(queue, cfg, range(0, 2))
        assert len(queue.outbox) == 2
        genuine = EpisodeWriter(server.address, cfg).read_marker()
        attacker = reverb.Client(server.address)
        write_marker(attacker, Marker(genuine.epoch, genuine.completed + 5, False))
        with pytest.raises(ReplayMarkerForgedError, match="fails authentication"):
            EpisodeWriter(server.address, cfg).read_marker()
        deliver(queue, cfg, range(2, 3))  # delivery goes on
        assert len(queue.outbox) == 3 and queue.outbox.covered == 0
        assert queue.outbox.forged_markers >= 1
        write_marker(attacker, Marker(genuine.epoch + 1, 0, False), secret=b"x" * 32)  # wrong key
        deliver(queue, cfg, range(3, 4))
        assert queue.outbox.restarts_seen == 0 and queue.outbox.redelivered == 0
        assert len(queue.outbox) == 4
        assert stats_at(server.address)["size"] == 4 * STEPS  # nothing written twice
        sampler = OnlineSampler(server.address, 4, timeout_s=0.5, rpc_timeout_s=2,
                                secret=deployment_secret(cfg.deploy))  # fmt: skip
        try:
            assert sampler._follow_epoch() == "unknown"  # the forged epoch is not followed
        finally:
            sampler.close()
        server.checkpoint()  # the server's own marker again: it covers what it holds
        deliver(queue, cfg, range(4, 5))
        # 0-1 were read genuine before checkpoint 1; 2-3 were not, so they wait for the next
        assert queue.outbox.covered == 2 and len(queue.outbox) == 3
        server.checkpoint()
        deliver(queue, cfg, range(5, 6))
        assert queue.outbox.covered == 5 and len(queue.outbox) == 1
    finally:
        queue.close(1.0)
        server.stop(checkpoint=False)
