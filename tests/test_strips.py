"""Episode strips on the dashboard: what the reward model said about which frame."""

from __future__ import annotations

import numpy as np
import pytest

from actor.episodes import Segment
from actor.report import Reporter
from robofume import metrics as M
from robofume.strips import GREEN, GREY, ORANGE, RED, episode_strip, pick_frames


def test_pick_frames_keeps_first_and_last():
    assert pick_frames(3, 8) == [0, 1, 2]
    picked = pick_frames(151, 8)
    assert picked[0] == 0 and picked[-1] == 150 and len(picked) == 8


def _segment(n: int = 6) -> Segment:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n + 1, 16, 16, 3), dtype=np.uint8)
    seg = Segment(seq=0, task="vase_forward", language="put the vase", images=[frames[0]],
                  proprio=[np.zeros(4, np.float32)], meta={"ground_truth": True})  # fmt: skip
    truth = [False, False, True, False, False, True]  # step 2: a miss; step 3: a false positive
    said = [False, False, False, True, False, True]
    for t in range(n):
        seg.add(np.zeros(4, np.float32), frames[t + 1], np.zeros(4, np.float32), t, truth[t])
        seg.set_label(t, 0.9 if said[t] else 0.1, said[t])
    return seg


def test_strip_marks_hits_false_positives_and_misses():
    seg = _segment()
    strip = episode_strip(np.stack(seg.images), np.asarray(seg.probs),
                          np.asarray(seg.decisions), np.asarray(seg.gt_success), 0.5)  # fmt: skip
    tile_w = 64 + 2 * 2  # 16 px frames scaled x4, 2 px frame
    corners = [tuple(strip[0, i * (tile_w + 2)]) for i in range(7)]
    assert corners == [GREY, GREY, GREY, ORANGE, RED, GREY, GREEN]
    assert strip.dtype == np.uint8 and strip.shape[1] == 7 * tile_w + 6 * 2
    with pytest.raises(ValueError, match="7 frames need 6 labels"):
        episode_strip(np.stack(seg.images), np.zeros(5), np.zeros(5))


def test_reporter_writes_strips_and_camera_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def snapshot() -> dict:
        return {"steps": 6, "state": "running"}

    rep = Reporter("actor_0", tmp_path, snapshot, 60.0, tmp_path / "tb", strip_every=1)
    rep.start()
    seg = _segment()
    rep.on_finalized(seg, [_episode_of(seg)])
    rep.close()  # writes a last report
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    images = acc.Tags()["images"]
    assert M.per_task(M.ACTOR_EPISODE_STRIP, "vase_forward") in images
    assert M.ACTOR_CAMERA in images
    assert M.ACTOR_STATE + "/text_summary" in acc.Tags()["tensors"]  # the state, as text
    scalars = acc.Tags()["scalars"]
    for tag in (
        M.per_task(M.SUCCESS_RATE, "vase_forward"),
        M.SUCCESS_RATE_ALL_FORWARD,
        M.per_task(M.PREDICTED_SUCCESS_RATE, "vase_forward"),
        M.per_task(M.EPISODES, "vase_forward"),
    ):
        assert tag in scalars and tag.startswith("Headline/"), tag
    assert acc.Scalars(M.per_task(M.SUCCESS_RATE, "vase_forward"))[-1].value == 1.0
    strip = acc.Images(M.per_task(M.ACTOR_EPISODE_STRIP, "vase_forward"))[0]
    assert strip.step == 6 and strip.width > strip.height


def _episode_of(seg: Segment):
    from actor.episodes import finalize

    return finalize(seg, 0.99)[0]
