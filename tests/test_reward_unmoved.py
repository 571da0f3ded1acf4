"""The success classifier never says "yes" while the task's object has not moved.

A model fine-tuned with the product's recipe (``robofume reward finetune`` of the sim-cpu
preset: the default backend, augmentation, near-success hard negatives, a threshold per
episode kind) on a small simulated vase dataset
scores frames of fresh scenes where the vase still stands where the forward task starts, with
the arm anywhere on its way to it, each frame also under the strongest augmentation used in
training. P(yes) must stay below 0.5 on all of
them, while the model still finds real successes (else "always no" would pass).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robofume.config import load_config

pytestmark = pytest.mark.timeout(600)

MOVED_M = 0.005
"""The object counts as moved once it is this far (metres) from where it started."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from reward_server.finetune import finetune
    from robofume.data import generate_dataset

    root = tmp_path_factory.mktemp("unmoved")
    cfg = load_config(  # the pixel preset's reward model (the default backend), less data
        "sim-cpu",
        overrides=[
            "--data.target_tasks", "[vase]", "--data.target_forward_episodes", "10",
            "--data.target_reset_episodes", "10", "--data.failure_episodes", "8",
            "--data.num_prior_tasks", "1", "--data.prior_episodes_per_task", "1",
            "--data.workers", "1", "--data.seed", "3",
        ],
    )  # fmt: skip
    data = generate_dataset(cfg, root / "data")
    result = finetune(cfg.reward, data, root / "reward", device="cpu")
    return cfg, result.model


def unmoved_frames(cfg, seeds=range(900, 906)) -> tuple[np.ndarray, np.ndarray]:
    """Frames of fresh vase_forward scenes while the vase stays put (the expert on its way to
    it), and each rollout's frame two steps after its success (as a demo's last frame)."""
    from robofume.envs import ScriptedExpert, make_env

    env = make_env(cfg.env, task="vase_forward", seed=0)
    expert = ScriptedExpert(env, noise=0.0, seed=0)
    still, done = [], []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed, options={"task": "vase_forward"})
            expert.reset()
            start = env.unwrapped.object_position("vase").copy()
            for _ in range(cfg.env.max_episode_steps):
                moved = np.linalg.norm(env.unwrapped.object_position("vase") - start) > MOVED_M
                if not moved:
                    still.append(obs["image"])
                obs, _, _, _, info = env.step(expert(obs, "vase_forward"))
                if info["success"]:
                    for _ in range(2):
                        obs, _, _, _, info = env.step(expert(obs, "vase_forward"))
                    if info["success"]:
                        done.append(obs["image"])
                    break
    finally:
        env.close()
    return np.stack(still), np.stack(done)


def strongest_views(frames: np.ndarray, strength: float, tilt: float, views: int = 8) -> np.ndarray:
    """``frames`` and ``views`` augmented copies of each, at ``strength`` and ``tilt`` (uint8)."""
    from reward_server.images import augment, to_float

    gen = torch.Generator().manual_seed(0)
    x = to_float(frames, frames.shape[1], "cpu")
    out = [frames]
    for _ in range(views):
        y = augment(x, gen, strength, tilt)
        out.append((y.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy())
    return np.concatenate(out)


def test_no_yes_where_the_object_has_not_moved_even_under_the_strongest_augmentation(trained):
    cfg, model = trained
    r = cfg.reward
    assert r.augment and r.near_success_frames > 0 and r.hard_negatives  # the product's recipe
    still, done = unmoved_frames(cfg)
    assert len(still) >= 30 and len(done) >= 4  # the arm travelled; the expert succeeded
    frames = strongest_views(still, r.augment_strength, r.augment_tilt)
    question = model.question_for("vase_forward")
    probs = model.score(frames, [question] * len(frames))
    worst = int(np.argmax(probs))
    assert probs.max() < 0.5, (
        f"P(yes) = {probs.max():.3f} on a frame where the vase has not moved "
        f"(frame {worst % len(still)}, view {worst // len(still)})"
    )
    done_probs = model.score(done, [question] * len(done))
    assert (done_probs >= model.threshold).mean() >= 0.5, done_probs  # not "no" to everything


def test_hard_negatives_ask_each_success_frame_the_paired_tasks_question():
    import reward_fixtures as fx

    from reward_server.dataset import build_dataset, with_hard_negatives

    cfg = load_config("smoke").reward
    groups = fx.episodes(n_target=4, n_failure=2, seed=1)
    for i, ep in enumerate(groups["target"]):  # a forward/reset pair of the simulator's tasks
        groups["target"][i] = dataclasses.replace(
            ep, task="vase_forward" if i % 2 == 0 else "vase_reset",
            kind="target_forward" if i % 2 == 0 else "target_reset",
        )  # fmt: skip
    data = build_dataset(groups, cfg)
    more = with_hard_negatives(data)
    added = len(more) - len(data)
    assert added == int(data.labels.sum()) > 0
    extra = more.subset(np.arange(len(data), len(more)))
    assert not extra.labels.any() and not extra.success.any()
    q = data.task_questions
    for k in range(added):
        task = data.episode_tasks[extra.episode[k]]
        other = "vase_reset" if task == "vase_forward" else "vase_forward"
        assert extra.questions[k] == q[other]  # the same frame, the other task's question
    assert set(more.episode.tolist()) == set(data.episode.tolist())  # splits stay by episode


def test_near_success_frames_are_the_last_no_frames_before_the_yes_frames():
    from reward_fixtures import episodes

    from reward_server.dataset import build_dataset, near_success

    cfg = load_config("smoke").reward
    data = build_dataset(episodes(n_target=2, n_failure=1, seed=0), cfg)
    near = near_success(data, 3)
    for e in set(data.episode.tolist()):
        rows = data.episode == e
        labels, frames = data.labels[rows], data.frame[rows]
        if labels.any():
            first_yes = frames[labels > 0.5].min()
            assert sorted(frames[near[rows]]) == [first_yes - 3, first_yes - 2, first_yes - 1]
        else:  # a failure rollout has no success to be near
            assert not near[rows].any()
    assert not near_success(data, 0).any()


def test_the_threshold_holds_the_target_on_every_episode_kind():
    from reward_fixtures import episodes

    from reward_server.dataset import build_dataset
    from reward_server.finetune import tune_threshold
    from reward_server.thresholds import choose_threshold

    cfg = dataclasses.replace(load_config("smoke").reward, target_fpr=0.3, min_threshold=0.0)
    data = build_dataset(episodes(n_target=10, n_failure=2, seed=0), cfg)  # failures: few
    kinds = data.kinds()

    class Scores:  # a model whose failure frames look far more like success than the demos'
        threshold = 0.5

        def score(self, images, questions):
            return np.where(kinds == "failure", 0.9, 0.2).astype(np.float32) * (
                data.labels <= 0.5
            ) + (data.labels > 0.5)

    model = Scores()
    tune_threshold(model, data, cfg)
    assert model.threshold > 0.9  # set by the failure frames, not by the mass of demo frames
    overall = choose_threshold(model.score(None, None)[data.labels <= 0.5], cfg.target_fpr)
    assert overall < 0.9  # one rule over all "no" frames would let every failure frame pass
