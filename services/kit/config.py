"""Configuration of a feature service from flags, with environment fallbacks.

Every flag has an environment variable (shown in --help), so the same image
runs from a Deployment's env and from a developer's command line.
"""

from __future__ import annotations

import argparse
import os
import re
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
    # The replica's mesh certificate (tls.crt, tls.key, ca.crt); empty: plain TCP (local only).
    tls_dir: str = ""


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
        "--tls-dir",
        default=env.get("KRUISE_MESH_TLS_DIR", ""),
        help="directory with this replica's mesh certificate: tls.crt, tls.key and ca.crt "
        "(a cert-manager Secret's layout), re-read when it changes; empty: plain TCP, for "
        "loopback only [KRUISE_MESH_TLS_DIR]",
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
        tls_dir=args.tls_dir,
    )


# -- StatefulSet-like workload kinds (shared by the gateway and placement) --------------------

ROLLOUT_HANDOVER_ENV = "KRUISE_MESH_ROLLOUT_HANDOVER_S"
# Tests only: the rollout service sends its pod and revision writes without the fence.
ROLLOUT_UNFENCED_ENV = "KRUISE_MESH_ROLLOUT_UNFENCED"
STATEFULSET_LIKE_KINDS_ENV = "KRUISE_MESH_STATEFULSET_LIKE_KINDS"

_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_VERSION = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_KIND = re.compile(r"[A-Z]([-A-Za-z0-9]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """A custom StatefulSet-like kind: it has a ``/scale`` subresource and names its pods
    ``<name>-<ordinal>`` (OpenKruise 1.4 lets PersistentPodState target such kinds)."""

    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        """``group/version``, as in an object's ``apiVersion``."""
        return f"{self.group}/{self.version}"

    def __str__(self) -> str:
        return f"{self.group}/{self.version}/{self.kind}"


def parse_statefulset_like_kinds(text: str) -> tuple[WorkloadKind, ...]:
    """``"apps.example.io/v1/ShardSet, db.example.io/v1beta1/Ring"`` → WorkloadKinds, in order.

    Pure. The value of ``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` (gateway and placement):
    comma-separated ``group/version/Kind`` entries, whitespace around each entry and part
    trimmed; blank text, or a blank entry such as a trailing comma, names nothing. Raises
    ValueError naming the first malformed entry:

    - not exactly three ``/``-separated non-empty parts (``apps.example.io/ShardSet``);
    - an empty group (``/v1/Pod``): core-group kinds are not custom workloads;
    - a group that is not a lowercase DNS subdomain, a version that is not a lowercase
      DNS label (``V1``), a Kind that does not start with an uppercase letter (``shardSet``);
    - the same group and Kind twice, whatever the versions: objects would be sent twice.

    >>> parse_statefulset_like_kinds(" apps.example.io/v1/ShardSet ,")
    (WorkloadKind(group='apps.example.io', version='v1', kind='ShardSet'),)
    """
    out: list[WorkloadKind] = []
    seen: dict[tuple[str, str], str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = [p.strip() for p in entry.split("/")]
        what = f"statefulset-like kind {entry!r}"
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(
                f"{what}: expected group/version/Kind, e.g. apps.example.io/v1/ShardSet"
            )
        group, version, kind = parts
        if not group:
            raise ValueError(f"{what}: the group is empty; core-group kinds are not allowed")
        if not _GROUP.fullmatch(group):
            raise ValueError(f"{what}: group {group!r} is not a lowercase DNS subdomain")
        if not _VERSION.fullmatch(version):
            raise ValueError(f"{what}: version {version!r} is not a lowercase DNS label like v1")
        if not _KIND.fullmatch(kind):
            raise ValueError(
                f"{what}: Kind {kind!r} must start with an uppercase letter "
                "and hold only letters, digits and '-'"
            )
        previous = seen.get((group, kind))
        if previous is not None:
            raise ValueError(f"{what}: {group}/{kind} is already listed as {previous!r}")
        seen[(group, kind)] = entry
        out.append(WorkloadKind(group=group, version=version, kind=kind))
    return tuple(out)
