"""The client the actor uses to label frames with the reward server.

```python
client = RewardClient(cfg.deploy.reward_addresses, cfg)      # cfg: ExperimentConfig
result = client.score(frames, "vase_forward")                 # frames uint8 (N,H,W,3) or (H,W,3)
result.probs, result.decisions, result.version
future = client.score_async(frames, "vase_forward")           # concurrent.futures.Future
client.close()
```

Every call has a deadline (``reward.client_timeout_s`` unless given) that covers its retries.
Replicas are used round-robin; a background thread probes each one's health service every
``reward.health_check_interval_s``, and a replica that answers UNAVAILABLE is marked down at
once, so calls go to the live ones (a dead replica is routed around). When every replica is
down the call retries with jittered exponential backoff until its deadline.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from robofume.config.reward import RewardConfig
from robofume.grpc_utils import backoff_delays, make_channel

log = logging.getLogger(__name__)

SERVICE_NAME = "robofume.reward.Reward"


class RewardRequestError(ValueError):
    """The server rejected the request (INVALID_ARGUMENT); the message says why."""


class RewardUnavailable(ConnectionError):
    """No replica answered before the deadline."""


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    probs: np.ndarray
    """float32 (N,) P(yes) per frame."""
    decisions: np.ndarray
    """bool (N,) probs >= the model's tuned threshold."""
    version: str
    """Version id of the model that scored the frames."""
    threshold: float
    question: str
    address: str
    """The replica that answered."""


class _Replica:
    def __init__(self, address: str, token: str, tls_cert: str, max_message_mb: float):
        from grpc_health.v1 import health_pb2_grpc

        from protos import reward_pb2_grpc

        self.address = address
        self.channel = make_channel(
            address, token=token, tls_cert=tls_cert, max_message_mb=max_message_mb
        )
        self.stub = reward_pb2_grpc.RewardStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.healthy: bool | None = None  # unknown until a probe or a call says; used meanwhile


class RewardClient:
    """Round-robin, health-checked, retrying client over reward-server replicas."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        cfg: Any = None,
        *,
        token: str | None = None,
        tls_cert: str | None = None,
        timeout_s: float | None = None,
        max_workers: int = 4,
        health_checks: bool = True,
    ):
        reward = getattr(cfg, "reward", cfg) or RewardConfig()
        deploy = getattr(cfg, "deploy", None)
        if not isinstance(reward, RewardConfig):
            raise TypeError(f"cfg must be an ExperimentConfig or RewardConfig, got {type(cfg)}")
        self.cfg = reward
        addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        if not addresses:
            raise ValueError("RewardClient needs at least one replica address")
        if token is None:
            from robofume.auth import link_token

            token = link_token(deploy) if deploy is not None else ""
        tls_cert = tls_cert if tls_cert is not None else getattr(deploy, "tls_cert", "")
        self.timeout_s = timeout_s or reward.client_timeout_s
        self._replicas = [_Replica(a, token, tls_cert, reward.max_message_mb) for a in addresses]
        self._rr = itertools.count()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers, "reward-client")
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None
        if health_checks:
            self._prober = threading.Thread(target=self._probe_loop, daemon=True)
            self._prober.start()

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self._replicas]

    def healthy(self, refresh: bool = False) -> list[str]:
        """Addresses serving as far as the client knows (replicas never probed, or all of them
        with ``refresh``, are checked now)."""
        for replica in self._replicas:
            if refresh or replica.healthy is None:
                self.check(replica)
        return [r.address for r in self._replicas if r.healthy]

    # --- health ----------------------------------------------------------------------------
    def check(self, replica: _Replica, timeout: float = 1.0) -> bool:
        from grpc_health.v1 import health_pb2

        try:
            resp = replica.health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout
            )
            ok = resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            ok = False
        if replica.healthy is not None and ok != replica.healthy:
            log.info("reward replica %s is %s", replica.address, "up" if ok else "down")
        replica.healthy = ok
        return ok

    def _probe_loop(self) -> None:
        interval = max(0.05, self.cfg.health_check_interval_s)
        while not self._closed.is_set():
            for replica in self._replicas:
                if self._closed.is_set():
                    return
                self.check(replica, timeout=min(1.0, interval))
            self._closed.wait(interval)

    def wait_ready(self, timeout: float = 30.0, all_replicas: bool = False) -> list[str]:
        """Block until one (or every) replica is SERVING; returns the serving addresses."""
        end = time.monotonic() + timeout
        while True:
            up = [r.address for r in self._replicas if self.check(r, timeout=1.0)]
            if up and (not all_replicas or len(up) == len(self._replicas)):
                return up
            if time.monotonic() >= end:
                raise RewardUnavailable(
                    f"reward replicas not serving after {timeout:.0f} s: "
                    f"{sorted(set(self.addresses) - set(up))}"
                )
            time.sleep(0.1)

    # --- scoring ---------------------------------------------------------------------------
    def _pick(self, avoid: _Replica | None = None) -> _Replica:
        with self._lock:
            n = len(self._replicas)
            start = next(self._rr)
            order = [self._replicas[(start + i) % n] for i in range(n)]
        for replica in order:
            if replica.healthy is not False and replica is not avoid:
                return replica
        for replica in order:  # every replica is believed down: try anyway
            if replica is not avoid or n == 1:
                return replica
        return order[0]

    def request(self, frames: np.ndarray, task: str | None, question: str | None) -> Any:
        """The ScoreRequest message for ``frames`` (validated locally first)."""
        from protos import reward_pb2

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (N,H,W,3), got {frames.dtype} {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError("no frames to score")
        if (task is None) == (question is None):
            raise ValueError("give exactly one of task or question")
        req = reward_pb2.ScoreRequest(task=task) if task else reward_pb2.ScoreRequest()
        if question is not None:
            req.question = question
        encoding = self.cfg.client_encoding
        for frame in frames:
            if encoding == "raw":
                h, w, c = frame.shape
                raw = reward_pb2.RawImage(
                    data=frame.tobytes(), height=h, width=w, channels=c, dtype="uint8"
                )
                req.frames.append(reward_pb2.Frame(raw=raw))
            else:
                import cv2

                ext = ".png" if encoding == "png" else ".jpg"
                ok, buf = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise ValueError(f"could not encode a frame as {encoding}")
                req.frames.append(reward_pb2.Frame(encoded=buf.tobytes()))
        return req

    def score(
        self,
        frames: np.ndarray,
        task: str | None = None,
        *,
        question: str | None = None,
        timeout: float | None = None,
    ) -> ScoreResult:
        """P(yes) and decisions for ``frames`` asked about ``task`` (or ``question``)."""
        req = self.request(frames, task, question)
        deadline = time.monotonic() + (timeout or self.timeout_s)
        delays = backoff_delays(self.cfg.client_backoff_s, self.cfg.client_retries)
        last: grpc.RpcError | None = None
        replica: _Replica | None = None
        while True:
            replica = self._pick(avoid=replica if last is not None else None)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                resp = replica.stub.Score(req, timeout=left)
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise RewardRequestError(err.details()) from None
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise
                replica.healthy = False
                last = err
                if any(r.healthy is not False for r in self._replicas):
                    continue  # another replica is believed up: go there now
                delay = next(delays, None)
                if delay is None or time.monotonic() + delay >= deadline:
                    break
                time.sleep(delay)
                continue
            replica.healthy = True
            return ScoreResult(
                probs=np.asarray(resp.probs, np.float32),
                decisions=np.asarray(resp.decisions, bool),
                version=resp.model_version,
                threshold=float(resp.threshold),
                question=resp.question,
                address=replica.address,
            )
        detail = last.details() if last is not None else "deadline exceeded"
        raise RewardUnavailable(f"no reward replica of {self.addresses} answered: {detail}")

    def score_async(
        self,
        frames: np.ndarray,
        task: str | None = None,
        *,
        question: str | None = None,
        timeout: float | None = None,
    ) -> Future:
        """Like :meth:`score` but returns at once with a Future of the ScoreResult."""
        frames = np.array(frames, copy=True)  # the caller may reuse its buffer
        return self._pool.submit(self.score, frames, task, question=question, timeout=timeout)

    def info(self, address: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """A replica's model version, backend, threshold and serving counters."""
        from google.protobuf.json_format import MessageToDict

        from protos import reward_pb2

        replica = next((r for r in self._replicas if r.address == address), None)
        replica = replica or self._pick()
        resp = replica.stub.GetInfo(reward_pb2.InfoRequest(), timeout=timeout)
        out = MessageToDict(
            resp, preserving_proto_field_name=True, including_default_value_fields=True
        )
        for key in ("requests", "frames", "batches", "rejected"):  # uint64 arrive as strings
            out[key] = int(out.get(key, 0))
        out["address"] = replica.address
        return out

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._prober is not None:
            self._prober.join(timeout=5)
        for replica in self._replicas:
            replica.channel.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
