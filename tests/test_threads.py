"""Each process sizes its torch threads to its share of the cores."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.command import parse_args, size_command_threads
from robofume import threads
from robofume.config import ExperimentConfig
from robofume.threads import colocated_processes, thread_share

ROOT = Path(__file__).resolve().parents[1]


def _cfg(cores: int = 8, actors: int = 1, replicas: int = 1, **deploy) -> ExperimentConfig:
    cfg = ExperimentConfig()
    d = dataclasses.replace(
        cfg.deploy,
        ray_num_cpus=cores,
        num_actors=actors,
        num_reward_replicas=replicas,
        **deploy,
    )
    return cfg.replace(deploy=d)


def _replace(cfg: ExperimentConfig, section: str, **fields) -> ExperimentConfig:
    return cfg.replace(**{section: dataclasses.replace(getattr(cfg, section), **fields)})


def test_colocated_components_split_the_cores():
    cfg = _cfg(cores=8, actors=1, replicas=1)
    assert colocated_processes(cfg) == 3
    assert thread_share(cfg, "learner") == 8 // 3
    assert thread_share(_replace(cfg, "reward", torch_threads=0), "reward") == 8 // 3
    assert thread_share(_replace(cfg, "actor", policy_threads=0), "actor") == 8 // 3
    assert thread_share(cfg, "actor") == cfg.actor.policy_threads == 1  # its own default
    assert thread_share(_cfg(cores=16, actors=4, replicas=2), "learner") == 16 // 7


def test_steps_that_run_alone_take_every_core_and_workers_share_them():
    cfg = _cfg(cores=8)
    assert thread_share(cfg, "alone") == 8
    assert thread_share(_replace(cfg, "data", workers=2), "generate") == 4
    assert thread_share(_replace(cfg, "data", workers=16), "generate") == 1


def test_small_machine_gives_at_least_one_thread():
    cfg = _replace(_cfg(cores=2, actors=4, replicas=1), "actor", policy_threads=0)
    assert {thread_share(cfg, r) for r in ("learner", "actor", "reward")} == {1}
    assert thread_share(cfg, "alone") == 2


def test_explicit_settings_win():
    cfg = _cfg(cores=8, torch_threads=3)
    assert thread_share(cfg, "learner") == thread_share(cfg, "alone") == 3
    assert thread_share(_replace(cfg, "reward", torch_threads=5), "reward") == 5
    assert thread_share(_replace(cfg, "actor", policy_threads=2), "actor") == 2
    with pytest.raises(ValueError, match="unknown role"):
        thread_share(cfg, "painter")  # type: ignore[arg-type]


def test_cores_default_to_this_process_cpus():
    cfg = _cfg(cores=0)
    assert threads.machine_cores(cfg) == len(os.sched_getaffinity(0))


def test_set_threads_sizes_torch_and_the_processes_it_starts():
    child = "import torch; print(torch.get_num_threads())"
    script = (
        "import json, os, subprocess, sys, torch\n"
        "from robofume.threads import set_threads\n"
        "set_threads(1)\n"
        f"child = subprocess.run([sys.executable, '-c', {child!r}],"
        " capture_output=True, text=True, check=True).stdout.strip()\n"
        "print(json.dumps({'torch': torch.get_num_threads(),"
        " 'omp': os.environ['OMP_NUM_THREADS'], 'child': int(child)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # torch caps a thread count read from the environment at the core count; 1 always holds
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": 1, "omp": "1", "child": 1}


def test_commands_size_their_threads(monkeypatch):
    seen = []
    monkeypatch.setattr(threads, "set_threads", lambda n: seen.append(n) or n)
    base = ["--preset", "smoke", "--deploy.ray_num_cpus", "6"]
    assert size_command_threads(parse_args(["pretrain", *base])) == 6  # runs alone
    assert size_command_threads(parse_args(["learner", *base])) == 2  # 6 // 3 co-located
    assert size_command_threads(parse_args(["reward", "serve", *base])) == 2
    workers = ["--data.workers", "3"]
    assert size_command_threads(parse_args(["generate", *base, *workers])) == 2
    assert size_command_threads(parse_args(["tasks"])) is None
    assert seen == [6, 2, 2, 2]
