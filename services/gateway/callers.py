"""Callers from outside the mesh: who they are (TokenReview) and what they may touch (SAR).

Rollout tools, Argo's ``web`` metric and ``drain-plan`` call the gateway's API ports (gRPC
7070, HTTP/JSON 8080) with their own Kubernetes token, as they would call the API server.
The gateway asks the API server, as kube-rbac-proxy and aggregated API servers do:

    authorization: Bearer TOKEN ──▶ TokenReview with spec.audiences: the rollout API's
                                    (``--api-audiences``, default kruise-mesh-rollout-api);
                                    status.audiences must name one of them
                                ──▶ user, uid, groups
    the RPC and its request     ──▶ RULES: verb, group, resource in the namespaces it names
                                ──▶ one SubjectAccessReview per (user, groups, verb, group,
                                    resource, subresource, namespace, name)
                                ──▶ the call, or its refusal

``RULES`` is the one table of what each RPC touches (HTTP routes are their RPCs)::

    RPC                                verb   resource (group)            where
    RolloutService/GetRolloutStatus    get    clonesets (apps.kruise.io)  ref.namespace/name
    RolloutService/CheckBatch          get    clonesets (apps.kruise.io)  ref.namespace/name
    RolloutService/WatchRolloutStatus  watch  clonesets (apps.kruise.io)  ref.namespace[/name]
    RolloutService/SetPartition        patch  clonesets (apps.kruise.io)  ref.namespace/name
    RolloutService/Release             patch  clonesets (apps.kruise.io)  ref.namespace/name
    BudgetService/GetBudget            get    podunavailablebudgets       namespace/name
                                              (policy.kruise.io)
    BudgetService/PlanDisruption       get    pods (core)                 each pod's namespace
    GET .../clonesets/{name}           as GetRolloutStatus
    GET .../clonesets/{name}/batch     as CheckBatch

Audiences (``Audiences``, flag ``--api-audiences``). Callers bring a token minted for the
rollout API's own audience, ``kruise-mesh-rollout-api`` (``kubectl create token SA --audience
kruise-mesh-rollout-api``, or a projected ServiceAccount token volume with that audience): the
TokenReview names it in ``spec.audiences`` and the answer's ``status.audiences`` must name it
too (``granted_audiences``; an API server that is not audience-aware answers with none). So a
token meant for the API server, or for anything else, is refused here, and a token sent here
is useless against the API server. ``@api-server`` in the list also takes tokens for the API
server's own audiences (a second TokenReview, without ``spec.audiences``, when the first
refuses): the behaviour before audiences, for callers that cannot mint a token (a kubeconfig
user's static or OIDC token). The audience rules are part of each cached review's key.

Health and reflection (and ``GET /healthz``) are open. Any other method is refused after
authentication (UNIMPLEMENTED: ``BudgetService/AuthorizePodUpdate`` spends budget and is
served on the mesh port only).

Answers (gRPC / HTTP, the HTTP body a Kubernetes ``Status``):

    no token, or a token the TokenReview refuses  UNAUTHENTICATED    401 Unauthorized
    a SubjectAccessReview says no                 PERMISSION_DENIED  403 Forbidden, naming
                                                                     user, verb, resource
                                                                     and namespace
    the TokenReview or SAR itself fails           UNAVAILABLE        503: never allowed

Decisions are cached in memory: a token's review by its SHA-256 and the audience rules for
``ttl`` (10 s; a refused token ``negative_ttl``, 2 s), each access decision for ``ttl``
(denials ``negative_ttl``); a review already in flight for the same key is joined, not
repeated. So a revoked token or
RoleBinding stops working within ``ttl``, and a new RoleBinding works within
``negative_ttl``. Counted in ``kruise_mesh_gateway_api_auth_total{result}`` and
``kruise_mesh_gateway_api_auth_cache_total{cache,result}``; each refusal is logged.

``--api-auth off`` (``api_security``) serves the API ports without any of this, in clear,
and only on a loopback address; it says so at start and once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc
import orjson
from aiohttp import web
from google.protobuf.message import Message
from prometheus_client import Counter

from kruise.budget.v1 import budget_pb2
from kruise.rollout.v1 import rollout_pb2
from services.gateway import rollout_http
from services.gateway.kube.client import KubeClient
from services.kit import errors

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
# How long one TokenReview or SubjectAccessReview may take before the call is UNAVAILABLE.
REVIEW_TIMEOUT_S = 5.0
# Bound on the cached decisions of each cache (random tokens must not grow it forever).
MAX_ENTRIES = 10_000
# PlanDisruption may name many namespaces: at most this many SARs in flight for one call.
MAX_PARALLEL_REVIEWS = 16
OFF_WARNING = "rollout API callers are not authenticated"
# The audience callers' tokens are minted for (the CLI's services.cli.credentials says the same).
ROLLOUT_API_AUDIENCE = "kruise-mesh-rollout-api"
# In --api-audiences: also the API server's own audiences (a TokenReview without spec.audiences).
API_SERVER_AUDIENCES = "@api-server"
OFF_WARNING_EVERY_S = 60.0

AUTH = Counter(
    "kruise_mesh_gateway_api_auth_total",
    "Calls to the API ports (rollout and budget reads) by authentication and authorization "
    "result: allowed, unauthenticated, denied, unavailable (a review failed), unimplemented.",
    ["result"],
)
CACHE = Counter(
    "kruise_mesh_gateway_api_auth_cache_total",
    "Look-ups in the API callers' decision caches (cache: token, access) by result: hit, "
    "miss (a review was made), joined (a review in flight for the same key was awaited).",
    ["cache", "result"],
)

ROLLOUT = rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
BUDGET = budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


# ---- the table: what each RPC touches (pure) ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Access:
    """The attributes of one SubjectAccessReview (Kubernetes' resourceAttributes)."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str = ""
    subresource: str = ""

    def describe(self) -> str:
        """``get resource "clonesets" in API group "apps.kruise.io" in the namespace "a"``."""
        what = self.resource + (f"/{self.subresource}" if self.subresource else "")
        text = f'{self.verb} resource "{what}" in API group "{self.group}"'
        return text + (
            f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        )


Scopes = Callable[[Any], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Rule:
    """What an RPC touches: ``verb`` on ``group``/``resource`` in each (namespace, name)
    ``scopes`` reads from its request."""

    verb: str
    group: str
    resource: str
    scopes: Scopes
    subresource: str = ""

    def accesses(self, request: Any) -> list[Access]:
        return [
            Access(self.verb, self.group, self.resource, namespace, name, self.subresource)
            for namespace, name in self.scopes(request)
        ]


def _ref(request: Any) -> list[tuple[str, str]]:
    return [(request.ref.namespace, request.ref.name)]


def _namespace_name(request: Any) -> list[tuple[str, str]]:
    return [(request.namespace, request.name)]


def _pod_namespaces(request: Any) -> list[tuple[str, str]]:
    return [(namespace, "") for namespace in sorted({pod.namespace for pod in request.pods})]


CLONESETS = ("apps.kruise.io", "clonesets")
RULES: dict[str, Rule] = {
    f"/{ROLLOUT}/GetRolloutStatus": Rule("get", *CLONESETS, _ref),
    f"/{ROLLOUT}/CheckBatch": Rule("get", *CLONESETS, _ref),
    f"/{ROLLOUT}/WatchRolloutStatus": Rule("watch", *CLONESETS, _ref),
    f"/{ROLLOUT}/SetPartition": Rule("patch", *CLONESETS, _ref),
    f"/{ROLLOUT}/Release": Rule("patch", *CLONESETS, _ref),
    f"/{BUDGET}/GetBudget": Rule(
        "get", "policy.kruise.io", "podunavailablebudgets", _namespace_name
    ),
    f"/{BUDGET}/PlanDisruption": Rule("get", "", "pods", _pod_namespaces),
}


def _status_request(match: Mapping[str, str]) -> Message:
    return rollout_pb2.GetRolloutStatusRequest(
        ref=rollout_http.workload(match["namespace"], match["name"])
    )


def _batch_request(match: Mapping[str, str]) -> Message:
    return rollout_pb2.CheckBatchRequest(
        ref=rollout_http.workload(match["namespace"], match["name"])
    )


# The HTTP/JSON routes (aiohttp canonical paths) → the RPC they answer, and its request as far
# as RULES reads it.
HTTP_ROUTES: dict[str, tuple[str, Callable[[Mapping[str, str]], Message]]] = {
    rollout_http.PREFIX: (f"/{ROLLOUT}/GetRolloutStatus", _status_request),
    f"{rollout_http.PREFIX}/batch": (f"/{ROLLOUT}/CheckBatch", _batch_request),
}
PUBLIC_HTTP = frozenset({"/healthz"})


def is_public(method: str) -> bool:
    """Health and reflection: open to anyone who reaches the port."""
    return method.lstrip("/").split("/", 1)[0] in PUBLIC_SERVICES


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` value; None without one.

    >>> bearer("Bearer abc"), bearer("bearer  abc "), bearer("Basic x"), bearer(None)
    ('abc', 'abc', None, None)
    """
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps a port on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.1")]
    [True, True, True, False, False]
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- who is calling ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user, as the TokenReview named it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """A TokenReview's answer: the caller, or why the token was not accepted; ``audiences``
    is its ``status.audiences`` (those of the asked ones the token is valid for)."""

    caller: Caller | None
    error: str = ""
    audiences: tuple[str, ...] = ()


# ---- which tokens: their audiences (pure) --------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Audiences:
    """The tokens the API ports take: those minted for one of ``names`` (a TokenReview with
    ``spec.audiences: names``), and with ``api_server`` those for the API server's own
    audiences (a TokenReview without ``spec.audiences``). Part of the token cache's key. The
    gateway's default is ``DEFAULT_AUDIENCES``."""

    names: tuple[str, ...] = (ROLLOUT_API_AUDIENCE,)
    api_server: bool = False

    @classmethod
    def parse(cls, text: str) -> Audiences:
        """``--api-audiences``: comma-separated audiences, ``@api-server`` for the API
        server's own. Pure; ValueError when it names none.

        >>> Audiences.parse("kruise-mesh-rollout-api, @api-server")
        Audiences(names=('kruise-mesh-rollout-api',), api_server=True)
        """
        items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
        names = tuple(item for item in items if item != API_SERVER_AUDIENCES)
        if not names and API_SERVER_AUDIENCES not in items:
            raise ValueError(
                f"name at least one audience (e.g. {ROLLOUT_API_AUDIENCE}, or "
                f"{API_SERVER_AUDIENCES} for the API server's own)"
            )
        return cls(names=names, api_server=API_SERVER_AUDIENCES in items)

    def __str__(self) -> str:
        return ",".join([*self.names, *([API_SERVER_AUDIENCES] if self.api_server else [])])

    def wanted(self) -> str:
        """What a refused caller is told to bring.

        >>> print(Audiences().wanted())  # doctest: +NORMALIZE_WHITESPACE
        the rollout API takes tokens for the audience "kruise-mesh-rollout-api" (kubectl
        create token SERVICEACCOUNT --audience kruise-mesh-rollout-api, or a projected
        ServiceAccount token with that audience)
        """
        quoted = " or ".join(f'"{name}"' for name in self.names)
        if self.names and self.api_server:
            what = f"the audience {quoted}, or for the API server's own"
        elif self.names:
            what = f"the audience {quoted}"
        else:
            return "the rollout API takes tokens for the API server's own audiences"
        first = self.names[0]
        return (
            f"the rollout API takes tokens for {what} (kubectl create token SERVICEACCOUNT "
            f"--audience {first}, or a projected ServiceAccount token with that audience)"
        )


# The gateway's default: the rollout API's audience and the API server's own. A person's
# kubeconfig token (OIDC, a client certificate's user, a static token) cannot be minted for
# another audience, and the kruise-mesh CLI (drain-plan, rollout) is for people; where only
# tools in pods call, ``--api-audiences kruise-mesh-rollout-api`` refuses tokens meant for the
# API server (which could otherwise be replayed there).
DEFAULT_AUDIENCES = Audiences(api_server=True)


def granted_audiences(asked: Sequence[str], answered: Sequence[str]) -> tuple[str, ...]:
    """The audiences a TokenReview that asked for ``asked`` vouched for: those of its
    ``status.audiences`` (``answered``) that were asked, in asked order. Pure; consumed by
    ``Callers``, which refuses an authenticated token when this is empty.

    authentication.k8s.io/v1 says a client that sets ``spec.audiences`` must check that a
    compatible audience comes back: an authenticator that is not audience-aware (a static
    token, a webhook authenticator) answers with none, meaning "valid for the API server".

    >>> granted_audiences(["kruise-mesh-rollout-api"], ["kruise-mesh-rollout-api"])
    ('kruise-mesh-rollout-api',)
    >>> granted_audiences(["kruise-mesh-rollout-api"], [])
    ()
    """
    returned = set(answered)
    return tuple(name for name in dict.fromkeys(asked) if name in returned)


@dataclass(frozen=True, slots=True)
class Decision:
    """A SubjectAccessReview's answer."""

    allowed: bool
    reason: str = ""


class ReviewUnavailable(Exception):
    """A TokenReview or SubjectAccessReview could not be made: refuse, never allow."""


class Reviews(Protocol):
    """Where the decisions come from (the API server; a fake in tests)."""

    async def review_token(self, token: str, audiences: Sequence[str]) -> TokenVerdict:
        """A TokenReview of ``token`` for ``audiences`` (empty: the API server's own)."""
        ...

    async def review_access(self, caller: Caller, access: Access) -> Decision: ...


class KubeReviews:
    """TokenReview and SubjectAccessReview through the gateway's KubeClient."""

    def __init__(self, kube: KubeClient, *, timeout: float = REVIEW_TIMEOUT_S) -> None:
        self.kube = kube
        self.timeout = timeout

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.kube.request_json(
                "POST", path, body=orjson.dumps(body), timeout=self.timeout
            )
        except errors.MeshError as e:
            raise ReviewUnavailable(f"{body['kind']} failed: {e}") from e

    async def review_token(self, token: str, audiences: Sequence[str]) -> TokenVerdict:
        # No audiences: the API server checks the token against its own.
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        status = (await self._post(TOKEN_REVIEWS, body)).get("status") or {}
        if not status.get("authenticated"):
            return TokenVerdict(None, str(status.get("error") or "the token is not valid"))
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return TokenVerdict(
            Caller(
                username=str(user.get("username") or ""),
                uid=str(user.get("uid") or ""),
                groups=tuple(str(g) for g in user.get("groups") or ()),
                extra=tuple(sorted((str(k), tuple(map(str, v or ()))) for k, v in extra.items())),
            ),
            audiences=tuple(str(a) for a in status.get("audiences") or ()),
        )

    async def review_access(self, caller: Caller, access: Access) -> Decision:
        attributes = {
            "verb": access.verb,
            "group": access.group,
            "resource": access.resource,
            "subresource": access.subresource,
            "namespace": access.namespace,
            "name": access.name,
        }
        spec: dict[str, Any] = {
            "user": caller.username,
            "groups": list(caller.groups),
            "resourceAttributes": {k: v for k, v in attributes.items() if v},
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        status = (await self._post(ACCESS_REVIEWS, body)).get("status") or {}
        if status.get("evaluationError") and not status.get("allowed"):
            log.warning(
                "a SubjectAccessReview had an evaluation error",
                extra={"error": status["evaluationError"], "user": caller.username},
            )
        return Decision(
            allowed=bool(status.get("allowed")) and not status.get("denied"),
            reason=str(status.get("reason") or ""),
        )


# ---- the caches ----------------------------------------------------------------------------------
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class DecisionCache(Generic[K, V]):
    """Decisions by key for ``ttl`` seconds (``negative_ttl`` for negative ones), at most
    ``max_entries``; concurrent look-ups of a key not cached share one load. A failed load
    is not cached. A TTL of 0 caches nothing (every look-up not joining a load loads)."""

    def __init__(
        self,
        name: str,
        *,
        ttl: float,
        negative_ttl: float,
        positive: Callable[[V], bool],
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.negative_ttl = min(negative_ttl, ttl)
        self.positive = positive
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._hit = CACHE.labels(name, "hit")
        self._miss = CACHE.labels(name, "miss")
        self._joined = CACHE.labels(name, "joined")

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock():
                self._hit.inc()
                return entry[1]
            del self._entries[key]
        loading = self._loading.get(key)
        if loading is None:
            self._miss.inc()
            loading = asyncio.ensure_future(load())
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._loaded(key, done))
        else:
            self._joined.inc()
        # shielded: a caller giving up does not cancel the load the others wait for
        return await asyncio.shield(loading)

    def _loaded(self, key: K, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if done.cancelled() or done.exception() is not None:
            return
        value = done.result()
        ttl = self.ttl if self.positive(value) else self.negative_ttl
        if ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            now = self.clock()
            for stale in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                del self._entries[stale]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (self.clock() + ttl, value)

    def clear(self) -> None:
        self._entries.clear()


# ---- the decision --------------------------------------------------------------------------------
class Refused(Exception):
    """A call the gateway will not serve: its gRPC code and the message for the caller."""

    HTTP = {
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.UNIMPLEMENTED: 404,
    }
    RESULT = {
        grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
        grpc.StatusCode.PERMISSION_DENIED: "denied",
        grpc.StatusCode.UNAVAILABLE: "unavailable",
        grpc.StatusCode.UNIMPLEMENTED: "unimplemented",
    }

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return self.HTTP.get(self.code, 500)


def forbidden_message(caller: Caller, access: Access, reason: str = "") -> str:
    """Kubernetes' words for a denial, naming user, verb, resource and namespace. Pure.

    >>> print(forbidden_message(Caller("system:serviceaccount:a:tool"),
    ...                         Access("get", "apps.kruise.io", "clonesets", "a", "web")))
    ... # doctest: +NORMALIZE_WHITESPACE
    clonesets.apps.kruise.io "web" is forbidden: User "system:serviceaccount:a:tool"
    cannot get resource "clonesets" in API group "apps.kruise.io" in the namespace "a"
    """
    kind = f"{access.resource}.{access.group}" if access.group else access.resource
    subject = f'{kind} "{access.name}"' if access.name else kind
    text = f'{subject} is forbidden: User "{caller.username}" cannot {access.describe()}'
    return f"{text}: {reason}" if reason else text


class Callers:
    """Authentication and authorization of the API ports' callers (see the module doc)."""

    def __init__(
        self,
        reviews: Reviews,
        *,
        audiences: Audiences = Audiences(),
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reviews = reviews
        self.audiences = audiences
        # by (the token's SHA-256, the audience rules it was reviewed under)
        self.tokens: DecisionCache[tuple[bytes, Audiences], TokenVerdict] = DecisionCache(
            "token",
            ttl=ttl,
            negative_ttl=negative_ttl,
            positive=lambda v: v.caller is not None,
            max_entries=max_entries,
            clock=clock,
        )
        self.accesses: DecisionCache[tuple[Any, ...], Decision] = DecisionCache(
            "access",
            ttl=ttl,
            negative_ttl=negative_ttl,
            positive=lambda d: d.allowed,
            max_entries=max_entries,
            clock=clock,
        )
        self._parallel = asyncio.Semaphore(MAX_PARALLEL_REVIEWS)

    async def authenticate(self, token: str | None) -> Caller:
        """The caller ``token`` stands for; Refused UNAUTHENTICATED or UNAVAILABLE."""
        if not token:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "no bearer token: call with a Kubernetes token (authorization: Bearer TOKEN)",
            )
        key = (hashlib.sha256(token.encode()).digest(), self.audiences)
        try:
            verdict = await self.tokens.get(key, lambda: self._review_token(token))
        except ReviewUnavailable as e:
            raise Refused(
                grpc.StatusCode.UNAVAILABLE, f"cannot authenticate the caller now: {e}"
            ) from e
        if verdict.caller is None:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the bearer token was refused: {verdict.error}; {self.audiences.wanted()}",
            )
        return verdict.caller

    async def _review_token(self, token: str) -> TokenVerdict:
        """The TokenReview for the rollout API's audiences; if it refuses and
        ``audiences.api_server``, the one for the API server's own."""
        wanted = self.audiences
        why: list[str] = []
        if wanted.names:
            verdict = await self.reviews.review_token(token, wanted.names)
            if verdict.caller is not None:
                if granted_audiences(wanted.names, verdict.audiences):
                    return verdict
                answered = ", ".join(verdict.audiences) or "none"
                why.append(
                    f"the TokenReview did not confirm the audience (status.audiences: {answered})"
                )
            else:
                why.append(verdict.error)
        if wanted.api_server:
            verdict = await self.reviews.review_token(token, ())
            if verdict.caller is not None:
                return verdict
            why.append(verdict.error)
        return TokenVerdict(None, "; ".join(dict.fromkeys(w for w in why if w)))

    async def _decide(self, caller: Caller, access: Access) -> Decision:
        key = (
            caller.username,
            caller.groups,
            access.verb,
            access.group,
            access.resource,
            access.subresource,
            access.namespace,
            access.name,
        )

        async def review() -> Decision:
            async with self._parallel:
                return await self.reviews.review_access(caller, access)

        return await self.accesses.get(key, review)

    async def authorize(self, caller: Caller, accesses: Sequence[Access]) -> None:
        """Every access allowed, or Refused PERMISSION_DENIED (the first denied, in order)
        or UNAVAILABLE."""
        if not accesses:
            return
        if len(accesses) == 1:
            decisions = [await self._decide(caller, accesses[0])]
        else:
            decisions = list(await asyncio.gather(*(self._decide(caller, a) for a in accesses)))
        for access, decision in zip(accesses, decisions, strict=True):
            if not decision.allowed:
                raise Refused(
                    grpc.StatusCode.PERMISSION_DENIED,
                    forbidden_message(caller, access, decision.reason),
                )

    async def check(self, method: str, token: str | None, request: Any) -> Caller:
        """Authenticate, then authorize ``method`` for ``request``; counted and logged."""
        try:
            caller = await self.authenticate(token)
            rule = RULES.get(method)
            if rule is None:
                raise Refused(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} is not served to callers from outside the mesh",
                )
            try:
                await self.authorize(caller, rule.accesses(request))
            except ReviewUnavailable as e:
                raise Refused(
                    grpc.StatusCode.UNAVAILABLE, f"cannot authorize the call now: {e}"
                ) from e
        except Refused as e:
            AUTH.labels(e.RESULT.get(e.code, "refused")).inc()
            level = logging.INFO if e.code == grpc.StatusCode.UNAUTHENTICATED else logging.WARNING
            log.log(
                level,
                "refused an API call",
                extra={"method": method, "code": e.code.name, "reason": e.message},
            )
            raise
        AUTH.labels("allowed").inc()
        return caller

    # -- the two fronts ------------------------------------------------------------------------
    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return CallerInterceptor(self)

    def http_middleware(self) -> Any:
        @web.middleware
        async def authorize(
            request: web.Request, handler: rollout_http.Handler
        ) -> web.StreamResponse:
            resource = request.match_info.route.resource
            canonical = resource.canonical if resource is not None else ""
            if canonical in PUBLIC_HTTP:
                return await handler(request)
            token = bearer(request.headers.get("Authorization"))
            route = HTTP_ROUTES.get(canonical)
            try:
                if route is None:  # an unknown path or method: who asks, then its 404/405
                    try:
                        await self.authenticate(token)
                    except Refused as e:
                        AUTH.labels(e.RESULT.get(e.code, "refused")).inc()
                        raise
                else:
                    method, build = route
                    await self.check(method, token, build(request.match_info))
            except Refused as e:
                return refusal_response(e)
            return await handler(request)

        return authorize


def refusal_response(refused: Refused) -> web.Response:
    """The HTTP answer to a refused call: a Kubernetes Status (401 with WWW-Authenticate)."""
    code = refused.http_status
    body = rollout_http.status_body(code, refused.message, grpc_code=refused.code.name)
    response = web.Response(body=orjson.dumps(body), status=code, content_type="application/json")
    if code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="kruise-mesh"'
    return response


def _token_of(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == "authorization" and isinstance(value, str):
            return bearer(value)
    return None


class CallerInterceptor(grpc.aio.ServerInterceptor):
    """Runs ``Callers.check`` on each call's deserialized request before its servicer; a
    refusal ends the call with its code and message."""

    def __init__(self, callers: Callers) -> None:
        self.callers = callers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        method = details.method
        if handler is None or is_public(method):
            return handler
        token = _token_of(details)
        callers = self.callers

        async def checked(request: Any, context: Any) -> None:
            try:
                await callers.check(method, token, request)
            except Refused as e:
                await context.abort(e.code, e.message)

        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                await checked(request, context)
                return await behavior(request, context)

            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None:
            streaming = handler.unary_stream

            async def stream(request: Any, context: Any) -> Any:
                await checked(request, context)
                async for answer in streaming(request, context):
                    yield answer

            return handler._replace(unary_stream=stream)
        # A request stream: nothing in RULES takes one; who asks, then refused.
        attribute = "stream_unary" if handler.stream_unary is not None else "stream_stream"

        async def refuse(requests: Any, context: Any) -> Any:
            await checked(None, context)

        return handler._replace(**{attribute: refuse})


# ---- --api-auth off ------------------------------------------------------------------------------
def check_off_allowed(host: str, *, api_auth: str, serving: bool) -> None:
    """``--api-auth off`` only while the API ports listen on loopback; ValueError otherwise."""
    if api_auth == "off" and serving and not is_loopback(host):
        raise ValueError(
            f"--api-auth off is allowed only when the API ports listen on loopback "
            f"(--host 127.0.0.1 or ::1), not on {host!r}: every caller would reach the "
            "rollout API unauthenticated; use --api-auth token"
        )


async def warn_unauthenticated(every: float = OFF_WARNING_EVERY_S) -> None:
    """Say at start, and once a minute, that the API ports take anyone (until cancelled)."""
    while True:
        log.warning(OFF_WARNING + " (--api-auth off): any local process may call them")
        await asyncio.sleep(every)
