"""Reward server over real gRPC on 127.0.0.1: batching, bad requests, health, reflection, token."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
import reward_fixtures as fx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos import reward_pb2, reward_pb2_grpc
from reward_server.dataset import build_dataset
from reward_server.finetune import finetune_data
from reward_server.server import start_server_thread
from robofume.config.reward import RewardConfig
from robofume.reward_client import RewardClient, RewardUnavailable

CFG = RewardConfig(
    backend="cnn",
    text_encoder="hash",
    image_size=32,
    batch_size=16,
    max_batch_size=32,
    max_wait_ms=2,
)


@pytest.fixture(scope="module")
def model():
    data = build_dataset(fx.episodes(n_target=6, n_failure=2), CFG)
    return finetune_data(data, CFG, None, steps=10, device="cpu").model


@pytest.fixture(scope="module")
def server(model):
    handle = start_server_thread(model, CFG)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.address)
    yield reward_pb2_grpc.RewardStub(channel)
    channel.close()


def frames(n: int = 2, size: int = fx.SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([fx.frame(rng, "left" if i % 2 else None) for i in range(n)])[:, :size, :size]


def raw(img: np.ndarray, **overrides) -> reward_pb2.Frame:
    h, w, c = img.shape
    fields = dict(data=img.tobytes(), height=h, width=w, channels=c, dtype="uint8")
    fields.update(overrides)
    return reward_pb2.Frame(raw=reward_pb2.RawImage(**fields))


def test_health_serving_and_reflection(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "robofume.reward.Reward"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        (resp,) = list(refl.ServerReflectionInfo(iter([req]), timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {"robofume.reward.Reward", "grpc.health.v1.Health"} <= names


def test_score_matches_the_model_and_reports_version(stub, model):
    imgs = frames(4)
    resp = stub.Score(
        reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(i) for i in imgs]), timeout=10
    )
    expected = model.score(imgs, [model.question_for("vase_forward")] * 4)
    np.testing.assert_allclose(resp.probs, expected, atol=1e-5)
    assert list(resp.decisions) == list(expected >= np.float32(model.threshold))
    assert resp.model_version == model.version
    assert resp.question == model.question_for("vase_forward")
    # encoded frames: PNG is lossless, so the same scores; JPEG decodes to a valid score
    png = [reward_pb2.Frame(encoded=cv2.imencode(".png", i[..., ::-1])[1].tobytes()) for i in imgs]
    resp_png = stub.Score(reward_pb2.ScoreRequest(task="vase_forward", frames=png), timeout=10)
    np.testing.assert_allclose(resp_png.probs, expected, atol=1e-5)
    jpg = [reward_pb2.Frame(encoded=cv2.imencode(".jpg", i)[1].tobytes()) for i in imgs]
    resp_jpg = stub.Score(reward_pb2.ScoreRequest(question="is it done?", frames=jpg), timeout=10)
    assert len(resp_jpg.probs) == 4 and all(0 <= p <= 1 for p in resp_jpg.probs)


def test_concurrent_requests_end_up_in_one_batch(model):
    cfg = dataclasses.replace(CFG, max_batch_size=8, max_wait_ms=3000)
    handle = start_server_thread(model, cfg)
    client = RewardClient([handle.address], cfg, health_checks=False, max_workers=8)
    try:
        imgs = frames(8)
        barrier = threading.Barrier(8)

        def one(i: int):
            barrier.wait()
            return client.score(imgs[i], "bench_forward").probs[0]

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(one, range(8)))
        info = client.info()
        assert info["largest_batch"] == 8 and info["batches"] == 1 and info["frames"] == 8
        assert list(handle.server.batcher.recent_sizes) == [8]
        expected = model.score(imgs, [model.question_for("bench_forward")] * 8)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    finally:
        client.close()
        handle.stop()


BAD_REQUESTS = {
    "wrong dtype": (
        lambda img: reward_pb2.ScoreRequest(
            task="vase_forward", frames=[raw(img, dtype="float32")]
        ),
        "frame 0: dtype 'float32' is not supported",
    ),
    "wrong shape": (
        lambda img: reward_pb2.ScoreRequest(
            task="vase_forward", frames=[raw(img), raw(img, channels=4)]
        ),
        "frame 1: shape 32x32x4; frames must be RGB",
    ),
    "short data": (
        lambda img: reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(img, data=b"xyz")]),
        "frame 0: 3 bytes of data but shape 32x32x3 needs 3072",
    ),
    "empty batch": (
        lambda img: reward_pb2.ScoreRequest(task="vase_forward"),
        "no frames (empty batch)",
    ),
    "undecodable image": (
        lambda img: reward_pb2.ScoreRequest(
            task="vase_forward", frames=[reward_pb2.Frame(encoded=b"not a png")]
        ),
        "frame 0: cannot decode the encoded image",
    ),
    "unknown task": (
        lambda img: reward_pb2.ScoreRequest(task="fly_to_the_moon", frames=[raw(img)]),
        "unknown task 'fly_to_the_moon'",
    ),
    "no target": (
        lambda img: reward_pb2.ScoreRequest(frames=[raw(img)]),
        "neither a task nor a question",
    ),
    "mixed sizes": (
        lambda img: reward_pb2.ScoreRequest(
            task="vase_forward", frames=[raw(img), raw(np.ascontiguousarray(img[:16, :16]))]
        ),
        "frame 1: shape 16x16x3 differs from frame 0's 32x32x3",
    ),
    "frame without image": (
        lambda img: reward_pb2.ScoreRequest(task="vase_forward", frames=[reward_pb2.Frame()]),
        "frame 0: has no image",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_invalid_argument(stub, case):
    build, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(build(frames(1)[0]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_oversize_request_is_rejected_precisely(model):
    handle = start_server_thread(model, dataclasses.replace(CFG, max_message_mb=1))
    try:
        with grpc.insecure_channel(handle.address) as channel:
            stub = reward_pb2_grpc.RewardStub(channel)
            big = np.zeros((3, 384, 384, 3), np.uint8)  # 1.3 MB of pixels
            req = reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(i) for i in big])
            with pytest.raises(grpc.RpcError) as info:
                stub.Score(req, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "the limit is 1 MB" in info.value.details()
            small = reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(frames(1)[0])])
            assert len(stub.Score(small, timeout=10).probs) == 1  # the server is fine
    finally:
        handle.stop()


class ExplodingModel:
    """Delegates to a real model but fails any batch holding the question 'explode?'."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, images, questions):
        if "explode?" in questions:
            raise RuntimeError("boom")
        return self.inner.score(images, questions)


def test_a_failing_request_does_not_fail_its_batch(model):
    cfg = dataclasses.replace(CFG, max_batch_size=4, max_wait_ms=3000)
    handle = start_server_thread(ExplodingModel(model), cfg)
    try:
        with grpc.insecure_channel(handle.address) as channel:
            stub = reward_pb2_grpc.RewardStub(channel)
            imgs = frames(3)
            reqs = [
                reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(imgs[0])]),
                reward_pb2.ScoreRequest(question="explode?", frames=[raw(imgs[1])]),
                reward_pb2.ScoreRequest(task="nope", frames=[raw(imgs[1])]),  # rejected early
                reward_pb2.ScoreRequest(task="bench_forward", frames=[raw(i) for i in imgs[1:]]),
            ]
            futures = [stub.Score.future(r, timeout=20) for r in reqs]
            assert len(futures[0].result().probs) == 1
            assert len(futures[3].result().probs) == 2
            assert futures[1].exception().code() == grpc.StatusCode.INTERNAL
            assert "boom" in futures[1].exception().details()
            assert futures[2].exception().code() == grpc.StatusCode.INVALID_ARGUMENT
        # the three valid requests (4 frames) were batched together, then retried one by one
        assert handle.server.batcher.largest_batch == 4
    finally:
        handle.stop()


def test_shared_token_is_required(model):
    handle = start_server_thread(model, CFG, token="s3cret")
    try:
        imgs = frames(1)
        with RewardClient([handle.address], CFG, token="", health_checks=False) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.score(imgs, "vase_forward")
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "token" in info.value.details()
            assert not client.check(client._replicas[0])  # health needs the token too
        wrong = RewardClient([handle.address], CFG, token="wrong", health_checks=False)
        with wrong, pytest.raises(grpc.RpcError, match="token"):
            wrong.score(imgs, "vase_forward")
        with RewardClient([handle.address], CFG, token="s3cret", health_checks=False) as client:
            assert client.score(imgs, "vase_forward").probs.shape == (1,)
            assert client.check(client._replicas[0])
    finally:
        handle.stop()


def test_serve_on_a_public_address_without_a_token_is_one_clear_line(model, tmp_path):
    import copy
    import sys

    from replay_support import ROOT

    ckpt = copy.deepcopy(model).save(tmp_path / "reward")  # a copy: save() sets a new version
    cmd = [sys.executable, "-m", "deploy.command", "reward", "serve", "--preset", "smoke",
           "--checkpoint", str(ckpt), "--host", "0.0.0.0", "--port", "0",
           "--deploy.run_dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "refusing to listen on all interfaces" in done.stderr
    assert "Traceback" not in done.stderr


def test_tls_and_token_together(model, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    handle = start_server_thread(model, CFG, token="t0k", tls_cert=str(cert), tls_key=str(key))
    try:
        secure = RewardClient(
            [handle.address], CFG, token="t0k", tls_cert=str(cert), health_checks=False
        )
        with secure:
            assert secure.score(frames(1), "vase_forward").probs.shape == (1,)
        plain = RewardClient([handle.address], CFG, token="t0k", timeout_s=1.0, health_checks=False)
        with plain, pytest.raises(RewardUnavailable):
            plain.score(frames(1), "vase_forward")  # plaintext cannot talk to a TLS replica
    finally:
        handle.stop()


def test_telemetry_logs_latency_and_batch_size(tmp_path):
    """The serving replica's TensorBoard scalars come from its own counters."""
    import collections
    import types

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reward_server.telemetry import ServerTelemetry
    from robofume import metrics as tags

    server = types.SimpleNamespace(
        requests=0,
        latency_ms=collections.deque(maxlen=8),
        batcher=types.SimpleNamespace(batches=0, frames=0),
    )
    telemetry = ServerTelemetry(server, tmp_path, every_s=3600)
    try:
        assert telemetry.sample(0) == {}  # nothing served yet
        server.latency_ms.extend([10.0, 30.0, 20.0])
        server.requests, server.batcher.batches, server.batcher.frames = 3, 2, 6
        out = telemetry.sample(1)
        assert out[tags.REWARD_LATENCY_MS] == 20.0 and out[tags.REWARD_BATCH_SIZE] == 3.0
        server.latency_ms.append(50.0)
        server.requests, server.batcher.batches, server.batcher.frames = 4, 3, 7
        out = telemetry.sample(2)  # only the new interval counts
        assert out[tags.REWARD_LATENCY_MS] == 50.0 and out[tags.REWARD_BATCH_SIZE] == 1.0
    finally:
        telemetry.close()  # nothing new since: no extra point
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.value for e in acc.Scalars(tags.REWARD_BATCH_SIZE)] == [3.0, 1.0]


def _png(size: tuple[int, int]) -> bytes:
    """A PNG that decodes to ``size`` (w, h) RGB pixels but stores 1 bit each (a few KB)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("1", size).save(out, format="PNG")
    return out.getvalue()


def test_decompression_bombs_are_refused_before_decoding(stub, server):
    bomb = _png((8000, 8000))
    assert len(bomb) < 200_000  # tiny on the wire, 192 MB decoded
    req = reward_pb2.ScoreRequest(task="vase_forward", frames=[reward_pb2.Frame(encoded=bomb)])
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frame 0: 8000x8000 is 64000000 pixels; the limit is 1048576" in info.value.details()
    many = [reward_pb2.Frame(encoded=_png((1000, 1000))) for _ in range(20)]
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(reward_pb2.ScoreRequest(task="vase_forward", frames=many), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "frames 0-16 hold 17000000 pixels; the limit is 16777216" in info.value.details()
    gif = reward_pb2.Frame(encoded=b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 20)
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(reward_pb2.ScoreRequest(task="vase_forward", frames=[gif]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = reward_pb2.ScoreRequest(task="vase_forward", frames=[raw(frames(1)[0])])
    assert len(stub.Score(ok, timeout=10).probs) == 1  # still serving


def test_garbage_bytes_get_invalid_argument(server):
    from reward_server.server import SERVICE_NAME

    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(f"/{SERVICE_NAME}/Score")  # no serializer: raw bytes
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xfe not a protobuf message \x00\x01", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a ScoreRequest" in info.value.details()
        info_call = channel.unary_unary(f"/{SERVICE_NAME}/GetInfo")
        with pytest.raises(grpc.RpcError) as info:
            info_call(b"\xff\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the other services on the port too: health (Check, Watch) and reflection
        garbage = b"\xff\xfe\x00 junk"
        calls = {
            "HealthCheckRequest": lambda: channel.unary_unary("/grpc.health.v1.Health/Check")(
                garbage, timeout=10
            ),
            "HealthCheckRequest ": lambda: next(
                channel.unary_stream("/grpc.health.v1.Health/Watch")(garbage, timeout=10)
            ),
            "ServerReflectionRequest": lambda: next(
                channel.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
                )(iter([garbage]), timeout=10)
            ),
        }
        for name, call_it in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call_it()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert f"not a {name.strip()}" in info.value.details()


def test_health_watch_and_reflection_answer(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from reward_server.server import SERVICE_NAME

    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME)).status == serving
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == serving
        watch.cancel()
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=10))  # fmt: skip
        names = {s.name for s in answer.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_no_listening_beyond_loopback_without_a_token(model, caplog):
    import logging

    from robofume.grpc_utils import InsecureBindError

    caplog.set_level(logging.INFO)
    with pytest.raises(InsecureBindError, match=r"refusing to listen on all interfaces"):
        start_server_thread(model, CFG, host="0.0.0.0")
    handle = start_server_thread(model, CFG, host="0.0.0.0", allow_insecure_remote=True)
    try:
        assert "WITHOUT a token" in caplog.text
        assert f"listening on all interfaces (0.0.0.0) port {handle.server.port}" in caplog.text
    finally:
        handle.stop()
    handle = start_server_thread(model, CFG, host="0.0.0.0", token="s3cret")
    try:
        assert "the token travels in plaintext" in caplog.text
    finally:
        handle.stop()
