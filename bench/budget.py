"""Budget (PodUnavailableBudget) benchmark: the pod webhooks' decisions, with and without the
status write, an eviction storm, and the status-write linger off and on.

    python -m bench.budget            # the whole run (about 8 min on 2 vCPUs)
    python -m bench.budget --quick    # a smoke run (about 1 min): smaller worlds, 1 repetition

Everything is real and on 127.0.0.1: ``services.cli.local.LocalMesh`` starts the sandbox (API
server with its scheduler and kubelets, admission on), the gateway and one replica of each
service (``--budget-replicas`` for more budget replicas). The bench plays the Deployment and
ReplicaSet controllers, as ``tests/e2e/test_pod_unavailable_budget.py`` does: it creates a
Deployment, a ReplicaSet it controls and the pods (through the API, so each pod CREATE passes
the gateway's mutating webhooks, which write ``kruise.io/related-pub``); the sandbox's kubelets
make them Running and Ready; nothing re-creates a pod once it is gone.

**1. Decisions that need no write.** Pod DELETE AdmissionReviews posted over HTTPS straight to
the gateway (``/budget/validate-pods?timeout=10s``): (a) a real pod of a namespace without any
budget (no ``kruise.io/related-pub``: unprotected) and (b) the same pod annotated with a budget
that does not exist. Both reviews carry the pod as the API returns it (Running, Ready, owned by
a ReplicaSet of a Deployment), so the replica resolves its owner before it looks for the
budget. The load is ``bench.admission``'s generator in its own process: an open loop at
``--rate`` reviews/s for ``--duration`` s over 64 keep-alive TLS connections, latency from the
intended send time (no coordinated omission); an answer other than 200 with
``"allowed":true`` is an error. The baseline is ``bench.admission``'s bare endpoint (the
gateway's aiohttp webhook server answering in-process, no hop, with the gateway's own
certificate), measured in the same repetition, interleaved. CPU per review is the servers'
utime+stime over the measured window (gateway + budget replicas; the bare process).

**2. Admitted decisions with a status write.** Budgets with ``maxUnavailable: "100%"`` over
real ready pods, so ``unavailableAllowed`` = the number of pods (the bench waits for the status
loop to say so). Pod DELETE reviews are posted straight to the gateway, one per DISTINCT pod
(``oldObject`` = the pod as the API returns it, with its related-pub annotation; a pod already
recorded spends nothing), closed loop with ``--concurrency`` in flight (one keep-alive TLS
connection each, the bench's own minimal HTTP/1.1 client, ``bench.admission._Conn``) until every
pod has been sent or ``--window`` seconds have passed. Every admitted decision must be in a
status write before it is answered: the budget replica folds the decisions waiting for one
budget into one conditional write (resourceVersion precondition) through the gateway's cluster
API to the sandbox. Reported: admitted decisions per second (allowed answers / time from the
first send to the last answer; also over the first and the second half of the admissions, as
``disruptedPods`` grows), latency of the allowed answers, refusals (by code) and errors, the status
writes of the admission path (``kruise_mesh_budget_status_writes_total`` by result) and the
mean decisions per write (``kruise_mesh_budget_decisions_per_write``) from the budget
replicas' ``/metrics``, the gateway's UpdateStatus calls and their mean latency (its
``/metrics``), the status loop's reconciles, the CPU of each process over the window (cores),
and a check: right
after the window the budgets' ``status.disruptedPods`` (read through the API) hold exactly the
pods whose deletion was admitted. Variants: (a) one budget with ``--one-pods`` pods, (b)
``--budgets`` budgets in as many namespaces with ``--pods-per-budget`` pods each, the reviews
spread round-robin. Sizes stay under the 2,000-entry cap, and the window well under the 20 s
lifetime of an entry (an admitted pod that is still there is dropped from ``disruptedPods``
after 20 s and gets a ``NotDeleted`` Event). Between repetitions the bench waits until every
budget is back to its full allowance with nothing recorded, and before each window until the
budget work queues are empty (``kruise_mesh_budget_queue_depth`` counts the rechecks scheduled
at each record's expiry too, so the expiry of the last window's records and their
``NotDeleted`` Events are over before the next window starts).

**3. The eviction storm.** One budget (maxUnavailable ``--storm-allowed``) over ``--storm-pods``
ready pods; one ``POST pods/<name>/eviction`` per pod, all at once, through the sandbox API (so
the sandbox's admission calls the gateway, which asks the budget replica). The bench's client
holds one keep-alive connection per request, opened before the storm by a GET per pod (a storm
of TLS handshakes is not what is measured). Reported: the time until every request is answered,
per-request latency, and the answer codes: exactly ``--storm-allowed`` must be admitted (201)
and the rest refused (429, or 403/409). Between repetitions the evicted pods are replaced by new
ones and the bench waits until the budget allows ``--storm-allowed`` again.

**4. The status-write linger, off and on.** Figure 2b's load on its own ``--budgets`` worlds,
with every budget replica restarted before each window with ``KRUISE_MESH_BUDGET_LINGER_MS``
0 (off) or 10 (the default), the order alternating per repetition. Reported side by side with
the on/off ratio: admitted decisions per second, latency, status writes and decisions per
write, and the cores used.

Cells are median [min–max] over the repetitions; ratios are taken within a repetition, then
the median. Any error, a wrong count or a phase that does not converge in time fails the run
(exit status 1) after the tables are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import common
from bench.admission import (
    LoadResult,
    Workload,
    _connect,
    start_bare_webhook,
    stop_spawned,
)
from services.cli.local import LocalMesh

RELATED = "kruise.io/related-pub"
VALIDATE_PODS = "/budget/validate-pods?timeout=10s"
PUB_API = "/apis/policy.kruise.io/v1alpha1"
WRITES = "kruise_mesh_budget_status_writes_total"
PER_WRITE = "kruise_mesh_budget_decisions_per_write"
RECONCILES = "kruise_mesh_budget_reconciles_total"
QUEUE_DEPTH = "kruise_mesh_budget_queue_depth"
CLUSTER_LATENCY = "kruise_mesh_cluster_api_request_duration_seconds"
UPDATE_STATUS = '{method="UpdateStatus"}'
WEBHOOK_DURATION = "kruise_mesh_webhook_duration_seconds"
EVICTION_WEBHOOK = '{service="budget",webhook="validate-pod-eviction"}'
OPEN_NS = "bench-budget-open"
ONE_NS = "bench-budget-one"
MANY_PREFIX = "bench-budget-many-"
STORM_NS = "bench-budget-storm"
APP = "web"
CREATE_CONCURRENCY = 32
P99_TARGET_MS = 5.0


class BenchError(RuntimeError):
    """A phase failed or did not converge: the figures would be wrong, so the run stops."""


@dataclass(frozen=True)
class Plan:
    reps: int
    rate: float  # figure 1: open-loop reviews/s
    duration: float  # figure 1: seconds per run
    one_pods: int  # figure 2a
    budgets: int  # figure 2b
    pods_per_budget: int
    window: float  # figure 2: seconds of load at most
    concurrency: int  # figure 2: reviews in flight
    storm_pods: int
    storm_allowed: int
    budget_replicas: int
    figures: frozenset[int]
    settle_timeout: float  # cap on every wait for the world or a budget to settle


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], *, timeout: float, every: float = 0.25
) -> float:
    """Poll ``check`` until it holds; the seconds it took. ``BenchError`` after ``timeout``."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise BenchError(f"not true after {timeout:.0f} s: {what}")
        await asyncio.sleep(every)


def ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


# ---- the world: Deployment → ReplicaSet → pods, and a budget ----------------------------------
class World:
    """A Deployment ``web`` in ``namespace`` with a ReplicaSet and ``replicas`` pods it controls,
    and (when ``max_unavailable`` is set) a PodUnavailableBudget ``web`` targeting it."""

    def __init__(
        self, api: common.Api, namespace: str, replicas: int, max_unavailable: str | int | None
    ) -> None:
        self.api = api
        self.ns = namespace
        self.replicas = replicas
        self.max_unavailable = max_unavailable
        self.labels = {"app": APP, "bench.kruise.io/budget": namespace}
        self.rs: dict[str, Any] = {}
        self.template: dict[str, Any] = {
            "metadata": {"labels": self.labels},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "registry.example.com/team/web:1.27.3",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "resources": {
                            "limits": {"cpu": "1", "memory": "512Mi"},
                            "requests": {"cpu": "250m", "memory": "256Mi"},
                        },
                    }
                ]
            },
        }

    @property
    def pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods"

    @property
    def budget_path(self) -> str:
        return f"{PUB_API}/namespaces/{self.ns}/podunavailablebudgets/{APP}"

    @property
    def protected(self) -> bool:
        return self.max_unavailable is not None

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        status, raw = await self.api.call("POST", path, body=orjson.dumps(body))
        if status != 201:
            raise BenchError(f"POST {path}: {status} {raw[:300]!r}")
        out: dict[str, Any] = orjson.loads(raw)
        return out

    async def get(self, path: str) -> dict[str, Any]:
        status, raw = await self.api.call("GET", path)
        if status != 200:
            raise BenchError(f"GET {path}: {status} {raw[:300]!r}")
        out: dict[str, Any] = orjson.loads(raw)
        return out

    @staticmethod
    def owner(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    async def create_objects(self) -> None:
        """Namespace, Deployment, ReplicaSet and the budget (before the pods, so every pod gets
        ``kruise.io/related-pub`` at creation)."""
        await self.api.ensure_namespace(self.ns)
        spec = {
            "replicas": self.replicas,
            "selector": {"matchLabels": self.labels},
            "template": self.template,
        }
        deployment = await self.post(
            f"/apis/apps/v1/namespaces/{self.ns}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": APP, "labels": self.labels},
                "spec": spec,
            },
        )
        self.rs = await self.post(
            f"/apis/apps/v1/namespaces/{self.ns}/replicasets",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{APP}-5d8f7c9b6",
                    "labels": self.labels,
                    "ownerReferences": [self.owner(deployment, "Deployment")],
                },
                "spec": spec,
            },
        )
        if self.protected:
            await self.post(
                f"{PUB_API}/namespaces/{self.ns}/podunavailablebudgets",
                {
                    "apiVersion": "policy.kruise.io/v1alpha1",
                    "kind": "PodUnavailableBudget",
                    "metadata": {"name": APP},
                    "spec": {
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                        "maxUnavailable": self.max_unavailable,
                    },
                },
            )

    def pod(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {**self.labels, "pod-template-hash": "5d8f7c9b6"},
                "ownerReferences": [self.owner(self.rs, "ReplicaSet")],
            },
            "spec": self.template["spec"],
        }

    async def pods(self) -> list[dict[str, Any]]:
        """The pods that are not being deleted."""
        items: list[dict[str, Any]] = (await self.get(self.pods_path))["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def settled_pod(self, pod: Mapping[str, Any]) -> bool:
        annotated = (pod["metadata"].get("annotations") or {}).get(RELATED) == APP
        return ready(pod) and (annotated or not self.protected)

    async def settled(self) -> list[dict[str, Any]] | None:
        """The pods, when all ``replicas`` are ready (and related to the budget), else None."""
        pods = await self.pods()
        good = [p for p in pods if self.settled_pod(p)]
        return good if len(good) == self.replicas == len(pods) else None

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = (await self.get(self.budget_path)).get("status") or {}
        return out

    def full(self, status: Mapping[str, Any]) -> bool:
        """The status loop agrees with the allowance: every pod available, nothing recorded."""
        allowed = self.expected_allowed()
        return (
            status.get("totalReplicas") == self.replicas
            and status.get("currentAvailable") == self.replicas
            and status.get("unavailableAllowed") == allowed
            and not status.get("disruptedPods")
            and not status.get("unavailablePods")
        )

    def expected_allowed(self) -> int:
        mu = self.max_unavailable
        if isinstance(mu, str) and mu.endswith("%"):
            return self.replicas * int(mu[:-1]) // 100
        return min(int(mu or 0), self.replicas)


async def create_pods(worlds: Sequence[World], names: Mapping[str, Sequence[str]]) -> None:
    """Create ``names[ns]`` in each world, ``CREATE_CONCURRENCY`` in flight across worlds."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(world: World, name: str) -> None:
        async with gate:
            await world.post(world.pods_path, world.pod(name))

    await asyncio.gather(*(one(w, n) for w in worlds for n in names[w.ns]))


async def build(worlds: Sequence[World], plan: Plan, what: str) -> float:
    """Create the worlds and wait until each is settled (and its budget full); the seconds."""
    started = time.monotonic()
    for world in worlds:
        await world.create_objects()
    await create_pods(worlds, {w.ns: [f"{APP}-{i}" for i in range(w.replicas)] for w in worlds})
    created = time.monotonic() - started
    total = sum(w.replicas for w in worlds)
    progress(f"{what}: {total} pods created in {created:.1f} s; waiting for ready + budget")
    await wait_full(worlds, plan, what)
    took = time.monotonic() - started
    progress(f"{what}: settled after {took:.1f} s ({total / took:.0f} pods/s end to end)")
    return took


async def wait_full(worlds: Sequence[World], plan: Plan, what: str) -> None:
    pending = list(worlds)

    async def check() -> bool:
        nonlocal pending
        still = []
        for world in pending:
            if await world.settled() is None:
                still.append(world)
            elif world.protected and not world.full(await world.status()):
                still.append(world)
        pending = still
        return not pending

    await eventually(f"{what}: pods ready and budgets full", check, timeout=plan.settle_timeout)


# ---- reviews -------------------------------------------------------------------------------------
def delete_review(pod: Mapping[str, Any], *, uid: str) -> bytes:
    """The pod DELETE AdmissionReview kube-apiserver sends for ``pod`` (the pod as stored)."""
    meta = pod["metadata"]
    return orjson.dumps(
        {
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "name": meta["name"],
                "namespace": meta["namespace"],
                "operation": "DELETE",
                "userInfo": {
                    "username": "system:serviceaccount:kube-system:bench",
                    "uid": "8c2d1e0f-41a7-4f0b-a5a2-8f1e2d3c4b5a",
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                },
                "object": None,
                "oldObject": pod,
                "dryRun": False,
                "options": {
                    "kind": "DeleteOptions",
                    "apiVersion": "meta.k8s.io/v1",
                    "propagationPolicy": "Background",
                },
            },
        }
    )


def http_request(port: int, body: bytes) -> bytes:
    return (
        f"POST {VALIDATE_PODS} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"User-Agent: kube-apiserver-admission\r\nAccept: application/json, */*\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def review_uid(i: int) -> str:
    return f"7a0c5b1e-2d3f-4e5a-8b6c-{i:012d}"


async def post_review(port: int, cafile: str, body: bytes) -> dict[str, Any]:
    """Send one review; its ``response`` (HTTP 200 required)."""
    context = ssl.create_default_context(cafile=cafile)
    conn = await _connect(port, context)
    try:
        head, raw = await conn.send(http_request(port, body))
    finally:
        conn.writer.close()
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"webhook answered {head[:40]!r}: {raw[:300]!r}")
    response: dict[str, Any] = orjson.loads(raw).get("response") or {}
    return response


# ---- metrics -------------------------------------------------------------------------------------
Samples = dict[tuple[str, str], float]
_SAMPLE_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.M)


async def scrape(http: aiohttp.ClientSession, ops_ports: Sequence[int]) -> Samples:
    """Every sample of the ``/metrics`` pages, summed over ``ops_ports``."""
    out: Samples = {}
    for port in ops_ports:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            raw = await resp.read()
        for m in _SAMPLE_RE.finditer(raw):
            key = (m.group(1).decode(), (m.group(2) or b"").decode())
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def by_label(before: Samples, after: Samples, metric: str, name: str) -> dict[str, float]:
    """How much each ``name`` label value of counter ``metric`` grew between two scrapes."""
    out: dict[str, float] = {}
    for (metric_name, labels), value in after.items():
        if metric_name != metric:
            continue
        found = re.search(rf'{name}="([^"]*)"', labels)
        grown = value - before.get((metric_name, labels), 0.0)
        if grown:
            key = found.group(1) if found else ""
            out[key] = out.get(key, 0.0) + grown
    return out


def histogram_mean(
    before: Samples, after: Samples, metric: str, labels: str = ""
) -> tuple[float, float]:
    """(observations, mean) of a histogram's series ``labels`` between two scrapes."""
    count, total = (f"{metric}_count", labels), (f"{metric}_sum", labels)
    n = after.get(count, 0.0) - before.get(count, 0.0)
    grown = after.get(total, 0.0) - before.get(total, 0.0)
    return n, (grown / n if n else float("nan"))


def run_load(
    *,
    port: int,
    cafile: str,
    body: str,
    workload: Workload,
    pids: Mapping[str, int],
    others: Mapping[str, int],
) -> tuple[LoadResult, dict[str, float], float]:
    """``bench.admission``'s load generator (its own process) against ``port``, an open loop
    (``workload.rate``) or, with rate 0, a closed loop (``count``, ``time_cap``): the result,
    the CPU seconds of each of ``pids`` over the measured window (after its warm-up) and the
    foreign cores then (the machine's busy time outside ``pids``, ``others``, the generator and
    this process)."""
    args = [
        "load",
        f"--port={port}",
        f"--cafile={cafile}",
        f"--body={body}",
        f"--path={VALIDATE_PODS}",
        f"--connections={workload.connections}",
        f"--rate={workload.rate}",
        f"--duration={workload.duration}",
        f"--count={workload.count}",
        f"--time-cap={workload.time_cap}",
        f"--warmup={max(100, workload.connections * 8)}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.admission", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise BenchError("the load generator did not start")
        window = common.CpuWindow({**others, **pids, "load generator": proc.pid}).start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        window.stop()
        cpu = {name: window.seconds[name] for name in pids}
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    if not line.strip():
        raise BenchError("the load generator ended without a result")
    result: LoadResult = orjson.loads(line)
    return result, cpu, window.foreign / window.wall


# ---- figure 1 ------------------------------------------------------------------------------------
@dataclass
class Fig1Cell:
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    p999: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    gateway_us: list[float] = field(default_factory=list)
    budget_us: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)
    ratio_p50: list[float] = field(default_factory=list)
    ratio_p99: list[float] = field(default_factory=list)
    errors: int = 0
    answered: int = 0


FIG1_VARIANTS = ("bare", "unprotected", "no such budget")


async def figure1(
    mesh: LocalMesh, api: common.Api, plan: Plan, tmp: Path, failures: list[str]
) -> tuple[dict[str, Fig1Cell], int]:
    world = World(api, OPEN_NS, 2, None)
    await build([world], plan, "figure 1 world")
    pod = sorted((await world.pods()), key=lambda p: str(p["metadata"]["name"]))[0]
    missing = orjson.loads(orjson.dumps(pod))
    missing["metadata"].setdefault("annotations", {})[RELATED] = "no-such-budget"
    cafile = str(mesh.workdir / "gateway-certs" / "ca.crt")
    bodies = {
        "unprotected": delete_review(pod, uid=review_uid(1)),
        "no such budget": delete_review(missing, uid=review_uid(2)),
    }
    files: dict[str, str] = {}
    for name, body in bodies.items():
        answer = await post_review(mesh.webhook_port, cafile, body)
        if answer.get("allowed") is not True:
            raise BenchError(f"figure 1 {name}: the gateway did not allow the review: {answer}")
        path = tmp / f"fig1-{name.replace(' ', '-')}.json"
        path.write_bytes(body + b"\n")
        files[name] = str(path)
    files["bare"] = files["unprotected"]

    bare, bare_port = await start_bare_webhook(mesh.workdir / "gateway-certs")
    try:
        servers = {"gateway": mesh.procs["gateway"].pid}
        servers.update({name: mesh.procs[name].pid for name in budget_names(mesh)})
        everyone = {name: proc.pid for name, proc in mesh.procs.items()} | {"bare": bare.pid}
        targets: dict[str, tuple[int, dict[str, int]]] = {
            "bare": (bare_port, {"bare": bare.pid}),
            "unprotected": (mesh.webhook_port, servers),
            "no such budget": (mesh.webhook_port, servers),
        }
        workload = Workload(
            f"open {plan.rate:g}/s", connections=64, rate=plan.rate, duration=plan.duration
        )
        cells = {name: Fig1Cell() for name in FIG1_VARIANTS}
        for rep in range(plan.reps):
            p50: dict[str, float] = {}
            p99: dict[str, float] = {}
            for name in FIG1_VARIANTS:
                port, pids = targets[name]
                load, cpu, foreign = await asyncio.to_thread(
                    run_load,
                    port=port,
                    cafile=cafile,
                    body=files[name],
                    workload=workload,
                    pids=pids,
                    others={k: v for k, v in everyone.items() if k not in pids},
                )
                cells[name].foreign.append(foreign)
                cell = cells[name]
                answered = load["ok"] + load["errors"]
                p50[name] = common.percentile(load["latencies_ms"], 0.50)
                p99[name] = common.percentile(load["latencies_ms"], 0.99)
                cell.p50.append(p50[name])
                cell.p99.append(p99[name])
                cell.p999.append(common.percentile(load["latencies_ms"], 0.999))
                cell.rate.append(answered / load["wall"])
                cell.cpu_us.append(sum(cpu.values()) / max(answered, 1) * 1e6)
                cell.gateway_us.append(cpu.get("gateway", 0.0) / max(answered, 1) * 1e6)
                budget = sum(v for k, v in cpu.items() if k.startswith("budget-"))
                cell.budget_us.append(budget / max(answered, 1) * 1e6)
                cell.errors += load["errors"]
                cell.answered += answered
                if load["errors"]:
                    failures.append(f"figure 1 {name}: {load['errors']} answers not allowed")
            for name in FIG1_VARIANTS:
                cells[name].ratio_p50.append(p50[name] / p50["bare"])
                cells[name].ratio_p99.append(p99[name] / p99["bare"])
            progress(
                f"figure 1 rep {rep + 1}: p99 "
                + ", ".join(f"{n} {p99[n]:.2f} ms" for n in FIG1_VARIANTS)
            )
    finally:
        stop_spawned(bare)
    return cells, len(bodies["unprotected"])


def print_figure1(cells: Mapping[str, Fig1Cell], plan: Plan, review_bytes: int) -> None:
    def row(what: str, get: Callable[[Fig1Cell], list[float]], digits: int) -> list[str]:
        return [what, *(common.spread(get(cells[name]), digits) for name in FIG1_VARIANTS)]

    def split(get: Callable[[Fig1Cell], list[float]]) -> list[str]:
        return [common.spread(get(cells[name]), 0) for name in FIG1_VARIANTS[1:]]

    def target(name: str) -> str:
        if name == "bare":
            return "-"
        return "yes" if common.median(cells[name].p99) <= P99_TARGET_MS else "NO"

    rows = [
        row("p50 ms", lambda c: c.p50, 2),
        row("p99 ms", lambda c: c.p99, 2),
        row("p99.9 ms", lambda c: c.p999, 2),
        [f"p99 ≤ {P99_TARGET_MS:g} ms", *(target(name) for name in FIG1_VARIANTS)],
        row("achieved reviews/s", lambda c: c.rate, 0),
        row("p50 vs bare (same rep)", lambda c: c.ratio_p50, 2),
        row("p99 vs bare (same rep)", lambda c: c.ratio_p99, 2),
        row("CPU µs/review, servers", lambda c: c.cpu_us, 0),
        ["  of which gateway", "-", *split(lambda c: c.gateway_us)],
        ["  of which budget replica(s)", "-", *split(lambda c: c.budget_us)],
        row("foreign cores (other tenants)", lambda c: c.foreign, 2),
        [
            "errors / answered (all reps)",
            *(f"{cells[n].errors} / {cells[n].answered}" for n in FIG1_VARIANTS),
        ],
    ]
    common.print_table(
        f"budget 1 — pod DELETE reviews that need no write: open loop {plan.rate:g}/s × "
        f"{plan.duration:g} s over 64 TLS keep-alive connections (median [min–max] of "
        f"{plan.reps})",
        ["", "bare endpoint", "gateway: unprotected", "gateway: no such budget"],
        rows,
        notes=[
            f"review: {review_bytes:,} B pod DELETE, oldObject = a Running, Ready pod of a "
            "ReplicaSet of a Deployment as the API returns it; latency from the intended send "
            "time; an error = an answer other than 200 with allowed: true",
            "unprotected: the pod has no kruise.io/related-pub; no such budget: it names a "
            "budget that does not exist (the owner is resolved from the replica cache first)",
            "bare endpoint: bench.admission's bare webhook (the gateway's aiohttp server "
            "answering in-process, no hop) with the gateway's certificate, same load generator",
            "CPU = utime+stime of the serving processes over the measured window per review",
        ],
    )


# ---- figure 2 ------------------------------------------------------------------------------------
@dataclass
class Window:
    sent: int = 0
    allowed: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    first_error: str = ""
    first_refusal: str = ""
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)  # allowed answers, seconds
    done: list[float] = field(default_factory=list)  # allowed answers, s since the start
    admitted: dict[str, set[str]] = field(default_factory=dict)  # namespace → pods


async def closed_loop(
    port: int, cafile: str, reviews: Sequence[tuple[str, str, bytes]], plan: Plan
) -> Window:
    """Each review once, ``plan.concurrency`` in flight, for at most ``plan.window`` s."""
    context = ssl.create_default_context(cafile=cafile)
    conns = await asyncio.gather(*(_connect(port, context) for _ in range(plan.concurrency)))
    result = Window()
    next_index = 0
    try:
        # Warm every connection (TLS session, the gateway's stream) with a review of a pod
        # no budget protects: it writes nothing.
        warm = http_request(port, reviews[0][2].replace(RELATED.encode(), b"bench/unrelated"))
        await asyncio.gather(*(c.send(warm) for c in conns))
        started = time.perf_counter()
        deadline = started + plan.window

        async def worker(conn: Any) -> None:
            nonlocal next_index
            while next_index < len(reviews) and time.perf_counter() < deadline:
                namespace, pod, body = reviews[next_index]
                next_index += 1
                result.sent += 1
                sent = time.perf_counter()
                try:
                    head, raw = await conn.send(http_request(port, body))
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise BenchError(f"HTTP {head[9:12].decode()}: {raw[:200]!r}")
                    answer = orjson.loads(raw)["response"]
                except Exception as e:  # counted; the bench fails the run afterwards
                    result.errors += 1
                    result.first_error = result.first_error or repr(e)[:300]
                    continue
                if answer.get("allowed") is True:
                    now = time.perf_counter()
                    result.latencies.append(now - sent)
                    result.done.append(now - started)
                    result.admitted.setdefault(namespace, set()).add(pod)
                    result.allowed += 1
                else:
                    status = answer.get("status") or {}
                    result.refused[int(status.get("code") or 0)] += 1
                    result.first_refusal = result.first_refusal or str(status.get("message"))

        await asyncio.gather(*(worker(c) for c in conns))
        result.wall = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.writer.close()
    return result


@dataclass
class Fig2Cell:
    rate: list[float] = field(default_factory=list)
    first_half: list[float] = field(default_factory=list)
    second_half: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    admitted: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    conflicts: list[float] = field(default_factory=list)
    gave_up: list[float] = field(default_factory=list)
    per_write: list[float] = field(default_factory=list)
    reconciles: list[float] = field(default_factory=list)
    reconcile_writes: list[float] = field(default_factory=list)
    update_calls: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    cores: dict[str, list[float]] = field(default_factory=dict)
    refused: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    verified: list[bool] = field(default_factory=list)
    first_refusal: str = ""


async def figure2(
    mesh: LocalMesh, api: common.Api, plan: Plan, failures: list[str]
) -> tuple[dict[str, Fig2Cell], dict[str, int]]:
    variants: dict[str, list[World]] = {
        "a": [World(api, ONE_NS, plan.one_pods, "100%")],
        "b": [
            World(api, f"{MANY_PREFIX}{i:02d}", plan.pods_per_budget, "100%")
            for i in range(plan.budgets)
        ],
    }
    for key, worlds in variants.items():
        await build(worlds, plan, f"figure 2{key} world")
    cafile = str(mesh.workdir / "gateway-certs" / "ca.crt")
    reviews: dict[str, list[tuple[str, str, bytes]]] = {}
    review_bytes: dict[str, int] = {}
    for key, worlds in variants.items():
        reviews[key] = await delete_reviews(worlds, f"figure 2{key}")
        review_bytes[key] = round(sum(len(r[2]) for r in reviews[key]) / len(reviews[key]))

    cells = {key: Fig2Cell() for key in variants}
    ops = [int(mesh.procs[name].ready["ops_port"]) for name in budget_names(mesh)]
    gw_ops = [int(mesh.procs["gateway"].ready["ops_port"])]
    tracked = {name: proc.pid for name, proc in mesh.procs.items()}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        everything = [w for worlds in variants.values() for w in worlds]
        for rep in range(plan.reps):
            # Every budget full again (the records of the last rep expired) and their
            # NotDeleted Events written, so no expiry falls into a window.
            await wait_full(everything, plan, f"figure 2 before rep {rep + 1}")
            for key, worlds in variants.items():
                await wait_queues(http, ops, plan)
                before, gw_before = await scrape(http, ops), await scrape(http, gw_ops)
                with common.CpuWindow(tracked) as cpu:
                    window = await closed_loop(mesh.webhook_port, cafile, reviews[key], plan)
                after, gw_after = await scrape(http, ops), await scrape(http, gw_ops)
                cell = cells[key]
                ok = await verify(worlds, window, failures, f"figure 2{key} rep {rep + 1}")
                cell.verified.append(ok)
                record_window(cell, window, (before, after, gw_before, gw_after), cpu)
                if window.errors:
                    failures.append(
                        f"figure 2{key} rep {rep + 1}: {window.errors} errors "
                        f"({window.first_error})"
                    )
                progress(
                    f"figure 2{key} rep {rep + 1}: {window.allowed} admitted in "
                    f"{window.wall:.2f} s ({window.allowed / window.wall:.0f}/s), "
                    f"refused {dict(window.refused)}, errors {window.errors}, "
                    f"disruptedPods {'match' if ok else 'MISMATCH'}"
                )
        # Leave the worlds as they were found (the storm must not share the machine with the
        # expiry of these records and their NotDeleted Events).
        await wait_full(everything, plan, "figure 2 after the last rep")
        await wait_queues(http, ops, plan)
    return cells, review_bytes


async def delete_reviews(worlds: Sequence[World], what: str) -> list[tuple[str, str, bytes]]:
    """One pod DELETE review per pod of the worlds, round-robin over them (consecutive
    reviews hit different budgets): (namespace, pod, review body)."""
    per_world = []
    for world in worlds:
        pods = await world.settled()
        if pods is None:
            raise BenchError(f"{what}: {world.ns} is not settled")
        per_world.append(
            [
                (world.ns, str(p["metadata"]["name"]), delete_review(p, uid=review_uid(i)))
                for i, p in enumerate(sorted(pods, key=lambda p: str(p["metadata"]["name"])))
            ]
        )
    return [r for group in zip(*per_world, strict=True) for r in group]


async def wait_queues(http: aiohttp.ClientSession, ops: Sequence[int], plan: Plan) -> None:
    async def drained() -> bool:
        return (await scrape(http, ops)).get((QUEUE_DEPTH, ""), 0.0) == 0.0

    await eventually("budget work queues empty", drained, timeout=plan.settle_timeout, every=0.1)


async def verify(worlds: Sequence[World], window: Window, failures: list[str], what: str) -> bool:
    """The budgets record exactly the pods whose deletion was admitted."""
    ok = True
    for world in worlds:
        status = await world.status()
        recorded = set(status.get("disruptedPods") or {})
        admitted = window.admitted.get(world.ns, set())
        if recorded != admitted:
            ok = False
            failures.append(
                f"{what}: {world.ns} records {len(recorded)} pods, {len(admitted)} admitted "
                f"({len(recorded - admitted)} recorded but not admitted, "
                f"{len(admitted - recorded)} admitted but not recorded)"
            )
        left = status.get("unavailableAllowed")
        if left != world.expected_allowed() - len(admitted):
            ok = False
            failures.append(
                f"{what}: {world.ns} unavailableAllowed {left} after {len(admitted)} admitted "
                f"of {world.expected_allowed()}"
            )
    return ok


def record_window(
    cell: Fig2Cell,
    window: Window,
    scrapes: tuple[Samples, Samples, Samples, Samples],
    cpu: common.CpuWindow,
) -> None:
    """One repetition's figures; ``scrapes`` = budget before/after, gateway before/after."""
    before, after, gw_before, gw_after = scrapes
    writes = by_label(before, after, WRITES, "result")
    _, mean = histogram_mean(before, after, PER_WRITE)
    cell.rate.append(window.allowed / window.wall)
    if len(window.done) >= 4:
        done = sorted(window.done)
        half = len(done) // 2
        cell.first_half.append(half / done[half - 1])
        cell.second_half.append((len(done) - half) / (done[-1] - done[half - 1]))
    cell.p50.append(common.percentile(window.latencies, 0.50) * 1000)
    cell.p99.append(common.percentile(window.latencies, 0.99) * 1000)
    cell.sent.append(window.sent)
    cell.admitted.append(window.allowed)
    cell.wall.append(window.wall)
    cell.written.append(writes.get("written", 0.0))
    cell.conflicts.append(writes.get("conflict", 0.0))
    cell.gave_up.append(writes.get("gave-up", 0.0))
    cell.per_write.append(mean)
    reconciles = by_label(before, after, RECONCILES, "result")
    cell.reconciles.append(sum(reconciles.values()))
    cell.reconcile_writes.append(reconciles.get("written", 0.0))
    calls, seconds = histogram_mean(gw_before, gw_after, CLUSTER_LATENCY, UPDATE_STATUS)
    cell.update_calls.append(calls)
    cell.update_ms.append(seconds * 1000)
    cell.refused.update(window.refused)
    cell.errors += window.errors
    cell.first_refusal = cell.first_refusal or window.first_refusal
    for name, seconds in cores_of(cpu).items():
        cell.cores.setdefault(name, []).append(seconds)


def cores_of(cpu: common.CpuWindow) -> dict[str, float]:
    """Cores used over the window: sandbox, gateway, budget (all replicas), the rest."""
    out: dict[str, float] = {"sandbox": 0.0, "gateway": 0.0, "budget": 0.0, "others": 0.0}
    for name, seconds in cpu.seconds.items():
        if name in ("sandbox", "gateway", "bench"):
            out[name] = out.get(name, 0.0) + seconds
        elif name.startswith("budget-"):
            out["budget"] += seconds
        else:
            out["others"] += seconds
    out["foreign"] = cpu.foreign
    return {name: seconds / cpu.wall for name, seconds in out.items()}


def side_by_side(
    what: str,
    left: Fig2Cell,
    right: Fig2Cell,
    get: Callable[[Fig2Cell], list[float]],
    digits: int,
) -> list[str]:
    """A table row: both cells' spreads, then right/left taken within each repetition."""
    ratios = [y / x for x, y in zip(get(left), get(right), strict=True) if x]
    return [what, common.spread(get(left), digits), common.spread(get(right), digits)] + [
        common.spread(ratios, 2)
    ]


def print_figure2(
    cells: Mapping[str, Fig2Cell], plan: Plan, review_bytes: Mapping[str, int]
) -> None:
    a, b = cells["a"], cells["b"]
    targets = {"a": 300.0, "b": 1000.0}

    def row(what: str, get: Callable[[Fig2Cell], list[float]], digits: int) -> list[str]:
        return side_by_side(what, a, b, get, digits)

    def refused(cell: Fig2Cell) -> str:
        return ", ".join(f"{n}×{code}" for code, n in sorted(cell.refused.items())) or "0"

    def target(key: str) -> str:
        met = common.median(cells[key].rate) >= targets[key]
        return f"≥ {targets[key]:,.0f}/s: {'yes' if met else 'NO'}"

    rows = [
        row("admitted decisions/s", lambda c: c.rate, 0),
        ["target", target("a"), target("b"), ""],
        row("  over the first half of the admissions", lambda c: c.first_half, 0),
        row("  over the second half (bigger disruptedPods)", lambda c: c.second_half, 0),
        row("p50 ms (allowed answers)", lambda c: c.p50, 1),
        row("p99 ms (allowed answers)", lambda c: c.p99, 1),
        row("reviews sent", lambda c: c.sent, 0),
        row("admitted", lambda c: c.admitted, 0),
        row("window s (first send → last answer)", lambda c: c.wall, 2),
        ["refused (all reps)", refused(a), refused(b), ""],
        ["errors (all reps)", str(a.errors), str(b.errors), ""],
        [
            "disruptedPods = admitted pods",
            "yes" if all(a.verified) else "NO",
            "yes" if all(b.verified) else "NO",
            "",
        ],
        row("status writes (admission path)", lambda c: c.written, 0),
        row("  conflicts", lambda c: c.conflicts, 0),
        row("  gave up", lambda c: c.gave_up, 0),
        row("decisions per write (mean)", lambda c: c.per_write, 1),
        row("UpdateStatus calls at the gateway", lambda c: c.update_calls, 0),
        row("  mean ms (gateway → sandbox PATCH)", lambda c: c.update_ms, 1),
        row("status-loop reconciles", lambda c: c.reconciles, 0),
        row("  of which wrote", lambda c: c.reconcile_writes, 0),
    ]
    for name in a.cores:
        cores = [common.spread(c.cores.get(name, []), 2) for c in (a, b)]
        rows.append([f"cores: {name}", *cores, ""])
    common.print_table(
        f"budget 2 — admitted pod DELETEs with a status write: closed loop, {plan.concurrency} "
        f"in flight, ≤ {plan.window:g} s, {plan.budget_replicas} budget replica(s) "
        f"(median [min–max] of {plan.reps})",
        [
            "",
            f"(a) 1 budget × {plan.one_pods} pods",
            f"(b) {plan.budgets} budgets × {plan.pods_per_budget} pods",
            "(b)/(a)",
        ],
        rows,
        notes=[
            f"reviews: (a) {review_bytes['a']:,} B, (b) {review_bytes['b']:,} B on average; one "
            "per distinct Running, Ready pod related to its budget (maxUnavailable 100%); (b) "
            "round-robin over the budgets",
            "status writes / conflicts / gave up: kruise_mesh_budget_status_writes_total of the "
            "admission path; decisions per write: kruise_mesh_budget_decisions_per_write; "
            "UpdateStatus: the gateway's kruise_mesh_cluster_api_request_duration_seconds (the "
            "status loop's writes included); reconciles: kruise_mesh_budget_reconciles_total",
            "cores: utime+stime over the window / its wall time; bench = this process (the "
            "client); foreign = the machine's busy time not in our processes",
            "admitted = reviews sent = pods: every pod was sent before the window ended",
        ]
        + [f"a refusal: {c.first_refusal[:300]}" for c in cells.values() if c.first_refusal],
    )


# ---- figure 4: the status-write linger, on and off, in one run -----------------------------------
LINGER_ENV = "KRUISE_MESH_BUDGET_LINGER_MS"
LINGER_PREFIX = "bench-budget-linger-"
LINGERS_MS = (0, 10)  # off; the default


async def restart_budget_replicas(mesh: LocalMesh, linger_ms: int) -> None:
    """Every budget replica restarted (gracefully) with ``linger_ms``; back once synced."""
    os.environ[LINGER_ENV] = str(linger_ms)  # the replicas inherit the bench's environment
    try:
        for index in range(len(mesh.addresses["budget"])):
            await mesh.restart_replica("budget", index, kill=False)
    finally:
        del os.environ[LINGER_ENV]
    await mesh.wait_synced(timeout=60)


async def figure4(
    mesh: LocalMesh, api: common.Api, plan: Plan, failures: list[str]
) -> dict[int, Fig2Cell]:
    """Figure 2b's load (many budgets, closed loop) with the budget replicas started with
    the linger off and on, alternating within each repetition."""
    worlds = [
        World(api, f"{LINGER_PREFIX}{i:02d}", plan.pods_per_budget, "100%")
        for i in range(plan.budgets)
    ]
    await build(worlds, plan, "figure 4 world")
    reviews = await delete_reviews(worlds, "figure 4")
    cafile = str(mesh.workdir / "gateway-certs" / "ca.crt")
    cells = {ms: Fig2Cell() for ms in LINGERS_MS}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for rep in range(plan.reps):
            order = LINGERS_MS if rep % 2 == 0 else tuple(reversed(LINGERS_MS))
            for linger in order:
                await restart_budget_replicas(mesh, linger)
                await wait_full(worlds, plan, f"figure 4 linger {linger} ms rep {rep + 1}")
                ops = [int(mesh.procs[name].ready["ops_port"]) for name in budget_names(mesh)]
                gw_ops = [int(mesh.procs["gateway"].ready["ops_port"])]
                tracked = {name: proc.pid for name, proc in mesh.procs.items()}
                await wait_queues(http, ops, plan)
                before, gw_before = await scrape(http, ops), await scrape(http, gw_ops)
                with common.CpuWindow(tracked) as cpu:
                    window = await closed_loop(mesh.webhook_port, cafile, reviews, plan)
                after, gw_after = await scrape(http, ops), await scrape(http, gw_ops)
                what = f"figure 4 linger {linger} ms rep {rep + 1}"
                cells[linger].verified.append(await verify(worlds, window, failures, what))
                record_window(cells[linger], window, (before, after, gw_before, gw_after), cpu)
                if window.errors:
                    failures.append(f"{what}: {window.errors} errors ({window.first_error})")
                progress(
                    f"{what}: {window.allowed} admitted in {window.wall:.2f} s "
                    f"({window.allowed / window.wall:.0f}/s)"
                )
        await wait_full(worlds, plan, "figure 4 after the last rep")
    await restart_budget_replicas(mesh, LINGERS_MS[-1])
    return cells


def print_figure4(cells: Mapping[int, Fig2Cell], plan: Plan) -> None:
    off, on = cells[LINGERS_MS[0]], cells[LINGERS_MS[-1]]

    def row(what: str, get: Callable[[Fig2Cell], list[float]], digits: int) -> list[str]:
        return side_by_side(what, off, on, get, digits)

    rows = [
        row("admitted decisions/s", lambda c: c.rate, 0),
        row("p50 ms (allowed answers)", lambda c: c.p50, 1),
        row("p99 ms (allowed answers)", lambda c: c.p99, 1),
        row("status writes (admission path)", lambda c: c.written, 0),
        row("decisions per write (mean)", lambda c: c.per_write, 2),
        row("status-loop reconciles", lambda c: c.reconciles, 0),
        [
            "disruptedPods = admitted pods",
            "yes" if all(off.verified) else "NO",
            "yes" if all(on.verified) else "NO",
            "",
        ],
    ]

    def cores(name: str) -> Callable[[Fig2Cell], list[float]]:
        return lambda cell: cell.cores.get(name, [])

    for name in ("sandbox", "gateway", "budget"):
        rows.append(row(f"cores: {name}", cores(name), 2))
    common.print_table(
        f"budget 4 — the status-write linger, off and on: figure 2b's load ({plan.budgets} "
        f"budgets × {plan.pods_per_budget} pods, {plan.concurrency} in flight, ≤ "
        f"{plan.window:g} s), median [min–max] of {plan.reps}",
        ["", f"linger {LINGERS_MS[0]} ms (off)", f"linger {LINGERS_MS[-1]} ms (default)", "on/off"],
        rows,
        notes=[
            f"the budget replicas are restarted with {LINGER_ENV} before each window; the "
            "order alternates per repetition; ratios are taken within a repetition",
            "linger: a budget whose last write carried fewer than 4 decisions and ended less "
            "than 50 ms ago waits that long for more before its next write",
        ],
    )


# ---- figure 3 ------------------------------------------------------------------------------------
@dataclass
class Storm:
    wall: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    codes: list[Counter[int]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    cores: dict[str, list[float]] = field(default_factory=dict)
    writes: list[float] = field(default_factory=list)
    webhook_calls: list[float] = field(default_factory=list)
    webhook_ms: list[float] = field(default_factory=list)
    first_refusal: str = ""


@dataclass
class Answers:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    codes: Counter[int] = field(default_factory=Counter)  # 0: no answer
    refusal: str = ""
    error: str = ""


async def evict_all(api: common.Api, world: World, pods: Sequence[str]) -> Answers:
    """One eviction per pod, all started at once."""
    answers = Answers()

    async def evict(pod: str) -> None:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": world.ns},
        }
        sent = time.perf_counter()
        try:
            status, raw = await api.call(
                "POST", f"{world.pods_path}/{pod}/eviction", body=orjson.dumps(body)
            )
        except Exception as e:  # counted; the run fails afterwards
            answers.codes[0] += 1
            answers.error = answers.error or f"eviction of {pod}: {e!r}"[:300]
            return
        answers.latencies.append(time.perf_counter() - sent)
        answers.codes[status] += 1
        if status != 201 and not answers.refusal:
            answers.refusal = raw[:300].decode(errors="replace")

    await asyncio.gather(*(evict(p) for p in pods))
    return answers


async def figure3(mesh: LocalMesh, plan: Plan, failures: list[str]) -> Storm:
    ready_line = mesh.procs["sandbox"].ready
    storm = Storm()
    ops = [int(mesh.procs[name].ready["ops_port"]) for name in budget_names(mesh)]
    gw_ops = [int(mesh.procs["gateway"].ready["ops_port"])]
    tracked = {name: proc.pid for name, proc in mesh.procs.items()}
    async with (
        common.Api(ready_line, connections=plan.storm_pods) as api,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        world = World(api, STORM_NS, plan.storm_pods, plan.storm_allowed)
        await build([world], plan, "figure 3 world")
        for rep in range(plan.reps):
            await wait_full([world], plan, f"figure 3 before rep {rep + 1}")
            await wait_queues(http, ops, plan)
            pods = [str(p["metadata"]["name"]) for p in await world.pods()]
            # One keep-alive connection per request, opened before the storm.
            await asyncio.gather(*(api.call("GET", f"{world.pods_path}/{p}") for p in pods))
            before, gw_before = await scrape(http, ops), await scrape(http, gw_ops)
            with common.CpuWindow(tracked) as cpu:
                answers = await evict_all(api, world, pods)
            after, gw_after = await scrape(http, ops), await scrape(http, gw_ops)
            calls, seconds = histogram_mean(gw_before, gw_after, WEBHOOK_DURATION, EVICTION_WEBHOOK)
            storm.webhook_calls.append(calls)
            storm.webhook_ms.append(seconds * 1000)
            codes = answers.codes
            storm.wall.append(cpu.wall)
            storm.p50.append(common.percentile(answers.latencies, 0.50) * 1000)
            storm.p99.append(common.percentile(answers.latencies, 0.99) * 1000)
            storm.max.append(max(answers.latencies, default=math.nan) * 1000)
            storm.codes.append(codes)
            storm.sent.append(len(pods))
            storm.writes.append(by_label(before, after, WRITES, "result").get("written", 0.0))
            storm.first_refusal = storm.first_refusal or answers.refusal
            for name, cores in cores_of(cpu).items():
                storm.cores.setdefault(name, []).append(cores)
            admitted = codes[200] + codes[201]
            refused = codes[429] + codes[403] + codes[409]
            if answers.error:
                failures.append(f"figure 3 rep {rep + 1}: {answers.error}")
            if admitted != plan.storm_allowed or refused != len(pods) - plan.storm_allowed:
                failures.append(
                    f"figure 3 rep {rep + 1}: {admitted} admitted, {refused} refused of "
                    f"{len(pods)} (want {plan.storm_allowed} admitted): {dict(codes)}"
                )
            progress(
                f"figure 3 rep {rep + 1}: {len(pods)} evictions answered in {cpu.wall:.2f} s, "
                f"codes {dict(sorted(codes.items()))}"
            )
            if rep + 1 < plan.reps:
                # Replace the evicted pods; the budget then allows storm_allowed again.
                names = [f"{APP}-r{rep + 1}-{i}" for i in range(admitted)]
                await create_pods([world], {world.ns: names})
    return storm


def print_figure3(storm: Storm, plan: Plan) -> None:
    def per_rep(codes: Sequence[int]) -> str:
        return ", ".join(str(sum(c[code] for code in codes)) for c in storm.codes)

    others = sorted({code for c in storm.codes for code in c} - {200, 201, 403, 409, 429})
    rows = [
        ["all answered, s (first send → last answer)", common.spread(storm.wall, 2)],
        [
            "evictions answered per second",
            common.spread([n / w for n, w in zip(storm.sent, storm.wall, strict=True)], 0),
        ],
        ["p50 ms per request", common.spread(storm.p50, 0)],
        ["p99 ms per request", common.spread(storm.p99, 0)],
        ["max ms per request", common.spread(storm.max, 0)],
        [f"admitted (201), want {plan.storm_allowed}, per rep", per_rep([200, 201])],
        ["refused 429 per rep", per_rep([429])],
        ["refused 403 / 409 per rep", f"{per_rep([403])} / {per_rep([409])}"],
        ["other answers per rep" + (f" ({others})" if others else ""), per_rep(others)],
        ["status writes (admission path)", common.spread(storm.writes, 0)],
        ["eviction reviews answered by the gateway", common.spread(storm.webhook_calls, 0)],
        ["  mean ms at the gateway (arrival → answer)", common.spread(storm.webhook_ms, 1)],
    ]
    for name, values in storm.cores.items():
        rows.append([f"cores: {name}", common.spread(values, 2)])
    notes = [
        "POST pods/<name>/eviction through the sandbox API; its admission calls the gateway's "
        "validate-pod-eviction, which asks the budget replica; the bench's client keeps one "
        "keep-alive connection per request, opened before the storm; latency = send to answer",
        "status writes: kruise_mesh_budget_status_writes_total{result=written} during the storm",
    ]
    if storm.first_refusal:
        notes.append(f"a refusal, as the client sees it: {storm.first_refusal}")
    common.print_table(
        f"budget 3 — the eviction storm: {plan.storm_pods} concurrent evictions, budget allows "
        f"{plan.storm_allowed}, {plan.budget_replicas} budget replica(s) "
        f"(median [min–max] of {plan.reps})",
        ["", "value"],
        rows,
        notes=notes,
    )


# ---- processes -----------------------------------------------------------------------------------
def budget_names(mesh: LocalMesh) -> list[str]:
    return sorted(name for name in mesh.procs if name.startswith("budget-"))


# ---- the run -------------------------------------------------------------------------------------
async def run(plan: Plan, workdir: Path) -> list[str]:
    failures: list[str] = []
    started = time.monotonic()
    replicas = {"budget": plan.budget_replicas, "placement": 1, "rollout": 1}
    # webhook_client_auth off: the bench's clients post reviews themselves, without the
    # sandbox's client certificate (one handshake per kept-alive connection either way).
    async with LocalMesh(
        workdir=workdir,
        replicas=replicas,
        sandbox_args=["--history", "200000"],
        webhook_client_auth=False,
    ) as mesh:
        progress(f"mesh up after {time.monotonic() - started:.1f} s")
        ready_line = mesh.procs["sandbox"].ready
        async with common.Api(ready_line, connections=64) as api:
            if 1 in plan.figures:
                fig1, review_bytes = await figure1(mesh, api, plan, workdir, failures)
                print_figure1(fig1, plan, review_bytes)
            if 2 in plan.figures:
                fig2, sizes = await figure2(mesh, api, plan, failures)
                print_figure2(fig2, plan, sizes)
            if 4 in plan.figures:
                fig4 = await figure4(mesh, api, plan, failures)
                print_figure4(fig4, plan)
        if 3 in plan.figures:
            storm = await figure3(mesh, plan, failures)
            print_figure3(storm, plan)
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)
    return failures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller worlds, one repetition")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--rate", type=float, default=500.0, help="figure 1 reviews/s")
    parser.add_argument("--duration", type=float, help="figure 1 seconds per run")
    parser.add_argument("--one-pods", type=int, help="figure 2a pods of the one budget")
    parser.add_argument("--budgets", type=int, help="figure 2b budgets (namespaces)")
    parser.add_argument("--pods-per-budget", type=int, help="figure 2b pods per budget")
    parser.add_argument("--window", type=float, help="figure 2 seconds of load at most")
    parser.add_argument("--concurrency", type=int, default=64, help="figure 2 in flight")
    parser.add_argument("--storm-pods", type=int, default=1000)
    parser.add_argument("--storm-allowed", type=int, default=10)
    parser.add_argument("--budget-replicas", type=int, default=1)
    parser.add_argument("--figures", default="1,2,3,4", help="which figures, e.g. 2,3")
    args = parser.parse_args(argv)

    quick = args.quick
    plan = Plan(
        reps=args.reps or (1 if quick else 3),
        rate=args.rate,
        duration=args.duration or (2.0 if quick else 5.0),
        one_pods=args.one_pods or (600 if quick else 2000),
        budgets=args.budgets or 20,
        pods_per_budget=args.pods_per_budget or (40 if quick else 300),
        window=args.window or (3.0 if quick else 5.0),
        concurrency=args.concurrency,
        storm_pods=args.storm_pods,
        storm_allowed=args.storm_allowed,
        budget_replicas=args.budget_replicas,
        figures=frozenset(int(f) for f in args.figures.split(",")),
        settle_timeout=120.0,
    )
    if plan.one_pods > 2000 or plan.pods_per_budget > 2000:
        raise SystemExit("more than 2,000 pods per budget: the cap would refuse, not the budget")
    if plan.window > 15:
        raise SystemExit("--window must stay well under the 20 s lifetime of a recorded pod")
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        try:
            failures = asyncio.run(asyncio.wait_for(run(plan, Path(tmp)), timeout=1200))
        except BenchError as e:
            raise SystemExit(f"budget bench failed: {e}") from e
    if failures:
        for failure in failures:
            print(f"FAILED: {failure}", flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
