"""Configuration of a feature service from flags, with environment fallbacks.

Every flag has an environment variable (shown in --help), so the same image
runs from a Deployment's env and from a developer's command line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str
    host: str
    port: int
    ops_port: int
    gateway: str
    advertise: str
    log_level: str
    json_logs: bool


def parse_service_config(
    name: str,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceConfig:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{name}",
        description=f"kruise-mesh {name} service",
    )
    parser.add_argument(
        "--host",
        default=env.get("KRUISE_MESH_LISTEN_HOST", "0.0.0.0"),
        help="gRPC listen address [KRUISE_MESH_LISTEN_HOST]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("KRUISE_MESH_GRPC_PORT", "7100")),
        help="gRPC port, 0 picks one [KRUISE_MESH_GRPC_PORT]",
    )
    parser.add_argument(
        "--ops-port",
        type=int,
        default=int(env.get("KRUISE_MESH_OPS_PORT", "9090")),
        help="HTTP port for /metrics, /healthz, /readyz [KRUISE_MESH_OPS_PORT]",
    )
    parser.add_argument(
        "--gateway",
        default=env.get("KRUISE_MESH_GATEWAY", "127.0.0.1:7000"),
        help="gRPC target of the gateway's cluster API [KRUISE_MESH_GATEWAY]",
    )
    parser.add_argument(
        "--advertise",
        default=env.get("KRUISE_MESH_ADVERTISE", ""),
        help="this replica's address as the gateway knows it; default POD_IP:port "
        "[KRUISE_MESH_ADVERTISE]",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("KRUISE_MESH_LOG_LEVEL", "INFO"),
        help="[KRUISE_MESH_LOG_LEVEL]",
    )
    parser.add_argument(
        "--plain-logs", action="store_true", help="human-readable logs instead of JSON lines"
    )
    args = parser.parse_args(argv)
    advertise = args.advertise or f"{env.get('POD_IP', '127.0.0.1')}:{args.port}"
    return ServiceConfig(
        name=name,
        host=args.host,
        port=args.port,
        ops_port=args.ops_port,
        gateway=args.gateway,
        advertise=advertise,
        log_level=args.log_level,
        json_logs=not args.plain_logs,
    )
