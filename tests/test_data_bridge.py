"""BridgeData V2 importers on tiny files written here: numpy, TFRecord and RLDS forms."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from deploy.command import main
from robofume.data import DatasetError, read_episodes
from robofume.data.bridge import BridgeMapping, import_bridge, map_actions, task_name_for

SIZE = 40  # source frames; imported at 32
STEPS = 5  # actions per trajectory


def _traj(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (STEPS + 1, SIZE, SIZE, 3), dtype=np.uint8)
    states = rng.normal(size=(STEPS + 1, 7)).astype(np.float32)
    states[:, 6] = np.linspace(1.0, 0.0, STEPS + 1)
    actions = np.zeros((STEPS, 7), np.float32)
    actions[:, 0] = 0.02  # half of xyz_scale 0.04 -> 0.5
    actions[:, 1] = -0.06  # beyond the scale -> clipped to -1
    actions[:, 5] = 0.1  # yaw (dropped with action_dim 4)
    actions[:, 6] = 0.0  # Bridge closed -> ours +1 (close)
    return {"frames": frames, "states": states, "actions": actions}


def _check_episode(ep, traj, language="Put the pot in the sink."):
    assert ep.images.shape == (STEPS + 1, 32, 32, 3) and ep.images.dtype == np.uint8
    assert ep.kind == "prior"
    assert ep.language == language
    assert ep.task == "bridge_put_the_pot_in_the_sink"
    np.testing.assert_allclose(ep.actions[0], [0.5, -1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(ep.rewards, [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(ep.terminals, [False] * 4 + [True])
    assert ep.success[-1] and not ep.success[:-1].any()
    np.testing.assert_allclose(ep.proprio[:, :3], traj["states"][:, :3], atol=1e-6)
    np.testing.assert_allclose(ep.proprio[:, 3], traj["states"][:, 6], atol=1e-6)
    want = cv2.resize(traj["frames"][2], (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(ep.images[2], want)


def test_task_name_and_action_mapping_with_yaw():
    assert task_name_for("Put the pot in the sink.") == "bridge_put_the_pot_in_the_sink"
    assert task_name_for("  ") == "bridge_unlabeled"
    # (dx, dy, dz, droll, dpitch, dyaw, gripper open=1) -> (dx, dy, dz, dyaw, gripper close>0)
    bridge = np.array([[0.04, 0.0, -0.02, 0.1, 0.2, -0.125, 1.0], [0.0, 0.1, 0.0, 0, 0, 0.6, 0.25]])
    out = map_actions(bridge, BridgeMapping(action_dim=5, xyz_scale=0.04, rot_scale=0.25))
    want = [[1.0, 0.0, -0.5, -0.5, -1.0], [0.0, 1.0, 0.0, 1.0, 0.5]]
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_import_numpy_form(tmp_path):
    trajs, raw = [], []
    for i in range(3):
        t = _traj(i)
        raw.append(t)
        obs = [{"images0": f, "state": s} for f, s in zip(t["frames"], t["states"], strict=True)]
        item = {"actions": list(t["actions"]), "language": ["", "Put the pot in the sink."]}
        if i == 0:  # with next_observations: obs[:-1] + next_obs
            item["observations"], item["next_observations"] = obs[:-1], obs[1:]
        else:  # one frame per action plus the final frame, no next_observations
            item["observations"] = obs
        trajs.append(item)
    trajs[2]["language"] = []  # unlabeled -> skipped
    src = tmp_path / "bridge" / "task" / "train"
    src.mkdir(parents=True)
    arr = np.empty(len(trajs), dtype=object)
    arr[:] = trajs
    np.save(src / "out.npy", arr)
    out = tmp_path / "bridge.hdf5"
    rc = main(["import-bridge", str(tmp_path / "bridge"), "--out", str(out), "--image-size", "32"])
    assert rc == 0
    eps = read_episodes(out)
    assert len(eps) == 2
    for ep, t in zip(eps, raw, strict=False):
        _check_episode(ep, t)


def _tensor_feature(tf, value):
    blob = tf.io.serialize_tensor(tf.convert_to_tensor(value)).numpy()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[blob]))


def test_import_tfrecord_form(tmp_path):
    tf = pytest.importorskip("tensorflow")
    t = _traj(7)
    path = tmp_path / "bridge.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        feature = {
            "observations/images0": _tensor_feature(tf, t["frames"][:-1]),
            "observations/state": _tensor_feature(tf, t["states"][:-1]),
            "next_observations/images0": _tensor_feature(tf, t["frames"][1:]),
            "next_observations/state": _tensor_feature(tf, t["states"][1:]),
            "actions": _tensor_feature(tf, t["actions"]),
            "terminals": _tensor_feature(tf, np.zeros(STEPS, bool)),
            "language": _tensor_feature(tf, np.array([b"Put the pot in the sink."])),
        }
        w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    out = tmp_path / "out.hdf5"
    stats = import_bridge(path, out, mapping=BridgeMapping(image_size=32))
    assert stats["format"] == "tfrecord" and stats["episodes"] == 1
    _check_episode(read_episodes(out)[0], t)


def _png(frame):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _rlds_features(tf, t):
    """What TFDS writes for an RLDS episode: step features flattened and concatenated."""
    n = STEPS + 1  # RLDS: one step per frame; the last step's action is dropped on import
    actions = np.concatenate([t["actions"], t["actions"][-1:]])
    lang = b"Put the pot in the sink."
    return {
        "steps/observation/image_0": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[_png(f) for f in t["frames"]])
        ),
        "steps/observation/state": tf.train.Feature(
            float_list=tf.train.FloatList(value=t["states"].reshape(-1))
        ),
        "steps/action": tf.train.Feature(float_list=tf.train.FloatList(value=actions.reshape(-1))),
        "steps/language_instruction": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[lang] * n)
        ),
        "steps/is_last": tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * (n - 1) + [1])),
        "episode_metadata/file_path": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"x/y"])
        ),
    }


def test_import_rlds_form_example_and_sequence_example(tmp_path, capsys):
    tf = pytest.importorskip("tensorflow")
    t0, t1 = _traj(1), _traj(2)
    shard = tmp_path / "rlds" / "bridge_dataset-train.tfrecord-00000-of-00001"
    shard.parent.mkdir()
    with tf.io.TFRecordWriter(str(shard)) as w:
        feats = _rlds_features(tf, t0)
        w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
        feats = _rlds_features(tf, t1)
        lists = {}
        for key in ("steps/observation/image_0", "steps/language_instruction"):
            lists[key] = tf.train.FeatureList(
                feature=[
                    tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
                    for v in feats[key].bytes_list.value
                ]
            )
        for key in ("steps/observation/state", "steps/action"):
            vals = np.asarray(feats[key].float_list.value).reshape(STEPS + 1, 7)
            lists[key] = tf.train.FeatureList(
                feature=[tf.train.Feature(float_list=tf.train.FloatList(value=v)) for v in vals]
            )
        seq = tf.train.SequenceExample(feature_lists=tf.train.FeatureLists(feature_list=lists))
        w.write(seq.SerializeToString())
    out = tmp_path / "rlds.hdf5"
    rc = main(
        [
            "import-bridge",
            str(tmp_path / "rlds"),
            "--out",
            str(out),
            "--format",
            "rlds",
            "--image-size",
            "32",
            "--json",
        ]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    eps = read_episodes(out)
    assert eps[0].meta["file_path"] == "x/y"
    _check_episode(eps[0], t0)
    _check_episode(eps[1], t1)


def test_bad_bridge_inputs_name_the_problem(tmp_path):
    tf = pytest.importorskip("tensorflow")
    t = _traj(3)
    path = tmp_path / "broken.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        feats = _rlds_features(tf, t)
        del feats["steps/action"]
        w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    with pytest.raises(DatasetError, match=r"episode 0.*'steps/action'.*missing"):
        import_bridge(path, tmp_path / "o.hdf5", fmt="rlds")
    assert not (tmp_path / "o.hdf5").exists()  # nothing half-written
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(b"\x00" * 5 + b"not a tfrecord" * 10)
    with pytest.raises(DatasetError, match=r"garbage\.tfrecord"):
        import_bridge(garbage, tmp_path / "o.hdf5", fmt="rlds")
    bad_npy = tmp_path / "out.npy"
    arr = np.empty(1, dtype=object)
    arr[:] = [{"observations": [{"images0": t["frames"][0]}], "actions": []}]
    np.save(bad_npy, arr)
    with pytest.raises(DatasetError, match=r"traj 0.*'state'"):
        import_bridge(bad_npy, tmp_path / "o.hdf5", fmt="npy")


# -- no destructive writes -------------------------------------------------------------

LANG = "Put the pot in the sink."


def _steps(t: dict) -> list[dict]:
    return [{"images0": f, "state": s} for f, s in zip(t["frames"], t["states"], strict=True)]


def _save_npy(path, items: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    np.save(path, arr)
    return path


def _labeled(n: int, language=LANG) -> list[dict]:
    return [
        {"observations": _steps(t), "actions": t["actions"], "language": [language]}
        for t in (_traj(i) for i in range(n))
    ]


def _import_cli(src, out, *extra: str) -> int:
    return main(["import-bridge", str(src), "--out", str(out), "--image-size", "32", *extra])


def _leftovers(folder) -> list[str]:
    """Temporary files a writer left behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def existing(tmp_path):
    """A 4-episode output file and its bytes."""
    out = tmp_path / "bridge.hdf5"
    assert _import_cli(_save_npy(tmp_path / "four" / "out.npy", _labeled(4)), out) == 0
    assert len(read_episodes(out)) == 4
    return out, out.read_bytes()


def test_unlabeled_source_is_an_error_and_writes_nothing(tmp_path, existing, caplog):
    out, before = existing
    src = _save_npy(tmp_path / "unlabeled" / "out.npy", _labeled(2, language=""))
    for extra in ((), ("--overwrite",)):  # zero episodes is an error even with --overwrite
        caplog.clear()
        assert _import_cli(src, out, *extra) == 1
        assert out.read_bytes() == before
        assert str(src) in caplog.text
        assert "no episodes imported: none of its 2 trajectories has a language" in caplog.text
    fresh = tmp_path / "fresh.hdf5"
    with pytest.raises(DatasetError, match=r"none of its 2 trajectories.*fresh\.hdf5 was not"):
        import_bridge(src, fresh, fmt="npy")
    empty = _save_npy(tmp_path / "empty" / "out.npy", [])
    with pytest.raises(DatasetError, match=r"empty/out\.npy: no episodes imported: it holds no"):
        import_bridge(empty, fresh, fmt="npy")
    assert not fresh.exists()
    assert _leftovers(tmp_path) == []


def test_fewer_episodes_need_overwrite(tmp_path, existing, caplog):
    out, before = existing
    two = _save_npy(tmp_path / "two" / "out.npy", _labeled(2))
    assert _import_cli(two, out) == 1
    assert out.read_bytes() == before
    assert "holds 4 episodes; refusing to replace it with 2" in caplog.text
    assert "--overwrite" in caplog.text
    assert _leftovers(tmp_path) == []
    assert _import_cli(two, out, "--overwrite") == 0
    assert len(read_episodes(out)) == 2
    # as many or more episodes (a re-run, a bigger import) replace the file without the flag
    assert _import_cli(two, out) == 0
    assert _import_cli(tmp_path / "four", out) == 0
    assert len(read_episodes(out)) == 4
    assert _leftovers(tmp_path) == []


def test_out_that_is_not_an_episode_file_is_refused(tmp_path, caplog):
    src = _save_npy(tmp_path / "src" / "out.npy", _labeled(1))
    notes = tmp_path / "notes.hdf5"
    notes.write_text("not a dataset")
    assert _import_cli(src, notes) == 1
    assert notes.read_text() == "not a dataset"
    assert "notes.hdf5: exists and is not a robofume episode file" in caplog.text
    assert _import_cli(src, src) == 1  # --out the source itself
    assert np.load(src, allow_pickle=True)[0]["language"] == [LANG]
    assert _leftovers(tmp_path) == []
    assert _import_cli(src, notes, "--overwrite") == 0
    assert len(read_episodes(notes)) == 1


def test_out_is_a_directory_fails_before_any_work(tmp_path, caplog, monkeypatch):
    from robofume.data import bridge

    def no_work(*args, **kwargs):
        raise AssertionError("the source was read before --out was checked")

    monkeypatch.setattr(bridge, "detect_format", no_work)
    monkeypatch.setattr(bridge, "iter_raw", no_work)
    src = _save_npy(tmp_path / "src" / "out.npy", _labeled(1))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    for extra in ((), ("--overwrite",)):
        caplog.clear()
        assert _import_cli(src, folder, *extra) == 1
        assert f"{folder}: is a directory; expected the path of an .hdf5 file" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert _leftovers(tmp_path) == []


def _as_records(steps: list[dict]) -> np.ndarray:
    """Per-step observations as a structured array with fields images0 and state."""
    dtype = [("images0", np.uint8, (SIZE, SIZE, 3)), ("state", np.float32, (7,))]
    records = np.zeros(len(steps), dtype=dtype)
    for i, step in enumerate(steps):
        records[i] = (step["images0"], step["state"])
    return records


def _as_objects(steps: list[dict]) -> np.ndarray:
    objects = np.empty(len(steps), dtype=object)
    objects[:] = steps
    return objects


def _as_stacked(steps: list[dict]) -> dict:
    return {k: np.stack([step[k] for step in steps]) for k in ("images0", "state")}


def test_next_observations_as_numpy_arrays(tmp_path):
    t = _traj(5)
    obs, nxt = _steps(t)[:-1], _steps(t)[1:]
    pairs = [
        (obs, _as_objects(nxt)),  # object array of per-step dicts
        (obs, _as_records(nxt)),  # structured array
        (_as_records(obs), _as_records(nxt)),
        (_as_stacked(obs), _as_stacked(nxt)),  # dicts of stacked arrays
        (_steps(t), np.empty(0, dtype=object)),  # empty: as if absent
    ]
    items = [
        {
            "observations": o,
            "next_observations": n,
            "actions": t["actions"],
            "language": np.array(["", LANG]),  # a numpy array of strings, too
        }
        for o, n in pairs
    ]
    src = _save_npy(tmp_path / "out.npy", items)
    out = tmp_path / "o.hdf5"
    stats = import_bridge(src, out, mapping=BridgeMapping(image_size=32))
    assert stats["episodes"] == len(pairs)
    for ep in read_episodes(out):
        _check_episode(ep, t)


@pytest.mark.parametrize(
    ("nxt", "match"),
    [
        (np.zeros((STEPS, 7), np.float32), r"key 'next_observations': expected.*got a float32"),
        (np.zeros(STEPS, dtype=[("images0", np.uint8, (2,))]), r"key 'state': missing in 'next_"),
        (np.array([1, 2], dtype=object), r"key 'next_observations': step 0 is a int"),
        ("frames", r"key 'next_observations': expected a list.*got a str"),
    ],
    ids=["numeric", "structured-without-state", "object-of-ints", "str"],
)
def test_bad_next_observations_name_trajectory_and_key(tmp_path, nxt, match):
    good = _labeled(1)[0]
    bad = {**good, "observations": _steps(_traj(0))[:-1], "next_observations": nxt}
    src = _save_npy(tmp_path / "out.npy", [good, bad])
    out = tmp_path / "o.hdf5"
    with pytest.raises(DatasetError, match=r"out\.npy: episode 'traj 1' " + match):
        import_bridge(src, out, fmt="npy")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_next_observations_must_match_observations(tmp_path):
    t = _traj(0)
    item = {**_labeled(1)[0], "observations": _steps(t)[:-1], "next_observations": _steps(t)[2:]}
    src = _save_npy(tmp_path / "out.npy", [item])
    with pytest.raises(DatasetError, match=r"'traj 0' key 'next_observations': 4 steps, but"):
        import_bridge(src, tmp_path / "o.hdf5", fmt="npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
