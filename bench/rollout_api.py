"""Rollout API benchmark (issue 9's figures): watch latency during a rollout, and RPC throughput.

    python -m bench.rollout_api            # the whole run: 100 CloneSets, 5 rounds, 4 reps
    python -m bench.rollout_api --quick    # a smoke run: 20 CloneSets, 2 rounds, 1 rep
    python -m bench rollout_api --quick    # the same through the bench runner

Everything is real and on 127.0.0.1: ``services.cli.local.LocalMesh(replicas=1,
rollout_handover_s=0)`` starts the sandbox (API server with its scheduler and kubelets,
admission on), the gateway and one replica of each service. Tools reach the rollout API the
way the contract says (``protos/kruise/rollout/v1/rollout.proto``): the gateway's API port
(``mesh.api_target``), which forwards each call to the rollout replica owning the namespace.
The world's settings are bench/rollout.py's: ``--history 200000``, the pods name their node
(``spec.nodeName``) so the world's one-at-a-time scheduler stays out of the path, kubelet
delays at the sandbox's defaults (its fastest).

**Set-up.** ``--sets`` CloneSets (100) of 2, 3 or 4 pods (``2 + i % 3``) spread round-robin
over ``--namespaces`` namespaces (10), ``InPlaceIfPossible``, ``maxUnavailable: 50%``,
``partition: "100%"``, created 16 POSTs in flight; the bench waits until every one is Ready
and the rollout replica has settled (queue empty, no pod write for 0.5 s).

**1. Watch latency during a rollout.** The bench process holds, all the while:

* a raw Kubernetes watch on the bench's pods (cluster-wide, label selector) and one on its
  CloneSets, straight from the sandbox, arrival times taken as each event's line is read;
* 100 ``WatchRolloutStatus`` streams (one per CloneSet, ``ref`` namespace + name) through
  the gateway's API port, on one channel, each past its initial state
  (``initial_events_end``) before any round starts.

A round: every CloneSet gets a new image and its partition back to ``"100%"`` (one merge
PATCH each, through the Kubernetes API: nothing updates), the bench waits until every
CloneSet's status names the new ``updateRevision`` R and the replica settled; then, per
CloneSet, ``SetPartition(partition=0, expected_update_revision=R)`` through the gateway,
either **paced** (``--pace`` calls/s, open loop, 5/s ≈ 15 pod updates/s: a few CloneSets
rolling at once, below what this box sustains with a neighbour busy; 10/s was at that edge
and queued) or as a **burst** (every call at once: the controller's queue is measured too).
The round ends when every CloneSet's watcher and raw status both show
``updatedReadyReplicas`` = replicas at R. Rounds alternate paced, burst, paced, ...
(``--rounds``, 5: three paced, two burst).

* **SetPartition → first pod updated**: per CloneSet, from the SetPartition call's return to
  the first raw pod event of that CloneSet at revision R (its ``controller-revision-hash``);
  an event that arrived before the return counts as 0 (how many did: "early").
* **pod Ready → watcher told**: per pod, its Ready time is the first raw pod event that makes
  it count in ``updatedReadyReplicas`` as the controller counts it (revision R, phase Running,
  ``Ready`` True, ``InPlaceUpdateReady`` not False: ``services/rollout/pods.py``); the k-th such
  pod of a CloneSet is told at the first ``WatchRolloutStatus`` event with
  ``status.update_revision`` R and ``status.updated_ready_replicas`` ≥ k.
* **pod Ready → CloneSet status event**: the same pod, to the first raw CloneSet event with
  ``updatedReadyReplicas`` ≥ k at R: the controller's status write, which the watcher's
  ``status.status`` is a copy of, so it is on the watcher's path. **Watcher's own share** =
  watcher event − raw status event, per pod (the feed's refresh on the replica, the gateway's
  relay of the stream, and the replica's own Sync feed vs the bench's raw watch).

Cells are per-round percentiles (p50/p99 over the round's CloneSets or pods), median [min–max]
over the rounds of that kind; cores are CPU seconds over wall seconds from the round's first
SetPartition to its end.

**2. Throughput at 32 concurrent callers.** One closed loop (``common.run_bounded``, 32 calls
in flight on one channel, the same driver for every variant), ``--duration`` s (2.5) after a
0.5 s warm-up, per variant, the variants in turn within a repetition (``--reps``, 4; the
order alternates), so a noisy neighbour hits every variant alike:

* ``echo``: a bare ``grpc.aio`` server in a child process of the bench (``--echo-server``:
  one generic unary method that returns the request bytes, no protobuf, no interceptors,
  default options), called with the serialized CheckBatch request: the floor of one Python
  unary call on this box;
* ``gateway Health.Check``: ``grpc.health.v1`` on the gateway's API port, answered by the
  gateway itself (no hop): the gateway server's own floor;
* ``GetRolloutStatus`` and ``CheckBatch`` (batch "50%"), through the gateway (``api_target``)
  and direct to the rollout replica (skipping the hop), cycling over the CloneSets.

Reported: calls/s, the ratio to ``echo`` taken within each repetition (then the median), the
hop's ratio gateway / direct the same way, client latency p50/p99, CPU µs per call of the
gateway, the rollout replica, the echo child and the bench (the client), from ``/proc``, and
the servers' CPU per call over the echo server's (the ratio the foreign load blurs least).

Bounds: every wait is capped (``--cap`` 120 s per phase, 60 s without an event fails), the
loops are bounded in count and time, the whole run in 15 minutes. A failure exits with
status 1, after the tables of what completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import common
from bench.rollout import (
    BENCH_LABEL,
    CLUSTER_LATENCY,
    CS_API,
    NODE,
    PROCESSES,
    REVISION_LABEL,
    BenchError,
    Replica,
    clone_set,
    cores,
    cs_path,
    ensure_namespace,
    eventually,
    grown,
    pids_of,
    progress,
    scrape,
    total,
)
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli import procs
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.rollout.controller import POD_SETTLE_MIN_S, POD_SETTLE_S, RolloutController

NS_PREFIX = "bench-rapi-"
BENCH = "rollout-api"  # the value of BENCH_LABEL on every object of this bench
IMAGE_BASE = "nginx:1."
STRATEGY = {"type": "InPlaceIfPossible", "maxUnavailable": "50%", "partition": "100%"}
IN_PLACE_UPDATE_READY = "InPlaceUpdateReady"
CREATE_CONCURRENCY = 16
CALLERS = 32
WARMUP_S = 0.5
TOLD_TARGET_MS = 100.0
POLL = 0.02
RECONCILE_SECONDS = "kruise_mesh_rollout_reconcile_seconds"
ECHO_METHOD = "/bench.Echo/Echo"
BOOKMARK = rollout_pb2.WatchRolloutStatusResponse.TYPE_BOOKMARK

Key = tuple[str, str]  # (namespace, CloneSet name)


@dataclass(frozen=True)
class Plan:
    sets: int
    namespaces: int
    rounds: int  # paced, burst, paced, ...
    pace: float  # SetPartition calls/s in a paced round
    reps: int  # figure 2
    duration: float  # seconds per variant, figure 2
    cap: float  # seconds, per phase
    stall: float  # no event for this long fails a phase


def replicas_of(index: int) -> int:
    return 2 + index % 3


def matches_revision(label: str, revision: str) -> bool:
    """OpenKruise's EqualToRevisionHash (``services/rollout/pods.is_updated``)."""
    return bool(label) and (
        label == revision or label.rsplit("-", 1)[-1] == revision.rsplit("-", 1)[-1]
    )


def counts_ready(pod: Mapping[str, Any]) -> bool:
    """Running, Ready True, InPlaceUpdateReady not False: how ``updatedReadyReplicas``
    counts a pod at the update revision (``services/rollout/pods.counts_ready``)."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (
        status.get("phase") == "Running"
        and conditions.get("Ready") == "True"
        and conditions.get(IN_PLACE_UPDATE_READY) != "False"
    )


# ---- what the bench sees -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PodSeen:
    at: float  # perf_counter arrival
    pod: str
    revision: str
    ready: bool  # counts_ready


@dataclass(frozen=True, slots=True)
class StatusSeen:
    at: float
    revision: str  # updateRevision
    updated_ready: int
    generation: int  # observedGeneration


@dataclass
class Raw:
    """The raw Kubernetes watches: the bench's pods and CloneSets, cluster-wide."""

    kube: KubeClient
    pods: dict[Key, list[PodSeen]] = field(default_factory=dict)
    statuses: dict[Key, list[StatusSeen]] = field(default_factory=dict)
    generations: dict[Key, int] = field(default_factory=dict)  # metadata.generation, last seen
    events: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        query = {"labelSelector": f"{BENCH_LABEL}={BENCH}"}
        for path, handler in (("/api/v1/pods", self._pod), (f"{CS_API}/clonesets", self._cs)):
            listed = await self.kube.request_json("GET", path, query={**query, "limit": "1"})
            rv = str(listed["metadata"]["resourceVersion"])
            self._tasks.append(asyncio.create_task(self._run(path, query, rv, handler)))
        await asyncio.sleep(0.3)  # connected: arrival times are live, not a replay
        self.check()

    def check(self) -> None:
        for task in self._tasks:
            if task.done():
                task.result()
                raise BenchError("a raw watch ended")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(
        self,
        path: str,
        query: Mapping[str, str],
        rv: str,
        handler: Callable[[dict[str, Any], float], None],
    ) -> None:
        async for type_, obj, now in common.watch_objects(
            self.kube, path, {**query, "resourceVersion": rv}
        ):
            if type_ != "DELETED":
                self.events += 1
                handler(obj, now)

    def _pod(self, pod: dict[str, Any], now: float) -> None:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        key = (meta["namespace"], labels.get("app", ""))
        seen = PodSeen(now, meta["name"], labels.get(REVISION_LABEL, ""), counts_ready(pod))
        self.pods.setdefault(key, []).append(seen)

    def _cs(self, cs: dict[str, Any], now: float) -> None:
        meta = cs["metadata"]
        key = (meta["namespace"], meta["name"])
        self.generations[key] = int(meta.get("generation", 0))
        st = cs.get("status") or {}
        self.statuses.setdefault(key, []).append(
            StatusSeen(
                now,
                str(st.get("updateRevision", "")),
                int(st.get("updatedReadyReplicas", 0)),
                int(st.get("observedGeneration", 0)),
            )
        )

    def last(self, key: Key) -> StatusSeen | None:
        seen = self.statuses.get(key)
        return seen[-1] if seen else None


@dataclass(frozen=True, slots=True)
class Told:
    at: float
    revision: str  # status.status.update_revision
    updated_ready: int


@dataclass
class Watchers:
    """One ``WatchRolloutStatus`` stream per CloneSet through the gateway's API port."""

    stub: rollout_pb2_grpc.RolloutServiceAsyncStub
    keys: Sequence[Key]
    told: dict[Key, list[Told]] = field(default_factory=dict)
    restarts: int = 0
    last_error: str = ""
    events: int = 0
    _initial: dict[Key, asyncio.Event] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, timeout: float) -> float:
        """Open every stream; the seconds until each had sent its initial state."""
        t0 = time.perf_counter()
        for key in self.keys:
            self.told[key] = []
            self._initial[key] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(key)))
        waits = [asyncio.create_task(e.wait()) for e in self._initial.values()]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            raise BenchError(
                f"{len(pending)} of {len(self.keys)} WatchRolloutStatus streams without their "
                f"initial state after {timeout:.0f} s; last error: {self.last_error or '-'}"
            )
        return time.perf_counter() - t0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, key: Key) -> None:
        namespace, name = key
        version = ""
        while True:
            request = rollout_pb2.WatchRolloutStatusRequest(
                ref=rollout_pb2.WorkloadRef(namespace=namespace, name=name),
                resume_version=version,
            )
            try:
                async for response in self.stub.WatchRolloutStatus(request):
                    now = time.perf_counter()
                    if response.version:
                        version = response.version
                    if response.type == BOOKMARK:
                        if response.initial_events_end:
                            self._initial[key].set()
                        continue
                    self.events += 1
                    st = response.status.status
                    self.told[key].append(Told(now, st.update_revision, st.updated_ready_replicas))
            except grpc.aio.AioRpcError as e:
                self.last_error = f"{e.code().name}: {e.details()}"
                if e.code() == grpc.StatusCode.ABORTED:
                    version = ""  # RESOURCE_VERSION_EXPIRED: watch again from the state
            self.restarts += 1
            await asyncio.sleep(0.1)


# ---- set-up --------------------------------------------------------------------------------------
def set_keys(plan: Plan) -> list[Key]:
    return [(f"{NS_PREFIX}{i % plan.namespaces:02d}", f"cs-{i:03d}") for i in range(plan.sets)]


async def create_sets(kube: KubeClient, replica: Replica, plan: Plan, keys: list[Key]) -> float:
    t0 = time.monotonic()
    for namespace in sorted({ns for ns, _ in keys}):
        await ensure_namespace(kube, namespace)

    async def create(i: int) -> None:
        namespace, name = keys[i]
        body = clone_set(
            name,
            replicas_of(i),
            strategy=STRATEGY,
            node=NODE,
            bench=BENCH,
        )
        await kube.request("POST", cs_path(namespace), body=orjson.dumps(body), timeout=30)

    created = await common.run_bounded(len(keys), CREATE_CONCURRENCY, create, time_cap=plan.cap)
    if created.errors or created.ok != len(keys):
        raise BenchError(f"created {created.ok}/{len(keys)} CloneSets: {created.first_error}")

    async def all_ready() -> bool:
        listed = await kube.request_json(
            "GET", f"{CS_API}/clonesets", query={"labelSelector": f"{BENCH_LABEL}={BENCH}"}
        )
        done = sum(
            1
            for cs in listed.get("items") or []
            if int((cs.get("status") or {}).get("readyReplicas", 0)) >= cs["spec"]["replicas"]
        )
        return done >= len(keys)

    await eventually("every CloneSet Ready", all_ready, timeout=plan.cap, every=0.5)
    await replica.settle(timeout=plan.cap)
    return time.monotonic() - t0


# ---- 1. a round ----------------------------------------------------------------------------------
@dataclass
class Round:
    mode: str  # "paced" | "burst"
    sets: int
    pods: int
    wall: float  # first SetPartition → the last CloneSet done (watcher and raw status)
    call: list[float]  # SetPartition round trips (s)
    first_updated: list[float]  # per CloneSet, from the call's return
    early_updated: int
    done: list[float]  # per CloneSet: call return → watcher told updatedReady = replicas
    to_status: list[float]  # per pod: Ready → raw CloneSet status event counting it
    to_told: list[float]  # per pod: Ready → watcher event counting it
    share: list[float]  # per pod: raw status event → watcher event
    early_status: int
    early_told: int
    cores: dict[str, float]
    reconcile_ms: float  # the rollout replica's mean reconcile (writes included)
    reconciles: float
    cluster_ms: dict[str, float]  # the gateway's ClusterService mean latency, by method
    cluster_calls: dict[str, float]


async def prepare(
    kube: KubeClient, raw: Raw, replica: Replica, plan: Plan, keys: list[Key], image: str
) -> dict[Key, str]:
    """New image, partition back to 100% (nothing updates); each CloneSet's new revision."""
    old = {key: (raw.last(key) or StatusSeen(0, "", 0, 0)).revision for key in keys}
    generation: dict[Key, int] = {}
    body = orjson.dumps(
        {
            "spec": {
                "updateStrategy": {"partition": "100%"},
                "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
            }
        }
    )

    async def patch(i: int) -> None:
        namespace, name = keys[i]
        raw_answer = await kube.request(
            "PATCH",
            cs_path(namespace, name),
            body=body,
            content_type="application/merge-patch+json",
        )
        generation[keys[i]] = int(orjson.loads(raw_answer)["metadata"]["generation"])

    patched = await common.run_bounded(len(keys), CREATE_CONCURRENCY, patch, time_cap=plan.cap)
    if patched.errors:
        raise BenchError(f"image PATCH failed {patched.errors} times: {patched.first_error}")
    revisions: dict[Key, str] = {}

    async def observed() -> bool:
        raw.check()
        for key in keys:
            last = raw.last(key)
            if (
                last is not None
                and last.generation >= generation[key]
                and last.revision
                and last.revision != old[key]
            ):
                revisions[key] = last.revision
        return len(revisions) == len(keys)

    await eventually("every CloneSet names its new revision", observed, timeout=plan.cap, every=0.1)
    await replica.settle(timeout=plan.cap)
    return revisions


def first_count(items: Sequence[StatusSeen | Told], revision: str, k: int) -> float | None:
    """The arrival of the first status (raw or told) at ``revision`` counting ``k`` pods."""
    for item in items:
        if item.revision == revision and item.updated_ready >= k:
            return item.at
    return None


async def run_round(
    mesh: LocalMesh,
    kube: KubeClient,
    raw: Raw,
    watchers: Watchers,
    replica: Replica,
    plan: Plan,
    keys: list[Key],
    index: int,
) -> Round:
    mode = "paced" if index % 2 == 0 else "burst"
    image = f"{IMAGE_BASE}{28 + index}"
    revisions = await prepare(kube, raw, replica, plan, keys, image)
    replicas = {key: replicas_of(i) for i, key in enumerate(keys)}
    called: dict[Key, float] = {}
    returned: dict[Key, float] = {}

    async def set_partition(i: int, *_: float) -> None:
        namespace, name = key = keys[i]
        request = rollout_pb2.SetPartitionRequest(
            ref=rollout_pb2.WorkloadRef(namespace=namespace, name=name),
            partition=rollout_pb2.IntOrPercent(count=0),
            expected_update_revision=revisions[key],
        )
        called[key] = time.perf_counter()
        answer = await watchers.stub.SetPartition(request, timeout=30)
        returned[key] = time.perf_counter()
        if not answer.applied:
            raise BenchError(f"SetPartition {namespace}/{name} not applied: {answer.message}")

    def finished(key: Key) -> bool:
        revision, want = revisions[key], replicas[key]
        told = watchers.told[key]
        seen = raw.statuses.get(key, [])
        return bool(
            told
            and told[-1].revision == revision
            and told[-1].updated_ready >= want
            and seen
            and seen[-1].revision == revision
            and seen[-1].updated_ready >= want
        )

    gateway_port = int(mesh.procs["gateway"].ready["ops_port"])
    replica_before = await replica.metrics()
    gateway_before = await scrape(replica.http, gateway_port)
    window = common.CpuWindow(pids_of(mesh))
    window.start()
    t0 = time.perf_counter()
    if mode == "paced":
        load = await common.run_open_loop(plan.pace, len(keys) / plan.pace, set_partition)
    else:
        load = await common.run_bounded(len(keys), len(keys), set_partition, time_cap=plan.cap)
    if load.errors or load.ok != len(keys):
        raise BenchError(f"SetPartition: {load.ok}/{len(keys)} ok, {load.first_error}")
    started = last_change = time.monotonic()
    last = -1
    while not all(finished(key) for key in keys):
        raw.check()
        now = time.monotonic()
        events = raw.events + watchers.events
        if events != last:
            last, last_change = events, now
        if now - last_change > plan.stall or now - started > plan.cap:
            left = [f"{ns}/{n}" for ns, n in keys if not finished((ns, n))]
            raise BenchError(
                f"{mode} round {index + 1}: {len(left)} CloneSets not rolled out after "
                f"{now - started:.0f} s (e.g. {left[:3]}); watch restarts {watchers.restarts} "
                f"({watchers.last_error or '-'})"
            )
        await asyncio.sleep(POLL)
    window.stop()
    wall = time.perf_counter() - t0
    replica_after = await replica.metrics()
    gateway_after = await scrape(replica.http, gateway_port)
    out = analyse(mode, keys, revisions, replicas, called, returned, raw, watchers, window, wall)
    reconciled = total(replica_after, f"{RECONCILE_SECONDS}_count") - total(
        replica_before, f"{RECONCILE_SECONDS}_count"
    )
    spent = total(replica_after, f"{RECONCILE_SECONDS}_sum") - total(
        replica_before, f"{RECONCILE_SECONDS}_sum"
    )
    out.reconciles = reconciled
    out.reconcile_ms = spent / reconciled * 1000 if reconciled else 0.0
    call_s = grown(gateway_before, gateway_after, f"{CLUSTER_LATENCY}_sum", "method")
    call_n = grown(gateway_before, gateway_after, f"{CLUSTER_LATENCY}_count", "method")
    out.cluster_calls = call_n
    out.cluster_ms = {k: call_s.get(k, 0.0) / n * 1000 for k, n in call_n.items() if n}
    return out


def analyse(
    mode: str,
    keys: Sequence[Key],
    revisions: Mapping[Key, str],
    replicas: Mapping[Key, int],
    called: Mapping[Key, float],
    returned: Mapping[Key, float],
    raw: Raw,
    watchers: Watchers,
    window: common.CpuWindow,
    wall: float,
) -> Round:
    out = Round(
        mode, len(keys), 0, wall, [], [], 0, [], [], [], [], 0, 0, cores(window), 0.0, 0.0, {}, {}
    )
    for key in keys:
        revision, t_call, t_ret = revisions[key], called[key], returned[key]
        out.call.append(t_ret - t_call)
        pods = [p for p in raw.pods.get(key, []) if p.at >= t_call]
        at_revision = [p for p in pods if matches_revision(p.revision, revision)]
        if not at_revision:
            raise BenchError(f"{key[0]}/{key[1]}: no pod event at revision {revision}")
        first = at_revision[0].at - t_ret
        out.early_updated += first < 0
        out.first_updated.append(max(first, 0.0))
        ready: dict[str, float] = {}
        for p in at_revision:
            if p.ready:
                ready.setdefault(p.pod, p.at)
        readies = sorted(ready.values())
        if len(readies) < replicas[key]:
            raise BenchError(
                f"{key[0]}/{key[1]}: {len(readies)} of {replicas[key]} pods seen Ready at "
                f"revision {revision}"
            )
        out.pods += len(readies)
        statuses = [s for s in raw.statuses.get(key, []) if s.at >= t_call]
        told = [t for t in watchers.told.get(key, []) if t.at >= t_call]
        done = first_count(told, revision, replicas[key])
        assert done is not None
        out.done.append(done - t_ret)
        for k, at in enumerate(readies, start=1):
            at_status = first_count(statuses, revision, k)
            at_told = first_count(told, revision, k)
            if at_status is None or at_told is None:
                raise BenchError(f"{key[0]}/{key[1]}: pod {k} Ready but never counted")
            out.early_status += at_status < at
            out.early_told += at_told < at
            out.to_status.append(max(at_status - at, 0.0))
            out.to_told.append(max(at_told - at, 0.0))
            out.share.append(at_told - at_status)
    return out


def print_rounds(
    rounds: Sequence[Round], plan: Plan, *, watch_open_s: float, restarts: int
) -> None:
    modes = [m for m in ("paced", "burst") if any(r.mode == m for r in rounds)]
    by_mode = {m: [r for r in rounds if r.mode == m] for m in modes}

    def pct(mode: str, get: Callable[[Round], list[float]], q: float) -> float:
        """The median over the mode's rounds of each round's percentile ``q`` (s)."""
        return common.median([common.percentile(get(r), q) for r in by_mode[mode] if get(r)])

    def row(
        what: str, get: Callable[[Round], list[float]], digits: int = 0, scale: float = 1000
    ) -> list[str]:
        cells = []
        for mode in modes:
            for q in (0.50, 0.99):
                values = [common.percentile(get(r), q) for r in by_mode[mode] if get(r)]
                cells.append(common.spread(values, digits, scale))
        return [what, *cells]

    rows = [
        row("SetPartition round trip (ms)", lambda r: r.call),
        row("return → first pod updated (ms)", lambda r: r.first_updated),
        row("pod Ready → status event, raw (ms)", lambda r: r.to_status),
        row("pod Ready → watcher told (ms)", lambda r: r.to_told),
        row("  of which status → told (ms)", lambda r: r.share, 1),
        row("return → told all updated (s)", lambda r: r.done, 2, 1),
    ]
    verdicts = "; ".join(
        f"{m} {pct(m, lambda r: r.to_told, 0.99) * 1000:,.0f} ms → "
        f"{'met' if pct(m, lambda r: r.to_told, 0.99) * 1000 <= TOLD_TARGET_MS else 'NOT met'}"
        f" (the CloneSet status event alone: p99 "
        f"{pct(m, lambda r: r.to_status, 0.99) * 1000:,.0f} ms; status event → watcher: p50 "
        f"{pct(m, lambda r: r.share, 0.5) * 1000:,.1f} ms, p99 "
        f"{pct(m, lambda r: r.share, 0.99) * 1000:,.1f} ms)"
        for m in modes
    )
    ratios = ""
    if len(modes) == 2:
        told = [
            pct("burst", lambda r: r.to_told, q) / pct("paced", lambda r: r.to_told, q)
            for q in (0.5, 0.99)
        ]
        ratios = f"; watcher told burst / paced: p50 {told[0]:.2f}×, p99 {told[1]:.2f}×"
    counts = ", ".join(f"{len(by_mode[m])} {m}" for m in modes)
    common.print_table(
        f"1. rollout API during a rollout: {plan.sets} CloneSets (2-4 pods, InPlaceIfPossible, "
        f"maxUnavailable 50%) over {plan.namespaces} namespaces, {plan.sets} WatchRolloutStatus "
        f"streams through the gateway; per-round p50 and p99, median [min–max] of {counts} "
        "rounds",
        ["measure", *(f"{m} {q}" for m in modes for q in ("p50", "p99"))],
        rows,
        notes=[
            "rows: the SetPartition call's round trip through the gateway; from its return to "
            "the CloneSet's first pod updated; pod Ready to the raw CloneSet status event "
            "counting it, and to the watcher told; of which status event → watcher told; "
            "from the call's return to the watcher told every pod updated and ready",
            f"paced = SetPartition(partition 0, expected_update_revision) at {plan.pace:g}/s "
            f"(open loop); burst = all {plan.sets} calls at once. A round first PATCHes every "
            "template's image with partition 100% and waits for the new updateRevision and a "
            "settled replica; none of that is timed",
            "first pod updated = the first raw pod event of the CloneSet at the new revision "
            "(controller-revision-hash), from the call's return; pod Ready = the first raw pod "
            "event counting in updatedReadyReplicas (revision, Running, Ready, "
            "InPlaceUpdateReady not False); the k-th Ready pod is told by the first watcher "
            "event (and counted by the first raw CloneSet event) with updated_ready_replicas "
            "≥ k at that revision. An event earlier than the bench's own counts as 0 (table "
            "1b: early)",
            "the watcher's status.status is the CloneSet status the controller wrote, so the "
            "raw status event lies on the watcher's path; 'of which' (watcher − raw status "
            "event, per pod) is the replica's feed + the gateway's stream relay, measured "
            "against the bench's own raw watch of the same API server",
            f"{plan.sets} watch streams on one channel to the gateway's API port, each past its "
            f"initial state in {watch_open_s:.2f} s; stream restarts during the run: {restarts}",
            f"target watcher told p99 ≤ {TOLD_TARGET_MS:.0f} ms: {verdicts}{ratios}",
        ],
    )

    def plain(what: str, get: Callable[[Round], float], digits: int) -> list[str]:
        return [what, *(common.spread([get(r) for r in by_mode[m]], digits) for m in modes)]

    work = [
        plain("round wall: first call → all told (s)", lambda r: r.wall, 1),
        plain("pods Ready and counted per round", lambda r: float(r.pods), 0),
        plain("pods rolled per s (pods / round wall)", lambda r: r.pods / r.wall, 1),
        plain("rollout reconciles per pod", lambda r: r.reconciles / r.pods, 2),
        plain("rollout reconcile, mean (ms, writes included)", lambda r: r.reconcile_ms, 1),
    ]
    for method in sorted({k for r in rounds for k in r.cluster_ms}):
        work.append(
            plain(
                f"gateway ClusterService {method} per pod",
                lambda r, m=method: r.cluster_calls.get(m, 0.0) / r.pods,  # type: ignore[misc]
                2,
            )
        )
        work.append(
            plain(
                f"  {method} mean latency (ms)",
                lambda r, m=method: r.cluster_ms.get(m, 0.0),  # type: ignore[misc]
                1,
            )
        )
    for what, attr in (
        ("early: first updated before the call returned", "early_updated"),
        ("early: status event before the pod's Ready event", "early_status"),
        ("early: watcher told before the pod's Ready event", "early_told"),
    ):
        work.append(plain(what, lambda r, a=attr: float(getattr(r, a)), 0))  # type: ignore[misc]
    names = [*(p for p in PROCESSES if p in rounds[0].cores), "bench", "foreign"]
    for name in names:
        work.append(plain(f"cores: {name}", lambda r, n=name: r.cores.get(n, 0.0), 2))  # type: ignore[misc]
    common.print_table(
        f"1b. where the rounds' time and CPU went; median [min–max] of {counts} rounds",
        ["measure", *modes],
        work,
        notes=[
            "on the status path by design: a pod event reconciles its CloneSet at once, then "
            "at most once per window (50 µs a pod, from "
            f"{POD_SETTLE_MIN_S * 1000:.0f} to {POD_SETTLE_S * 1000:.0f} ms: "
            "POD_SETTLE_*, coalescing bursts), which writes its status through the gateway "
            "(ClusterService UpdateStatus → sandbox); the pod event reaches the replica "
            "through the gateway's watch hub",
            f"the controller reconciles {_default('workers')} CloneSets at a time "
            f"({_default('readiness_workers')} readiness workers; RolloutController's "
            "defaults), each reconcile waiting on its API writes in turn: in a burst the "
            "CloneSets queue there",
            "ClusterService calls are every service's (rollout: pod patches, conditions, "
            "CloneSet status, Events) over the round, per pod rolled; their latency includes "
            "the sandbox and its admission webhooks",
            "cores = CPU seconds over the round's wall seconds (of 2 vCPUs); foreign = the rest "
            "of the machine (other tenants)",
        ],
    )


def _default(parameter: str) -> object:
    """A default of ``RolloutController``'s constructor (what a replica runs with)."""
    return inspect.signature(RolloutController.__init__).parameters[parameter].default


# ---- 2. throughput -------------------------------------------------------------------------------
@dataclass
class Rate:
    rate: float
    p50: float
    p99: float
    errors: int
    first_error: str
    cpu_us: dict[str, float]  # per call, by process
    foreign: float  # cores


VARIANTS = (
    "echo (bare grpc.aio)",
    "gateway Health.Check",
    "GetRolloutStatus, gateway",
    "GetRolloutStatus, direct",
    "CheckBatch, gateway",
    "CheckBatch, direct",
)


async def echo_server() -> None:
    """The bare grpc.aio server of figure 2 (``--echo-server``): one unary method returning
    the request bytes; prints its port as the ready line and serves until SIGTERM."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.stop(0.5)


async def measure(
    call: Callable[[int], Awaitable[Any]], pids: Mapping[str, int], plan: Plan
) -> Rate:
    await common.run_bounded(1_000_000, CALLERS, call, time_cap=WARMUP_S)
    window = common.CpuWindow(pids)
    window.start()
    load = await common.run_bounded(5_000_000, CALLERS, call, time_cap=plan.duration)
    window.stop()
    n = max(load.ok, 1)
    return Rate(
        rate=load.rate,
        p50=common.percentile(load.latencies, 0.5),
        p99=common.percentile(load.latencies, 0.99),
        errors=load.errors,
        first_error=load.first_error,
        cpu_us={name: s / n * 1e6 for name, s in window.seconds.items()},
        foreign=window.foreign / max(window.wall, 1e-9),
    )


async def throughput(mesh: LocalMesh, plan: Plan, keys: list[Key]) -> list[dict[str, Rate]]:
    echo = await procs.start("echo", "bench.rollout_api", ["--echo-server"], log_dir=mesh.logs)
    channels: list[grpc.aio.Channel] = []
    try:
        pids = {**pids_of(mesh), "echo": echo.pid}

        def channel(target: str) -> grpc.aio.Channel:
            made = grpc.aio.insecure_channel(target)
            channels.append(made)
            return made

        echo_call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel(
            f"127.0.0.1:{echo.ready['port']}"
        ).unary_unary(ECHO_METHOD)
        gateway = rollout_pb2_grpc.RolloutServiceStub(channel(mesh.api_target))
        health = health_pb2_grpc.HealthStub(channel(mesh.api_target))
        direct = rollout_pb2_grpc.RolloutServiceStub(channel(mesh.addresses["rollout"][0]))
        refs = [rollout_pb2.WorkloadRef(namespace=ns, name=name) for ns, name in keys]
        gets = [rollout_pb2.GetRolloutStatusRequest(ref=ref) for ref in refs]
        checks = [
            rollout_pb2.CheckBatchRequest(ref=ref, batch=rollout_pb2.IntOrPercent(percent="50%"))
            for ref in refs
        ]
        echo_body = checks[0].SerializeToString()
        check_health = health_pb2.HealthCheckRequest()
        calls: dict[str, Callable[[int], Awaitable[Any]]] = {
            VARIANTS[0]: lambda i: echo_call(echo_body, timeout=10),
            VARIANTS[1]: lambda i: health.Check(check_health, timeout=10),
            VARIANTS[2]: lambda i: gateway.GetRolloutStatus(gets[i % len(gets)], timeout=10),
            VARIANTS[3]: lambda i: direct.GetRolloutStatus(gets[i % len(gets)], timeout=10),
            VARIANTS[4]: lambda i: gateway.CheckBatch(checks[i % len(checks)], timeout=10),
            VARIANTS[5]: lambda i: direct.CheckBatch(checks[i % len(checks)], timeout=10),
        }
        for name, call in calls.items():  # one call each: a broken path fails here, not later
            try:
                await call(0)
            except grpc.aio.AioRpcError as e:
                raise BenchError(f"{name}: {e.code().name}: {e.details()}") from e
        reps: list[dict[str, Rate]] = []
        for rep in range(plan.reps):
            order = list(calls) if rep % 2 == 0 else list(reversed(calls))
            results: dict[str, Rate] = {}
            for name in order:
                results[name] = await measure(calls[name], pids, plan)
            reps.append(results)
            progress(
                f"throughput rep {rep + 1}: "
                + ", ".join(f"{n.split(' (')[0]} {r.rate:,.0f}/s" for n, r in results.items())
            )
        return reps
    finally:
        for made in channels:
            await made.close()
        await echo.stop()


def print_throughput(reps: Sequence[Mapping[str, Rate]], plan: Plan) -> None:
    def med(name: str, get: Callable[[Rate], float]) -> float:
        return common.median([get(r[name]) for r in reps])

    def ratio(a: str, b: str) -> str:
        values = [r[a].rate / r[b].rate for r in reps if r[b].rate > 0]
        return common.spread(values, 2) if values else "-"

    rows = []
    for name in VARIANTS:
        server = "echo" if name.startswith("echo") else "gateway"
        cpu = [
            med(name, lambda r, p=p: r.cpu_us.get(p, 0.0))  # type: ignore[misc]
            for p in (server, "rollout-0", "bench")
        ]
        servers = [
            (r[name].cpu_us.get(server, 0.0) + r[name].cpu_us.get("rollout-0", 0.0))
            / r[VARIANTS[0]].cpu_us["echo"]
            for r in reps
            if r[VARIANTS[0]].cpu_us.get("echo")
        ]
        rows.append(
            [
                name,
                f"{med(name, lambda r: r.rate):,.0f}",
                ratio(name, VARIANTS[0]),
                common.spread(servers, 2),
                f"{med(name, lambda r: r.p50) * 1000:.1f} / "
                f"{med(name, lambda r: r.p99) * 1000:.1f}",
                " / ".join(f"{v:,.0f}" for v in cpu),
                f"{med(name, lambda r: r.foreign):.2f}",
            ]
        )
    errors = [
        f"{n}: {sum(r[n].errors for r in reps)} errors, e.g. {r[n].first_error}"
        for r in reps
        for n in VARIANTS
        if r[n].first_error
    ]
    hop = {
        method: ratio(f"{method}, gateway", f"{method}, direct")
        for method in ("GetRolloutStatus", "CheckBatch")
    }
    common.print_table(
        f"2. rollout API throughput, {CALLERS} concurrent callers on one channel, "
        f"{plan.duration:g} s per variant after {WARMUP_S:g} s warm-up; "
        f"median [min–max] of {len(reps)}",
        [
            "variant",
            "calls/s",
            "× echo",
            "server CPU × echo",
            "p50 / p99 ms",
            "CPU µs/call srv / replica / client",
            "foreign cores",
        ],
        rows,
        notes=[
            "echo = a bare grpc.aio server (default options) in a child process of the bench, "
            "one generic unary method returning the request bytes (the serialized CheckBatch "
            "request, no protobuf on either side); gateway Health.Check = grpc.health.v1 on the "
            "gateway's API port, answered by the gateway itself (no hop)",
            "GetRolloutStatus / CheckBatch (batch 50%) cycle over every CloneSet of figure 1; "
            "gateway = the gateway's API port (mesh.api_target), direct = the rollout "
            "replica's own port, skipping the gateway",
            f"hop cost, gateway / direct calls/s (same repetition): GetRolloutStatus "
            f"{hop['GetRolloutStatus']}, CheckBatch {hop['CheckBatch']}",
            "CPU per call from /proc: server = the echo child or the gateway, replica = the "
            "rollout replica, client = the bench process (the 32 callers); all share the 2 "
            "cores, so calls/s moves with the foreign load, CPU per call much less",
            "server CPU × echo = (gateway or echo + rollout replica) CPU per call over the echo "
            "server's CPU per call in the same repetition: the capacity ratio the foreign load "
            "blurs least",
            "× echo and the hop ratio are taken within a repetition (the variant order "
            "alternates per repetition), then the median [min–max]; calls/s, p50 / p99, CPU "
            "and foreign cores are medians",
            *(errors[:3] or ["no call failed"]),
        ],
    )


# ---- the driver ----------------------------------------------------------------------------------
async def run(plan: Plan, workdir: Path, figures: frozenset[int]) -> None:
    started = time.monotonic()
    mesh = LocalMesh(
        workdir=workdir,
        replicas=1,
        sandbox_args=["--history", "200000"],
        rollout_handover_s=0.0,
        # issue 9's figures, without callers' auth (its cost: bench/api_auth.py); loopback
        api_auth="off",
        # and without mesh TLS (its cost: bench/mesh_tls.py): the direct-to-replica row
        # calls the replica as the gateway would
        mesh_tls=False,
    )
    async with mesh:
        progress(f"mesh up after {time.monotonic() - started:.1f} s; API at {mesh.api_target}")
        kube = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        channel = grpc.aio.insecure_channel(mesh.api_target)
        replica = Replica(mesh, http)
        keys = set_keys(plan)
        rounds: list[Round] = []
        failure: BenchError | None = None
        try:
            took = await create_sets(kube, replica, plan, keys)
            pods = sum(replicas_of(i) for i in range(len(keys)))
            progress(f"{len(keys)} CloneSets, {pods} pods Ready in {took:.1f} s")
            if 1 in figures:
                raw = Raw(kube)
                await raw.start()
                watchers = Watchers(rollout_pb2_grpc.RolloutServiceStub(channel), keys)
                try:
                    opened = await watchers.start(timeout=plan.cap)
                    progress(f"{len(keys)} watch streams open in {opened:.2f} s")
                    for index in range(plan.rounds):
                        t = time.monotonic()
                        try:
                            rounds.append(
                                await run_round(
                                    mesh, kube, raw, watchers, replica, plan, keys, index
                                )
                            )
                        except BenchError as e:
                            failure = e
                            break
                        r = rounds[-1]
                        progress(
                            f"round {index + 1} ({r.mode}): first updated p50 "
                            f"{common.percentile(r.first_updated, 0.5) * 1000:.0f} ms, told "
                            f"p50/p99 {common.percentile(r.to_told, 0.5) * 1000:.0f}/"
                            f"{common.percentile(r.to_told, 0.99) * 1000:.0f} ms, "
                            f"{r.pods / r.wall:.1f} pods/s, foreign "
                            f"{r.cores.get('foreign', 0.0):.2f} cores; "
                            f"{time.monotonic() - t:.0f} s with its set-up"
                        )
                finally:
                    await watchers.stop()
                    await raw.stop()
                if rounds:
                    print_rounds(rounds, plan, watch_open_s=opened, restarts=watchers.restarts)
                if failure is not None:
                    raise failure
            if 2 in figures:
                t = time.monotonic()
                reps = await throughput(mesh, plan, keys)
                progress(f"throughput done in {time.monotonic() - t:.0f} s")
                print_throughput(reps, plan)
        finally:
            await channel.close()
            await http.close()
            await kube.close()
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rollout_api", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition")
    parser.add_argument("--sets", type=int, help="CloneSets and watchers (100; quick 20)")
    parser.add_argument("--namespaces", type=int, help="namespaces (10; quick 4)")
    parser.add_argument(
        "--rounds", type=int, help="rollout rounds, paced, burst, paced, ... (5; quick 2)"
    )
    parser.add_argument("--pace", type=float, default=5.0, help="SetPartition/s, paced (5)")
    parser.add_argument("--reps", type=int, help="throughput repetitions (4; quick 1)")
    parser.add_argument("--duration", type=float, help="s per throughput variant (2.5; quick 1.5)")
    parser.add_argument("--cap", type=float, default=120.0, help="s per phase (120)")
    parser.add_argument("--figures", default="1,2", help="which figures, e.g. 2")
    parser.add_argument("--workdir", help="keep the mesh's state and logs here")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(echo_server())
        return
    quick = args.quick
    plan = Plan(
        sets=args.sets or (20 if quick else 100),
        namespaces=args.namespaces or (4 if quick else 10),
        rounds=args.rounds or (2 if quick else 5),
        pace=args.pace,
        reps=args.reps or (1 if quick else 4),
        duration=args.duration or (1.5 if quick else 2.5),
        cap=args.cap,
        stall=60.0,
    )
    figures = frozenset(int(f) for f in args.figures.split(","))
    try:
        common.run_in_workdir(
            lambda workdir: run(plan, workdir, figures),
            workdir=args.workdir,
            prefix="bench-rollout-api-",
            timeout=900,
        )
    except (RuntimeError, ValueError, TimeoutError) as e:  # BenchError, StartError
        raise SystemExit(f"bench.rollout_api failed: {e!r}") from None


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
