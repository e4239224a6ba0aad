"""The gateway's configuration from flags, with environment fallbacks (shown in --help)."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from services.deploy_files import deploy_path
from services.gateway.callers import DEFAULT_AUDIENCES, Audiences, check_off_allowed
from services.gateway.routing import parse_service_names, parse_static_services
from services.kit.config import (
    STATEFULSET_LIKE_KINDS_ENV,
    WorkloadKind,
    parse_statefulset_like_kinds,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GatewayConfig:
    kubeconfig: str = ""
    host: str = "0.0.0.0"
    grpc_port: int = 7000
    webhook_port: int = 9443
    ops_port: int = 9090
    # The rollout API for tools (gRPC RolloutService, and HTTP/JSON); None: not served.
    # Off by default here so in-process gateways (tests) bind no fixed port; the command
    # line serves them on 7070 and 8080 unless told "off".
    api_port: int | None = None
    api_http_port: int | None = None
    # Callers of the API ports: "token" (TLS, TokenReview + SubjectAccessReview, services/
    # gateway/callers.py) or "off" (plain text, anyone: only when host is a loopback address).
    api_auth: Literal["token", "off"] = "token"
    # The tokens the API ports take: minted for these audiences (callers.Audiences; by
    # default kruise-mesh-rollout-api and the API server's own).
    api_audiences: Audiences = DEFAULT_AUDIENCES
    # How long a token's review and an access decision are reused (refusals: the shorter).
    api_auth_cache_ttl_s: float = 10.0
    api_auth_negative_ttl_s: float = 2.0
    namespace: str = "kruise-mesh"
    identity: str = ""
    static_services: dict[str, frozenset[str]] = field(default_factory=dict)
    service_names: dict[str, str] = field(default_factory=dict)
    cert_dir: str = "/etc/kruise-mesh/webhook-certs"
    cert_secret: str = "kruise-mesh-webhook-certs"
    # How often every replica looks at that Secret: renews the certificate past 2/3 of its
    # life, rotates the CA past 2/3 of its (services.gateway.certs), follows what others wrote.
    webhook_cert_check_s: float = 3600.0
    webhook_service: str = "kruise-mesh-webhook"
    local_webhooks: str = ""
    # CA file: webhook callers must present a client certificate it issued (the API server's,
    # configured through its AdmissionConfiguration); empty: no client certificate asked for.
    webhook_client_ca: str = ""
    webhook_manifests: str = str(deploy_path("webhooks.yaml"))
    install_crds: str = ""
    leader_election: bool = True
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    review_mode: Literal["stream", "unary"] = "stream"
    review_routing: Literal["owner", "random"] = "owner"
    watch_inactivity_s: float = 70.0
    # Custom StatefulSet-like kinds watched as workloads (services.gateway.statefulset_like).
    statefulset_like: tuple[WorkloadKind, ...] = ()
    # How often a configured kind that cannot be watched yet is looked up again.
    statefulset_like_recheck_s: float = 30.0
    log_level: str = "INFO"
    json_logs: bool = True
    # Mesh mutual TLS: the gateway's certificate from a directory (tls.crt, tls.key, ca.crt:
    # cert-manager's layout), or issued by the gateway itself from the mesh CA in
    # mesh_ca_dir (ca.crt, ca.key). Neither: plain TCP (loopback only).
    mesh_tls_dir: str = ""
    mesh_ca_dir: str = ""
    # In a cluster: the mesh CA in this Secret of the gateway's namespace (made on first
    # start); the gateway issues itself and every service a mesh certificate from it, the
    # services' into Secrets kruise-mesh-<service>-tls (services.gateway.mesh_certs).
    mesh_ca_secret: str = ""


def port_or_off(text: str) -> int | None:
    """A listen port: 0 to 65535 (0 picks a free one), or "off" (None: not served)."""
    if text.strip().lower() == "off":
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535) or 'off'")
    return port


def parse_gateway_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="python -m services.gateway",
        description="kruise-mesh gateway: the mesh's only Kubernetes client",
    )

    def add(flag: str, var: str, default: str, text: str, **kw: object) -> None:
        p.add_argument(flag, default=env.get(var, default), help=f"{text} [{var}]", **kw)  # type: ignore[arg-type]

    add(
        "--kubeconfig", "KRUISE_MESH_KUBECONFIG", "", "kubeconfig file; empty for in-cluster config"
    )
    add("--host", "KRUISE_MESH_LISTEN_HOST", "0.0.0.0", "listen address")
    add("--grpc-port", "KRUISE_MESH_GRPC_PORT", "7000", "ClusterService gRPC port", type=int)
    add("--webhook-port", "KRUISE_MESH_WEBHOOK_PORT", "9443", "HTTPS webhook port", type=int)
    add("--ops-port", "KRUISE_MESH_OPS_PORT", "9090", "/metrics /healthz /readyz port", type=int)
    add(
        "--mesh-tls-dir",
        "KRUISE_MESH_TLS_DIR",
        "",
        "the gateway's mesh certificate: tls.crt, tls.key, ca.crt (cert-manager's layout), "
        "re-read when it changes",
    )
    add(
        "--mesh-ca-secret",
        "KRUISE_MESH_CA_SECRET",
        "",
        "in a cluster: the mesh CA's Secret in --namespace (made on first start; it also "
        "holds the gateways' own mesh certificate, which every gateway reads back); each "
        "service's certificate is kept in Secret kruise-mesh-<service>-tls, and the CA is "
        "rotated before it expires",
    )
    add(
        "--mesh-ca-dir",
        "KRUISE_MESH_CA_DIR",
        "",
        "the mesh CA (ca.crt, ca.key): the gateway issues its own mesh certificate from it "
        "and renews it at half its lifetime; with neither this nor --mesh-tls-dir the mesh "
        "runs on plain TCP (loopback only)",
    )
    add(
        "--api-port",
        "KRUISE_MESH_API_PORT",
        "7070",
        "rollout API for tools: RolloutService gRPC port (0 picks a free port; off: none)",
        type=port_or_off,
    )
    add(
        "--api-http-port",
        "KRUISE_MESH_API_HTTP_PORT",
        "8080",
        "rollout API for tools: HTTP/JSON port (0 picks a free port; off: none)",
        type=port_or_off,
    )
    add(
        "--api-auth",
        "KRUISE_MESH_API_AUTH",
        "token",
        "callers of the API ports: token (TLS with the serving certificate; each caller's "
        "bearer token checked by TokenReview, each call by SubjectAccessReview) or off (plain "
        "text, no checks: refused unless --host is a loopback address)",
        choices=["token", "off"],
    )
    add(
        "--api-audiences",
        "KRUISE_MESH_API_AUDIENCES",
        str(DEFAULT_AUDIENCES),
        "with --api-auth token: the audiences callers' tokens must be minted for "
        "(comma-separated; kubectl create token SA --audience AUDIENCE, or a projected token); "
        "@api-server also takes tokens for the API server's own audiences (what a person's "
        "kubeconfig holds; such a token sent here also works against the API server: drop "
        "@api-server where only tools call)",
    )
    add(
        "--api-auth-cache-ttl",
        "KRUISE_MESH_API_AUTH_CACHE_TTL",
        "10",
        "seconds a token review and an access decision are reused (0: review every call)",
        type=float,
    )
    add(
        "--api-auth-negative-ttl",
        "KRUISE_MESH_API_AUTH_NEGATIVE_TTL",
        "2",
        "seconds a refused token or a denied access is reused (at most --api-auth-cache-ttl)",
        type=float,
    )
    add(
        "--namespace",
        "KRUISE_MESH_NAMESPACE",
        "kruise-mesh",
        "the mesh's namespace (Lease, Secret)",
    )
    add("--identity", "POD_NAME", "", "leader-election identity; default host-pid")
    add(
        "--services",
        "KRUISE_MESH_SERVICE_ADDRESSES",
        "",
        "static replicas: 'placement=h:p,h:p;rollout=h:p;budget=h:p'",
    )
    add(
        "--service-names",
        "KRUISE_MESH_SERVICES",
        "",
        "discover replicas from these Services' EndpointSlices: 'budget=kruise-mesh-budget,...'",
    )
    add(
        "--cert-dir",
        "KRUISE_MESH_WEBHOOK_CERT_DIR",
        "/etc/kruise-mesh/webhook-certs",
        "tls.crt, tls.key, ca.crt",
    )
    add(
        "--cert-secret",
        "KRUISE_MESH_WEBHOOK_CERT_SECRET",
        "kruise-mesh-webhook-certs",
        "Secret shared by replicas",
    )
    add(
        "--local-webhooks",
        "KRUISE_MESH_LOCAL_WEBHOOKS",
        "",
        "local mode: register webhooks calling this base URL",
    )
    add(
        "--webhook-client-ca",
        "KRUISE_MESH_WEBHOOK_CLIENT_CA",
        "",
        "require webhook callers to present a client certificate issued by this CA (PEM file; "
        "the API server's, from its AdmissionConfiguration kubeconfig); empty: not required",
    )
    add(
        "--webhook-manifests",
        "KRUISE_MESH_WEBHOOK_MANIFESTS",
        str(deploy_path("webhooks.yaml")),
        "webhook YAML for local mode",
    )
    add(
        "--install-crds",
        "KRUISE_MESH_INSTALL_CRDS",
        "",
        "install the CRDs in this directory at start",
    )
    add(
        "--review-mode",
        "KRUISE_MESH_REVIEW_MODE",
        "stream",
        "admission hop: stream or unary",
        choices=["stream", "unary"],
    )
    add(
        "--statefulset-like-kinds",
        STATEFULSET_LIKE_KINDS_ENV,
        "",
        "custom workload kinds with /scale to watch for PersistentPodState: "
        "'apps.example.io/v1/ShardSet,...'",
    )
    add(
        "--review-routing",
        "KRUISE_MESH_REVIEW_ROUTING",
        "owner",
        "owner: each review goes to the replica owning its namespace; random: a budget "
        "review to any budget replica (a test switch proving its decisions do not depend "
        "on routing; other services keep owner routing)",
        choices=["owner", "random"],
    )
    add("--log-level", "KRUISE_MESH_LOG_LEVEL", "INFO", "log level")
    p.add_argument(
        "--no-leader-election", action="store_true", help="run the watch hub unconditionally"
    )
    p.add_argument("--watch-inactivity", type=float, default=70.0, help="watch watchdog seconds")
    p.add_argument(
        "--statefulset-like-recheck",
        type=float,
        default=30.0,
        help="seconds between look-ups of a configured statefulset-like kind not watched yet "
        "(its CRD not installed, or without /scale)",
    )
    p.add_argument(
        "--webhook-cert-check",
        type=float,
        default=float(env.get("KRUISE_MESH_WEBHOOK_CERT_CHECK_S", "3600")),
        help="seconds between looks at the webhook certificate Secret: renewal, CA rotation "
        "(each step waits three of these), following another replica's write "
        "[KRUISE_MESH_WEBHOOK_CERT_CHECK_S]",
    )
    p.add_argument("--lease-seconds", type=float, default=15.0, help="leader lease duration")
    p.add_argument("--renew-seconds", type=float, default=5.0, help="leader lease renew period")
    p.add_argument("--plain-logs", action="store_true", help="human-readable logs")
    a = p.parse_args(argv)
    if a.api_auth_cache_ttl < 0 or a.api_auth_negative_ttl < 0:
        p.error("--api-auth-cache-ttl and --api-auth-negative-ttl must not be negative")
    try:
        api_audiences = Audiences.parse(a.api_audiences)
    except ValueError as e:
        p.error(f"--api-audiences: {e}")
    try:
        check_off_allowed(
            a.host, api_auth=a.api_auth, serving=(a.api_port, a.api_http_port) != (None, None)
        )
    except ValueError as e:
        p.error(str(e))
    try:
        static = parse_static_services(a.services) if a.services else {}
        names = parse_service_names(a.service_names) if a.service_names else {}
    except ValueError as e:
        p.error(str(e))
    try:
        statefulset_like = parse_statefulset_like_kinds(a.statefulset_like_kinds)
    except ValueError as e:
        p.error(f"--statefulset-like-kinds: {e}")
    if not static and not names:
        p.error("name the service replicas: --services (static) or --service-names (discovery)")
    if not 0 < a.renew_seconds < a.lease_seconds:
        p.error("--renew-seconds must be positive and shorter than --lease-seconds")
    if a.webhook_client_ca and not Path(a.webhook_client_ca).is_file():
        p.error(f"--webhook-client-ca {a.webhook_client_ca}: no such file")
    if not a.webhook_cert_check > 0:
        p.error("--webhook-cert-check must be a positive number of seconds")
    if not a.statefulset_like_recheck > 0:
        p.error("--statefulset-like-recheck must be a positive number of seconds")
    return GatewayConfig(
        kubeconfig=a.kubeconfig,
        host=a.host,
        grpc_port=a.grpc_port,
        webhook_port=a.webhook_port,
        ops_port=a.ops_port,
        api_port=a.api_port,
        api_http_port=a.api_http_port,
        api_auth=a.api_auth,
        api_audiences=api_audiences,
        api_auth_cache_ttl_s=a.api_auth_cache_ttl,
        api_auth_negative_ttl_s=a.api_auth_negative_ttl,
        namespace=a.namespace,
        identity=a.identity or f"{socket.gethostname()}-{os.getpid()}",
        static_services=static,
        service_names=names,
        cert_dir=a.cert_dir,
        cert_secret=a.cert_secret,
        webhook_cert_check_s=a.webhook_cert_check,
        local_webhooks=a.local_webhooks,
        webhook_client_ca=a.webhook_client_ca,
        webhook_manifests=a.webhook_manifests,
        install_crds=a.install_crds,
        leader_election=not a.no_leader_election,
        lease_seconds=a.lease_seconds,
        renew_seconds=a.renew_seconds,
        review_mode=a.review_mode,
        review_routing=a.review_routing,
        watch_inactivity_s=a.watch_inactivity,
        statefulset_like=statefulset_like,
        statefulset_like_recheck_s=a.statefulset_like_recheck,
        log_level=a.log_level,
        json_logs=not a.plain_logs,
        mesh_tls_dir=a.mesh_tls_dir,
        mesh_ca_dir=a.mesh_ca_dir,
        mesh_ca_secret=a.mesh_ca_secret,
    )
