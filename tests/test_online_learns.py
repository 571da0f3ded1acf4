"""The real online loop learns: reset-free fine-tuning from a weak state checkpoint raises
ground-truth success.

Every part is the product's own: the actor loop as `robofume actor` runs it (its episodes
labelled by a fine-tuned reward model behind the real gRPC server, never by ground truth),
delivered into a real Reverb server whose rate limiter holds the UTD ratio, the online learner
mixing offline and online batches and publishing signed weights, which the actor pulls and
acts on. The simulated actor is paced to the learner (``actor.pace_to_learner``), so the
effective UTD is the target. Not a speed test: it asserts a learning outcome on evaluation
seeds, after a fixed number of environment steps.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from state_support import STATE_DATA

from robofume.config import load_config

START_UPDATES = 300
ENV_STEPS = 2500

OVERRIDES = {
    "data": {**STATE_DATA, "failure_episodes": 4},  # the reward model learns from failures
    "network": {"hidden_dims": [128, 128]},
    "learner": {
        "batch_size": 128,
        "steps": START_UPDATES,
        "eval_every": 0,
        "checkpoint_every": START_UPDATES,
        "log_every": 100,
        "seed": 0,
        "utd_ratio": 1.0,
        "publish_every": 10,
    },
    "reward": {"steps": 300, "text_encoder": "hash"},
    "actor": {
        "tick_hz": -1.0,
        "human_reset_every": 300,
        "keyboard": False,
        "control_rpc": False,
        "report_every_s": 2.0,
        "initial_weights_timeout_s": 60.0,
    },
    "replay": {"min_size_to_sample": 128, "checkpoint_every_s": 0},
}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """The dataset, a weak pre-trained checkpoint and a fine-tuned reward model."""
    from learner.pretrain import pretrain
    from reward_server.finetune import finetune
    from robofume.auth import deployment_secret
    from robofume.data import generate_dataset

    run_dir = tmp_path_factory.mktemp("online_run")
    cfg = load_config("sim-state", overrides={**OVERRIDES, "deploy": {"run_dir": str(run_dir)}})
    deployment_secret(cfg.deploy, create=True)  # the test plays the head
    data = tmp_path_factory.mktemp("online_data")
    generate_dataset(cfg, data)
    weak = pretrain(cfg, data, run_dir / "pretrain")
    reward = finetune(cfg.reward, data, run_dir / "reward", tb_dir=None)
    return cfg, data, weak.checkpoint, reward.model


def _success(cfg, checkpoint) -> float:
    from learner.evaluate import evaluate_policy
    from robofume.policy import load_policy

    result = evaluate_policy(cfg, load_policy(checkpoint), ["vase_forward"], episodes=20)
    return result.success_rate("vase_forward")


@pytest.mark.timeout(1800)  # a few minutes on an idle 2-core machine; generous for a loaded one
def test_online_fine_tuning_through_the_real_loop_raises_ground_truth_success(start, tmp_path):
    from actor.run import run_actor
    from learner.online import OnlineLearner
    from replay.server import start_replay_server
    from reward_server.server import start_server_thread

    cfg, data, checkpoint, reward_model = start
    before = _success(cfg, checkpoint)
    replay = start_replay_server(cfg, port=0, checkpoint_dir=tmp_path / "replay",
                                 checkpoint_every_s=0, heartbeat=False)  # fmt: skip
    reward = start_server_thread(reward_model, cfg.reward)
    deploy = dataclasses.replace(
        cfg.deploy, replay_address=replay.address, reward_addresses=(reward.address,)
    )
    cfg = cfg.replace(deploy=deploy)
    learner = OnlineLearner(cfg, pretrained=checkpoint, data_dir=data, out_dir=tmp_path / "online")
    stop = threading.Event()
    learning = threading.Thread(target=learner.run, kwargs={"stop_event": stop}, daemon=True)
    learning.start()
    try:
        status = run_actor(cfg, max_steps=ENV_STEPS)
    finally:
        stop.set()
        learning.join(timeout=120)
        learner.close()
        reward.stop()
        replay.stop()
    assert not learning.is_alive(), "the online learner did not stop"
    assert status["steps"] == ENV_STEPS and status["delivered_episodes"] > 5
    # labels came from the reward model over gRPC, and the actor acted on the learner's weights
    assert status["reward"]["failures"] == 0 and status["policy_version"] > START_UPDATES
    after = _success(cfg, learner.last_checkpoint)
    assert after >= before + 0.3, f"vase_forward success {before:.2f} -> {after:.2f} online"
    # the free-running actor waited for the learner, so the UTD target held: short only of the
    # steps the rate limiter keeps back (min_size_to_sample), the actor's lead and the last
    # episode, delivered as the actor stopped
    assert status["paced_ticks"] > 0
    usable = ENV_STEPS - cfg.replay.min_size_to_sample - 3 * cfg.env.max_episode_steps
    assert learner.online_updates >= 0.95 * cfg.learner.utd_ratio * usable
