"""Dataset generation with the real simulator on a tiny config, and the dataset CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.command import main
from robofume.config import load_config
from robofume.data import (
    DatasetError,
    ensure_dataset,
    generate_dataset,
    load_dataset_dir,
    read_episodes,
)

HOLD = 2
OVERRIDES = [
    "--data.workers",
    "1",
    "--data.prior_episodes_per_task",
    "1",
    "--data.num_prior_tasks",
    "2",
    "--data.target_forward_episodes",
    "2",
    "--data.target_reset_episodes",
    "1",
    "--data.failure_episodes",
    "4",
    "--data.hold_steps",
    str(HOLD),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cfg = load_config("smoke", overrides=OVERRIDES)
    out = tmp_path_factory.mktemp("gen") / "ds"
    rc = main(["generate", "--preset", "smoke", "--out", str(out), *OVERRIDES])
    assert rc == 0
    return cfg, out


def test_counts_and_manifest(dataset):
    cfg, out = dataset
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["episodes"] == {"prior": 2, "target": 3, "failures": 4}
    assert manifest["counts"]["target"] == {
        "target_forward/vase_forward": 2,
        "target_reset/vase_reset": 1,
    }
    assert set(manifest["failure_modes"]) == {"aborted", "noisy", "dropped", "wrong_bin"}
    assert manifest["config_hash"] and manifest["generation_seconds"] > 0
    expert = manifest["expert"]
    assert expert["demo_successes"] == 5  # 2 prior + 2 forward + 1 reset kept
    assert expert["demo_attempts"] >= 5
    data = load_dataset_dir(out)
    assert {k: len(v) for k, v in data.items()} == {"prior": 2, "target": 3, "failures": 4}
    first = data["prior"][0]
    assert first.images.shape[1:] == (cfg.env.image_size, cfg.env.image_size, 3)
    assert first.actions.shape[1] == cfg.env.action_dim


def test_demos_end_in_success_and_failures_never_succeed(dataset):
    cfg, out = dataset
    data = load_dataset_dir(out, discount=0.9)
    for ep in data["prior"] + data["target"]:
        assert len(ep) <= cfg.env.max_episode_steps
        assert ep.success[-(HOLD + 1) :].all(), ep.task  # the last 3 frames show success
        assert ep.terminals[-1] and not ep.terminals[:-1].any()
        np.testing.assert_array_equal(ep.rewards, ep.success.astype(np.float32))
        assert ep.mc_returns is not None and ep.mc_returns[-1] == 1.0
    for ep in data["failures"]:
        assert ep.kind == "failure" and ep.task in ("vase_forward", "vase_reset")
        assert not ep.success.any() and not ep.terminals.any()
        assert ep.meta["failure_mode"] in ("aborted", "noisy", "dropped", "wrong_bin")
        assert not ep.mc_returns.any()


def test_reset_demo_starts_where_its_forward_demo_ended(dataset):
    _, out = dataset
    target = read_episodes(out / "target.hdf5")
    forward = {e.meta["pair"]: e for e in target if e.kind == "target_forward"}
    resets = [e for e in target if e.kind == "target_reset"]
    assert len(forward) == 2 and len(resets) == 1
    for rst in resets:
        fwd = forward[rst.meta["pair"]]
        np.testing.assert_array_equal(rst.images[0], fwd.images[-1])
        np.testing.assert_array_equal(rst.proprio[0], fwd.proprio[-1])
        assert rst.language != fwd.language


def test_inspect_json_and_render(dataset, capsys, tmp_path):
    _, out = dataset
    assert main(["inspect", str(out / "target.hdf5"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3
    assert summary["kinds"] == {"target_forward": 2, "target_reset": 1}
    assert summary["tasks"]["vase_forward"]["success_rate"] == 1.0
    assert summary["image_shape"] == [32, 32, 3]
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"]["failures"]["success_rate"] == 0.0
    png, gif = tmp_path / "strip.png", tmp_path / "ep.gif"
    assert main(["render", str(out / "target.hdf5"), "--episode", "0", "--out", str(png)]) == 0
    assert (
        main(["render", str(out / "failures.hdf5"), "--episode", "1", "--gif", "--out", str(gif)])
        == 0
    )
    import imageio.v2 as imageio

    strip = imageio.imread(png)
    assert strip.shape[0] == 32 + 4 and strip.shape[2] == 3
    n_frames = len(read_episodes(out / "failures.hdf5")[1].images)
    assert len(imageio.mimread(gif)) == n_frames
    assert main(["render", str(out / "target.hdf5"), "--episode", "9"]) == 1  # out of range


def test_missing_dataset_dir_says_how_to_make_one(tmp_path):
    with pytest.raises(DatasetError, match=r"run `robofume generate --preset .* --out"):
        load_dataset_dir(tmp_path / "nothing")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "prior.hdf5").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"missing target\.hdf5, failures\.hdf5, manifest\.json"):
        load_dataset_dir(tmp_path / "partial")


def test_generation_is_deterministic_across_worker_counts(tmp_path, dataset):
    _, out = dataset
    small = load_config("smoke", overrides=[*OVERRIDES, "--data.workers", "2"])
    other = generate_dataset(small, tmp_path / "again")
    for part in ("prior", "target", "failures"):
        a = read_episodes(out / f"{part}.hdf5")
        b = read_episodes(other / f"{part}.hdf5")
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.images, y.images)
            np.testing.assert_array_equal(x.actions, y.actions)
            assert x.meta == y.meta
    manifest = json.loads((other / "manifest.json").read_text())
    assert manifest["workers"] == 2
    assert manifest["config_hash"] == json.loads((out / "manifest.json").read_text())["config_hash"]


def test_ensure_dataset_reuses_a_matching_dataset_and_regenerates_a_stale_one(dataset, monkeypatch):
    cfg, out = dataset
    before = (out / "prior.hdf5").stat().st_mtime_ns
    assert ensure_dataset(cfg, out) == out
    assert (out / "prior.hdf5").stat().st_mtime_ns == before
    calls = []
    monkeypatch.setattr(
        "robofume.data.generate.generate_dataset", lambda c, p: calls.append(c.data.seed) or p
    )
    other = load_config("smoke", overrides=[*OVERRIDES, "--data.seed", "7"])
    assert ensure_dataset(other, out) == out
    assert calls == [7]


def test_generate_never_replaces_a_dataset_with_fewer_episodes_without_overwrite(
    dataset, tmp_path, caplog
):
    _, out = dataset
    copy = tmp_path / "ds"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    fewer = [*OVERRIDES, "--data.failure_episodes", "2"]
    before = {f.name: f.read_bytes() for f in copy.iterdir()}
    rc = main(["generate", "--preset", "smoke", "--out", str(copy), *fewer])
    assert rc == 1
    assert "failures.hdf5: holds 4 episodes and this generation would replace it with 2" in (
        caplog.text
    )
    assert {f.name: f.read_bytes() for f in copy.iterdir()} == before  # untouched, manifest too
    rc = main(["generate", "--preset", "smoke", "--out", str(copy), *fewer, "--overwrite"])
    assert rc == 0 and len(read_episodes(copy / "failures.hdf5")) == 2


def test_unknown_failure_mode_is_named():
    from robofume.data.generate import plan_jobs

    cfg = load_config("smoke", overrides=["--data.failure_modes", "[held, hover]"])
    with pytest.raises(ValueError, match=r"unknown \['hover'\]; known: \['aborted'"):
        plan_jobs(cfg)
