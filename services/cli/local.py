"""The whole mesh on this machine: sandbox (or a real cluster), gateway, services.

    async with LocalMesh(workdir=Path(".run"), replicas=2) as mesh:
        mesh.kubeconfig            # the cluster the gateway talks to
        mesh.replicas["budget"]    # ["127.0.0.1:port", ...]
        mesh.api_target            # the rollout API for tools: "127.0.0.1:port" (gRPC)
        mesh.api_http_url          # and "http://127.0.0.1:port" (HTTP/JSON), gateway 0's

Every component is a separate process (see ``procs``). ``gateways`` > 1 runs several
gateways (one holds the Lease and runs the watch hub); ``discovery`` makes the gateways
find the service replicas from EndpointSlices, as in a cluster, instead of a static
list. ``statefulset_like`` (``group/version/Kind`` strings) sets
``KRUISE_MESH_STATEFULSET_LIKE_KINDS`` for the gateways and the placement replicas,
which then watch and accept those custom workload kinds. With ``kubeconfig`` set
the sandbox is not started and the gateway runs against that cluster in local
mode: it installs the CRDs, registers the webhook configurations with a ``url:``
pointing at itself, and removes them on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import orjson

from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli import procs
from services.kit import errors
from services.kit.config import (
    ROLLOUT_HANDOVER_ENV,
    ROLLOUT_UNFENCED_ENV,
    STATEFULSET_LIKE_KINDS_ENV,
    parse_statefulset_like_kinds,
)

SERVICES = ("placement", "rollout", "budget")
MESH_NAMESPACE = "kruise-mesh"
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

    def __post_init__(self) -> None:
        # A malformed kind fails here, not as a gateway that never becomes ready.
        parse_statefulset_like_kinds(",".join(self.statefulset_like))
        self.procs: dict[str, procs.Proc] = {}
        self.addresses: dict[str, list[str]] = {}
        self.sandbox_url: str | None = None
        self.sandbox_token: str | None = None
        self.gateway_grpc = ""
        self.gateway_ports: list[int] = []
        # Each gateway's rollout API ports for tools: (gRPC, HTTP/JSON).
        self.api_ports: list[tuple[int, int]] = []
        self.webhook_port = 0
        self.logs = self.workdir / "logs"
        self._external_kubeconfig = self.kubeconfig is not None

    def _kinds_env(self, component: str) -> dict[str, str] | None:
        """The environment of a component: the custom workload kinds for those that read
        them, the handover period (and the tests' unfenced switch) for rollout."""
        if component == "rollout":
            env = {ROLLOUT_HANDOVER_ENV: str(self.rollout_handover_s)}
            if self.rollout_unfenced:
                env[ROLLOUT_UNFENCED_ENV] = "1"
            return env
        if not self.statefulset_like or component not in ("gateway", "placement"):
            return None
        return {STATEFULSET_LIKE_KINDS_ENV: ",".join(self.statefulset_like)}

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
        if not self._external_kubeconfig:
            await self.start_sandbox()
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
        pending = [a for addresses in self.addresses.values() for a in addresses]
        while pending:
            pending = [a for a in pending if not await _synced(a)]
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
        """Gateway 0's rollout API as HTTP/JSON: ``http://127.0.0.1:port``."""
        return f"http://127.0.0.1:{self._api_ports(0)[1]}"

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
        args = ["--state-dir", str(state), "--crds", str(ROOT / "deploy" / "crds")]
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

    async def start_replica(self, service: str, index: int, port: int) -> procs.Proc:
        name = f"{service}-{index}"
        proc = await procs.start(
            name,
            f"services.{service}",
            [
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
        args = [
            "--kubeconfig",
            self.kubeconfig,
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
        ]
        if self.discovery:
            names = ",".join(f"{s}=kruise-mesh-{s}" for s in SERVICES)
            args += ["--service-names", names, "--namespace", MESH_NAMESPACE]
        else:
            services = ";".join(f"{s}={','.join(a)}" for s, a in self.addresses.items())
            args += ["--services", services]
        if index == 0:
            self.webhook_port = self.webhook_port or procs.free_port()
            args += [
                "--webhook-port",
                str(self.webhook_port),
                "--local-webhooks",
                f"https://{self.webhook_host}:{self.webhook_port}",
            ]
            if self._external_kubeconfig:
                args += ["--install-crds", str(ROOT / "deploy" / "crds")]
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
        return proc

    async def stop(self) -> None:
        # The gateway first, so it removes its webhook registrations while the API is up.
        gateways = [n for n in self.procs if n.startswith("gateway")]
        order = [*gateways, *(n for n in self.procs if n not in gateways and n != "sandbox")]
        order.append("sandbox")
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                with contextlib.suppress(Exception):
                    await proc.stop()


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


async def _synced(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        try:
            status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
    return bool(status.synced)
