"""Replay table layout and the UTD rate-limiter arithmetic (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest
from replay_support import replay_config

from robofume.replay_client.tables import (
    ITEM_KEYS,
    TRANSITION_KEYS,
    online_batch_size,
    online_rate_limit,
    transition_signature,
    transition_spec,
)


def test_spec_follows_config(tmp_path):
    cfg = replay_config(tmp_path, env={"image_size": 48, "action_dim": 5})
    spec = transition_spec(cfg)
    assert spec["image"] == ((48, 48, 3), np.dtype(np.uint8))
    assert spec["next_image"] == spec["image"]
    assert spec["action"] == ((5,), np.dtype(np.float32))
    assert spec["task"] == ((), np.dtype(np.int64))
    sig = transition_signature(cfg)
    assert sorted(sig) == sorted(ITEM_KEYS)
    assert set(TRANSITION_KEYS) < set(ITEM_KEYS)
    assert spec["episode_id"] == ((), np.dtype(np.int64))
    assert spec["step"] == ((), np.dtype(np.int32))
    assert tuple(sig["image"].shape) == (48, 48, 3)


def test_samples_per_insert_is_utd_times_online_share(tmp_path):
    # batch 16, mixing 0.5 -> 8 online items per update; utd 0.5 -> 4 samples per env step
    cfg = replay_config(
        tmp_path,
        learner={"batch_size": 16, "mixing_ratio": 0.5, "utd_ratio": 0.5},
        replay={"min_size_to_sample": 16, "samples_per_insert_tolerance": 0.25},
    )
    assert online_batch_size(cfg) == 8
    limit = online_rate_limit(cfg)
    assert limit.samples_per_insert == pytest.approx(4.0)
    # learner slack: max(2 * spi, 0.25 * spi * min_size) = 16 samples
    assert limit.sample_slack == pytest.approx(16.0)
    assert limit.min_diff == pytest.approx(4 * 16 - 16)
    # actor slack defaults to the table size
    assert limit.insert_slack_steps == pytest.approx(cfg.replay.online_max_size)


def test_rate_limit_with_explicit_insert_lead_and_pure_offline(tmp_path):
    cfg = replay_config(
        tmp_path,
        learner={"batch_size": 64, "mixing_ratio": 0.25, "utd_ratio": 2.0},
        replay={"insert_lead_steps": 300},
    )
    limit = online_rate_limit(cfg)
    assert limit.samples_per_insert == pytest.approx(2.0 * 48)
    assert limit.insert_slack_steps == pytest.approx(300)
    offline_only = replay_config(tmp_path, learner={"mixing_ratio": 1.0})
    assert online_rate_limit(offline_only) is None


def test_reverb_accepts_the_limiter_for_presets(tmp_path):
    import reverb

    from robofume.replay_client.tables import make_tables

    for preset_overrides in ({}, {"learner": {"utd_ratio": 8.0, "batch_size": 256}}):
        tables = make_tables(replay_config(tmp_path, **preset_overrides))
        names = [t.name for t in tables]
        assert names == [
            "online",
            "policy_weights",
            "policy_version",
            "replay_marker",
            "replay_marker_mac",
        ]
        assert all(isinstance(t, reverb.Table) for t in tables)
