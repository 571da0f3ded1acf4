"""Segments -> episodes: rewards from labels, split at success, MC returns, spill files,
plus the deadline scheduler and the interventions' command sources."""

from __future__ import annotations

import io
import os
import signal
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from actor.control import Commands, install_signal_handler, start_keyboard
from actor.episodes import (
    Segment,
    finalize,
    load_segment,
    save_segment,
    split_points,
    success_steps,
)
from actor.scheduler import TickScheduler


def segment(decisions: list[float], task: str = "vase_forward") -> Segment:
    n = len(decisions)
    seg = Segment(
        seq=3,
        task=task,
        language="put the vase in the correct bin",
        images=[np.full((8, 8, 3), 0, np.uint8)],
        proprio=[np.zeros(4, np.float32)],
        meta={"actor_id": 0},
    )
    for t in range(n):
        seg.add(
            np.full(4, t, np.float32),
            np.full((8, 8, 3), t + 1, np.uint8),
            np.full(4, t + 1, np.float32),
            step_id=100 + t,
            gt_success=t == n - 1,
        )
    for t, d in enumerate(decisions):
        if not np.isnan(d):
            seg.set_label(t, 0.9 if d else 0.1, bool(d))
    return seg


def test_split_points_cut_after_every_success():
    assert split_points(np.array([0.0, 0.0, 1.0])) == [(0, 3, True)]
    assert split_points(np.array([0.0, 0.0, 0.0])) == [(0, 3, False)]
    assert split_points(np.array([0.0, 1.0, 1.0, 0.0])) == [
        (0, 2, True),
        (2, 3, True),
        (3, 4, False),
    ]


def test_success_rule_needs_consecutive_frames():
    d = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    assert success_steps(d, 1).tolist() == [True, False, True, True, True, True]
    assert success_steps(d, 2).tolist() == [False, False, False, True, False, True]
    assert success_steps(np.array([1.0, np.nan, 1.0]), 2).tolist() == [False, False, False]
    assert split_points(d, 2) == [(0, 4, True), (4, 6, True)]
    with pytest.raises(ValueError, match="success_frames"):
        success_steps(d, 0)


def test_a_single_false_positive_frame_ends_nothing_with_two_frames():
    seg = segment([0, 1, 0, 0, 1, 1, 0])
    seg.success_frames = 2
    assert seg.first_success() == 5
    main, tail = finalize(seg, discount=0.9)
    assert main.rewards.tolist() == [0, 0, 0, 0, 0, 1]
    assert main.terminals[-1] and not tail.terminals[-1] and tail.rewards.tolist() == [0]
    path = save_segment(seg, Path(tempfile.mkdtemp()) / "s.npz")
    assert load_segment(path).success_frames == 2


def test_finalize_hand_checked_returns_and_tails():
    # success at step 2 (label lag: steps 3-4 were taken before the switch)
    seg = segment([0, 0, 1, 0, 0])
    seg.close_reason = "success"
    main, tail = finalize(seg, discount=0.9)
    assert len(main) == 3 and len(tail) == 2
    assert main.rewards.tolist() == [0, 0, 1] and main.terminals.tolist() == [False, False, True]
    assert main.mc_returns == pytest.approx([0.81, 0.9, 1.0])
    assert tail.rewards.tolist() == [0, 0] and not tail.terminals.any()
    assert tail.mc_returns == pytest.approx([0, 0])
    assert main.meta["tail"] is False and tail.meta["tail"] is True
    assert main.meta["first_step_id"] == 100 and tail.meta["first_step_id"] == 103
    # observations: each piece has its own T+1 frames, shared at the cut
    assert main.images.shape[0] == 4 and tail.images.shape[0] == 3
    assert (main.images[-1] == tail.images[0]).all() and tail.images[0, 0, 0, 0] == 3
    # labels stay with their own transitions; ground truth kept separately
    assert main.labels == pytest.approx([0.1, 0.1, 0.9])
    assert tail.success.tolist() == [False, True]
    for ep in (main, tail):
        ep.validate()
        assert ep.kind == "online" and ep.task == "vase_forward"


def test_timeout_segment_is_one_non_terminal_episode():
    (ep,) = finalize(segment([0, 0, 0, 0]), discount=0.99)
    assert not ep.terminals.any() and ep.mc_returns == pytest.approx(np.zeros(4))


def test_finalize_refuses_missing_labels():
    with pytest.raises(ValueError, match="misses labels for steps \\[101\\]"):
        finalize(segment([0, np.nan, 0]), discount=0.9)


def test_spill_round_trip_keeps_missing_labels_and_progress(tmp_path):
    seg = segment([0, np.nan, 1])
    seg.pieces_delivered = 1
    path = save_segment(seg, tmp_path / "seg_000000003.npz")
    back = load_segment(path)
    assert back.missing() == [1] and back.step_ids == seg.step_ids
    assert back.pieces_delivered == 1 and back.meta == {"actor_id": 0}
    assert np.array_equal(np.stack(back.images), np.stack(seg.images))
    assert back.decisions[2] == 1.0 and back.task == seg.task
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz is unreadable"):
        load_segment(tmp_path / "bad.npz")


def test_scheduler_keeps_the_grid_and_skips_missed_deadlines():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    sched = TickScheduler(5.0, clock=lambda: now[0], sleep=sleep)
    assert sched.wait() == 0.0  # first tick starts the grid at t=0
    now[0] += 0.05  # work
    sched.wait()
    assert now[0] == pytest.approx(0.2)  # slept until the deadline, not 0.2 s after the work
    now[0] += 0.5  # a tick overran by 2.5 periods
    late = sched.wait()
    assert late == pytest.approx(0.3) and sched.overruns == 1
    sched.wait()  # the next tick is on the grid again (t=0.8), no catch-up burst
    assert now[0] == pytest.approx(0.8)
    assert sched.jitter_ms(100) == pytest.approx(300.0)


def test_interventions_from_keyboard_and_signal():
    commands = Commands()
    start_keyboard(commands, stream=io.StringIO("r\n\nq\n")).join(timeout=5)
    assert commands.poll() == [("intervene", "keyboard"), ("stop", "keyboard")]
    restore = install_signal_handler(commands)
    assert restore is not None  # pytest runs tests in the main thread
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # a clean stop, not death
        assert commands.poll() == [("intervene", "signal"), ("stop", "signal")]
    finally:
        restore()
    box: list = []
    t = threading.Thread(target=lambda: box.append(install_signal_handler(commands)))
    t.start()
    t.join()
    assert box == [None]  # not the main thread (e.g. inside a Ray actor): no handler
    with pytest.raises(ValueError, match="unknown actor command"):
        commands.put("dance", "test")
