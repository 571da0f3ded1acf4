"""The online evaluator's schedule: by time, or every N environment steps from the first weights."""

from __future__ import annotations

from deploy.evaluator import Schedule


def test_a_step_schedule_evaluates_at_start_and_at_each_multiple_passed():
    s = Schedule(every_s=300.0, every_steps=2500)
    assert s.poll_s == 2.0
    assert s.due(0)
    s.done(120)  # the first weights, at 120 steps
    assert not s.due(2499) and s.due(2500)
    s.done(2610)  # evaluated a little late: the next point is still 5000, not 5110
    assert not s.due(4999) and s.due(5000)
    s.done(7700)  # a slow evaluation skipped 5000: the next is 10000
    assert not s.due(9999) and s.due(10_000)


def test_a_time_schedule_is_always_due_and_sleeps_its_period():
    s = Schedule(every_s=300.0, every_steps=0)
    assert s.poll_s == 300.0
    s.done(10)
    assert s.due(11) and s.due(0)
