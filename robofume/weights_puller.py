"""Background pull of the learner's newest policy weights (the variable-client pattern), for
whatever acts with a policy: the actor on the robot, the evaluator.

A daemon thread asks the weights source for the latest published version every
``poll_s`` seconds and fetches the variables only when it differs from the one the policy
runs. :meth:`InferencePolicy.load_variables` builds the new network off the tick thread and
swaps it in under its own lock, so a tick never waits for network traffic or a load.

Nothing that arrives is run unchecked (:func:`robofume.auth.check_weights`): weights must be
signed with the deployment secret, published under this process's config hash, and not older
(in ``(session, version)`` order) than what the policy runs. A refusal keeps the current
policy, is logged once per version, counted per reason (``refusals``, in status and on the
dashboard), and the refused version is checked again only after ``REFUSAL_RECHECK_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from robofume.auth import WeightsRefused, check_weights

log = logging.getLogger(__name__)

REFUSAL_RECHECK_S = 10.0
"""A refused version is fetched again after this long (the learner may republish it)."""

HASH_KEYS = ("__config_hash__", "config_hash")
"""Keys under which a published variables dict may carry the learner's config hash."""


class WeightsSource(Protocol):
    """What the actor needs from :class:`robofume.replay_client.weights.WeightsClient`."""

    def latest_version(self) -> int | None:
        """Newest published version (None or < 0: nothing published yet)."""

    def fetch(self) -> Any:
        """``(version, variables)`` of the newest weights (or an object with those fields)."""


class ActingPolicy(Protocol):
    version: int

    def load_variables(self, variables: Mapping[str, np.ndarray], version: int) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray], task_name: str) -> np.ndarray: ...


def unpack(fetched: Any) -> tuple[int, dict[str, np.ndarray], str | None]:
    """``(version, variables, config_hash or None)`` from what a weights source returns."""
    if isinstance(fetched, tuple):
        version, variables = fetched[0], fetched[1]
        extra = fetched[2] if len(fetched) > 2 else None
    else:
        version, variables = fetched.version, fetched.variables
        extra = getattr(fetched, "config_hash", None)
    variables = dict(variables)
    found = extra
    for key in HASH_KEYS:
        if key in variables:
            value = variables.pop(key)
            found = found or (value.item() if hasattr(value, "item") else value)
    if isinstance(found, bytes):
        found = found.decode()
    return int(version), variables, (str(found) if found else None)


class WeightsPuller:
    """Keeps ``policy`` on the newest matching weights; tracks the learner's version."""

    def __init__(
        self,
        source: WeightsSource,
        policy: ActingPolicy,
        config_hash: str,
        secret: bytes,
        poll_s: float = 1.0,
        address: str = "replay",
        config_values: Mapping[str, Any] | None = None,
    ):
        self.source = source
        self.policy = policy
        self.config_hash = config_hash
        self.config_values = config_values
        """The actor's hashed config fields: a mismatch names the ones that differ."""
        self._secret = secret
        self.running: tuple[int, int] | None = None
        """``(session, version)`` of the weights the policy runs (None before the first)."""
        self.refusals: Counter[str] = Counter()
        """Refused fetches per reason (unsigned, forged, no_config_hash, config_hash, older,
        malformed, shape)."""
        self._refused_at: dict[int, float] = {}
        self.poll_s = poll_s
        self.address = address
        self.learner_version: int | None = None
        self.loads = 0
        self.refused: dict[int, str] = {}
        self._outage = ""
        """Why the weights cannot be read now ("" while reachable)."""
        self._refusal = ""
        """The standing refusal: the newest published weights were refused ("" once newer
        authentic weights load)."""
        self.reachable = True
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._checked = threading.Condition()
        self._checks = 0
        self._thread = threading.Thread(target=self._run, name="weights-puller", daemon=True)

    @property
    def policy_lag(self) -> int | None:
        """Learner version minus the version the policy runs (None before both are known)."""
        if self.learner_version is None or self.policy.version < 0:
            return None
        return max(0, self.learner_version - self.policy.version)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        self._thread.join(timeout=1.0)  # a call to a dead server times out on its own

    def check_now(self, wait: bool = False, timeout: float = 10.0) -> None:
        """Ask for a check now; with ``wait``, block until it finished (Acme's update(wait))."""
        with self._checked:
            target = self._checks + 1
        self._poke.set()
        if wait:
            deadline = time.monotonic() + timeout
            with self._checked:
                while self._checks < target and time.monotonic() < deadline:
                    self._checked.wait(deadline - time.monotonic())

    def wait_for_first(self, timeout: float) -> bool:
        """Block until the policy has weights (or ``timeout``); True when it has."""
        deadline = time.monotonic() + timeout
        while self.policy.version < 0 and time.monotonic() < deadline:
            self.check_now(wait=True, timeout=max(0.0, deadline - time.monotonic()))
            if self.policy.version < 0:
                self._stop.wait(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        return self.policy.version >= 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            with self._checked:
                self._checks += 1
                self._checked.notify_all()
            self._poke.wait(self.poll_s)
            self._poke.clear()

    def check_once(self) -> None:
        """One check on the caller's thread (the background thread calls it every poll)."""
        latest: int | None = None
        try:
            latest = self.source.latest_version()
            if latest is not None and latest >= 0:
                self.learner_version = int(latest)
            if latest is None or latest < 0 or latest == self.policy.version:
                self._set_reachable(True)
                return
            refused_at = self._refused_at.get(int(latest))
            if refused_at is not None and time.monotonic() - refused_at < REFUSAL_RECHECK_S:
                self._set_reachable(True)
                return
            fetched = self.source.fetch()
            if fetched is None:
                return
            version, variables, _ = unpack(fetched)
        except ValueError as err:  # the item itself is malformed: the server answered
            self._set_reachable(True)
            self._refuse(int(latest) if latest is not None else -1, "malformed", str(err))
            return
        except Exception as err:
            self._outage = f"{type(err).__name__}: {err}"
            self._set_reachable(False)
            return
        self._set_reachable(True)
        manifest = getattr(fetched, "manifest", None)
        try:
            stamp = check_weights(
                self._secret,
                manifest,
                variables,
                self.config_hash,
                self.running,
                self.config_values,
            )
        except WeightsRefused as err:
            self._refuse(version, err.reason, str(err))
            return
        if stamp == self.running:
            return
        try:
            self.policy.load_variables(variables, version)
        except (KeyError, ValueError) as err:
            self._refuse(version, "shape", str(err))
            return
        self.running = stamp
        self.loads += 1
        self._refusal = ""
        log.info("policy weights v%d loaded (learner at v%s)", version, self.learner_version)

    def _refuse(self, version: int, reason: str, why: str) -> None:
        """Keep the current policy; count, remember and (once per version) log the refusal."""
        msg = (
            f"refusing policy weights v{version} from {self.address}: {why}; "
            f"still acting with v{self.policy.version}"
        )
        self.refusals[reason] += 1
        self._refused_at[version] = time.monotonic()
        if self.refused.get(version) != msg:
            log.error(msg)
        self.refused[version] = msg
        self._refusal = msg

    @property
    def last_error(self) -> str:
        """What is wrong now: the outage, else the standing refusal ("" when all is well)."""
        return self._outage or self._refusal

    def _set_reachable(self, ok: bool) -> None:
        if ok and not self.reachable:
            log.info("policy weights at %s reachable again", self.address)
            self._outage = ""
        elif not ok and self.reachable:
            log.warning(
                "policy weights at %s unreachable (%s); acting with v%d",
                self.address,
                self._outage,
                self.policy.version,
            )
        self.reachable = ok
