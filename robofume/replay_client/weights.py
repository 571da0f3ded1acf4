"""Policy weights through the replay server (the variable-container pattern).

Usage::

    from robofume.replay_client.weights import WeightsClient

    # learner
    client = WeightsClient(address)
    client.publish(learner.get_variables(), version=update_count, config_hash=cfg.hash)

    # actor (poll every few seconds)
    latest = client.latest_version()             # a few bytes; None before the first publish
    if latest is not None and latest != policy.version:
        version, variables = client.fetch()      # transfers the weights

``WeightsClient(address, *, timeout_s=10.0, secret=None, session=None)``:

* ``publish(variables: dict[str, np.ndarray], version: int, config_hash: str)`` writes one step
  holding every variable, the version and a small manifest (names, shapes, dtypes, version,
  the learner's session, config hash, and an HMAC-SHA256 authenticator keyed by the
  deployment secret, :mod:`robofume.auth`) and creates two items from it: one in
  ``policy_weights`` (all columns) and one in ``policy_version`` (only the version column).
  Both tables keep one item (FIFO), so the newest publish replaces the previous one. Only a
  client holding the secret can publish.
* ``latest_version() -> int | None`` samples ``policy_version``: a few bytes, never the weights.
* ``fetch(known_version=None) -> Weights | None``: the newest weights, or None when nothing is
  published yet or the newest version equals ``known_version`` (a cheap check first). A
  :class:`Weights` unpacks as ``version, variables = ...`` and also carries ``.config_hash``
  and the signed ``.manifest``. Whether to run them is the actor's decision
  (:func:`robofume.auth.check_weights`): the replay server is reachable by anyone on its
  network, so nothing in it is trusted for being there.

Signatures: ``policy_version`` has a fixed signature (int64 scalar). ``policy_weights`` has none,
because the replay server starts before the learner and Reverb cannot add or change tables at
run time; instead every publish carries a manifest that :meth:`fetch` checks (same number of
arrays, names, shapes and dtypes) before returning the variables. All calls raise
``ReplayUnavailableError`` when the server does not answer within ``timeout_s``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robofume.replay_client.errors import ReplayUnavailableError
from robofume.replay_client.info import run_with_deadline, server_info
from robofume.replay_client.tables import VERSION_TABLE, WEIGHTS_TABLE


@dataclass(frozen=True)
class Weights:
    """Published policy variables; unpacks as ``(version, variables)``."""

    version: int
    variables: dict[str, np.ndarray]
    config_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    """What the publisher signed (names, shapes, dtypes, version, session, hash, mac)."""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.version, self.variables))


class WeightsClient:
    """Publishes (learner) and fetches (actors) the newest policy variables."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 10.0,
        secret: bytes | None = None,
        session: int | None = None,
    ):
        import reverb

        self.address = address
        self.timeout_s = float(timeout_s)
        self._secret = secret
        self.session = int(session if session is not None else time.time_ns() // 1_000_000)
        """This publisher's session (its start time, ms): later sessions are newer."""
        self._client = reverb.Client(address)
        self._lock = threading.Lock()

    # -- learner ------------------------------------------------------------------------------
    def publish(
        self,
        variables: Mapping[str, np.ndarray],
        version: int,
        config_hash: str,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Make ``variables`` the newest policy weights under ``version``, signed.

        ``config``: the learner's hashed config fields (``hashed_values``), sent inside the
        signed manifest so an actor whose hash differs can name the fields.
        """
        from robofume.auth import sign_manifest

        if not variables:
            raise ValueError("publish needs at least one variable")
        if not config_hash:
            raise ValueError("publish needs the learner's config hash (actors refuse without)")
        if not self._secret:
            raise ValueError(
                "publishing weights needs the deployment secret (WeightsClient(secret=...), "
                "robofume.auth.deployment_secret)"
            )
        names = sorted(variables)
        arrays = [np.ascontiguousarray(np.asarray(variables[n])) for n in names]
        manifest = {
            "version": int(version),
            "session": self.session,
            "config_hash": config_hash,
            "names": names,
            "shapes": [list(a.shape) for a in arrays],
            "dtypes": [a.dtype.str for a in arrays],
        }
        if config is not None:
            manifest["config"] = dict(config)
        manifest = sign_manifest(self._secret, manifest, arrays)
        blob = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8).copy()
        step: dict[str, np.ndarray] = {
            "version": np.asarray(int(version), np.int64),
            "manifest": blob,
        }
        step.update({f"v{i:05d}": a for i, a in enumerate(arrays)})
        with self._lock:
            self._call(lambda: self._insert(step), "publishing weights")

    def _insert(self, step: dict[str, np.ndarray]) -> None:
        writer = self._client.trajectory_writer(num_keep_alive_refs=1, validate_items=False)
        try:
            writer.append(step)
            refs = {key: writer.history[key][-1] for key in step}
            writer.create_item(WEIGHTS_TABLE, 1.0, refs)
            writer.create_item(VERSION_TABLE, 1.0, {"version": refs["version"]})
            writer.end_episode(timeout_ms=int(self.timeout_s * 1000))
        finally:
            writer.close()

    # -- actors -------------------------------------------------------------------------------
    def latest_version(self) -> int | None:
        """Version of the newest published weights; None when nothing is published yet."""
        with self._lock:
            if not self._has_item(VERSION_TABLE):
                return None
            sample = self._call(lambda: self._sample(VERSION_TABLE), "reading the version")
        return int(np.asarray(sample[0]))

    def fetch(self, known_version: int | None = None) -> Weights | None:
        """Newest weights; None if none are published or their version == ``known_version``."""
        if known_version is not None and self.latest_version() in (None, int(known_version)):
            return None
        with self._lock:
            if not self._has_item(WEIGHTS_TABLE):
                return None
            flat = self._call(lambda: self._sample(WEIGHTS_TABLE), "fetching weights")
        return _decode(flat, self.address)

    # -- plumbing -----------------------------------------------------------------------------
    def _has_item(self, table: str) -> bool:
        infos = self._call(
            lambda: server_info(self._client, self.timeout_s),
            "reading table info",
        )
        return table in infos and infos[table].current_size > 0

    def _sample(self, table: str) -> list[np.ndarray]:
        sample = next(self._client.sample(table, 1, emit_timesteps=False))
        return list(sample.data)

    def _call(self, fn: Any, what: str) -> Any:
        """Run ``fn`` with a deadline (a hung stream cannot block past ``timeout_s``)."""
        try:
            return run_with_deadline(fn, self.timeout_s, "replay-weights-call")
        except TimeoutError as err:
            raise ReplayUnavailableError(
                f"replay server at {self.address} did not answer {what} within "
                f"{self.timeout_s:.0f} s"
            ) from err
        except ReplayUnavailableError:
            raise
        except (RuntimeError, OSError) as err:
            raise ReplayUnavailableError(
                f"replay server at {self.address}: {what} failed: {err}"
            ) from err
        except Exception as err:
            if type(err).__module__.startswith("reverb"):
                raise ReplayUnavailableError(
                    f"replay server at {self.address}: {what} failed: {err}"
                ) from err
            raise


class MalformedWeightsError(ValueError):
    """The weights item in replay is not what a publisher writes (a forgery or corruption)."""


def _decode(flat: list[np.ndarray], address: str) -> Weights:
    """Rebuild the variables from the flat sample (sorted keys: manifest, v00000.., version)."""
    try:
        manifest = json.loads(np.asarray(flat[0], np.uint8).tobytes().decode())
        names, shapes, dtypes = manifest["names"], manifest["shapes"], manifest["dtypes"]
        return _unpack(flat, manifest, names, shapes, dtypes, address)
    except MalformedWeightsError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise MalformedWeightsError(f"weights at {address}: malformed item ({err})") from None


def _unpack(flat, manifest, names, shapes, dtypes, address: str) -> Weights:
    arrays = flat[1:-1]
    if len(arrays) != len(names):
        raise MalformedWeightsError(
            f"weights at {address}: manifest lists {len(names)} variables, item has {len(arrays)}"
        )
    variables = {}
    for name, shape, dtype, arr in zip(names, shapes, dtypes, arrays, strict=True):
        arr = np.asarray(arr)
        if list(arr.shape) != list(shape) or arr.dtype != np.dtype(dtype):
            raise MalformedWeightsError(
                f"weights at {address}: variable {name!r} is {arr.dtype}{list(arr.shape)}, "
                f"manifest says {np.dtype(dtype)}{shape}"
            )
        variables[name] = arr
    version = int(np.asarray(flat[-1]))
    if version != manifest["version"]:
        raise MalformedWeightsError(f"weights at {address}: version {version} != manifest's")
    return Weights(
        version, variables, manifest.get("config_hash"), {"names": names}, manifest=manifest
    )
