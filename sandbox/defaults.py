"""Built-in defaulting and validation that kube-apiserver applies before storing.

Pure; no I/O. ``default_object`` fills the defaults the real server adds (pods get
restartPolicy, dnsPolicy, tolerations, per-container pull policy and so on; workloads get
``replicas: 1``; a new PersistentVolumeClaim gets ``volumeMode: Filesystem`` and phase
``Pending``); ``validate_create`` / ``validate_update`` raise ``ApiError`` 422 for the
few rules the project relies on (pod containers need name and image; a pod's spec may change
only in images, activeDeadlineSeconds, added tolerations and terminationGracePeriodSeconds).
``spec_changed`` decides generation bumps. ``namespace_objects`` lists what kube-controller-manager
puts in every namespace (and makes again when deleted: ``is_namespace_object``).
"""

from __future__ import annotations

import re
from typing import Any

from sandbox import errors
from sandbox.auth.rbac import RBAC_KEYS, validation_causes
from sandbox.resources import ResourceType

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_RESTART = ("Always", "OnFailure", "Never")

DEFAULT_TOLERATIONS: tuple[dict[str, Any], ...] = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def _default_container(c: dict[str, Any]) -> dict[str, Any]:
    out = dict(c)
    image = str(out.get("image") or "")
    if "imagePullPolicy" not in out:
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        out["imagePullPolicy"] = "IfNotPresent" if tagged or "@" in image else "Always"
    out.setdefault("resources", {})
    out.setdefault("terminationMessagePath", "/dev/termination-log")
    out.setdefault("terminationMessagePolicy", "File")
    return out


def default_pod_spec(spec: dict[str, Any], *, with_admission: bool) -> dict[str, Any]:
    """Pod spec defaults; ``with_admission`` adds what built-in admission plugins add."""
    out = dict(spec)
    out["containers"] = [_default_container(c) for c in out.get("containers") or []]
    if out.get("initContainers"):
        out["initContainers"] = [_default_container(c) for c in out["initContainers"]]
    out.setdefault("restartPolicy", "Always")
    out.setdefault("terminationGracePeriodSeconds", 30)
    out.setdefault("dnsPolicy", "ClusterFirst")
    out.setdefault("securityContext", {})
    out.setdefault("schedulerName", "default-scheduler")
    if with_admission:
        out.setdefault("serviceAccountName", "default")
        out.setdefault("serviceAccount", out["serviceAccountName"])
        tols = list(out.get("tolerations") or [])
        have = {(t.get("key"), t.get("effect")) for t in tols}
        for t in DEFAULT_TOLERATIONS:
            if (t["key"], t["effect"]) not in have:
                tols.append(dict(t))
        out["tolerations"] = tols
        out.setdefault("priority", 0)
        out.setdefault("enableServiceLinks", True)
        out.setdefault("preemptionPolicy", "PreemptLowerPriority")
    return out


def default_object(rt: ResourceType, obj: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Return ``obj`` with built-in defaults filled in (a shallow-copied result)."""
    if rt.custom:
        return obj
    key = rt.key
    if key == ("", "pods"):
        out = dict(obj)
        out["spec"] = default_pod_spec(dict(obj.get("spec") or {}), with_admission=creating)
        if creating:
            status = dict(out.get("status") or {})
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", "BestEffort")
            out["status"] = status
        return out
    if rt.group == "apps" and rt.resource in ("statefulsets", "deployments", "replicasets"):
        out = dict(obj)
        spec = dict(obj.get("spec") or {})
        spec.setdefault("replicas", 1)
        if rt.resource == "statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault(
                "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
            )
            spec.setdefault("revisionHistoryLimit", 10)
        tmpl = spec.get("template")
        if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
            tmpl = dict(tmpl)
            tmpl["spec"] = default_pod_spec(tmpl["spec"], with_admission=False)
            spec["template"] = tmpl
        out["spec"] = spec
        return out
    if key == ("", "persistentvolumeclaims") and creating:
        # SetDefaults_PersistentVolumeClaim / SetDefaults_PersistentVolumeClaimSpec.
        out = dict(obj)
        spec = dict(obj.get("spec") or {})
        spec.setdefault("volumeMode", "Filesystem")
        out["spec"] = spec
        status = dict(out.get("status") or {})
        status.setdefault("phase", "Pending")
        out["status"] = status
        return out
    if key == ("", "namespaces"):
        out = dict(obj)
        spec = dict(obj.get("spec") or {})
        spec.setdefault("finalizers", ["kubernetes"])
        out["spec"] = spec
        status = dict(obj.get("status") or {})
        status.setdefault("phase", "Active")
        out["status"] = status
        meta = dict(out.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        labels.setdefault("kubernetes.io/metadata.name", str(meta.get("name", "")))
        meta["labels"] = labels
        out["metadata"] = meta
        return out
    return obj


ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


def namespace_objects(
    namespace: str, *, ca_pem: str | None
) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """The objects kube-controller-manager makes in each namespace, as (type key, object).

    Pure. The ServiceAccount controller makes ServiceAccount ``default``; the root-CA publisher
    makes ConfigMap ``kube-root-ca.crt`` whose ``ca.crt`` is the API server's CA bundle
    (none when ``ca_pem`` is None). ``sandbox.api.ApiCore`` stores them when a namespace is
    made (a real cluster does so asynchronously, a moment later), and again a moment after one
    is deleted, unless its namespace is being deleted too.
    """
    out: list[tuple[tuple[str, str], dict[str, Any]]] = [
        (
            ("", "serviceaccounts"),
            {
                "kind": "ServiceAccount",
                "apiVersion": "v1",
                "metadata": {"name": "default", "namespace": namespace},
            },
        )
    ]
    if ca_pem is not None:
        out.append(
            (
                ("", "configmaps"),
                {
                    "kind": "ConfigMap",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "namespace": namespace,
                        "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                    },
                    "data": {"ca.crt": ca_pem},
                },
            )
        )
    return out


def is_namespace_object(obj: dict[str, Any], *, ca_pem: str | None) -> bool:
    """Whether ``obj`` is one of the :func:`namespace_objects` of its namespace (by apiVersion,
    kind and name), which kube-controller-manager makes again when it is deleted.

    Pure. ``sandbox.api.ApiCore`` asks this of every removed object.
    """
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    if not namespace:
        return False
    return any(
        o["kind"] == obj.get("kind")
        and o["apiVersion"] == obj.get("apiVersion")
        and o["metadata"]["name"] == meta.get("name")
        for _, o in namespace_objects(namespace, ca_pem=ca_pem)
    )


def _cause(ctype: str, message: str, field: str) -> dict[str, str]:
    return {"reason": ctype, "message": message, "field": field}


def validate_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid for the built-in rules the sandbox enforces."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    causes: list[dict[str, str]] = []
    if rt.key in RBAC_KEYS:
        # RBAC names are path segments ("system:discovery"), not DNS subdomains
        if not name or name in (".", "..") or "/" in name or "%" in name:
            causes.append(
                _cause(
                    "FieldValueInvalid",
                    f"Invalid value: \"{name}\": may not contain '/' or '%'",
                    "metadata.name",
                )
            )
        causes.extend(validation_causes(rt.key, obj, None))
    elif not rt.custom and not _DNS_SUBDOMAIN.match(name):
        causes.append(
            _cause(
                "FieldValueInvalid",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
                "metadata.name",
            )
        )
    if rt.key == ("", "pods"):
        causes.extend(_pod_spec_causes(obj.get("spec") or {}))
    if causes:
        raise errors.invalid(kind=rt.kind, group=rt.group, name=name, causes=causes)


def _pod_spec_causes(spec: dict[str, Any]) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_cause("FieldValueRequired", "Required value", "spec.containers"))
    for i, c in enumerate(containers):
        cname = str(c.get("name") or "")
        if not _DNS_LABEL.match(cname):
            causes.append(
                _cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{cname}": a lowercase RFC 1123 label must consist of '
                    "lower case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                    f"spec.containers[{i}].name",
                )
            )
        if not c.get("image"):
            causes.append(
                _cause("FieldValueRequired", "Required value", f"spec.containers[{i}].image")
            )
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in _RESTART:
        causes.append(
            _cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{rp}": supported values: "Always", "Never", "OnFailure"',
                "spec.restartPolicy",
            )
        )
    return causes


def _mutable_pod_view(spec: dict[str, Any]) -> dict[str, Any]:
    view = dict(spec)
    for key in ("containers", "initContainers"):
        if view.get(key):
            view[key] = [{k: v for k, v in c.items() if k != "image"} for c in view[key]]
    view.pop("activeDeadlineSeconds", None)
    view.pop("tolerations", None)
    view.pop("terminationGracePeriodSeconds", None)
    return view


def validate_update(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise 422 for forbidden updates (pod spec immutability, name/namespace changes)."""
    if rt.key in RBAC_KEYS:
        causes = validation_causes(rt.key, new, old)
        if causes:
            name = str((new.get("metadata") or {}).get("name", ""))
            raise errors.invalid(kind=rt.kind, group=rt.group, name=name, causes=causes)
        return
    if rt.key != ("", "pods"):
        return
    old_spec = old.get("spec") or {}
    new_spec = new.get("spec") or {}
    if old_spec == new_spec:
        return
    old_node = old_spec.get("nodeName")
    if _mutable_pod_view(old_spec) != _mutable_pod_view(new_spec) or (
        old_node and new_spec.get("nodeName") != old_node
    ):
        name = str((new.get("metadata") or {}).get("name", ""))
        raise errors.invalid(
            kind="Pod",
            group="",
            name=name,
            causes=[
                _cause(
                    "FieldValueForbidden",
                    "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                    "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
                    "set to 1 if it was previously negative)",
                    "spec",
                )
            ],
        )


_META_SKIP = frozenset({"metadata", "status", "apiVersion", "kind"})


def spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when a write changes what ``metadata.generation`` tracks.

    For kinds with a status subresource that is everything but metadata and status; for the
    rest everything but metadata.
    """
    skip = _META_SKIP if rt.status else frozenset({"metadata", "apiVersion", "kind"})
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)
