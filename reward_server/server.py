"""One reward-server replica: a grpc.aio server with dynamic batching in front of a RewardModel.

Serves ``robofume.reward.Reward`` (protos/reward.proto), the standard health service and
server reflection. Requests are validated and decoded on the event loop (encoded images in a
small decode pool), batched across concurrent requests by :class:`DynamicBatcher`, and scored
in a thread executor. Binds loopback unless told otherwise; a shared token and TLS are
optional.

```python
server = RewardServer(model, cfg.reward, token=cfg.deploy.token)
port = await server.start("127.0.0.1", 8010)      # in a running event loop
await server.stop()

handle = start_server_thread(model, cfg.reward, port=0)   # tests, benchmarks: own thread+loop
handle.address; handle.stop()
```
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2

from protos import reward_pb2, reward_pb2_grpc
from reward_server.batcher import DynamicBatcher
from reward_server.frames import BadRequest, check_pixels, decode_frame, stack_frames
from reward_server.model import RewardModel
from reward_server.parsing import HEALTH_SERVICE, add_health, add_reflection, add_service, unary
from robofume.config.reward import RewardConfig
from robofume.grpc_utils import (
    TokenAuthInterceptor,
    add_port,
    check_bind,
    describe_host,
    server_options,
)
from robofume.questions import UnknownTaskError

log = logging.getLogger(__name__)

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["Reward"].full_name
MB = 1024 * 1024


def add_reward_service(servicer: RewardServicer, server: grpc.aio.Server) -> None:
    """``reward_pb2_grpc.add_RewardServicer_to_server`` with requests parsed by the servicer."""
    add_service(
        server,
        SERVICE_NAME,
        {
            "Score": unary(servicer.Score, reward_pb2.ScoreRequest, reward_pb2.ScoreResponse),
            "GetInfo": unary(servicer.GetInfo, reward_pb2.InfoRequest, reward_pb2.InfoResponse),
        },
    )


class RewardServicer(reward_pb2_grpc.RewardServicer):
    """Thin gRPC layer: validate, decode, batch, answer."""

    def __init__(self, owner: RewardServer):
        self.owner = owner

    async def Score(self, request: reward_pb2.ScoreRequest, context: Any) -> Any:
        srv = self.owner
        srv.requests += 1
        try:
            question = srv.resolve_question(request)
            frames = await srv.decode(request)
        except BadRequest as err:
            srv.rejected += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        start = time.perf_counter()
        try:
            probs = await srv.batcher.submit((frames, question), size=len(frames))
        except Exception as err:
            log.exception("scoring failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"scoring failed: {err}")
        srv.latency_ms.append((time.perf_counter() - start) * 1000.0)
        model = srv.model
        return reward_pb2.ScoreResponse(
            probs=probs.tolist(),
            decisions=model.decide(probs).tolist(),
            model_version=model.version,
            threshold=model.threshold,
            question=question,
        )

    async def GetInfo(self, request: reward_pb2.InfoRequest, context: Any) -> Any:
        srv = self.owner
        return reward_pb2.InfoResponse(
            model_version=srv.model.version,
            backend=srv.model.backend,
            threshold=srv.model.threshold,
            max_batch_size=srv.cfg.max_batch_size,
            max_wait_ms=srv.cfg.max_wait_ms,
            requests=srv.requests,
            frames=srv.batcher.frames,
            batches=srv.batcher.batches,
            largest_batch=srv.batcher.largest_batch,
            rejected=srv.rejected,
            questions=srv.model.questions,
            started_at=srv.started_at,
            restarts=srv.restarts,
            checkpoint=srv.model.checkpoint,
            checkpoint_time=srv.model.checkpoint_time,
        )


class RewardServer:
    """A replica: model + batcher + grpc.aio server (+ health, reflection)."""

    def __init__(
        self,
        model: RewardModel,
        cfg: RewardConfig,
        token: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        allow_insecure_remote: bool = False,
    ):
        self.model = model
        self.cfg = cfg
        self.token = token
        self.tls = (tls_cert, tls_key)
        self.allow_insecure_remote = allow_insecure_remote
        self.requests = 0
        self.rejected = 0
        self.started_at = time.time()
        """When this replica was created (unix seconds)."""
        self.restarts = 0
        """Restarts of this replica in its run, when its host counts them (Ray replicas)."""
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=4096)
        """Latency of the most recent requests (ms), for telemetry."""
        self.port: int | None = None
        self._executor = ThreadPoolExecutor(max(1, cfg.executor_threads), "reward-model")
        self._decode_pool = ThreadPoolExecutor(2, "reward-decode")
        self.batcher = DynamicBatcher(
            self._score_batch, cfg.max_batch_size, cfg.max_wait_ms, self._executor
        )
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._questions: dict[str, str] = {}

    # --- request handling ------------------------------------------------------------------
    def resolve_question(self, request: reward_pb2.ScoreRequest) -> str:
        target = request.WhichOneof("target")
        if target == "question":
            if not request.question.strip():
                raise BadRequest("question is empty")
            return request.question
        if target != "task":
            raise BadRequest("request names neither a task nor a question")
        task = request.task
        if task not in self._questions:
            try:
                self._questions[task] = self.model.question_for(task)
            except UnknownTaskError as err:
                known = sorted(self.model.questions)
                hint = f"; tasks this model knows: {', '.join(known)}" if known else ""
                raise BadRequest(f"{err}{hint}") from None
        return self._questions[task]

    async def decode(self, request: reward_pb2.ScoreRequest) -> np.ndarray:
        size = request.ByteSize()
        if size > self.cfg.max_message_mb * MB:
            raise BadRequest(
                f"request is {size / MB:.1f} MB; the limit is {self.cfg.max_message_mb} MB "
                "(reward.max_message_mb): send fewer or encoded frames"
            )
        n = len(request.frames)
        if n == 0:
            raise BadRequest("request has no frames (empty batch)")
        if n > self.cfg.max_frames_per_request:
            raise BadRequest(
                f"request has {n} frames; the limit is {self.cfg.max_frames_per_request} "
                "(reward.max_frames_per_request)"
            )
        check_pixels(request.frames, self.cfg.max_frame_pixels, self.cfg.max_request_pixels)
        if any(f.WhichOneof("image") == "encoded" for f in request.frames):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._decode_pool, self._decode_all, request)
        return self._decode_all(request)

    @staticmethod
    def _decode_all(request: reward_pb2.ScoreRequest) -> np.ndarray:
        return stack_frames([decode_frame(f, i) for i, f in enumerate(request.frames)])

    def _score_batch(self, items: list[tuple[np.ndarray, str]]) -> list[Any]:
        """Runs in the executor: group by frame size, one model call per group."""
        out: list[Any] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, (frames, _) in enumerate(items):
            groups.setdefault(frames.shape[1:], []).append(i)
        for members in groups.values():
            images = np.concatenate([items[i][0] for i in members])
            questions = [items[i][1] for i in members for _ in range(len(items[i][0]))]
            try:
                probs = self.model.score(images, questions)
            except Exception as err:
                if len(members) == 1:
                    out[members[0]] = err
                    continue
                for i in members:  # isolate the culprit
                    try:
                        out[i] = self.model.score(items[i][0], [items[i][1]] * len(items[i][0]))
                    except Exception as single:
                        out[i] = single
                continue
            offset = 0
            for i in members:
                n = len(items[i][0])
                out[i] = probs[offset : offset + n]
                offset += n
        return out

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind, start serving and report SERVING; returns the bound port.

        Beyond loopback without a token it refuses (:func:`check_bind`) unless
        ``allow_insecure_remote``.
        """
        check_bind(host, self.token, self.tls[0], self.allow_insecure_remote, "reward server")
        if self.cfg.torch_threads > 0:
            import torch

            torch.set_num_threads(self.cfg.torch_threads)
        interceptors = [TokenAuthInterceptor(self.token)] if self.token else []
        # the transport accepts up to 4x the limit so that oversize requests get a precise
        # INVALID_ARGUMENT from decode() rather than a bare RESOURCE_EXHAUSTED
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=server_options(4 * self.cfg.max_message_mb + 1),
        )
        add_reward_service(RewardServicer(self), self._server)
        add_health(self.health, self._server)
        add_reflection((SERVICE_NAME, HEALTH_SERVICE), self._server)
        self.port = add_port(self._server, f"{host}:{port}", *self.tls)
        await self._server.start()
        self.batcher.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "reward server listening on %s port %d (%s) serving %s (max batch %d, max wait "
            "%.1f ms)",
            describe_host(host),
            self.port,
            "TLS" if self.tls[0] else "plaintext",
            self.model.version,
            self.cfg.max_batch_size,
            self.cfg.max_wait_ms,
        )
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """NOT_SERVING, finish in-flight calls (up to ``grace`` s), stop."""
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        await self.batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


class ServerThread:
    """A RewardServer on its own event loop in a daemon thread (tests, benchmarks, tools)."""

    def __init__(self, server: RewardServer, host: str, port: int):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(host, port), daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self.address = f"{host}:{server.port}"

    def _main(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start(host, port))
        except BaseException as err:
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def stop(self, grace: float = 0.5) -> None:
        """Stop the server and its loop (idempotent)."""
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        try:
            fut.result(timeout=grace + 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


def start_server_thread(
    model: RewardModel,
    cfg: RewardConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "",
    tls_cert: str = "",
    tls_key: str = "",
    allow_insecure_remote: bool = False,
) -> ServerThread:
    """Serve ``model`` from a background thread; returns once it is SERVING."""
    server = RewardServer(model, cfg, token, tls_cert, tls_key, allow_insecure_remote)
    return ServerThread(server, host, port)
