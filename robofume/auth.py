"""The deployment secret and the authenticators it keys: nothing from the network is trusted.

One secret per deployment, ``<run_dir>/auth/secret`` (``deploy.secret_path`` to choose another
file): 256 random bits. Only the head creates it (``robofume up``, or ``robofume secret`` for a
deployment started by hand), with mode 0600, and reuses it when present, so a single machine
is protected without configuration. Every other process only reads it: one that finds no
file stops at once with :class:`SecretMissing`, which names the file to copy from the head
(a robot PC that made its own secret would refuse every weights publish, silently).

Policy weights: the learner signs every publish with HMAC-SHA256 over the manifest (names,
shapes, dtypes, version, learner session, config hash) and the raw bytes of every array, in
manifest order. An actor loads weights only when :func:`check_weights` finds them signed with
the secret, published under its own config hash, and not older than what it runs. Order is
``(session, version)``: a learner restarted from an older checkpoint starts a new, later
session (its start time), so its smaller update count is still newer, while an old item
replayed by someone else is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robofume.config import DeployConfig
from robofume.run_dir import RunDir
from robofume.secret_file import read_or_create_secret

log = logging.getLogger(__name__)

SECRET_BITS = 256
MAC_KEY = "mac"
"""Manifest field holding the authenticator (hex)."""


class SecretMissing(RuntimeError):
    """This process found no deployment secret and is not the one that creates it."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"no deployment secret at {path}: copy the head's secret there (the file "
            "<deploy.run_dir>/auth/secret on the machine that ran `robofume up`, mode 0600), "
            "or point --deploy.secret_path at your copy"
        )


class WeightsRefused(ValueError):
    """Weights an actor must not run; ``reason`` is a short key for counters."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def secret_path(deploy: DeployConfig) -> Path:
    """Where this deployment's secret lives (absolute)."""
    if deploy.secret_path:
        return Path(deploy.secret_path).expanduser().resolve()
    return RunDir.at(deploy.run_dir).secret.expanduser().resolve()


def ensure_secret(path: Path) -> bytes:
    """The secret in ``path``; created (0600, 256 random bits, atomically) when missing."""
    text = read_or_create_secret(path, SECRET_BITS // 8, "the deployment secret")
    if len(text) < SECRET_BITS // 4:
        raise RuntimeError(
            f"the deployment secret {path} is empty or too short ({len(text)} hex digits, "
            f"need {SECRET_BITS // 4}); delete it to make a new one (every process of the "
            "deployment must then use the new file)"
        )
    return text.encode()


def deployment_secret(deploy: DeployConfig, create: bool = False) -> bytes:
    """This deployment's secret; :class:`SecretMissing` when there is none.

    ``create``: make it when missing. Only the head does (``robofume up``, ``robofume
    secret``); a process elsewhere that made its own would never agree with the others.
    """
    path = secret_path(deploy)
    if not create and not path.exists():
        raise SecretMissing(path)
    return ensure_secret(path)


LINK_TOKEN_CONTEXT = b"robofume link token v1"


def link_token(deploy: DeployConfig) -> str:
    """The token of the deployment's gRPC and control links: ``deploy.token`` when set, else
    one derived from the deployment secret (HMAC), so no preset needs to ship a token and
    every machine that holds the secret agrees on it. "" when neither exists (loopback only:
    servers refuse to listen beyond it without a token)."""
    if deploy.token:
        return deploy.token
    path = secret_path(deploy)
    if not path.exists():
        return ""
    return hmac.new(ensure_secret(path), LINK_TOKEN_CONTEXT, hashlib.sha256).hexdigest()[:40]


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != MAC_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def weights_mac(secret: bytes, manifest: Mapping[str, Any], arrays: Sequence[np.ndarray]) -> str:
    """HMAC-SHA256 (hex) over the manifest (without its MAC) and the arrays' bytes."""
    mac = hmac.new(secret, _canonical(manifest), hashlib.sha256)
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        mac.update(f"{a.dtype.str}{a.shape}".encode())
        mac.update(memoryview(a).cast("B"))
    return mac.hexdigest()


def sign_manifest(secret: bytes, manifest: dict[str, Any], arrays: Sequence[np.ndarray]) -> dict:
    """``manifest`` with its authenticator added."""
    return {**manifest, MAC_KEY: weights_mac(secret, manifest, arrays)}


def check_weights(
    secret: bytes,
    manifest: Mapping[str, Any] | None,
    variables: Mapping[str, np.ndarray],
    config_hash: str,
    running: tuple[int, int] | None,
    config_values: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """``(session, version)`` of authentic weights an actor may run; else :class:`WeightsRefused`.

    ``running`` is the ``(session, version)`` the actor runs (None before its first weights).
    ``config_values`` (:func:`robofume.config.base.hashed_values` of the actor's config): a
    config-hash mismatch then names the fields that differ from the learner's (which the
    signed manifest carries).
    """
    if not manifest or not manifest.get(MAC_KEY):
        raise WeightsRefused("unsigned", "unsigned weights (no authenticator)")
    names = list(manifest.get("names", []))
    if sorted(names) != sorted(variables):
        raise WeightsRefused("forged", "the manifest does not list the variables it came with")
    expected = weights_mac(secret, manifest, [variables[n] for n in names])
    if not hmac.compare_digest(expected, str(manifest[MAC_KEY])):
        raise WeightsRefused(
            "forged",
            "wrong authenticator: not signed with this deployment's secret (a forgery, or an "
            "actor whose secret file differs from the learner's)",
        )
    their_hash = manifest.get("config_hash")
    if not their_hash:
        raise WeightsRefused("no_config_hash", "signed weights without a config hash")
    if their_hash != config_hash:
        from robofume.config.base import config_differences

        differ = config_differences(manifest.get("config"), dict(config_values or {}))
        what = f"; differing fields (learner there, actor here): {'; '.join(differ)}"
        raise WeightsRefused(
            "config_hash",
            f"published under config hash {their_hash}, this actor runs {config_hash}"
            f"{what if differ else ''}; start the actor with the learner's preset and overrides",
        )
    stamp = (int(manifest.get("session", 0)), int(manifest["version"]))
    if running is not None and stamp < running:
        raise WeightsRefused(
            "older",
            f"session {stamp[0]} version {stamp[1]} is older than the running session "
            f"{running[0]} version {running[1]} (a replayed old publish)",
        )
    return stamp


# --- transitions -------------------------------------------------------------------------

TRANSITION_AUTH_KEYS: tuple[tuple[str, str], ...] = (
    ("image", "u1"),
    ("proprio", "<f4"),
    ("action", "<f4"),
    ("reward", "<f4"),
    ("terminal", "<f4"),
    ("mc_return", "<f4"),
    ("task", "<i8"),
    ("next_image", "u1"),
    ("next_proprio", "<f4"),
    ("episode_id", "<i8"),
    ("step", "<i4"),
)
"""What a transition's authenticator covers, in order, with the dtype its bytes are read in
(so writer and sampler hash the same bytes whatever dtype their arrays arrive in)."""
MAC_BYTES = 32


def transition_macs(secret: bytes, rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """uint8 (N, 32): HMAC-SHA256 of each of N transitions (``rows[key]`` has N rows)."""
    cols = [np.ascontiguousarray(rows[k], dtype=np.dtype(dt)) for k, dt in TRANSITION_AUTH_KEYS]
    n = len(cols[0])
    flat = np.concatenate([c.reshape(n, -1).view(np.uint8) for c in cols], axis=1)
    out = np.empty((n, MAC_BYTES), np.uint8)
    for i in range(n):
        out[i] = np.frombuffer(hmac.new(secret, flat[i], hashlib.sha256).digest(), np.uint8)
    return out


def authentic_rows(secret: bytes, rows: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool (N,): which rows carry the authenticator (``rows["mac"]``) of their contents."""
    expected = transition_macs(secret, rows)
    given = np.asarray(rows["mac"], np.uint8).reshape(len(expected), -1)
    if given.shape[1] != MAC_BYTES:
        return np.zeros(len(expected), bool)
    # constant-time per row is not needed here: nothing is revealed to the writer
    return (given == expected).all(axis=1)
