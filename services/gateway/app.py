"""The gateway process: composition of its parts, and nothing else.

    gateway = await start_gateway(config)      # tests; __main__ adds signals
    ...
    await gateway.stop()

Every replica serves the webhooks, the cluster API and the routed BudgetService
(``budget_route``: workload controllers ask the budget replica owning a namespace through
the gateway, over the admission forwarder's channels), and keeps the service rings
(static addresses, or EndpointSlices in a cluster). On a port of its own, apart from the
mesh's, it serves the API for tools: ``RolloutService`` over gRPC (``rollout_route``) and as
HTTP/JSON (``rollout_http``), both routed to the rollout replica owning the namespace, and
BudgetService's reads; over TLS, each caller authenticated by its own Kubernetes token and
each call authorized by a SubjectAccessReview (``api_port``, ``callers``). One replica
at a time, the holder of the Lease ``kruise-mesh-gateway``, runs the watch hub and the Sync
streams, so the mesh opens one watch per kind however many gateways run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from prometheus_client import Gauge

from services.gateway import api_port, budget_route, certs, mesh_certs, register, rollout_route
from services.gateway.cluster_api import SERVICE_NAME as CLUSTER_SERVICE
from services.gateway.cluster_api import ClusterApi, add_to_server
from services.gateway.config import GatewayConfig
from services.gateway.discovery import EndpointSliceDiscovery
from services.gateway.hub import WATCHED, Hub, ReflectorConfig
from services.gateway.kube.client import KubeClient
from services.gateway.leader import LeaderElector
from services.gateway.mesh_certs import MeshCertIssuer
from services.gateway.rollout_http import RolloutHttpServer, start_rollout_http
from services.gateway.routing import Router
from services.gateway.statefulset_like import resolve_statefulset_like
from services.gateway.sync import SyncManager
from services.gateway.webhook.forward import AdmissionForwarder
from services.gateway.webhook.server import WebhookServer, start_webhook_server
from services.kit import errors
from services.kit.certs import CertPair
from services.kit.config import WorkloadKind
from services.kit.httpserver import OpsServer, start_ops_server
from services.kit.rpc import Server, create_server
from services.kit.tasks import stop_task
from services.kit.tls import CaSource, FileSource, MeshTls, Policy, Source

log = logging.getLogger(__name__)

LEADER = Gauge(
    "kruise_mesh_gateway_leader", "1 while this gateway holds the Lease and runs the watch hub"
)

LEASE_NAME = "kruise-mesh-gateway"
WEBHOOK_CONFIGS = {
    "MutatingWebhookConfiguration": "kruise-mesh-mutating",
    "ValidatingWebhookConfiguration": "kruise-mesh-validating",
}


@dataclass
class Leading:
    """What runs only on the lease holder: the hub and the replica streams."""

    kube: KubeClient
    router: Router
    config: GatewayConfig
    tls: MeshTls | None = None
    # Keeps the mesh CA rotated and every component's mesh certificate in its Secret (with
    # --mesh-ca-secret).
    issuer: MeshCertIssuer | None = None
    hub: Hub | None = None
    sync: SyncManager | None = None
    _recheck: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Looked up at every start, so a new lease holder sees CRDs installed since.
        reported: dict[WorkloadKind, str] = {}
        configured = self.config.statefulset_like
        custom = await resolve_statefulset_like(self.kube, configured, reported=reported)
        self.hub = Hub(
            self.kube,
            kinds=(*WATCHED, *custom),
            config=ReflectorConfig(read_timeout=self.config.watch_inactivity_s),
        )
        await self.hub.start()
        if self.issuer is not None:
            await self.issuer.start()
        self.sync = SyncManager(self.hub, self.router, tls=self.tls)
        await self.sync.start()
        if reported:
            self._recheck = asyncio.create_task(
                self._watch_when_usable(self.hub, reported), name="statefulset-like recheck"
            )
        LEADER.set(1)
        log.info("watch hub and replica streams started")

    async def _watch_when_usable(self, hub: Hub, reported: dict[WorkloadKind, str]) -> None:
        """Look the configured kinds not watched yet up again until every one is watched."""
        while reported:
            await asyncio.sleep(self.config.statefulset_like_recheck_s)
            try:
                found = await resolve_statefulset_like(self.kube, list(reported), reported=reported)
            except Exception:  # never the end of the look-ups: the next round may do better
                log.exception("looking up the statefulset-like kinds failed; trying again")
                continue
            for spec in found:
                hub.add(spec)

    async def stop(self) -> None:
        LEADER.set(0)
        if self.issuer is not None:
            await self.issuer.stop()
        await stop_task(self._recheck)
        self._recheck = None
        if self.sync is not None:
            await self.sync.stop()
            self.sync = None
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None


@dataclass
class Gateway:
    config: GatewayConfig
    kube: KubeClient
    router: Router
    grpc: Server
    ops: OpsServer
    webhook: WebhookServer
    forwarder: AdmissionForwarder
    leading: Leading
    discovery: EndpointSliceDiscovery | None = None
    # The rollout API for tools (None when configured off).
    api: Server | None = None
    api_http: RolloutHttpServer | None = None
    api_security: api_port.ApiSecurity | None = None
    elector: LeaderElector | None = None
    registered: list[str] = field(default_factory=list)
    tls: MeshTls | None = None
    # Renews the webhook certificate and rotates its CA (in a cluster; every replica).
    webhook_certs: certs.WebhookCerts | None = None
    _election: asyncio.Task[None] | None = None

    @property
    def webhook_port(self) -> int:
        return self.webhook.port

    @property
    def api_port(self) -> int | None:
        """The rollout API's gRPC port; None when it is not served."""
        return self.api.port if self.api is not None else None

    @property
    def api_http_port(self) -> int | None:
        """The rollout API's HTTP/JSON port; None when it is not served."""
        return self.api_http.port if self.api_http is not None else None

    async def stop(self) -> None:
        if self.registered:
            # First, so the API server stops calling a webhook that is going away.
            try:
                await register.unregister_webhooks(self.kube, self.registered)
            except Exception:  # the stop goes on; say what is left behind
                log.exception(
                    "could not remove the local webhook configurations; delete them by hand",
                    extra={"names": self.registered},
                )
            else:
                log.info("removed local webhook configurations", extra={"names": self.registered})
        if self.elector is not None:
            await self.elector.stop()
        if self._election is not None:
            await self._election
        await self.leading.stop()
        if self.webhook_certs is not None:
            await self.webhook_certs.stop()
        await self.webhook.stop()
        if self.api_http is not None:
            await self.api_http.stop()
        if self.api is not None:
            # Watches relayed to rollout replicas end here; tools resume on another gateway.
            await self.api.stop(grace=1)
        if self.api_security is not None:
            await self.api_security.close()
        if self.discovery is not None:
            await self.discovery.stop()
        await self.grpc.stop(grace=3)
        # After the gRPC servers: routed calls use the forwarder's links.
        await self.forwarder.close()
        await self.ops.stop()
        await self.kube.close()
        if self.tls is not None:
            await self.tls.stop()


async def _ensure_namespace(kube: KubeClient, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"control-plane": "kruise-mesh"}},
    }
    with contextlib.suppress(errors.AlreadyExists):
        await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))


def _serving_hosts(config: GatewayConfig) -> list[str]:
    hosts = certs.webhook_hosts(service=config.webhook_service, namespace=config.namespace)
    local_host = urlsplit(config.local_webhooks).hostname if config.local_webhooks else None
    if local_host and local_host not in hosts:
        hosts.append(local_host)
    hosts += [h for h in api_port.api_hosts(config.namespace) if h not in hosts]
    return hosts


def _in_cluster_certs(config: GatewayConfig) -> bool:
    """Whether the webhook certificate lives in the Secret (and is renewed there)."""
    return not (config.local_webhooks or config.kubeconfig)


async def _serving_cert(kube: KubeClient, config: GatewayConfig) -> certs.ServingCert:
    hosts = _serving_hosts(config)
    if config.local_webhooks or config.kubeconfig:
        return certs.local_serving_cert(Path(config.cert_dir), hosts=hosts)
    work = Path(tempfile.mkdtemp(prefix="webhook-certs-"))
    served = await certs.cluster_serving_cert(
        kube,
        cert_dir=Path(config.cert_dir),
        work_dir=work,
        namespace=config.namespace,
        secret_name=config.cert_secret,
        hosts=hosts,
    )
    await certs.publish_ca_bundle(kube, ca_pem=served.ca_pem, names=WEBHOOK_CONFIGS)
    return served


async def start_gateway(config: GatewayConfig) -> Gateway:
    kube = await KubeClient.connect(kubeconfig=config.kubeconfig or None)
    try:
        return await _start(kube, config)
    except BaseException:
        await kube.close()
        raise


# Who may call the gateway's mesh port: the services' cluster writes, and the CloneSet
# controller's budget question (it spends budget: nobody else).
MESH_POLICY: Policy = {
    CLUSTER_SERVICE: frozenset({"placement", "rollout", "budget"}),
    budget_route.SERVICE_NAME: frozenset({"rollout"}),
}


async def mesh_tls(config: GatewayConfig, *, source: Source | None = None) -> MeshTls | None:
    """The gateway's mesh certificate (started): from ``source`` (in a cluster, the CA
    Secret, ``mesh_certs.SecretSource``), its directory or its CA; None, with a warning, when
    the mesh runs on plain TCP."""
    if source is not None:
        tls = MeshTls("gateway", source)
    elif config.mesh_tls_dir:
        tls = MeshTls("gateway", FileSource(Path(config.mesh_tls_dir)))
    elif config.mesh_ca_dir:
        ca_dir = Path(config.mesh_ca_dir)
        ca = CertPair((ca_dir / "ca.crt").read_bytes(), (ca_dir / "ca.key").read_bytes())
        tls = MeshTls("gateway", CaSource(ca, "gateway"))
    else:
        log.warning(
            "mesh TLS is off: the gateway's mesh port takes calls from anyone who reaches it "
            "(set --mesh-tls-dir or --mesh-ca-dir; plain TCP is for loopback only)"
        )
        return None
    await tls.start()
    return tls


async def _start(kube: KubeClient, config: GatewayConfig) -> Gateway:
    if config.install_crds:
        installed = await register.install_crds(kube, Path(config.install_crds))
        log.info("installed CRDs", extra={"crds": installed})
    if config.local_webhooks:
        await _ensure_namespace(kube, config.namespace)

    api_port.check_config(config)
    router = Router(config.static_services)
    discovery = None
    if config.service_names:
        discovery = EndpointSliceDiscovery(
            kube, router, namespace=config.namespace, services=config.service_names
        )
        await discovery.start()

    issuer = None
    if config.mesh_ca_secret:
        await mesh_certs.ensure_ca(kube, namespace=config.namespace, name=config.mesh_ca_secret)
        issuer = mesh_certs.MeshCertIssuer(
            kube, namespace=config.namespace, ca_secret=config.mesh_ca_secret
        )
        # Every gateway, leader or not: what is missing is made before anything waits on it.
        await issuer.prepare()
    tls = await mesh_tls(config, source=issuer.gateway_source() if issuer else None)
    route = router.owner if config.review_routing == "owner" else router.any_member
    forwarder = AdmissionForwarder(route=route, mode=config.review_mode, tls=tls)
    # With mesh TLS every caller proves its component; without it (loopback only) the
    # services' permissions are checked as one union (services.gateway.permissions).
    cluster_api = ClusterApi(
        kube,
        owner=router.owner,
        require_identity=tls is not None,
        mesh_namespace=config.namespace,
    )
    budgets = budget_route.BudgetRoute(router=router, links=forwarder)
    server = await create_server(
        register=[
            lambda s: add_to_server(s, cluster_api),
            lambda s: budget_route.add_to_server(s, budgets),
        ],
        service_names=[CLUSTER_SERVICE, budget_route.SERVICE_NAME],
        host=config.host,
        port=config.grpc_port,
        tls=tls,
        policy=MESH_POLICY,
    )
    served = await _serving_cert(kube, config)
    webhook = await start_webhook_server(
        host=config.host,
        port=config.webhook_port,
        cert_file=str(served.cert_file),
        key_file=str(served.key_file),
        forwarder=forwarder,
        client_ca_file=config.webhook_client_ca or None,
    )
    leading = Leading(kube=kube, router=router, config=config, tls=tls, issuer=issuer)

    def ready() -> bool:
        # Serving webhooks needs a replica to send each review to; leadership does not matter.
        expected = set(config.static_services) | set(config.service_names)
        return all(router.ring(s).members for s in expected)

    ops = await start_ops_server(
        host=config.host, port=config.ops_port, ready=ready, component="gateway"
    )
    rollouts = rollout_route.RolloutRoute(router=router, links=forwarder)
    # Tools' ports: TLS and each caller's token and rights checked (api_port, callers).
    security = api_port.api_security(kube, config, served)
    api = None
    if config.api_port is not None:
        api = await api_port.create_api_server(
            register=[
                lambda s: rollout_route.add_to_server(s, rollouts),
                lambda s: api_port.add_budget_reads(s, budgets),
            ],
            service_names=[rollout_route.SERVICE_NAME, budget_route.SERVICE_NAME],
            host=config.host,
            port=config.api_port,
            security=security,
        )
    api_http = None
    if config.api_http_port is not None:
        api_http = await start_rollout_http(
            route=rollouts,
            host=config.host,
            port=config.api_http_port,
            ssl_context=security.ssl_context,
            middlewares=security.middlewares,
        )
    webhook_certs = None
    if _in_cluster_certs(config):

        def reload(renewed: certs.ServingCert) -> None:
            # The API port's gRPC credentials re-read the files themselves.
            cert_file, key_file = str(renewed.cert_file), str(renewed.key_file)
            webhook.reload_certs(cert_file=cert_file, key_file=key_file)
            if security.ssl_context is not None:
                security.ssl_context.load_cert_chain(cert_file, key_file)

        webhook_certs = certs.WebhookCerts(
            kube,
            namespace=config.namespace,
            secret_name=config.cert_secret,
            hosts=_serving_hosts(config),
            work_dir=served.cert_file.parent,
            configurations=WEBHOOK_CONFIGS,
            on_change=reload,
            served=served,
            check_s=config.webhook_cert_check_s,
        )
        await webhook_certs.start()
    gateway = Gateway(
        config=config,
        kube=kube,
        router=router,
        grpc=server,
        ops=ops,
        webhook=webhook,
        forwarder=forwarder,
        leading=leading,
        discovery=discovery,
        api=api,
        api_http=api_http,
        api_security=security,
        tls=tls,
        webhook_certs=webhook_certs,
    )
    if config.leader_election:
        await _ensure_lease_namespace(kube, config.namespace)
        gateway.elector = LeaderElector(
            kube,
            namespace=config.namespace,
            name=LEASE_NAME,
            identity=config.identity,
            lease_seconds=config.lease_seconds,
            renew_seconds=config.renew_seconds,
        )
        gateway._election = asyncio.create_task(
            gateway.elector.run(leading.start, leading.stop), name="leader election"
        )
    else:
        await leading.start()
    if config.local_webhooks:
        manifests = Path(config.webhook_manifests)
        gateway.registered = await register.register_webhooks(
            kube, manifests=manifests, base_url=config.local_webhooks, ca_pem=served.ca_pem
        )
        log.info("registered local webhook configurations", extra={"names": gateway.registered})
    return gateway


async def _ensure_lease_namespace(kube: KubeClient, namespace: str) -> None:
    with contextlib.suppress(errors.Forbidden):
        await _ensure_namespace(kube, namespace)
