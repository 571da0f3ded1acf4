"""The simulated actor waits for the learner (UTD held); the robot never does."""

from __future__ import annotations

import threading
import time

import pytest

from actor.pace import LearnerPace, make_pace, steps_ahead
from robofume.config import load_config


def _stats(inserts, samples, spi=64.0, min_size=256):
    return {"inserts": inserts, "samples": samples, "samples_per_insert": spi,
            "min_size_to_sample": min_size}  # fmt: skip


def test_steps_ahead_counts_what_the_learner_has_not_consumed_at_the_utd_target():
    # the limiter keeps the learner min_size_to_sample steps behind: the lead counts from there
    assert steps_ahead(_stats(200, 0)) == -56
    assert steps_ahead(_stats(600, 0)) == 344
    # 64 samples per inserted step: 300 steps consumed of the 344 the limiter lets it use
    assert steps_ahead(_stats(600, 300 * 64)) == 44
    assert steps_ahead(_stats(600, 344 * 64)) == 0
    assert steps_ahead(_stats(600, 0, spi=0.0)) == 0  # no online data: never ahead


def test_the_pace_holds_while_replay_is_ahead_and_lets_go_once_the_learner_catches_up():
    stats = {"now": _stats(900, 0)}
    pace = LearnerPace(lambda: stats["now"], lead_steps=300, poll_s=0.01).start()
    try:
        time.sleep(0.1)
        assert pace.hold()  # 644 usable steps ahead of a learner that has not started
        released = threading.Event()

        def actor():
            while pace.hold():
                pace.wait(0.05)
            released.set()

        threading.Thread(target=actor, daemon=True).start()
        time.sleep(0.1)
        assert not released.is_set()
        stats["now"] = _stats(900, 700 * 64)
        assert released.wait(5.0)
        assert pace.waited_s > 0
    finally:
        pace.stop()


def test_an_unreachable_replay_never_holds_the_actor_through_the_pace():
    def down():
        raise ConnectionError("replay down")

    pace = LearnerPace(down, lead_steps=300)
    pace.read_once()
    assert not pace.reachable and not pace.hold()


def test_only_a_simulated_actor_is_paced():
    assert make_pace(load_config("smoke")) is not None
    assert make_pace(load_config("smoke", overrides={"actor": {"pace_to_learner": False}})) is None
    widowx = load_config("widowx")
    assert widowx.actor.pace_to_learner and make_pace(widowx) is None


@pytest.mark.parametrize("lead", [0, 400])
def test_the_default_lead_is_two_episodes(lead):
    cfg = load_config("smoke", overrides={"actor": {"pace_lead_steps": lead}})
    assert make_pace(cfg).lead_steps == (lead or 2 * cfg.env.max_episode_steps)
