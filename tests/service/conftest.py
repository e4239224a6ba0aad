"""Fixtures for service tests: a feature service on port 0 and a channel to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services.kit.config import ServiceConfig
from services.kit.service import RunningService, ServiceSpec, start_service


def local_config(name: str) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        host="127.0.0.1",
        port=0,
        ops_port=0,
        gateway="127.0.0.1:1",
        advertise=f"{name}-test",
        log_level="INFO",
        json_logs=False,
    )


async def started(spec: ServiceSpec) -> RunningService:
    return await start_service(spec, local_config(spec.name))


@pytest.fixture
async def placement() -> AsyncIterator[tuple[RunningService, grpc.aio.Channel]]:
    from services.placement.__main__ import SPEC

    running = await started(SPEC)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    yield running, channel
    await channel.close()
    await running.stop(grace=0)
