"""OpenKruise v1.2's defaults for a CloneSet on CREATE and UPDATE, as a minimal JSONPatch.

Pure; no I/O. ``default_clone_set`` answers the mutating webhook: the RFC 6902 ops that set
the defaults OpenKruise's ``SetDefaultsCloneSet`` sets (``apis/apps/defaults``), one op per
absent field (an absent parent is added whole, with its defaults inside). The rollout
``mutate-clonesets`` handler returns them through ``services.kit.admission.allow(patch=...)``
(``decide_clone_set_defaults`` does the reading); ``services.rollout.validation`` reads a
review's CloneSet through ``defaulted_clone_set`` so it judges what would be stored.

CloneSet spec (always)::

    replicas                               1
    revisionHistoryLimit                   10
    updateStrategy.type                    ReCreate
    updateStrategy.inPlaceUpdateStrategy   {}      (type InPlaceIfPossible / InPlaceOnly)
    updateStrategy.partition               0       (v1.2 sets it; absent does not stay absent)
    updateStrategy.maxUnavailable          "20%"
    updateStrategy.maxSurge                0

``scaleStrategy`` gets no default: the ``scaleStrategy: {}`` in OpenKruise's patch is an
artefact of Go re-marshalling the struct, and carries no value.

Pod template (``SetDefaultPodSpec``: Kubernetes' ``SetDefaults_PodSpec`` and the per-container
defaults of ``pkg/apis/core/v1/defaults.go``), on CREATE, and on UPDATE only when
``spec.template`` changed (as OpenKruise, so a stored template, and so its revision hash,
never changes on its own)::

    template.spec      dnsPolicy ClusterFirst, restartPolicy Always, securityContext {},
                       terminationGracePeriodSeconds 30, schedulerName default-scheduler;
                       hostNetwork: true → each port's hostPort = containerPort
    containers         imagePullPolicy Always — OpenKruise's own rule "for in-place update",
                       whatever the tag; terminationMessagePath /dev/termination-log,
                       terminationMessagePolicy File
    initContainers     imagePullPolicy by Kubernetes' rule: Always for ``:latest`` or no tag
                       (and no digest), IfNotPresent otherwise; the same termination fields
    either             ports[].protocol TCP; env[].valueFrom.fieldRef.apiVersion v1;
                       liveness/readiness/startup probes: timeoutSeconds 1, periodSeconds 10,
                       successThreshold 1, failureThreshold 3, httpGet path "/" scheme HTTP;
                       lifecycle postStart/preStop httpGet path "/" scheme HTTP
    volumes            no source → emptyDir {}; hostPath.type ""; secret, configMap,
                       downwardAPI and projected defaultMode 420 (0644); fieldRef apiVersion
                       v1 in downwardAPI items; serviceAccountToken expirationSeconds 3600
    volumeClaimTemplates  spec.volumeMode Filesystem, status.phase Pending

Left out, on purpose (none changes what a pod runs):

* resource quantities are kept as written; OpenKruise rewrites them in canonical form
  (``0.5`` → ``500m``) through ``SetDefaults_ResourceList``;
* the defaults of the in-tree storage plugins (iSCSI, RBD, AzureDisk, ScaleIO);
* Go's re-marshalling artefacts (``resources: {}``, ``creationTimestamp: null``);
* the ``TemplateNoDefaults`` feature gate (off by default in OpenKruise).

A Go string or integer field that holds its zero value (``""``, ``0``) counts as absent,
as Go cannot tell them apart; a pointer field counts as absent only when missing or null.
A part of the object of the wrong JSON type is left alone (validation refuses it).

    >>> cs = {"spec": {"replicas": 3, "revisionHistoryLimit": 5, "updateStrategy": {}}}
    >>> cs["spec"]["updateStrategy"]["type"] = "InPlaceOnly"
    >>> for op in default_clone_set(cs, old=cs):  # an UPDATE that keeps the template
    ...     print(op["op"], op["path"], op["value"])
    add /spec/updateStrategy/inPlaceUpdateStrategy {}
    add /spec/updateStrategy/partition 0
    add /spec/updateStrategy/maxUnavailable 20%
    add /spec/updateStrategy/maxSurge 0
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from kruise.common.v1 import mesh_pb2
from services.kit import admission
from services.kit.admission import JsonPatch, Verdict

__all__ = [
    "decide_clone_set_defaults",
    "default_clone_set",
    "defaulted_clone_set",
    "image_pull_policy",
]

RECREATE = "ReCreate"
IN_PLACE_TYPES = frozenset({"InPlaceIfPossible", "InPlaceOnly"})
DEFAULT_MAX_UNAVAILABLE = "20%"
DEFAULT_MODE = 0o644  # 420: secret, configMap, downwardAPI and projected volumes
TOKEN_EXPIRATION_SECONDS = 3600
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def default_clone_set(obj: Mapping[str, Any], *, old: Mapping[str, Any] | None = None) -> JsonPatch:
    """The JSONPatch setting OpenKruise's defaults on ``obj``; ``[]`` when nothing is missing.

    ``old`` is the stored CloneSet on UPDATE (None on CREATE): the pod template defaults
    are set only when ``spec.template`` differs from the stored one. ``obj`` is not changed.
    """
    return _diff(obj, defaulted_clone_set(obj, old=old))


def defaulted_clone_set(obj: Mapping[str, Any], *, old: Mapping[str, Any] | None = None) -> Any:
    """A deep copy of ``obj`` with the defaults of ``default_clone_set`` set."""
    out = copy.deepcopy(dict(obj))
    spec = _child(out, "spec")
    if spec is None:
        return out
    _set(spec, "replicas", 1, pointer=True)
    _set(spec, "revisionHistoryLimit", 10, pointer=True)
    if old is None or _template_of(obj) != _template_of(old):
        _default_template(spec)
    strategy = _child(spec, "updateStrategy")
    if strategy is not None:
        _set(strategy, "type", RECREATE)
        if isinstance(strategy["type"], str) and strategy["type"] in IN_PLACE_TYPES:
            _set(strategy, "inPlaceUpdateStrategy", {}, pointer=True)
        _set(strategy, "partition", 0, pointer=True)
        _set(strategy, "maxUnavailable", DEFAULT_MAX_UNAVAILABLE, pointer=True)
        _set(strategy, "maxSurge", 0, pointer=True)
    return out


def decide_clone_set_defaults(request: mesh_pb2.AdmissionRequest) -> Verdict:
    """The verdict for a CloneSet CREATE/UPDATE review: admitted with the defaults' patch.

    A review of a subresource or of another operation is admitted unchanged; an unreadable
    one, or one without the CloneSet (or, on UPDATE, without the stored one), is refused
    with 400 (OpenKruise answers a decode failure so).
    """
    written = admission.written_object(request, kind="CloneSet")
    if not isinstance(written, admission.Written):
        return written or admission.ALLOWED
    return admission.allow(patch=default_clone_set(written.object, old=written.old))


# --- the pod template ----------------------------------------------------------------------


def _default_template(spec: dict[str, Any]) -> None:
    template = _child(spec, "template")
    pod = _child(template, "spec") if template is not None else None
    if pod is not None:
        _default_pod_spec(pod)
    for claim in _dicts(spec.get("volumeClaimTemplates")):
        claim_spec = _child(claim, "spec")
        if claim_spec is not None:
            _set(claim_spec, "volumeMode", "Filesystem", pointer=True)
        status = _child(claim, "status")
        if status is not None:
            _set(status, "phase", "Pending")


def _default_pod_spec(pod: dict[str, Any]) -> None:
    _set(pod, "dnsPolicy", "ClusterFirst")
    _set(pod, "restartPolicy", "Always")
    _set(pod, "securityContext", {}, pointer=True)
    _set(pod, "terminationGracePeriodSeconds", 30, pointer=True)
    _set(pod, "schedulerName", "default-scheduler")
    host_network = pod.get("hostNetwork") is True
    for volume in _dicts(pod.get("volumes")):
        _default_volume(volume)
    for container in _dicts(pod.get("initContainers")):
        _set(container, "imagePullPolicy", image_pull_policy(container.get("image")))
        _default_container(container, host_network=host_network)
    for container in _dicts(pod.get("containers")):
        # OpenKruise: "For in-place update, we set default imagePullPolicy to Always".
        _set(container, "imagePullPolicy", "Always")
        _default_container(container, host_network=host_network)


def _default_container(container: dict[str, Any], *, host_network: bool) -> None:
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    for port in _dicts(container.get("ports")):
        _set(port, "protocol", "TCP")
        if host_network and _is_int(port.get("containerPort")):
            _set(port, "hostPort", port["containerPort"])
    for env in _dicts(container.get("env")):
        value_from = env.get("valueFrom")
        if isinstance(value_from, dict):
            _default_field_ref(value_from)
    for name in _PROBES:
        probe = container.get(name)
        if isinstance(probe, dict):
            for key, value in (
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ):
                _set(probe, key, value)
            _default_http_get(probe)
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            handler = lifecycle.get(hook)
            if isinstance(handler, dict):
                _default_http_get(handler)


def _default_http_get(handler: dict[str, Any]) -> None:
    http_get = handler.get("httpGet")
    if isinstance(http_get, dict):
        _set(http_get, "path", "/")
        _set(http_get, "scheme", "HTTP")


def _default_field_ref(holder: dict[str, Any]) -> None:
    field_ref = holder.get("fieldRef")
    if isinstance(field_ref, dict):
        _set(field_ref, "apiVersion", "v1")


def _default_volume(volume: dict[str, Any]) -> None:
    if all(value is None for key, value in volume.items() if key != "name"):
        volume["emptyDir"] = {}
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict):
        _set(host_path, "type", "", pointer=True)
    for kind in ("secret", "configMap", "downwardAPI", "projected"):
        source = volume.get(kind)
        if isinstance(source, dict):
            _set(source, "defaultMode", DEFAULT_MODE, pointer=True)
    downward = volume.get("downwardAPI")
    if isinstance(downward, dict):
        for item in _dicts(downward.get("items")):
            _default_field_ref(item)
    projected = volume.get("projected")
    if isinstance(projected, dict):
        for source in _dicts(projected.get("sources")):
            downward = source.get("downwardAPI")
            if isinstance(downward, dict):
                for item in _dicts(downward.get("items")):
                    _default_field_ref(item)
            token = source.get("serviceAccountToken")
            if isinstance(token, dict):
                _set(token, "expirationSeconds", TOKEN_EXPIRATION_SECONDS, pointer=True)


# --- image references ------------------------------------------------------------------------

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?/)?"
    rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?P<digest>@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?"
)


def image_pull_policy(image: object) -> str:
    """Kubernetes' default pull policy for ``image`` (``SetDefaults_Container``).

    ``Always`` when the tag is ``latest``, or when there is neither a tag nor a digest;
    ``IfNotPresent`` otherwise, and for a reference that does not parse (an empty one,
    capitals in the repository path).

    >>> [image_pull_policy(i) for i in ("nginx", "nginx:latest", "nginx:1.25", "reg:5000/app")]
    ['Always', 'Always', 'IfNotPresent', 'Always']
    >>> image_pull_policy("nginx@sha256:" + "a" * 64), image_pull_policy("Nginx")
    ('IfNotPresent', 'IfNotPresent')
    """
    if not isinstance(image, str):
        return "IfNotPresent"
    match = _REFERENCE.fullmatch(image)
    if match is None:
        return "IfNotPresent"
    tag = match["tag"] or ("" if match["digest"] else "latest")
    return "Always" if tag == "latest" else "IfNotPresent"


# --- helpers -----------------------------------------------------------------------------------


def _template_of(obj: Mapping[str, Any]) -> object:
    spec = obj.get("spec")
    return spec.get("template") if isinstance(spec, Mapping) else None


def _child(parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``parent[key]``, created empty when missing or null; None when it is not an object."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _dicts(value: object) -> Iterator[dict[str, Any]]:
    """The objects of a list (other items, or a value that is not a list, are skipped)."""
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _set(holder: dict[str, Any], key: str, value: object, *, pointer: bool = False) -> None:
    """Set ``holder[key]`` unless it is set: a pointer field is unset when missing or null, a
    Go string or integer also when it holds its zero value."""
    current = holder.get(key)
    unset = current is None or (
        not pointer and not isinstance(current, bool) and (current == "" or current == 0)
    )
    if unset:
        holder[key] = copy.deepcopy(value)


def _diff(before: object, after: object, path: tuple[str, ...] = ()) -> JsonPatch:
    """The ops that turn ``before`` into ``after``, where ``after`` only adds or sets fields."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        ops: JsonPatch = []
        for key, value in after.items():
            if key in before:
                ops.extend(_diff(before[key], value, (*path, key)))
            else:
                ops.append({"op": "add", "path": admission.pointer(*path, key), "value": value})
        return ops
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            op
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for op in _diff(b, a, (*path, str(i)))
        ]
    if type(before) is type(after) and before == after:
        return []
    return [{"op": "replace", "path": admission.pointer(*path), "value": after}]
