"""On a CUDA GPU: the learner's update and the reward model at the sim-gpu preset's scale.

Excluded from the default run (``-m gpu``, ``make test-gpu``); they fail, not skip, on a
machine without CUDA, so a GPU run that silently fell back to the CPU cannot pass.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robofume.config import load_config

pytestmark = pytest.mark.gpu


def _random_batch(cfg, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    from robofume.tasks import task_names

    s, a, p = cfg.env.image_size, cfg.env.action_dim, cfg.network.proprio_dim
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8)
    batch = {
        "image": image,
        "next_image": image.roll(1, 0),
        "proprio": torch.randn(n, p, generator=g),
        "next_proprio": torch.randn(n, p, generator=g),
        "action": torch.rand(n, a, generator=g) * 2 - 1,
        "reward": torch.rand(n, generator=g),
        "terminal": torch.zeros(n),
        "mc_return": torch.rand(n, generator=g),
        "task": torch.randint(0, len(task_names()), (n,), generator=g),
    }
    return {k: v.to(device) for k, v in batch.items()}


def test_learner_updates_on_the_gpu_at_sim_gpu_scale():
    from learner.learner import Learner

    assert torch.cuda.is_available(), "no CUDA device: run the gpu tests on a GPU machine"
    cfg = load_config("sim-gpu", overrides={"learner": {"device": "cuda"}})
    learner = Learner(cfg)
    assert learner.device.type == "cuda"
    batch = _random_batch(cfg, cfg.learner.batch_size, learner.device)
    for _ in range(3):
        metrics = learner.update(batch)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    variables = learner.get_variables()
    assert all(np.isfinite(v).all() for v in variables.values())


def test_reward_model_scores_the_same_on_gpu_and_cpu():
    from reward_server.backends import make_reward_model

    assert torch.cuda.is_available(), "no CUDA device: run the gpu tests on a GPU machine"
    cfg = load_config("sim-gpu").reward
    cfg = dataclasses.replace(cfg, backend="cnn", text_encoder="hash", image_size=64)
    cpu, gpu = make_reward_model(cfg, "cpu"), make_reward_model(cfg, "cuda")
    gpu.load_state_dict(cpu.state_dict())
    cpu.eval()
    gpu.eval()
    images = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    questions = ["is the vase in the bin?"] * 8
    np.testing.assert_allclose(
        gpu.score(images, questions), cpu.score(images, questions), atol=1e-3
    )
