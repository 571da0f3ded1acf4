"""The HDF5 episode store: roundtrip, lazy access, and a clear error for every corruption."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from robofume.data import DatasetError, DatasetWriter, EpisodeFile, read_episodes, write_episodes
from robofume.types import Episode


def make_episode(
    steps: int = 6,
    task: str = "vase_forward",
    kind: str = "target_forward",
    seed: int = 0,
    size: int = 16,
) -> Episode:
    rng = np.random.default_rng(seed)
    success = np.zeros(steps, bool)
    success[-2:] = True
    terminals = np.zeros(steps, bool)
    terminals[-1] = True
    return Episode(
        images=rng.integers(0, 256, (steps + 1, size, size, 3), dtype=np.uint8),
        proprio=rng.normal(size=(steps + 1, 4)).astype(np.float32),
        actions=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        rewards=success.astype(np.float32),
        terminals=terminals,
        success=success,
        task=task,
        language=f"do {task}",
        kind=kind,  # type: ignore[arg-type]
        meta={"seed": seed},
    )


@pytest.fixture
def stored(tmp_path):
    episodes = [
        make_episode(6, "vase_forward", "target_forward", 0),
        make_episode(4, "vase_reset", "target_reset", 1),
        make_episode(5, "prior_cube_left_bin", "prior", 2),
    ]
    episodes[2].mc_returns = np.arange(5, dtype=np.float32)
    path = tmp_path / "eps.hdf5"
    write_episodes(path, episodes, attrs={"source": "test", "counts": [1, 2]})
    return path, episodes


def test_roundtrip_and_filters(stored):
    path, episodes = stored
    back = read_episodes(path)
    assert len(back) == 3
    for a, b in zip(episodes, back, strict=True):
        for key in ("images", "proprio", "actions", "rewards", "terminals", "success"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            assert getattr(b, key).dtype == getattr(a, key).dtype
        assert (a.task, a.language, a.kind, a.meta) == (b.task, b.language, b.kind, b.meta)
    np.testing.assert_array_equal(back[2].mc_returns, np.arange(5))
    assert back[0].mc_returns is None and back[0].labels is None
    assert [e.task for e in read_episodes(path, kinds=["target_reset", "prior"])] == [
        "vase_reset",
        "prior_cube_left_bin",
    ]
    assert [e.kind for e in read_episodes(path, tasks=["vase_forward"])] == ["target_forward"]
    with h5py.File(path) as f:  # robomimic-style layout
        assert f["data/demo_1/obs/image"].chunks == (1, 16, 16, 3)
        assert f["data/demo_1"].attrs["task"] == "vase_reset"
        assert f["data/demo_1"].attrs["task_index"] == 1  # vase_reset in the simulated suite
        assert f["data"].attrs["total"] == 15


def test_episode_file_lazy_access_and_summary(stored):
    path, _ = stored
    with EpisodeFile(path) as f:
        assert len(f) == 3
        assert f.attrs["source"] == "test" and f.attrs["counts"] == [1, 2]
        assert f.attrs["tasks"] == ["vase_forward", "vase_reset", "prior_cube_left_bin"]
        assert f.info(1)["steps"] == 4
        assert [len(e) for e in f] == [6, 4, 5]
        assert f[-1].task == "prior_cube_left_bin"
        s = f.summary()
    assert s["episodes"] == 3 and s["steps"] == 15
    assert s["image_shape"] == [16, 16, 3] and s["action_dim"] == 4
    assert s["kinds"] == {"target_forward": 1, "target_reset": 1, "prior": 1}
    assert s["tasks"]["vase_reset"]["episodes"] == 1
    assert s["success_rate"] == 1.0


def _corrupt(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize(
    ("corruption", "key", "words"),
    [
        (lambda f: f.__delitem__("data/demo_1/rewards"), "rewards", "missing"),
        (lambda f: f["data/demo_1/actions"].__setitem__((2, 1), np.nan), "actions", "NaN"),
        (
            lambda f: (
                f.__delitem__("data/demo_1/success"),
                f.create_dataset("data/demo_1/success", data=np.zeros(3, bool)),
            ),
            "success",
            "length 3",
        ),
        (
            lambda f: (
                f.__delitem__("data/demo_1/obs/image"),
                f.create_dataset("data/demo_1/obs/image", data=np.zeros((5, 16, 16, 3), "f4")),
            ),
            "obs/image",
            "dtype float32",
        ),
        (
            lambda f: (
                f.__delitem__("data/demo_1/obs/image"),
                f.create_dataset("data/demo_1/obs/image", data=np.zeros((5, 16, 16), "u1")),
            ),
            "obs/image",
            "dimensions",
        ),
        (
            lambda f: (
                f.__delitem__("data/demo_1/obs/image"),
                f.create_dataset("data/demo_1/obs/image", data=np.zeros((5, 8, 8, 3), "u1")),
            ),
            "obs/image",
            "differs from the file",
        ),
        (lambda f: f["data/demo_1"].attrs.__delitem__("kind"), "kind", "missing"),
    ],
    ids=[
        "missing-key",
        "nan-actions",
        "length-mismatch",
        "image-dtype",
        "image-not-hwc",
        "image-size",
        "missing-attr",
    ],
)
def test_each_corruption_names_file_episode_and_key(stored, corruption, key, words):
    path, _ = stored
    _corrupt(path, corruption)
    with pytest.raises(DatasetError) as info:
        read_episodes(path)
    err = info.value
    assert (err.episode, err.key) == ("demo_1", key)
    msg = str(err)
    assert str(path) in msg and "'demo_1'" in msg and f"'{key}'" in msg and words in msg


def test_truncated_garbage_and_missing_files(stored, tmp_path):
    path, _ = stored
    blob = path.read_bytes()
    half = tmp_path / "half.hdf5"
    half.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"half\.hdf5: truncated"):
        read_episodes(half)
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"this is not HDF5 at all" * 50)
    with pytest.raises(DatasetError, match=r"garbage\.hdf5: not a readable HDF5 file"):
        EpisodeFile(garbage)
    with pytest.raises(DatasetError, match="does not exist"):
        read_episodes(tmp_path / "nope.hdf5")
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(DatasetError, match="not a robofume file"):
        read_episodes(other)


def test_corrupt_image_chunk_is_reported_with_its_key(tmp_path):
    path = tmp_path / "c.hdf5"
    episode = make_episode(3, size=32)
    episode.images[:] = 7  # compressible, so the chunk holds lzf-compressed bytes
    write_episodes(path, [episode])
    with h5py.File(path) as f:
        offset = f["data/demo_0/obs/image"].id.get_chunk_info(1).byte_offset
    blob = bytearray(path.read_bytes())
    blob[offset : offset + 64] = b"\xff" * 64  # clobber the compressed bytes of frame 1
    path.write_bytes(bytes(blob))
    # the metadata is intact, so opening works; loading the frame fails
    with EpisodeFile(path) as f, pytest.raises(DatasetError, match=r"'obs/image'.*corrupt"):
        f[0]


def test_writer_rejects_bad_episodes_and_keeps_nothing(tmp_path):
    path = tmp_path / "w.hdf5"
    good, bad = make_episode(4), make_episode(4, seed=1)
    bad.actions[1, 0] = np.inf
    with pytest.raises(DatasetError, match=r"'demo_1' key 'actions'.*NaN or inf"):
        write_episodes(path, [good, bad])
    assert not path.exists() and not list(tmp_path.iterdir())
    short = make_episode(4)
    short.rewards = short.rewards[:3]
    with pytest.raises(DatasetError, match=r"'demo_0' key 'rewards'.*length 3"):
        write_episodes(path, [short])
    with pytest.raises(DatasetError, match=r"'demo_1' key 'obs/image'.*differs"):
        write_episodes(path, [make_episode(3, size=16), make_episode(3, size=8)])
    odd = make_episode(3)
    odd.kind = "bogus"  # type: ignore[assignment]
    with pytest.raises(DatasetError, match="kind 'bogus'"):
        write_episodes(path, [odd])


def test_empty_file_roundtrip(tmp_path):
    path = write_episodes(tmp_path / "empty.hdf5", [])
    assert read_episodes(path) == []
    with EpisodeFile(path) as f:
        assert f.summary()["episodes"] == 0


def _temp_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_replacing_with_fewer_episodes_needs_overwrite(stored, tmp_path):
    path, episodes = stored
    before = path.read_bytes()
    for fewer in ([], episodes[:2]):
        want = rf"eps\.hdf5: holds 3 episodes; refusing to replace it with {len(fewer)}"
        with pytest.raises(DatasetError, match=want):
            write_episodes(path, fewer)
        assert path.read_bytes() == before
    refused = pytest.raises(DatasetError, match=r"holds 3 episodes.*overwrite=True")
    with refused, DatasetWriter(path) as writer:
        writer.write(episodes[0])
    assert path.read_bytes() == before and _temp_files(tmp_path) == []
    write_episodes(path, episodes[::-1])  # as many: replaced without the flag
    assert [e.task for e in read_episodes(path)] == [e.task for e in episodes[::-1]]
    write_episodes(path, episodes[:1], overwrite=True)
    assert len(read_episodes(path)) == 1 and _temp_files(tmp_path) == []


def test_writer_refuses_directories_and_foreign_files_before_writing(tmp_path):
    folder = tmp_path / "folder.hdf5"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(DatasetError, match=r"folder\.hdf5: is a directory"):
            DatasetWriter(folder, overwrite=overwrite).__enter__()
    assert list(folder.iterdir()) == []
    foreign = tmp_path / "notes.hdf5"
    foreign.write_bytes(b"my notes")
    with pytest.raises(DatasetError, match=r"notes\.hdf5: exists and is not a robofume episode"):
        write_episodes(foreign, [make_episode(3)])
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=[1])
    other_bytes = other.read_bytes()
    with pytest.raises(DatasetError, match=r"other\.hdf5: exists and is not a robofume episode"):
        write_episodes(other, [make_episode(3)])
    assert foreign.read_bytes() == b"my notes" and other.read_bytes() == other_bytes
    assert _temp_files(tmp_path) == []
    write_episodes(foreign, [make_episode(3)], overwrite=True)
    assert len(read_episodes(foreign)) == 1


def test_any_failure_while_writing_leaves_no_temp_file(stored, tmp_path, monkeypatch):
    path, episodes = stored
    before = path.read_bytes()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), DatasetWriter(path) as writer:
        writer.write(episodes[0])
        raise Boom
    assert path.read_bytes() == before and _temp_files(tmp_path) == []

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("robofume.data.hdf5_writer.os.replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_episodes(path, episodes)
    assert path.read_bytes() == before and _temp_files(tmp_path) == []
    blocked = tmp_path / "file" / "x.hdf5"
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(DatasetError, match=r"x\.hdf5: cannot create the file"):
        write_episodes(blocked, episodes)
