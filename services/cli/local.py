"""The whole mesh on this machine: sandbox (or a real cluster), gateway, services.

    async with LocalMesh(workdir=Path(".run"), replicas=2) as mesh:
        mesh.kubeconfig            # the cluster the gateway talks to
        mesh.replicas["budget"]    # ["127.0.0.1:port", ...]
        mesh.api_target            # the rollout API for tools: "127.0.0.1:port" (gRPC)
        mesh.api_http_url          # and "https://127.0.0.1:port" (HTTP/JSON), gateway 0's
        mesh.api_channel()         # a gRPC channel to it with mesh.api_token (TLS: api_ca_file)

Every component is a separate process (see ``procs``). ``gateways`` > 1 runs several
gateways (one holds the Lease and runs the watch hub); ``discovery`` makes the gateways
find the service replicas from EndpointSlices, as in a cluster, instead of a static
list. ``statefulset_like`` (``group/version/Kind`` strings) sets
``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` for the gateways and the placement replicas,
which then watch and accept those custom workload kinds. With ``kubeconfig`` set
the sandbox is not started and the gateway runs against that cluster in local
mode: it installs the CRDs, registers the webhook configurations with a ``url:``
pointing at itself, and removes them on exit. Against the sandbox, the gateways require the
sandbox's webhook client certificate (``--webhook-client-ca``, as a cluster whose API server
presents one can be set up); ``webhook_ssl_context()`` is a client context that presents it,
for callers posting reviews themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import orjson
import yaml

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli import credentials, procs
from services.deploy_files import deploy_path
from services.gateway.certs import local_serving_cert
from services.gateway.kube.client import KubeClient
from services.gateway.register import (
    load_documents,
    register_webhooks,
    unregister_webhooks,
    yaml_files,
)
from services.kit import certs, errors
from services.kit.config import (
    ROLLOUT_HANDOVER_ENV,
    ROLLOUT_UNFENCED_ENV,
    STATEFULSET_LIKE_KINDS_ENV,
    parse_statefulset_like_kinds,
)
from services.kit.rpc import mesh_channel
from services.kit.tls import CaSource, MeshTls, write_material

SERVICES = ("placement", "rollout", "budget")
MESH_NAMESPACE = "kruise-mesh"
GATEWAY_ACCOUNT = "kruise-mesh-gateway"
# The tools' caller (``api_token``): a ServiceAccount allowed what the rollout API's calls need
# (services.gateway.callers.RULES), with a token minted for the rollout API's audience.
API_CALLER_ACCOUNT = "kruise-mesh-rollout-tool"
API_CALLER_RULES = [
    {
        "apiGroups": ["apps.kruise.io"],
        "resources": ["clonesets"],
        "verbs": ["get", "watch", "patch"],
    },
    {"apiGroups": ["policy.kruise.io"], "resources": ["podunavailablebudgets"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalMesh:
    workdir: Path
    replicas: dict[str, int] | int = 1
    kubeconfig: str | None = None
    world: bool = True
    review_mode: str = "stream"
    # The address the API server calls the webhooks at: 127.0.0.1 for the sandbox; for a
    # real cluster, an address of this machine that the cluster's API server can reach.
    webhook_host: str = "127.0.0.1"
    gateways: int = 1
    discovery: bool = False
    lease_seconds: float = 15.0
    gateway_args: list[str] = field(default_factory=list)
    sandbox_args: list[str] = field(default_factory=list)
    statefulset_like: Sequence[str] = ()
    # How long a rollout replica that gained a namespace waits before touching its pods.
    rollout_handover_s: float = 1.0
    # Tests only: rollout's writes without the fence, to see what the guards prevent
    # (KRUISE_MESH_ROLLOUT_UNFENCED, services/rollout/__main__.py). Never in a deployment.
    rollout_unfenced: bool = False
    # Mutual TLS on every mesh connection: a mesh CA in the workdir; the gateway issues its
    # own certificate from it, each replica reads one written for it (``tls_dir``). Off:
    # plain TCP (benchmarks comparing the two; loopback only).
    mesh_tls: bool = True
    # Lifetime of the certificates written for the replicas (rotation tests shorten it).
    mesh_cert_validity: datetime.timedelta = datetime.timedelta(hours=24)
    # Tests: KRUISE_MESH_TLS_POLL_S, KRUISE_MESH_CERT_VALIDITY_S for every component.
    mesh_tls_env: dict[str, str] = field(default_factory=dict)
    # On the embedded sandbox, which enforces RBAC: run the gateways as the ServiceAccount
    # kruise-mesh-gateway with exactly deploy/rbac.yaml's permissions (as in a cluster, where
    # they are all it has), and register the webhook configurations as the administrator
    # (kubectl apply does that in a cluster). Off: the gateways run as the sandbox's
    # administrator and register the webhooks themselves, as in local mode.
    gateway_rbac: bool = True
    # More RBAC objects an operator applies beside deploy/rbac.yaml, e.g. a ClusterRole
    # aggregated into kruise-mesh-gateway-workloads for a custom StatefulSet-like kind.
    gateway_roles: Sequence[dict[str, Any]] = ()
    # The gateways' API ports: "token" (TLS; callers' tokens reviewed: ``api_token``,
    # ``api_ca_file``, ``api_channel()``) or "off" (plain text on loopback, anyone).
    api_auth: str = "token"
    # Against the sandbox: webhook callers must present the sandbox's client certificate
    # (gateway --webhook-client-ca); off, anyone reaching the port can post reviews.
    webhook_client_auth: bool = True

    def __post_init__(self) -> None:
        # A malformed kind fails here, not as a gateway that never becomes ready.
        parse_statefulset_like_kinds(",".join(self.statefulset_like))
        self.procs: dict[str, procs.Proc] = {}
        self.addresses: dict[str, list[str]] = {}
        self.sandbox_url: str | None = None
        self.sandbox_token: str | None = None
        # A token of API_CALLER_ACCOUNT for the rollout API's audience (``api_token``).
        self.caller_token: str | None = None
        self.gateway_grpc = ""
        self.gateway_ports: list[int] = []
        # Each gateway's rollout API ports for tools: (gRPC, HTTP/JSON).
        self.api_ports: list[tuple[int, int]] = []
        self.webhook_port = 0
        # The sandbox's webhook client certificate: keys ca, cert, key (empty: none).
        self.webhook_client: dict[str, str] = {}
        self.logs = self.workdir / "logs"
        self._external_kubeconfig = self.kubeconfig is not None
        self.mesh_ca: certs.CertPair | None = None
        self.operator_tls: MeshTls | None = None
        # The gateways' kubeconfig (their ServiceAccount's token, with gateway_rbac).
        self.gateway_kubeconfig: str | None = None
        self.registered: list[str] = []

    def _kinds_env(self, component: str) -> dict[str, str] | None:
        """The environment of a component: the custom workload kinds for those that read
        them, the handover period (and the tests' unfenced switch) for rollout, and the
        tests' certificate timings (``mesh_tls_env``)."""
        env = dict(self.mesh_tls_env) if self.mesh_tls else {}
        if component == "rollout":
            env[ROLLOUT_HANDOVER_ENV] = str(self.rollout_handover_s)
            if self.rollout_unfenced:
                env[ROLLOUT_UNFENCED_ENV] = "1"
        if self.statefulset_like and component in ("gateway", "placement"):
            env[STATEFULSET_LIKE_KINDS_ENV] = ",".join(self.statefulset_like)
        return env or None

    def count(self, service: str) -> int:
        return self.replicas if isinstance(self.replicas, int) else self.replicas.get(service, 1)

    async def __aenter__(self) -> LocalMesh:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.mesh_tls:
            await self._make_mesh_ca()
        if not self._external_kubeconfig:
            await self.start_sandbox()
            if self.gateway_rbac:
                await self._grant_gateway()
        if self.api_auth == "token":
            await self._mint_caller_token()
        self.gateway_ports = [procs.free_port() for _ in range(self.gateways)]
        for index in range(self.gateways):
            self._api_ports(index)
        self.gateway_grpc = f"127.0.0.1:{self.gateway_ports[0]}"
        starts = []
        for service in SERVICES:
            ports = [procs.free_port() for _ in range(self.count(service))]
            self.addresses[service] = [f"127.0.0.1:{p}" for p in ports]
            for index, port in enumerate(ports):
                starts.append(self.start_replica(service, index, port))
        await asyncio.gather(*starts)
        if self.discovery:
            for service in SERVICES:
                await self.publish_endpoints(service)
        for index in range(self.gateways):
            await self.start_gateway(self.gateway_ports[index], index=index)
        await self.wait_synced()

    async def wait_synced(self, *, timeout: float = 30.0) -> None:
        """Until every replica has its snapshot (it decides nothing before)."""
        deadline = asyncio.get_running_loop().time() + timeout
        pending = [(s, a) for s, addresses in self.addresses.items() for a in addresses]
        while pending:
            pending = [(s, a) for s, a in pending if not await self._synced(s, a)]
            if not pending:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise procs.StartError(f"replicas without a snapshot after {timeout}s: {pending}")
            await asyncio.sleep(0.1)

    def _api_ports(self, index: int) -> tuple[int, int]:
        """Gateway ``index``'s rollout API ports, picked once (a restart keeps them)."""
        while len(self.api_ports) <= index:
            self.api_ports.append((procs.free_port(), procs.free_port()))
        return self.api_ports[index]

    @property
    def api_target(self) -> str:
        """Gateway 0's rollout API (gRPC RolloutService) for tools: ``127.0.0.1:port``."""
        return f"127.0.0.1:{self._api_ports(0)[0]}"

    @property
    def api_http_url(self) -> str:
        """Gateway 0's rollout API as HTTP/JSON: ``https://127.0.0.1:port`` (``http://``
        with ``api_auth`` off)."""
        scheme = "https" if self.api_auth == "token" else "http"
        return f"{scheme}://127.0.0.1:{self._api_ports(0)[1]}"

    @property
    def api_token(self) -> str | None:
        """A token tools can call the API ports with: ServiceAccount ``API_CALLER_ACCOUNT``'s,
        minted for the rollout API's audience (the gateways take no other by default), allowed
        what the rollout API's calls need; else the kubeconfig user's (None without)."""
        if self.caller_token:
            return self.caller_token
        found = credentials.kubeconfig_token(self.kubeconfig)
        return found.value if found is not None else None

    @property
    def api_ca_file(self) -> str:
        """The CA of the gateways' serving certificate (the API ports' TLS)."""
        return str(self.workdir / "gateway-certs" / "ca.crt")

    def api_credentials(self, token: str | None = None) -> credentials.ApiCredentials:
        """How tools call the API ports: ``token`` (default ``api_token``) over TLS, or plain
        text when ``api_auth`` is off."""
        if self.api_auth != "token":
            return credentials.ApiCredentials(plaintext=True)
        token = token or self.api_token
        return credentials.ApiCredentials(
            token=credentials.Token(token, "LocalMesh") if token else None,
            ca_file=self.api_ca_file,
        )

    def api_channel(self, token: str | None = None, *, index: int = 0) -> grpc.aio.Channel:
        """A channel to gateway ``index``'s API port carrying ``token`` (default
        ``api_token``) on every call."""
        target = f"127.0.0.1:{self._api_ports(index)[0]}"
        return self.api_credentials(token).channel(target)

    @property
    def gateway_target(self) -> str:
        """Every gateway's gRPC address, for the services' round-robin channel."""
        return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in self.gateway_ports)

    async def publish_endpoints(self, service: str) -> None:
        """One EndpointSlice per replica of ``service``, as the endpoint controller would."""
        from services.gateway.kube.client import KubeClient  # the CLI's own API access

        assert self.kubeconfig is not None
        kube = await KubeClient.connect(kubeconfig=self.kubeconfig)
        try:
            await _ensure(kube, "/api/v1/namespaces", _namespace(MESH_NAMESPACE))
            base = f"/apis/discovery.k8s.io/v1/namespaces/{MESH_NAMESPACE}/endpointslices"
            for index, address in enumerate(self.addresses[service]):
                host, port = address.rsplit(":", 1)
                name = f"kruise-mesh-{service}-{index}"
                body = _endpoint_slice(name=name, service=service, host=host, port=int(port))
                with contextlib.suppress(errors.NotFound):
                    await kube.request("DELETE", f"{base}/{name}")
                await kube.request("POST", base, body=orjson.dumps(body))
        finally:
            await kube.close()

    async def add_replica(self, service: str) -> str:
        """Start one more replica of ``service``; with discovery, publish its endpoint."""
        index = len(self.addresses[service])
        port = procs.free_port()
        self.addresses[service].append(f"127.0.0.1:{port}")
        await self.start_replica(service, index, port)
        if self.discovery:
            await self.publish_endpoints(service)
        return self.addresses[service][index]

    async def start_sandbox(self) -> None:
        state = self.workdir / "sandbox"
        args = ["--state-dir", str(state), "--crds", str(deploy_path("crds"))]
        if self.world:
            args.append("--world")
        args.append("--admission")
        proc = await procs.start(
            "sandbox", "sandbox", [*args, *self.sandbox_args], log_dir=self.logs
        )
        self.procs["sandbox"] = proc
        self.kubeconfig = str(proc.ready["kubeconfig"])
        self.sandbox_url = str(proc.ready["url"])
        self.sandbox_token = proc.ready.get("token")
        fields = {"ca": "webhookClientCA", "cert": "webhookClientCert", "key": "webhookClientKey"}
        self.webhook_client = {k: str(proc.ready[f]) for k, f in fields.items() if f in proc.ready}

    @property
    def webhook_client_ca(self) -> str | None:
        """The CA the gateways require webhook client certificates from; None: not required."""
        if self._external_kubeconfig or not self.webhook_client_auth:
            return None
        return self.webhook_client.get("ca")

    def webhook_ssl_context(self) -> ssl.SSLContext:
        """A client context for posting reviews to the gateways as the sandbox does: trusts
        the webhook serving CA and presents the sandbox's client certificate, if any."""
        context = ssl.create_default_context(cafile=str(self.workdir / "gateway-certs" / "ca.crt"))
        if "cert" in self.webhook_client:
            context.load_cert_chain(self.webhook_client["cert"], self.webhook_client["key"])
        return context

    # ---- the gateway's ServiceAccount -----------------------------------------------------------
    @property
    def _as_service_account(self) -> bool:
        return self.gateway_rbac and not self._external_kubeconfig

    async def _grant_gateway(self) -> None:
        """As the administrator: the mesh's namespace, deploy/rbac.yaml as it is (the
        ServiceAccount, its ClusterRole, Role and bindings), and a kubeconfig with a token
        of that ServiceAccount for the gateways."""
        assert self.kubeconfig is not None
        kube = await KubeClient.connect(kubeconfig=self.kubeconfig)
        try:
            await _ensure(kube, "/api/v1/namespaces", _namespace(MESH_NAMESPACE))
            documents = load_documents(yaml_files(deploy_path("rbac.yaml")))
            for doc in [*self.gateway_roles, *documents]:
                res = await kube.resolve(api_version=doc["apiVersion"], kind=doc["kind"])
                namespace = doc["metadata"].get("namespace")
                await _ensure(kube, kube.path(res, namespace=namespace), doc)
            answer = await kube.request_json(
                "POST",
                f"/api/v1/namespaces/{MESH_NAMESPACE}/serviceaccounts/{GATEWAY_ACCOUNT}/token",
                body=orjson.dumps(
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest",
                        "spec": {"expirationSeconds": 7 * 86400},
                    }
                ),
            )
        finally:
            await kube.close()
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        for user in config.get("users") or []:
            user["user"] = {"token": answer["status"]["token"]}
        path = self.workdir / "gateway.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        self.gateway_kubeconfig = str(path)

    async def _mint_caller_token(self) -> None:
        """As the administrator: ServiceAccount ``API_CALLER_ACCOUNT`` in the mesh's
        namespace, a ClusterRole of ``API_CALLER_RULES`` bound to it, and a token of it for
        the rollout API's audience (a TokenRequest, as ``kubectl create token --audience``)."""
        assert self.kubeconfig is not None
        kube = await KubeClient.connect(kubeconfig=self.kubeconfig)
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        try:
            await _ensure(kube, "/api/v1/namespaces", _namespace(MESH_NAMESPACE))
            account = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": API_CALLER_ACCOUNT, "namespace": MESH_NAMESPACE},
            }
            await _ensure(kube, f"/api/v1/namespaces/{MESH_NAMESPACE}/serviceaccounts", account)
            role = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": API_CALLER_ACCOUNT},
                "rules": API_CALLER_RULES,
            }
            await _ensure(kube, f"{rbac}/clusterroles", role)
            binding = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": API_CALLER_ACCOUNT},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": API_CALLER_ACCOUNT,
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": API_CALLER_ACCOUNT,
                        "namespace": MESH_NAMESPACE,
                    }
                ],
            }
            await _ensure(kube, f"{rbac}/clusterrolebindings", binding)
            answer = await kube.request_json(
                "POST",
                f"/api/v1/namespaces/{MESH_NAMESPACE}/serviceaccounts/{API_CALLER_ACCOUNT}/token",
                body=orjson.dumps(
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenRequest",
                        "spec": {
                            "audiences": [credentials.ROLLOUT_API_AUDIENCE],
                            "expirationSeconds": 7 * 86400,
                        },
                    }
                ),
            )
        finally:
            await kube.close()
        self.caller_token = str(answer["status"]["token"])

    async def _register_webhooks(self) -> None:
        """As the administrator, what ``kubectl apply -f deploy/webhooks.yaml`` does in a
        cluster: the webhook configurations, calling gateway 0 with its CA."""
        assert self.kubeconfig is not None
        served = local_serving_cert(self.workdir / "gateway-certs", hosts=[self.webhook_host])
        kube = await KubeClient.connect(kubeconfig=self.kubeconfig)
        try:
            self.registered = await register_webhooks(
                kube,
                manifests=deploy_path("webhooks.yaml"),
                base_url=f"https://{self.webhook_host}:{self.webhook_port}",
                ca_pem=served.ca_pem,
            )
        finally:
            await kube.close()

    async def _unregister_webhooks(self) -> None:
        if not self.registered or self.kubeconfig is None:
            return
        kube = await KubeClient.connect(kubeconfig=self.kubeconfig)
        try:
            await unregister_webhooks(kube, self.registered)
        finally:
            await kube.close()
        self.registered = []

    # ---- mesh TLS -----------------------------------------------------------------------------
    async def _make_mesh_ca(self) -> None:
        self.mesh_ca = certs.generate_ca(common_name="kruise-mesh local mesh CA")
        ca_dir = self.workdir / "mesh-ca"
        ca_dir.mkdir(parents=True, exist_ok=True)
        (ca_dir / "ca.crt").write_bytes(self.mesh_ca.cert_pem)
        key = ca_dir / "ca.key"
        key.write_bytes(self.mesh_ca.key_pem)
        key.chmod(0o600)
        self.operator_tls = MeshTls("operator", CaSource(self.mesh_ca, "operator"))
        await self.operator_tls.start()

    async def write_replica_cert(self, service: str, index: int) -> Path:
        """Issue replica ``service-index`` a fresh mesh certificate into its TLS directory
        (the replica re-reads it there, as it would a renewed cert-manager Secret)."""
        if self.mesh_ca is None:
            raise RuntimeError("this mesh runs without TLS (LocalMesh(mesh_tls=True))")
        directory = self.workdir / "tls" / f"{service}-{index}"
        source = CaSource(self.mesh_ca, service, validity=self.mesh_cert_validity)
        write_material(directory, await source.fetch())
        return directory

    def replica_channel(self, address: str, service: str = "") -> grpc.aio.Channel:
        """A channel to a replica as the mesh's tooling (``operator``, which may read a
        replica's state and read-only APIs): mutual TLS when the mesh has it."""
        if not service:
            service = next(s for s, found in self.addresses.items() if address in found)
        return mesh_channel(address, tls=self.operator_tls, peer=service)

    async def _synced(self, service: str, address: str) -> bool:
        async with self.replica_channel(address, service) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            try:
                status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=2)
            except grpc.aio.AioRpcError:
                return False
        return bool(status.synced)

    async def start_replica(self, service: str, index: int, port: int) -> procs.Proc:
        name = f"{service}-{index}"
        tls_args: list[str] = []
        if self.mesh_tls:
            tls_args = ["--tls-dir", str(await self.write_replica_cert(service, index))]
        proc = await procs.start(
            name,
            f"services.{service}",
            [
                *tls_args,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ops-port",
                "0",
                "--gateway",
                self.gateway_target,
                "--advertise",
                f"127.0.0.1:{port}",
            ],
            log_dir=self.logs,
            env=self._kinds_env(service),
        )
        self.procs[name] = proc
        return proc

    async def restart_replica(self, service: str, index: int, *, kill: bool = True) -> procs.Proc:
        name = f"{service}-{index}"
        old = self.procs[name]
        await (old.kill() if kill else old.stop())
        port = int(self.addresses[service][index].rsplit(":", 1)[1])
        return await self.start_replica(service, index, port)

    async def start_gateway(self, grpc_port: int, *, index: int = 0) -> procs.Proc:
        """Start gateway ``index``; only gateway 0 registers the local webhooks."""
        assert self.kubeconfig is not None
        name = "gateway" if index == 0 else f"gateway-{index}"
        api_port, api_http_port = self._api_ports(index)
        kubeconfig = self.gateway_kubeconfig if self._as_service_account else None
        args = [
            "--kubeconfig",
            kubeconfig or self.kubeconfig,
            "--host",
            "127.0.0.1" if self.webhook_host == "127.0.0.1" else "0.0.0.0",
            "--grpc-port",
            str(grpc_port),
            "--ops-port",
            "0",
            "--identity",
            name,
            "--cert-dir",
            str(self.workdir / "gateway-certs"),
            "--review-mode",
            self.review_mode,
            "--lease-seconds",
            str(self.lease_seconds),
            "--renew-seconds",
            str(max(0.2, self.lease_seconds / 3)),
            "--api-port",
            str(api_port),
            "--api-http-port",
            str(api_http_port),
            "--api-auth",
            self.api_auth,
        ]
        if self.mesh_tls:
            args += ["--mesh-ca-dir", str(self.workdir / "mesh-ca")]
        if self.webhook_client_ca:
            args += ["--webhook-client-ca", self.webhook_client_ca]
        if self.discovery:
            names = ",".join(f"{s}=kruise-mesh-{s}" for s in SERVICES)
            args += ["--service-names", names, "--namespace", MESH_NAMESPACE]
        else:
            services = ";".join(f"{s}={','.join(a)}" for s, a in self.addresses.items())
            args += ["--services", services]
        if index == 0:
            self.webhook_port = self.webhook_port or procs.free_port()
            args += ["--webhook-port", str(self.webhook_port)]
            if not self._as_service_account:
                args += ["--local-webhooks", f"https://{self.webhook_host}:{self.webhook_port}"]
            if self._external_kubeconfig:
                args += ["--install-crds", str(deploy_path("crds"))]
        else:
            args += ["--webhook-port", str(procs.free_port())]
        proc = await procs.start(
            name,
            "services.gateway",
            [*args, *self.gateway_args],
            log_dir=self.logs,
            env=self._kinds_env("gateway"),
            timeout=60,
        )
        self.procs[name] = proc
        if index == 0 and self._as_service_account and not self.registered:
            await self._register_webhooks()
        return proc

    async def stop(self) -> None:
        # The webhooks first, so the API server stops calling a gateway that is going away.
        with contextlib.suppress(Exception):
            await self._unregister_webhooks()
        # The gateway first, so it removes its webhook registrations while the API is up.
        gateways = [n for n in self.procs if n.startswith("gateway")]
        order = [*gateways, *(n for n in self.procs if n not in gateways and n != "sandbox")]
        order.append("sandbox")
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                with contextlib.suppress(Exception):
                    await proc.stop()
        if self.operator_tls is not None:
            await self.operator_tls.stop()


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"control-plane": "kruise-mesh"}},
    }


def _endpoint_slice(*, name: str, service: str, host: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": MESH_NAMESPACE,
            "labels": {"kubernetes.io/service-name": f"kruise-mesh-{service}"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
        "ports": [{"name": "grpc", "port": port, "protocol": "TCP"}],
    }


async def _ensure(kube: Any, path: str, body: dict[str, Any]) -> None:
    with contextlib.suppress(errors.AlreadyExists):
        await kube.request("POST", path, body=orjson.dumps(body))
