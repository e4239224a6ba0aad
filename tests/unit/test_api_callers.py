"""The API ports' callers (services/gateway/callers.py): the RPC → permission table, the decision
caches, and the decisions, against scripted TokenReview / SubjectAccessReview answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client import REGISTRY

from kruise.budget.v1 import budget_pb2
from kruise.rollout.v1 import rollout_pb2
from services.gateway import callers
from services.gateway.callers import (
    Access,
    Audiences,
    Caller,
    Callers,
    Decision,
    DecisionCache,
    Refused,
    ReviewUnavailable,
    TokenVerdict,
)
from services.gateway.config import parse_gateway_config
from services.kit.tasks import stop_task

ROLLOUT = "/kruise.rollout.v1.RolloutService"
BUDGET = "/kruise.budget.v1.BudgetService"
TOOL = Caller("system:serviceaccount:team-a:tool", uid="u1", groups=("system:serviceaccounts",))


def ref(namespace: str = "team-a", name: str = "web") -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(namespace=namespace, name=name)


# ---- the table ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "request_", "expected"),
    [
        (
            f"{ROLLOUT}/GetRolloutStatus",
            rollout_pb2.GetRolloutStatusRequest(ref=ref()),
            [Access("get", "apps.kruise.io", "clonesets", "team-a", "web")],
        ),
        (
            f"{ROLLOUT}/CheckBatch",
            rollout_pb2.CheckBatchRequest(ref=ref()),
            [Access("get", "apps.kruise.io", "clonesets", "team-a", "web")],
        ),
        (
            f"{ROLLOUT}/WatchRolloutStatus",
            rollout_pb2.WatchRolloutStatusRequest(ref=ref(name="")),
            [Access("watch", "apps.kruise.io", "clonesets", "team-a", "")],
        ),
        (
            f"{ROLLOUT}/SetPartition",
            rollout_pb2.SetPartitionRequest(ref=ref()),
            [Access("patch", "apps.kruise.io", "clonesets", "team-a", "web")],
        ),
        (
            f"{ROLLOUT}/Release",
            rollout_pb2.ReleaseRequest(ref=ref()),
            [Access("patch", "apps.kruise.io", "clonesets", "team-a", "web")],
        ),
        (
            f"{BUDGET}/GetBudget",
            budget_pb2.GetBudgetRequest(namespace="team-a", name="db"),
            [Access("get", "policy.kruise.io", "podunavailablebudgets", "team-a", "db")],
        ),
        (
            f"{BUDGET}/PlanDisruption",
            budget_pb2.PlanDisruptionRequest(
                pods=[
                    budget_pb2.PodRef(namespace="b", name="p1"),
                    budget_pb2.PodRef(namespace="a", name="p2"),
                    budget_pb2.PodRef(namespace="b", name="p3"),
                ]
            ),
            [Access("get", "", "pods", "a"), Access("get", "", "pods", "b")],
        ),
    ],
)
def test_each_rpc_touches_what_the_table_says(method, request_, expected):
    assert callers.RULES[method].accesses(request_) == expected


def test_every_api_method_is_in_the_table_but_the_budget_spending_one():
    served = {
        f"/{service.full_name}/{m.name}"
        for service in (
            rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"],
            budget_pb2.DESCRIPTOR.services_by_name["BudgetService"],
        )
        for m in service.methods
    }
    assert served - set(callers.RULES) == {f"{BUDGET}/AuthorizePodUpdate"}
    assert set(callers.RULES) <= served


def test_http_routes_read_as_their_rpcs():
    method, build = callers.HTTP_ROUTES[f"{callers.rollout_http.PREFIX}/batch"]
    assert method == f"{ROLLOUT}/CheckBatch"
    accesses = callers.RULES[method].accesses(build({"namespace": "team-a", "name": "web"}))
    assert accesses == [Access("get", "apps.kruise.io", "clonesets", "team-a", "web")]


def test_health_and_reflection_are_public():
    assert callers.is_public("/grpc.health.v1.Health/Check")
    assert callers.is_public("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not callers.is_public(f"{ROLLOUT}/GetRolloutStatus")


# ---- the caches --------------------------------------------------------------------------------
@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock, *, ttl: float = 10.0, negative: float = 2.0, **kw) -> DecisionCache:
    return DecisionCache(
        f"test-{id(clock)}", ttl=ttl, negative_ttl=negative, positive=bool, clock=clock, **kw
    )


async def test_a_decision_is_reused_until_its_ttl_and_a_negative_one_shorter():
    clock = Clock()
    decisions = cache(clock)
    loads: list[str] = []

    async def load(value: bool, key: str):
        loads.append(key)
        return value

    assert await decisions.get("yes", lambda: load(True, "yes")) is True
    assert await decisions.get("no", lambda: load(False, "no")) is False
    clock.now += 1.9
    await decisions.get("yes", lambda: load(True, "yes"))
    await decisions.get("no", lambda: load(False, "no"))
    assert loads == ["yes", "no"]
    clock.now += 0.2  # 2.1 s: the negative one expired, the positive one not
    await decisions.get("yes", lambda: load(True, "yes"))
    await decisions.get("no", lambda: load(False, "no"))
    assert loads == ["yes", "no", "no"]
    clock.now += 8.0
    await decisions.get("yes", lambda: load(True, "yes"))
    assert loads == ["yes", "no", "no", "yes"]


async def test_a_ttl_of_zero_caches_nothing_and_a_failure_is_not_cached():
    clock = Clock()
    decisions = cache(clock, ttl=0.0)
    count = 0

    async def load():
        nonlocal count
        count += 1
        return True

    await decisions.get("k", load)
    await decisions.get("k", load)
    assert count == 2 and len(decisions) == 0

    failing = cache(clock)

    async def broken():
        raise ReviewUnavailable("API server down")

    with pytest.raises(ReviewUnavailable):
        await failing.get("k", broken)
    assert await failing.get("k", load) is True


async def test_concurrent_lookups_of_one_key_share_one_review():
    decisions = cache(Clock(), ttl=0.0)
    started = 0
    release = asyncio.Event()

    async def load():
        nonlocal started
        started += 1
        await release.wait()
        return True

    waiting = [asyncio.create_task(decisions.get("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [True] * 5
    assert started == 1


async def test_the_cache_is_bounded():
    decisions = cache(Clock(), max_entries=3)

    async def load():
        return True

    for key in range(10):
        await decisions.get(key, load)
    assert len(decisions) == 3


# ---- the decisions -----------------------------------------------------------------------------
API_SERVER = "https://kubernetes.default.svc"
ROLLOUT_API = callers.ROLLOUT_API_AUDIENCE


@dataclass
class Scripted:
    """TokenReview and SAR answers: ``tokens`` token → caller, valid for the audiences
    ``audiences`` names (default the rollout API's); ``allowed`` the accesses allowed, as
    (user, verb, resource, namespace); ``down`` makes every review fail; ``unaware``: the
    TokenReview answers without status.audiences (an authenticator that is not audience-aware)."""

    tokens: dict[str, Caller] = field(default_factory=dict)
    audiences: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allowed: set[tuple[str, str, str, str]] = field(default_factory=set)
    down: bool = False
    unaware: bool = False
    token_reviews: int = 0
    asked: list[tuple[str, ...]] = field(default_factory=list)
    access_reviews: list[Access] = field(default_factory=list)

    async def review_token(self, token: str, audiences: Sequence[str]) -> TokenVerdict:
        self.token_reviews += 1
        self.asked.append(tuple(audiences))
        if self.down:
            raise ReviewUnavailable("TokenReview failed: connection refused")
        caller = self.tokens.get(token)
        if caller is None:
            return TokenVerdict(None, "invalid bearer token")
        wanted = tuple(audiences) or (API_SERVER,)
        valid = self.audiences.get(token, (ROLLOUT_API,))
        common = tuple(a for a in valid if a in wanted)
        if self.unaware:
            return TokenVerdict(caller)
        if not common:
            return TokenVerdict(None, f"token audiences {list(valid)} is invalid for {wanted}")
        return TokenVerdict(caller, audiences=common)

    async def review_access(self, caller: Caller, access: Access) -> Decision:
        self.access_reviews.append(access)
        if self.down:
            raise ReviewUnavailable("SubjectAccessReview failed: connection refused")
        key = (caller.username, access.verb, access.resource, access.namespace)
        return Decision(key in self.allowed, "" if key in self.allowed else "no RBAC rule")


def auth_total(result: str) -> float:
    return REGISTRY.get_sample_value("kruise_mesh_gateway_api_auth_total", {"result": result}) or 0


STATUS = f"{ROLLOUT}/GetRolloutStatus"


async def test_no_token_and_a_refused_token_are_unauthenticated():
    reviews = Scripted()
    gate = Callers(reviews)
    before = auth_total("unauthenticated")
    for token in (None, "", "forged"):
        with pytest.raises(Refused) as refused:
            await gate.check(STATUS, token, rollout_pb2.GetRolloutStatusRequest(ref=ref()))
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert refused.value.http_status == 401
    assert "invalid bearer token" in refused.value.message
    assert reviews.token_reviews == 1  # no token: no review
    assert reviews.access_reviews == []
    assert auth_total("unauthenticated") == before + 3


async def test_a_caller_without_the_permission_is_denied_naming_what_it_lacks():
    reviews = Scripted(tokens={"t": TOOL})
    gate = Callers(reviews)
    before = auth_total("denied")
    with pytest.raises(Refused) as refused:
        await gate.check(STATUS, "t", rollout_pb2.GetRolloutStatusRequest(ref=ref()))
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.http_status == 403
    message = refused.value.message
    for part in (TOOL.username, "get", '"clonesets"', "apps.kruise.io", '"team-a"'):
        assert part in message
    assert auth_total("denied") == before + 1


async def test_an_allowed_call_is_decided_once_per_ttl():
    reviews = Scripted(tokens={"t": TOOL}, allowed={(TOOL.username, "get", "clonesets", "team-a")})
    clock = Clock()
    gate = Callers(reviews, clock=clock)
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref())
    for _ in range(3):
        assert await gate.check(STATUS, "t", request) == TOOL
    assert (reviews.token_reviews, len(reviews.access_reviews)) == (1, 1)
    clock.now += 10.5
    await gate.check(STATUS, "t", request)
    assert (reviews.token_reviews, len(reviews.access_reviews)) == (2, 2)
    # another verb is another decision
    with pytest.raises(Refused):
        await gate.check(f"{ROLLOUT}/SetPartition", "t", rollout_pb2.SetPartitionRequest(ref=ref()))


async def test_plan_disruption_needs_get_pods_in_every_namespace():
    reviews = Scripted(tokens={"t": TOOL}, allowed={(TOOL.username, "get", "pods", "a")})
    gate = Callers(reviews)
    pods = [budget_pb2.PodRef(namespace=ns, name="p") for ns in ("a", "b", "a")]
    with pytest.raises(Refused) as refused:
        await gate.check(
            f"{BUDGET}/PlanDisruption", "t", budget_pb2.PlanDisruptionRequest(pods=pods)
        )
    assert '"pods" in API group "" in the namespace "b"' in refused.value.message
    reviews.allowed.add((TOOL.username, "get", "pods", "b"))
    gate.accesses.clear()
    await gate.check(f"{BUDGET}/PlanDisruption", "t", budget_pb2.PlanDisruptionRequest(pods=pods))


@dataclass
class AccessReviewsDown(Scripted):
    """Tokens reviewed; every SubjectAccessReview fails."""

    async def review_access(self, caller: Caller, access: Access) -> Decision:
        raise ReviewUnavailable("SubjectAccessReview failed: HTTP 503")


@pytest.mark.parametrize(
    "reviews",
    [Scripted(tokens={"t": TOOL}, down=True), AccessReviewsDown(tokens={"t": TOOL})],
    ids=["TokenReview fails", "SubjectAccessReview fails"],
)
async def test_failing_reviews_never_allow(reviews):
    before = auth_total("unavailable")
    with pytest.raises(Refused) as refused:
        await Callers(reviews).check(STATUS, "t", rollout_pb2.GetRolloutStatusRequest(ref=ref()))
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert refused.value.http_status == 503
    assert auth_total("unavailable") == before + 1


async def test_a_method_outside_the_table_is_refused_after_authentication():
    gate = Callers(Scripted(tokens={"t": TOOL}))
    with pytest.raises(Refused) as refused:
        await gate.check(f"{BUDGET}/AuthorizePodUpdate", "t", None)
    assert refused.value.code == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(Refused) as refused:
        await gate.check(f"{BUDGET}/AuthorizePodUpdate", None, None)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


# ---- configuration -----------------------------------------------------------------------------
BASE = ["--services", "rollout=127.0.0.1:1"]


def test_api_auth_is_token_by_default():
    config = parse_gateway_config(BASE, env={})
    assert config.api_auth == "token"
    assert config.api_audiences == Audiences(("kruise-mesh-rollout-api",), api_server=True)
    assert (config.api_auth_cache_ttl_s, config.api_auth_negative_ttl_s) == (10.0, 2.0)


def test_api_auth_off_only_on_loopback(capsys):
    config = parse_gateway_config([*BASE, "--host", "127.0.0.1", "--api-auth", "off"], env={})
    assert config.api_auth == "off"
    with pytest.raises(SystemExit):
        parse_gateway_config([*BASE, "--host", "0.0.0.0", "--api-auth", "off"], env={})
    assert "--api-auth off is allowed only when the API ports listen on loopback" in (
        capsys.readouterr().err
    )
    # no API port served: nothing to protect
    config = parse_gateway_config(
        [*BASE, "--api-auth", "off", "--api-port", "off", "--api-http-port", "off"], env={}
    )
    assert config.api_auth == "off"


def test_the_cache_ttls_are_flags():
    config = parse_gateway_config(
        [*BASE, "--api-auth-cache-ttl", "0", "--api-auth-negative-ttl", "0"], env={}
    )
    assert (config.api_auth_cache_ttl_s, config.api_auth_negative_ttl_s) == (0.0, 0.0)


async def test_off_warns_at_start_and_every_interval(caplog):
    task = asyncio.create_task(callers.warn_unauthenticated(every=0.01))
    await asyncio.sleep(0.05)
    await stop_task(task)
    warnings = [r for r in caplog.records if callers.OFF_WARNING in r.getMessage()]
    assert len(warnings) >= 2


# ---- audiences ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "kruise-mesh-rollout-api",
            Audiences(("kruise-mesh-rollout-api",)),
            id="the default: the rollout API's audience only",
        ),
        pytest.param(
            "kruise-mesh-rollout-api,@api-server",
            Audiences(("kruise-mesh-rollout-api",), api_server=True),
            id="backward compatible: also the API server's own",
        ),
        pytest.param("@api-server", Audiences((), api_server=True), id="as before audiences"),
        pytest.param(
            " a , b,a,, ",
            Audiences(("a", "b")),
            id="spaces, repeats and empty items dropped",
        ),
    ],
)
def test_api_audiences_parse(text, expected):
    assert Audiences.parse(text) == expected
    assert Audiences.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", " , ", ","])
def test_api_audiences_must_name_one(text):
    with pytest.raises(ValueError, match="at least one audience"):
        Audiences.parse(text)


@pytest.mark.parametrize(
    ("asked", "answered", "granted"),
    [
        pytest.param([ROLLOUT_API], [ROLLOUT_API], (ROLLOUT_API,), id="the audience asked"),
        pytest.param(
            ["a", ROLLOUT_API], [ROLLOUT_API, "a"], ("a", ROLLOUT_API), id="asked order kept"
        ),
        pytest.param([ROLLOUT_API], [], (), id="not audience-aware: API server only, refused"),
        pytest.param([ROLLOUT_API], [API_SERVER], (), id="another audience answered, refused"),
        pytest.param([], [API_SERVER], (), id="nothing asked, nothing granted"),
    ],
)
def test_granted_audiences(asked, answered, granted):
    assert callers.granted_audiences(asked, answered) == granted


def test_api_audiences_flag_and_env(capsys):
    both = Audiences(("kruise-mesh-rollout-api",), api_server=True)
    config = parse_gateway_config(
        [*BASE, "--api-audiences", "kruise-mesh-rollout-api,@api-server"], env={}
    )
    assert config.api_audiences == both
    config = parse_gateway_config(BASE, env={"KRUISE_MESH_API_AUDIENCES": str(both)})
    assert config.api_audiences == both
    with pytest.raises(SystemExit):
        parse_gateway_config([*BASE, "--api-audiences", ","], env={})
    assert "--api-audiences: name at least one audience" in capsys.readouterr().err


async def test_a_token_for_the_api_server_is_refused_saying_which_audience_is_wanted():
    reviews = Scripted(tokens={"t": TOOL}, audiences={"t": (API_SERVER,)})
    with pytest.raises(Refused) as refused:
        await Callers(reviews).authenticate("t")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert 'takes tokens for the audience "kruise-mesh-rollout-api"' in refused.value.message
    assert "--audience kruise-mesh-rollout-api" in refused.value.message
    assert reviews.asked == [(ROLLOUT_API,)]  # one review, for the rollout API's audience


async def test_an_audience_the_review_does_not_confirm_is_refused():
    reviews = Scripted(tokens={"t": TOOL}, unaware=True)
    with pytest.raises(Refused) as refused:
        await Callers(reviews).authenticate("t")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "did not confirm the audience (status.audiences: none)" in refused.value.message


@pytest.mark.parametrize(
    ("token_audiences", "asked"),
    [
        pytest.param((ROLLOUT_API,), [(ROLLOUT_API,)], id="rollout API token: one review"),
        pytest.param((API_SERVER,), [(ROLLOUT_API,), ()], id="API server token: the second review"),
    ],
)
async def test_with_api_server_both_audiences_are_taken(token_audiences, asked):
    reviews = Scripted(tokens={"t": TOOL}, audiences={"t": token_audiences})
    gate = Callers(reviews, audiences=Audiences.parse("kruise-mesh-rollout-api,@api-server"))
    assert await gate.authenticate("t") == TOOL
    assert reviews.asked == asked


async def test_the_audience_rules_are_part_of_the_cache_key():
    reviews = Scripted(tokens={"t": TOOL}, audiences={"t": (API_SERVER,)})
    strict = Callers(reviews)
    lenient = Callers(reviews, audiences=Audiences.parse("kruise-mesh-rollout-api,@api-server"))
    lenient.tokens = strict.tokens  # one cache, two rules
    assert await lenient.authenticate("t") == TOOL
    with pytest.raises(Refused):  # the lenient rule's acceptance is not reused
        await strict.authenticate("t")
    assert len(strict.tokens) == 2  # one entry per (token, rules)
    assert reviews.asked == [(ROLLOUT_API,), (), (ROLLOUT_API,)]
