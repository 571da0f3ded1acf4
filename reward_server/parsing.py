"""Services whose requests are parsed by the server itself, so that bytes that are not the
request message get INVALID_ARGUMENT with a message (gRPC's own deserializer answers UNKNOWN
with a Python class name).

Every service on a reward replica's port goes through here: the reward service, the standard
health service and server reflection.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as _reflection_pb2

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


async def _parse(raw: bytes, message_type: Any, context: Any) -> Any:
    try:
        return message_type.FromString(raw)
    except DecodeError:
        name = message_type.DESCRIPTOR.name
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a {name} ({len(raw)} bytes that do not parse as one)",
        )


def unary(method: Callable, message_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    """A unary-unary handler of ``method`` that parses its request."""

    async def handler(raw: bytes, context: Any) -> Any:
        return await method(await _parse(raw, message_type, context), context)

    return grpc.unary_unary_rpc_method_handler(
        handler, response_serializer=response_type.SerializeToString
    )


def unary_stream(method: Callable, message_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    """A unary-stream handler of ``method`` that parses its request. ``method`` yields its
    responses, or writes them with ``context.write`` (as the health service's Watch does)."""

    async def streaming(raw: bytes, context: Any) -> AsyncIterator[Any]:
        request = await _parse(raw, message_type, context)
        async for response in method(request, context):
            yield response

    async def writing(raw: bytes, context: Any) -> None:
        await method(await _parse(raw, message_type, context), context)

    handler = streaming if inspect.isasyncgenfunction(method) else writing
    return grpc.unary_stream_rpc_method_handler(
        handler, response_serializer=response_type.SerializeToString
    )


def stream_stream(method: Callable, message_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
    """A stream-stream handler of ``method`` that parses every request of the stream."""

    async def handler(raws: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
        async def requests() -> AsyncIterator[Any]:
            async for raw in raws:
                yield await _parse(raw, message_type, context)

        async for response in method(requests(), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        handler, response_serializer=response_type.SerializeToString
    )


def add_service(server: grpc.aio.Server, name: str, handlers: dict[str, Any]) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))


def add_health(servicer: Any, server: grpc.aio.Server) -> None:
    """The standard health service (``grpc.health.v1.Health``) of ``servicer``."""
    req, resp = health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    add_service(
        server,
        HEALTH_SERVICE,
        {
            "Check": unary(servicer.Check, req, resp),
            "Watch": unary_stream(servicer.Watch, req, resp),
        },
    )


def add_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Server reflection of ``service_names`` (and of itself)."""
    servicer = reflection.aio.ReflectionServicer((*service_names, reflection.SERVICE_NAME))
    add_service(
        server,
        reflection.SERVICE_NAME,
        {
            "ServerReflectionInfo": stream_stream(
                servicer.ServerReflectionInfo,
                _reflection_pb2.ServerReflectionRequest,
                _reflection_pb2.ServerReflectionResponse,
            )
        },
    )
