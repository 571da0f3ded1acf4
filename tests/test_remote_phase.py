"""A preparation phase placed by ``deploy.prepare_resources`` fails loudly, never silently,
and on the head's own node it writes where the head reads.

A real local Ray offering a custom resource; the phase runner's own board. The successful
path (a worker node without the head's disk, the uploads) is in ``tests/test_multinode.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import ray

from deploy.phases import PhaseBoard
from deploy.remote_phase import run_remote_step
from robofume.config import load_config, save_config
from robofume.run_dir import RunDir

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=1, resources={"gpu_node": 1}, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def _config(tmp_path, resources: str, data: str = "no_data"):
    cfg = load_config("smoke", overrides=[
        "--deploy.run_dir", str(tmp_path / "run"), "--data.dir", str(tmp_path / data),
        "--deploy.prepare_resources", resources, "--deploy.start_timeout_s", "20",
    ])  # fmt: skip
    save_config(cfg, RunDir.of(cfg).config)
    return cfg


def test_no_node_with_the_resources_is_named_not_waited_for(tmp_path, local_ray):
    cfg = _config(tmp_path, "{gpu_node_that_nobody_offers: 1}")
    board = PhaseBoard(cfg)
    try:
        with pytest.raises(RuntimeError, match=r"no node offers.*gpu_node_that_nobody_offers"):
            run_remote_step(cfg, board, "pretrain")
    finally:
        board.close()


def test_a_failing_command_fails_the_phase_with_its_own_error(tmp_path, local_ray):
    cfg = _config(tmp_path, "{gpu_node: 1}")
    board = PhaseBoard(cfg)
    try:
        with pytest.raises(RuntimeError, match="robofume pretrain exited") as err:
            run_remote_step(cfg, board, "pretrain")
    finally:
        board.close()
    assert "no_data" in str(err.value)  # the command's own words: the dataset it did not find
    phase = board.phases["pretrain"]
    assert phase["state"] == "failed" and phase.get("node"), phase
    assert not any((RunDir.of(cfg).pretrain / "checkpoints").glob("ckpt_*.pt"))


def test_a_phase_placed_on_the_heads_own_node_writes_in_place(tmp_path, local_ray):
    """No storage URI and the head's disk: nothing to upload, the phase is done."""
    cfg = _config(tmp_path, "{gpu_node: 1}", data="data")
    made = subprocess.run([sys.executable, "-m", "deploy.command", "generate", "--preset", "smoke",
                           "--out", str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=240, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    board = PhaseBoard(cfg)
    try:
        run_remote_step(cfg, board, "reward")
    finally:
        board.close()
    assert board.phases["reward"]["state"] == "done", board.phases["reward"]
    assert (RunDir.of(cfg).reward / "model.pt").exists()
