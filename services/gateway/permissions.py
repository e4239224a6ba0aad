"""Who may ask the gateway's ClusterService for what: one table per mesh component.

Pure; no I/O. ``services.gateway.cluster_api.ClusterApi`` calls ``authorize`` on every call,
after resolving the request's (apiVersion, kind) to its REST resource through discovery and
before anything is sent to the API server on the caller's behalf; a denial becomes
PERMISSION_DENIED there. ``tests/unit/test_deploy_manifests.py`` checks that the gateway's
RBAC in deploy/ grants exactly ``gateway_grants()``: what these tables let the services ask
for, what those writes make the gateway read, and what the gateway does on its own
(``GATEWAY_OWN``). One table is the truth for both.

A ClusterService call is checked as the request the gateway will make::

    Get            get     <resource>
    GetScale       get     <resource>/scale
    Create         create  <resource>
    Patch          patch   <resource>            or <resource>/status
    UpdateStatus   patch   <resource>/status     (<resource> for a kind without /status)
    Delete         delete  <resource>
    RecordEvent    create  events                in the involved object's namespace

The services' tables (group "" is the core group; "*" matches any)::

    placement  create  persistentpodstates.apps.kruise.io          generates one from a workload
               patch   persistentpodstates.apps.kruise.io          replaces a generated spec
               delete  persistentpodstates.apps.kruise.io          un-generates
               patch   persistentpodstates.apps.kruise.io/status   records pod states
               create  events

    budget     get     podunavailablebudgets.policy.kruise.io         re-reads after a conflict
               patch   podunavailablebudgets.policy.kruise.io/status  spends, records
               get     pods                                           the pod a review names
               patch   pods      only metadata.annotations[kruise.io/related-pub]
               get     deployments.apps, replicasets.apps, statefulsets.apps,
                       statefulsets.apps.kruise.io, clonesets.apps.kruise.io
                                                                      a pod's owner, uncached
               get     *.*/scale                                      any other targeted kind
               create  events

    rollout    create, patch, delete   pods                       the CloneSet controller
               patch   pods/status                                InPlaceUpdateReady, KruisePodReady
               create, delete          persistentvolumeclaims     volumeClaimTemplates
               create, patch, delete   controllerrevisions.apps   revisions
               patch   clonesets.apps.kruise.io   only metadata.annotations[<the rollout API's
                                                  three>] and spec.updateStrategy.{partition,paused}
               patch   clonesets.apps.kruise.io/status
               create  events

    gateway    nothing: the gateway never calls its own ClusterService.
    operator   nothing: the mesh's tooling (launcher, tests) reads replicas, not the cluster.

A constrained patch ("only ...") must be a JSON merge patch (a strategic merge patch of the
same object means the same) that touches nothing but the listed paths: every key is on the
way to, or is, one of them. A JSON patch, a ``$patch`` directive or ``metadata: null`` is
refused.

Namespaces: nobody writes (create, patch, delete, Events) into ``protected_namespaces``:
Kubernetes' own (kube-system, kube-public, kube-node-lease) and the mesh's, which only the
gateway writes (its Lease and Secret), and never through this API. Reads are not limited by
namespace; the tables limit what may be read.

A caller without a mesh identity (``component`` None: plain TCP, loopback tests and local
mode, where ``ClusterApi`` does not require certificates) is checked against the union of
the tables: the gateway cannot tell the services apart, but still refuses anything no
service may do, such as creating a pod in kube-system or deleting a node.

What the gateway's RBAC must grant (``gateway_grants``) is the rows above as grants, a
``get`` of the main resource for every patch row (the re-read after a conditional write
fails with 422, ``ClusterApi._raise_if_stale``), and ``GATEWAY_OWN``, each row naming the
file that makes the request (a test greps the gateway for its requests to keep it honest)::

    list, watch   every kind of hub.WATCHED                 hub.py            cluster
    get           customresourcedefinitions                 statefulset_like  cluster
    get, patch    {mutating,validating}webhookconfigurations
                  named kruise-mesh-{mutating,validating}   certs.py          cluster
    create        tokenreviews, subjectaccessreviews        callers.py        cluster
    create        secrets                                   certs, mesh_certs mesh namespace
    get, update   secrets kruise-mesh-webhook-certs         certs.py          mesh namespace
    get, update   secrets kruise-mesh-ca                    mesh_certs.py     mesh namespace
    get, update   secrets kruise-mesh-<service>-tls         mesh_certs.py     mesh namespace
    create        leases                                    leader.py         mesh namespace
    get, update   leases kruise-mesh-gateway                leader.py         mesh namespace
    list, watch   endpointslices                            discovery.py      mesh namespace
    (local mode only, not deploy/: namespaces create; CRDs and webhook configurations
     create, get, update, delete, register.py)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Verb = Literal["get", "create", "patch", "delete"]
"""The API server verbs a ClusterService call can become."""

RELATED_PUB = "kruise.io/related-pub"
# The rollout API's annotations on a CloneSet (services.rollout.report, checked by a test).
ROLLOUT_ID = "rollout.kruise-mesh.io/rollout-id"
LAST_REQUEST_ID = "rollout.kruise-mesh.io/last-request-id"
CONTROL_INFO = "batchrelease.rollouts.kruise.io/control-info"

KUBERNETES_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


def protected_namespaces(mesh_namespace: str) -> frozenset[str]:
    """Where no ClusterService caller may write: Kubernetes' own namespaces and the mesh's."""
    return KUBERNETES_NAMESPACES | {mesh_namespace}


PROTECTED = protected_namespaces("kruise-mesh")


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed`` and why, naming the component, the verb and the resource."""

    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class MergePatchOnly:
    """A patch that may set the listed paths and nothing else (see the module docstring)."""

    paths: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        return ", ".join(_dotted(p) for p in self.paths)

    def refusal(self, patch: bytes | None) -> str | None:
        """Why ``patch`` goes beyond ``paths``; None when it stays inside them. Pure."""
        if patch is None:
            return "is not a merge patch"
        try:
            doc = orjson.loads(patch)
        except orjson.JSONDecodeError:
            return "is not valid JSON"
        if not isinstance(doc, dict):
            return "is not a merge patch (a JSON object)"
        outside = _outside(doc, self.paths, ())
        return None if outside is None else f"changes {outside}"


def _dotted(path: tuple[str, ...]) -> str:
    """``metadata.annotations[kruise.io/related-pub]``: keys with dots or slashes bracketed."""
    out = ""
    for part in path:
        if "." in part or "/" in part:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _outside(
    doc: Mapping[str, Any], allowed: tuple[tuple[str, ...], ...], at: tuple[str, ...]
) -> str | None:
    """The first path in ``doc`` that is neither an allowed path nor on the way to one."""
    for key, value in doc.items():
        path = (*at, key)
        if path in allowed:
            continue
        on_the_way = any(a[: len(path)] == path for a in allowed)
        if not (on_the_way and isinstance(value, dict)):
            return _dotted(path)
        deeper = _outside(value, allowed, path)
        if deeper is not None:
            return deeper
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of a component's table: ``verb`` on ``group``/``resource``[/``subresource``]."""

    verb: Verb
    group: str
    resource: str
    subresource: str = ""
    only: MergePatchOnly | None = None
    why: str = ""

    @property
    def name(self) -> str:
        return resource_name(group=self.group, resource=self.resource, subresource=self.subresource)

    def matches(self, *, verb: str, group: str, resource: str, subresource: str) -> bool:
        return (
            self.verb == verb
            and self.group in ("*", group)
            and self.resource in ("*", resource)
            and self.subresource == subresource
        )


Table = tuple[Rule, ...]


def resource_name(*, group: str, resource: str, subresource: str = "") -> str:
    """As ``kubectl auth can-i`` spells it: ``pods``, ``clonesets.apps.kruise.io/status``."""
    name = f"{resource}.{group}" if group else resource
    return f"{name}/{subresource}" if subresource else name


EVENTS = Rule("create", "", "events", why="Events on the objects it acts on")

PLACEMENT: Table = (
    Rule("create", "apps.kruise.io", "persistentpodstates", why="generates one for a workload"),
    Rule("patch", "apps.kruise.io", "persistentpodstates", why="replaces a generated spec"),
    Rule("delete", "apps.kruise.io", "persistentpodstates", why="deletes an un-asked one"),
    Rule(
        "patch",
        "apps.kruise.io",
        "persistentpodstates",
        "status",
        why="records where pods ran",
    ),
    EVENTS,
)

_OWNER_READ = "resolves a pod's owner in a namespace it does not cache"
BUDGET: Table = (
    Rule("get", "policy.kruise.io", "podunavailablebudgets", why="re-reads after a conflict"),
    Rule(
        "patch",
        "policy.kruise.io",
        "podunavailablebudgets",
        "status",
        why="spends and records the budget",
    ),
    Rule("get", "", "pods", why="reads the pod a review names when its cache does not hold it"),
    Rule(
        "patch",
        "",
        "pods",
        only=MergePatchOnly((("metadata", "annotations", RELATED_PUB),)),
        why="links a pod to its budget",
    ),
    Rule("get", "apps", "deployments", why=_OWNER_READ),
    Rule("get", "apps", "replicasets", why=_OWNER_READ),
    Rule("get", "apps", "statefulsets", why=_OWNER_READ),
    Rule("get", "apps.kruise.io", "statefulsets", why=_OWNER_READ),
    Rule("get", "apps.kruise.io", "clonesets", why=_OWNER_READ),
    Rule("get", "*", "*", "scale", why="counts the replicas of any kind a budget targets"),
    EVENTS,
)

ROLLOUT: Table = (
    Rule("create", "", "pods", why="scales a CloneSet out, re-creates pods"),
    Rule("patch", "", "pods", why="lifecycle states, in-place updates, batch labels"),
    Rule("delete", "", "pods", why="scales in, re-creates pods"),
    Rule("patch", "", "pods", "status", why="InPlaceUpdateReady, KruisePodReady"),
    Rule("create", "", "persistentvolumeclaims", why="a new pod's volumeClaimTemplates"),
    Rule("delete", "", "persistentvolumeclaims", why="the claims of a deleted pod"),
    Rule("create", "apps", "controllerrevisions", why="records a revision"),
    Rule("patch", "apps", "controllerrevisions", why="renumbers a revision a rollback reuses"),
    Rule("delete", "apps", "controllerrevisions", why="prunes the history"),
    Rule(
        "patch",
        "apps.kruise.io",
        "clonesets",
        only=MergePatchOnly(
            (
                ("metadata", "annotations", ROLLOUT_ID),
                ("metadata", "annotations", LAST_REQUEST_ID),
                ("metadata", "annotations", CONTROL_INFO),
                ("spec", "updateStrategy", "partition"),
                ("spec", "updateStrategy", "paused"),
            )
        ),
        why="the rollout API's SetPartition and Release",
    ),
    Rule("patch", "apps.kruise.io", "clonesets", "status", why="the CloneSet's status"),
    EVENTS,
)

TABLES: Mapping[str, Table] = {
    "placement": PLACEMENT,
    "rollout": ROLLOUT,
    "budget": BUDGET,
    # The gateway never calls its own ClusterService; the mesh's tooling reads replica status
    # from the services, never the cluster through the gateway.
    "gateway": (),
    "operator": (),
}


def authorize(
    component: str | None,
    *,
    verb: str,
    group: str,
    resource: str,
    subresource: str = "",
    namespace: str,
    patch: bytes | None = None,
    tables: Mapping[str, Table] = TABLES,
    protected: frozenset[str] = PROTECTED,
) -> Decision:
    """May ``component`` (None: unknown, any table) ``verb`` this resource in ``namespace``?

    Pure. ``patch`` is the patch as the caller sent it (before the gateway adds its
    preconditions), for rows with an ``only`` constraint. The reason names the component,
    the verb and the resource either way.
    """
    who = component or "a caller without a mesh identity"
    name = resource_name(group=group, resource=resource, subresource=subresource)
    if verb != "get" and namespace in protected:
        return Decision(
            False,
            f"{who} may not {verb} {name} in namespace {namespace}: no mesh service writes there",
        )
    if component is None:
        rows: Iterable[Rule] = (r for table in tables.values() for r in table)
    else:
        rows = tables.get(component, ())
    matching = [
        r
        for r in rows
        if r.matches(verb=verb, group=group, resource=resource, subresource=subresource)
    ]
    if not matching:
        return Decision(False, f"{who} may not {verb} {name}")
    refusals = []
    for rule in matching:
        if rule.only is None:
            return Decision(True, f"{who} may {verb} {name}: {rule.why}")
        refusal = rule.only.refusal(patch)
        if refusal is None:
            return Decision(True, f"{who} may {verb} {name}: {rule.why}")
        refusals.append(f"only to change {rule.only.describe()}, and this patch {refusal}")
    return Decision(False, f"{who} may {verb} {name} {'; or '.join(refusals)}")


# -- what the gateway's RBAC must grant ---------------------------------------------------------

Scope = Literal["cluster", "mesh-namespace"]


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """One RBAC permission: ``verb`` on ``resource`` (``pods``, ``pods/status``) in ``group``,
    limited to the object ``name`` when set, through the ClusterRole (``cluster``) or the Role
    in the mesh's namespace (``mesh-namespace``)."""

    verb: str
    group: str
    resource: str
    name: str = ""
    scope: Scope = "cluster"

    def __str__(self) -> str:
        group = self.group or "core"
        named = f" named {self.name}" if self.name else ""
        where = "cluster-wide" if self.scope == "cluster" else "in the mesh namespace"
        return f"{self.verb} {self.resource} ({group}){named} {where}"


@dataclass(frozen=True, slots=True)
class Own:
    """A request the gateway makes on its own account, and the file that makes it."""

    verbs: tuple[str, ...]
    group: str
    resource: str
    by: str
    why: str
    names: tuple[str, ...] = ()
    scope: Scope = "cluster"
    # False: local mode only (``make run``, against a kubeconfig's admin), not deploy/.
    deployed: bool = True


# The mesh CA's Secret as deploy/ names it (--mesh-ca-secret; empty with cert-manager).
MESH_CA_SECRET = "kruise-mesh-ca"

_HUB = "services/gateway/hub.py"
_WATCH = "the watch hub (WATCHED)"
_LOCAL = "local mode (--install-crds, --local-webhooks)"

GATEWAY_OWN: tuple[Own, ...] = (
    Own(("list", "watch"), "", "pods", _HUB, _WATCH),
    Own(("list", "watch"), "", "nodes", _HUB, _WATCH),
    Own(("list", "watch"), "", "persistentvolumeclaims", _HUB, _WATCH),
    Own(("list", "watch"), "apps", "statefulsets", _HUB, _WATCH),
    Own(("list", "watch"), "apps", "deployments", _HUB, _WATCH),
    Own(("list", "watch"), "apps", "replicasets", _HUB, _WATCH),
    Own(("list", "watch"), "apps", "controllerrevisions", _HUB, _WATCH),
    Own(("list", "watch"), "apps.kruise.io", "clonesets", _HUB, _WATCH),
    Own(("list", "watch"), "apps.kruise.io", "persistentpodstates", _HUB, _WATCH),
    Own(("list", "watch"), "apps.kruise.io", "statefulsets", _HUB, _WATCH),
    Own(("list", "watch"), "policy.kruise.io", "podunavailablebudgets", _HUB, _WATCH),
    Own(
        ("get",),
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "services/gateway/statefulset_like.py",
        "the /scale paths of the statefulset-like kinds",
    ),
    Own(
        ("get", "patch"),
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "services/gateway/certs.py",
        "publishes the webhook CA (caBundle)",
        names=("kruise-mesh-mutating",),
    ),
    Own(
        ("get", "patch"),
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "services/gateway/certs.py",
        "publishes the webhook CA (caBundle)",
        names=("kruise-mesh-validating",),
    ),
    Own(
        ("create",),
        "",
        "secrets",
        "services/gateway/certs.py",
        "stores the webhook certificate it made (create cannot be limited by name)",
        scope="mesh-namespace",
    ),
    Own(
        ("get", "update"),
        "",
        "secrets",
        "services/gateway/certs.py",
        "reads the webhook certificate the replicas share; renews it and rotates its CA",
        names=("kruise-mesh-webhook-certs",),
        scope="mesh-namespace",
    ),
    Own(
        ("create",),
        "",
        "secrets",
        "services/gateway/mesh_certs.py",
        "stores the mesh CA it made, and the services' first mesh certificates",
        scope="mesh-namespace",
    ),
    Own(
        ("get", "update"),
        "",
        "secrets",
        "services/gateway/mesh_certs.py",
        "reads the mesh CA (--mesh-ca-secret) and the gateway's mesh certificate beside it; "
        "rotates the CA and renews that certificate",
        names=(MESH_CA_SECRET,),
        scope="mesh-namespace",
    ),
    Own(
        ("get", "update"),
        "",
        "secrets",
        "services/gateway/mesh_certs.py",
        "renews each service's mesh certificate in the Secret its pods mount",
        names=tuple(f"kruise-mesh-{c}-tls" for c in ("placement", "rollout", "budget")),
        scope="mesh-namespace",
    ),
    Own(
        ("create",),
        "coordination.k8s.io",
        "leases",
        "services/gateway/leader.py",
        "leader election: the first holder creates the Lease",
        scope="mesh-namespace",
    ),
    Own(
        ("get", "update"),
        "coordination.k8s.io",
        "leases",
        "services/gateway/leader.py",
        "leader election: takes, renews and releases the Lease",
        names=("kruise-mesh-gateway",),
        scope="mesh-namespace",
    ),
    Own(
        ("list", "watch"),
        "discovery.k8s.io",
        "endpointslices",
        "services/gateway/discovery.py",
        "finds the service replicas behind their headless Services",
        scope="mesh-namespace",
    ),
    # Callers from outside the mesh (issue 10): their token, and what it may touch.
    Own(
        ("create",),
        "authentication.k8s.io",
        "tokenreviews",
        "services/gateway/callers.py",
        "authenticates an external caller's token",
    ),
    Own(
        ("create",),
        "authorization.k8s.io",
        "subjectaccessreviews",
        "services/gateway/callers.py",
        "authorizes an external caller's request",
    ),
    # Local mode only: the gateway runs with the kubeconfig's (admin) rights.
    Own(
        ("create",),
        "",
        "namespaces",
        "services/gateway/app.py",
        "makes the mesh namespace in local mode (refused in a cluster, and ignored)",
        deployed=False,
    ),
    Own(
        ("create", "get", "update"),
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "services/gateway/register.py",
        _LOCAL,
        deployed=False,
    ),
    Own(
        ("create", "get", "update", "delete"),
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "services/gateway/register.py",
        _LOCAL,
        deployed=False,
    ),
    Own(
        ("create", "get", "update", "delete"),
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "services/gateway/register.py",
        _LOCAL,
        deployed=False,
    ),
)


def service_grants(tables: Mapping[str, Table] = TABLES) -> dict[Grant, list[str]]:
    """What the gateway needs to carry out what ``tables`` allow, and who needs each. Pure.

    A row's verb on its resource; and a patch's ``get`` of the main resource, which the
    gateway reads when a conditional patch fails with 422 to tell a stale precondition from
    an invalid patch (``ClusterApi._raise_if_stale``).
    """
    out: dict[Grant, list[str]] = {}
    for component, table in tables.items():
        for rule in table:
            resource = f"{rule.resource}/{rule.subresource}" if rule.subresource else rule.resource
            needed = [(Grant(rule.verb, rule.group, resource), rule.why)]
            if rule.verb == "patch":
                needed.append((Grant("get", rule.group, rule.resource), "re-read after a 422"))
            for grant, why in needed:
                out.setdefault(grant, []).append(f"{component} {rule.verb} {rule.name} ({why})")
    return out


def own_grants(*, deployed_only: bool = True) -> dict[Grant, list[str]]:
    """The gateway's own requests (``GATEWAY_OWN``) as grants, with who needs each. Pure."""
    out: dict[Grant, list[str]] = {}
    for own in GATEWAY_OWN:
        if deployed_only and not own.deployed:
            continue
        for verb in own.verbs:
            for name in own.names or ("",):
                grant = Grant(verb, own.group, own.resource, name, own.scope)
                out.setdefault(grant, []).append(f"gateway ({own.why})")
    return out


def gateway_grants(tables: Mapping[str, Table] = TABLES) -> dict[Grant, list[str]]:
    """Everything the gateway's RBAC in deploy/ must grant, and nothing more, with who needs
    each grant: ``service_grants`` and the deployed ``GATEWAY_OWN``. Pure."""
    out = service_grants(tables)
    for grant, who in own_grants().items():
        out.setdefault(grant, []).extend(who)
    return out
