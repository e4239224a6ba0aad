"""The gateway's routed BudgetService: each call to the budget replica owning its namespace.

Two small grpc.aio BudgetServices stand in for budget replicas (they are the peers, not the
thing under test): they record every request and answer with their own address, or with
the status code a test gives them. The caller is the rollout service's ``BudgetClient``,
so its mapping of the gateway's answers onto the error tree is checked on the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from sandbox.app import Sandbox
from services.cli.procs import free_port
from services.gateway import budget_route
from services.gateway.app import start_gateway
from services.gateway.config import GatewayConfig
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder
from services.kit import errors
from services.kit.rpc import Server, create_server
from services.rollout.budget_client import Authorization, BudgetClient

REQUESTER = "rollout CloneSet web"


# ---- the stand-in budget replicas -------------------------------------------------------------
@dataclass
class FakeReplica(budget_pb2_grpc.BudgetServiceServicer):
    """A budget replica that records what it got; ``fail`` makes it answer with that code."""

    address: str = ""
    got: list[Any] = field(default_factory=list)
    fail: tuple[grpc.StatusCode, str] | None = None

    async def _answer(self, request: Any, context: Any) -> None:
        self.got.append(request)
        if self.fail is not None:
            await context.abort(*self.fail)

    async def AuthorizePodUpdate(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        refused = request.pod.startswith("refused-")
        return budget_pb2.AuthorizePodUpdateResponse(
            allowed=not refused,
            budget="pub-test",
            message="cannot update pod: PodUnavailableBudget pub-test ..." if refused else "",
            replica=self.address,
        )

    async def GetBudget(self, request: Any, context: Any) -> Any:
        await self._answer(request, context)
        answer = budget_pb2.GetBudgetResponse()
        answer.budget.meta.namespace = request.namespace
        answer.budget.meta.name = request.name
        answer.budget.meta.annotations["served-by"] = self.address
        return answer


async def start_replica(replica: FakeReplica) -> Server:
    server = await create_server(
        register=[lambda s: budget_pb2_grpc.add_BudgetServiceServicer_to_server(replica, s)],
        service_names=[budget_route.SERVICE_NAME],
    )
    replica.address = f"127.0.0.1:{server.port}"
    return server


@dataclass
class Mesh:
    replicas: list[FakeReplica]
    router: Router
    forwarder: AdmissionForwarder
    gateway: Server
    client: BudgetClient

    def owned_by(self, replica: FakeReplica) -> str:
        """A namespace the replica owns on the budget ring."""
        ring = self.router.ring("budget")
        return next(f"ns-{i}" for i in range(1000) if ring.owner(f"ns-{i}") == replica.address)

    def stub(self) -> Any:
        return budget_pb2_grpc.BudgetServiceStub(self.client.channel)


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    """The gateway's BudgetService over two budget replicas (its gRPC server, no kube)."""
    replicas = [FakeReplica(), FakeReplica()]
    servers = [await start_replica(r) for r in replicas]
    router = Router({"budget": [r.address for r in replicas]})
    forwarder = AdmissionForwarder(route=router.owner)
    route = budget_route.BudgetRoute(router=router, links=forwarder)
    gateway = await create_server(
        register=[lambda s: budget_route.add_to_server(s, route)],
        service_names=[budget_route.SERVICE_NAME],
    )
    client = BudgetClient.connect(f"127.0.0.1:{gateway.port}", timeout=2.0)
    try:
        yield Mesh(replicas, router, forwarder, gateway, client)
    finally:
        await client.close()
        await gateway.stop(grace=None)
        await forwarder.close()
        for server in servers:
            await server.stop(grace=None)


async def ask(client: BudgetClient, namespace: str, pod: str) -> Authorization:
    return await client.authorize_update(
        namespace=namespace, pod=pod, pod_uid=f"uid-{pod}", requester=REQUESTER
    )


# ---- routing ---------------------------------------------------------------------------------
async def test_each_ask_goes_to_the_replica_owning_its_namespace(mesh: Mesh):
    a, b = mesh.replicas
    ns_a, ns_b = mesh.owned_by(a), mesh.owned_by(b)

    answers = [
        await ask(mesh.client, ns_a, "web-0"),
        await ask(mesh.client, ns_b, "web-1"),
        await ask(mesh.client, ns_a, "refused-web-2"),
    ]

    assert answers == [
        Authorization(allowed=True, budget="pub-test"),
        Authorization(allowed=True, budget="pub-test"),
        Authorization(
            allowed=False,
            budget="pub-test",
            message="cannot update pod: PodUnavailableBudget pub-test ...",
        ),
    ]
    assert [(r.namespace, r.pod, r.pod_uid, r.requester) for r in a.got] == [
        (ns_a, "web-0", "uid-web-0", REQUESTER),
        (ns_a, "refused-web-2", "uid-refused-web-2", REQUESTER),
    ]
    assert [(r.namespace, r.pod) for r in b.got] == [(ns_b, "web-1")]


async def test_the_answer_is_the_owners_unchanged(mesh: Mesh):
    a, _ = mesh.replicas
    request = budget_pb2.AuthorizePodUpdateRequest(
        namespace=mesh.owned_by(a), pod="web-0", pod_uid="u", requester=REQUESTER
    )
    answer = await mesh.stub().AuthorizePodUpdate(request)
    assert answer.replica == a.address
    assert a.got == [request]


async def test_get_budget_is_routed_by_namespace_too(mesh: Mesh):
    _, b = mesh.replicas
    ns_b = mesh.owned_by(b)
    answer = await mesh.stub().GetBudget(budget_pb2.GetBudgetRequest(namespace=ns_b, name="x"))
    assert answer.budget.meta.annotations["served-by"] == b.address
    assert [(r.namespace, r.name) for r in b.got] == [(ns_b, "x")]


async def test_plan_disruption_is_routed_too(mesh: Mesh):
    # Fanned out to every owner and merged: tests/gateway/test_rollout_route.py.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mesh.stub().PlanDisruption(budget_pb2.PlanDisruptionRequest())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_ring_change_moves_the_namespace_to_its_new_owner(mesh: Mesh):
    a, b = mesh.replicas
    ns_a = mesh.owned_by(a)
    mesh.router.set_members("budget", [b.address])
    assert (await ask(mesh.client, ns_a, "web-0")).allowed
    assert (len(a.got), len(b.got)) == (0, 1)


# ---- failures --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error"),
    [
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition, id="uid"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, errors.Invalid, id="bad arguments"),
        pytest.param(grpc.StatusCode.NOT_FOUND, errors.NotFound, id="no such pod"),
    ],
)
async def test_the_replicas_errors_pass_through(mesh: Mesh, code, error):
    a, _ = mesh.replicas
    a.fail = (code, "as the replica said it")
    with pytest.raises(error) as raised:
        await ask(mesh.client, mesh.owned_by(a), "web-0")
    assert str(raised.value) == "as the replica said it"


async def test_no_budget_replica_is_unavailable(mesh: Mesh):
    mesh.router.set_members("budget", [])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mesh.stub().AuthorizePodUpdate(
            budget_pb2.AuthorizePodUpdateRequest(namespace="team-a", pod="web-0")
        )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "no budget replica is available for namespace team-a"
    # the rollout client turns it into the error the controller fails closed on
    with pytest.raises(errors.Unavailable, match="no budget replica is available"):
        await ask(mesh.client, "team-a", "web-0")


async def test_a_replica_that_cannot_be_reached_is_unavailable_naming_it(mesh: Mesh):
    dead = f"127.0.0.1:{free_port()}"
    mesh.router.set_members("budget", [dead])
    with pytest.raises(errors.Unavailable) as raised:
        await ask(mesh.client, "team-a", "web-0")
    assert str(raised.value).startswith(f"budget replica {dead} (namespace team-a): ")


# ---- the gateway as deployed -----------------------------------------------------------------
async def test_the_gateway_serves_the_routed_budget_service(sandbox: Sandbox, tmp_path: Path):
    replica = FakeReplica()
    server = await start_replica(replica)
    config = GatewayConfig(
        kubeconfig=str(sandbox.kubeconfig_path),
        host="127.0.0.1",
        grpc_port=0,
        webhook_port=0,
        ops_port=0,
        static_services={"budget": frozenset({replica.address})},
        cert_dir=str(tmp_path / "certs"),
        leader_election=False,
        json_logs=False,
    )
    gateway = await start_gateway(config)
    client = BudgetClient.connect(f"127.0.0.1:{gateway.grpc.port}", timeout=2.0)
    try:
        assert (await ask(client, "team-a", "web-0")).allowed
        assert [(r.namespace, r.pod) for r in replica.got] == [("team-a", "web-0")]

        health = health_pb2_grpc.HealthStub(client.channel)
        status = await health.Check(
            health_pb2.HealthCheckRequest(service=budget_route.SERVICE_NAME)
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        call = reflect.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await call.read()
        await call.done_writing()
        names = {s.name for s in listed.list_services_response.service}
        assert {budget_route.SERVICE_NAME, "kruise.cluster.v1.ClusterService"} <= names
    finally:
        await client.close()
        await gateway.stop()
        await server.stop(grace=None)
