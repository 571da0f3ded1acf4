"""Background pull of the learner's newest policy weights (the variable-client pattern).

A daemon thread asks the weights source for the latest published version every
``poll_s`` seconds and fetches the variables only when it differs from the one the policy
runs (equality, not order: a learner resumed from an older checkpoint republishes a smaller
version and the actor follows it). :meth:`InferencePolicy.load_variables` builds the new
network off the tick thread and swaps it in under its own lock, so a tick never waits for
network traffic or a load.
Weights published under another config hash are refused (logged once per version).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

HASH_KEYS = ("__config_hash__", "config_hash")
"""Keys under which a published variables dict may carry the learner's config hash."""


class WeightsSource(Protocol):
    """What the actor needs from :class:`replay.weights.WeightsClient`."""

    def latest_version(self) -> int | None:
        """Newest published version (None or < 0: nothing published yet)."""

    def fetch(self) -> Any:
        """``(version, variables)`` of the newest weights (or an object with those fields)."""


class Policy(Protocol):
    version: int

    def load_variables(self, variables: Mapping[str, np.ndarray], version: int) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray], task_name: str) -> np.ndarray: ...


class ConfigMismatchError(RuntimeError):
    """The learner publishes weights for another config than this actor's."""


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
        policy: Policy,
        config_hash: str,
        poll_s: float = 1.0,
        address: str = "replay",
    ):
        self.source = source
        self.policy = policy
        self.config_hash = config_hash
        self.poll_s = poll_s
        self.address = address
        self.learner_version: int | None = None
        self.loads = 0
        self.refused: dict[int, str] = {}
        self.last_error = ""
        self.reachable = True
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._checked = threading.Condition()
        self._checks = 0
        self._thread = threading.Thread(target=self._run, name="actor-weights", daemon=True)

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
            self._check_once()
            with self._checked:
                self._checks += 1
                self._checked.notify_all()
            self._poke.wait(self.poll_s)
            self._poke.clear()

    def _check_once(self) -> None:
        try:
            latest = self.source.latest_version()
            if latest is not None and latest >= 0:
                self.learner_version = int(latest)
            if latest is None or latest < 0 or latest == self.policy.version:
                self._set_reachable(True)
                return
            if int(latest) in self.refused:
                return
            fetched = self.source.fetch()
            if fetched is None:
                return
            version, variables, their_hash = unpack(fetched)
        except Exception as err:
            self.last_error = f"{type(err).__name__}: {err}"
            self._set_reachable(False)
            return
        self._set_reachable(True)
        if their_hash is not None and their_hash != self.config_hash:
            msg = (
                f"refusing policy weights v{version} from {self.address}: published under "
                f"config hash {their_hash}, this actor runs {self.config_hash}; start the "
                "actor with the learner's preset and overrides"
            )
            self.refused[version] = msg
            self.last_error = msg
            log.error(msg)
            return
        if version == self.policy.version:
            return
        try:
            self.policy.load_variables(variables, version)
        except (KeyError, ValueError) as err:
            msg = f"refusing policy weights v{version}: {err}"
            self.refused[version] = msg
            self.last_error = msg
            log.error(msg)
            return
        self.loads += 1
        log.info("policy weights v%d loaded (learner at v%s)", version, self.learner_version)

    def _set_reachable(self, ok: bool) -> None:
        if ok and not self.reachable:
            log.info("policy weights at %s reachable again", self.address)
        elif not ok and self.reachable:
            log.warning(
                "policy weights at %s unreachable (%s); acting with v%d",
                self.address,
                self.last_error,
                self.policy.version,
            )
        self.reachable = ok
