"""The outbox's coverage rule and redelivery after a replay restart, with fake markers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actor.delivery import DeliveryQueue
from actor.episodes import Segment
from actor.outbox import PIECE_IDS_META, Outbox, assign_episode_ids
from robofume.replay_client.errors import ReplayUnavailableError
from robofume.replay_client.marker import Marker
from robofume.replay_client.writer import EPISODE_ID_META
from robofume.types import Episode

E1, E2 = 1_000, 2_000


def episode(n: int, steps: int = 3) -> Episode:
    images = np.full((steps + 1, 4, 4, 3), n, np.uint8)
    return Episode(
        images=images,
        proprio=np.zeros((steps + 1, 2), np.float32),
        actions=np.zeros((steps, 2), np.float32),
        rewards=np.zeros(steps, np.float32),
        terminals=np.zeros(steps, bool),
        success=np.zeros(steps, bool),
        task="vase_forward",
        language="l",
        kind="online",
        mc_returns=np.zeros(steps, np.float32),
        meta={"n": n, EPISODE_ID_META: 100 + n},
    )


def test_coverage_rule():
    idle, busy = Marker(E1, 3, False), Marker(E1, 3, True)
    assert not Marker(E1, 3, False).covers(idle)
    assert not Marker(E1, 3, True).covers(idle)  # the checkpoint after the read is running
    assert Marker(E1, 4, False).covers(idle)
    assert Marker(E1, 4, True).covers(idle)
    # a checkpoint was running at the read: it may have missed the write; the next one counts
    assert not Marker(E1, 4, False).covers(busy)
    assert not Marker(E1, 4, True).covers(busy)
    assert Marker(E1, 5, False).covers(busy)
    assert not Marker(E2, 99, False).covers(idle)  # another epoch never covers


def test_kept_until_a_checkpoint_holds_it(tmp_path):
    box = Outbox(tmp_path, memory_limit=10, max_episodes=100)
    box.observe(Marker(E1, 0, False))
    box.add(episode(1))
    box.observe(Marker(E1, 0, False))
    box.add(episode(2))
    box.observe(Marker(E1, 0, True))  # written while checkpoint 1 was being written
    assert len(box) == 2
    box.observe(Marker(E1, 1, False))
    assert len(box) == 1 and box.covered == 1  # checkpoint 1 holds 1, maybe not 2
    box.observe(Marker(E1, 1, True))  # checkpoint 2 is being written
    assert len(box) == 1
    box.observe(Marker(E1, 2, False))
    assert len(box) == 0 and box.covered == 2 and box.restarts_seen == 0


def test_restart_makes_the_uncovered_due_in_order(tmp_path):
    box = Outbox(tmp_path, memory_limit=10, max_episodes=100)
    box.observe(Marker(E1, 0, False))
    for n in range(4):
        box.add(episode(n))
        box.observe(Marker(E1, 0 if n < 2 else 1, False))
    box.observe(Marker(E1, 1, False))  # episodes 0 and 1 are in checkpoint 1
    assert len(box) == 2
    assert box.observe(Marker(E2, 1, False)) is True
    assert box.restarts_seen == 1 and box.due == 2
    sent = []
    while (ep := box.next_due()) is not None:
        sent.append(ep.meta["n"])
        box.redelivered_one()
        box.observe(Marker(E2, 1, False))
    assert sent == [2, 3] and box.redelivered == 2 and box.due == 0
    box.observe(Marker(E2, 2, False))
    assert len(box) == 0


def test_unread_episode_takes_the_next_marker_of_its_epoch_only(tmp_path):
    box = Outbox(tmp_path, memory_limit=10, max_episodes=100)
    box.observe(Marker(E1, 0, False))
    box.add(episode(1))  # the marker read after the write failed
    box.observe(Marker(E1, 2, False))  # a later read of the same server stands in for it
    assert len(box) == 1 and box.due == 0
    box.observe(Marker(E1, 3, False))
    assert len(box) == 0
    box.add(episode(2))  # written, then the server restarted before the marker was read
    box.observe(Marker(E2, 0, False))
    assert box.due == 1 and box.next_due().meta["n"] == 2


def test_spill_recover_and_overflow(tmp_path):
    box = Outbox(tmp_path, memory_limit=1, max_episodes=3)
    box.observe(Marker(E1, 0, False))
    for n in range(3):
        box.add(episode(n))
        box.observe(Marker(E1, 0, False))
    assert box.in_memory == 1 and len(list(tmp_path.glob("ep_*.npz"))) == 2
    assert box.close() == 3
    again = Outbox(tmp_path, memory_limit=1, max_episodes=3)
    assert again.recover() == 3 and again.epoch == E1 and again.due == 0
    again.observe(Marker(E2, 1, False))  # the server restarted meanwhile
    sent = []
    while (ep := again.next_due()) is not None:
        sent.append(ep)
        again.redelivered_one()
    assert [ep.meta["n"] for ep in sent] == [0, 1, 2]
    np.testing.assert_array_equal(sent[2].images, episode(2).images)
    assert sent[2].meta[EPISODE_ID_META] == 102
    again.add(episode(3))  # one more than max_episodes: the oldest is forgotten
    assert len(again) == 3 and again.overflow == 1
    again.observe(Marker(E2, 1, False))
    again.observe(Marker(E2, 2, False))
    assert len(again) == 0 and not list(tmp_path.glob("ep_*.npz"))


def test_piece_ids_survive_finalising_again():
    meta: dict = {}
    first = [episode(0), episode(1)]
    assign_episode_ids(meta, first)
    again = [episode(0), episode(1)]
    assign_episode_ids(meta, again)
    ids = [ep.meta[EPISODE_ID_META] for ep in first]
    assert ids == [ep.meta[EPISODE_ID_META] for ep in again] == meta[PIECE_IDS_META]
    assert len(set(ids)) == 2 and all(0 < i < 2**63 for i in ids)


class FakeReplay:
    """A replay server in a dict: items by episode id, checkpoints, a hard kill, markers."""

    def __init__(self) -> None:
        self.epoch, self.completed, self.items, self.saved = E1, 0, [], []
        self.up = True
        self.restored_reads = 0
        """Marker reads still answered with the restored checkpoint's marker after a restart
        (a real server serves before it writes its new epoch)."""

    def checkpoint(self) -> None:
        self.saved = list(self.items)
        self.completed += 1

    def kill_and_restart(self, restored_reads: int = 0) -> None:
        self.restored = Marker(self.epoch, self.completed - 1, True)  # saved before checkpoint
        self.items = list(self.saved)
        self.epoch += 1
        self.restored_reads = restored_reads

    # the sink
    def write(self, ep: Episode) -> None:
        if not self.up:
            raise ReplayUnavailableError("down")
        self.items.append(ep.meta[EPISODE_ID_META])

    def read_marker(self) -> Marker:
        if not self.up:
            raise ReplayUnavailableError("down")
        if self.restored_reads > 0:
            self.restored_reads -= 1
            return self.restored
        return Marker(self.epoch, self.completed, False)


def labelled_segment(seq: int) -> Segment:
    seg = Segment(seq, "vase_forward", "l", [np.zeros((4, 4, 3), np.uint8)], [np.zeros(2)])
    for t in range(3):
        seg.add(np.zeros(2), np.zeros((4, 4, 3), np.uint8), np.zeros(2), 10 * seq + t, False)
        seg.set_label(t, 0.0, False)
    return seg


def fake_delivery(tmp_path, marker_poll_s: float) -> tuple[FakeReplay, Outbox, DeliveryQueue]:
    """A started delivery queue writing to a :class:`FakeReplay` through an outbox."""
    replay = FakeReplay()
    outbox = Outbox(tmp_path / "outbox", memory_limit=2, max_episodes=100)
    queue = DeliveryQueue(
        lambda: replay,
        None,
        spill_dir=tmp_path,
        memory_limit=10,
        label_wait_s=0.0,
        retry_s=0.05,
        discount=0.99,
        outbox=outbox,
        marker_poll_s=marker_poll_s,
    )
    queue.start()
    return replay, outbox, queue


@pytest.mark.timeout(60)
def test_delivery_queue_redelivers_what_a_restart_lost(tmp_path):
    replay, outbox, queue = fake_delivery(tmp_path, marker_poll_s=0.05)
    try:
        for seq in range(3):
            queue.put(labelled_segment(seq))
        assert queue.wait_idle(20)
        replay.checkpoint()  # holds 0..2
        for seq in range(3, 6):
            queue.put(labelled_segment(seq))
        assert queue.wait_idle(20)
        written = list(replay.items)
        assert len(written) == 6
        wait_for(lambda: len(outbox) == 3, "the idle marker poll to see checkpoint 1")
        replay.kill_and_restart()  # 3..5 are gone
        queue.put(labelled_segment(6))
        assert queue.wait_idle(20)
        wait_for(lambda: len(replay.items) == 7, "redelivery and segment 6")
        assert replay.items[:3] == written[:3]
        assert replay.items[3:6] == written[3:]  # same ids, in order, before segment 6
        assert len(set(replay.items)) == 7
        assert outbox.restarts_seen == 1 and outbox.redelivered == 3
    finally:
        queue.close(1.0)


@pytest.mark.timeout(60)
def test_a_write_before_the_restarted_server_shows_its_epoch_is_sent_again_at_once(tmp_path):
    """For a moment a restarted server still serves its restored marker (old epoch): a write
    then learns of the restart only from the next read. The lost episodes and that write are
    sent again within the same delivery, not at the next idle poll."""
    replay, outbox, queue = fake_delivery(tmp_path, marker_poll_s=3600.0)  # no idle polls
    try:
        queue.put(labelled_segment(0))
        assert queue.wait_idle(20)
        replay.checkpoint()  # holds 0
        queue.put(labelled_segment(1))
        assert queue.wait_idle(20)
        replay.kill_and_restart(restored_reads=1)  # 1 is gone; one read sees the old marker
        queue.put(labelled_segment(2))
        assert queue.wait_idle(20)
        assert outbox.restarts_seen == 1 and outbox.redelivered == 2 and outbox.due == 0
        assert len(replay.items) == 4 and len(set(replay.items)) == 3  # 0, 1, 2 and 2's copy
    finally:
        queue.close(1.0)


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)
