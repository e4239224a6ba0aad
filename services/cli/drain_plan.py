"""``kruise-mesh drain-plan``: which pods of a node can be evicted now without breaking a budget.

    python -m services.cli drain-plan --node NODE [--server ADDR] [--kubeconfig FILE]
                                      [--token T | --token-file F] [--ca-file CA]

Reads only; nothing is evicted, spent or written:

1. the node's pods come from the Kubernetes API (``fieldSelector=spec.nodeName=NODE``, all
   namespaces), leaving out what ``kubectl drain`` leaves out: pods managed by a DaemonSet
   and mirror (static) pods; the output says which were left out;
2. they go, in one ``BudgetService.PlanDisruption`` call, to ONE address: the gateway's
   API port for tools (``--server``, else ``$KRUISE_MESH_API``, else ``127.0.0.1:7070``; in
   a cluster ``kruise-mesh-rollout-api.kruise-mesh.svc:7070``), over TLS with the caller's
   own Kubernetes token (``services.cli.credentials``: ``--token``, ``--token-file``,
   ``$KRUISE_MESH_TOKEN``, the in-cluster ServiceAccount token, the kubeconfig user's),
   which needs ``get pods`` in every namespace of the node's pods. The gateway asks each
   namespace's owning budget replica (and, when a replica's ring differs, the owner it
   names) and answers one entry per pod in request order, each naming the replica that
   answered it (``DisruptionEntry.replica``; ``order`` counts per replica);
3. the entries are merged into one plan: the pods that can go now, numbered in eviction
   order (the free ones first, then those that use budget, interleaved across replicas
   as each replica interleaves its budgets), then the pods that must wait and why.

The budget replicas themselves are not asked: they take calls from the gateway only (mesh
certificates); the gateway's API port takes the caller's own Kubernetes token.

Exit code 0 with the plan; 1 with a one-line error (no traceback) when the node does not
exist, the API server or the gateway (or a budget replica) cannot be reached, or it refuses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.cli.credentials import ApiCredentials
from services.gateway.kube.client import KubeClient
from services.kit import errors

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# BudgetService.PlanDisruption takes at most this many pods per call.
MAX_PODS_PER_CALL = 10_000
RPC_TIMEOUT = 10.0
PAGE = 500
GATEWAY_ENV = "KRUISE_MESH_API"
DEFAULT_GATEWAY = "127.0.0.1:7070"

PodKey = tuple[str, str]
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

STYLES = {"NOW": "green", "WAIT": "yellow", "GONE": "dim", "NOT_OWNED": "red"}


class DrainPlanError(Exception):
    """What went wrong, in one line for the user."""


@dataclass(frozen=True, slots=True)
class NodePods:
    """The node's pods as ``kubectl drain`` sees them: to evict, and left out (ns/name)."""

    evict: tuple[PodKey, ...]
    daemon_set: tuple[str, ...] = ()
    mirror: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the merged plan; ``order`` from 1 for NOW, 0 otherwise."""

    order: int
    namespace: str
    pod: str
    budget: str
    verdict: str
    reason: str
    replica: str


def select_pods(items: Sequence[Mapping[str, Any]]) -> NodePods:
    """Split a node's pods as ``kubectl drain`` does (DaemonSet-managed and mirror pods stay).

    >>> ds = {"metadata": {"namespace": "a", "name": "x",
    ...       "ownerReferences": [{"kind": "DaemonSet", "controller": True}]}}
    >>> select_pods([ds, {"metadata": {"namespace": "a", "name": "y"}}])
    NodePods(evict=(('a', 'y'),), daemon_set=('a/x',), mirror=())
    """
    evict: list[PodKey] = []
    daemon_set: list[str] = []
    mirror: list[str] = []
    for item in items:
        meta = item.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            mirror.append("/".join(key))
        elif any(
            ref.get("controller") and ref.get("kind") == "DaemonSet"
            for ref in meta.get("ownerReferences") or []
        ):
            daemon_set.append("/".join(key))
        else:
            evict.append(key)
    return NodePods(evict=tuple(sorted(evict)), daemon_set=tuple(daemon_set), mirror=tuple(mirror))


def verdict_name(value: budget_pb2.PlanVerdict.ValueType) -> str:
    """``PLAN_VERDICT_NOW`` → ``NOW``."""
    return budget_pb2.PlanVerdict.Name(value).removeprefix("PLAN_VERDICT_")


def merge(
    answers: Sequence[tuple[str, Sequence[budget_pb2.DisruptionEntry]]],
) -> list[Row]:
    """One plan from several replicas' answers: NOW rows renumbered from 1, then the others.

    Budgets never span replicas (a namespace has one owner), so the NOW rows are merged by
    (uses budget, the replica's order, the replica's place in ``answers``): every replica's
    free evictions first, then the budget-spending ones interleaved across replicas.
    The other rows follow: WAIT, GONE, NOT_OWNED, each by namespace and pod.
    """
    now: list[tuple[tuple[bool, int, int], Row]] = []
    rest: list[Row] = []
    for index, (replica, entries) in enumerate(answers):
        for entry in entries:
            row = Row(
                order=0,
                namespace=entry.namespace,
                pod=entry.pod,
                budget=entry.budget,
                verdict=verdict_name(entry.verdict),
                reason=entry.reason,
                replica=replica,
            )
            if entry.verdict == budget_pb2.PLAN_VERDICT_NOW:
                now.append(((entry.spends_budget, entry.order, index), row))
            else:
                rest.append(row)
    now.sort(key=lambda item: item[0])
    ranks = {"WAIT": 0, "GONE": 1, "NOT_OWNED": 2}
    rest.sort(key=lambda r: (ranks.get(r.verdict, 3), r.namespace, r.pod))
    numbered = [
        Row(
            order=position,
            namespace=row.namespace,
            pod=row.pod,
            budget=row.budget,
            verdict=row.verdict,
            reason=row.reason,
            replica=row.replica,
        )
        for position, (_, row) in enumerate(now, start=1)
    ]
    return numbered + rest


def by_replica(
    entries: Sequence[budget_pb2.DisruptionEntry],
) -> list[tuple[str, list[budget_pb2.DisruptionEntry]]]:
    """The gateway's merged answer split back per replica, for ``merge``. Pure.

    Replicas in order of their first entry; each replica's entries in request order.
    """
    groups: dict[str, list[budget_pb2.DisruptionEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.replica, []).append(entry)
    return list(groups.items())


def summary(rows: Sequence[Row]) -> str:
    """``5 pods can be evicted now, 2 must wait`` (plus the pods gone or not planned)."""
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in STYLES}
    now = counts["NOW"]
    line = f"{now} pod{'' if now == 1 else 's'} can be evicted now, {counts['WAIT']} must wait"
    if counts["GONE"]:
        line += f", {counts['GONE']} no longer exist"
    if counts["NOT_OWNED"]:
        line += f", {counts['NOT_OWNED']} could not be planned (no replica owns them)"
    return line


def default_kubeconfig() -> str | None:
    """``$KUBECONFIG`` (its first file), else ``~/.kube/config``, else None (in-cluster)."""
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return candidate
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


def gateway_address(flag: str | None) -> str:
    """``--server``, else ``$KRUISE_MESH_API``, else ``127.0.0.1:7070`` (the API port)."""
    return flag or os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY


def parse_addresses(values: Sequence[str]) -> list[str]:
    """``["a:1,b:2", "c:3"]`` → ``["a:1", "b:2", "c:3"]`` (repeated flags and commas)."""
    return [a.strip() for value in values for a in value.split(",") if a.strip()]


async def node_pods(kube: KubeClient, node: str) -> list[dict[str, Any]]:
    """Every pod bound to ``node``, all namespaces, page by page; the node must exist."""
    try:
        await kube.request_json("GET", f"/api/v1/nodes/{node}")
    except errors.NotFound as e:
        raise DrainPlanError(f"node {node} not found") from e
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {"fieldSelector": f"spec.nodeName={node}", "limit": str(PAGE)}
        if token:
            query["continue"] = token
        page = await kube.request_json("GET", "/api/v1/pods", query=query)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items


async def ask(
    address: str,
    pods: Sequence[PodKey],
    *,
    who: str = "budget replica",
    credentials: ApiCredentials | None = None,
) -> list[budget_pb2.DisruptionEntry]:
    """``PlanDisruption`` at ``address`` (the gateway's API port with ``credentials``, or
    one budget replica), in calls of at most ``MAX_PODS_PER_CALL`` pods."""
    entries: list[budget_pb2.DisruptionEntry] = []
    channel_of = credentials.channel if credentials is not None else grpc.aio.insecure_channel
    async with channel_of(address) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        for start in range(0, len(pods), MAX_PODS_PER_CALL):
            chunk = pods[start : start + MAX_PODS_PER_CALL]
            request = budget_pb2.PlanDisruptionRequest(
                pods=[budget_pb2.PodRef(namespace=ns, name=name) for ns, name in chunk]
            )
            try:
                answer = await stub.PlanDisruption(request, timeout=RPC_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                problem = _rpc_problem(f"{who} {address}", e)
                if credentials is not None and e.code() in REFUSED:
                    problem += f" ({credentials.describe()})"
                raise DrainPlanError(problem) from e
            entries += answer.entries
    return entries


def _rpc_problem(who: str, error: grpc.aio.AioRpcError) -> str:
    """One line for a failed PlanDisruption at ``who`` ("the gateway ADDR" or "budget
    replica ADDR"). The gateway's UNAVAILABLE may be its own or a replica's behind it,
    which its message names."""
    code = error.code()
    gateway = who.startswith("the gateway")
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{who} is {'unavailable' if gateway else 'unreachable'}: {error.details()}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{who} did not answer within {RPC_TIMEOUT:.0f}s"
    return f"{who} refused the plan: {code.name}: {error.details()}"


async def plan_through_gateway(
    pods: Sequence[PodKey], *, gateway: str, credentials: ApiCredentials | None = None
) -> list[Row]:
    """One plan from the gateway, which asks every owning budget replica."""
    entries = await ask(
        gateway, pods, who="the gateway", credentials=credentials or ApiCredentials()
    )
    return merge(by_replica(entries))


def render(rows: Sequence[Row], *, node: str) -> Table:
    table = Table("order", "pod", "budget", "verdict", "reason", title=f"drain plan for {node}")
    for row in rows:
        table.add_row(
            str(row.order) if row.order else "-",
            Text(f"{row.namespace}/{row.pod}"),
            Text(row.budget or "-"),
            Text(row.verdict, style=STYLES.get(row.verdict, "")),
            Text(row.reason),
        )
    return table


async def run_drain_plan(
    *,
    node: str,
    kubeconfig: str | None,
    server: str | None = None,
    console: Console,
    errors_out: Console | None = None,
    credentials: ApiCredentials | None = None,
) -> int:
    """The ``drain-plan`` command: print the plan for ``node``; 0, or 1 with an error line.

    The gateway at ``server`` (see ``gateway_address``) plans.
    """
    errors_out = errors_out or Console(stderr=True)
    try:
        rows, pods = await _plan_node(
            node=node,
            kubeconfig=kubeconfig,
            gateway=gateway_address(server),
            credentials=credentials,
        )
    except DrainPlanError as e:
        errors_out.print(Text(f"error: {e}", style="red"))
        return 1
    left_out = [
        f"{len(pods.daemon_set)} DaemonSet-managed pod(s) ({', '.join(pods.daemon_set)})"
        if pods.daemon_set
        else "",
        f"{len(pods.mirror)} mirror pod(s) ({', '.join(pods.mirror)})" if pods.mirror else "",
    ]
    shown = [part for part in left_out if part]
    if shown:
        console.print(Text(f"left out, as kubectl drain does: {'; '.join(shown)}"))
    if rows:
        console.print(render(rows, node=node))
    else:
        console.print(Text(f"node {node} has no pods to evict"))
    console.print(Text(summary(rows), style="bold"))
    return 0


async def _plan_node(
    *,
    node: str,
    kubeconfig: str | None,
    gateway: str,
    credentials: ApiCredentials | None = None,
) -> tuple[list[Row], NodePods]:
    try:
        kube = await KubeClient.connect(kubeconfig=kubeconfig)
    except errors.MeshError as e:
        raise DrainPlanError(str(e)) from e
    try:
        items = await node_pods(kube, node)
    except errors.MeshError as e:
        raise DrainPlanError(f"cannot list the pods of node {node}: {e}") from e
    finally:
        await kube.close()
    pods = select_pods(items)
    if not pods.evict:
        return [], pods
    return await plan_through_gateway(pods.evict, gateway=gateway, credentials=credentials), pods
