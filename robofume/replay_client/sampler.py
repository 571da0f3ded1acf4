"""The learner's sampler: batches of online transitions as torch tensors, prefetched.

Usage (learner side)::

    from robofume.replay_client.sampler import OnlineSampler

    sampler = OnlineSampler(address, batch_size=n_online, device="cuda", prefetch=2,
                            secret=deployment_secret(cfg.deploy))
    batch = sampler.next(timeout=5.0)   # dict of tensors, or None: nothing arrived in time
    ...
    sampler.close()

``OnlineSampler(address, batch_size, device="cpu", prefetch=2, *, timeout_s=2.0,
rpc_timeout_s=10.0, secret)``. A background thread reads the ``online`` table through a
``reverb.TrajectoryDataset`` (uniform sampling; each sampled item is one transition) and
assembles batches of exactly ``batch_size`` with the keys of ``tables.TRANSITION_KEYS``:
``image`` uint8 (B,H,W,3), ``proprio`` f32 (B,P), ``task`` int64 (B,), ``action`` f32 (B,A),
``reward`` f32 (B,), ``terminal`` f32 (B,), ``next_image`` uint8, ``next_proprio`` f32,
``mc_return`` f32 (B,). Batches wait in a queue of ``prefetch``; on a CUDA device they are
pinned in the background thread and copied with ``non_blocking=True`` by :meth:`next`.

Flow control is the table's UTD rate limiter: the dataset blocks inside Reverb while the
learner is ahead of the target (no sleeps here). After ``timeout_s`` without a sample the
dataset ends, :attr:`waiting` becomes true, a partial batch is kept (no sampled item is
dropped) and the dataset is opened again. When the server is unreachable or restarts, the
thread logs it, backs off and reconnects; :meth:`next` just returns None meanwhile, so the
learner never crashes on a replay outage.

Authentication: every item carries an HMAC of its transition under the deployment secret
(``tables.MAC_KEY``); a row whose authenticator does not match never reaches a batch,
its item is deleted and :attr:`forged_dropped` counts it. Anyone who can reach the Reverb port
can still insert items, but not ones the learner learns from.

Duplicates: after a replay restart an actor delivers again what the restored checkpoint may
not hold, so a transition can be in the table twice, under two item keys. Every item carries
``episode_id`` and ``step``; the sampler remembers which key it first saw for each
(episode_id, step) (the newest ``4 * max_size`` of them), drops a row whose transition it
already knows under another key before it reaches a batch (the batch is filled from the next
samples, so batches keep exactly ``batch_size`` rows) and deletes that item from the table
(:attr:`duplicates_dropped` counts the rows, :attr:`duplicates_deleted` the items). The
dropped samples count as samples for the rate limiter, a negligible dent in the UTD ratio.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from robofume.auth import authentic_rows
from robofume.replay_client.info import server_info
from robofume.replay_client.tables import ID_KEYS, MAC_KEY, ONLINE_TABLE, TRANSITION_KEYS

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
SEEN_PER_ITEM = 4
"""Transitions remembered for duplicate detection, per item the table holds at most."""


class OnlineSampler:
    """Prefetching sampler of the ``online`` table (see the module docstring)."""

    def __init__(
        self,
        address: str,
        batch_size: int,
        device: Any = "cpu",
        prefetch: int = 2,
        *,
        timeout_s: float = 2.0,
        rpc_timeout_s: float = 10.0,
        table: str = ONLINE_TABLE,
        secret: bytes,
    ):
        import reverb
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.address = address
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.timeout_s = float(timeout_s)
        self.rpc_timeout_s = float(rpc_timeout_s)
        self.table = table
        self._pin = self.device.type == "cuda"
        self._client = reverb.Client(address)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max(1, int(prefetch)))
        self._stop = threading.Event()
        self.waiting = False
        """True while the rate limiter (or an empty table) holds the sampler back."""
        self.connected = False
        """False while the server is unreachable."""
        self.batches = 0
        self.samples = 0
        self.reconnects = 0
        self.duplicates_dropped = 0
        """Rows dropped because their transition was already sampled under another key."""
        self.duplicates_deleted = 0
        """Distinct duplicate items deleted from the table."""
        self.forged_dropped = 0
        """Rows dropped (and their items deleted) because their authenticator did not match:
        transitions written by someone without the deployment secret, or altered."""
        self._secret = secret
        self._deleted: set[int] = set()
        self._seen: OrderedDict[int, int] = OrderedDict()
        self._seen_max = 1 << 20
        self._has_ids = False
        self._epoch: int | None = None
        self.last_sample_at: float | None = None
        """time.monotonic() of the last sampled item (None before the first)."""
        self._thread = threading.Thread(target=self._run, name="replay-sampler", daemon=True)
        self._thread.start()

    # -- consumer side ------------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next batch on ``device``; None when none arrived within ``timeout`` seconds."""
        try:
            batch = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if self.device.type != "cpu":
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def __iter__(self) -> OnlineSampler:
        return self

    def __next__(self) -> dict[str, Any]:
        last_log = time.monotonic()
        while not self._stop.is_set():
            batch = self.next(timeout=1.0)
            if batch is not None:
                return batch
            if time.monotonic() - last_log > 30.0:
                last_log = time.monotonic()
                log.info("waiting for data: %s", self.state)
        raise StopIteration

    @property
    def state(self) -> str:
        """One line on what the sampler is doing."""
        if not self.connected:
            return f"replay at {self.address} unreachable, reconnecting"
        if self.waiting:
            return "rate limiter holds sampling back (UTD target reached or table below min size)"
        idle = time.monotonic() - (self.last_sample_at or time.monotonic())
        if idle > self.timeout_s + 1.0:
            return f"no samples for {idle:.0f} s (replay restarting?)"
        return "sampling"

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background thread (a daemon; waits at most ``timeout`` for it to end)."""
        self._stop.set()
        self._thread.join(timeout=timeout)

    def __enter__(self) -> OnlineSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background ---------------------------------------------------------------------------
    def _run(self) -> None:
        carry: dict[str, np.ndarray] | None = None
        backoff = 0.5
        down_since: float | None = None
        while not self._stop.is_set():
            try:
                dataset = self._open()
            except Exception as err:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("replay at %s unreachable (%s); reconnecting", self.address, err)
                self.connected = False
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            if down_since is not None:
                log.info(
                    "replay at %s reachable again after %.1f s",
                    self.address,
                    time.monotonic() - down_since,
                )
                self.reconnects += 1
                down_since = None
            self.connected = True
            backoff = 0.5
            try:
                for sample in dataset.as_numpy_iterator():
                    self.waiting = False
                    self.last_sample_at = time.monotonic()
                    carry = self._emit(carry, self._unique(self._authentic(sample)))
                    if self._stop.is_set():
                        return
            except Exception as err:  # stream broke: server stopped or restarted
                self.connected = False
                log.warning("replay stream from %s broke (%s); reconnecting", self.address, err)
                down_since = time.monotonic()
                self._stop.wait(backoff)
                continue
            # End of sequence: the rate limiter kept us waiting for timeout_s.
            self.waiting = True

    def _open(self) -> Any:
        import reverb
        import tensorflow as tf

        infos = server_info(self._client, self.rpc_timeout_s)
        signature = infos[self.table].signature
        if signature is None:
            raise ValueError(f"table {self.table!r} at {self.address} has no signature")
        missing = set(TRANSITION_KEYS) - set(signature)
        if MAC_KEY not in signature:
            missing.add(MAC_KEY)
        if missing:
            raise ValueError(f"table {self.table!r} lacks keys {sorted(missing)}")
        self._has_ids = all(k in signature for k in ID_KEYS)
        self._follow_epoch()
        self._seen_max = max(1024, SEEN_PER_ITEM * int(infos[self.table].max_size))
        # One worker: when the rate limiter times a worker out the dataset ends, and samples
        # already streamed to a second worker would be dropped (they count as sampled).
        dataset = reverb.TrajectoryDataset(
            server_address=self.address,
            table=self.table,
            dtypes=tf.nest.map_structure(lambda s: s.dtype, signature),
            shapes=tf.nest.map_structure(lambda s: s.shape, signature),
            max_in_flight_samples_per_worker=self.batch_size,
            num_workers_per_iterator=1,
            rate_limiter_timeout_ms=max(1, int(self.timeout_s * 1000)),
        )
        return dataset.batch(self.batch_size)

    def _follow_epoch(self) -> str:
        """Forget which keys were seen when the server restarted (a new epoch).

        After a restart the items written since the last checkpoint are gone and the actors
        deliver them again under new keys; a key remembered from before the restart would make
        the sampler delete the only copy left. Restored items keep their keys, so a real
        duplicate is still caught: whichever copy is sampled first is kept. Returns "same",
        "changed" (the memory was cleared) or "unknown" (no marker could be read).
        """
        from robofume.replay_client.marker import read_marker

        try:
            epoch = read_marker(self._client, self.rpc_timeout_s, self.address, self._secret).epoch
        except Exception as err:  # a server without markers or still starting: keep the memory
            log.debug("replay marker unavailable: %s", err)
            return "unknown"
        if self._epoch is not None and epoch != self._epoch:
            log.info(
                "replay at %s restarted (epoch %d -> %d): forgetting %d remembered transitions",
                self.address,
                self._epoch,
                epoch,
                len(self._seen),
            )
            self._seen.clear()
            self._deleted.clear()
            self._epoch = epoch
            return "changed"
        self._epoch = epoch
        return "same"

    def _authentic(self, sample: Any) -> Any:
        """The sampled rows signed with the deployment secret; forged items are deleted."""
        data = sample.data
        ok = authentic_rows(self._secret, data)
        if ok.all():
            return sample
        keys = np.asarray(sample.info.key).reshape(-1)
        forged = sorted({int(k) for k in keys[~ok]})
        self.forged_dropped += int((~ok).sum())
        log.error(
            "dropped %d transition(s) from replay at %s whose authenticator does not match "
            "(not written by an actor holding this deployment's secret, or altered); %d so far",
            int((~ok).sum()),
            self.address,
            self.forged_dropped,
        )
        try:
            self._client.mutate_priorities(self.table, deletes=forged)
        except Exception as err:  # dropped from the batch anyway; deleted when seen again
            log.warning("could not delete %d forged item(s): %s", len(forged), err)
        kept = {k: np.asarray(v)[ok] for k, v in data.items()}
        info = type(sample.info)(*(np.asarray(f)[ok] for f in sample.info))
        return type(sample)(info=info, data=kept)

    def _unique(self, sample: Any) -> dict[str, np.ndarray]:
        """The sampled rows whose transition has not been seen under another item key; the
        duplicates are deleted from the table."""
        data = sample.data
        if not self._has_ids:
            return data
        keys = np.asarray(sample.info.key).reshape(-1)
        ids, steps = np.asarray(data["episode_id"]), np.asarray(data["step"])
        keep = self._keep_mask(keys, ids, steps)
        if keep.all():
            return data
        # a remembered key may predate a restart that the stream did not show: check first
        epoch = self._follow_epoch()
        if epoch == "changed":
            keep = self._keep_mask(keys, ids, steps)
            if keep.all():
                return data
        dupes = sorted({int(k) for k in keys[~keep]})
        if epoch == "unknown":  # cannot tell a duplicate from a redelivered only copy: skip it
            self.duplicates_dropped += int((~keep).sum())
            return {k: np.asarray(v)[keep] for k, v in data.items()}
        self.duplicates_dropped += int((~keep).sum())
        if len(self._deleted) > self._seen_max:
            self._deleted.clear()
        fresh = set(dupes) - self._deleted
        self.duplicates_deleted += len(fresh)
        self._deleted |= fresh
        log.info(
            "dropped %d duplicate transition(s) (delivered again after a replay restart); "
            "%d so far",
            int((~keep).sum()),
            self.duplicates_dropped,
        )
        try:
            self._client.mutate_priorities(self.table, deletes=dupes)
        except Exception as err:  # dropped from the batch anyway; deleted when seen again
            log.warning("could not delete %d duplicate item(s): %s", len(dupes), err)
        return {k: np.asarray(v)[keep] for k, v in data.items()}

    def _keep_mask(self, keys: np.ndarray, ids: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """bool per row: False where (episode_id, step) was first seen under another key."""
        keep = np.ones(len(keys), dtype=bool)
        ids, steps = ids.reshape(-1).tolist(), steps.reshape(-1).tolist()
        rows = zip(keys.tolist(), ids, steps, strict=True)
        for i, (key, eid, step) in enumerate(rows):
            name = (int(eid) << 32) | (int(step) & 0xFFFFFFFF)
            first = self._seen.get(name)
            if first is None:
                self._seen[name] = key
                if len(self._seen) > self._seen_max:
                    self._seen.popitem(last=False)
            elif first != key:
                keep[i] = False
        return keep

    def _emit(self, carry: dict[str, np.ndarray] | None, data: dict) -> dict | None:
        arrays = {k: data[k] for k in TRANSITION_KEYS}
        if len(arrays["reward"]) == 0:
            return carry
        if carry is not None:
            arrays = {k: np.concatenate([carry[k], arrays[k]]) for k in TRANSITION_KEYS}
        n = len(arrays["reward"])
        start = 0
        while n - start >= self.batch_size:
            part = {k: v[start : start + self.batch_size] for k, v in arrays.items()}
            start += self.batch_size
            self._put(part)
        if start == n:
            return None
        return {k: v[start:] for k, v in arrays.items()}

    def _put(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        batch = {}
        for key, value in arrays.items():
            if not value.flags.writeable or not value.flags.c_contiguous:
                value = np.array(value)
            tensor = torch.from_numpy(value)
            batch[key] = tensor.pin_memory() if self._pin else tensor
        while not self._stop.is_set():
            try:
                self._queue.put(batch, timeout=0.2)
                self.batches += 1
                self.samples += self.batch_size
                return
            except queue.Full:
                continue
