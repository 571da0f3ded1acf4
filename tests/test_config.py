from __future__ import annotations

import pytest

from robofume.config import ConfigError, ExperimentConfig, load_config, save_config
from robofume.config.base import parse_overrides


def test_presets_load_and_differ():
    cpu = load_config("sim-cpu")
    gpu = load_config("sim-gpu")
    assert cpu.env.image_size == 64
    assert gpu.env.image_size == 100 and gpu.learner.batch_size == 256
    assert cpu.hash != gpu.hash


@pytest.mark.parametrize("name", ["sim-cpu", "sim-gpu", "smoke", "widowx", "multinode"])
def test_every_preset_is_valid(name):
    assert isinstance(load_config(name), ExperimentConfig)


def test_overrides_both_forms_and_types():
    cfg = load_config(
        "sim-cpu",
        overrides=[
            "--learner.utd_ratio",
            "4",
            "--env.image_size=48",
            "--network.hidden_dims",
            "[64,64]",
        ],
    )
    assert cfg.learner.utd_ratio == 4.0
    assert cfg.env.image_size == 48
    assert cfg.network.hidden_dims == (64, 64)


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match="utd_ration"):
        load_config("sim-cpu", overrides=["--learner.utd_ration", "4"])


def test_bad_type_is_named():
    with pytest.raises(ConfigError, match=r"env\.image_size"):
        load_config(overrides=["--env.image_size", "big"])
    with pytest.raises(ConfigError, match=r"learner\.algorithm"):
        load_config(overrides=["--learner.algorithm", "ppo"])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")


def test_hash_ignores_deploy_and_roundtrips(tmp_path):
    cfg = load_config("sim-cpu")
    moved = load_config("sim-cpu", overrides=["--deploy.replay_address", "10.0.0.1:9"])
    assert cfg.hash == moved.hash
    robot_pc = load_config("sim-cpu", overrides=["--actor.total_steps", "7", "--name", "x"])
    assert robot_pc.hash == cfg.hash
    changed = load_config("sim-cpu", overrides=["--learner.discount", "0.9"])
    assert changed.hash != cfg.hash
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(config_path=tmp_path / "c.yaml") == cfg


def test_parse_overrides_needs_value():
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--learner.steps"])


def test_widowx_preset_builds_a_task_table_with_its_real_tasks():
    from robofume.tasks import SIM_TASKS, task_names, task_table

    cfg = load_config("widowx")
    tasks = task_table(cfg)
    assert cfg.actor.forward_task in tasks.names() and cfg.actor.reset_task in tasks.names()
    fwd = tasks.get(cfg.actor.forward_task)
    assert fwd.pair == cfg.actor.reset_task and fwd.kind == "target_forward"
    assert tasks.index(cfg.actor.reset_task) > tasks.index("vase_forward")
    assert tasks.names()[: len(SIM_TASKS)] == SIM_TASKS.names()  # simulated ids unchanged
    assert task_table(load_config("widowx")) == tasks  # every process builds the same table
    assert cfg.actor.forward_task not in task_names()  # loading a config changed no global


def test_a_real_task_may_not_rename_a_simulated_one():
    with pytest.raises(ConfigError, match="another instruction"):
        load_config("widowx", overrides={"env": {"widowx": {"languages": {"vase_forward": "x"}}}})
