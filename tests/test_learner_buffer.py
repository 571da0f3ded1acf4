"""OfflineBuffer sampling and the offline/online batch mix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from learner.buffer import OfflineBuffer, mix_batches, split_sizes
from robofume.tasks import task_index
from robofume.types import BATCH_KEYS, Episode


def episode(task, kind, t, value):
    """Frames and proprio carry (value, step) so samples can be traced back."""
    images = np.zeros((t + 1, 8, 8, 3), np.uint8)
    images[:, 0, 0, 0] = value
    images[:, 0, 0, 1] = np.arange(t + 1)
    proprio = np.stack([np.full(t + 1, value), np.arange(t + 1), np.zeros(t + 1), np.zeros(t + 1)])
    rewards = np.zeros(t, np.float32)
    rewards[-1] = 1.0
    terminals = np.zeros(t, bool)
    terminals[-1] = True
    return Episode(
        images=images,
        proprio=proprio.T.astype(np.float32),
        actions=np.full((t, 4), value / 100, np.float32),
        rewards=rewards,
        terminals=terminals,
        success=terminals.copy(),
        task=task,
        language="",
        kind=kind,
    )


@pytest.fixture
def episodes():
    return [
        episode("prior_cube_left_bin", "prior", 5, 10),
        episode("vase_forward", "target_forward", 3, 20),
        episode("vase_reset", "target_reset", 4, 30),
    ]


def test_transitions_are_consistent(episodes):
    buf = OfflineBuffer(episodes, discount=0.5, seed=0)
    assert len(buf) == 12
    batch = buf.sample(64)
    assert set(batch) == set(BATCH_KEYS)
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (64, 8, 8, 3)
    value = batch["image"][:, 0, 0, 0].long()
    step = batch["image"][:, 0, 0, 1].long()
    # next frame is the following frame of the same episode
    assert torch.equal(batch["next_image"][:, 0, 0, 0].long(), value)
    assert torch.equal(batch["next_image"][:, 0, 0, 1].long(), step + 1)
    assert torch.equal(batch["next_proprio"][:, 1], batch["proprio"][:, 1] + 1)
    expected_task = {10: "prior_cube_left_bin", 20: "vase_forward", 30: "vase_reset"}
    length = {10: 5, 20: 3, 30: 4}
    for v, s, task, ret, term in zip(
        value.tolist(),
        step.tolist(),
        batch["task"].tolist(),
        batch["mc_return"].tolist(),
        batch["terminal"].tolist(),
        strict=True,
    ):
        assert task == task_index(expected_task[v])
        # single reward at the last step: G_t = 0.5 ** (T - 1 - t)
        assert ret == pytest.approx(0.5 ** (length[v] - 1 - s))
        assert term == float(s == length[v] - 1)


def test_target_fraction_and_reproducible_state(episodes):
    buf = OfflineBuffer(episodes, discount=0.9, seed=3, target_fraction=0.5)
    state = buf.state_dict()
    first = buf.sample(10)
    values = first["image"][:5, 0, 0, 0]
    assert torch.all((values == 20) | (values == 30))  # first half from target demos
    buf.load_state_dict(state)
    again = buf.sample(10)
    assert all(torch.equal(first[k], again[k]) for k in BATCH_KEYS)
    with pytest.raises(ValueError, match="not the same data"):
        OfflineBuffer(episodes[:2], discount=0.9).load_state_dict(state)


def test_mix_batches(episodes):
    buf = OfflineBuffer(episodes, discount=0.9, seed=0)
    n_off, n_on = split_sizes(8, 0.25)
    assert (n_off, n_on) == (2, 6)
    offline = buf.sample(n_off)
    online = {k: v.clone() for k, v in buf.sample(n_on).items()}
    online["reward"] = online["reward"] + 100
    mixed = mix_batches(offline, online, 0.25)
    assert all(len(mixed[k]) == 8 for k in BATCH_KEYS)
    assert torch.all(mixed["reward"][:2] < 100) and torch.all(mixed["reward"][2:] >= 100)
    with pytest.raises(ValueError, match="need 6 \\+ 2 rows"):
        mix_batches(offline, online, 0.75)
    with pytest.raises(KeyError, match="mc_return"):
        mix_batches(offline, {k: v for k, v in online.items() if k != "mc_return"}, 0.25)


def test_terminal_on_success_ends_demos_at_their_first_success_frame(episodes):
    hold = episode("vase_forward", "target_forward", 5, 7)
    hold.rewards[:] = [0, 0, 1, 1, 1]  # success reached at step 2, then two "hold" steps
    plain = OfflineBuffer([hold], discount=0.5)
    cut = OfflineBuffer([hold], discount=0.5, terminal_on_success=True)
    assert plain.mc_returns.tolist() == [0.25 * 1.75, 0.5 * 1.75, 1.75, 1.5, 1.0]
    assert cut.terminals.tolist() == [0, 0, 1, 1, 1]
    assert cut.mc_returns.tolist() == [0.25, 0.5, 1.0, 1.0, 1.0]  # as an online episode


def test_proprio_statistics_travel_with_the_policy_weights(episodes):
    from robofume.config import load_config
    from robofume.networks import PolicyModel

    buf = OfflineBuffer(episodes, discount=0.9)
    mean, std = buf.proprio_statistics()
    assert torch.allclose(mean, buf.proprio.mean(0)) and std.min() >= 1e-2
    cfg = load_config("smoke")
    table = torch.eye(3)
    net = dataclasses.replace(cfg.network, encoder="none")
    model = PolicyModel(net, 8, 4, 4, table)
    model.set_proprio_statistics(mean, std)
    assert {"proprio_mean", "proprio_std"} <= set(model.state_dict())
    feats = torch.zeros(2, 0)
    state = model.state(feats, torch.tensor([0, 1]), buf.proprio[:2])
    assert torch.allclose(state[:, 3:], (buf.proprio[:2] - mean) / std)
