"""The gateway's routed RolloutService (and BudgetService.PlanDisruption's fan-out): each call to
the replica owning its namespace, over real gRPC.

The replicas are small scripted grpc.aio servers (``rollout_replica``; budget ones below):
they are the far end of the relay, not the thing under test.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.rollout.v1 import rollout_pb2
from sandbox.app import Sandbox
from services.cli.credentials import ApiCredentials, Token
from services.cli.procs import free_port
from services.gateway import budget_route, relay, rollout_route
from services.gateway.app import start_gateway
from services.gateway.callers import Audiences
from services.gateway.config import GatewayConfig, parse_gateway_config
from services.gateway.routing import Router
from services.gateway.webhook.forward import AdmissionForwarder
from services.kit.rpc import Server, create_server
from tests.gateway.rollout_replica import (
    Failure,
    FakeRollout,
    RolloutMesh,
    ref,
    rich_status,
    start_fake,
)

NOW = budget_pb2.PLAN_VERDICT_NOW
WAIT = budget_pb2.PLAN_VERDICT_WAIT
NOT_OWNED = budget_pb2.PLAN_VERDICT_NOT_OWNED


@pytest.fixture
async def mesh() -> AsyncIterator[RolloutMesh]:
    async with RolloutMesh.start() as started:
        yield started


UNARY = [
    pytest.param(
        "GetRolloutStatus",
        lambda r: rollout_pb2.GetRolloutStatusRequest(ref=r, min_resource_version="40"),
        id="GetRolloutStatus",
    ),
    pytest.param(
        "SetPartition",
        lambda r: rollout_pb2.SetPartitionRequest(
            ref=r,
            partition=rollout_pb2.IntOrPercent(percent="50%"),
            expected_update_revision="web-2",
            rollout_id="r1",
        ),
        id="SetPartition",
    ),
    pytest.param(
        "CheckBatch",
        lambda r: rollout_pb2.CheckBatchRequest(
            ref=r, batch=rollout_pb2.IntOrPercent(percent="20%"), require_available=True
        ),
        id="CheckBatch",
    ),
    pytest.param(
        "Release", lambda r: rollout_pb2.ReleaseRequest(ref=r, promote=True), id="Release"
    ),
]


def calls(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "kruise_mesh_gateway_rollout_route_calls_total", {"method": method, "code": code}
    )
    return value or 0.0


# ---- routing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "build"), UNARY)
async def test_each_call_goes_to_the_replica_owning_its_namespace(mesh: RolloutMesh, method, build):
    a, b = mesh.replicas
    ns_a, ns_b = mesh.owned_by(a), mesh.owned_by(b)
    before = calls(method, "OK")

    answer_a = await getattr(mesh.stub, method)(build(ref(ns_a)))
    answer_b = await getattr(mesh.stub, method)(build(ref(ns_b)))

    assert answer_a.status.summary == f"served by {a.address}"
    assert answer_b.status.summary == f"served by {b.address}"
    # the requests arrive unchanged
    assert a.got == [(method, build(ref(ns_a)))]
    assert b.got == [(method, build(ref(ns_b)))]
    assert calls(method, "OK") == before + 2


async def test_the_callers_deadline_is_passed_on(mesh: RolloutMesh):
    a, _ = mesh.replicas
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref(mesh.owned_by(a)))
    await mesh.stub.GetRolloutStatus(request, timeout=3.0)
    await mesh.stub.GetRolloutStatus(request)
    with_deadline, without = a.deadlines
    # (deadlines travel with a little rounding)
    assert with_deadline is not None and 2.0 < with_deadline < 3.5
    assert without is not None and 5.0 < without < relay.DEFAULT_TIMEOUT_S + 0.5


async def test_a_ring_change_moves_the_namespace_to_its_new_owner(mesh: RolloutMesh):
    a, b = mesh.replicas
    ns_a = mesh.owned_by(a)
    mesh.router.set_members("rollout", [b.address])
    answer = await mesh.stub.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref(ns_a)))
    assert answer.status.summary == f"served by {b.address}"
    assert (len(a.got), len(b.got)) == (0, 1)


# ---- errors pass through ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(grpc.StatusCode.NOT_FOUND, "WORKLOAD_NOT_FOUND", id="gone"),
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", id="bad percent"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, "UPDATE_REVISION_CHANGED", id="stale"),
        pytest.param(grpc.StatusCode.ABORTED, "RESOURCE_VERSION_CHANGED", id="lost CAS"),
        # the replica's own UNAVAILABLE carries its details: unchanged, not re-worded
        pytest.param(grpc.StatusCode.UNAVAILABLE, "NOT_SYNCED", id="not synced"),
    ],
)
async def test_rich_error_details_arrive_intact(mesh: RolloutMesh, code, reason):
    a, _ = mesh.replicas
    sent = rich_status(code, "as the replica said it", reason=reason, field="partition")
    a.fail = Failure(code, "as the replica said it", rich=sent)

    call = mesh.stub.SetPartition(rollout_pb2.SetPartitionRequest(ref=ref(mesh.owned_by(a))))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call

    assert raised.value.code() == code
    assert raised.value.details() == "as the replica said it"
    received = await rpc_status.aio.from_call(call)
    assert received == sent
    info = error_details_pb2.ErrorInfo()
    assert received.details[0].Unpack(info) and info.reason == reason


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL],
)
async def test_plain_errors_pass_through_unchanged(mesh: RolloutMesh, code):
    a, _ = mesh.replicas
    a.fail = Failure(code, "plainly")
    call = mesh.stub.CheckBatch(rollout_pb2.CheckBatchRequest(ref=ref(mesh.owned_by(a))))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert (raised.value.code(), raised.value.details()) == (code, "plainly")
    assert await rpc_status.aio.from_call(call) is None


# ---- the gateway's own answers ---------------------------------------------------------------
ALL_METHODS = [
    pytest.param("GetRolloutStatus", rollout_pb2.GetRolloutStatusRequest, id="GetRolloutStatus"),
    pytest.param("SetPartition", rollout_pb2.SetPartitionRequest, id="SetPartition"),
    pytest.param("CheckBatch", rollout_pb2.CheckBatchRequest, id="CheckBatch"),
    pytest.param("Release", rollout_pb2.ReleaseRequest, id="Release"),
    pytest.param(
        "WatchRolloutStatus", rollout_pb2.WatchRolloutStatusRequest, id="WatchRolloutStatus"
    ),
]


async def _fail_of(mesh: RolloutMesh, method: str, request: Any) -> tuple[Any, Any]:
    call = getattr(mesh.stub, method)(request)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if method == "WatchRolloutStatus":
            async for _ in call:
                pass
        else:
            await call
    return raised.value, call


@pytest.mark.parametrize(("method", "message"), ALL_METHODS)
async def test_a_missing_namespace_is_invalid_argument_naming_it(
    mesh: RolloutMesh, method, message
):
    error, call = await _fail_of(mesh, method, message(ref=rollout_pb2.WorkloadRef(name="web")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "ref.namespace is required"
    details = await rpc_status.aio.from_call(call)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert details.details[0].Unpack(info) and details.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("INVALID_REQUEST", "rollout.kruise-mesh.io")
    assert [v.field for v in bad.field_violations] == ["ref.namespace"]
    assert all(not r.got for r in mesh.replicas)


@pytest.mark.parametrize(("method", "message"), ALL_METHODS)
async def test_no_rollout_replica_is_unavailable_naming_the_namespace(
    mesh: RolloutMesh, method, message
):
    mesh.router.set_members("rollout", [])
    error, _ = await _fail_of(mesh, method, message(ref=ref("team-a")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "no rollout replica is available for namespace team-a"


@pytest.mark.parametrize(("method", "message"), ALL_METHODS)
async def test_a_replica_that_cannot_be_reached_is_unavailable_naming_it(
    mesh: RolloutMesh, method, message
):
    dead = f"127.0.0.1:{free_port()}"
    mesh.router.set_members("rollout", [dead])
    error, _ = await _fail_of(mesh, method, message(ref=ref("team-a")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith(f"rollout replica {dead} (namespace team-a): ")


async def test_a_slow_replica_is_deadline_exceeded_naming_it(mesh: RolloutMesh):
    a, _ = mesh.replicas
    a.delay = 5.0
    ns = mesh.owned_by(a)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await mesh.stub.GetRolloutStatus(
            rollout_pb2.GetRolloutStatusRequest(ref=ref(ns)), timeout=0.3
        )
    # the caller's own deadline fires first: what it sees is its DEADLINE_EXCEEDED
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


# ---- the watch -------------------------------------------------------------------------------
def event(kind: int, version: str, name: str = "web") -> rollout_pb2.WatchRolloutStatusResponse:
    status = rollout_pb2.RolloutStatus(ref=ref("x", name), resource_version=version)
    return rollout_pb2.WatchRolloutStatusResponse(type=kind, status=status, version=version)


WATCH_EVENTS = [
    event(rollout_pb2.WatchRolloutStatusResponse.TYPE_ADDED, "1"),
    event(rollout_pb2.WatchRolloutStatusResponse.TYPE_ADDED, "2", name="api"),
    rollout_pb2.WatchRolloutStatusResponse(
        type=rollout_pb2.WatchRolloutStatusResponse.TYPE_BOOKMARK,
        version="2",
        initial_events_end=True,
    ),
    event(rollout_pb2.WatchRolloutStatusResponse.TYPE_MODIFIED, "3"),
]


async def test_a_watch_relays_every_message_then_the_replicas_error(mesh: RolloutMesh):
    _, b = mesh.replicas
    ns = mesh.owned_by(b)
    b.events = WATCH_EVENTS
    expired = rich_status(
        grpc.StatusCode.ABORTED,
        "resume version 1 is too old: watch again without a version",
        reason="RESOURCE_VERSION_EXPIRED",
        field="resume_version",
    )
    b.watch_end = Failure(grpc.StatusCode.ABORTED, expired.message, rich=expired)
    request = rollout_pb2.WatchRolloutStatusRequest(ref=ref(ns), resume_version="1")
    before = calls("WatchRolloutStatus", "ABORTED")

    call = mesh.stub.WatchRolloutStatus(request)
    seen = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for message in call:
            seen.append(message)

    assert seen == WATCH_EVENTS
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert raised.value.details() == expired.message
    assert await rpc_status.aio.from_call(call) == expired
    assert b.got == [("WatchRolloutStatus", request)]
    assert calls("WatchRolloutStatus", "ABORTED") == before + 1


async def test_a_watch_that_ends_cleanly_ends_cleanly(mesh: RolloutMesh):
    a, _ = mesh.replicas
    a.events = WATCH_EVENTS[:2]
    call = mesh.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(ref=ref(mesh.owned_by(a)))
    )
    assert [m async for m in call] == WATCH_EVENTS[:2]
    assert await call.code() == grpc.StatusCode.OK


async def test_a_watch_has_no_deadline_unless_the_caller_set_one(mesh: RolloutMesh):
    a, _ = mesh.replicas
    request = rollout_pb2.WatchRolloutStatusRequest(ref=ref(mesh.owned_by(a)))
    assert [m async for m in mesh.stub.WatchRolloutStatus(request)] == []
    assert [m async for m in mesh.stub.WatchRolloutStatus(request, timeout=30)] == []
    without, with_deadline = a.deadlines
    assert without is None
    assert with_deadline is not None and 25 < with_deadline < 31


async def test_a_caller_that_goes_away_cancels_the_replicas_watch(mesh: RolloutMesh):
    a, _ = mesh.replicas
    a.events = WATCH_EVENTS[:1]
    a.watch_forever = True
    call = mesh.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(ref=ref(mesh.owned_by(a)))
    )
    assert await call.read() == WATCH_EVENTS[0]
    call.cancel()
    await asyncio.wait_for(a.watch_gone.wait(), timeout=5)


async def test_a_replica_that_stops_mid_watch_ends_it_unavailable(mesh: RolloutMesh):
    a, _ = mesh.replicas
    a.events = WATCH_EVENTS[:1]
    a.watch_forever = True
    call = mesh.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(ref=ref(mesh.owned_by(a)))
    )
    assert await call.read() == WATCH_EVENTS[0]
    await mesh.servers[0].stop(grace=None)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert a.address in (raised.value.details() or "")


# ---- the gateway as deployed -----------------------------------------------------------------
def _config(sandbox: Sandbox, tmp_path: Path, services: dict[str, frozenset[str]], **kw: Any):
    return GatewayConfig(
        kubeconfig=str(sandbox.kubeconfig_path),
        host="127.0.0.1",
        grpc_port=0,
        webhook_port=0,
        ops_port=0,
        static_services=services,
        cert_dir=str(tmp_path / "certs"),
        leader_election=False,
        json_logs=False,
        **kw,
    )


async def _service_names(channel: grpc.aio.Channel) -> set[str]:
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflect.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.done_writing()
    return {s.name for s in listed.list_services_response.service}


async def test_the_gateway_serves_the_rollout_api_on_its_own_ports(sandbox: Sandbox, tmp_path):
    replica = FakeRollout()
    server = await start_fake(replica)
    config = _config(
        sandbox,
        tmp_path,
        {"rollout": frozenset({replica.address})},
        api_port=0,
        api_http_port=0,
        # the sandbox admin's static token is for the API server's audience only
        api_audiences=Audiences.parse("@api-server"),
    )
    gateway = await start_gateway(config)
    # as deployed: TLS with the serving certificate, and a caller's token (the sandbox admin)
    ca_file = str(tmp_path / "certs" / "ca.crt")
    creds = ApiCredentials(token=Token(sandbox.token, "test"), ca_file=ca_file)
    channel = creds.channel(f"127.0.0.1:{gateway.api_port}")
    try:
        assert gateway.api_port not in (None, gateway.grpc.port)
        stub = rollout_route.rollout_pb2_grpc.RolloutServiceStub(channel)
        answer = await stub.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref("team-a")))
        assert answer.status.summary == f"served by {replica.address}"

        health = health_pb2_grpc.HealthStub(channel)
        status = await health.Check(
            health_pb2.HealthCheckRequest(service=rollout_route.SERVICE_NAME)
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        names = await _service_names(channel)
        assert rollout_route.SERVICE_NAME in names
        # tools' port, not the mesh's: no cluster writes, no budget spending there (the
        # budget's reads only)
        assert "kruise.cluster.v1.ClusterService" not in names
        assert budget_route.SERVICE_NAME in names
        budgets = budget_pb2_grpc.BudgetServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await budgets.AuthorizePodUpdate(budget_pb2.AuthorizePodUpdateRequest(namespace="a"))
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

        url = f"https://127.0.0.1:{gateway.api_http_port}"
        context = ssl.create_default_context(cafile=ca_file)
        headers = {"Authorization": f"Bearer {sandbox.token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz", ssl=context) as response:
                assert response.status == 200
            path = "/apis/rollout.kruise-mesh.io/v1/namespaces/team-a/clonesets/web"
            async with http.get(url + path, ssl=context, headers=headers) as response:
                assert response.status == 200
                body = await response.json()
        assert body["status"]["summary"] == f"served by {replica.address}"
    finally:
        await channel.close()
        await gateway.stop()
        await server.stop(grace=None)


async def test_the_rollout_api_can_be_off(sandbox: Sandbox, tmp_path):
    gateway = await start_gateway(_config(sandbox, tmp_path, {"rollout": frozenset()}))
    try:
        assert (gateway.api_port, gateway.api_http_port) == (None, None)
    finally:
        await gateway.stop()


# ---- BudgetService.PlanDisruption through the gateway ----------------------------------------
@dataclass
class FakePlanner(budget_pb2_grpc.BudgetServiceServicer):
    """A budget replica that plans every pod NOW (free, numbered from 1 in its request's
    order), "wait-*" pods WAIT, and pods of ``not_mine`` namespaces NOT_OWNED naming
    ``owner``; ``fail`` answers with that status instead."""

    address: str = ""
    got: list[list[tuple[str, str]]] = field(default_factory=list)
    not_mine: dict[str, str] = field(default_factory=dict)
    fail: tuple[grpc.StatusCode, str] | None = None
    fill_replica: bool = True

    async def PlanDisruption(self, request: Any, context: Any) -> Any:
        self.got.append([(p.namespace, p.name) for p in request.pods])
        if self.fail is not None:
            await context.abort(*self.fail)
        entries, order = [], 0
        for pod in request.pods:
            entry = budget_pb2.DisruptionEntry(namespace=pod.namespace, pod=pod.name)
            if self.fill_replica:
                entry.replica = self.address
            if pod.namespace in self.not_mine:
                entry.verdict, entry.owner = NOT_OWNED, self.not_mine[pod.namespace]
            elif pod.name.startswith("wait-"):
                entry.verdict, entry.reason = WAIT, "budget pub-a allows no more"
            else:
                order += 1
                entry.verdict, entry.order = NOW, order
            entries.append(entry)
        return budget_pb2.PlanDisruptionResponse(
            entries=entries, replica=self.address if self.fill_replica else ""
        )


@dataclass
class BudgetMesh:
    replicas: list[FakePlanner]
    router: Router
    stub: Any

    def owned_by(self, replica: FakePlanner, skip: int = 0) -> str:
        ring = self.router.ring("budget")
        owned = [f"ns-{i}" for i in range(1000) if ring.owner(f"ns-{i}") == replica.address]
        return owned[skip]


@pytest.fixture
async def budgets() -> AsyncIterator[BudgetMesh]:
    replicas = [FakePlanner(), FakePlanner()]
    servers: list[Server] = []
    for replica in replicas:
        server = await create_server(
            register=[
                lambda s, r=replica: budget_pb2_grpc.add_BudgetServiceServicer_to_server(r, s)
            ],
            service_names=[budget_route.SERVICE_NAME],
        )
        replica.address = f"127.0.0.1:{server.port}"
        servers.append(server)
    router = Router({"budget": [r.address for r in replicas]})
    forwarder = AdmissionForwarder(route=router.owner)
    route = budget_route.BudgetRoute(router=router, links=forwarder)
    gateway = await create_server(
        register=[lambda s: budget_route.add_to_server(s, route)],
        service_names=[budget_route.SERVICE_NAME],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    try:
        yield BudgetMesh(replicas, router, budget_pb2_grpc.BudgetServiceStub(channel))
    finally:
        await channel.close()
        await gateway.stop(grace=None)
        await forwarder.close()
        for server in servers:
            await server.stop(grace=None)


def plan(*pods: tuple[str, str]) -> budget_pb2.PlanDisruptionRequest:
    return budget_pb2.PlanDisruptionRequest(
        pods=[budget_pb2.PodRef(namespace=ns, name=name) for ns, name in pods]
    )


async def test_plan_disruption_asks_each_owner_and_merges_in_request_order(budgets: BudgetMesh):
    a, b = budgets.replicas
    ns_a, ns_b, ns_a2 = budgets.owned_by(a), budgets.owned_by(b), budgets.owned_by(a, 1)
    request = plan(
        (ns_b, "web-0"), (ns_a, "web-1"), (ns_a2, "wait-2"), (ns_b, "web-3"), (ns_a, "web-4")
    )

    answer = await budgets.stub.PlanDisruption(request)

    got = [(e.namespace, e.pod, e.verdict, e.order, e.replica) for e in answer.entries]
    assert got == [
        (ns_b, "web-0", NOW, 1, b.address),
        (ns_a, "web-1", NOW, 1, a.address),
        (ns_a2, "wait-2", WAIT, 0, a.address),
        (ns_b, "web-3", NOW, 2, b.address),
        (ns_a, "web-4", NOW, 2, a.address),
    ]
    # each replica asked once, for its own pods, in request order
    assert a.got == [[(ns_a, "web-1"), (ns_a2, "wait-2"), (ns_a, "web-4")]]
    assert b.got == [[(ns_b, "web-0"), (ns_b, "web-3")]]
    assert answer.replica == "", "several replicas answered: each entry names its own"


async def test_one_owner_answers_alone(budgets: BudgetMesh):
    a, b = budgets.replicas
    a.fill_replica = False  # a replica from before DisruptionEntry.replica
    answer = await budgets.stub.PlanDisruption(plan((budgets.owned_by(a), "web-0")))
    assert [e.replica for e in answer.entries] == [a.address]
    assert answer.replica == a.address
    assert b.got == []


async def test_a_replica_that_sees_another_owner_is_followed_once(budgets: BudgetMesh):
    a, b = budgets.replicas
    ns_a, ns_b = budgets.owned_by(a), budgets.owned_by(b)
    b.not_mine = {ns_b: a.address}  # b's ring says a owns ns_b
    answer = await budgets.stub.PlanDisruption(plan((ns_a, "web-0"), (ns_b, "web-1")))
    got = [(e.namespace, e.verdict, e.order, e.replica) for e in answer.entries]
    assert got == [(ns_a, NOW, 1, a.address), (ns_b, NOW, 1, a.address)]
    assert a.got == [[(ns_a, "web-0")], [(ns_b, "web-1")]]


async def test_an_owner_outside_the_ring_is_not_asked(budgets: BudgetMesh):
    _, b = budgets.replicas
    ns_b = budgets.owned_by(b)
    b.not_mine = {ns_b: "10.0.0.9:7100"}
    (entry,) = (await budgets.stub.PlanDisruption(plan((ns_b, "web-1")))).entries
    assert (entry.verdict, entry.owner, entry.replica) == (NOT_OWNED, "10.0.0.9:7100", b.address)


async def test_a_failing_replica_fails_the_plan_with_its_status(budgets: BudgetMesh):
    a, b = budgets.replicas
    b.fail = (grpc.StatusCode.UNAVAILABLE, "no snapshot yet")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budgets.stub.PlanDisruption(
            plan((budgets.owned_by(a), "web-0"), (budgets.owned_by(b), "web-1"))
        )
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == (
        f"budget replica {b.address} (namespace {budgets.owned_by(b)}): no snapshot yet"
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(
            plan(),
            "pods is empty: name at least one pod (namespace and name) to plan",
            id="no pods",
        ),
        pytest.param(
            plan(("ns", "a"), ("", "b")),
            "pods[1] (name 'b'): namespace is required",
            id="a pod without a namespace",
        ),
        pytest.param(
            plan(("ns", "a"), ("other", "b"), ("ns", "")),
            "pods[2] (namespace 'ns'): name is required",
            id="a pod without a name, numbered in the request",
        ),
        pytest.param(
            plan(*[("ns", f"p-{i}") for i in range(10_001)]),
            "pods has 10001 entries, more than 10000: split the request into smaller ones",
            id="more than 10,000 pods",
        ),
    ],
)
async def test_a_plan_the_gateway_cannot_split_is_invalid(budgets: BudgetMesh, request_, message):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budgets.stub.PlanDisruption(request_)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )
    assert all(not r.got for r in budgets.replicas)


async def test_a_plan_without_a_budget_replica_is_unavailable(budgets: BudgetMesh):
    budgets.router.set_members("budget", [])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await budgets.stub.PlanDisruption(plan(("team-a", "web-0")))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "no budget replica is available for namespace team-a"


# ---- flags -----------------------------------------------------------------------------------
SERVICES_FLAG = ["--services", "rollout=127.0.0.1:7100"]


@pytest.mark.parametrize(
    ("argv", "env", "ports"),
    [
        pytest.param([], {}, (7070, 8080), id="defaults"),
        pytest.param(["--api-port", "0", "--api-http-port", "0"], {}, (0, 0), id="free ports"),
        pytest.param(["--api-port", "off", "--api-http-port", "OFF"], {}, (None, None), id="off"),
        pytest.param(
            [],
            {"KRUISE_MESH_API_PORT": "7171", "KRUISE_MESH_API_HTTP_PORT": "off"},
            (7171, None),
            id="environment",
        ),
    ],
)
def test_api_port_flags(argv, env, ports):
    config = parse_gateway_config([*SERVICES_FLAG, *argv], env=env)
    assert (config.api_port, config.api_http_port) == ports


@pytest.mark.parametrize("value", ["-1", "65536", "seventy", ""])
def test_a_bad_api_port_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        parse_gateway_config([*SERVICES_FLAG, "--api-port", value], env={})
    assert "--api-port" in capsys.readouterr().err
