"""Callers from outside the mesh, against the sandbox's real TokenReview, SubjectAccessReview and
RBAC (services/gateway/callers.py, api_port.py): a gateway with its API ports (TLS, tokens on),
scripted rollout and budget replicas behind it.

The acceptance of issue 10: no token → UNAUTHENTICATED (HTTP 401); a fresh ServiceAccount
without RBAC → PERMISSION_DENIED (403) naming user, verb, resource and namespace; a Role and a
RoleBinding granting it → the same call succeeds. Tokens are minted for the rollout API's
audience (``kruise-mesh-rollout-api``, the gateway's default ``--api-audiences``); one for the
API server's is refused (401) saying which audience is wanted, unless the gateway also takes
``@api-server``. Refusals are cached for
``api_auth_negative_ttl_s``: 0 here, so the grant works at once; allowed decisions for 10 s,
so a repeated call costs no review.
"""

from __future__ import annotations

import contextlib
import io
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from rich.console import Console

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from sandbox.app import Sandbox
from services.cli import rollout_cmd
from services.cli.credentials import ApiCredentials, token_metadata
from services.cli.rollout_client import PermissionDenied, RolloutClient
from services.gateway import callers
from services.gateway.app import Gateway, start_gateway
from services.gateway.config import GatewayConfig
from services.gateway.kube.client import KubeClient
from services.kit import errors
from services.kit.rpc import Server, create_server
from tests.gateway.rollout_replica import FakeRollout, ref, start_fake

NS = "team-a"
DEFAULT_AUDIENCES = callers.Audiences()  # the rollout API's only, as --api-audiences' default
STATUS_PATH = f"/apis/rollout.kruise-mesh.io/v1/namespaces/{NS}/clonesets/web"


@dataclass
class FakeBudget(budget_pb2_grpc.BudgetServiceServicer):
    """A budget replica answering GetBudget and PlanDisruption; counts what reached it."""

    address: str = ""
    got: list[str] = field(default_factory=list)

    async def GetBudget(self, request: Any, context: Any) -> budget_pb2.GetBudgetResponse:
        self.got.append("GetBudget")
        view = views_pb2.PodUnavailableBudgetView()
        view.meta.namespace, view.meta.name = request.namespace, request.name
        return budget_pb2.GetBudgetResponse(budget=view)

    async def PlanDisruption(self, request: Any, context: Any) -> Any:
        self.got.append("PlanDisruption")
        return budget_pb2.PlanDisruptionResponse(
            entries=[
                budget_pb2.DisruptionEntry(
                    namespace=p.namespace, pod=p.name, verdict=budget_pb2.PLAN_VERDICT_NOW
                )
                for p in request.pods
            ],
            replica=self.address,
        )

    async def AuthorizePodUpdate(self, request: Any, context: Any) -> Any:
        self.got.append("AuthorizePodUpdate")
        return budget_pb2.AuthorizePodUpdateResponse()


@dataclass
class Api:
    """The gateway under test and what tests call it with."""

    gateway: Gateway
    kube: KubeClient
    rollout: FakeRollout
    budget: FakeBudget
    ca_file: str
    admin_token: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.api_port}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.gateway.api_http_port}"

    def channel(self) -> grpc.aio.Channel:
        """A TLS channel carrying no token (each call passes its own metadata)."""
        return ApiCredentials(ca_file=self.ca_file).channel(self.target)

    async def service_account(
        self, name: str, *, audiences: Sequence[str] = (callers.ROLLOUT_API_AUDIENCE,)
    ) -> str:
        """A fresh ServiceAccount in NS, and a token for it (TokenRequest) for ``audiences``
        (default the rollout API's; empty: the API server's own, as ``kubectl create token``
        without ``--audience``)."""
        await post(
            self.kube, f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": name}}
        )
        spec: dict[str, Any] = {"expirationSeconds": 3600}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = await self.kube.request_json(
            "POST",
            f"/api/v1/namespaces/{NS}/serviceaccounts/{name}/token",
            body=orjson.dumps(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            ),
        )
        return str(answer["status"]["token"])

    async def grant(self, account: str, *, verbs: list[str], group: str, resource: str) -> None:
        """A Role with the rule and a RoleBinding of it to ServiceAccount ``account``."""
        name = f"{account}-{resource}"
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}"
        rule = {"apiGroups": [group], "resources": [resource], "verbs": verbs}
        await post(self.kube, f"{rbac}/roles", {"metadata": {"name": name}, "rules": [rule]})
        binding = {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}],
        }
        await post(self.kube, f"{rbac}/rolebindings", binding)


async def post(kube: KubeClient, path: str, body: dict[str, Any]) -> None:
    try:
        await kube.request("POST", path, body=orjson.dumps(body))
    except errors.AlreadyExists:
        pass


async def start_budget(replica: FakeBudget) -> Server:
    server = await create_server(
        register=[lambda s: budget_pb2_grpc.add_BudgetServiceServicer_to_server(replica, s)],
        service_names=["kruise.budget.v1.BudgetService"],
    )
    replica.address = f"127.0.0.1:{server.port}"
    return server


@contextlib.asynccontextmanager
async def serving(
    sandbox: Sandbox,
    kube: KubeClient,
    tmp_path: Path,
    audiences: callers.Audiences = DEFAULT_AUDIENCES,
) -> AsyncIterator[Api]:
    """A gateway with its API ports taking tokens for ``audiences``, and its replicas."""
    rollout, budget = FakeRollout(), FakeBudget()
    servers = [await start_fake(rollout), await start_budget(budget)]
    config = GatewayConfig(
        kubeconfig=str(sandbox.kubeconfig_path),
        host="127.0.0.1",
        grpc_port=0,
        webhook_port=0,
        ops_port=0,
        api_port=0,
        api_http_port=0,
        static_services={
            "rollout": frozenset({rollout.address}),
            "budget": frozenset({budget.address}),
        },
        cert_dir=str(tmp_path / "certs"),
        leader_election=False,
        json_logs=False,
        api_auth="token",
        api_audiences=audiences,
        api_auth_cache_ttl_s=10.0,
        api_auth_negative_ttl_s=0.0,
    )
    gateway = await start_gateway(config)
    await post(kube, "/api/v1/namespaces", {"metadata": {"name": NS}})
    try:
        yield Api(
            gateway=gateway,
            kube=kube,
            rollout=rollout,
            budget=budget,
            ca_file=str(tmp_path / "certs" / "ca.crt"),
            admin_token=sandbox.token,
        )
    finally:
        await gateway.stop()
        for server in servers:
            await server.stop(grace=None)


@pytest.fixture
async def api(sandbox: Sandbox, kube: KubeClient, tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(sandbox, kube, tmp_path) as api:
        yield api


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def token_reviews() -> float:
    return sample("kruise_mesh_gateway_api_auth_cache_total", {"cache": "token", "result": "miss"})


def access_reviews() -> float:
    return sample("kruise_mesh_gateway_api_auth_cache_total", {"cache": "access", "result": "miss"})


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


# ---- the acceptance ----------------------------------------------------------------------------
async def test_get_budget_without_a_token_then_without_rbac_then_granted(api: Api):
    budgets = budget_pb2_grpc.BudgetServiceStub(channel := api.channel())
    request = budget_pb2.GetBudgetRequest(namespace=NS, name="db")
    try:
        code, message = await code_of(budgets.GetBudget(request))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "no bearer token" in message

        token = await api.service_account("tool")
        code, message = await code_of(budgets.GetBudget(request, metadata=token_metadata(token)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        for part in (
            f"system:serviceaccount:{NS}:tool",
            "get",
            '"podunavailablebudgets"',
            "policy.kruise.io",
            f'"{NS}"',
        ):
            assert part in message
        assert api.budget.got == []  # refused before the replica

        await api.grant(
            "tool", verbs=["get"], group="policy.kruise.io", resource="podunavailablebudgets"
        )
        answer = await budgets.GetBudget(request, metadata=token_metadata(token))
        assert (answer.budget.meta.namespace, answer.budget.meta.name) == (NS, "db")
        assert api.budget.got == ["GetBudget"]
    finally:
        await channel.close()


async def test_get_rollout_status_over_grpc_and_http(api: Api):
    rollouts = rollout_pb2_grpc.RolloutServiceStub(channel := api.channel())
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref(NS))
    token = await api.service_account("watcher")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:
            context = ssl.create_default_context(cafile=api.ca_file)

            async def get(headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
                async with http.get(api.url + STATUS_PATH, headers=headers, ssl=context) as r:
                    return r.status, await r.json(), r.headers

            code, _ = await code_of(rollouts.GetRolloutStatus(request))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            status, body, headers = await get({})
            assert status == 401
            assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)
            assert headers["WWW-Authenticate"].startswith("Bearer")

            code, message = await code_of(
                rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert f"system:serviceaccount:{NS}:watcher" in message and '"clonesets"' in message
            status, body, _ = await get(auth)
            assert (status, body["reason"]) == (403, "Forbidden")
            assert body["message"] == message

            await api.grant("watcher", verbs=["get"], group="apps.kruise.io", resource="clonesets")
            answer = await rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
            assert answer.status.summary == f"served by {api.rollout.address}"
            status, body, _ = await get(auth)
            assert status == 200 and body["status"]["summary"] == answer.status.summary
            # get is not patch
            code, message = await code_of(
                rollouts.SetPartition(
                    rollout_pb2.SetPartitionRequest(ref=ref(NS)), metadata=token_metadata(token)
                )
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED and "cannot patch" in message
            # health needs nothing
            async with http.get(api.url + "/healthz", ssl=context) as r:
                assert r.status == 200
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest())
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()


async def test_a_cached_decision_costs_no_review(api: Api):
    rollouts = rollout_pb2_grpc.RolloutServiceStub(channel := api.channel())
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref(NS))
    token = await api.service_account("cached")
    await api.grant("cached", verbs=["get"], group="apps.kruise.io", resource="clonesets")
    try:
        tokens, accesses = token_reviews(), access_reviews()
        await rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
        assert (token_reviews(), access_reviews()) == (tokens + 1, accesses + 1)
        for _ in range(5):
            await rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
        assert (token_reviews(), access_reviews()) == (tokens + 1, accesses + 1)
        hits = sample(
            "kruise_mesh_gateway_api_auth_cache_total", {"cache": "token", "result": "hit"}
        )
        assert hits >= 5
    finally:
        await channel.close()


async def test_a_token_for_another_audience_is_refused(api: Api):
    # what a mesh replica's projected token would be: the API server does not take it
    token = await api.service_account("replica", audiences=["kruise-mesh"])
    budgets = budget_pb2_grpc.BudgetServiceStub(channel := api.channel())
    try:
        code, message = await code_of(
            budgets.GetBudget(
                budget_pb2.GetBudgetRequest(namespace=NS, name="db"),
                metadata=token_metadata(token),
            )
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "refused" in message
    finally:
        await channel.close()


# ---- audiences -----------------------------------------------------------------------------------
async def get_status_http(api: Api, token: str) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=api.ca_file)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            api.url + STATUS_PATH, headers={"Authorization": f"Bearer {token}"}, ssl=context
        ) as r:
            return r.status, await r.json()


async def test_a_token_for_the_rollout_api_is_taken_and_one_for_the_api_server_refused(api: Api):
    ours = await api.service_account("tool-a")
    theirs = await api.service_account("tool-b", audiences=())
    for account in ("tool-a", "tool-b"):
        await api.grant(account, verbs=["get"], group="apps.kruise.io", resource="clonesets")
    rollouts = rollout_pb2_grpc.RolloutServiceStub(channel := api.channel())
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref(NS))
    try:
        answer = await rollouts.GetRolloutStatus(request, metadata=token_metadata(ours))
        assert answer.status.summary == f"served by {api.rollout.address}"
        status, body = await get_status_http(api, ours)
        assert status == 200 and body["status"]["summary"] == answer.status.summary

        # the API server's audience (kubectl create token without --audience), and the
        # administrator's static token (audience-agnostic: the API server's only)
        messages = []
        for token in (theirs, api.admin_token):
            code, message = await code_of(
                rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert 'takes tokens for the audience "kruise-mesh-rollout-api"' in message
            assert "kubectl create token SERVICEACCOUNT --audience kruise-mesh-rollout-api" in (
                message
            )
            status, body = await get_status_http(api, token)
            assert (status, body["reason"], body["message"]) == (401, "Unauthorized", message)
            messages.append(message)
        # the API server's words for why (its TokenReview's status.error)
        assert (
            '["https://kubernetes.default.svc.cluster.local"] is invalid for the target '
            'audiences ["kruise-mesh-rollout-api"]'
        ) in messages[0]
        assert len(api.rollout.got) == 2  # the refused calls never reached the replica
    finally:
        await channel.close()


async def test_a_token_for_the_rollout_api_is_useless_against_the_api_server(
    api: Api, sandbox: Sandbox
):
    token = await api.service_account("replayed")
    await api.grant("replayed", verbs=["get"], group="apps.kruise.io", resource="clonesets")
    context = ssl.create_default_context(cafile=str(sandbox.ca_file))
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{sandbox.url}/apis/apps.kruise.io/v1alpha1/namespaces/{NS}/clonesets",
            headers={"Authorization": f"Bearer {token}"},
            ssl=context,
        ) as r:
            assert r.status == 401


async def test_with_api_server_in_the_audiences_both_tokens_are_taken(
    sandbox: Sandbox, kube: KubeClient, tmp_path: Path
):
    both = callers.Audiences.parse("kruise-mesh-rollout-api,@api-server")
    async with serving(sandbox, kube, tmp_path, both) as api:
        tokens = {
            "ours": await api.service_account("both-a"),
            "theirs": await api.service_account("both-b", audiences=()),
        }
        for account in ("both-a", "both-b"):
            await api.grant(account, verbs=["get"], group="apps.kruise.io", resource="clonesets")
        mesh = await api.service_account("both-c", audiences=["kruise-mesh"])
        rollouts = rollout_pb2_grpc.RolloutServiceStub(channel := api.channel())
        request = rollout_pb2.GetRolloutStatusRequest(ref=ref(NS))
        try:
            for token in tokens.values():
                answer = await rollouts.GetRolloutStatus(request, metadata=token_metadata(token))
                assert answer.status.summary == f"served by {api.rollout.address}"
                assert (await get_status_http(api, token))[0] == 200
            # a third audience is still refused, naming both it would take
            code, message = await code_of(
                rollouts.GetRolloutStatus(request, metadata=token_metadata(mesh))
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert '"kruise-mesh-rollout-api", or for the API server\'s own' in message
            assert (await get_status_http(api, mesh))[0] == 401
        finally:
            await channel.close()


async def test_plan_disruption_needs_get_pods_and_authorize_pod_update_is_not_served(api: Api):
    budgets = budget_pb2_grpc.BudgetServiceStub(channel := api.channel())
    token = await api.service_account("drainer")
    plan = budget_pb2.PlanDisruptionRequest(pods=[budget_pb2.PodRef(namespace=NS, name="p")])
    try:
        code, message = await code_of(budgets.PlanDisruption(plan, metadata=token_metadata(token)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and 'cannot get resource "pods"' in message
        await api.grant("drainer", verbs=["get"], group="", resource="pods")
        answer = await budgets.PlanDisruption(plan, metadata=token_metadata(token))
        assert [e.pod for e in answer.entries] == ["p"]
        # spending budget stays mesh-only, whoever asks
        code, _ = await code_of(
            budgets.AuthorizePodUpdate(
                budget_pb2.AuthorizePodUpdateRequest(namespace=NS), metadata=token_metadata(token)
            )
        )
        assert code == grpc.StatusCode.UNIMPLEMENTED
        assert "AuthorizePodUpdate" not in api.budget.got
    finally:
        await channel.close()


async def test_the_rollout_cli_says_which_token_was_refused(api: Api):
    token = await api.service_account("cli")
    out, err = io.StringIO(), io.StringIO()
    args = rollout_cmd.parse_args(
        ["status", f"{NS}/web", "--server", api.target, "--token", token, "--ca-file", api.ca_file]
    )
    code = await rollout_cmd.run(
        args, console=Console(file=out, width=300), errors=Console(file=err, width=300)
    )
    assert code == 1
    assert err.getvalue().startswith("error: PERMISSION_DENIED: ")
    assert "(the token from --token was used)" in err.getvalue()


async def test_reviews_the_gateway_cannot_make_never_allow(api: Api, tmp_path: Path):
    """A gateway whose own credential may not create TokenReviews (its RBAC lacks them), or
    an API server out of reach: UNAVAILABLE, never allowed."""
    weak = await api.service_account("not-the-gateway")
    doc = yaml.safe_load(Path(api.gateway.config.kubeconfig).read_text())
    doc["users"][0]["user"] = {"token": weak}
    lacking = tmp_path / "lacking"
    lacking.write_text(yaml.safe_dump(doc))
    doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    away = tmp_path / "away"
    away.write_text(yaml.safe_dump(doc))
    for kubeconfig in (lacking, away):
        kube = await KubeClient.connect(kubeconfig=str(kubeconfig))
        try:
            gate = callers.Callers(callers.KubeReviews(kube, timeout=2.0))
            with pytest.raises(callers.Refused) as refused:
                await gate.check(
                    f"/{callers.ROLLOUT}/GetRolloutStatus",
                    api.admin_token,
                    rollout_pb2.GetRolloutStatusRequest(ref=ref(NS)),
                )
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            assert "TokenReview failed" in refused.value.message
        finally:
            await kube.close()


# ---- --api-auth off ----------------------------------------------------------------------------
def _off_config(sandbox: Sandbox, tmp_path: Path, host: str) -> GatewayConfig:
    return GatewayConfig(
        kubeconfig=str(sandbox.kubeconfig_path),
        host=host,
        grpc_port=0,
        webhook_port=0,
        ops_port=0,
        api_port=0,
        api_http_port=0,
        static_services={"rollout": frozenset()},
        cert_dir=str(tmp_path / "certs"),
        leader_election=False,
        json_logs=False,
        api_auth="off",
    )


async def test_off_is_refused_off_loopback(sandbox: Sandbox, tmp_path: Path):
    with pytest.raises(ValueError, match="only when the API ports listen on loopback"):
        await start_gateway(_off_config(sandbox, tmp_path, "0.0.0.0"))


async def test_off_serves_plain_text_on_loopback_and_says_so(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    gateway = await start_gateway(_off_config(sandbox, tmp_path, "127.0.0.1"))
    try:
        assert any(callers.OFF_WARNING in r.getMessage() for r in caplog.records)
        creds = ApiCredentials(plaintext=True)
        async with creds.channel(f"127.0.0.1:{gateway.api_port}") as channel:
            rollouts = rollout_pb2_grpc.RolloutServiceStub(channel)
            code, message = await code_of(
                rollouts.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref(NS)))
            )
        # no check: the call reaches the route, which has no rollout replica
        assert code == grpc.StatusCode.UNAVAILABLE and "no rollout replica" in message
    finally:
        await gateway.stop()


async def test_a_client_with_a_token_sends_it_on_every_kind_of_call(api: Api):
    token = await api.service_account("client")
    await api.grant("client", verbs=["get", "watch"], group="apps.kruise.io", resource="clonesets")
    async with RolloutClient.connect(api.target, token=token, ca_file=api.ca_file) as client:
        status = await client.get(NS, "web")
        assert status.summary == f"served by {api.rollout.address}"
        # a response stream: the replica's watch ends at once, without a refusal
        call = rollout_pb2_grpc.RolloutServiceStub(client.channel).WatchRolloutStatus(
            rollout_pb2.WatchRolloutStatusRequest(ref=ref(NS))
        )
        assert [event async for event in call] == []
        with pytest.raises(PermissionDenied):
            await client.set_partition(NS, "web", partition=0)
    with pytest.raises(ValueError, match="TLS only"):
        RolloutClient.connect(api.target, token=token, plaintext=True)
