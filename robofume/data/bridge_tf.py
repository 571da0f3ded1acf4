"""TensorFlow-based readers of BridgeData V2: its TFRecord form and the RLDS/TFDS form.

* **TFRecord form** (BridgeData V2's ``bridgedata_numpy_to_tfrecord``): one
  ``tf.train.Example`` per trajectory whose features are ``tf.io.serialize_tensor`` bytes:
  ``observations/images0`` uint8 (T, H, W, 3), ``observations/state`` float32 (T, 7),
  ``next_observations/images0``, ``next_observations/state``, ``actions`` float32 (T, 7),
  ``terminals``, ``truncates`` and ``language`` (a string tensor or a plain bytes list).
* **RLDS/TFDS form** (``bridge_dataset`` as TFDS writes it): one record per episode. TFDS
  writes a ``tf.train.Example`` whose nested step features are flattened into keys
  ``steps/observation/image_0`` (one encoded JPEG/PNG per step), ``steps/observation/state``
  (T*7 floats), ``steps/action`` (T*7 floats), ``steps/language_instruction`` (T strings) and
  so on. A ``tf.train.SequenceExample`` with the same keys as feature lists is read too.

TensorFlow is imported only when these readers run (it takes seconds to import).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from robofume.data.bridge_raw import RawTrajectory, first_language
from robofume.data.errors import DatasetError

RLDS_IMAGE_KEYS = ("steps/observation/image_0", "steps/observation/image")
RLDS_STATE_KEY = "steps/observation/state"
RLDS_ACTION_KEY = "steps/action"
RLDS_LANGUAGE_KEY = "steps/language_instruction"


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _records(path: Path) -> Iterator[bytes]:
    tf = _tf()
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            yield record.numpy()
    except (tf.errors.DataLossError, tf.errors.OpError) as err:
        raise DatasetError(
            str(path), f"corrupt or truncated TFRecord file: {err.message}"
        ) from None


def _parse(path: Path, index: int, record: bytes) -> tuple[dict, dict]:
    """(context/features, feature_lists) of one record, as Example or SequenceExample."""
    tf = _tf()
    try:
        seq = tf.train.SequenceExample.FromString(record)
        if seq.feature_lists.feature_list:
            return dict(seq.context.feature), dict(seq.feature_lists.feature_list)
        return dict(tf.train.Example.FromString(record).features.feature), {}
    except Exception as err:  # protobuf DecodeError
        raise DatasetError(
            str(path), f"record is not a tf.train.Example: {err}", f"record {index}"
        ) from None


def peek_keys(path: Path) -> list[str]:
    """Feature keys of the first record of a TFRecord file."""
    for i, record in enumerate(_records(path)):
        features, lists = _parse(path, i, record)
        return sorted({*features, *lists})
    raise DatasetError(str(path), "TFRecord file holds no records")


def _values(feature: Any) -> list:
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


# -- TFRecord form ----------------------------------------------------------------------


def _tensor(path: Path, name: str, features: dict, key: str) -> np.ndarray:
    tf = _tf()
    from tensorflow.core.framework import tensor_pb2

    if key not in features:
        raise DatasetError(str(path), "missing", name, key)
    raw = _values(features[key])
    try:
        return tf.make_ndarray(tensor_pb2.TensorProto.FromString(raw[0]))
    except Exception as err:
        raise DatasetError(str(path), f"not a serialized tensor: {err}", name, key) from None


def read_tfrecord(path: str | Path) -> Iterator[RawTrajectory]:
    """Trajectories of a BridgeData V2 TFRecord file (serialized-tensor features)."""
    path = Path(path)
    for i, record in enumerate(_records(path)):
        name = f"record {i}"
        features, _ = _parse(path, i, record)
        images = _tensor(path, name, features, "observations/images0")
        states = _tensor(path, name, features, "observations/state")
        if "next_observations/images0" in features:
            nxt_images = _tensor(path, name, features, "next_observations/images0")
            nxt_states = _tensor(path, name, features, "next_observations/state")
            images = np.concatenate([images, nxt_images[-1:]])
            states = np.concatenate([states, nxt_states[-1:]])
        language: Any = ""
        if "language" in features:
            raw = _values(features["language"])
            try:
                language = _tensor(path, name, features, "language").reshape(-1).tolist()
            except DatasetError:
                language = raw
        yield RawTrajectory(
            images=np.asarray(images, dtype=np.uint8) if images.dtype == np.uint8 else images,
            states=np.asarray(states, dtype=np.float64),
            actions=np.asarray(_tensor(path, name, features, "actions"), dtype=np.float64),
            language=first_language(language),
            source=f"{path.name}[{i}]",
        )


# -- RLDS / TFDS form -------------------------------------------------------------------


def _decode(path: Path, name: str, key: str, step: int, blob: bytes) -> np.ndarray:
    frame = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise DatasetError(str(path), f"step {step}: not a decodable JPEG/PNG image", name, key)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _steps(path: Path, name: str, features: dict, lists: dict, key: str, dim: int | None) -> list:
    """Per-step values of a step feature, from either record layout."""
    if key in lists:
        return [_values(f) for f in lists[key].feature]
    if key not in features:
        raise DatasetError(str(path), "missing", name, key)
    flat = _values(features[key])
    if dim is None:
        return [[v] for v in flat]
    if len(flat) % dim:
        raise DatasetError(str(path), f"{len(flat)} values are not a multiple of {dim}", name, key)
    return [flat[j : j + dim] for j in range(0, len(flat), dim)]


def read_rlds(path: str | Path) -> Iterator[RawTrajectory]:
    """Episodes of one RLDS/TFDS TFRecord shard of BridgeData V2."""
    path = Path(path)
    for i, record in enumerate(_records(path)):
        name = f"episode {i}"
        features, lists = _parse(path, i, record)
        keys = {*features, *lists}
        image_key = next((k for k in RLDS_IMAGE_KEYS if k in keys), RLDS_IMAGE_KEYS[0])
        blobs = _steps(path, name, features, lists, image_key, None)
        if not blobs:
            raise DatasetError(str(path), "episode has no steps", name, image_key)
        images = np.stack([_decode(path, name, image_key, t, b[0]) for t, b in enumerate(blobs)])
        states = _steps(
            path,
            name,
            features,
            lists,
            RLDS_STATE_KEY,
            _dim(features, lists, RLDS_STATE_KEY, len(blobs)),
        )
        actions = _steps(
            path,
            name,
            features,
            lists,
            RLDS_ACTION_KEY,
            _dim(features, lists, RLDS_ACTION_KEY, len(blobs)),
        )
        language = ""
        if RLDS_LANGUAGE_KEY in keys:
            texts = _steps(path, name, features, lists, RLDS_LANGUAGE_KEY, None)
            language = first_language([t[0] for t in texts if t])
        meta = {}
        if "episode_metadata/file_path" in features:
            fp = _values(features["episode_metadata/file_path"])
            meta["file_path"] = fp[0].decode() if fp else ""
        yield RawTrajectory(
            images=images,
            states=np.asarray(states, dtype=np.float64),
            actions=np.asarray(actions, dtype=np.float64),
            language=language,
            source=f"{path.name}[{i}]",
            meta=meta,
        )


def _dim(features: dict, lists: dict, key: str, steps: int) -> int | None:
    """Per-step width of a flattened float feature (total values / steps)."""
    if key in lists or key not in features:
        return None
    total = len(_values(features[key]))
    return max(total // steps, 1) if steps else None
