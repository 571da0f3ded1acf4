"""The online phase notices a crashed service instead of waiting for its heartbeats forever.

A real local Ray hosts the services; their targets are plain functions that fail or return at
once (``operator.truediv(config, stop_event)`` raises TypeError).
"""

from __future__ import annotations

import time

import pytest

from deploy.phases import check_services
from robofume.config import ExperimentConfig

ray = pytest.importorskip("ray")


def _wait_finished(handle, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = ray.get(handle.state.remote(), timeout=30)
        if not state["alive"]:
            return state
        time.sleep(0.1)
    raise AssertionError("the service kept running")


def test_a_crashed_actor_fails_the_online_phase_with_its_error():
    from deploy import services
    from deploy.up import config_dict

    cfg = ExperimentConfig()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        learner = services.launch("learner", "operator:is_not", config_dict(cfg))
        assert _wait_finished(learner)["state"] == "finished"
        check_services(cfg, {})  # a finished learner and no actor yet: nothing to report

        actor = services.launch("actor_0", "operator:truediv", config_dict(cfg))
        assert _wait_finished(actor)["state"] == "crashed"
        with pytest.raises(RuntimeError, match="actor_0 crashed: TypeError: unsupported operand"):
            check_services(cfg, {})
    finally:
        ray.shutdown()


def test_a_service_whose_process_dies_is_restarted_and_says_so(tmp_path):
    import dataclasses
    import os
    import signal

    from deploy import services
    from deploy.up import config_dict
    from robofume.status import read_statuses

    base = ExperimentConfig()
    cfg = base.replace(deploy=dataclasses.replace(base.deploy, run_dir=str(tmp_path)))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        learner = services.launch("learner", "operator:is_not", config_dict(cfg))
        first = _wait_finished(learner)
        assert first["restarts"] == 0
        deadline = time.monotonic() + 60  # the heartbeat file the restart reads
        while "service_learner" not in read_statuses(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 300  # a new worker process: slow on a loaded 2-core machine
        again = None
        while time.monotonic() < deadline:
            try:
                again = ray.get(learner.state.remote(), timeout=10)
                break
            except Exception:  # while Ray restarts it
                time.sleep(0.5)
        assert again is not None and again["pid"] != first["pid"]
        assert again["restarts"] == 1
        from test_deploy_e2e import _tags

        from robofume import metrics as tags

        assert tags.SERVICE_RESTARTS in _tags(tmp_path / "tb" / "learner")
    finally:
        ray.shutdown()
