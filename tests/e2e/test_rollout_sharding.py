"""Rollout replicas come and go while 20 CloneSets scale: no pod is ever created twice.

The issue's acceptance test: "with two rollout replicas, scale the rollout service up and
down and kill a replica while 20 CloneSets scale from 0 to 50 pods and back: a watch on the
pods never sees more than replicas + maxSurge pods of a CloneSet, and the end state is
exact."

Two rollout replicas found from EndpointSlices, as in a cluster; 20 CloneSets (ReCreate,
maxSurge 0), one per namespace so the ring spreads them. One raw watch on every pod, from
before the first scale, keeps per CloneSet the pods that exist and those not terminating.

1. Every CloneSet 0 → 50. While the pods are being created: a third rollout replica joins
   (``add_replica`` publishes its EndpointSlice: namespaces move to it), one of the first
   two is killed (SIGKILL) and its EndpointSlice deleted (its namespaces move to the
   others), then it is restarted and published again (they move back).
2. Every CloneSet 50 → 0 while the third replica is scaled away (EndpointSlice deleted,
   then a graceful stop).
3. Every CloneSet 0 → 50 again; the other original replica is killed and restarted in the
   middle.

Throughout, no CloneSet ever has more than 50 pods (the largest ``replicas`` it is ever
given, maxSurge 0), terminating or not; in each scale-up exactly 50 distinct pods are
created per CloneSet (a pod created twice, by two replicas that both believed they owned
the namespace, would show as a 51st, deleted again later); no pod is created while scaling
down; every phase ends exact: 50 pods per CloneSet and ``status.replicas`` 50, then no pod
at all, then 50 ready pods and ``status.readyReplicas`` 50. (The first scale-up is not
waited on for readiness: the scale-down may start on pods not yet ready, and the kubelet
and KruisePodReady writes for 1000 pods would cost some 20 s more.)

``rollout_handover_s`` is 1 s (the deployment default is 3). What it must cover is a pod
write the old owner sent just before the gateway fenced it: its way to the API server and
its event's way back to the new owner's cache, both on loopback here; 1 s leaves a wide
margin for that on a loaded 2-core machine, while each ring change costs the moved
namespaces only 1 s of progress. ``run`` records what the watch saw rather than asserting,
so the same scenario can be run against ``LocalMesh(rollout_handover_s=0,
rollout_unfenced=True)`` to see what the guards prevent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from services.cli.local import MESH_NAMESPACE, LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors, ring
from tests.e2e.conftest import ensure_namespace, eventually, replica_status

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CLONESETS = 20
PODS = 50
HANDOVER_S = 1.0
APP = "sharded"
NAMESPACES = tuple(f"shard-{i:02d}" for i in range(CLONESETS))
CLONESETS_PATH = "/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets"
SLICES_PATH = f"/apis/discovery.k8s.io/v1/namespaces/{MESH_NAMESPACE}/endpointslices"
SETTLE_S = 60.0  # for each phase's end state after the last churn (2 cores, shared)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("rollout-sharding")
    async with LocalMesh(
        workdir=workdir,
        replicas={"rollout": 2, "budget": 1, "placement": 1},
        discovery=True,
        rollout_handover_s=HANDOVER_S,
    ) as running:
        yield running


# -- the pod watch ------------------------------------------------------------------------


@dataclass
class Pods:
    """One CloneSet's pods as the watch saw them."""

    existing: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)  # existing without a deletionTimestamp
    ready: set[str] = field(default_factory=set)  # existing with condition Ready True
    created: set[str] = field(default_factory=set)  # ADDED in the current phase
    most_existing: int = 0  # over the whole test
    most_live: int = 0


class PodWatch:
    """Every pod a CloneSet controls, from one watch over all namespaces (resumed from the
    last resourceVersion if the stream ends)."""

    def __init__(self, kube: KubeClient, resource_version: str) -> None:
        self.kube = kube
        self.rv = resource_version
        self.clone_sets: dict[str, Pods] = {ns: Pods() for ns in NAMESPACES}
        self.events = 0

    def created(self) -> int:
        return sum(len(p.created) for p in self.clone_sets.values())

    def new_phase(self) -> None:
        for pods in self.clone_sets.values():
            pods.created.clear()

    async def run(self) -> None:
        while True:
            async for line in self.kube.watch_lines(
                "/api/v1/pods",
                query={"resourceVersion": self.rv, "allowWatchBookmarks": "true"},
                read_timeout=30,
            ):
                self.apply(orjson.loads(line))
            await asyncio.sleep(0.1)  # the server ended the stream: resume where it was

    def apply(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            raise AssertionError(f"the pod watch broke: {obj}")
        meta = obj["metadata"]
        self.rv = meta["resourceVersion"]
        if kind == "BOOKMARK":
            return
        owners = [
            o
            for o in meta.get("ownerReferences") or ()
            if o.get("controller") and o["kind"] == "CloneSet"
        ]
        pods = self.clone_sets.get(meta["namespace"])
        if not owners or owners[0]["name"] != APP or pods is None:
            return
        self.events += 1
        name = meta["name"]
        if kind == "DELETED":
            pods.existing.discard(name)
            pods.live.discard(name)
            pods.ready.discard(name)
            return
        if name not in pods.existing:
            pods.created.add(name)  # names are generated: never reused
        pods.existing.add(name)
        if meta.get("deletionTimestamp"):
            pods.live.discard(name)
        else:
            pods.live.add(name)
        if is_ready(obj):
            pods.ready.add(name)
        else:
            pods.ready.discard(name)
        pods.most_existing = max(pods.most_existing, len(pods.existing))
        pods.most_live = max(pods.most_live, len(pods.live))


# -- the scenario -------------------------------------------------------------------------


@dataclass
class Report:
    """What ``run`` saw, per phase: pods created per CloneSet, and the churn steps."""

    created: dict[str, dict[str, int]] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    watch: PodWatch | None = None

    def most(self) -> dict[str, int]:
        assert self.watch is not None
        return {ns: p.most_existing for ns, p in self.watch.clone_sets.items()}


def clone_set(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": APP},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
            "updateStrategy": {"type": "ReCreate", "maxSurge": 0},
        },
    }


async def scale_all(kube: KubeClient, replicas: int) -> None:
    body = orjson.dumps({"spec": {"replicas": replicas}})

    async def one(ns: str) -> None:
        await kube.request(
            "PATCH",
            f"{CLONESETS_PATH.format(ns=ns)}/{APP}",
            body=body,
            content_type="application/merge-patch+json",
        )

    await asyncio.gather(*(one(ns) for ns in NAMESPACES))


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def exact(kube: KubeClient, watch: PodWatch, replicas: int, *, ready: bool) -> bool:
    """Every CloneSet has exactly ``replicas`` pods, none terminating (and all ready, with
    ``ready``), and says so in its status. The watch's view first (cheap), then the API's."""
    for pods in watch.clone_sets.values():
        if pods.existing != pods.live or len(pods.live) != replicas:
            return False
        if ready and not pods.live <= pods.ready:
            return False
    for ns in NAMESPACES:
        cs = await kube.request_json("GET", f"{CLONESETS_PATH.format(ns=ns)}/{APP}")
        st = cs.get("status") or {}
        if (
            st.get("observedGeneration") != cs["metadata"]["generation"]
            or st.get("replicas", 0) != replicas
            or (ready and st.get("readyReplicas", 0) != replicas)
        ):
            return False
    count = dict.fromkeys(NAMESPACES, 0)
    for pod in (await kube.request_json("GET", "/api/v1/pods"))["items"]:
        ns = pod["metadata"]["namespace"]
        if ns not in count:
            continue
        if pod["metadata"].get("deletionTimestamp") or (ready and not is_ready(pod)):
            return False
        count[ns] += 1
    return all(n == replicas for n in count.values())


async def settle(kube: KubeClient, watch: PodWatch, replicas: int, *, ready: bool) -> None:
    what = f"{replicas} {'ready ' if ready else ''}pods per CloneSet"
    deadline = time.monotonic() + SETTLE_S
    while not await exact(kube, watch, replicas, ready=ready):
        if time.monotonic() > deadline:
            counts = {ns: len(p.live) for ns, p in watch.clone_sets.items()}
            raise AssertionError(f"not true after {SETTLE_S}s: {what} (the watch: {counts})")
        await asyncio.sleep(0.3)


async def ring_is(mesh: LocalMesh, replicas: list[str], members: list[str]) -> bool:
    """Every one of ``replicas`` has its snapshot of the ring ``members``."""
    try:
        views = [sorted((await replica_status(mesh, a)).ring_members) for a in replicas]
    except Exception:  # a replica still starting
        return False
    return all(v == sorted(members) for v in views)


async def on_ring(mesh: LocalMesh, replicas: list[str], members: list[str]) -> None:
    try:
        await eventually(
            f"{replicas} on the ring {members}",
            lambda: ring_is(mesh, replicas, members),
            timeout=20,
        )
    except AssertionError as e:
        views = {}
        for address in replicas:
            try:
                views[address] = sorted((await replica_status(mesh, address)).ring_members)
            except Exception as error:
                views[address] = [repr(error)]
        raise AssertionError(f"{e}; the replicas' rings: {views}") from None


async def drop_slice(kube: KubeClient, index: int) -> None:
    """Delete rollout-``index``'s EndpointSlice, as the endpoint controller does when its pod
    dies or is deleted."""
    with contextlib.suppress(errors.NotFound):
        await kube.request("DELETE", f"{SLICES_PATH}/kruise-mesh-rollout-{index}")


async def publish_slice(kube: KubeClient, index: int, address: str) -> None:
    """Publish rollout-``index``'s EndpointSlice again (the endpoint controller, once the
    restarted pod is ready); the other replicas' slices stay as they are."""
    host, port = address.rsplit(":", 1)
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"kruise-mesh-rollout-{index}",
            "labels": {"kubernetes.io/service-name": "kruise-mesh-rollout"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
        "ports": [{"name": "grpc", "port": int(port), "protocol": "TCP"}],
    }
    await kube.request("POST", SLICES_PATH, body=orjson.dumps(body))


def owned(members: list[str], replica: str) -> set[str]:
    hashed = ring.HashRing(members)
    return {ns for ns in NAMESPACES if hashed.owner(ns) == replica}


async def until(what: str, check: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def run(mesh: LocalMesh, kube: KubeClient, report: Report) -> None:
    """The three phases (module docstring); ``report`` gets what the watch saw, as far as
    the run got."""
    started = time.monotonic()

    def step(text: str) -> None:
        line = f"{time.monotonic() - started:5.1f}s {watch.created():4d} created: {text}"
        report.steps.append(line)
        print(line, flush=True)  # a failing run shows how far it got

    for ns in NAMESPACES:
        await ensure_namespace(kube, ns)
        await kube.request_json(
            "POST", CLONESETS_PATH.format(ns=ns), body=orjson.dumps(clone_set(0))
        )
    listed = await kube.request_json("GET", "/api/v1/pods", query={"limit": "1"})
    watch = PodWatch(kube, listed["metadata"]["resourceVersion"])
    report.watch = watch
    watching = asyncio.create_task(watch.run())
    try:
        # 1. 0 → 50 while a replica joins, one of the first two dies and comes back.
        first, second = mesh.addresses["rollout"]
        await scale_all(kube, PODS)
        step("scaled to 50")
        await until("pods being created", lambda: watch.created() >= 40, timeout=20)
        third = await mesh.add_replica("rollout")
        gained = owned([first, second, third], third)
        step(f"rollout-2 added: gains {len(gained)} namespaces")
        await on_ring(mesh, [first, second, third], [first, second, third])
        step("rollout-2 on every ring")
        await mesh.procs["rollout-0"].kill()
        await drop_slice(kube, 0)
        lost = owned([first, second, third], first)
        step(f"rollout-0 killed: {len(lost)} namespaces move")
        await on_ring(mesh, [second, third], [second, third])
        step("survivors alone on the ring")
        await mesh.restart_replica("rollout", 0)
        await publish_slice(kube, 0, first)
        step("rollout-0 restarted and published")
        await on_ring(mesh, [first, second, third], [first, second, third])
        step("rollout-0 back on every ring")
        await settle(kube, watch, PODS, ready=False)
        step("50 pods each")
        report.created["up"] = {ns: len(p.created) for ns, p in watch.clone_sets.items()}
        report.seconds["up"] = time.monotonic() - started
        assert gained and lost, f"the ring moved no namespace: {report.steps}"

        # 2. 50 → 0 while the third replica is scaled away.
        watch.new_phase()
        mark = time.monotonic()
        await scale_all(kube, 0)
        step("scaled to 0")
        await until("pods being deleted", lambda: _going(watch) >= 40, timeout=20)
        await drop_slice(kube, 2)
        await mesh.procs["rollout-2"].stop()
        mesh.addresses["rollout"].remove(third)
        step("rollout-2 scaled away")
        await on_ring(mesh, [first, second], [first, second])
        step("rollout-2 off every ring")
        await settle(kube, watch, 0, ready=False)
        step("no pod left")
        report.created["down"] = {ns: len(p.created) for ns, p in watch.clone_sets.items()}
        report.seconds["down"] = time.monotonic() - mark

        # 3. 0 → 50 again; the other original replica dies and comes back.
        watch.new_phase()
        mark = time.monotonic()
        await scale_all(kube, PODS)
        step("scaled to 50")
        await until("pods being created", lambda: watch.created() >= 200, timeout=20)
        await mesh.procs["rollout-1"].kill()
        await drop_slice(kube, 1)
        step(f"rollout-1 killed: {len(owned([first, second], second))} namespaces move")
        await on_ring(mesh, [first], [first])
        step("rollout-0 alone on the ring")
        await mesh.restart_replica("rollout", 1)
        await publish_slice(kube, 1, second)
        step("rollout-1 restarted and published")
        await on_ring(mesh, [first, second], [first, second])
        step("rollout-1 back on every ring")
        await settle(kube, watch, PODS, ready=True)
        step("50 ready pods each")
        report.created["again"] = {ns: len(p.created) for ns, p in watch.clone_sets.items()}
        report.seconds["again"] = time.monotonic() - mark
    finally:
        if watching.done():
            watching.result()  # a watch that broke fails the test with its error
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


def _going(watch: PodWatch) -> int:
    """Pods deleted or terminating since a scale-down from ``PODS``."""
    return sum(PODS - len(p.live) for p in watch.clone_sets.values())


@pytest.mark.timeout(180)
async def test_rollout_replicas_churning_never_create_a_pod_twice(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    report = Report()
    await run(mesh, kube, report)
    steps = "\n".join(report.steps)
    over = {ns: n for ns, n in report.most().items() if n > PODS}
    assert not over, f"more than {PODS} pods of a CloneSet at once: {over}\n{steps}"
    for phase, want in (("up", PODS), ("down", 0), ("again", PODS)):
        wrong = {ns: n for ns, n in report.created[phase].items() if n != want}
        assert not wrong, f"{phase}: pods created per CloneSet, want {want}: {wrong}\n{steps}"
