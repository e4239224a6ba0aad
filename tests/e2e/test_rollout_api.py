"""The rollout API end to end (issue 9's acceptance): tools drive CloneSet batches.

One mesh for the module: the sandbox and its kubelets, one gateway (its API port is the
one address tools call, ``mesh.api_target``: TLS, each call with a ServiceAccount token minted
for the rollout API's audience, ``mesh.api_channel()``), two rollout replicas. Every gRPC call
goes through the gateway with the raw generated stubs; everything else through the Kubernetes
API.

1. **Kruise Rollout, unchanged.** Kruise Rollout's CloneSet adapter played exactly, through
   the Kubernetes API only (ECOSYSTEM 1.1): Initialize (one merge patch: the control-info
   annotation, ``paused: false``, ``partition: "100%"``), a new template, batches of 20%,
   50% and 100% (one merge patch of the partition each, rendered as a percent, only ever
   lowered), each judged with Kruise Rollout's IsBatchReady on the CloneSet's status, then
   Finalize. A raw pod watch held for the whole test checks on every event that no more
   pods run the new image than the current batch plans. The gRPC API agrees: it names
   Kruise Rollout as the controller, says ``batch_complete`` at each batch end, and refuses
   a gRPC driver (FAILED_PRECONDITION, CONTROLLED_BY_OTHER).
2. **Concurrent drivers.** Two clients race compare-and-set SetPartitions on one CloneSet
   from 100% down to 0: exactly one wins each round, the other gets ABORTED
   RESOURCE_VERSION_CHANGED and reads again; a raw watch of the CloneSet sees the
   partition never rise.
3. **Watch under faults** (slow). 20 CloneSets in five namespaces (spread over both rollout
   replicas), one resuming watcher per namespace, a poller reading every CloneSet every
   ~100 ms; three batches (70%, 30%, 0) driven with SetPartition while a rollout replica is
   killed (SIGKILL) and restarted and the sandbox expires every watch (410, the gateway's
   hub relists). Every state the poller saw is in its watcher's sequence, and every watcher
   ends on the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import pytest
import pytest_asyncio
from grpc_status import rpc_status

from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors, rich
from tests.e2e.conftest import ensure_namespace, eventually, merge_patch, new_image, owner

if TYPE_CHECKING:
    from kruise.rollout.v1.rollout_pb2_grpc import RolloutServiceAsyncStub as Stub

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BASE = "/apis/apps.kruise.io/v1alpha1/namespaces"
CONTROL_INFO = "batchrelease.rollouts.kruise.io/control-info"
V1, V2 = "nginx:1.27", "nginx:1.28"
Status = rollout_pb2.RolloutStatus
Watched = rollout_pb2.WatchRolloutStatusResponse


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    workdir: Path = tmp_path_factory.mktemp("rollout-api")
    async with LocalMesh(
        workdir=workdir, replicas={"rollout": 2, "budget": 1, "placement": 1}
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(mesh: LocalMesh) -> AsyncIterator[Stub]:
    # TLS and a ServiceAccount token minted for the rollout API, as a tool calls the API port
    async with mesh.api_channel() as channel:
        yield rollout_pb2_grpc.RolloutServiceStub(channel)


# -- the Kubernetes side ------------------------------------------------------------------


def clone_set(
    name: str,
    *,
    replicas: int,
    update: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": V1}]},
            },
            "updateStrategy": update,
        },
    }


async def create(kube: KubeClient, namespace: str, body: dict[str, Any]) -> None:
    await kube.request("POST", f"{BASE}/{namespace}/clonesets", body=orjson.dumps(body))


async def get(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return await kube.request_json("GET", f"{BASE}/{namespace}/clonesets/{name}")


async def pods_of(kube: KubeClient, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = await kube.request_json(
        "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": f"app={app}"}
    )
    return list(listed.get("items") or [])


def image(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or ()
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def settled(kube: KubeClient, namespace: str, name: str, *, replicas: int) -> bool:
    """Every pod of the CloneSet ready, and its status says so for this generation."""
    cs = await get(kube, namespace, name)
    st = cs.get("status") or {}
    return (
        st.get("observedGeneration", 0) >= cs["metadata"]["generation"]
        and st.get("replicas") == replicas
        and st.get("readyReplicas") == replicas
        and st.get("updatedReadyReplicas") == replicas
    )


def scaled(value: int | str | None, replicas: int) -> int:
    """An IntOrString partition as a pod count, rounded up (apimachinery's
    GetScaledValueFromIntOrPercent(…, true), as Kruise Rollout reads it); null is 0."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * replicas / 100)


class RawWatch:
    """One Kubernetes watch kept for a whole test: ``apply`` sees every event; a stream the
    server ends resumes from the last resourceVersion, a 410 relists (``apply`` then gets
    ``("RELIST", items)``)."""

    def __init__(self, kube: KubeClient, path: str, apply: Callable[[str, Any], None]) -> None:
        self.kube, self.path, self.apply = kube, path, apply
        self.rv = ""
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._list()
        self.task = asyncio.create_task(self._run())

    async def _list(self) -> None:
        listed = await self.kube.request_json("GET", self.path)
        self.rv = listed["metadata"]["resourceVersion"]
        self.apply("RELIST", listed.get("items") or [])

    async def _run(self) -> None:
        while True:
            try:
                async for line in self.kube.watch_lines(
                    self.path,
                    query={"resourceVersion": self.rv, "allowWatchBookmarks": "true"},
                    read_timeout=30,
                ):
                    event = orjson.loads(line)
                    if event["type"] == "ERROR":
                        raise errors.Conflict(str(event["object"]))
                    self.rv = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.apply(event["type"], event["object"])
            except errors.Conflict:  # 410: relist
                await self._list()

    async def stop(self) -> None:
        assert self.task is not None
        if self.task.done():
            self.task.result()  # a watch that broke fails the test with its error
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# -- the gRPC side ------------------------------------------------------------------------


def ref(namespace: str, name: str) -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(namespace=namespace, name=name)


async def status_of(api: Stub, namespace: str, name: str, *, min_rv: str = "") -> Status:
    answer = await api.GetRolloutStatus(
        rollout_pb2.GetRolloutStatusRequest(ref=ref(namespace, name), min_resource_version=min_rv),
        timeout=10,
    )
    return answer.status


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call ("" without one)."""
    info = rich.error_info(rpc_status.from_call(error))
    return info.reason if info is not None else ""


async def failure(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), reason_of(raised.value)


async def retrying(what: str, call: Callable[[], Awaitable[Any]], *, timeout: float = 30.0) -> Any:
    """``call()`` again while it answers UNAVAILABLE (no replica, not synced, not the owner
    yet): what a tool does across a replica restart."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e.code().name} {e.details()}") from e
        await asyncio.sleep(0.1)


# == 1. Kruise Rollout, unchanged ==========================================================


def kruise_rollout_partition(stable: int, replicas: int, batch: str) -> str:
    """Kruise Rollout's ParseIntegerAsPercentageIfPossible: the stable pods as a percent of
    replicas, truncated, but never a percent that would keep every pod of a batch that is
    not 100% (then "1%"). 8 of 10 → "80%"; 0 → "0%"; 10 of 10 → "100%"."""
    if stable >= replicas:
        return "100%"
    if stable <= 0:
        return "0%"
    percent = f"{stable * 100 // replicas}%"
    if scaled(percent, replicas) <= 0 and batch != "100%":
        return "1%"
    return percent


def is_batch_ready(cs: dict[str, Any], planned: int) -> bool:
    """Kruise Rollout's IsBatchReady for a CloneSet with no failureThreshold set: it falls
    back to the workload's maxUnavailable (CloneSet default 20%), of the updated pods,
    rounded up."""
    st = cs.get("status") or {}
    updated: int = st.get("updatedReplicas", 0)
    updated_ready: int = st.get("updatedReadyReplicas", 0)
    observed: int = st.get("observedGeneration", 0)
    tolerated = scaled("20%", updated)
    return (
        observed >= cs["metadata"]["generation"]
        and updated >= planned
        and updated_ready + tolerated >= planned
        and updated_ready > 0
    )


@dataclass
class ImageGuard:
    """The pods of one CloneSet by image, from a raw watch; on every event no more than
    ``limit`` pods may be on the new image (``over`` records each time there were)."""

    app: str
    limit: int = 0
    pods: dict[str, str] = field(default_factory=dict)  # name → image
    over: list[str] = field(default_factory=list)
    events: int = 0

    def updated(self) -> int:
        return sum(1 for i in self.pods.values() if i == V2)

    def apply(self, kind: str, obj: Any) -> None:
        if kind == "RELIST":
            self.pods = {
                p["metadata"]["name"]: image(p)
                for p in obj
                if p["metadata"].get("labels", {}).get("app") == self.app
            }
        elif obj["metadata"].get("labels", {}).get("app") != self.app:
            return
        elif kind == "DELETED":
            self.pods.pop(obj["metadata"]["name"], None)
        else:
            self.pods[obj["metadata"]["name"]] = image(obj)
        self.events += 1
        if self.updated() > self.limit:
            self.over.append(f"{kind}: {self.updated()} pods on {V2}, batch plans {self.limit}")


async def test_kruise_rollout_drives_batches_through_the_kubernetes_api_unchanged(
    mesh: LocalMesh, kube: KubeClient, api: Stub
) -> None:
    ns, name, replicas = "kruise-rollout", "web", 10
    await ensure_namespace(kube, ns)
    await create(kube, ns, clone_set(name, replicas=replicas, update={"type": "InPlaceIfPossible"}))
    await eventually(
        "10 ready pods", lambda: settled(kube, ns, name, replicas=replicas), timeout=40
    )
    guard = ImageGuard(app=name)
    watch = RawWatch(kube, f"/api/v1/namespaces/{ns}/pods", guard.apply)
    await watch.start()
    try:
        # Initialize: one merge patch.
        control = {
            "apiVersion": "rollouts.kruise.io/v1beta1",
            "kind": "BatchRelease",
            "name": "web-release",
            "uid": "5b4c6f2e-0000-4000-8000-000000000009",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        await merge_patch(
            kube,
            ns,
            name,
            {
                "metadata": {"annotations": {CONTROL_INFO: orjson.dumps(control).decode()}},
                "spec": {"updateStrategy": {"paused": False, "partition": "100%"}},
            },
        )
        held = await merge_patch(kube, ns, name, new_image(V2))
        rv = held["metadata"]["resourceVersion"]

        # The gRPC API names Kruise Rollout, and will not let another driver in.
        status = await status_of(api, ns, name, min_rv=rv)
        assert status.controlled_by.WhichOneof("by") == "kruise_rollout"
        assert status.controlled_by.kruise_rollout.name == "web-release"
        assert status.controlled_by.kruise_rollout.uid == control["uid"]
        code, reason = await failure(
            api.SetPartition(
                rollout_pb2.SetPartitionRequest(
                    ref=ref(ns, name), partition=rollout_pb2.IntOrPercent(count=0)
                ),
                timeout=10,
            )
        )
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTROLLED_BY_OTHER")

        for batch in ("20%", "50%", "100%"):
            cs = await get(kube, ns, name)
            replicas_now = cs["spec"]["replicas"]
            planned = scaled(batch, replicas_now)
            partition = kruise_rollout_partition(replicas_now - planned, replicas_now, batch)
            current = scaled(cs["spec"]["updateStrategy"].get("partition"), replicas_now)
            guard.limit = planned  # before the patch: no event may run ahead of it
            if current > scaled(partition, replicas_now):  # it only ever lowers
                await merge_patch(
                    kube, ns, name, {"spec": {"updateStrategy": {"partition": partition}}}
                )

            async def batch_ready(planned: int = planned) -> bool:
                return is_batch_ready(await get(kube, ns, name), planned)

            await eventually(f"batch {batch} ready", batch_ready, timeout=40)
            cs = await get(kube, ns, name)
            on_v2 = [p for p in await pods_of(kube, ns, name) if image(p) == V2]
            assert len(on_v2) == planned, f"batch {batch}: {len(on_v2)} pods on {V2}"

            async def api_says_done(rv: str = cs["metadata"]["resourceVersion"]) -> bool:
                status = await status_of(api, ns, name, min_rv=rv)
                return status.batch_complete

            await eventually(f"the API says batch {batch} is complete", api_says_done)
            status = await status_of(api, ns, name)
            assert status.controlled_by.WhichOneof("by") == "kruise_rollout"
            assert status.status.updated_replicas == planned
            assert status.partition_replicas == replicas_now - planned

            async def watch_agrees(planned: int = planned) -> bool:
                return guard.updated() == planned

            await eventually(f"the pod watch sees {planned} on {V2} too", watch_agrees)

        # Finalize.
        done = await merge_patch(
            kube,
            ns,
            name,
            {
                "metadata": {"annotations": {CONTROL_INFO: None}},
                "spec": {"updateStrategy": {"partition": None, "paused": False}},
            },
        )
        await eventually(
            "10 pods on v2, all ready", lambda: settled(kube, ns, name, replicas=replicas)
        )
        pods = await pods_of(kube, ns, name)
        assert sorted(image(p) for p in pods) == [V2] * replicas
        assert all(is_ready(p) for p in pods)
        status = await status_of(api, ns, name, min_rv=done["metadata"]["resourceVersion"])
        assert status.controlled_by.WhichOneof("by") is None
        # null is defaulted to 0 again (Kruise v1.2's webhook sets it).
        assert status.partition_replicas == 0
        assert status.rollout_complete
    finally:
        await watch.stop()
    assert not guard.over, f"more pods updated than planned: {guard.over}"
    assert guard.events > replicas  # the watch saw the rollout


# == 2. Concurrent drivers =================================================================


@dataclass
class Attempt:
    """One driver's try in a round: the version it read and what came of it."""

    driver: str
    read_rv: str
    read_partition: int
    wanted: int = -1
    outcome: str = ""  # "won", "aborted" or "stopped"
    after: Status | None = None  # the fresh read after an ABORTED


async def attempt(stub: Stub, driver: str, step: int, ns: str, name: str) -> Attempt:
    """Read, pick the next partition (``step`` lower), compare-and-set it; after ABORTED,
    read again (the caller decides from that read whether to retry or stop)."""
    status = await status_of(stub, ns, name)
    tried = Attempt(driver, status.resource_version, status.partition_replicas)
    if status.partition_replicas == 0:
        tried.outcome = "stopped"
        return tried
    tried.wanted = max(0, status.partition_replicas - step)
    request = rollout_pb2.SetPartitionRequest(
        ref=ref(ns, name),
        partition=rollout_pb2.IntOrPercent(count=tried.wanted),
        expected_resource_version=status.resource_version,
        expected_update_revision=status.status.update_revision,
    )
    try:
        await stub.SetPartition(request, timeout=10)
        tried.outcome = "won"
    except grpc.aio.AioRpcError as e:
        assert (e.code(), reason_of(e)) == (
            grpc.StatusCode.ABORTED,
            "RESOURCE_VERSION_CHANGED",
        ), f"{driver}: {e.code().name} {e.details()}"
        tried.outcome = "aborted"
        tried.after = await status_of(stub, ns, name)
    return tried


async def test_concurrent_drivers_compare_and_set_one_wins_each_round(
    mesh: LocalMesh, kube: KubeClient
) -> None:
    ns, name, replicas = "rollout-race", "race", 6
    await ensure_namespace(kube, ns)
    update = {"type": "InPlaceIfPossible", "partition": "100%", "maxUnavailable": "50%"}
    await create(kube, ns, clone_set(name, replicas=replicas, update=update))
    await eventually("6 ready pods", lambda: settled(kube, ns, name, replicas=replicas), timeout=40)
    await merge_patch(kube, ns, name, new_image(V2))

    partitions: list[int] = []

    def seen(kind: str, obj: Any) -> None:
        items = obj if kind == "RELIST" else [obj]
        for cs in items:
            if cs["metadata"]["name"] == name and kind != "DELETED":
                spec = cs["spec"]
                partitions.append(scaled(spec["updateStrategy"].get("partition"), replicas))

    watch = RawWatch(kube, f"{BASE}/{ns}/clonesets", seen)
    await watch.start()
    rounds: list[tuple[Attempt, Attempt]] = []
    try:
        async with (
            mesh.api_channel() as one,
            mesh.api_channel() as two,
        ):
            a = rollout_pb2_grpc.RolloutServiceStub(one)
            b = rollout_pb2_grpc.RolloutServiceStub(two)
            while True:
                await quiet(a, ns, name)
                pair = await asyncio.gather(
                    attempt(a, "a", 1, ns, name), attempt(b, "b", 2, ns, name)
                )
                rounds.append(pair)
                if all(t.outcome == "stopped" for t in pair):
                    break
                assert len(rounds) <= replicas + 2, f"no end to the race: {rounds}"
    finally:
        await watch.stop()

    raced = [r for r in rounds if not all(t.outcome == "stopped" for t in r)]
    assert len(raced) >= 3, f"too few rounds to call it a race: {rounds}"
    for first, second in raced:
        assert first.read_rv == second.read_rv, f"the drivers read different versions: {rounds}"
        outcomes = sorted((first.outcome, second.outcome))
        assert outcomes == ["aborted", "won"], f"not exactly one winner: {first} {second}"
        winner, loser = (first, second) if first.outcome == "won" else (second, first)
        # The loser's fresh read shows the winner's write: it retries from there (or stops
        # at 0), it does not apply its stale plan.
        assert loser.after is not None
        assert loser.after.resource_version != loser.read_rv
        assert loser.after.partition_replicas == winner.wanted
    winners = {w.driver for r in raced for w in r if w.outcome == "won"}
    assert partitions[-1] == 0
    rises = [(x, y) for x, y in zip(partitions, partitions[1:], strict=False) if y > x]
    assert not rises, f"the partition rose: {partitions}"
    assert winners  # at least one driver won rounds (both usually do)


async def quiet(stub: Stub, ns: str, name: str, *, timeout: float = 40.0) -> None:
    """Until the CloneSet's batch is complete and its resourceVersion holds still for
    0.3 s: the controller has nothing more to write, so both drivers read the same version."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        status = await status_of(stub, ns, name)
        if status.batch_complete and status.resource_version == last:
            return
        last = status.resource_version if status.batch_complete else ""
        if time.monotonic() > deadline:
            raise AssertionError(f"{ns}/{name} not quiet after {timeout}s: {status.summary}")
        await asyncio.sleep(0.3)


# == 3. Watch under faults =================================================================

FAULT_NAMESPACES = 5
PER_NAMESPACE = 4
FAULT_REPLICAS = 4
GROUP = "faults"
Key = tuple[int, int, int, str, bool]


def key(status: Status) -> Key:
    return (
        status.partition_replicas,
        status.status.updated_replicas,
        status.status.updated_ready_replicas,
        status.status.update_revision,
        status.paused,
    )


@dataclass
class Watcher:
    """One tool watching a namespace through the gateway, resuming as the API says: on
    UNAVAILABLE or a stream that ends, again from the last version; on ABORTED
    RESOURCE_VERSION_EXPIRED, again without a version, the listing up to
    ``initial_events_end`` being the whole set."""

    stub: Stub
    namespace: str
    seen: dict[str, list[Key]] = field(default_factory=dict)  # CloneSet → its states
    last: dict[str, Status] = field(default_factory=dict)
    version: str = ""
    resumes: int = 0
    relists: int = 0

    async def run(self) -> None:
        while True:
            call = self.stub.WatchRolloutStatus(
                rollout_pb2.WatchRolloutStatusRequest(
                    ref=rollout_pb2.WorkloadRef(namespace=self.namespace),
                    label_selector=f"group={GROUP}",
                    resume_version=self.version,
                    bookmark_seconds=1,
                )
            )
            listing: set[str] | None = None if self.version else set()
            try:
                async for event in call:
                    listing = self.apply(event, listing)
                self.resumes += 1  # a stream that ended: resume
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self.resumes += 1
                elif (e.code(), reason_of(e)) == (
                    grpc.StatusCode.ABORTED,
                    "RESOURCE_VERSION_EXPIRED",
                ):
                    self.relists += 1
                    self.version = ""
                else:
                    raise
            await asyncio.sleep(0.02)

    def apply(self, event: Watched, listing: set[str] | None) -> set[str] | None:
        if event.type == Watched.TYPE_BOOKMARK:
            self.version = event.version
            if event.initial_events_end and listing is not None:
                for gone in set(self.last) - listing:  # deleted while we were away
                    del self.last[gone]
                return None
            return listing
        name = event.status.ref.name
        if event.version:
            self.version = event.version
        if event.type == Watched.TYPE_DELETED:
            self.last.pop(name, None)
            return listing
        if listing is not None:
            listing.add(name)
        self.last[name] = event.status
        self.seen.setdefault(name, []).append(key(event.status))
        return listing


@dataclass
class Poller:
    """GetRolloutStatus of every CloneSet every ~100 ms: the distinct states it read."""

    stub: Stub
    targets: list[tuple[str, str]]
    seen: dict[tuple[str, str], set[Key]] = field(default_factory=dict)
    reads: int = 0

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self.one(ns, name) for ns, name in self.targets))
            await asyncio.sleep(0.1)

    async def one(self, ns: str, name: str) -> None:
        try:
            status = await status_of(self.stub, ns, name)
        except grpc.aio.AioRpcError:
            return  # no owner at the moment: nothing seen
        self.reads += 1
        self.seen.setdefault((ns, name), set()).add(key(status))


def spread_namespaces(mesh: LocalMesh, count: int) -> list[str]:
    """``count`` namespace names the ring spreads over every rollout replica."""
    by_owner: dict[str, list[str]] = {}
    for i in range(200):
        candidate = f"faults-{i}"
        by_owner.setdefault(owner(mesh, "rollout", candidate), []).append(candidate)
    assert len(by_owner) == len(mesh.addresses["rollout"])
    picked: list[str] = []
    while len(picked) < count:
        for names in by_owner.values():
            if names and len(picked) < count:
                picked.append(names.pop(0))
    return sorted(picked)


async def set_partition_all(
    stub: Stub,
    revisions: dict[tuple[str, str], str],
    partition: str,
) -> None:
    """SetPartition on every CloneSet, preconditioned on the revision planned for."""

    async def one(ns: str, name: str) -> None:
        request = rollout_pb2.SetPartitionRequest(
            ref=ref(ns, name),
            partition=rollout_pb2.IntOrPercent(percent=partition),
            expected_update_revision=revisions[(ns, name)],
        )
        await retrying(
            f"SetPartition {ns}/{name} {partition}",
            lambda: stub.SetPartition(request, timeout=10),
        )

    await asyncio.gather(*(one(ns, name) for ns, name in revisions))


async def planned_revision(stub: Stub, ns: str, name: str, written: dict[str, Any]) -> str:
    """The update revision of the template just ``written``: once the controller has seen
    that generation."""
    generation = written["metadata"]["generation"]
    deadline = time.monotonic() + 20
    while True:
        status = await status_of(stub, ns, name, min_rv=written["metadata"]["resourceVersion"])
        if status.status.observed_generation >= generation:
            return status.status.update_revision
        if time.monotonic() > deadline:
            raise AssertionError(f"{ns}/{name}: generation {generation} never observed")
        await asyncio.sleep(0.1)


async def batch_done(stub: Stub, targets: list[tuple[str, str]], kept: int) -> bool:
    for ns, name in targets:
        try:
            status = await status_of(stub, ns, name)
        except grpc.aio.AioRpcError:
            return False
        if not (status.batch_complete and status.partition_replicas == kept):
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_watchers_see_every_polled_state_across_a_replica_kill_and_a_410(
    mesh: LocalMesh, kube: KubeClient, api: Stub
) -> None:
    namespaces = spread_namespaces(mesh, FAULT_NAMESPACES)
    targets = [(ns, f"app-{i}") for ns in namespaces for i in range(PER_NAMESPACE)]
    update = {"type": "InPlaceIfPossible", "partition": "100%", "maxUnavailable": "50%"}
    for ns in namespaces:
        await ensure_namespace(kube, ns)
    await asyncio.gather(
        *(
            create(
                kube,
                ns,
                clone_set(name, replicas=FAULT_REPLICAS, update=update, labels={"group": GROUP}),
            )
            for ns, name in targets
        )
    )

    async def all_settled() -> bool:
        done = await asyncio.gather(
            *(settled(kube, ns, name, replicas=FAULT_REPLICAS) for ns, name in targets)
        )
        return all(done)

    await eventually("80 ready pods", all_settled, timeout=60)

    watchers = [Watcher(api, ns) for ns in namespaces]
    poller = Poller(api, targets)
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    tasks.append(asyncio.create_task(poller.run()))
    steps: list[str] = []
    started = time.monotonic()

    def step(text: str) -> None:
        steps.append(f"{time.monotonic() - started:5.1f}s {text}")

    victim = mesh.addresses["rollout"].index(owner(mesh, "rollout", namespaces[0]))
    try:
        await eventually(
            "every watcher listed its CloneSets",
            lambda: _true(all(len(w.last) == PER_NAMESPACE for w in watchers)),
        )
        written = await asyncio.gather(
            *(merge_patch(kube, ns, name, new_image(V2)) for ns, name in targets)
        )
        planned = await asyncio.gather(
            *(
                planned_revision(api, ns, name, w)
                for (ns, name), w in zip(targets, written, strict=True)
            )
        )
        revisions = dict(zip(targets, planned, strict=True))
        step("new template")
        for batch, (partition, kept) in enumerate((("70%", 3), ("30%", 2), ("0%", 0))):
            await set_partition_all(api, revisions, partition)
            step(f"partition {partition}")
            if batch == 1:  # pods are updating: kill the replica, then expire every watch
                await asyncio.sleep(0.3)
                await mesh.restart_replica("rollout", victim, kill=True)
                step(f"rollout-{victim} killed and restarted")
                await kube.request("POST", "/sandbox/v1/expire-history")
                step("history expired (410)")
            if batch == 2:
                await asyncio.sleep(0.3)
                await kube.request("POST", "/sandbox/v1/expire-history")
                step("history expired (410)")

            async def done(kept: int = kept) -> bool:
                return await batch_done(api, targets, kept)

            await eventually(f"batch {partition} complete", done, timeout=40)
            step(f"batch {partition} complete")

        finals = {(ns, name): await status_of(api, ns, name) for ns, name in targets}
        assert all(s.rollout_complete for s in finals.values())

        def watchers_final() -> bool:
            return all(
                w.namespace != ns
                or (name in w.last and key(w.last[name]) == key(finals[(ns, name)]))
                for w in watchers
                for ns, name in targets
            )

        await eventually("every watcher ends on the final state", lambda: _true(watchers_final()))
    finally:
        for task in tasks:
            if task.done():
                task.result()
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    trace = "\n".join(steps)
    assert sum(w.relists for w in watchers) > 0, f"no watcher had to relist\n{trace}"
    by_namespace = {w.namespace: w for w in watchers}
    for (ns, name), polled in poller.seen.items():
        watched = by_namespace[ns].seen.get(name, [])
        missed = polled - set(watched)
        assert not missed, (
            f"{ns}/{name}: the poller saw states its watcher never did: {sorted(missed)}\n"
            f"watcher: {watched}\n{trace}"
        )
        assert finals[(ns, name)].rollout_complete
        assert by_namespace[ns].last[name].rollout_complete
    assert poller.reads > 10 * len(targets)


async def _true(value: bool) -> bool:
    return value
