"""The world's EndpointSlice controller (``discovery.k8s.io/v1``), as kube-controller-manager's.

For every Service with a ``spec.selector`` (and not of type ExternalName) the controller keeps
EndpointSlices that list the pods the selector matches in the Service's namespace, so that a pod
leaving a Service (its readiness gate went False, it is terminating, it is gone) is visible
through the API exactly as on a real cluster. Services without a selector are left alone: their
slices, if any, are someone else's.

Each slice is made as the real controller makes it (checked against kubernetes/kubernetes
``staging/src/k8s.io/endpointslice/{utils,reconciler}.go`` and ``util/controller_utils.go``, and
against the captured ``endpointslice-list-headless-service-2-ready.json``):

* ``metadata.generateName: <service>-`` (the server picks the suffix, ``web-cnx6m``), labels
  ``kubernetes.io/service-name``, ``endpointslice.kubernetes.io/managed-by:
  endpointslice-controller.k8s.io``, the Service's own labels, and
  ``service.kubernetes.io/headless: ""`` when ``clusterIP`` is ``None``; a controller
  ownerReference to the Service (garbage collection removes the slices with the Service);
* ``addressType: IPv4``; ``ports``: one per Service port, ``{name, protocol, port}`` (and
  ``appProtocol`` when set), where ``port`` is a numeric ``targetPort``, or the container port
  a named ``targetPort`` names in *that pod* (same name and protocol; a pod without it simply
  has no such port, so pods with different resolved ports land in different slices), or the
  Service ``port`` when ``targetPort`` is absent (kube-apiserver would have defaulted it);
* one endpoint per pod that is not terminal (phase Succeeded/Failed) and has an IPv4 pod IP,
  **terminating pods included** (Kubernetes >= 1.26, KEP-1672: ``ShouldPodBeInEndpoints(pod,
  true)``)::

      serving     = pod condition Ready is True        (regardless of termination)
      terminating = metadata.deletionTimestamp is set
      ready       = spec.publishNotReadyAddresses OR (serving AND NOT terminating)

  so ``publishNotReadyAddresses: true`` forces ``ready: true`` for every listed pod, even a
  terminating one, as ``podToEndpoint`` does. Each endpoint has ``addresses``, ``conditions``,
  ``hostname`` (when ``spec.hostname`` is set and ``spec.subdomain`` is the Service's name),
  ``targetRef {kind, namespace, name, uid}``, ``nodeName`` and ``zone`` (the node's
  ``topology.kubernetes.io/zone`` label, when non-empty). A pod on a node the controller does
  not know is skipped (and the Service retried) unless ``publishNotReadyAddresses`` is set;
* at most ``MAX_ENDPOINTS_PER_SLICE`` (100, kube-controller-manager's default
  ``--max-endpoints-per-slice``) endpoints per slice; more pods mean more slices;
* a Service that selects no pod gets one placeholder slice with ``ports`` and ``endpoints``
  null, as the real controller keeps.

Not modelled: the ``endpoints.kubernetes.io/last-change-trigger-time`` annotation, topology
hints and ``trafficDistribution``, IPv6/dual-stack slices, mirroring of selector-less Endpoints.

Decision (pure): ``desired_slices(...)`` turns a Service, its pods and the node zones into the
slice bodies a fresh cluster would hold; ``plan_slices(...)`` fits them onto the existing slices
(an endpoint stays in the slice it is in, creates reuse slices that would be deleted, slices of
another Service of the same name are deleted) and returns a ``SlicePlan``; ``slice_differs``
says whether an existing slice must be rewritten. Shell: ``EndpointSliceController``, one work
queue of Service keys fed by the shared service, pod, EndpointSlice and node reflectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.world.client import ApiClient, ApiError, Conflict, NotFound, Reflector, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
RESERVED_LABELS = frozenset({SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL})
MAX_ENDPOINTS_PER_SLICE = 100
API_VERSION = "discovery.k8s.io/v1"

PortKey = tuple[tuple[str, str, int, str], ...]  # sorted (name, protocol, port, appProtocol)


# ---------------------------------------------------------------------------------------------
# small pure helpers


def _meta(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _spec(obj: Mapping[str, Any]) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: Mapping[str, Any]) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def selector_of(service: Obj) -> dict[str, str] | None:
    """The Service's pod selector, or ``None`` when it has none. Pure.

    An empty ``selector: {}`` counts as none: kube-apiserver drops empty maps, so the real
    controller sees ``nil`` and manages no slices for it.
    """
    selector = _spec(service).get("selector")
    if not isinstance(selector, dict) or not selector:
        return None
    return {str(k): str(v) for k, v in selector.items()}


def wants_slices(service: Obj) -> bool:
    """Whether this controller manages slices for ``service``: a selector, not ExternalName.
    Pure."""
    return selector_of(service) is not None and _spec(service).get("type") != "ExternalName"


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, Any] | None) -> bool:
    """A Service selector (a plain equality map) against pod labels. ``None`` selects nothing.
    Pure."""
    if not selector:
        return False
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


def is_pod_ready(pod: Obj) -> bool:
    """Condition Ready is True (``podutil.IsPodReady``: the phase is not looked at). Pure."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in _status(pod).get("conditions") or []
    )


def _is_terminating(pod: Obj) -> bool:
    return bool(_meta(pod).get("deletionTimestamp"))


def _is_ipv4(address: str) -> bool:
    parts = address.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def pod_addresses(pod: Obj) -> list[str]:
    """The pod's IPv4 addresses (``status.podIPs``, else ``status.podIP``). Pure."""
    status = _status(pod)
    ips = [str(p.get("ip", "")) for p in status.get("podIPs") or [] if isinstance(p, dict)]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return [ip for ip in ips if _is_ipv4(ip)]


def should_be_listed(pod: Obj) -> bool:
    """``ShouldPodBeInEndpoints(pod, includeTerminating=true)``: not terminal, has an IP. Pure."""
    status = _status(pod)
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return bool(status.get("podIP") or status.get("podIPs"))


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The endpoint port of one Service port for ``pod`` (``FindPort``), or ``None``. Pure.

    A numeric ``targetPort`` is taken as is; a named one is looked up among the ports of the
    pod's containers (and of its sidecars: init containers with ``restartPolicy: Always``) with
    that name and the Service port's protocol; an absent one means ``port``.
    """
    target = service_port.get("targetPort")
    if target is None or target == "":
        return int(service_port["port"])
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = _spec(pod)
    containers = list(spec.get("containers") or [])
    containers += [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """The slice ports for ``pod``: the Service's ports that resolve for it, in order. Pure."""
    out: list[Obj] = []
    for service_port in _spec(service).get("ports") or []:
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Obj = {
            "name": str(service_port.get("name") or ""),
            "protocol": str(service_port.get("protocol") or "TCP"),
            "port": number,
        }
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        out.append(port)
    return out


def pod_endpoint(pod: Obj, service: Obj, *, zone: str = "") -> Obj:
    """The endpoint for ``pod`` (``podToEndpoint``), keys in the real server's order. Pure.

    ``zone`` is the node's ``topology.kubernetes.io/zone`` label ("" when unknown or unset).
    """
    meta, spec = _meta(pod), _spec(pod)
    serving = is_pod_ready(pod)
    terminating = _is_terminating(pod)
    ready = bool(_spec(service).get("publishNotReadyAddresses")) or (serving and not terminating)
    endpoint: Obj = {
        "addresses": pod_addresses(pod),
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    if spec.get("hostname") and spec.get("subdomain") == _meta(service).get("name"):
        endpoint["hostname"] = spec["hostname"]  # namespaces match: pods are listed per namespace
    endpoint["targetRef"] = {
        "kind": "Pod",
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    if zone:
        endpoint["zone"] = zone
    return endpoint


def slice_labels(service: Obj) -> dict[str, str]:
    """The labels of the Service's slices: its own (minus the reserved keys), the headless
    marker when ``clusterIP: None``, the service name and the managing controller. Pure.

    Kubernetes also calls a Service with an empty clusterIP headless; the sandbox allocates no
    cluster IPs, so only an explicit ``None`` counts here.
    """
    labels = {
        str(k): str(v)
        for k, v in (_meta(service).get("labels") or {}).items()
        if k not in RESERVED_LABELS
    }
    if _spec(service).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = str(_meta(service)["name"])
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def owner_reference(service: Obj) -> Obj:
    meta = _meta(service)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(slice_: Obj, service: Obj) -> bool:
    """Whether the slice has an ownerReference to this very Service (same uid). Pure."""
    uid = _meta(service).get("uid")
    return any(
        r.get("uid") == uid and r.get("kind") == "Service" and r.get("apiVersion") == "v1"
        for r in _meta(slice_).get("ownerReferences") or []
    )


def slice_body(service: Obj, *, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    """A new slice of ``service`` (``generateName: <service>-``). Empty lists are written as
    null, as a real server returns them. Pure."""
    name = str(_meta(service)["name"])
    prefix = f"{name}-" if len(name) < 253 else name
    return {
        "apiVersion": API_VERSION,
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": prefix,
            "namespace": _meta(service)["namespace"],
            "labels": slice_labels(service),
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": "IPv4",
        "endpoints": list(endpoints) or None,
        "ports": list(ports) or None,
    }


def ports_key(ports: Iterable[Obj] | None) -> PortKey:
    """An order-free identity for a port list (``NewPortMapKey``). Pure."""
    return tuple(
        sorted(
            (
                str(p.get("name") or ""),
                str(p.get("protocol") or "TCP"),
                int(p.get("port") or 0),
                str(p.get("appProtocol") or ""),
            )
            for p in ports or []
        )
    )


def endpoint_key(endpoint: Obj) -> str:
    """The identity of an endpoint across syncs: its pod's uid, else its addresses. Pure."""
    uid = (endpoint.get("targetRef") or {}).get("uid")
    return f"uid:{uid}" if uid else "ip:" + ",".join(endpoint.get("addresses") or [])


# ---------------------------------------------------------------------------------------------
# the desired slices


@dataclass(frozen=True)
class DesiredSlices:
    """What the Service's slices should hold, before fitting them onto existing slices.

    ``slices``: new-slice bodies (``generateName``), endpoints sorted by pod name, at most
    ``max_endpoints`` each, one group of slices per distinct resolved port list; never empty
    (a placeholder when no pod is listed). ``unknown_nodes``: names of pods left out because
    their node is not (yet) known; the shell retries the Service later.
    """

    slices: list[Obj]
    unknown_nodes: tuple[str, ...] = ()


def desired_slices(
    service: Obj,
    pods: Iterable[Obj],
    *,
    node_zones: Mapping[str, str],
    max_endpoints: int = MAX_ENDPOINTS_PER_SLICE,
) -> DesiredSlices:
    """The slices ``service`` should have for ``pods`` (already selected by its selector, in
    its namespace). Pure; no I/O.

    ``node_zones`` maps every known node name to its zone label ("" when unlabelled). Consumed
    by ``plan_slices`` and then ``EndpointSliceController``, which writes the plan.

    Worked example: 205 ready pods behind one port give slices of 100, 100 and 5 endpoints;
    3 pods where one lacks the named target port give two slices (2 endpoints with the port,
    1 with ``ports: null``).
    """
    publish_not_ready = bool(_spec(service).get("publishNotReadyAddresses"))
    groups: dict[PortKey, tuple[list[Obj], list[Obj]]] = {}
    skipped: list[str] = []
    for pod in sorted(pods, key=lambda p: str(_meta(p).get("name", ""))):
        if not should_be_listed(pod):
            continue
        node = str(_spec(pod).get("nodeName") or "")
        if node not in node_zones and not publish_not_ready:
            skipped.append(str(_meta(pod).get("name", "")))
            continue
        endpoint = pod_endpoint(pod, service, zone=node_zones.get(node, ""))
        if not endpoint["addresses"]:
            continue
        ports = endpoint_ports(service, pod)
        groups.setdefault(ports_key(ports), (ports, []))[1].append(endpoint)
    slices = [
        slice_body(service, ports=ports, endpoints=endpoints[i : i + max_endpoints])
        for ports, endpoints in groups.values()
        for i in range(0, len(endpoints), max_endpoints)
    ]
    if not slices:
        slices = [slice_body(service, ports=[], endpoints=[])]
    return DesiredSlices(slices=slices, unknown_nodes=tuple(skipped))


# ---------------------------------------------------------------------------------------------
# fitting the desired slices onto the existing ones


def _normal_endpoint(endpoint: Obj) -> Obj:
    ref = endpoint.get("targetRef")
    if isinstance(ref, dict) and "resourceVersion" in ref:
        endpoint = {
            **endpoint,
            "targetRef": {k: v for k, v in ref.items() if k != "resourceVersion"},
        }
    return endpoint


def slice_differs(existing: Obj, desired: Obj) -> bool:
    """Whether ``existing`` must be rewritten to hold what ``desired`` holds. Pure.

    Compares labels, addressType, ports (in any order) and endpoints (in order; a targetRef's
    resourceVersion is ignored, null and empty lists are the same), not server-set metadata.
    """
    if (_meta(existing).get("labels") or {}) != (_meta(desired).get("labels") or {}):
        return True
    if existing.get("addressType") != desired.get("addressType"):
        return True
    if ports_key(existing.get("ports")) != ports_key(desired.get("ports")):
        return True
    have = [_normal_endpoint(e) for e in existing.get("endpoints") or []]
    want = [_normal_endpoint(e) for e in desired.get("endpoints") or []]
    return have != want


@dataclass(frozen=True)
class SlicePlan:
    """The writes that bring a Service's slices to the desired state, in order.

    ``create``: bodies with ``generateName``; ``update``: whole slices (name and
    resourceVersion of the slice they replace) for a PUT; ``delete``: ``(name, uid)`` pairs.
    All empty means the slices are already right.
    """

    create: tuple[Obj, ...] = ()
    update: tuple[Obj, ...] = ()
    delete: tuple[tuple[str, str], ...] = ()


def _rewrite(existing: Obj, desired: Obj) -> Obj:
    meta = dict(_meta(existing))
    meta["labels"] = dict(_meta(desired).get("labels") or {})
    return {
        **existing,
        "apiVersion": API_VERSION,
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": desired.get("addressType"),
        "endpoints": desired.get("endpoints"),
        "ports": desired.get("ports"),
    }


def plan_slices(
    service: Obj,
    desired: list[Obj],
    existing: list[Obj],
    *,
    max_endpoints: int = MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """Fit ``desired`` (from ``desired_slices``) onto the ``existing`` slices of ``service``
    (those labelled with its name and managed by this controller). Pure; no I/O.

    Follows the real reconciler's shape, so that slices churn as little as there:

    1. slices not owned by this Service's uid (left over from a deleted Service of the same
       name) are deleted; so are slices whose port list is no longer wanted;
    2. per port list, each endpoint that is still wanted stays in the slice it is in (with its
       new conditions); emptied slices are deleted;
    3. the remaining endpoints fill the kept slices (fullest first) up to ``max_endpoints``,
       then go to new slices;
    4. a slice to create takes over, by name, an owned slice that would be deleted;
    5. a kept slice is updated only when ``slice_differs``.

    Consumed by ``EndpointSliceController``, which commits the plan through the API.
    """
    owned = sorted(
        (s for s in existing if owned_by(s, service)), key=lambda s: str(_meta(s)["name"])
    )
    doomed: list[Obj] = [s for s in existing if not owned_by(s, service)]
    by_ports: dict[PortKey, list[Obj]] = {}
    for s in owned:
        by_ports.setdefault(ports_key(s.get("ports")), []).append(s)
    wanted: dict[PortKey, tuple[Obj, list[Obj]]] = {}
    for d in desired:
        group = wanted.setdefault(ports_key(d.get("ports")), (d, []))
        group[1].extend(d.get("endpoints") or [])

    kept: list[tuple[Obj, Obj]] = []  # (existing slice, what it should hold)
    creates: list[Obj] = []
    for key, (template, endpoints) in wanted.items():
        ports = list(template.get("ports") or [])
        olds = by_ports.pop(key, [])
        if not endpoints:  # the placeholder: keep one such slice, or make it
            if olds:
                kept.append((olds[0], slice_body(service, ports=ports, endpoints=[])))
                doomed.extend(olds[1:])
            else:
                creates.append(slice_body(service, ports=ports, endpoints=[]))
            continue
        remaining = {endpoint_key(e): e for e in endpoints}
        fills: list[tuple[Obj, list[Obj]]] = []
        for s in olds:
            stay = [
                remaining.pop(k)
                for k in map(endpoint_key, s.get("endpoints") or [])
                if k in remaining
            ]
            fills.append((s, stay))
        for _, stay in sorted(fills, key=lambda f: -len(f[1])):
            while remaining and len(stay) < max_endpoints:
                stay.append(remaining.pop(next(iter(remaining))))
        for s, stay in fills:
            if stay:
                kept.append((s, slice_body(service, ports=ports, endpoints=stay)))
            else:
                doomed.append(s)
        leftover = list(remaining.values())
        for i in range(0, len(leftover), max_endpoints):
            chunk = leftover[i : i + max_endpoints]
            creates.append(slice_body(service, ports=ports, endpoints=chunk))
    for rest in by_ports.values():
        doomed.extend(rest)

    reusable = [s for s in doomed if owned_by(s, service) and s.get("addressType") == "IPv4"]
    still_created: list[Obj] = []
    for body in creates:
        if reusable:
            target = reusable.pop(0)
            doomed.remove(target)
            kept.append((target, body))
        else:
            still_created.append(body)
    updates = tuple(_rewrite(s, d) for s, d in kept if slice_differs(s, d))
    deletes = tuple((str(_meta(s)["name"]), str(_meta(s).get("uid", ""))) for s in doomed)
    return SlicePlan(create=tuple(still_created), update=updates, delete=deletes)


# ---------------------------------------------------------------------------------------------
# the shell


def endpoint_view(pod: Obj) -> tuple[Any, ...]:
    """The parts of a pod its endpoints and Service memberships depend on
    (``podEndpointsChanged``, plus phase and node). Pure."""
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        spec.get("hostname"),
        spec.get("subdomain"),
        spec.get("nodeName"),
        meta.get("deletionTimestamp"),
        is_pod_ready(pod),
        status.get("podIP"),
        tuple(str(p.get("ip")) for p in status.get("podIPs") or [] if isinstance(p, dict)),
        status.get("phase"),
    )


def _service_key_of_slice(slice_: Obj) -> str | None:
    meta = _meta(slice_)
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME or not labels.get(SERVICE_NAME_LABEL):
        return None
    return f"{meta.get('namespace')}/{labels[SERVICE_NAME_LABEL]}"


def _rv(obj: Obj) -> int | None:
    try:
        return int(_meta(obj).get("resourceVersion") or "")
    except ValueError:
        return None


class EndpointSliceController:
    """Keeps the EndpointSlices of every Service seen by ``services`` (shared reflectors).

    Writes it made and has not yet seen come back through the slice watch are remembered
    (``_expected``, the real controller's ``EndpointSliceTracker``): a Service is not synced
    against a cache that misses its own last writes, which would create duplicate slices.
    """

    def __init__(
        self,
        *,
        client: ApiClient,
        services: Reflector,
        pods: Reflector,
        slices: Reflector,
        nodes: Reflector,
        workers: int = 4,
        retry_delay: float = 0.5,
        expectation_ttl: float = 10.0,
    ) -> None:
        self._client = client
        self._services = services
        self._slices = slices
        self._caches = (services, pods, slices, nodes)
        self._retry_delay = retry_delay
        self._expectation_ttl = expectation_ttl
        self._queue = WorkQueue(process=self._sync, workers=workers)
        # namespace -> {service key: selector}, for services we manage
        self._selectors: dict[str, dict[str, dict[str, str]]] = {}
        # namespace -> {pod key: pod}, so a sync never scans every pod in the cluster
        self._pods_by_ns: dict[str, dict[str, Obj]] = {}
        # service key -> {slice key: slice}, slices managed by this controller
        self._slices_by_service: dict[str, dict[str, Obj]] = {}
        self._zones: dict[str, str] = {}
        # service key -> {slice name: (resourceVersion written or None for deleted, deadline)}
        self._expected: dict[str, dict[str, tuple[int | None, float]]] = {}
        services.subscribe(self._on_service)
        pods.subscribe(self._on_pod)
        slices.subscribe(self._on_slice)
        nodes.subscribe(self._on_node)

    # --- event handlers: keep the indexes, enqueue the Services concerned ----------------

    def _on_service(self, key: str, old: Obj | None, new: Obj | None) -> None:
        ns = key.split("/", 1)[0]
        selectors = self._selectors.setdefault(ns, {})
        if new is not None and wants_slices(new):
            selector = selector_of(new)
            assert selector is not None
            selectors[key] = selector
        else:
            selectors.pop(key, None)
            if not selectors:
                self._selectors.pop(ns, None)
        if new is None:
            self._expected.pop(key, None)  # the garbage collector removes its slices
        self._queue.add(key)

    def _services_for(self, ns: str, labels: Mapping[str, Any] | None) -> list[str]:
        return [k for k, sel in self._selectors.get(ns, {}).items() if selects(sel, labels)]

    def _on_pod(self, key: str, old: Obj | None, new: Obj | None) -> None:
        ns = key.split("/", 1)[0]
        if new is not None:
            self._pods_by_ns.setdefault(ns, {})[key] = new
        else:
            pods = self._pods_by_ns.get(ns, {})
            pods.pop(key, None)
            if not pods:
                self._pods_by_ns.pop(ns, None)
        if old is not None and new is not None and endpoint_view(old) == endpoint_view(new):
            return
        targets = set()
        for pod in (old, new):
            if pod is not None:
                targets.update(self._services_for(ns, _meta(pod).get("labels")))
        for service_key in targets:
            self._queue.add(service_key)

    def _on_slice(self, key: str, old: Obj | None, new: Obj | None) -> None:
        old_owner = _service_key_of_slice(old) if old is not None else None
        new_owner = _service_key_of_slice(new) if new is not None else None
        if old_owner is not None and old_owner != new_owner:
            owned = self._slices_by_service.get(old_owner, {})
            owned.pop(key, None)
            if not owned:
                self._slices_by_service.pop(old_owner, None)
        if new_owner is not None and new is not None:
            self._slices_by_service.setdefault(new_owner, {})[key] = new
        name = key.split("/", 1)[-1]
        for owner in {o for o in (old_owner, new_owner) if o is not None}:
            self._observe(owner, name, new)
            self._queue.add(owner)

    def _observe(self, service_key: str, name: str, new: Obj | None) -> None:
        """Drop the expectation a watch event satisfies."""
        expected = self._expected.get(service_key)
        if not expected or name not in expected:
            return
        rv, _ = expected[name]
        if rv is None:  # we deleted it
            satisfied = new is None
        else:  # we wrote rv: that state or any later one will do
            seen = _rv(new) if new is not None else None
            satisfied = new is None or seen is None or seen >= rv
        if satisfied:
            del expected[name]
        if not expected:
            self._expected.pop(service_key, None)

    def _on_node(self, key: str, old: Obj | None, new: Obj | None) -> None:
        before = self._zones.get(key)
        if new is None:
            self._zones.pop(key, None)
        else:
            self._zones[key] = str((_meta(new).get("labels") or {}).get(ZONE_LABEL) or "")
        if self._zones.get(key) != before:
            for selectors in self._selectors.values():
                for service_key in selectors:
                    self._queue.add(service_key)

    # --- the sync ---------------------------------------------------------------------------

    def _stale(self, key: str) -> bool:
        """Whether our own recent writes to the Service's slices are not in the cache yet."""
        expected = self._expected.get(key)
        if not expected:
            return False
        now = time.monotonic()
        for name, (_, deadline) in list(expected.items()):
            if now > deadline:
                log.debug("%s: giving up waiting to see slice %s", key, name)
                del expected[name]
        if not expected:
            self._expected.pop(key, None)
            return False
        return True

    def _expect(self, key: str, name: str, written: Obj | None) -> None:
        """Remember a write (``written`` is the server's answer; ``None`` for a delete) until
        the slice watch shows it. Nothing is remembered when the watch was faster than the
        answer, or when the resourceVersion is opaque (not an integer) and cannot be compared.
        """
        cached = self._slices.cache.get(f"{key.split('/', 1)[0]}/{name}")
        rv: int | None = None
        if written is None:
            if cached is None:
                return
        else:
            rv = _rv(written)
            seen = _rv(cached) if cached is not None else None
            if rv is None or (seen is not None and seen >= rv):
                return
        deadline = time.monotonic() + self._expectation_ttl
        self._expected.setdefault(key, {})[name] = (rv, deadline)

    async def _sync(self, key: str) -> None:
        if not all(r.synced.is_set() for r in self._caches):  # never sync half a picture
            self._queue.add_after(key, 0.05)
            return
        service = self._services.cache.get(key)
        if service is None or not wants_slices(service):
            return  # deleted: the garbage collector removes its slices; no selector: not ours
        if self._stale(key):
            self._queue.add_after(key, self._retry_delay)
            return
        ns = key.split("/", 1)[0]
        selector = selector_of(service)
        pods = [
            p
            for p in self._pods_by_ns.get(ns, {}).values()
            if selects(selector, _meta(p).get("labels"))
        ]
        desired = desired_slices(service, pods, node_zones=self._zones)
        existing = [
            s
            for s in self._slices_by_service.get(key, {}).values()
            if not _meta(s).get("deletionTimestamp")
        ]
        plan = plan_slices(service, desired.slices, existing)
        if desired.unknown_nodes:
            self._queue.add_after(key, self._retry_delay)
        await self._commit(key, service, plan)

    async def _commit(self, key: str, service: Obj, plan: SlicePlan) -> None:
        ns = str(_meta(service)["namespace"])
        base = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
        try:
            if not _meta(service).get("deletionTimestamp"):
                for body in plan.create:
                    created = await self._client.create(base, body)
                    self._expect(key, str(_meta(created)["name"]), created)
            for body in plan.update:
                name = str(_meta(body)["name"])
                updated = await self._client.request("PUT", f"{base}/{name}", body=body)
                self._expect(key, name, updated)
            for name, uid in plan.delete:
                try:
                    await self._client.delete(f"{base}/{name}", uid=uid or None)
                except NotFound:
                    continue
                self._expect(key, name, None)
        except (Conflict, NotFound) as e:  # our cache lags the server: look again shortly
            log.debug("endpointslices of %s: %s", key, e)
            self._queue.add_after(key, 0.05)
        except ApiError as e:
            log.warning("endpointslices of %s: %s", key, e)
            self._queue.add_after(key, self._retry_delay)

    def start(self) -> None:
        self._queue.start()

    async def stop(self) -> None:
        await self._queue.stop()
