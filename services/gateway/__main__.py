"""``python -m services.gateway``: run the gateway until SIGTERM, SIGINT or SIGHUP (or its
supervisor's death: ``caught_signals``), then stop: local webhook configurations removed.

Prints one JSON line with its ports once it serves, for supervisors and tests
(``api_port`` and ``api_http_port``, the rollout API for tools, are null when off).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import orjson

from services.gateway.app import start_gateway
from services.gateway.config import parse_gateway_config
from services.kit import errors, logs
from services.kit.heap import freeze_startup_heap
from services.kit.rpc import caught_signals

log = logging.getLogger("services.gateway")


async def run(argv: Sequence[str] | None = None) -> None:
    config = parse_gateway_config(argv)
    logs.setup(component="gateway", level=config.log_level, json_format=config.json_logs)
    freeze_startup_heap()
    try:
        gateway = await start_gateway(config)
    except errors.MeshError as e:
        log.error("cannot start: %s", e)
        raise SystemExit(1) from None
    ready = {
        "component": "gateway",
        "grpc_port": gateway.grpc.port,
        "webhook_port": gateway.webhook.port,
        "ops_port": gateway.ops.port,
        "api_port": gateway.api_port,
        "api_http_port": gateway.api_http_port,
    }
    with caught_signals() as stop:
        sys.stdout.write(orjson.dumps(ready).decode() + "\n")
        sys.stdout.flush()
        log.info("gateway serving", extra=ready)
        received = await stop
    log.info("stopping", extra={"signal": received.name})
    await gateway.stop()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
