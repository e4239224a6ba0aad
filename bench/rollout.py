"""Rollout (CloneSet) benchmark: scale-out, in-place rollout, status lag, memory.

    python -m bench.rollout            # the whole run: 1,000 pods, 200 × 10 for memory
    python -m bench.rollout --quick    # a smoke run: 60 pods, 20 × 10, 1 repetition
    python -m bench rollout --quick    # the same through the bench runner

Everything is real and on 127.0.0.1: ``services.cli.local.LocalMesh(replicas=1)`` starts the
sandbox (API server with its scheduler and kubelets, admission on), the gateway and ONE replica
of each service. One rollout replica holds every namespace, so every CloneSet in this bench is
reconciled by it: the figures are one replica's (sharding by namespace would split them). The
bench drives the feature through the Kubernetes API only (``KubeClient``) and reads the
replica's counters on its ops port (``/metrics``).

World settings, chosen so the sandbox is not the only thing measured:

* ``--history 200000`` (the sandbox's watch history): a 1,000-pod rollout writes each pod
  several times; with the default 20,000 a slow watcher could be sent 410 Gone and relist,
  which would measure the relist, not the controller;
* the pod template names its node (``spec.nodeName: node-a1``; ``--schedule`` turns this
  off): the world's scheduler binds one pod at a time with one worker, about 50-130 binds/s
  on this box, and would otherwise pace every Ready figure; the world's kubelets serve any
  node's pods at once (8 workers), so a pod is Ready as soon as its status is posted and
  the rollout replica has written its ``KruisePodReady`` condition (the readiness gate the
  pod webhook injects), which keeps the controller in the measured path;
* the kubelets' delays are the sandbox world's defaults, which are already its fastest, and
  ``python -m sandbox`` has no flag to change them: a pod's status is posted as soon as it
  is bound (``kubelet_delay`` 0), an in-place image change restarts the container after
  0.1 s, a deleted pod is removed after 0.05 s;
* admission stays on (as in a cluster): every pod CREATE passes the gateway's mutating
  webhooks (the ``KruisePodReady`` readiness gate), every pod UPDATE its budget validation,
  every CloneSet write its validation;
* ``KRUISE_MESH_ROLLOUT_HANDOVER_S`` 0 (``LocalMesh.rollout_handover_s``): with one replica
  there is nobody to hand over from, and the restarts of figure 4 should not wait.

**1. Scale-out.** A CloneSet (``ReCreate``, image ``nginx:1.27``, ``--pods`` replicas, its own
namespace) is POSTed; the bench watches the namespace's pods and CloneSets itself (event
arrival times). Reported: the time from the POST to the first CloneSet status event with
``status.replicas`` = N and to the one with ``readyReplicas`` = N; pods created per second (N
over the time from the POST to the N-th pod's ADDED event); the rollout replica's CPU
(utime+stime from ``/proc``) per pod over the whole window, and the cores used by every
process (sandbox, gateway, rollout, the other replicas, the bench, foreign = the rest of the
machine) while the pods were being created and until all were Ready, so the bottleneck
shows. The CloneSet is then deleted and the bench waits until its pods are gone.

**2. In-place rollout.** A CloneSet (``InPlaceIfPossible``, ``maxUnavailable: 20%``, N
replicas, its own namespace) is created and left to become Ready and settle; then its image is
changed (``nginx:1.27`` → ``1.28``, then ``1.29``), once per variant:

* ``plain``: no ``spec.lifecycle``;
* ``hooks``: ``lifecycle.inPlaceUpdate`` with ``markPodNotReady: true`` and ``labelsHandler``
  ``bench.kruise.io/hold: "true"``, a label the template gives every pod, so every pod is
  hooked. The bench plays the hook's owner, as OpenKruise's protocol has it: a pod in
  ``PreparingUpdate`` is released (label removed) and a pod in ``Updated`` re-armed (label put
  back), which returns it to ``Normal``; each is one merge PATCH by the bench (counted
  apart), at most 16 in flight, sent once the controller's status write of that step is
  visible (``KruisePodReady`` False / ``Ready`` True). Why not a hook the pods do not match
  (configured, never holding)? Tried first: the pods then finish in ``Updated``, which is
  not available, so after ``maxUnavailable`` pods the rollout stops for good; a hook needs
  its owner. Why wait for the status write before patching? The bench releases a pod once
  its step is visible, as a hook owner watching the pod would; (an older sandbox also undid
  a status write that landed during a patch's webhook call; it now re-applies the patch to
  the fresh object, as kube-apiserver does).

The order alternates per repetition; between variants the lifecycle is patched in or out and
the bench waits until the controller has settled (queue empty, no pod write for 0.5 s).
Reported: the time from the image PATCH to the first CloneSet status event with
``updatedReadyReplicas`` = N and ``currentRevision`` = ``updateRevision`` (the new revision);
API writes per pod updated: the growth of the replica's ``kruise_mesh_rollout_pod_writes_total``
(all actions and results) from before the PATCH until the controller settled after the
rollout, divided by N, by action; the gateway's ``ClusterService`` calls per pod and their
mean latency (every service's: the rollout replica's ``KruisePodReady`` writes, CloneSet
status and Events are not in the pod-write counter); the rollout replica's CPU per pod and
every process's cores. Ratios hooks / plain are taken within a repetition, then the median.

**3. Status lag.** From figure 1's runs (a CloneSet scaling to N, so N pods in flight): every
pod's Ready time is the arrival of the first pod event with ``Ready`` True at the bench; the
k-th pod to become Ready (sorted by that time) is counted at the arrival of the first CloneSet
status event with ``updatedReadyReplicas`` ≥ k. The lag is the difference (both watches come
from the same API server into the same process, so the delivery cost mostly cancels out).
p50 / p99 / max over all pods of a run; medians over runs.

**4. Memory.** After figures 1-3 (their CloneSets deleted), the rollout replica is restarted
and its idle VmRSS taken; ``--sets`` CloneSets × ``--set-pods`` pods across
``--namespaces`` namespaces are created (16 POSTs in flight) and the bench waits until every
one reports all pods Ready; VmRSS of that replica (median over 1 s, after its queue drained),
then of a fresh replica restarted onto the same objects (``--reps`` restarts, median).

Bounds: ``--reps`` repetitions (3) of figures 1+3 (they share runs) and of figure 2, but a
repetition that would take a figure past ``--budget`` seconds (180; estimated from the ones
done) is not started: the tables say how many ran. Every wait has a cap (300 s) and fails
after 60 s without an event. Cells are median [min–max] over repetitions. A failure exits
with status 1, after the tables of the repetitions that completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import common
from kruise.common.v1 import mesh_pb2, mesh_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors

CS_API = "/apis/apps.kruise.io/v1alpha1"
NS_PREFIX = "bench-rollout-"
BENCH_LABEL = "bench.kruise.io/rollout"
HOLD_LABEL = "bench.kruise.io/hold"
POD_WRITES = "kruise_mesh_rollout_pod_writes_total"
RECONCILES = "kruise_mesh_rollout_reconciles_total"
QUEUE_DEPTH = "kruise_mesh_rollout_queue_depth"
CLUSTER_CALLS = "kruise_mesh_cluster_api_requests_total"
CLUSTER_LATENCY = "kruise_mesh_cluster_api_request_duration_seconds"
LIFECYCLE_STATE = "lifecycle.apps.kruise.io/state"
REVISION_LABEL = "controller-revision-hash"
KRUISE_POD_READY = "KruisePodReady"
CREATE_CONCURRENCY = 16
POLL = 0.02
SETTLE_QUIET = 0.5  # no pod write for this long (and an empty queue) = settled
IMAGE = "nginx:1.27"
PROCESSES = ("sandbox", "gateway", "rollout-0", "placement-0", "budget-0")
LAG_TARGET_MS = 200.0
RATE_TARGET = 300.0
WRITES_TARGET = 3.0
RSS_TARGET_MB = 30.0


# Pods name their node in the template, so the world's scheduler (one worker, one bind per
# pod) stays out of the path; ``--schedule`` puts it back.
NODE = "node-a1"


class BenchError(RuntimeError):
    """A phase failed or did not converge: the figures would be wrong, so the run stops."""


@dataclass(frozen=True)
class Plan:
    reps: int
    pods: int  # figures 1-3
    sets: int  # figure 4
    set_pods: int
    namespaces: int
    cap: float  # seconds, per phase
    stall: float  # no progress for this long fails a phase
    budget: float  # seconds per figure: no repetition starts that would pass it
    schedule: bool = False  # let the world's scheduler bind the pods

    @property
    def node(self) -> str | None:
        return None if self.schedule else NODE


def reps_note(done: int, plan: Plan) -> list[str]:
    if done >= plan.reps:
        return []
    return [
        f"{done} of {plan.reps} repetitions: another would have passed the figure's "
        f"{plan.budget:.0f} s budget (--budget)"
    ]


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- objects -------------------------------------------------------------------------------------
def clone_set(
    name: str,
    replicas: int,
    *,
    strategy: Mapping[str, Any],
    lifecycle: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    node: str | None,
    bench: str,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name, BENCH_LABEL: bench, **(labels or {})}},
            "spec": {
                "containers": [{"name": "main", "image": IMAGE}],
                **({"nodeName": node} if node else {}),
            },
        },
        "updateStrategy": dict(strategy),
    }
    if lifecycle is not None:
        spec["lifecycle"] = dict(lifecycle)
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name, "labels": {BENCH_LABEL: bench}},
        "spec": spec,
    }


HOOKS = {"inPlaceUpdate": {"labelsHandler": {HOLD_LABEL: "true"}, "markPodNotReady": True}}


def ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


async def ensure_namespace(kube: KubeClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    with contextlib.suppress(errors.AlreadyExists):
        await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(body))


def cs_path(namespace: str, name: str = "") -> str:
    path = f"{CS_API}/namespaces/{namespace}/clonesets"
    return f"{path}/{name}" if name else path


async def patch_cs(kube: KubeClient, namespace: str, name: str, body: Mapping[str, Any]) -> int:
    """A merge patch of the CloneSet; its generation afterwards."""
    raw = await kube.request(
        "PATCH",
        cs_path(namespace, name),
        body=orjson.dumps(body),
        content_type="application/merge-patch+json",
    )
    return int(orjson.loads(raw)["metadata"].get("generation", 0))


async def delete_and_wait(kube: KubeClient, namespace: str, name: str, *, timeout: float) -> None:
    """Delete the CloneSet (its pods go by garbage collection) and wait until no pod is left."""
    with contextlib.suppress(errors.NotFound):
        await kube.request("DELETE", cs_path(namespace, name))

    async def gone() -> bool:
        listed = await kube.request_json(
            "GET", f"/api/v1/namespaces/{namespace}/pods", query={"limit": "1"}
        )
        return not listed.get("items")

    await eventually(f"the pods of {namespace}/{name} are gone", gone, timeout=timeout, every=0.5)


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], *, timeout: float, every: float = 0.25
) -> float:
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise BenchError(f"not true after {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


# ---- the replica's /metrics ----------------------------------------------------------------------
Samples = dict[tuple[str, str], float]
_SAMPLE_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.M)


async def scrape(http: aiohttp.ClientSession, port: int) -> Samples:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        raw = await resp.read()
    return {
        (m.group(1).decode(), (m.group(2) or b"").decode()): float(m.group(3))
        for m in _SAMPLE_RE.finditer(raw)
    }


def label(labels: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', labels)
    return found.group(1) if found else ""


def grown(before: Samples, after: Samples, metric: str, *keys: str) -> dict[str, float]:
    """How much each label combination (``keys`` joined by '/') of a counter grew."""
    out: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name != metric:
            continue
        delta = value - before.get((name, labels), 0.0)
        if delta:
            key = "/".join(label(labels, k) for k in keys)
            out[key] = out.get(key, 0.0) + delta
    return out


def total(samples: Samples, metric: str) -> float:
    return sum(v for (name, _), v in samples.items() if name == metric)


class Replica:
    """The rollout replica: its pid and ops port (they change when it is restarted)."""

    def __init__(self, mesh: LocalMesh, http: aiohttp.ClientSession) -> None:
        self.mesh = mesh
        self.http = http

    @property
    def pid(self) -> int:
        return self.mesh.procs["rollout-0"].pid

    @property
    def port(self) -> int:
        return int(self.mesh.procs["rollout-0"].ready["ops_port"])

    async def metrics(self) -> Samples:
        return await scrape(self.http, self.port)

    async def settle(self, *, timeout: float) -> Samples:
        """Until the work queues are empty and no pod write happened for ``SETTLE_QUIET``;
        the samples then."""
        deadline = time.monotonic() + timeout
        last = -1.0
        quiet_since = time.monotonic()
        while True:
            samples = await self.metrics()
            writes = total(samples, POD_WRITES)
            now = time.monotonic()
            if writes != last:
                last, quiet_since = writes, now
            if samples.get((QUEUE_DEPTH, ""), 1.0) == 0 and now - quiet_since >= SETTLE_QUIET:
                return samples
            if now > deadline:
                depth = samples.get((QUEUE_DEPTH, ""))
                raise BenchError(
                    f"the rollout replica did not settle in {timeout:.0f} s: queue depth "
                    f"{depth}, {writes:.0f} pod writes, last one {now - quiet_since:.1f} s ago"
                )
            await asyncio.sleep(0.1)

    async def counts(self) -> dict[int, int]:
        address = self.mesh.addresses["rollout"][0]
        async with self.mesh.replica_channel(address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            status = await stub.GetReplicaStatus(mesh_pb2.GetReplicaStatusRequest(), timeout=5)
        return {c.kind: c.count for c in status.counts}


def pids_of(mesh: LocalMesh) -> dict[str, int]:
    return {name: mesh.procs[name].pid for name in PROCESSES if name in mesh.procs}


def cores(window: common.CpuWindow) -> dict[str, float]:
    wall = max(window.wall, 1e-9)
    out = {name: secs / wall for name, secs in window.seconds.items()}
    out["foreign"] = window.foreign / wall
    return out


# ---- the bench's own watches ---------------------------------------------------------------------
@dataclass
class Status:
    at: float  # perf_counter arrival time
    name: str
    generation: int
    status: dict[str, Any]


@dataclass
class Watch:
    """Pods and CloneSets of one namespace as the bench's watches see them (arrival times)."""

    kube: KubeClient
    namespace: str
    pod_added: dict[str, float] = field(default_factory=dict)
    pod_ready: dict[str, float] = field(default_factory=dict)  # first Ready True
    statuses: list[Status] = field(default_factory=list)
    on_pod: Callable[[dict[str, Any]], None] | None = None
    events: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        pods = f"/api/v1/namespaces/{self.namespace}/pods"
        sets = cs_path(self.namespace)
        for path, handler in ((pods, self._pod), (sets, self._cs)):
            listed = await self.kube.request_json("GET", path, query={"limit": "1"})
            rv = str(listed["metadata"]["resourceVersion"])
            self._tasks.append(asyncio.create_task(self._run(path, rv, handler)))
        await asyncio.sleep(0.3)  # connected: the arrival times are live, not a replay
        self.check()

    def check(self) -> None:
        for task in self._tasks:
            if task.done():
                task.result()  # a failed watch fails the phase with its error
                raise BenchError(f"a watch on {self.namespace} ended")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(
        self, path: str, rv: str, handler: Callable[[str, dict[str, Any], float], None]
    ) -> None:
        while True:  # the stream may end; resume from the last resourceVersion seen
            query = {"resourceVersion": rv, "allowWatchBookmarks": "true"}
            async for line in self.kube.watch_lines(path, query=query, read_timeout=60):
                now = time.perf_counter()
                event = orjson.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise BenchError(f"watch {path}: {obj.get('message', obj)}")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") == "BOOKMARK":
                    continue
                self.events += 1
                handler(str(event.get("type")), obj, now)

    def _pod(self, kind: str, pod: dict[str, Any], now: float) -> None:
        name = pod["metadata"]["name"]
        self.pod_added.setdefault(name, now)
        if name not in self.pod_ready and kind != "DELETED" and ready(pod):
            self.pod_ready[name] = now
        if self.on_pod is not None and kind != "DELETED":
            self.on_pod(pod)

    def _cs(self, kind: str, cs: dict[str, Any], now: float) -> None:
        if kind == "DELETED":
            return
        meta = cs["metadata"]
        self.statuses.append(
            Status(now, meta["name"], int(meta.get("generation", 0)), cs.get("status") or {})
        )

    def first(self, since: int, test: Callable[[Status], bool]) -> Status | None:
        """The first CloneSet status event from index ``since`` on that passes ``test``."""
        for status in self.statuses[since:]:
            if test(status):
                return status
        return None

    async def until(
        self,
        what: str,
        done: Callable[[], bool],
        plan: Plan,
    ) -> None:
        """Poll ``done`` every ``POLL`` s; BenchError on a stall or the time cap."""
        started = last_change = time.monotonic()
        last = -1
        while not done():
            self.check()
            now = time.monotonic()
            if self.events != last:
                last, last_change = self.events, now
            if now - last_change > plan.stall or now - started > plan.cap:
                why = "no event" if now - started <= plan.cap else "time cap"
                raise BenchError(
                    f"{what}: not done ({why} after {now - started:.0f} s); "
                    f"{len(self.pod_added)} pods seen, {len(self.pod_ready)} ready, last "
                    f"status {self.statuses[-1].status if self.statuses else None}"
                )
            await asyncio.sleep(POLL)


# ---- 1 + 3. scale-out and status lag -------------------------------------------------------------
@dataclass
class ScaleRun:
    to_replicas: float  # s from the POST
    to_ready: float
    first_pod: float
    last_pod: float
    created_rate: float  # pods/s, N over the POST → N-th pod ADDED
    ready_rate: float
    cpu_per_pod_ms: float  # rollout replica, whole window
    creating: dict[str, float]  # cores per process until status.replicas == N
    whole: dict[str, float]  # ... until readyReplicas == N
    writes: dict[str, float]
    reconciles: float
    lags: list[float]  # seconds, one per pod
    lags_creating: list[float]  # ... of the pods Ready before status.replicas reached N
    lags_created: list[float]  # ... of the others
    early: int  # pods counted before the bench saw them Ready (negative lag)
    first_error: str  # the replica's first failed pod write in the window, from its log


async def scale_run(
    mesh: LocalMesh, kube: KubeClient, replica: Replica, plan: Plan, rep: int
) -> ScaleRun:
    namespace = f"{NS_PREFIX}{rep}-scale"
    name = "scale"
    n = plan.pods
    await ensure_namespace(kube, namespace)
    watch = Watch(kube, namespace)
    await watch.start()
    before = await replica.metrics()
    log_size = mesh.procs["rollout-0"].log_file.stat().st_size
    pids = pids_of(mesh)
    creating = common.CpuWindow(pids)
    whole = common.CpuWindow(pids)
    body = clone_set(name, n, strategy={"type": "ReCreate"}, node=plan.node, bench="scale")
    creating.start()
    whole.start()
    t0 = time.perf_counter()
    try:
        await kube.request("POST", cs_path(namespace), body=orjson.dumps(body))

        def replicas_done() -> bool:
            return watch.first(0, lambda s: s.status.get("replicas", 0) >= n) is not None

        def ready_done() -> bool:
            return watch.first(0, lambda s: s.status.get("readyReplicas", 0) >= n) is not None

        await watch.until(f"{namespace}: status.replicas = {n}", replicas_done, plan)
        creating.stop()
        await watch.until(f"{namespace}: readyReplicas = {n}", ready_done, plan)
        whole.stop()
        after = await replica.metrics()
    finally:
        await watch.stop()
    at_replicas = watch.first(0, lambda s: s.status.get("replicas", 0) >= n)
    at_ready = watch.first(0, lambda s: s.status.get("readyReplicas", 0) >= n)
    assert at_replicas is not None and at_ready is not None
    added = sorted(watch.pod_added.values())
    if len(added) < n or len(watch.pod_ready) < n:
        raise BenchError(f"{namespace}: {len(added)} pods seen, {len(watch.pod_ready)} ready")
    lags, early = status_lags(watch, n)
    writes = grown(before, after, POD_WRITES, "action", "result")
    while_creating = [lag for at, lag in lags if at < at_replicas.at]
    once_created = [lag for at, lag in lags if at >= at_replicas.at]
    run = ScaleRun(
        to_replicas=at_replicas.at - t0,
        to_ready=at_ready.at - t0,
        first_pod=added[0] - t0,
        last_pod=added[n - 1] - t0,
        created_rate=n / (added[n - 1] - t0),
        ready_rate=n / (at_ready.at - t0),
        cpu_per_pod_ms=whole.seconds["rollout-0"] / n * 1000,
        creating=cores(creating),
        whole=cores(whole),
        writes=writes,
        reconciles=total(after, RECONCILES) - total(before, RECONCILES),
        lags=[lag for _, lag in lags],
        lags_creating=while_creating,
        lags_created=once_created,
        early=early,
        first_error=first_failure(mesh, since=log_size)
        if any(k.endswith("/error") for k in writes)
        else "",
    )
    await delete_and_wait(kube, namespace, name, timeout=plan.cap)
    return run


def first_failure(mesh: LocalMesh, *, since: int) -> str:
    """The first warning the rollout replica logged after byte ``since`` of its log."""
    with mesh.procs["rollout-0"].log_file.open("rb") as f:
        f.seek(since)
        for line in f:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("warning", "error"):
                return f"{entry.get('msg')}: {entry.get('error', '')}"[:300]
    return "(nothing logged)"


def status_lags(watch: Watch, n: int) -> tuple[list[tuple[float, float]], int]:
    """Per pod, (its Ready arrival, the lag): Ready (the k-th to arrive) → the first status
    event counting k updated-ready pods. Negative lags (a status event before the bench's pod
    event) count as 0; how many were negative."""
    readies = sorted(watch.pod_ready.values())[:n]
    counts = [
        (s.at, int(s.status.get("updatedReadyReplicas", 0)))
        for s in watch.statuses
        if s.status.get("updatedReadyReplicas")
    ]
    lags: list[tuple[float, float]] = []
    early = 0
    index = 0
    best = 0
    for k, at in enumerate(readies, start=1):
        # the first status event whose count reaches k (counts only grow during a scale-out)
        while index < len(counts) and best < k:
            best = max(best, counts[index][1])
            index += 1
        if best < k:
            break
        lag = counts[index - 1][0] - at
        if lag < 0:
            early += 1
        lags.append((at, max(lag, 0.0)))
    return lags, early


def print_scale(runs: Sequence[ScaleRun], plan: Plan) -> None:
    n = plan.pods

    def cell(get: Callable[[ScaleRun], float], digits: int, scale: float = 1.0) -> str:
        return common.spread([get(r) for r in runs], digits, scale)

    rows = [
        ["POST → status.replicas = N (s)", cell(lambda r: r.to_replicas, 2)],
        ["POST → readyReplicas = N (s)", cell(lambda r: r.to_ready, 2)],
        ["POST → first pod ADDED at the bench (s)", cell(lambda r: r.first_pod, 2)],
        ["POST → N-th pod ADDED at the bench (s)", cell(lambda r: r.last_pod, 2)],
        ["pods created / s (N over POST → N-th ADDED)", cell(lambda r: r.created_rate, 0)],
        ["pods Ready / s (N over POST → readyReplicas = N)", cell(lambda r: r.ready_rate, 0)],
        ["rollout replica CPU per pod (ms, until all Ready)", cell(lambda r: r.cpu_per_pod_ms, 2)],
        ["rollout reconciles", cell(lambda r: r.reconciles, 0)],
    ]
    names = [*(p for p in PROCESSES if p in runs[0].whole), "bench", "foreign"]
    for name in names:
        creating = common.spread([r.creating.get(name, 0.0) for r in runs], 2)
        whole = common.spread([r.whole.get(name, 0.0) for r in runs], 2)
        rows.append([f"cores: {name} (creating / until all Ready)", f"{creating} / {whole}"])
    writes: dict[str, list[float]] = {}
    for run in runs:
        for key, value in run.writes.items():
            writes.setdefault(key, []).append(value)
    rate = common.median([r.created_rate for r in runs])
    busiest = max(
        (p for p in names if p != "foreign"),
        key=lambda p: common.median([r.creating.get(p, 0.0) for r in runs]),
    )
    common.print_table(
        f"1. scale-out 0 → {n:,} pods, one CloneSet (ReCreate, {IMAGE}), one rollout replica; "
        f"median [min–max] of {len(runs)}",
        ["measure", "value"],
        rows,
        notes=[
            "one rollout replica holds every namespace: all of it is that replica's work",
            "pod writes by the replica (action/result): "
            + ", ".join(f"{k} {common.spread(v, 0)}" for k, v in sorted(writes.items()))
            + "".join(
                f"; run {i + 1}'s first failure: {r.first_error}"
                for i, r in enumerate(runs)
                if r.first_error
            ),
            "cores = CPU seconds over wall seconds of the window (of 2 vCPUs); 'creating' ends "
            "at status.replicas = N. The sandbox is one Python process: API server, admission "
            "calls to the gateway, kubelets"
            + (
                ", scheduler (binds one pod at a time)"
                if plan.schedule
                else f"; the pods name their node ({NODE}), so no scheduler is in the path"
            ),
            "a pod is Ready once the kubelet posted its status AND the rollout replica wrote "
            "its KruisePodReady condition (readiness gate), so the Ready figures include the "
            "replica's readiness queue",
            f"busiest process while creating: {busiest}",
            f"target ≥ {RATE_TARGET:.0f} pods/s created: {rate:,.0f}/s → "
            f"{'met' if rate >= RATE_TARGET else 'NOT met'}",
            *reps_note(len(runs), plan),
        ],
    )


def print_lag(runs: Sequence[ScaleRun], plan: Plan) -> None:
    def row(what: str, get: Callable[[ScaleRun], list[float]]) -> list[str]:
        runs_with = [get(r) for r in runs if get(r)]
        if not runs_with:
            return [what, "0", "-", "-", "-"]
        return [
            what,
            common.spread([float(len(get(r))) for r in runs], 0),
            common.spread([common.percentile(v, 0.50) for v in runs_with], 0, 1000),
            common.spread([common.percentile(v, 0.99) for v in runs_with], 0, 1000),
            common.spread([max(v) for v in runs_with], 0, 1000),
        ]

    p99 = common.median([common.percentile(r.lags, 0.99) for r in runs if r.lags]) * 1000
    rows = [
        row(f"every pod ({plan.pods:,} in flight)", lambda r: r.lags),
        row("  Ready while the replica was still creating pods", lambda r: r.lags_creating),
        row("  Ready after status.replicas reached N", lambda r: r.lags_created),
    ]
    early = [r.early for r in runs]
    common.print_table(
        f"3. status lag (ms), figure 1's runs; median [min–max] of {len(runs)}",
        ["pod Ready → updatedReadyReplicas counts it", "pods", "p50", "p99", "max"],
        rows,
        notes=[
            "pod Ready = arrival at the bench of the pod's first event with Ready True; the "
            "k-th Ready pod is counted by the first CloneSet status event with "
            "updatedReadyReplicas ≥ k (ReCreate scale-out: every pod is at the update revision)",
            "the replica writes the CloneSet status at the end of a reconcile and, while a "
            "scale-out creates (slow-start batches 1, 2, 4, ... capped at 64), between batches "
            "at most every 200 ms (services/rollout/controller.py: _create_pods), so a pod "
            "Ready while creation goes on waits for the next batch's end",
            f"status events that arrived before the pod event they count (lag taken as 0), "
            f"per run: {', '.join(str(e) for e in early)}",
            f"target p99 ≤ {LAG_TARGET_MS:.0f} ms: {p99:,.0f} ms → "
            f"{'met' if p99 <= LAG_TARGET_MS else 'NOT met'}",
            *reps_note(len(runs), plan),
        ],
    )


# ---- 2. in-place rollout -------------------------------------------------------------------------
class Releaser:
    """The bench as the user's controller of the inPlaceUpdate hook (OpenKruise's protocol): a
    pod that reached ``PreparingUpdate`` still holding the hook label is released (label
    removed); a pod that reached ``Updated`` without it is re-armed (label put back), which
    lets the controller return it to ``Normal``. Merge patches, no precondition, at most
    ``concurrency`` in flight; one write per pod and step."""

    def __init__(self, kube: KubeClient, namespace: str, *, concurrency: int = 16) -> None:
        self.kube = kube
        self.namespace = namespace
        self.active = False
        self.writes = 0
        self.errors: list[str] = []
        self._done: set[tuple[str, str]] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_pod(self, pod: dict[str, Any]) -> None:
        if not self.active:
            return
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        state = labels.get(LIFECYCLE_STATE, "")
        held = labels.get(HOLD_LABEL) == "true"
        conditions = {
            c.get("type"): c.get("status")
            for c in (pod.get("status") or {}).get("conditions") or []
        }
        # Only once the controller's (and the kubelet's) status writes of this step are in:
        # the sandbox applies a PATCH to the object it read before calling the admission
        # webhooks, so a status write landing meanwhile would be lost (see the notes).
        if state == "PreparingUpdate" and held and conditions.get(KRUISE_POD_READY) == "False":
            step, value = "release", None
        elif state == "Updated" and not held and conditions.get("Ready") == "True":
            step, value = "re-arm", "true"
        else:
            return
        key = (meta["name"], f"{step}@{meta.get('uid', '')}@{labels.get(REVISION_LABEL, '')}")
        if key in self._done:
            return
        self._done.add(key)
        task = asyncio.create_task(self._patch(meta["name"], value))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _patch(self, name: str, value: str | None) -> None:
        body = orjson.dumps({"metadata": {"labels": {HOLD_LABEL: value}}})
        async with self._limit:
            try:
                await self.kube.request(
                    "PATCH",
                    f"/api/v1/namespaces/{self.namespace}/pods/{name}",
                    body=body,
                    content_type="application/merge-patch+json",
                )
            except errors.MeshError as e:
                self.errors.append(f"{name}: {e}")
                return
        self.writes += 1

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.errors:
            raise BenchError(f"the bench's hook writes failed: {self.errors[:3]}")


@dataclass
class RolloutRun:
    wall: float
    rate: float
    writes_per_pod: float
    writes: dict[str, float]  # per pod, by action/result
    bench_writes: float  # per pod: the bench releasing and re-arming the hook
    calls: dict[str, float]  # gateway ClusterService calls per pod, by method (all services)
    call_ms: dict[str, float]  # their mean latency
    cpu_per_pod_ms: float
    cores: dict[str, float]
    reconciles: float


async def rollout_rep(
    mesh: LocalMesh, kube: KubeClient, replica: Replica, plan: Plan, rep: int
) -> dict[str, RolloutRun]:
    """One CloneSet of N pods, both variants (order alternating per repetition)."""
    namespace = f"{NS_PREFIX}{rep}-inplace"
    name = "inplace"
    n = plan.pods
    order = ["plain", "hooks"] if rep % 2 == 0 else ["hooks", "plain"]
    await ensure_namespace(kube, namespace)
    strategy = {"type": "InPlaceIfPossible", "maxUnavailable": "20%"}
    body = clone_set(
        name,
        n,
        strategy=strategy,
        lifecycle=HOOKS if order[0] == "hooks" else None,
        labels={HOLD_LABEL: "true"},
        node=plan.node,
        bench="inplace",
    )
    await kube.request("POST", cs_path(namespace), body=orjson.dumps(body))

    async def all_ready() -> bool:
        cs = await kube.request_json("GET", cs_path(namespace, name))
        return int((cs.get("status") or {}).get("readyReplicas", 0)) >= n

    await eventually(f"{namespace}/{name}: {n} pods Ready", all_ready, timeout=plan.cap)
    await replica.settle(timeout=plan.cap)
    out: dict[str, RolloutRun] = {}
    hooks_on = order[0] == "hooks"
    for index, variant in enumerate(order):
        want_hooks = variant == "hooks"
        if want_hooks != hooks_on:
            await patch_cs(
                kube, namespace, name, {"spec": {"lifecycle": HOOKS if want_hooks else None}}
            )
            hooks_on = want_hooks
            await asyncio.sleep(0.5)
            await replica.settle(timeout=plan.cap)
        image = f"nginx:1.{28 + index}"
        out[variant] = await rollout_once(
            mesh, kube, replica, plan, namespace, name, image, hooks=want_hooks
        )
        progress(
            f"rep {rep + 1}: in-place {variant}: {out[variant].wall:.1f} s, "
            f"{out[variant].writes_per_pod:.2f} writes/pod"
        )
    await delete_and_wait(kube, namespace, name, timeout=plan.cap)
    return out


async def rollout_once(
    mesh: LocalMesh,
    kube: KubeClient,
    replica: Replica,
    plan: Plan,
    namespace: str,
    name: str,
    image: str,
    *,
    hooks: bool,
) -> RolloutRun:
    n = plan.pods
    old = (await kube.request_json("GET", cs_path(namespace, name)))["status"]["updateRevision"]
    releaser = Releaser(kube, namespace)
    watch = Watch(kube, namespace, on_pod=releaser.on_pod)
    await watch.start()
    gateway_port = int(mesh.procs["gateway"].ready["ops_port"])
    before = await replica.metrics()
    gateway_before = await scrape(replica.http, gateway_port)
    window = common.CpuWindow(pids_of(mesh))
    mark = len(watch.statuses)
    releaser.active = hooks
    window.start()
    t0 = time.perf_counter()
    try:
        generation = await patch_cs(
            kube,
            namespace,
            name,
            {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}},
        )

        def finished(s: Status) -> bool:
            st = s.status
            return (
                int(st.get("observedGeneration", 0)) >= generation
                and st.get("updateRevision") not in (None, old)
                and st.get("currentRevision") == st.get("updateRevision")
                and int(st.get("updatedReadyReplicas", 0)) >= n
            )

        await watch.until(
            f"{namespace}: in-place rollout to {image}",
            lambda: watch.first(mark, finished) is not None,
            plan,
        )
        window.stop()
        done = watch.first(mark, finished)
        assert done is not None
        # The hooked pods still go Updated → (re-armed) → Normal: wait for the last of it.
        after = await replica.settle(timeout=plan.cap)
        await releaser.drain()
        after = await replica.settle(timeout=plan.cap)
    finally:
        await watch.stop()
    gateway_after = await scrape(replica.http, gateway_port)
    writes = grown(before, after, POD_WRITES, "action", "result")
    calls = grown(gateway_before, gateway_after, CLUSTER_CALLS, "method")
    call_s = grown(gateway_before, gateway_after, f"{CLUSTER_LATENCY}_sum", "method")
    call_n = grown(gateway_before, gateway_after, f"{CLUSTER_LATENCY}_count", "method")
    wall = done.at - t0
    return RolloutRun(
        wall=wall,
        rate=n / wall,
        writes_per_pod=sum(writes.values()) / n,
        writes={k: v / n for k, v in writes.items()},
        bench_writes=releaser.writes / n,
        calls={k: v / n for k, v in calls.items()},
        call_ms={k: call_s.get(k, 0.0) / c * 1000 for k, c in call_n.items() if c},
        cpu_per_pod_ms=window.seconds["rollout-0"] / n * 1000,
        cores=cores(window),
        reconciles=total(after, RECONCILES) - total(before, RECONCILES),
    )


def _per(
    table: Callable[[RolloutRun], Mapping[str, float]], key: str
) -> Callable[[RolloutRun], float]:
    return lambda run: table(run).get(key, 0.0)


def print_rollout(runs: Sequence[Mapping[str, RolloutRun]], plan: Plan) -> None:
    variants = ("plain", "hooks")

    def values(variant: str, get: Callable[[RolloutRun], float]) -> list[float]:
        return [get(r[variant]) for r in runs]

    def row(what: str, get: Callable[[RolloutRun], float], digits: int) -> list[str]:
        ratios = [get(r["hooks"]) / get(r["plain"]) for r in runs if get(r["plain"])]
        return [
            what,
            *(common.spread(values(v, get), digits) for v in variants),
            common.spread(ratios, 2) if ratios else "-",
        ]

    rows = [
        row("PATCH → updatedReadyReplicas = N, current = update (s)", lambda r: r.wall, 1),
        row("pods updated / s", lambda r: r.rate, 1),
        row("controller pod writes per pod (pod_writes_total / N)", lambda r: r.writes_per_pod, 2),
    ]
    actions = sorted({k for r in runs for v in variants for k in r[v].writes})
    for action in actions:
        rows.append(row(f"  of which {action}", _per(lambda r: r.writes, action), 2))
    rows.append(row("bench writes per pod (hook release + re-arm)", lambda r: r.bench_writes, 2))
    methods = sorted({k for r in runs for v in variants for k in r[v].calls})
    for method in methods:
        rows.append(
            row(f"gateway ClusterService {method} per pod", _per(lambda r: r.calls, method), 2)
        )
    for method in methods:
        rows.append(row(f"  {method} mean latency (ms)", _per(lambda r: r.call_ms, method), 1))
    rows.append(row("rollout replica CPU per pod (ms)", lambda r: r.cpu_per_pod_ms, 2))
    rows.append(row("rollout reconciles", lambda r: r.reconciles, 0))
    names = [*(p for p in PROCESSES if p in runs[0]["plain"].cores), "bench", "foreign"]
    for name in names:
        rows.append(row(f"cores: {name}", _per(lambda r: r.cores, name), 2))
    plain = common.median(values("plain", lambda r: r.writes_per_pod))
    hooked = common.median(values("hooks", lambda r: r.writes_per_pod))
    common.print_table(
        f"2. in-place rollout of {plan.pods:,} pods (InPlaceIfPossible, maxUnavailable 20%, "
        f"image change), one rollout replica; median [min–max] of {len(runs)}",
        ["measure", "plain", "hooks", "ratio hooks / plain"],
        rows,
        notes=[
            f"hooks = lifecycle.inPlaceUpdate {{labelsHandler {HOLD_LABEL}=true, "
            "markPodNotReady: true}; the template carries the label, so every pod is hooked. "
            "The bench plays the hook's owner: it releases a pod in PreparingUpdate (removes "
            "the label) and re-arms it in Updated (puts it back, so it returns to Normal). A "
            "hook the pods do not match was tried first: it leaves every updated pod in "
            "Updated, which is not available, so the rollout stops at maxUnavailable",
            "pod writes are counted from before the PATCH until the replica settled (queue "
            "empty, no pod write for 0.5 s) after the status condition; the wall time ends "
            "at the status event. Gateway ClusterService calls come from every service "
            "(rollout: pod writes, the KruisePodReady condition, CloneSet status, Events); "
            "their latency includes the sandbox and its admission webhooks (pod UPDATE → "
            "/budget/validate-pods)",
            "cores over PATCH → status event (of 2 vCPUs); the order of the variants "
            "alternates per repetition",
            f"target ≤ {WRITES_TARGET:.0f} API writes per pod updated: plain {plain:.2f} → "
            f"{'met' if plain <= WRITES_TARGET else 'NOT met'}; hooks {hooked:.2f} → "
            f"{'met' if hooked <= WRITES_TARGET else 'NOT met'} (controller writes only)",
            *reps_note(len(runs), plan),
        ],
    )


# ---- 4. memory -----------------------------------------------------------------------------------
@dataclass
class Memory:
    idle: float = 0.0
    built: float = 0.0  # the replica that lived through the creation
    fresh: list[float] = field(default_factory=list)
    build_wall: float = 0.0
    pods: int = 0
    sets: int = 0
    revisions: int = 0


async def settled_rss(pid: int) -> float:
    values = []
    for _ in range(5):
        values.append(common.proc_rss_bytes(pid) / 1e6)
        await asyncio.sleep(0.2)
    return common.median(values)


async def restart(mesh: LocalMesh, replica: Replica, plan: Plan) -> None:
    t = time.monotonic()
    log_size = mesh.procs["rollout-0"].log_file.stat().st_size
    await mesh.restart_replica("rollout", 0, kill=True)  # the state is all in the cluster
    started = time.monotonic() - t
    await mesh.wait_synced(timeout=60)
    synced = time.monotonic() - t
    try:
        await replica.settle(timeout=plan.cap)
    except BenchError as e:
        raise BenchError(f"{e}; its log: {first_failure(mesh, since=log_size)}") from e
    progress(
        f"rollout replica restarted: listening {started:.1f} s, synced {synced:.1f} s, "
        f"settled {time.monotonic() - t:.1f} s"
    )
    await asyncio.sleep(1.0)


async def memory(mesh: LocalMesh, kube: KubeClient, replica: Replica, plan: Plan) -> Memory:
    result = Memory()
    await restart(mesh, replica, plan)
    result.idle = await settled_rss(replica.pid)
    progress(f"memory: idle replica {result.idle:.1f} MB")
    namespaces = [f"{NS_PREFIX}mem-{i:02d}" for i in range(plan.namespaces)]
    for namespace in namespaces:
        await ensure_namespace(kube, namespace)
    t0 = time.monotonic()

    async def create(i: int) -> None:
        body = clone_set(
            f"cs-{i:04d}",
            plan.set_pods,
            strategy={"type": "ReCreate"},
            node=plan.node,
            bench="memory",
        )
        await kube.request(
            "POST", cs_path(namespaces[i % len(namespaces)]), body=orjson.dumps(body), timeout=30
        )

    created = await common.run_bounded(plan.sets, CREATE_CONCURRENCY, create, time_cap=plan.cap)
    if created.errors or created.ok != plan.sets:
        raise BenchError(f"created {created.ok}/{plan.sets} CloneSets: {created.first_error}")

    async def all_ready() -> bool:
        listed = await kube.request_json(
            "GET", f"{CS_API}/clonesets", query={"labelSelector": f"{BENCH_LABEL}=memory"}
        )
        items = listed.get("items") or []
        done = sum(
            1
            for cs in items
            if int((cs.get("status") or {}).get("readyReplicas", 0)) >= plan.set_pods
        )
        return done >= plan.sets

    await eventually("every memory CloneSet Ready", all_ready, timeout=plan.cap, every=0.5)
    result.build_wall = time.monotonic() - t0
    await replica.settle(timeout=plan.cap)
    await asyncio.sleep(1.0)
    result.built = await settled_rss(replica.pid)
    progress(f"memory: built in {result.build_wall:.1f} s, replica {result.built:.1f} MB")
    for _ in range(plan.reps):
        await restart(mesh, replica, plan)
        result.fresh.append(await settled_rss(replica.pid))
        progress(f"memory: fresh replica {result.fresh[-1]:.1f} MB")
    counts = await replica.counts()
    result.pods = counts.get(mesh_pb2.KIND_POD, 0)
    result.sets = counts.get(mesh_pb2.KIND_CLONE_SET, 0)
    result.revisions = counts.get(mesh_pb2.KIND_CONTROLLER_REVISION, 0)
    return result


def print_memory(result: Memory, plan: Plan) -> None:
    fresh = common.median(result.fresh)
    rows = [
        ["rollout replica, idle (restarted, nothing held)", f"{result.idle:,.1f}", ""],
        [
            "after the build (lived through the creation)",
            f"{result.built:,.1f}",
            f"{result.built - result.idle:,.1f}",
        ],
        [
            f"fresh replica restarted onto it ({len(result.fresh)} restarts)",
            common.spread(result.fresh, 1),
            common.spread([f - result.idle for f in result.fresh], 1),
        ],
    ]
    worst_total = max(result.built, max(result.fresh, default=0.0))
    worst_delta = worst_total - result.idle
    common.print_table(
        f"4. memory of one rollout replica: {plan.sets:,} CloneSets × {plan.set_pods} pods "
        f"(VmRSS, MB = 10^6 B)",
        ["process", "RSS MB", "minus idle MB"],
        rows,
        notes=[
            f"held (GetReplicaStatus): {result.pods:,} pods, {result.sets:,} CloneSets, "
            f"{result.revisions:,} ControllerRevisions, across {plan.namespaces} namespaces; "
            f"built and all Ready in {result.build_wall:.1f} s",
            f"target ≤ {RSS_TARGET_MB:.0f} MB: whole process {worst_total:,.1f} MB → "
            f"{'met' if worst_total <= RSS_TARGET_MB else 'NOT met'}; held objects (minus "
            f"the idle replica) {worst_delta:,.1f} MB → "
            f"{'met' if worst_delta <= RSS_TARGET_MB else 'NOT met'}",
            f"the idle replica ({result.idle:,.1f} MB: the interpreter and the modules a "
            f"replica imports) is {result.idle / fresh:.0%} of the fresh replica's RSS; what "
            f"it holds adds {fresh - result.idle:,.1f} MB "
            f"({(fresh - result.idle) * 1e6 / max(result.pods, 1):,.0f} B per pod, all of it "
            "charged to the pods)",
        ],
    )


# ---- the driver ----------------------------------------------------------------------------------
async def repetitions(
    mesh: LocalMesh, kube: KubeClient, replica: Replica, plan: Plan, figures: frozenset[int]
) -> tuple[list[ScaleRun], list[dict[str, RolloutRun]], BenchError | None]:
    """Figures 1+3 and 2, a repetition of each in turn, within each figure's time budget;
    what completed, and the failure that stopped them if any."""
    scale_runs: list[ScaleRun] = []
    rollout_runs: list[dict[str, RolloutRun]] = []
    spent = {"scale": 0.0, "inplace": 0.0}

    def fits(what: str, done: int) -> bool:
        """Another repetition fits the figure's time budget (the first always runs)."""
        return done == 0 or spent[what] + spent[what] / done <= plan.budget

    try:
        for rep in range(plan.reps):
            ran = False
            if figures & {1, 3} and fits("scale", len(scale_runs)):
                t = time.monotonic()
                scale_runs.append(await scale_run(mesh, kube, replica, plan, rep))
                spent["scale"] += time.monotonic() - t
                r = scale_runs[-1]
                progress(
                    f"rep {rep + 1}: scale-out {r.to_replicas:.1f} s created, "
                    f"{r.to_ready:.1f} s ready ({time.monotonic() - t:.0f} s with cleanup)"
                )
                ran = True
            if 2 in figures and fits("inplace", len(rollout_runs)):
                t = time.monotonic()
                rollout_runs.append(await rollout_rep(mesh, kube, replica, plan, rep))
                spent["inplace"] += time.monotonic() - t
                progress(f"rep {rep + 1}: in-place done in {time.monotonic() - t:.0f} s")
                ran = True
            if not ran:
                if figures & {1, 2, 3}:
                    progress(f"the time budget ({plan.budget:.0f} s per figure) is spent")
                break
    except BenchError as e:  # the tables of what completed are printed, then it fails
        return scale_runs, rollout_runs, e
    return scale_runs, rollout_runs, None


async def run(plan: Plan, workdir: Path, figures: frozenset[int]) -> None:
    started = time.monotonic()
    mesh = LocalMesh(
        workdir=workdir,
        replicas=1,
        sandbox_args=["--history", "200000"],
        rollout_handover_s=0.0,
    )
    async with mesh:
        progress(f"mesh up after {time.monotonic() - started:.1f} s")
        kube = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        replica = Replica(mesh, http)
        try:
            scale_runs, rollout_runs, failure = await repetitions(
                mesh, kube, replica, plan, figures
            )
            if 1 in figures and scale_runs:
                print_scale(scale_runs, plan)
            if 2 in figures and rollout_runs:
                print_rollout(rollout_runs, plan)
            if 3 in figures and scale_runs:
                print_lag(scale_runs, plan)
            if failure is not None:
                raise failure
            if 4 in figures:
                t = time.monotonic()
                mem = await memory(mesh, kube, replica, plan)
                progress(f"memory done in {time.monotonic() - t:.0f} s")
                print_memory(mem, plan)
        finally:
            await http.close()
            await kube.close()
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (3; quick 1)")
    parser.add_argument("--pods", type=int, help="pods of figures 1-3 (1000; quick 60)")
    parser.add_argument("--sets", type=int, help="figure 4 CloneSets (200; quick 20)")
    parser.add_argument("--set-pods", type=int, default=10, help="figure 4 pods per CloneSet")
    parser.add_argument("--namespaces", type=int, default=20, help="figure 4 namespaces")
    parser.add_argument("--figures", default="1,2,3,4", help="which figures, e.g. 1,3")
    parser.add_argument(
        "--budget",
        type=float,
        default=180.0,
        help="seconds per figure (1+3 share runs): a repetition that would pass it is not "
        "started, the first always runs (180)",
    )
    parser.add_argument(
        "--schedule",
        action="store_true",
        help=f"let the world's scheduler bind the pods (default: the template names {NODE})",
    )
    parser.add_argument("--workdir", help="keep the mesh's state and logs here")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        reps=args.reps or (1 if quick else 3),
        pods=args.pods or (60 if quick else 1000),
        sets=args.sets or (20 if quick else 200),
        set_pods=args.set_pods,
        namespaces=args.namespaces,
        cap=300.0,
        stall=60.0,
        budget=args.budget,
        schedule=args.schedule,
    )
    figures = frozenset(int(f) for f in args.figures.split(","))
    try:
        common.run_in_workdir(
            lambda workdir: run(plan, workdir, figures),
            workdir=args.workdir,
            prefix="bench-rollout-",
            timeout=1200,
        )
    except (RuntimeError, ValueError, TimeoutError) as e:  # BenchError, StartError
        raise SystemExit(f"bench.rollout failed: {e!r}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
