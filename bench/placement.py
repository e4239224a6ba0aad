"""Placement (PersistentPodState) benchmark: the pod CREATE mutation, recording at scale, a
fresh replica's rebuild and its memory.

    python -m bench.placement            # the whole run (about 4 min on 2 vCPUs)
    python -m bench.placement --quick    # a smoke run (about 1 min): 100 × 10 pods

Everything is real and on 127.0.0.1: ``services.cli.local.LocalMesh(replicas=1)`` starts the
sandbox (API server with its StatefulSet controller, scheduler and kubelets, admission on),
the gateway and ONE replica of each service, so the placement replica holds every object.
The bench drives the feature through the Kubernetes API only (``KubeClient``).

**1. Pod CREATE mutation through the gateway.** A StatefulSet ``web`` (10 replicas, the
auto-generation annotations, preferred topology ``kubernetes.io/hostname``) is created and the
bench waits until its generated PersistentPodState records all 10 pods. Ten AdmissionReviews
are built for those pods (``bench.admission.pod_review``, ~7.3 KB: a controller ownerReference
to the StatefulSet with its uid), so the placement replica finds the record and answers with a
JSONPatch (preferred node affinity + the injected annotation). Each review is first sent once
and its patch decoded and checked (the recorded node must be in it): the bench refuses to time
a no-op. The load is ``bench.admission``'s generator in its own process: an open loop at
``--rate`` reviews/s (latency from the intended send time, no coordinated omission) over 64
keep-alive TLS connections, the 10 reviews in turn; an answer without a patch is an error.
The baseline is ``bench.admission``'s bare endpoint (the gateway's aiohttp webhook server
answering an allowed review with a patch in-process, no hop, the gateway's own certificate),
measured in the same repetition, interleaved. CPU is utime+stime of the server processes
(gateway + placement; the bare process) over the measured window, per review. The figure is
measured twice: with only that StatefulSet in the mesh, and again after the scale phase with
the (fresh) replica holding every pod.

**2. Scale.** ``--sets`` StatefulSets × ``--pods`` pods (podManagementPolicy Parallel, the same
annotations) across ``--namespaces`` namespaces, created through the API with 16 in flight.
The sandbox's StatefulSet controller creates the pods (each CREATE goes through the gateway's
webhooks), its scheduler binds them and its kubelets make them Ready; the placement replica
generates each PersistentPodState and records its pods.

* (a) Ready → recorded: the bench watches pods (label selector) and PersistentPodStates (all
  namespaces) itself. For each pod: t_ready = when the bench first saw it Ready, t_recorded =
  when it first saw a PersistentPodState status with that pod's record; the latency is the
  difference (both streams come from the same API server to the same process, so the watch
  delivery cost cancels out, up to the bench's own event loop). Pods that became Ready before
  their PersistentPodState existed wait for its generation; they are shown separately. The
  pod-ready rate and each process's CPU over the phase show whether the sandbox (one Python
  process running the API server and every world controller) was the limit; the placement
  work queue's depth (sampled every 0.25 s), its reconciles by result, and the gateway's
  histograms (ClusterService call latency, webhook latency) over the phase show where the
  records waited.
* (b) Rebuild: the placement replica is stopped (SIGTERM) and started again on the same port.
  From the spawn: the ready line (gRPC server listening), the first Sync message applied
  (``GetReplicaStatus.last_sequence`` ≥ 1: the gateway reconnected, after its 0.2 s → 5 s
  backoff), ``synced`` (snapshot applied, indexes rebuilt), and the work queue drained: on
  its ``/metrics``, ``kruise_mesh_placement_reconciles_total`` summed over results ≥ the
  number of PersistentPodStates it holds and ``kruise_mesh_placement_queue_depth`` == 0
  (polled every 20 ms). Status writes made by the rebuild (``result="written"``) should be 0:
  everything was recorded. The longest GetReplicaStatus answer (polled every 10 ms) shows how
  long the replica's event loop was busy at once. Repeated ``--restarts`` times.
* (c) Memory: VmRSS of the placement replica. The baseline is the same replica idle, right
  after the mesh started (synced, only the nodes in its cache); it is compared with the fresh
  replica after each rebuild (holding everything, no churn behind it) and with the replica that
  lived through the creation storm (allocator high-water marks included).

Cells are median [min–max] over repetitions where a figure repeats. Errors in (1), a missing
patch, or a phase that does not converge in its time cap fail the run (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from bench import common
from bench.admission import (
    PATH,
    Cell,
    Workload,
    _run_load,
    pod_review,
    start_bare_webhook,
    stop_spawned,
)
from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors

AUTO = "kruise.io/auto-generate-persistent-pod-state"
PREFERRED = "kruise.io/preferred-persistent-topology"
HOSTNAME = "kubernetes.io/hostname"
INJECTED = "kruise.io/injected-persistent-pod-state"
BENCH_LABEL = "bench.kruise.io/placement"
PPS_API = "/apis/apps.kruise.io/v1alpha1"
ADMIT_NS = "bench-admit"
ADMIT_STS = "web"
ADMIT_PODS = 10
SCALE_PREFIX = "bench-pps-"
CREATE_CONCURRENCY = 16
METRICS_INTERVAL = 0.02
DEPTH_INTERVAL = 0.25
RECONCILES = "kruise_mesh_placement_reconciles_total"
QUEUE_DEPTH = "kruise_mesh_placement_queue_depth"


T = TypeVar("T")


class BenchError(RuntimeError):
    """A phase failed or did not converge: the figures would be wrong, so the run stops."""


@dataclass(frozen=True)
class Plan:
    sets: int
    pods: int  # per StatefulSet
    namespaces: int
    reps: int
    rate: float
    duration: float  # seconds of open-loop load per run
    restarts: int
    scale_timeout: float  # cap on the whole scale phase
    stall_timeout: float  # no progress for this long fails the phase

    @property
    def total_pods(self) -> int:
        return self.sets * self.pods


def statefulset(name: str, replicas: int, *, bench: str) -> dict[str, Any]:
    """A StatefulSet asking for a generated PersistentPodState (preferred: the node)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "annotations": {AUTO: "true", PREFERRED: HOSTNAME}},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, BENCH_LABEL: bench}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


async def ensure_namespace(kube: KubeClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    with contextlib.suppress(errors.AlreadyExists):
        await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))


async def eventually(
    what: str, check: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float = 0.1
) -> T:
    """Poll ``check()`` until it returns something truthy; BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise BenchError(f"not converged after {timeout:.0f} s: {what}")
        await asyncio.sleep(interval)


# ---- the placement replica's introspection -------------------------------------------------------
def kind_counts(status: mesh_pb2.GetReplicaStatusResponse) -> dict[int, int]:
    return {c.kind: c.count for c in status.counts}


@dataclass
class QueueMetrics:
    reconciles: dict[str, float]
    depth: float

    @property
    def total(self) -> float:
        return sum(self.reconciles.values())


async def queue_metrics(http: aiohttp.ClientSession, ops_port: int) -> QueueMetrics:
    samples = await scrape(http, ops_port)
    depth = samples.get((QUEUE_DEPTH, ""))
    if depth is None:
        raise BenchError(f"the placement replica exports no {QUEUE_DEPTH} gauge")
    reconciles = deltas({}, samples, RECONCILES, "result")
    return QueueMetrics(reconciles=reconciles, depth=depth)


async def wait_drained(
    http: aiohttp.ClientSession, ops_port: int, *, reconciles: float, timeout: float
) -> tuple[float, QueueMetrics]:
    """Until ``reconciles`` PersistentPodState reconciles are done and the queue is empty;
    the perf_counter time it was seen and the metrics then."""
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        metrics = await queue_metrics(http, ops_port)
        if metrics.total >= reconciles and metrics.depth == 0:
            return now, metrics
        if now > deadline:
            raise BenchError(
                f"placement queue not drained after {timeout:.0f} s: "
                f"{metrics.total:.0f}/{reconciles:.0f} reconciles, depth {metrics.depth:.0f}"
            )
        await asyncio.sleep(METRICS_INTERVAL)


def rss_mb(pid: int) -> float:
    return common.proc_rss_bytes(pid) / 1e6


async def settled_rss(pid: int, *, samples: int = 5, interval: float = 0.2) -> float:
    """Median VmRSS (MB) over a second, so one transient buffer does not decide it."""
    values = []
    for _ in range(samples):
        values.append(rss_mb(pid))
        await asyncio.sleep(interval)
    return common.median(values)


Samples = dict[tuple[str, str], float]
_SAMPLE_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.M)


async def scrape(http: aiohttp.ClientSession, ops_port: int) -> Samples:
    """Every sample of a ``/metrics`` page: (name, '{labels}') → value."""
    async with http.get(f"http://127.0.0.1:{ops_port}/metrics") as resp:
        raw = await resp.read()
    return {
        (m.group(1).decode(), (m.group(2) or b"").decode()): float(m.group(3))
        for m in _SAMPLE_RE.finditer(raw)
    }


def label(labels: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', labels)
    return found.group(1) if found else ""


def means(before: Samples, after: Samples, metric: str, *keys: str) -> dict[str, tuple[int, float]]:
    """Per label combination of a histogram: (observations, mean seconds) between two scrapes."""
    out: dict[str, tuple[int, float]] = {}
    for (name, labels), count in after.items():
        if name != f"{metric}_count":
            continue
        n = count - before.get((name, labels), 0.0)
        total = after.get((f"{metric}_sum", labels), 0.0)
        total -= before.get((f"{metric}_sum", labels), 0.0)
        if n > 0:
            out["/".join(label(labels, k) for k in keys)] = (int(n), total / n)
    return out


def deltas(before: Samples, after: Samples, metric: str, key: str) -> dict[str, float]:
    """Per ``key`` label of a counter: how much it grew between two scrapes."""
    out: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name == metric:
            grown = value - before.get((name, labels), 0.0)
            if grown:
                out[label(labels, key)] = grown
    return out


def our_cpu(pids: Sequence[int]) -> float:
    """CPU seconds of ``pids`` plus this process and the children it has waited for."""
    return sum(common.proc_cpu_seconds(p) for p in pids) + sum(os.times()[:4])


# ---- 1. the pod CREATE mutation ------------------------------------------------------------------
def placement_review(*, namespace: str, sts: str, uid: str, index: int) -> bytes:
    """``pod_review()`` made the CREATE of pod ``<sts>-<index>`` of the StatefulSet ``uid``."""
    review: dict[str, Any] = orjson.loads(pod_review())
    request = review["request"]
    name = f"{sts}-{index}"
    request["uid"] = f"5f1c8a2e-3b7d-4c11-9e4a-{index:012d}"
    request["name"] = name
    request["namespace"] = namespace
    pod = request["object"]
    meta = pod["metadata"]
    meta.update(name=name, namespace=namespace, generateName=f"{sts}-")
    meta["labels"] = {
        "app": sts,
        "apps.kubernetes.io/pod-index": str(index),
        "controller-revision-hash": f"{sts}-5d8f7c9b6",
        "statefulset.kubernetes.io/pod-name": name,
    }
    meta["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": sts,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    pod["spec"]["hostname"] = name
    pod["spec"]["subdomain"] = sts
    for volume in pod["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = f"data-{name}"
    return orjson.dumps(review)


async def recorded_statefulset(
    kube: KubeClient, *, namespace: str, name: str, pods: int, timeout: float
) -> tuple[str, dict[str, str]]:
    """Create StatefulSet ``name`` and wait until its PersistentPodState records ``pods`` pods;
    its uid and the recorded node of each pod."""
    await ensure_namespace(kube, namespace)
    sts = await kube.request_json(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        body=orjson.dumps(statefulset(name, pods, bench="admission")),
    )

    async def recorded() -> dict[str, str] | None:
        try:
            pps = await kube.request_json(
                "GET", f"{PPS_API}/namespaces/{namespace}/persistentpodstates/{name}"
            )
        except errors.NotFound:
            return None
        states = (pps.get("status") or {}).get("podStates") or {}
        nodes = {
            pod: str(state.get("nodeName", ""))
            for pod, state in states.items()
            if (state.get("nodeTopologyLabels") or {}).get(HOSTNAME)
        }
        return nodes if len(nodes) == pods else None

    nodes = await eventually(
        f"PersistentPodState {namespace}/{name} records {pods} pods", recorded, timeout=timeout
    )
    return str(sts["metadata"]["uid"]), nodes


async def check_patch(*, port: int, cafile: str, body: bytes, node: str) -> int:
    """Send ``body`` once; the answer must allow with a JSONPatch injecting ``node``. The
    number of patch operations."""
    context = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), timeout=aiohttp.ClientTimeout(total=15)
    ) as http:
        async with http.post(
            f"https://127.0.0.1:{port}{PATH}",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            status, raw = resp.status, await resp.read()
    if status != 200:
        raise BenchError(f"webhook answered {status}: {raw[:300]!r}")
    answer = orjson.loads(raw).get("response") or {}
    if not answer.get("allowed") or answer.get("patchType") != "JSONPatch":
        raise BenchError(f"no JSONPatch in the answer (not timing a no-op): {raw[:400]!r}")
    ops = orjson.loads(base64.b64decode(answer["patch"]))
    paths = {op.get("path") for op in ops}
    if "/spec/affinity" not in paths or node not in orjson.dumps(ops).decode():
        raise BenchError(f"the patch does not inject node {node}: {ops}")
    annotation = "/metadata/annotations/" + INJECTED.replace("/", "~1")
    if annotation not in paths and "/metadata/annotations" not in paths:
        raise BenchError(f"the patch does not annotate the pod: {ops}")
    return len(ops)


@dataclass
class Mutation:
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # (state, variant)
    ratio_p50: dict[str, list[float]] = field(default_factory=dict)  # state → per-rep ratios
    ratio_p99: dict[str, list[float]] = field(default_factory=dict)
    foreign: dict[str, list[float]] = field(default_factory=dict)  # state → cores per run
    review_bytes: int = 0
    patch_ops: int = 0
    first_error: str = ""


async def measure_mutation(
    mesh: LocalMesh,
    plan: Plan,
    result: Mutation,
    *,
    state: str,
    bodies_file: Path,
    bare_port: int,
    bare_pid: int,
) -> None:
    """``plan.reps`` repetitions of bare, then gateway, open loop at ``plan.rate``."""
    cafile = str(mesh.workdir / "gateway-certs" / "ca.crt")
    gateway_pids = [mesh.procs["gateway"].pid, mesh.procs["placement-0"].pid]
    workload = Workload(
        f"open {plan.rate:g}/s", connections=64, rate=plan.rate, duration=plan.duration
    )
    variants = {"bare": (bare_port, [bare_pid]), "gateway": (mesh.webhook_port, gateway_pids)}
    everyone = [bare_pid, *(proc.pid for proc in mesh.procs.values())]
    for _ in range(plan.reps):
        p50: dict[str, float] = {}
        p99: dict[str, float] = {}
        for variant, (port, pids) in variants.items():
            busy, ours, wall = common.machine_busy_seconds(), our_cpu(everyone), time.perf_counter()
            load, cpu = await asyncio.to_thread(
                _run_load,
                port=port,
                cafile=cafile,
                body=str(bodies_file),
                workload=workload,
                pids=pids,
                extra=["--expect-patch"],
            )
            foreign = common.machine_busy_seconds() - busy - (our_cpu(everyone) - ours)
            wall = time.perf_counter() - wall
            result.foreign.setdefault(state, []).append(max(0.0, foreign) / wall)
            cell = result.cells.setdefault((state, variant), Cell())
            answered = load["ok"] + load["errors"]
            p50[variant] = common.percentile(load["latencies_ms"], 0.50)
            p99[variant] = common.percentile(load["latencies_ms"], 0.99)
            cell.p50.append(p50[variant])
            cell.p99.append(p99[variant])
            cell.throughput.append(answered / load["wall"])
            cell.cpu_us.append(cpu / max(answered, 1) * 1e6)
            cell.errors += load["errors"]
            if load["errors"] and not result.first_error:
                result.first_error = f"{variant} ({state}): {load['errors']} bad answers"
        result.ratio_p50.setdefault(state, []).append(p50["gateway"] / p50["bare"])
        result.ratio_p99.setdefault(state, []).append(p99["gateway"] / p99["bare"])


async def prepare_mutation(
    mesh: LocalMesh, kube: KubeClient, workdir: Path, result: Mutation
) -> Path:
    """The recorded StatefulSet, its reviews (one per line) and a checked patch for each."""
    uid, nodes = await recorded_statefulset(
        kube, namespace=ADMIT_NS, name=ADMIT_STS, pods=ADMIT_PODS, timeout=60
    )
    cafile = str(mesh.workdir / "gateway-certs" / "ca.crt")
    bodies = []
    for index in range(ADMIT_PODS):
        body = placement_review(namespace=ADMIT_NS, sts=ADMIT_STS, uid=uid, index=index)
        node = nodes[f"{ADMIT_STS}-{index}"]
        result.patch_ops = await check_patch(
            port=mesh.webhook_port, cafile=cafile, body=body, node=node
        )
        bodies.append(body)
    result.review_bytes = int(common.median([len(b) for b in bodies]))
    path = workdir / "placement-reviews.jsonl"
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def print_mutation(result: Mutation, plan: Plan, *, pods_held: int) -> None:
    rows = []
    states = {"empty": "1 StatefulSet", "loaded": f"{pods_held:,} pods held"}
    for state, caption in states.items():
        for variant in ("bare", "gateway"):
            cell = result.cells.get((state, variant))
            if cell is None:
                continue
            name = "bare endpoint" if variant == "bare" else "gateway → placement"
            rows.append(
                [
                    f"{name} ({caption})",
                    common.spread(cell.p50, 2),
                    common.spread(cell.p99, 2),
                    common.spread(cell.throughput, 0),
                    common.spread(cell.cpu_us, 0),
                    str(cell.errors),
                ]
            )
        if state in result.ratio_p99:
            rows.append(
                [
                    f"ratio gateway / bare ({caption})",
                    common.spread(result.ratio_p50[state], 1),
                    common.spread(result.ratio_p99[state], 1),
                    "",
                    "",
                    "",
                ]
            )
    p99s = [v for (_, variant), c in result.cells.items() if variant == "gateway" for v in c.p99]
    p99s = p99s or [float("nan")]
    worst = max(
        (common.median(c.p99) for (_, v), c in result.cells.items() if v == "gateway"),
        default=float("nan"),
    )
    common.print_table(
        f"1. pod CREATE mutation via https://127.0.0.1/placement/mutate-pods, open loop "
        f"{plan.rate:g} reviews/s × {plan.duration:g} s, median [min–max] of {plan.reps} reps",
        ["variant", "p50 ms", "p99 ms", "reviews/s", "CPU µs/review", "errors"],
        rows,
        notes=[
            f"review {result.review_bytes:,} B (Pod CREATE of a recorded StatefulSet pod, "
            f"{ADMIT_PODS} pods in turn); every gateway answer carried a "
            f"{result.patch_ops}-op JSONPatch (checked once per pod, then per answer)",
            "CPU = server processes over the window: bare process; gateway + placement",
            "foreign CPU (other tenants; machine busy minus the mesh, bench and load "
            "generator), cores per run: "
            + "; ".join(
                f"{states[state]} {common.spread(values, 2)}"
                for state, values in result.foreign.items()
            ),
            f"target p99 ≤ 5 ms: worst median gateway p99 {worst:.2f} ms → "
            f"{'met' if worst <= 5.0 else 'NOT met'} (single runs: "
            f"{min(p99s):.2f}–{max(p99s):.2f} ms)",
        ],
    )


# ---- 2. scale ------------------------------------------------------------------------------------
@dataclass
class Observer:
    """What the bench's own watches saw, with perf_counter times."""

    prefix: str
    created: dict[tuple[str, str], float] = field(default_factory=dict)
    ready_at: dict[tuple[str, str], float] = field(default_factory=dict)
    recorded_at: dict[tuple[str, str], float] = field(default_factory=dict)
    pps_at: dict[tuple[str, str], float] = field(default_factory=dict)
    events: int = 0

    async def watch(self, kube: KubeClient, path: str, query: dict[str, str], pods: bool) -> None:
        async for _, obj, now in common.watch_objects(kube, path, query):
            self.events += 1
            if pods:
                self._pod(obj, now)
            else:
                self._pps(obj, now)

    def _pod(self, pod: dict[str, Any], now: float) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        if not key[0].startswith(self.prefix):
            return
        self.created.setdefault(key, now)
        if key not in self.ready_at and ready(pod):
            self.ready_at[key] = now

    def _pps(self, pps: dict[str, Any], now: float) -> None:
        meta = pps["metadata"]
        namespace = meta["namespace"]
        if not namespace.startswith(self.prefix):
            return
        self.pps_at.setdefault((namespace, meta["name"]), now)
        for pod in (pps.get("status") or {}).get("podStates") or {}:
            self.recorded_at.setdefault((namespace, pod), now)


@dataclass
class Scale:
    wall: float = 0.0
    create_wall: float = 0.0  # until the last StatefulSet POST answered
    first_ready: float = 0.0  # seconds after the first POST
    last_ready: float = 0.0
    last_recorded: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, every recorded pod
    before_pps: list[float] = field(default_factory=list)  # Ready before their own PPS existed
    during_generation: list[float] = field(default_factory=list)  # ... after, others pending
    after_generation: list[float] = field(default_factory=list)  # ... after the last PPS
    generated: float = 0.0  # seconds after the first POST the last PPS was first seen
    gateway: tuple[Samples, Samples] = ({}, {})  # /metrics before and after the phase
    placement: tuple[Samples, Samples] = ({}, {})
    depth: list[tuple[float, float]] = field(default_factory=list)  # (s after t0, queue depth)
    ready: int = 0
    recorded: int = 0
    pps: int = 0
    cpu: common.CpuWindow | None = None
    events: int = 0


async def list_rv(kube: KubeClient, path: str) -> str:
    listed = await kube.request_json("GET", path, query={"limit": "1"})
    return str(listed["metadata"]["resourceVersion"])


def _progress(message: str) -> None:
    print(f"[bench.placement] {message}", file=sys.stderr, flush=True)


async def run_scale(mesh: LocalMesh, kube: KubeClient, plan: Plan) -> Scale:
    namespaces = [f"{SCALE_PREFIX}{i:02d}" for i in range(plan.namespaces)]
    for namespace in namespaces:
        await ensure_namespace(kube, namespace)
    observer = Observer(prefix=SCALE_PREFIX)
    pod_query = {"labelSelector": f"{BENCH_LABEL}=scale"}
    pod_rv = await list_rv(kube, "/api/v1/pods")
    pps_rv = await list_rv(kube, f"{PPS_API}/persistentpodstates")
    watches = [
        asyncio.create_task(
            observer.watch(kube, "/api/v1/pods", {**pod_query, "resourceVersion": pod_rv}, True)
        ),
        asyncio.create_task(
            observer.watch(
                kube, f"{PPS_API}/persistentpodstates", {"resourceVersion": pps_rv}, False
            )
        ),
    ]
    pids = {
        name: proc.pid
        for name, proc in mesh.procs.items()
        if name in ("sandbox", "gateway") or name.endswith("-0")
    }
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    gateway_port = int(mesh.procs["gateway"].ready["ops_port"])
    placement_port = int(mesh.procs["placement-0"].ready["ops_port"])
    before = (await scrape(http, gateway_port), await scrape(http, placement_port))
    cpu = common.CpuWindow(pids).start()
    result = Scale(cpu=cpu)
    t0 = time.perf_counter()

    async def sample_depth() -> None:
        while True:
            metrics = await queue_metrics(http, placement_port)
            result.depth.append((time.perf_counter() - t0, metrics.depth))
            await asyncio.sleep(DEPTH_INTERVAL)

    watches.append(asyncio.create_task(sample_depth()))
    try:

        async def create(i: int) -> None:
            namespace = namespaces[i % len(namespaces)]
            await kube.request(
                "POST",
                f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                body=orjson.dumps(statefulset(f"sts-{i:04d}", plan.pods, bench="scale")),
                timeout=30,
            )

        created = await common.run_bounded(
            plan.sets, CREATE_CONCURRENCY, create, time_cap=plan.scale_timeout
        )
        if created.errors or created.ok != plan.sets:
            raise BenchError(
                f"created {created.ok}/{plan.sets} StatefulSets: {created.first_error}"
            )
        result.create_wall = time.perf_counter() - t0
        _progress(f"{plan.sets:,} StatefulSets created in {result.create_wall:.1f} s")

        total = plan.total_pods
        deadline = t0 + plan.scale_timeout
        last_state: tuple[int, ...] = ()
        last_change = last_report = time.perf_counter()
        while True:
            for task in watches:
                if task.done():
                    task.result()  # a failed watch fails the phase with its error
                    raise BenchError("a watch ended unexpectedly")
            state = (
                len(observer.created),
                len(observer.ready_at),
                len(observer.recorded_at),
                len(observer.pps_at),
            )
            now = time.perf_counter()
            if state[1] >= total and state[2] >= total:
                break
            if state != last_state:
                last_state, last_change = state, now
            if now - last_report >= 10:
                last_report = now
                _progress(
                    f"{now - t0:5.0f} s: pods created {state[0]:,}, ready {state[1]:,}, "
                    f"recorded {state[2]:,} of {total:,}; PersistentPodStates {state[3]:,}"
                )
            if now - last_change > plan.stall_timeout or now > deadline:
                why = "no progress" if now <= deadline else "time cap"
                raise BenchError(
                    f"scale phase did not converge ({why} after {now - t0:.0f} s): pods "
                    f"created {state[0]:,}, ready {state[1]:,}, recorded {state[2]:,} of "
                    f"{total:,}; PersistentPodStates {state[3]:,} of {plan.sets:,} "
                    f"(logs: {mesh.logs})"
                )
            await asyncio.sleep(0.1)
        cpu.stop()
        result.gateway = (before[0], await scrape(http, gateway_port))
        result.placement = (before[1], await scrape(http, placement_port))
    finally:
        await http.close()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
    result.wall = time.perf_counter() - t0
    result.events = observer.events
    result.ready = len(observer.ready_at)
    result.recorded = len(observer.recorded_at)
    result.pps = len(observer.pps_at)
    result.first_ready = min(observer.ready_at.values()) - t0
    result.last_ready = max(observer.ready_at.values()) - t0
    result.last_recorded = max(observer.recorded_at.values()) - t0
    generated = max(observer.pps_at.values())
    result.generated = generated - t0
    for key, at in observer.ready_at.items():
        recorded = observer.recorded_at.get(key)
        if recorded is None:
            continue
        latency = recorded - at
        result.latencies.append(latency)
        pps = observer.pps_at.get((key[0], key[1].rsplit("-", 1)[0]))
        if pps is None or pps > at:
            result.before_pps.append(latency)
        elif at < generated:
            result.during_generation.append(latency)
        else:
            result.after_generation.append(latency)
    return result


def print_scale(scale: Scale, plan: Plan) -> None:
    def row(name: str, values: list[float]) -> list[str]:
        if not values:
            return [name, "0", "-", "-", "-", "-"]
        return [
            name,
            f"{len(values):,}",
            f"{common.percentile(values, 0.50) * 1000:,.0f}",
            f"{common.percentile(values, 0.99) * 1000:,.0f}",
            f"{max(values) * 1000:,.0f}",
            f"{min(values) * 1000:,.0f}",
        ]

    assert scale.cpu is not None
    cores = {name: secs / scale.cpu.wall for name, secs in scale.cpu.seconds.items()}
    ready_span = max(scale.last_ready, 1e-9)
    rows = [
        row("every pod", scale.latencies),
        row("Ready before their own PPS existed", scale.before_pps),
        row(f"Ready while PPS were generated (< {scale.generated:.0f} s)", scale.during_generation),
        row(
            f"Ready after the last PPS appeared (≥ {scale.generated:.0f} s)", scale.after_generation
        ),
    ]
    calls = means(*scale.gateway, "kruise_mesh_cluster_api_request_duration_seconds", "method")
    hooks = means(*scale.gateway, "kruise_mesh_webhook_duration_seconds", "service", "webhook")
    reconciles = deltas(*scale.placement, "kruise_mesh_placement_reconciles_total", "result")
    generations = deltas(*scale.placement, "kruise_mesh_placement_generations_total", "action")
    p99 = common.percentile(scale.latencies, 0.99)
    peak_at, peak = max(scale.depth, key=lambda d: d[1], default=(0.0, 0.0))
    busy_until = max((t for t, d in scale.depth if d > 100), default=0.0)
    sandbox_bound = cores.get("sandbox", 0.0) >= 0.85
    notes = [
        f"{plan.sets:,} StatefulSets × {plan.pods} pods in {plan.namespaces} namespaces; "
        f"recorded {scale.recorded:,} of {plan.total_pods:,} pods, {scale.pps:,} "
        f"PersistentPodStates generated",
        f"StatefulSets POSTed in {scale.create_wall:.1f} s ({CREATE_CONCURRENCY} in flight); "
        f"first pod Ready at {scale.first_ready:.1f} s, last at {scale.last_ready:.1f} s → "
        f"pod-ready rate {scale.ready / ready_span:,.0f} pods/s (sandbox: API server + "
        f"StatefulSet controller + scheduler + kubelets, webhooks on every pod CREATE); last "
        f"record at {scale.last_recorded:.1f} s; {scale.events:,} watch events read by the bench",
        "CPU over the phase (cores): "
        + ", ".join(f"{name} {value:.2f}" for name, value in sorted(cores.items()))
        + f", foreign {scale.cpu.foreign / scale.cpu.wall:.2f} (of 2 vCPUs)",
        (
            "the sandbox process was CPU-bound (≥ 0.85 of its one Python thread): it sets the "
            "pod rate, and the records queue behind its writes"
            if sandbox_bound
            else "the sandbox was not CPU-bound: its pod rate is paced by its world's serial "
            "round trips (scheduler: 1 worker binding pod by pod; StatefulSet controller: 4 "
            "workers, each pod CREATE through the webhooks)"
        ),
        f"placement work queues (records and generations, sampled every {DEPTH_INTERVAL} s): "
        f"peak {peak:,.0f} keys at {peak_at:.0f} s; last above 100 keys at {busy_until:.0f} s",
        "placement reconciles: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(reconciles.items()))
        + "; generations: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(generations.items())),
        "placement's writes through the gateway (ClusterService, mean incl. the API server): "
        + ", ".join(f"{k} {n:,}× {m * 1000:.1f} ms" for k, (n, m) in sorted(calls.items())),
        "webhooks at the gateway (mean incl. the hop): "
        + ", ".join(f"{k} {n:,}× {m * 1000:.1f} ms" for k, (n, m) in sorted(hooks.items())),
        f"target p99 ≤ 1 s: p99 {p99 * 1000:,.0f} ms → {'met' if p99 <= 1.0 else 'NOT met'}",
    ]
    common.print_table(
        "2a. pod Ready → its PersistentPodState record, as the bench's watches saw them (ms)",
        ["pods", "count", "p50", "p99", "max", "min"],
        rows,
        notes=notes,
    )


@dataclass
class Rebuild:
    listening: list[float] = field(default_factory=list)
    first_sync: list[float] = field(default_factory=list)
    synced: list[float] = field(default_factory=list)
    drained: list[float] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    reconciles: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    stall: list[float] = field(default_factory=list)  # longest wait for a status answer
    pods: int = 0
    pps: int = 0
    workloads: int = 0


async def rebuild_once(
    mesh: LocalMesh, http: aiohttp.ClientSession, result: Rebuild, *, timeout: float
) -> None:
    """Stop placement-0, start it again on its port, time it to synced and drained."""
    address = mesh.addresses["placement"][0]
    port = int(address.rsplit(":", 1)[1])
    await mesh.procs["placement-0"].stop()
    t0 = time.perf_counter()
    proc = await mesh.start_replica("placement", 0, port)
    listening = time.perf_counter()
    first_sync = 0.0
    deadline = listening + timeout
    stall = 0.0
    async with mesh.replica_channel(address, "placement") as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        while True:
            asked = time.perf_counter()
            status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=5)
            now = time.perf_counter()
            stall = max(stall, now - asked)
            if not first_sync and status.last_sequence >= 1:
                first_sync = now
            if status.synced:
                synced = now
                break
            if now > deadline:
                raise BenchError(
                    f"the restarted placement replica has no snapshot after {timeout} s"
                )
            await asyncio.sleep(0.01)
    counts = kind_counts(status)
    pps = counts.get(mesh_pb2.KIND_PERSISTENT_POD_STATE, 0)
    drained, metrics = await wait_drained(
        http, int(proc.ready["ops_port"]), reconciles=pps, timeout=timeout
    )
    result.stall.append(stall)
    result.listening.append(listening - t0)
    result.first_sync.append((first_sync or synced) - t0)
    result.synced.append(synced - t0)
    result.drained.append(drained - t0)
    result.written.append(metrics.reconciles.get("written", 0.0))
    result.reconciles.append(metrics.total)
    result.pods = counts.get(mesh_pb2.KIND_POD, 0)
    result.pps = pps
    result.workloads = counts.get(mesh_pb2.KIND_WORKLOAD, 0)
    await asyncio.sleep(1.0)
    result.rss.append(await settled_rss(proc.pid))


def print_rebuild(result: Rebuild, plan: Plan) -> None:
    rows = [
        ["process listening (ready line)", common.spread(result.listening, 2)],
        ["first Sync message applied (gateway reconnected)", common.spread(result.first_sync, 2)],
        ["synced (snapshot applied, indexes rebuilt)", common.spread(result.synced, 2)],
        ["work queue drained (every PPS reconciled)", common.spread(result.drained, 2)],
        ["longest GetReplicaStatus answer while syncing", common.spread(result.stall, 2)],
    ]
    drained = common.median(result.drained)
    common.print_table(
        f"2b. fresh placement replica: seconds from spawn, median [min–max] of "
        f"{len(result.drained)} restarts",
        ["milestone", "s"],
        rows,
        notes=[
            f"the replica holds {result.pods:,} pods, {result.pps:,} PersistentPodStates, "
            f"{result.workloads:,} workloads",
            "reconciles by the rebuild: "
            + common.spread(result.reconciles, 0)
            + "; status writes (result=written): "
            + common.spread(result.written, 0),
            "the gateway reconnects with backoff (0.2 s doubling to 5 s, reset after a synced "
            "stream): 'first Sync' includes the wait for its next attempt",
            "status is polled every 10 ms; a long answer is the replica's event loop busy "
            "(snapshot swap, index rebuild, reconciles that write nothing never yield), "
            "which admission reviews would wait for too",
            f"target ≤ 10 s: drained at {drained:.2f} s → "
            f"{'met' if drained <= 10.0 else 'NOT met'}",
        ],
    )


@dataclass
class Memory:
    idle: float = 0.0
    idle_gateway: float = 0.0
    storm: float = 0.0  # the replica that lived through the creation
    storm_gateway: float = 0.0


def print_memory(memory: Memory, rebuild: Rebuild) -> None:
    per = rebuild.pods / 10_000 if rebuild.pods else float("nan")
    fresh = [r - memory.idle for r in rebuild.rss]
    storm = memory.storm - memory.idle
    rows = [
        ["placement, idle (after start, nodes only)", f"{memory.idle:,.1f}", "", ""],
        [
            "placement, fresh replica after rebuild",
            common.spread(rebuild.rss, 1),
            common.spread(fresh, 1),
            common.spread([f / per for f in fresh], 1),
        ],
        [
            "placement, replica that lived through the creation",
            f"{memory.storm:,.1f}",
            f"{storm:,.1f}",
            f"{storm / per:,.1f}",
        ],
        [
            "gateway (context: watch hub of everything)",
            f"{memory.storm_gateway:,.1f}",
            f"{memory.storm_gateway - memory.idle_gateway:,.1f}",
            f"{(memory.storm_gateway - memory.idle_gateway) / per:,.1f}",
        ],
    ]
    worst = max(fresh) if fresh else float("nan")
    common.print_table(
        "2c. memory (VmRSS, MB = 10^6 B)",
        ["process", "RSS MB", "minus idle MB", "MB per 10k pods"],
        rows,
        notes=[
            f"held: {rebuild.pods:,} pods + {rebuild.pps:,} PersistentPodStates (10 records "
            f"each) + {rebuild.workloads:,} workloads; 'per 10k pods' charges all of it to "
            "the pods",
            f"target ≤ 30 MB for the pods held: fresh replica +{worst:,.1f} MB (worst "
            f"restart) → {'met' if worst <= 30.0 else 'NOT met'}",
        ],
    )


# ---- the driver ----------------------------------------------------------------------------------
async def run(plan: Plan, workdir: Path) -> int:
    started = time.monotonic()
    mutation = Mutation()
    rebuild = Rebuild()
    memory = Memory()
    bare: subprocess.Popen[str] | None = None
    history = str(max(20_000, plan.total_pods * 12))
    # webhook_client_auth off: the bench's clients post reviews themselves, without the
    # sandbox's client certificate (one handshake per kept-alive connection either way).
    async with LocalMesh(
        workdir=workdir,
        replicas=1,
        sandbox_args=["--history", history],
        webhook_client_auth=False,
    ) as mesh:
        kube = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            await asyncio.sleep(1.0)
            memory.idle = await settled_rss(mesh.procs["placement-0"].pid)
            memory.idle_gateway = await settled_rss(mesh.procs["gateway"].pid)
            _progress(f"mesh up in {time.monotonic() - started:.0f} s; figure 1")

            bodies = await prepare_mutation(mesh, kube, workdir, mutation)
            bare, bare_port = await start_bare_webhook(mesh.workdir / "gateway-certs")
            await measure_mutation(
                mesh, plan, mutation, state="empty", bodies_file=bodies,
                bare_port=bare_port, bare_pid=bare.pid,
            )  # fmt: skip

            _progress(f"figure 2: {plan.sets:,} × {plan.pods} pods")
            scale = await run_scale(mesh, kube, plan)
            placement = mesh.procs["placement-0"]
            metrics = await queue_metrics(http, int(placement.ready["ops_port"]))
            await eventually(
                "the placement queue drains after the scale phase",
                lambda: _drained(http, int(placement.ready["ops_port"])),
                timeout=60,
            )
            await asyncio.sleep(2.0)
            memory.storm = await settled_rss(placement.pid)
            memory.storm_gateway = await settled_rss(mesh.procs["gateway"].pid)
            _progress(
                f"scale phase done in {scale.wall:.0f} s ({metrics.total:,.0f} reconciles, "
                f"{metrics.reconciles.get('written', 0):,.0f} writes); rebuilds"
            )

            for _ in range(plan.restarts):
                await rebuild_once(mesh, http, rebuild, timeout=60)
            if rebuild.pods < plan.total_pods:
                raise BenchError(
                    f"the fresh replica holds {rebuild.pods:,} pods, not {plan.total_pods:,}"
                )

            _progress("figure 1 again, with the replica holding every pod")
            await measure_mutation(
                mesh, plan, mutation, state="loaded", bodies_file=bodies,
                bare_port=bare_port, bare_pid=bare.pid,
            )  # fmt: skip
        finally:
            if bare is not None:
                await asyncio.to_thread(stop_spawned, bare)
            await http.close()
            await kube.close()

    print_mutation(mutation, plan, pods_held=rebuild.pods)
    print_scale(scale, plan)
    print_rebuild(rebuild, plan)
    print_memory(memory, rebuild)
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)
    if mutation.first_error:
        print(
            f"reviews failed: {mutation.first_error}; the mutation table is not valid",
            file=sys.stderr,
        )
        return 1
    return 0


async def _drained(http: aiohttp.ClientSession, ops_port: int) -> bool:
    return (await queue_metrics(http, ops_port)).depth == 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 × 10 pods, shorter loads")
    parser.add_argument("--reps", type=int, default=None, help="open-loop repetitions (3)")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop reviews/s")
    parser.add_argument("--sets", type=int, default=None, help="StatefulSets (2000; quick 100)")
    parser.add_argument("--pods", type=int, default=10, help="pods per StatefulSet")
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=None, help="rebuilds (3; quick 2)")
    parser.add_argument("--workdir", help="keep the mesh's state and logs here")
    args = parser.parse_args(argv)
    sets = args.sets or (100 if args.quick else 2000)
    plan = Plan(
        sets=sets,
        pods=args.pods,
        namespaces=args.namespaces,
        reps=args.reps or 3,
        rate=args.rate,
        duration=2.0 if args.quick else 4.0,
        restarts=args.restarts or (2 if args.quick else 3),
        scale_timeout=120.0 if args.quick else 420.0,
        stall_timeout=60.0,
    )
    try:
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            code = asyncio.run(run(plan, Path(args.workdir)))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-placement-") as tmp:
                code = asyncio.run(run(plan, Path(tmp)))
    except (RuntimeError, ValueError) as e:  # BenchError, StartError, a failed load generator
        raise SystemExit(f"bench.placement failed: {e!r}") from None
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
