"""Rates in status are computed over recent time, so an idle component shows 0."""

from __future__ import annotations

from collections import deque

from robofume.status import window_rate


def test_window_rate_falls_to_zero_when_idle():
    history: deque[tuple[float, int]] = deque(maxlen=3)
    assert window_rate(history, 0.0, 0) is None
    assert window_rate(history, 5.0, 500) == 100.0  # a burst
    assert window_rate(history, 10.0, 500) == 50.0
    assert window_rate(history, 15.0, 500) == 0.0  # the burst left the window: idle
