"""``robofume tasks`` and ``robofume rollout``, plus the rollout helpers they are built on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deploy.command import main
from robofume.config import load_config
from robofume.envs import ScriptedExpert, make_env
from robofume.envs.rollout import policy_from_spec, run_episodes, save_strip
from robofume.tasks import TASKS


def test_tasks_json_lists_target_and_prior_instructions(capsys):
    assert main(["tasks", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"target", "prior"}
    assert out["target"] == [t.language for t in TASKS if t.kind != "prior"]
    assert len(out["target"]) == 6 and len(out["prior"]) == 20
    assert "put the vase in the correct bin" in out["target"]
    assert "put the vase back in the centre of the table" in out["target"]


def test_tasks_table_names_every_task(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for t in TASKS:
        assert t.name in text and t.language in text


def test_rollout_json_reports_success_and_writes_a_strip(capsys, tmp_path):
    code = main(
        [
            "rollout",
            "--task",
            "vase_forward",
            "--policy",
            "expert",
            "--episodes",
            "2",
            "--noise",
            "0",
            "--json",
            "--out",
            str(tmp_path),
            "--preset",
            "smoke",
            "--env.image_size",
            "32",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "vase_forward"
    assert report["episodes"] == 2 and report["noise"] == 0.0
    assert report["success_rate"] == 1.0 and report["successes"] == 2
    assert [e["success"] for e in report["per_episode"]] == [True, True]
    strip = Image.open(report["strip"])
    frames = min(12, report["per_episode"][0]["steps"] + 1)
    assert strip.height > 96 and strip.width == frames * 96  # 32 px frames enlarged x3


def test_rollout_rejects_unknown_task_and_policy(tmp_path, capsys):
    base = ["rollout", "--episodes", "1", "--out", str(tmp_path), "--env.image_size", "32"]
    assert main([*base, "--task", "nope"]) == 2
    assert main([*base, "--task", "vase_forward", "--policy", "ckpt.pt"]) == 2
    assert not list(tmp_path.iterdir())


def test_load_policy_and_run_episodes():
    cfg = load_config("smoke")
    env = make_env(cfg.env, task="bench_forward", seed=0)
    try:
        policy = policy_from_spec("expert", cfg, env=env, noise=0.0)
        assert isinstance(policy, ScriptedExpert) and policy.noise == 0.0
        with pytest.raises(ValueError, match="'random' is not a known policy"):
            policy_from_spec("random", cfg, env=env)
        results = run_episodes(env, policy, "bench_forward", 2, 40, seed=5, keep_frames="first")
        assert [r.seed for r in results] == [5, 6]
        assert all(r.success and r.first_success_step == r.steps for r in results)
        assert results[0].frames.shape == (results[0].steps + 1, 32, 32, 3)
        assert results[1].frames is None
        # a policy that does nothing never succeeds and runs to the step limit
        idle = run_episodes(env, lambda obs, task: np.zeros(4, np.float32), "bench_forward", 1, 5)
        assert not idle[0].success and idle[0].steps == 5 and len(idle[0].frames) == 6
    finally:
        env.close()


def test_save_strip_validates_frames(tmp_path):
    frames = np.zeros((30, 16, 16, 3), np.uint8)
    path = save_strip(frames, tmp_path / "s.png", max_frames=5)
    assert Image.open(path).size == (5 * 96, 96 + 14)
    with pytest.raises(ValueError, match="uint8"):
        save_strip(frames.astype(np.float32), tmp_path / "bad.png")
