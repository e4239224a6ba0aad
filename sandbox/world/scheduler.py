"""The world's scheduler: binds pending pods to nodes, as kube-scheduler's default profile would.

Decision (pure, module-level functions):

* ``node_fits(pod, node)``: ``spec.nodeSelector`` and the required node-affinity terms (terms
  ORed, expressions ANDed; In, NotIn, Exists, DoesNotExist, Gt, Lt; ``matchFields`` on
  ``metadata.name``), and ``spec.unschedulable``.
* ``choose_node(pod, nodes, pod_counts)``: among fitting nodes, the highest sum of weights of
  matching preferred terms, then fewest pods, then name. ``None`` when nothing fits, with
  ``unschedulable_message`` giving kube-scheduler's wording.

Shell: ``Scheduler`` consumes pod and node reflectors, binds with
``POST .../pods/<name>/binding``, marks pods it cannot place ``PodScheduled=False`` reason
``Unschedulable``, and retries them when nodes or pods change, or every second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sandbox.world.client import ApiClient, ApiError, Conflict, NotFound, Reflector, WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def match_expression(expr: Obj, values: dict[str, str]) -> bool:
    """One NodeSelectorRequirement against a label (or field) map. Pure.

    Gt and Lt compare integers; a missing label or a non-integer value never matches them.
    """
    key = str(expr.get("key", ""))
    op = expr.get("operator")
    wanted = [str(v) for v in expr.get("values") or []]
    present = key in values
    value = values.get(key, "")
    if op == "In":
        return present and value in wanted
    if op == "NotIn":
        return not present or value not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(wanted) != 1:
            return False
        have, bound = _as_int(value), _as_int(wanted[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def match_term(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: all its expressions and fields must match. An empty term matches
    nothing, as in kube-scheduler. Pure."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    node_fields = {"metadata.name": str(meta.get("name", ""))}
    return all(match_expression(e, labels) for e in exprs) and all(
        match_expression(f, node_fields) for f in fields
    )


def _node_affinity(pod: Obj) -> Obj:
    spec = pod.get("spec") or {}
    return ((spec.get("affinity") or {}).get("nodeAffinity")) or {}


def matches_selector_and_affinity(pod: Obj, node: Obj) -> bool:
    """``spec.nodeSelector`` AND (any required nodeSelectorTerm). Pure."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = _node_affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    terms = required.get("nodeSelectorTerms") or []
    return any(match_term(t, node) for t in terms)


def node_unschedulable(node: Obj) -> bool:
    """A cordoned node (``spec.unschedulable``). Pure."""
    return bool((node.get("spec") or {}).get("unschedulable"))


def node_fits(pod: Obj, node: Obj) -> bool:
    """Whether ``pod`` may be placed on ``node``. Pure."""
    return not node_unschedulable(node) and matches_selector_and_affinity(pod, node)


def preference_score(pod: Obj, node: Obj) -> int:
    """Sum of weights of the preferred node-affinity terms ``node`` matches. Pure."""
    preferred = _node_affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(
        int(p.get("weight", 0)) for p in preferred if match_term(p.get("preference") or {}, node)
    )


def choose_node(pod: Obj, nodes: list[Obj], pod_counts: dict[str, int]) -> str | None:
    """The node to bind ``pod`` to, or ``None`` when no node fits. Pure.

    Highest preference score first, then the node with the fewest pods, then by name.
    """
    best: tuple[int, int, str] | None = None
    for node in nodes:
        if not node_fits(pod, node):
            continue
        name = str(node["metadata"]["name"])
        rank = (-preference_score(pod, node), pod_counts.get(name, 0), name)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[2]


def unschedulable_message(pod: Obj, nodes: list[Obj]) -> str:
    """kube-scheduler's FailedScheduling message for a pod no node fits. Pure.

    e.g. "0/6 nodes are available: 6 node(s) didn't match Pod's node affinity/selector.
    preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    """
    total = len(nodes)
    cordoned = sum(1 for n in nodes if node_unschedulable(n))
    mismatched = sum(
        1 for n in nodes if not node_unschedulable(n) and not matches_selector_and_affinity(pod, n)
    )
    reasons = []
    if mismatched:
        reasons.append(f"{mismatched} node(s) didn't match Pod's node affinity/selector")
    if cordoned:
        reasons.append(f"{cordoned} node(s) were unschedulable")
    if not total:
        return "no nodes available to schedule pods"
    head = f"0/{total} nodes are available: " + ", ".join(sorted(reasons)) + "."
    return (
        f"{head} preemption: 0/{total} nodes are available: "
        f"{total} Preemption is not helpful for scheduling."
    )


def wants_scheduling(pod: Obj) -> bool:
    """A live pod with no node whose schedulerName is ours (or unset). Pure."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return spec.get("schedulerName", DEFAULT_SCHEDULER) in (DEFAULT_SCHEDULER, "", None)


def unschedulable_condition(*, message: str, now: str) -> Obj:
    """The PodScheduled condition kube-scheduler posts for a pod it cannot place. Pure."""
    return {
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
        "reason": "Unschedulable",
        "message": message,
    }


def with_condition(conditions: list[Obj], cond: Obj) -> list[Obj] | None:
    """``conditions`` with ``cond`` replacing the one of its type; ``None`` if nothing would
    change apart from timestamps (keeps lastTransitionTime when the status is unchanged). Pure."""
    out: list[Obj] = []
    found = False
    for c in conditions:
        if c.get("type") != cond["type"]:
            out.append(c)
            continue
        found = True
        same = all(c.get(k) == cond.get(k) for k in ("status", "reason", "message"))
        if same:
            return None
        merged = dict(cond)
        if c.get("status") == cond.get("status"):
            merged["lastTransitionTime"] = c.get("lastTransitionTime", cond["lastTransitionTime"])
        out.append(merged)
    if not found:
        out.append(cond)
    return out


def pod_path(key: str) -> str:
    ns, name = key.split("/", 1)
    return f"/api/v1/namespaces/{ns}/pods/{name}"


class Scheduler:
    """Binds pending pods seen by ``pods`` to nodes seen by ``nodes``."""

    def __init__(
        self,
        *,
        client: ApiClient,
        pods: Reflector,
        nodes: Reflector,
        clock: Callable[[], str],
    ) -> None:
        self._client = client
        self._pods = pods
        self._nodes = nodes
        self._clock = clock
        self._queue = WorkQueue(process=self._schedule, workers=1)
        self._unschedulable: set[str] = set()
        self._assumed: dict[str, str] = {}  # pod key -> node we bound it to, until seen
        self._bound: dict[str, str] = {}  # pod key -> node, for live bound pods
        self._counts: dict[str, int] = {}  # node -> live bound pods
        self._retry_task: asyncio.Task[None] | None = None
        pods.subscribe(self._on_pod)
        nodes.subscribe(self._on_node)

    def _count(self, key: str, pod: Obj | None) -> None:
        """Keep ``_counts`` (live pods per node) up to date, incrementally."""
        node = None
        if pod is not None:
            node = (pod.get("spec") or {}).get("nodeName")
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                node = None
        before = self._bound.pop(key, None)
        if before is not None:
            self._counts[before] -= 1
        if node:
            self._bound[key] = node
            self._counts[node] = self._counts.get(node, 0) + 1

    def _on_pod(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self._count(key, new)
        if new is None or (new.get("spec") or {}).get("nodeName"):
            self._assumed.pop(key, None)
            self._unschedulable.discard(key)
            if old is not None and new is None:
                self._retry_unschedulable()
            return
        if wants_scheduling(new):
            self._queue.add(key)

    def _on_node(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self._queue.add(key)

    def _pod_counts(self) -> dict[str, int]:
        counts = dict(self._counts)
        for node in self._assumed.values():
            counts[node] = counts.get(node, 0) + 1
        return counts

    async def _schedule(self, key: str) -> None:
        pod = self._pods.cache.get(key)
        if pod is None or not wants_scheduling(pod) or key in self._assumed:
            self._unschedulable.discard(key)
            return
        nodes = sorted(self._nodes.cache.values(), key=lambda n: str(n["metadata"]["name"]))
        target = choose_node(pod, nodes, self._pod_counts())
        if target is None:
            self._unschedulable.add(key)
            await self._mark_unschedulable(key, pod, unschedulable_message(pod, nodes))
            return
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": target},
        }
        try:
            await self._client.create(pod_path(key) + "/binding", binding)
        except (NotFound, Conflict) as e:
            log.debug("binding %s to %s: %s", key, target, e)
            return
        self._unschedulable.discard(key)
        self._assumed[key] = target

    async def _mark_unschedulable(self, key: str, pod: Obj, message: str) -> None:
        cond = unschedulable_condition(message=message, now=self._clock())
        conditions = with_condition((pod.get("status") or {}).get("conditions") or [], cond)
        if conditions is None:
            return
        try:
            await self._client.merge_patch(
                pod_path(key) + "/status",
                {
                    "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
                    "status": {"conditions": conditions},
                },
            )
        except ApiError as e:  # stale or gone: the watch will bring the pod back
            log.debug("marking %s unschedulable: %s", key, e)

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._retry_unschedulable()

    def start(self) -> None:
        self._queue.start()
        self._retry_task = asyncio.create_task(self._retry_loop())

    async def stop(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            try:
                await self._retry_task
            except asyncio.CancelledError:
                pass
            self._retry_task = None
        await self._queue.stop()
