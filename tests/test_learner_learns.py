"""The learner learns: Cal-QL + BC on privileged state solves a target task in the simulator.

Not a speed test: it asserts a learning outcome (ground-truth success on evaluation seeds the
data never used) after a fixed number of updates of the real pre-training code.
"""

from __future__ import annotations

import pytest
from state_support import STATE_DATA

from robofume.config import load_config

OVERRIDES = {
    "data": STATE_DATA,
    "network": {"hidden_dims": [128, 128]},
    "learner": {
        "batch_size": 128,
        "steps": 3000,
        "eval_every": 0,
        "checkpoint_every": 3000,
        "log_every": 1000,
        "seed": 0,
    },
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from learner.pretrain import pretrain
    from robofume.data import generate_dataset

    cfg = load_config("sim-state", overrides=OVERRIDES)
    data = tmp_path_factory.mktemp("state_data")
    generate_dataset(cfg, data)
    result = pretrain(cfg, data, tmp_path_factory.mktemp("state_run"))
    return cfg, result


@pytest.mark.timeout(1800)  # ~2-3 min on an idle 2-core machine; generous for a loaded one
def test_calql_bc_on_state_solves_the_vase_task(trained):
    from learner.evaluate import evaluate_policy
    from robofume.policy import load_policy

    cfg, result = trained
    assert result.steps == 3000 and result.checkpoint is not None
    policy = load_policy(result.checkpoint)
    # the statistics travel with the weights: the actor standardises proprio the same way
    assert policy.model.proprio_std.min() > 0 and policy.model.proprio_mean.abs().sum() > 0
    evaluation = evaluate_policy(cfg, policy, ["vase_forward"], episodes=10)
    rate = evaluation.success_rate("vase_forward")
    assert rate >= 0.8, f"vase_forward success {rate:.2f} after 3000 updates on state"


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~15 min on an idle 2-core machine
def test_calql_bc_on_state_solves_every_forward_target_task(tmp_path):
    """The sim-state preset as shipped, 5k updates: >= 90% mean forward success, >= 80% on
    each forward task. (Issue 9's bar, >= 90% on every task, holds in the 3-seed benchmark,
    benchmarks/offline_learning.py; one run of 20 episodes per task moves by about 7 points:
    a run on 2026-11-30 gave vase 0.85, bench 0.90, dumbbell 1.00.)"""
    from learner.evaluate import evaluate_policy
    from learner.pretrain import pretrain
    from robofume.data import generate_dataset
    from robofume.policy import load_policy
    from robofume.tasks import target_task_names

    cfg = load_config("sim-state", overrides={"learner": {"steps": 5000, "eval_every": 0}})
    generate_dataset(cfg, tmp_path / "data")
    result = pretrain(cfg, tmp_path / "data", tmp_path / "run")
    policy = load_policy(result.checkpoint)
    forward = [t for t in target_task_names() if t.endswith("_forward")]
    evaluation = evaluate_policy(cfg, policy, forward, episodes=20)
    rates = {task: evaluation.success_rate(task) for task in forward}
    assert sum(rates.values()) / len(rates) >= 0.9 and min(rates.values()) >= 0.8, rates
