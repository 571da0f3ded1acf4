"""Table names, item layout, signatures and the UTD rate limiter of the replay server.

Layout of the ``online`` table. An episode of T steps is written as ONE trajectory of T+1
steps; step t carries the columns ``image``, ``proprio`` (observation t) and, for t < T,
``action``, ``reward``, ``terminal``, ``mc_return``, ``task`` (transition t; the last step
leaves them empty). Item t references step t and step t+1 of the same trajectory::

    image = image[t]      proprio = proprio[t]       action, reward, terminal, mc_return, task = [t]
    next_image = image[t+1]   next_proprio = proprio[t+1]

so each frame is stored once (an item holds references, not copies) and an item never pairs
steps of two episodes. The item keys are the learner's batch keys (:data:`TRANSITION_KEYS`)
plus :data:`ID_KEYS`: ``episode_id`` (int64, a random id the actor gives each delivered
episode once and reuses when it delivers it again) and ``step`` (int32, t). Together they name
a transition, so the learner's sampler recognises a redelivered copy (see ``sampler``),
and :data:`MAC_KEY` (uint8 (32,)), the transition's authenticator: the sampler drops (and
deletes) any item whose authenticator does not match, so only actors holding the deployment
secret (``robofume.auth``) can put experience in front of the learner.

``replay_marker`` (max size 1) holds the server's epoch and checkpoint counter, written by the
server at start and around each checkpoint (see ``marker``): actors read it to know
which of their episodes are safe in a completed checkpoint and when the server restarted.

``policy_weights`` (max size 1) holds the newest policy variables and ``policy_version``
(max size 1) only their version number; both items are created from the same writer step,
so they share data and a version check transfers a few bytes (see ``weights``).

The UTD ratio is enforced by a ``SampleToInsertRatio`` limiter on ``online``: every update
draws ``n_online = batch_size - round(mixing_ratio * batch_size)`` online items and the learner
does ``utd_ratio`` updates per environment step, so ``samples_per_insert = utd_ratio *
n_online``. The limiter blocks the learner's sampler once it is more than a small slack ahead
of that target (``replay.samples_per_insert_tolerance``) and blocks inserts only when the
actors are far ahead (``replay.insert_lead_steps``): the robot is not slowed down by a learner
that is behind; the learner's effective UTD then shows on ``learner/utd_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from robofume.types import BATCH_KEYS, split_sizes

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig

ONLINE_TABLE = "online"
"""Transitions written by the actors, sampled by the learner."""
WEIGHTS_TABLE = "policy_weights"
"""The newest policy variables (one item)."""
VERSION_TABLE = "policy_version"
"""The version of the item in ``policy_weights`` (one tiny item, for cheap checks)."""

MARKER_TABLE = "replay_marker"
MARKER_MAC_TABLE = "replay_marker_mac"
"""The marker's authenticator (``replay_client.marker``): its own table, so that checkpoints
written before it existed still restore (a table missing from a checkpoint starts empty)."""
"""The server's epoch and checkpoint counter (one tiny item, see ``marker``)."""

TRANSITION_KEYS = BATCH_KEYS
"""Keys of one sampled transition: the learner's batch keys."""

ID_KEYS = ("episode_id", "step")
"""Item columns naming a transition: the actor's episode id and the step index in it."""

MAC_KEY = "mac"
"""Item column holding the transition's authenticator: HMAC-SHA256 under the deployment
secret over the transition and its ids (``robofume.auth.transition_macs``), written by the
actor, checked by the learner's sampler before a row reaches a batch."""

ITEM_KEYS = (*TRANSITION_KEYS, *ID_KEYS, MAC_KEY)
"""Every column of an ``online`` item."""

STEP_COLUMNS = (
    "image",
    "proprio",
    "action",
    "reward",
    "terminal",
    "mc_return",
    "task",
    "episode_id",
    "step",
    "mac",
)
"""Columns of one trajectory step (the last step of an episode has only image and proprio)."""

OBS_COLUMNS = ("image", "proprio")
"""Columns of which an item references two steps (t and t+1)."""


def transition_spec(cfg: ExperimentConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape (without batch) and dtype of every item column (:data:`ITEM_KEYS`) for this config."""
    s, p, a = cfg.env.image_size, cfg.network.proprio_dim, cfg.env.action_dim
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    return {
        "image": ((s, s, 3), u8),
        "proprio": ((p,), f32),
        "task": ((), np.dtype(np.int64)),
        "action": ((a,), f32),
        "reward": ((), f32),
        "terminal": ((), f32),
        "next_image": ((s, s, 3), u8),
        "next_proprio": ((p,), f32),
        "mc_return": ((), f32),
        "episode_id": ((), np.dtype(np.int64)),
        "step": ((), np.dtype(np.int32)),
        "mac": ((32,), u8),
    }


def transition_signature(cfg: ExperimentConfig) -> dict[str, Any]:
    """The ``online`` table signature: a ``tf.TensorSpec`` per item column."""
    import tensorflow as tf

    return {
        key: tf.TensorSpec(shape, tf.as_dtype(dtype), name=key)
        for key, (shape, dtype) in transition_spec(cfg).items()
    }


def signature_to_spec(signature: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Turn a table signature (dict of TensorSpec) read from the server into numpy terms."""
    return {
        key: (tuple(int(d) for d in spec.shape), np.dtype(spec.dtype.as_numpy_dtype))
        for key, spec in signature.items()
    }


def online_batch_size(cfg: ExperimentConfig) -> int:
    """Online items in each learner batch: batch_size minus the offline share."""
    return split_sizes(cfg.learner.batch_size, cfg.learner.mixing_ratio)[1]


@dataclass(frozen=True)
class RateLimit:
    """Parameters of the ``online`` table's SampleToInsertRatio limiter (in samples)."""

    samples_per_insert: float
    """utd_ratio * online items per update."""
    min_size_to_sample: int
    """Items before any sampling."""
    min_diff: float
    """Lower bound of inserts*samples_per_insert - samples (sampling blocks below)."""
    max_diff: float
    """Upper bound of the same error (inserting blocks above)."""

    @property
    def sample_slack(self) -> float:
        """Samples the learner may take beyond the target."""
        return self.samples_per_insert * self.min_size_to_sample - self.min_diff

    @property
    def insert_slack_steps(self) -> float:
        """Environment steps the actors may insert beyond the target."""
        offset = self.samples_per_insert * self.min_size_to_sample
        return (self.max_diff - offset) / self.samples_per_insert


def online_rate_limit(cfg: ExperimentConfig) -> RateLimit | None:
    """The UTD limiter of ``online``; None when the learner takes no online data."""
    n_online = online_batch_size(cfg)
    spi = float(cfg.learner.utd_ratio) * n_online
    if spi <= 0:
        return None
    rc = cfg.replay
    min_size = max(1, int(rc.min_size_to_sample))
    offset = spi * min_size
    sample_slack = max(2.0 * max(1.0, spi), rc.samples_per_insert_tolerance * offset)
    lead = rc.insert_lead_steps if rc.insert_lead_steps > 0 else rc.online_max_size
    insert_slack = spi * max(2, int(lead))
    return RateLimit(spi, min_size, offset - sample_slack, offset + insert_slack)


def make_tables(cfg: ExperimentConfig) -> list[Any]:
    """Fresh ``reverb.Table`` objects for one server (never reuse them across servers)."""
    import reverb
    import tensorflow as tf

    limit = online_rate_limit(cfg)
    if limit is None:
        limiter = reverb.rate_limiters.MinSize(max(1, cfg.replay.min_size_to_sample))
    else:
        limiter = reverb.rate_limiters.SampleToInsertRatio(
            samples_per_insert=limit.samples_per_insert,
            min_size_to_sample=limit.min_size_to_sample,
            error_buffer=(limit.min_diff, limit.max_diff),
        )
    online = reverb.Table(
        name=ONLINE_TABLE,
        sampler=reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(),
        max_size=int(cfg.replay.online_max_size),
        rate_limiter=limiter,
        signature=transition_signature(cfg),
    )

    def newest_only(name: str, signature: Any = None) -> Any:
        """A one-item table: each insert replaces the previous item."""
        return reverb.Table(
            name=name,
            sampler=reverb.selectors.Uniform(),
            remover=reverb.selectors.Fifo(),
            max_size=1,
            rate_limiter=reverb.rate_limiters.MinSize(1),
            signature=signature,
        )

    return [
        online,
        newest_only(WEIGHTS_TABLE),
        newest_only(VERSION_TABLE, {"version": tf.TensorSpec((), tf.int64, name="version")}),
        newest_only(MARKER_TABLE, marker_signature()),
        newest_only(MARKER_MAC_TABLE, {"mac": tf.TensorSpec((32,), tf.uint8, name="mac")}),
    ]


def marker_signature() -> dict[str, Any]:
    """The ``replay_marker`` signature: ``epoch`` int64, ``completed`` int64, ``in_progress``."""
    import tensorflow as tf

    return {
        "epoch": tf.TensorSpec((), tf.int64, name="epoch"),
        "completed": tf.TensorSpec((), tf.int64, name="completed"),
        "in_progress": tf.TensorSpec((), tf.bool, name="in_progress"),
    }
