"""The registry of resource types the sandbox serves: built-ins plus CRD-registered ones.

Pure data; no I/O. A ``ResourceType`` says where a kind lives (group, versions, plural),
whether it is namespaced, which subresources it has, and how its ``/scale`` maps onto the
object. ``Registry.lookup(group, version, resource)`` resolves a request path;
``types_from_crd(crd)`` turns a CustomResourceDefinition into the types it registers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ScaleSpec:
    """Where ``/scale`` reads and writes: dotted paths such as ``.spec.replicas``."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None
    # apps kinds render spec.selector (a LabelSelector object) into a string
    selector_from_spec: bool = False


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]
    resource: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status: bool = False
    scale: ScaleSpec | None = None
    extra_subresources: tuple[str, ...] = ()
    custom: bool = False
    generation: bool = False
    verbs: tuple[str, ...] = VERBS_ALL
    # built-in delete of these answers the deleted object; others answer a Status
    returns_object_on_delete: bool = False
    categories: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.resource)

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str | None = None) -> str:
        v = version or self.storage_version
        return f"{self.group}/{v}" if self.group else v

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def _t(
    group: str,
    resource: str,
    kind: str,
    *,
    namespaced: bool = True,
    version: str = "v1",
    short: tuple[str, ...] = (),
    status: bool = False,
    scale: ScaleSpec | None = None,
    extra: tuple[str, ...] = (),
    generation: bool = False,
    returns_object: bool = False,
    verbs: tuple[str, ...] = VERBS_ALL,
) -> ResourceType:
    return ResourceType(
        group=group,
        versions=(version,),
        resource=resource,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short,
        status=status,
        scale=scale,
        extra_subresources=extra,
        generation=generation or status,
        returns_object_on_delete=returns_object,
        verbs=verbs,
    )


_APPS_SCALE = ScaleSpec(selector_from_spec=True)
_RBAC = "rbac.authorization.k8s.io"
_AUTHN = "authentication.k8s.io"
_AUTHZ = "authorization.k8s.io"
_NO_COLLECTION = tuple(v for v in VERBS_ALL if v != "deletecollection")

BUILTINS: tuple[ResourceType, ...] = (
    _t(
        "",
        "pods",
        "Pod",
        short=("po",),
        status=True,
        extra=("binding", "eviction"),
        returns_object=True,
    ),
    _t("", "nodes", "Node", namespaced=False, short=("no",), status=True, returns_object=True),
    _t(
        "",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        status=True,
        returns_object=True,
        verbs=_NO_COLLECTION,
    ),
    _t("", "events", "Event", short=("ev",)),
    _t("", "endpoints", "Endpoints", short=("ep",)),
    _t(
        "",
        "services",
        "Service",
        short=("svc",),
        status=True,
        returns_object=True,
        verbs=_NO_COLLECTION,
    ),
    _t("", "configmaps", "ConfigMap", short=("cm",)),
    _t(
        "",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        short=("pvc",),
        status=True,
        returns_object=True,
    ),
    _t("", "secrets", "Secret"),
    _t("", "serviceaccounts", "ServiceAccount", short=("sa",), extra=("token",)),
    _t("apps", "statefulsets", "StatefulSet", short=("sts",), status=True, scale=_APPS_SCALE),
    _t("apps", "deployments", "Deployment", short=("deploy",), status=True, scale=_APPS_SCALE),
    _t("apps", "replicasets", "ReplicaSet", short=("rs",), status=True, scale=_APPS_SCALE),
    _t("apps", "daemonsets", "DaemonSet", short=("ds",), status=True),
    _t("apps", "controllerrevisions", "ControllerRevision"),
    _t("batch", "jobs", "Job", status=True),
    _t("coordination.k8s.io", "leases", "Lease"),
    _t("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    _t("events.k8s.io", "events", "Event", short=("ev",)),
    _t("policy", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
    _t(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
        generation=True,
    ),
    _t(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
        generation=True,
    ),
    _t(_RBAC, "roles", "Role"),
    _t(_RBAC, "clusterroles", "ClusterRole", namespaced=False),
    _t(_RBAC, "rolebindings", "RoleBinding"),
    _t(_RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    # create-only reviews, answered by sandbox.auth and never stored
    _t(_AUTHN, "tokenreviews", "TokenReview", namespaced=False, verbs=("create",)),
    _t(_AUTHN, "selfsubjectreviews", "SelfSubjectReview", namespaced=False, verbs=("create",)),
    _t(_AUTHZ, "subjectaccessreviews", "SubjectAccessReview", namespaced=False, verbs=("create",)),
    _t(
        _AUTHZ,
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        namespaced=False,
        verbs=("create",),
    ),
    _t(_AUTHZ, "localsubjectaccessreviews", "LocalSubjectAccessReview", verbs=("create",)),
    _t(
        _AUTHZ,
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        namespaced=False,
        verbs=("create",),
    ),
    _t(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        status=True,
    ),
)

# Built-ins whose objects go to admission with a resource other than their own.
NEVER_ADMITTED = frozenset(
    {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    }
)


def _path(value: Any) -> str | None:
    return str(value) if value else None


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource type a CRD registers (one per CRD, listing its served versions).

    Pure. Subresources are taken from the storage version (they rarely differ).
    """
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    if not versions:
        return []
    storage = next((v for v in versions if v.get("storage")), versions[0])
    ordered = [storage["name"]] + [v["name"] for v in versions if v is not storage]
    subs = storage.get("subresources") or spec.get("subresources") or {}
    scale: ScaleSpec | None = None
    if "scale" in subs:
        s = subs["scale"] or {}
        scale = ScaleSpec(
            spec_replicas_path=_path(s.get("specReplicasPath")) or ".spec.replicas",
            status_replicas_path=_path(s.get("statusReplicasPath")) or ".status.replicas",
            label_selector_path=_path(s.get("labelSelectorPath")),
        )
    return [
        ResourceType(
            group=str(spec.get("group", "")),
            versions=tuple(ordered),
            resource=str(names.get("plural", "")),
            kind=str(names.get("kind", "")),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=str(names.get("singular") or str(names.get("kind", "")).lower()),
            short_names=tuple(names.get("shortNames") or ()),
            status="status" in subs,
            scale=scale,
            custom=True,
            generation=True,
            categories=tuple(names.get("categories") or ()),
        )
    ]


class Registry:
    """Resource types by (group, resource); lookups by path element or kind."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        for rt in BUILTINS:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[rt.key] = rt

    def remove(self, group: str, resource: str) -> None:
        self._types.pop((group, resource), None)

    def get(self, group: str, resource: str) -> ResourceType | None:
        return self._types.get((group, resource))

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        rt = self._types.get((group, resource))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Group name → served versions, preferred (storage) version first."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            vs = out.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in vs:
                    vs.append(v)
        return out
