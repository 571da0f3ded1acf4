"""Monte-Carlo returns, checked against numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from robofume.data import mc_returns, with_mc_returns
from robofume.types import Episode

F, T = False, True


def test_three_step_success():
    # G2 = 1; G1 = 0 + 0.9*1 = 0.9; G0 = 0 + 0.9*0.9 = 0.81
    out = mc_returns([0, 0, 1], [F, F, T], 0.9)
    np.testing.assert_allclose(out, [0.81, 0.9, 1.0], rtol=1e-6)
    assert out.dtype == np.float32


def test_demo_with_hold_steps_sums_every_success_reward():
    # success from obs 3 on, held 2 more steps, terminal at the end; discount 0.5
    # G4 = 1; G3 = 1 + 0.5*1 = 1.5; G2 = 1 + 0.5*1.5 = 1.75; G1 = 0.875; G0 = 0.4375
    out = mc_returns([0, 0, 1, 1, 1], [F, F, F, F, T], 0.5)
    np.testing.assert_allclose(out, [0.4375, 0.875, 1.75, 1.5, 1.0], rtol=1e-6)


def test_failures_and_timeouts_are_zero():
    # never succeeded (failure or timeout at the step limit): all returns 0
    np.testing.assert_array_equal(mc_returns([0, 0, 0, 0], [F, F, F, F], 0.99), [0, 0, 0, 0])


def test_timeout_after_a_transient_success_bootstraps_nothing_past_the_end():
    # reward at step 1 only, no terminal, episode cut at step 3: G3 = 0, G2 = 0,
    # G1 = 1 + 0.9*0 = 1, G0 = 0 + 0.9*1 = 0.9
    out = mc_returns([0, 1, 0, 0], [F, F, F, F], 0.9)
    np.testing.assert_allclose(out, [0.9, 1.0, 0.0, 0.0], rtol=1e-6)


def test_terminal_stops_propagation():
    # two episodes back to back: the second one's reward must not leak into the first
    # G3 = 1, G2 = 0.8, G1 = 1 (terminal: 1 + 0.8*0), G0 = 0.8
    out = mc_returns([0, 1, 0, 1], [F, T, F, T], 0.8)
    np.testing.assert_allclose(out, [0.8, 1.0, 0.8, 1.0], rtol=1e-6)


def test_discount_edges_and_bad_input():
    np.testing.assert_allclose(mc_returns([0, 0, 1], [F, F, T], 1.0), [1, 1, 1])
    np.testing.assert_allclose(mc_returns([0, 0, 1], [F, F, T], 0.0), [0, 0, 1])
    assert mc_returns([], [], 0.9).shape == (0,)
    with pytest.raises(ValueError, match="discount"):
        mc_returns([1.0], [T], 1.5)
    with pytest.raises(ValueError, match="terminals shape"):
        mc_returns([0.0, 1.0], [T], 0.9)
    with pytest.raises(ValueError, match="NaN"):
        mc_returns([np.nan], [T], 0.9)


def test_with_mc_returns_fills_the_episode():
    episode = Episode(
        images=np.zeros((5, 8, 8, 3), np.uint8),
        proprio=np.zeros((5, 4), np.float32),
        actions=np.zeros((4, 4), np.float32),
        rewards=np.array([0, 0, 1, 1], np.float32),
        terminals=np.array([F, F, F, T]),
        success=np.array([F, F, T, T]),
        task="vase_forward",
        language="put the vase in the correct bin",
    )
    with_mc_returns(episode, 0.9)
    # G3 = 1, G2 = 1 + 0.9 = 1.9, G1 = 0.9*1.9 = 1.71, G0 = 0.9*1.71 = 1.539
    np.testing.assert_allclose(episode.mc_returns, [1.539, 1.71, 1.9, 1.0], rtol=1e-6)
