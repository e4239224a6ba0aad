"""Projection of raw Kubernetes API JSON into the compact views of ``kruise.common.v1``.

Pure; no I/O. The watch hub (``services.gateway.hub``) calls one ``project_*``
function per object it lists or watches; the resulting view is serialised once
and shared by every replica stream (``services.gateway.sync``). Services use the
same functions for objects that reach them raw: the pod of an AdmissionReview, an
object returned by a cluster-API write.

Rules applied everywhere:
- only the fields declared in ``views.proto`` are copied; everything else
  (managedFields, volumes, full status) is dropped;
- RFC3339 timestamps become unix milliseconds (0 when absent or unparsable);
- strings that repeat across objects (namespaces, node names, label keys and
  values, phases, condition types) are interned with ``sys.intern`` so the
  Python-side copies are shared;
- the annotation ``kubectl.kubernetes.io/last-applied-configuration`` is
  dropped: it is a full copy of the object and no feature reads it.

Each kind maps to a ``Kind`` of ``mesh.proto``; several Kubernetes kinds
(StatefulSet in ``apps/v1`` and ``apps.kruise.io/v1beta1``, Deployment,
ReplicaSet) share ``KIND_WORKLOAD`` and are told apart by ``api_version``/``kind``.
Custom StatefulSet-like kinds (``KRUISE_MESH_STATEFULSET_LIKE_KINDS``) are
``KIND_WORKLOAD`` too, read generically through their CRD's ``/scale`` paths
(``ScalePaths``, ``fill_scaled_workload``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from kruise.common.v1 import mesh_pb2, views_pb2

Json = Mapping[str, Any]
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})

_intern = sys.intern


@lru_cache(maxsize=4096)
def _parse_ms(text: str) -> int:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return 0
    return int(parsed.timestamp() * 1000)


def to_unix_ms(value: object) -> int:
    """RFC3339 (``2026-11-26T04:13:26Z``, with or without fractions) → unix ms; 0 if unset.

    >>> to_unix_ms("1970-01-01T00:00:01.5Z")
    1500
    """
    if not isinstance(value, str) or not value:
        return 0
    return _parse_ms(value)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _istr(value: object) -> str:
    return _intern(value) if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _fill_str_map(target: Any, source: object, *, drop: frozenset[str] = frozenset()) -> None:
    for key, val in _dict(source).items():
        if key not in drop and isinstance(val, str):
            target[_intern(key)] = _intern(val)


def fill_meta(meta: views_pb2.ObjectMeta, obj: Json) -> None:
    """Copy ``obj.metadata`` into ``meta`` (in place: no intermediate message)."""
    raw = _dict(obj.get("metadata"))
    meta.namespace = _istr(raw.get("namespace"))
    meta.name = _str(raw.get("name"))
    meta.uid = _str(raw.get("uid"))
    meta.resource_version = _str(raw.get("resourceVersion"))
    meta.generation = _int(raw.get("generation"))
    _fill_str_map(meta.labels, raw.get("labels"))
    _fill_str_map(meta.annotations, raw.get("annotations"), drop=DROPPED_ANNOTATIONS)
    for ref in _list(raw.get("ownerReferences")):
        ref = _dict(ref)
        meta.owner_references.add(
            api_version=_istr(ref.get("apiVersion")),
            kind=_istr(ref.get("kind")),
            name=_str(ref.get("name")),
            uid=_str(ref.get("uid")),
            controller=ref.get("controller") is True,
        )
    meta.creation_unix_ms = to_unix_ms(raw.get("creationTimestamp"))
    meta.deletion_unix_ms = to_unix_ms(raw.get("deletionTimestamp"))
    meta.finalizers.extend(_istr(f) for f in _list(raw.get("finalizers")))


def fill_selector(selector: views_pb2.LabelSelector, raw: object) -> None:
    data = _dict(raw)
    _fill_str_map(selector.match_labels, data.get("matchLabels"))
    for expr in _list(data.get("matchExpressions")):
        expr = _dict(expr)
        selector.match_expressions.add(
            key=_istr(expr.get("key")),
            operator=_istr(expr.get("operator")),
            values=[_istr(v) for v in _list(expr.get("values"))],
        )


def fill_int_or_string(target: views_pb2.IntOrString, raw: object) -> None:
    if isinstance(raw, bool):
        return
    if isinstance(raw, int):
        target.int_value = raw
    elif isinstance(raw, str):
        target.str_value = _intern(raw)


def _fill_conditions(target: Any, raw: object) -> None:
    for cond in _list(raw):
        cond = _dict(cond)
        target.add(
            type=_istr(cond.get("type")),
            status=_istr(cond.get("status")),
            reason=_istr(cond.get("reason")),
            message=_str(cond.get("message")),
            last_transition_unix_ms=to_unix_ms(cond.get("lastTransitionTime")),
        )


def project_pod(obj: Json) -> views_pb2.PodView:
    """Pod → PodView."""
    view = views_pb2.PodView()
    fill_pod(view, obj)
    return view


def fill_pod(view: views_pb2.PodView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    view.node_name = _istr(spec.get("nodeName"))
    view.phase = _istr(status.get("phase"))
    view.pod_ip = _str(status.get("podIP"))
    view.host_ip = _istr(status.get("hostIP"))
    _fill_conditions(view.conditions, status.get("conditions"))
    view.readiness_gates.extend(
        _istr(_dict(g).get("conditionType")) for g in _list(spec.get("readinessGates"))
    )
    for container in _list(spec.get("containers")):
        container = _dict(container)
        view.containers.add(name=_istr(container.get("name")), image=_istr(container.get("image")))
    for cs in _list(status.get("containerStatuses")):
        cs = _dict(cs)
        view.container_statuses.add(
            name=_istr(cs.get("name")),
            image=_istr(cs.get("image")),
            image_id=_istr(cs.get("imageID")),
            ready=cs.get("ready") is True,
            restart_count=_int(cs.get("restartCount")),
        )
    _fill_str_map(view.node_selector, spec.get("nodeSelector"))


def node_ready(conditions: object) -> bool:
    """A node is ready when its ``Ready`` condition has status ``True``."""
    for cond in _list(conditions):
        cond = _dict(cond)
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def project_node(obj: Json) -> views_pb2.NodeView:
    """Node → NodeView (ready from the Ready condition)."""
    view = views_pb2.NodeView()
    fill_node(view, obj)
    return view


def fill_node(view: views_pb2.NodeView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    view.ready = node_ready(_dict(obj.get("status")).get("conditions"))
    view.unschedulable = _dict(obj.get("spec")).get("unschedulable") is True


def project_workload(obj: Json, *, api_version: str, kind: str) -> views_pb2.WorkloadView:
    """StatefulSet (apps/v1, apps.kruise.io/v1beta1), Deployment, ReplicaSet → WorkloadView.

    ``api_version``/``kind`` come from the watched resource: list items carry neither.
    """
    view = views_pb2.WorkloadView()
    fill_workload(view, obj, api_version=api_version, kind=kind)
    return view


def fill_workload(view: views_pb2.WorkloadView, obj: Json, *, api_version: str, kind: str) -> None:
    view.api_version = _intern(api_version)
    view.kind = _intern(kind)
    fill_meta(view.meta, obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool):
        view.spec_replicas = replicas
    fill_selector(view.selector, spec.get("selector"))
    view.reserve_ordinals.extend(
        r for r in _list(spec.get("reserveOrdinals")) if isinstance(r, int)
    )
    view.observed_generation = _int(status.get("observedGeneration"))
    view.status_replicas = _int(status.get("replicas"))
    view.ready_replicas = _int(status.get("readyReplicas"))
    view.available_replicas = _int(status.get("availableReplicas"))
    view.updated_replicas = _int(status.get("updatedReplicas"))
    view.current_revision = _str(status.get("currentRevision"))
    view.update_revision = _str(status.get("updateRevision"))


@dataclass(frozen=True, slots=True)
class ScalePaths:
    """Where a custom kind keeps what ``/scale`` exposes: its CRD's ``subresources.scale``.

    Simple dotted JSON paths such as ``.spec.replicas`` (Kubernetes allows no array
    notation there). ``selector_path`` (``labelSelectorPath``) is optional in a CRD and
    points at a *string*, a serialised label selector such as ``app=web,tier in (a,b)``.
    """

    replicas_path: str
    selector_path: str = ""
    status_replicas_path: str = ".status.replicas"


def json_path_value(obj: Json, path: str) -> object:
    """The value at a simple dotted JSON path (``.spec.replicas``); None when absent.

    Pure. A path with array notation or an empty step reads nothing.

    >>> json_path_value({"spec": {"replicas": 3}}, ".spec.replicas")
    3
    """
    steps = path.removeprefix(".").split(".")
    if "[" in path or not all(steps):
        return None
    node: object = obj
    for step in steps:
        if not isinstance(node, Mapping):
            return None
        node = node.get(step)
    return node


_SELECTOR_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SELECTOR_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_TERM = re.compile(rf"(?P<key>{_SELECTOR_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")
_EQUALITY_TERM = re.compile(
    rf"(?P<key>{_SELECTOR_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_SELECTOR_VALUE})"
)
_EXISTS_TERM = re.compile(rf"(?P<not>!?)\s*(?P<key>{_SELECTOR_KEY})")


def _selector_terms(text: str) -> list[str]:
    """``a=b,c in (x,y)`` → ``["a=b", "c in (x,y)"]``: commas outside parentheses split."""
    terms: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(text[start:i].strip())
            start = i + 1
    terms.append(text[start:].strip())
    return terms


def parse_label_selector(text: str) -> views_pb2.LabelSelector | None:
    """A serialised label selector (a ``/scale`` ``status.selector``) → LabelSelector.

    Pure. ``k=v``/``k==v`` → matchLabels (a key repeated → ``In``); ``k!=v`` → ``NotIn
    [v]``; ``k in (a,b)``/``k notin (a,b)`` → ``In``/``NotIn``; ``k`` → ``Exists``; ``!k`` →
    ``DoesNotExist``. The empty string selects everything (an empty selector). None for
    anything else (``k>1`` has no LabelSelector form), so a malformed value sets nothing.

    >>> parse_label_selector("app=web,tier notin (db)").match_labels["app"]
    'web'
    """
    selector = views_pb2.LabelSelector()
    if not text.strip():
        return selector
    for term in _selector_terms(text):
        if m := _SET_TERM.fullmatch(term):
            values = [v.strip() for v in m["values"].split(",")]
            if not all(re.fullmatch(_SELECTOR_VALUE, v) for v in values):
                return None
            operator = "In" if m["op"] == "in" else "NotIn"
            selector.match_expressions.add(
                key=_intern(m["key"]), operator=operator, values=[_intern(v) for v in values]
            )
        elif m := _EQUALITY_TERM.fullmatch(term):
            key, value = _intern(m["key"]), _intern(m["value"])
            if m["op"] == "!=":
                selector.match_expressions.add(key=key, operator="NotIn", values=[value])
            elif key in selector.match_labels:
                selector.match_expressions.add(key=key, operator="In", values=[value])
            else:
                selector.match_labels[key] = value
        elif m := _EXISTS_TERM.fullmatch(term):
            operator = "DoesNotExist" if m["not"] else "Exists"
            selector.match_expressions.add(key=_intern(m["key"]), operator=operator)
        else:
            return None
    return selector


def fill_scaled_workload(
    view: views_pb2.WorkloadView,
    obj: Json,
    *,
    api_version: str,
    kind: str,
    replicas_path: str,
    selector_path: str,
    status_replicas_path: str = ".status.replicas",
) -> None:
    """A custom StatefulSet-like kind → WorkloadView, read through its ``/scale`` paths.

    Pure. ``spec_replicas`` is the int at ``replicas_path`` (unset when missing or not an
    int, as for a StatefulSet without replicas); ``selector`` is ``spec.selector`` when that
    is a LabelSelector object, else the selector string at ``selector_path`` parsed
    (``parse_label_selector``), else unset; ``status_replicas`` is the int at
    ``status_replicas_path``. Placement reads replicas and uid to keep the pods
    ``<name>-<ordinal>`` of a PersistentPodState's target.
    """
    view.api_version = _intern(api_version)
    view.kind = _intern(kind)
    fill_meta(view.meta, obj)
    replicas = json_path_value(obj, replicas_path)
    if isinstance(replicas, int) and not isinstance(replicas, bool):
        view.spec_replicas = replicas
    spec_selector = _dict(obj.get("spec")).get("selector")
    if isinstance(spec_selector, Mapping):
        fill_selector(view.selector, spec_selector)
        view.selector.SetInParent()
    elif selector_path:
        text = json_path_value(obj, selector_path)
        parsed = parse_label_selector(text) if isinstance(text, str) else None
        if parsed is not None:
            view.selector.CopyFrom(parsed)
            view.selector.SetInParent()
    view.status_replicas = _int(json_path_value(obj, status_replicas_path))
    view.observed_generation = _int(_dict(obj.get("status")).get("observedGeneration"))


def project_persistent_pod_state(obj: Json) -> views_pb2.PersistentPodStateView:
    """apps.kruise.io/v1alpha1 PersistentPodState → PersistentPodStateView."""
    view = views_pb2.PersistentPodStateView()
    fill_persistent_pod_state(view, obj)
    return view


def fill_persistent_pod_state(view: views_pb2.PersistentPodStateView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    target = _dict(spec.get("targetRef"))
    view.target_ref.api_version = _istr(target.get("apiVersion"))
    view.target_ref.kind = _istr(target.get("kind"))
    view.target_ref.name = _str(target.get("name"))
    required = spec.get("requiredPersistentTopology")
    if isinstance(required, Mapping):
        view.has_required_topology = True
        view.required_node_topology_keys.extend(
            _istr(k) for k in _list(required.get("nodeTopologyKeys"))
        )
    for pref in _list(spec.get("preferredPersistentTopology")):
        pref = _dict(pref)
        term = _dict(pref.get("preference"))
        view.preferred_topology.add(
            weight=_int(pref.get("weight")),
            node_topology_keys=[_istr(k) for k in _list(term.get("nodeTopologyKeys"))],
        )
    view.retention_policy = _istr(spec.get("persistentPodStateRetentionPolicy"))
    view.observed_generation = _int(status.get("observedGeneration"))
    for pod_name, state in _dict(status.get("podStates")).items():
        state = _dict(state)
        entry = view.pod_states[pod_name]
        entry.node_name = _istr(state.get("nodeName"))
        _fill_str_map(entry.node_topology_labels, state.get("nodeTopologyLabels"))
        entry.pod_ip = _str(state.get("podIP"))


def _fill_ms_map(target: Any, raw: object) -> None:
    for pod_name, stamp in _dict(raw).items():
        target[pod_name] = to_unix_ms(stamp)


def project_pod_unavailable_budget(obj: Json) -> views_pb2.PodUnavailableBudgetView:
    """policy.kruise.io/v1alpha1 PodUnavailableBudget → PodUnavailableBudgetView.

    ``selector``/``target_ref``/``max_unavailable``/``min_available`` are set only
    when present in the spec (they are ``optional`` in the view).
    """
    view = views_pb2.PodUnavailableBudgetView()
    fill_pod_unavailable_budget(view, obj)
    return view


def fill_pod_unavailable_budget(view: views_pb2.PodUnavailableBudgetView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    if isinstance(spec.get("selector"), Mapping):
        fill_selector(view.selector, spec["selector"])
        view.selector.SetInParent()
    target = spec.get("targetRef")
    if isinstance(target, Mapping):
        view.target_ref.api_version = _istr(target.get("apiVersion"))
        view.target_ref.kind = _istr(target.get("kind"))
        view.target_ref.name = _str(target.get("name"))
        view.target_ref.SetInParent()
    if spec.get("maxUnavailable") is not None:
        fill_int_or_string(view.max_unavailable, spec["maxUnavailable"])
        view.max_unavailable.SetInParent()
    if spec.get("minAvailable") is not None:
        fill_int_or_string(view.min_available, spec["minAvailable"])
        view.min_available.SetInParent()
    view.observed_generation = _int(status.get("observedGeneration"))
    _fill_ms_map(view.disrupted_pods, status.get("disruptedPods"))
    _fill_ms_map(view.unavailable_pods, status.get("unavailablePods"))
    view.unavailable_allowed = _int(status.get("unavailableAllowed"))
    view.current_available = _int(status.get("currentAvailable"))
    view.desired_available = _int(status.get("desiredAvailable"))
    view.total_replicas = _int(status.get("totalReplicas"))


def _fill_hook(target: views_pb2.LifecycleHook, raw: Json) -> None:
    _fill_str_map(target.labels_handler, raw.get("labelsHandler"))
    target.finalizers_handler.extend(_istr(f) for f in _list(raw.get("finalizersHandler")))
    target.mark_pod_not_ready = raw.get("markPodNotReady") is True
    target.SetInParent()


def project_clone_set(obj: Json) -> views_pb2.CloneSetView:
    """apps.kruise.io/v1alpha1 CloneSet → CloneSetView (template kept as orjson bytes)."""
    view = views_pb2.CloneSetView()
    fill_clone_set(view, obj)
    return view


def fill_clone_set(view: views_pb2.CloneSetView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool):
        view.replicas = replicas
    fill_selector(view.selector, spec.get("selector"))
    strategy = _dict(spec.get("updateStrategy"))
    us = view.update_strategy
    us.type = _istr(strategy.get("type"))
    for field, key in (
        (us.partition, "partition"),
        (us.max_unavailable, "maxUnavailable"),
        (us.max_surge, "maxSurge"),
    ):
        if strategy.get(key) is not None:
            fill_int_or_string(field, strategy[key])
            field.SetInParent()
    us.paused = strategy.get("paused") is True
    ordering = {k: strategy[k] for k in ("priorityStrategy", "scatterStrategy") if strategy.get(k)}
    if ordering:
        view.strategy_json = orjson.dumps(ordering)
    in_place = _dict(strategy.get("inPlaceUpdateStrategy"))
    us.grace_period_seconds = _int(in_place.get("gracePeriodSeconds"))
    scale = _dict(spec.get("scaleStrategy"))
    view.pods_to_delete.extend(_str(p) for p in _list(scale.get("podsToDelete")))
    if scale.get("maxUnavailable") is not None:
        fill_int_or_string(view.scale_max_unavailable, scale["maxUnavailable"])
        view.scale_max_unavailable.SetInParent()
    lifecycle = _dict(spec.get("lifecycle"))
    if isinstance(lifecycle.get("preDelete"), Mapping):
        _fill_hook(view.pre_delete, lifecycle["preDelete"])
    if isinstance(lifecycle.get("inPlaceUpdate"), Mapping):
        _fill_hook(view.in_place_update, lifecycle["inPlaceUpdate"])
    view.min_ready_seconds = _int(spec.get("minReadySeconds"))
    view.revision_history_limit = _int(spec.get("revisionHistoryLimit"))
    if "template" in spec:
        view.template_json = orjson.dumps(spec["template"])
    claims = [c for c in _list(spec.get("volumeClaimTemplates")) if isinstance(c, Mapping)]
    if claims:
        view.volume_claim_templates_json = orjson.dumps(claims)
    st = view.status
    st.observed_generation = _int(status.get("observedGeneration"))
    st.replicas = _int(status.get("replicas"))
    st.ready_replicas = _int(status.get("readyReplicas"))
    st.available_replicas = _int(status.get("availableReplicas"))
    st.updated_replicas = _int(status.get("updatedReplicas"))
    st.updated_ready_replicas = _int(status.get("updatedReadyReplicas"))
    st.expected_updated_replicas = _int(status.get("expectedUpdatedReplicas"))
    st.update_revision = _str(status.get("updateRevision"))
    st.current_revision = _str(status.get("currentRevision"))
    st.collision_count = _int(status.get("collisionCount"))
    st.label_selector = _str(status.get("labelSelector"))
    conditions = _list(status.get("conditions"))
    if conditions:
        st.conditions_json = orjson.dumps(conditions)


def project_controller_revision(obj: Json) -> views_pb2.ControllerRevisionView:
    """apps/v1 ControllerRevision → ControllerRevisionView (data kept as orjson bytes)."""
    view = views_pb2.ControllerRevisionView()
    fill_controller_revision(view, obj)
    return view


def fill_controller_revision(view: views_pb2.ControllerRevisionView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    view.revision = _int(obj.get("revision"))
    if obj.get("data") is not None:
        view.data_json = orjson.dumps(obj["data"])


def project_persistent_volume_claim(obj: Json) -> views_pb2.PersistentVolumeClaimView:
    """v1 PersistentVolumeClaim → PersistentVolumeClaimView (metadata and status.phase)."""
    view = views_pb2.PersistentVolumeClaimView()
    fill_persistent_volume_claim(view, obj)
    return view


def fill_persistent_volume_claim(view: views_pb2.PersistentVolumeClaimView, obj: Json) -> None:
    fill_meta(view.meta, obj)
    view.phase = _istr(_dict(obj.get("status")).get("phase"))


Projector = Callable[[Json], views_pb2.ObjectView]


def object_projector(
    *, api_version: str, kind: str, scale: ScalePaths | None = None
) -> tuple[int, Projector]:
    """The mesh ``Kind`` and the ObjectView projector for a Kubernetes apiVersion/kind.

    The view is filled in place inside its ObjectView (no copy). With ``scale`` the
    kind is a custom StatefulSet-like kind: ``KIND_WORKLOAD`` by ``fill_scaled_workload``,
    whatever its name (a custom kind may well be called ``StatefulSet``). Without it, the
    fixed table below decides; raises KeyError for a kind the mesh does not project.
    """
    if scale is not None:

        def scaled(o: Json) -> views_pb2.ObjectView:
            out = views_pb2.ObjectView()
            fill_scaled_workload(
                out.workload,
                o,
                api_version=api_version,
                kind=kind,
                replicas_path=scale.replicas_path,
                selector_path=scale.selector_path,
                status_replicas_path=scale.status_replicas_path,
            )
            return out

        return mesh_pb2.KIND_WORKLOAD, scaled
    if kind in ("StatefulSet", "Deployment", "ReplicaSet"):

        def workload(o: Json) -> views_pb2.ObjectView:
            out = views_pb2.ObjectView()
            fill_workload(out.workload, o, api_version=api_version, kind=kind)
            return out

        return mesh_pb2.KIND_WORKLOAD, workload
    try:
        mesh_kind, field, fill = _SIMPLE[kind]
    except KeyError:
        raise KeyError(f"no projection for {api_version} {kind}") from None

    def project(o: Json) -> views_pb2.ObjectView:
        out = views_pb2.ObjectView()
        fill(getattr(out, field), o)
        return out

    return mesh_kind, project


_SIMPLE: dict[str, tuple[int, str, Callable[[Any, Json], None]]] = {
    "Pod": (mesh_pb2.KIND_POD, "pod", fill_pod),
    "Node": (mesh_pb2.KIND_NODE, "node", fill_node),
    "PersistentPodState": (
        mesh_pb2.KIND_PERSISTENT_POD_STATE,
        "persistent_pod_state",
        fill_persistent_pod_state,
    ),
    "PodUnavailableBudget": (
        mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET,
        "pod_unavailable_budget",
        fill_pod_unavailable_budget,
    ),
    "CloneSet": (mesh_pb2.KIND_CLONE_SET, "clone_set", fill_clone_set),
    "ControllerRevision": (
        mesh_pb2.KIND_CONTROLLER_REVISION,
        "controller_revision",
        fill_controller_revision,
    ),
    "PersistentVolumeClaim": (
        mesh_pb2.KIND_PERSISTENT_VOLUME_CLAIM,
        "persistent_volume_claim",
        fill_persistent_volume_claim,
    ),
}
