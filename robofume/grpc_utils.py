"""gRPC conventions shared by every robofume service and client.

- :func:`channel_options` / :func:`server_options`: the one place message limits and keepalive
  settings live.
- :func:`backoff_delays` and :func:`retry_call`: retries with jittered exponential backoff on
  UNAVAILABLE, inside one overall deadline.
- A shared-token check for cross-machine links: clients send ``x-robofume-token`` metadata
  (:class:`TokenClientInterceptor` or :func:`token_metadata`), servers verify it
  (:class:`TokenAuthInterceptor` for grpc.aio, :class:`SyncTokenAuthInterceptor` for grpc).
- TLS: :func:`server_credentials`, :func:`channel_credentials`, :func:`add_port` and
  :func:`make_channel` pick TLS when a certificate is configured, plaintext otherwise.
- :func:`check_bind`: no server listens beyond loopback without a token unless told to.
"""

from __future__ import annotations

import hmac
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

T = TypeVar("T")
log = logging.getLogger(__name__)

TOKEN_KEY = "x-robofume-token"
RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)


def channel_options(max_message_mb: float = 16) -> list[tuple[str, Any]]:
    """Options for every robofume client channel."""
    limit = int(max_message_mb * 1024 * 1024)
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # fail fast on a dead peer; the client's own retry loop decides what happens next
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        ("grpc.enable_retries", 0),
    ]


def server_options(max_message_mb: float = 16) -> list[tuple[str, Any]]:
    """Options for every robofume server."""
    limit = int(max_message_mb * 1024 * 1024)
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.so_reuseport", 0),
    ]


def backoff_delays(
    base_s: float, retries: int, max_s: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """``retries`` delays: base, 2*base, 4*base ... capped at ``max_s``, with +-50% jitter."""
    rng = rng or random.Random()
    for i in range(retries):
        yield min(max_s, base_s * (2**i)) * rng.uniform(0.5, 1.5)


def retry_call(
    fn: Callable[[float], T],
    *,
    deadline_s: float,
    retries: int = 3,
    backoff_s: float = 0.05,
    retry_codes: Sequence[grpc.StatusCode] = RETRYABLE,
    on_retry: Callable[[grpc.RpcError, int], None] | None = None,
) -> T:
    """Call ``fn(timeout_s)`` until it succeeds, retrying on ``retry_codes`` with backoff.

    ``fn`` receives the time left of the overall deadline and must pass it on as the gRPC
    timeout. Other errors, and the last retryable one, propagate.
    """
    end = time.monotonic() + deadline_s
    delays = backoff_delays(backoff_s, retries)
    attempt = 0
    while True:
        left = end - time.monotonic()
        try:
            return fn(max(left, 0.001))
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code not in retry_codes:
                raise
            delay = next(delays, None)
            if delay is None or time.monotonic() + delay >= end:
                raise
            if on_retry is not None:
                on_retry(err, attempt)
            attempt += 1
            time.sleep(delay)


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the shared token (empty when no token is configured)."""
    return ((TOKEN_KEY, token),) if token else ()


def _token_ok(metadata: Sequence[tuple[str, Any]] | None, token: str) -> bool:
    for key, value in metadata or ():
        if key == TOKEN_KEY:
            got = value.decode() if isinstance(value, bytes) else str(value)
            return hmac.compare_digest(got.encode(), token.encode())
    return False


_REJECT = "missing or wrong shared token (metadata x-robofume-token)"


def _reject_handler(handler: grpc.RpcMethodHandler | None, aio: bool) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that answers UNAUTHENTICATED."""
    req_stream = bool(handler and handler.request_streaming)
    resp_stream = bool(handler and handler.response_streaming)
    deser = handler.request_deserializer if handler else None
    ser = handler.response_serializer if handler else None

    if aio:

        async def reject(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REJECT)

    else:

        def reject(request: Any, context: grpc.ServicerContext) -> None:  # type: ignore[misc]
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _REJECT)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(req_stream, resp_stream)]
    return make(reject, request_deserializer=deser, response_serializer=ser)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio server interceptor: every call must carry the shared token."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("TokenAuthInterceptor needs a non-empty token")
        self._token = token

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[override]
        if _token_ok(handler_call_details.invocation_metadata, self._token):
            return await continuation(handler_call_details)
        return _reject_handler(await continuation(handler_call_details), aio=True)


class SyncTokenAuthInterceptor(grpc.ServerInterceptor):
    """Thread-pool grpc server interceptor: every call must carry the shared token."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("SyncTokenAuthInterceptor needs a non-empty token")
        self._token = token

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[override]
        if _token_ok(handler_call_details.invocation_metadata, self._token):
            return continuation(handler_call_details)
        return _reject_handler(continuation(handler_call_details), aio=False)


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class TokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the shared token to every call of a (sync) channel."""

    def __init__(self, token: str):
        self._meta = list(token_metadata(token))

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _ClientCallDetails(details, list(details.metadata or []) + self._meta)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _read(path_or_pem: str) -> bytes:
    if "-----BEGIN" in path_or_pem:
        return path_or_pem.encode()
    path = Path(path_or_pem)
    if not path.exists():
        raise FileNotFoundError(f"TLS file {path} does not exist")
    return path.read_bytes()


def server_credentials(cert: str, key: str) -> grpc.ServerCredentials:
    """TLS server credentials from PEM files (or PEM strings)."""
    if not key:
        raise ValueError("TLS needs both a certificate and its private key (deploy.tls_key)")
    return grpc.ssl_server_credentials([(_read(key), _read(cert))])


def channel_credentials(cert: str) -> grpc.ChannelCredentials:
    """TLS channel credentials trusting ``cert`` (the server's certificate or its CA)."""
    return grpc.ssl_channel_credentials(root_certificates=_read(cert))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class InsecureBindError(RuntimeError):
    """A server was asked to listen beyond loopback without a token."""


def is_loopback(host: str) -> bool:
    """True for a loopback host (127.x.x.x, localhost, ::1)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def describe_host(host: str) -> str:
    """Where ``host`` listens, in words (``0.0.0.0`` is every interface, not an address)."""
    if host in ("0.0.0.0", "", "[::]", "::"):
        return f"all interfaces ({host or '0.0.0.0'})"
    return host


def check_bind(host: str, token: str, tls_cert: str, allow_insecure: bool, what: str) -> None:
    """Refuse to listen beyond loopback without a token, unless explicitly allowed (then warn).

    A token without TLS beyond loopback is accepted with a warning: it travels in plaintext.
    """
    if is_loopback(host):
        return
    if not token:
        if not allow_insecure:
            raise InsecureBindError(
                f"{what}: refusing to listen on {describe_host(host)} without a token: anyone "
                "on the network could use it. Give it the deployment secret (`robofume secret` "
                "on the head, then copy the file: the link token derives from it) or set "
                "deploy.token (and deploy.tls_cert / deploy.tls_key), bind loopback "
                "(deploy.bind_host 127.0.0.1), or accept the risk with "
                "deploy.allow_insecure_remote true"
            )
        log.warning(
            "%s listens on %s WITHOUT a token or TLS (deploy.allow_insecure_remote): anyone "
            "on the network can call it",
            what,
            describe_host(host),
        )
    elif not tls_cert:
        log.warning(
            "%s listens on %s with a token but without TLS: the token travels in plaintext "
            "(set deploy.tls_cert / deploy.tls_key)",
            what,
            describe_host(host),
        )


def add_port(server: Any, address: str, tls_cert: str = "", tls_key: str = "") -> int:
    """Bind ``server`` (grpc or grpc.aio) to ``address``, with TLS when a cert is given.

    Returns the bound port (useful with port 0); raises OSError if the port is taken.
    """
    if tls_cert:
        port = server.add_secure_port(address, server_credentials(tls_cert, tls_key))
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"could not bind gRPC server to {address}")
    return int(port)


def make_channel(
    address: str,
    *,
    token: str = "",
    tls_cert: str = "",
    max_message_mb: float = 16,
) -> grpc.Channel:
    """A sync channel with the standard options, TLS when configured and the token attached."""
    options = channel_options(max_message_mb)
    if tls_cert:
        channel = grpc.secure_channel(address, channel_credentials(tls_cert), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if token:
        channel = grpc.intercept_channel(channel, TokenClientInterceptor(token))
    return channel


def make_aio_channel(
    address: str, *, tls_cert: str = "", max_message_mb: float = 16
) -> grpc.aio.Channel:
    """A grpc.aio channel with the standard options (send the token with token_metadata)."""
    options = channel_options(max_message_mb)
    if tls_cert:
        return grpc.aio.secure_channel(address, channel_credentials(tls_cert), options=options)
    return grpc.aio.insecure_channel(address, options=options)
