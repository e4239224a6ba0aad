"""RolloutService on a real rollout replica: reads, CheckBatch, SetPartition, Release, watch.

The replica runs through ``start_service`` on port 0 with the real servicer, status feed and
controller indexes (the controller is built but not started, so it writes nothing of its
own); only the cluster API is faked: ``FakeCluster`` keeps the CloneSet as the API server
would (merge patches, resourceVersion preconditions answering ``Conflict``), records every
write, and sends each written object back through the Sync stream as the gateway's watch
would. Every error is checked for its code and its ErrorInfo reason (grpcio-status).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from kruise.common.v1 import mesh_pb2, views_pb2
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.kit import errors, rich
from services.kit.cluster import Ref, Written
from services.kit.projection import project_clone_set
from services.kit.service import FeatureContext, FeatureServicer, RunningService, ServiceSpec
from services.rollout import api, report
from services.rollout.controller import RolloutController
from services.rollout.feed import StatusFeed
from services.rollout.pods import (
    KRUISE_POD_READY,
    LIFECYCLE_STATE_LABEL,
    PREPARING_UPDATE,
    REVISION_LABEL,
)
from tests.service.conftest import started
from tests.service.test_mesh_service import Gateway

NS = "shop"
ME = "rollout-test"  # the advertised address local_config gives the replica
OLD, NEW = "web-old", "web-new"
WatchType = rollout_pb2.WatchRolloutStatusResponse


def clone_set(
    *,
    name: str = "web",
    replicas: int = 10,
    partition: int | str | None = "100%",
    rv: int = 10,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    updated: int = 0,
    updated_ready: int = 0,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "ReCreate", "maxUnavailable": "20%"}
    if partition is not None:
        strategy["partition"] = partition
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "resourceVersion": str(rv),
            "generation": 2,
            "labels": dict(labels or {"app": name}),
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:2"}]},
            },
            "updateStrategy": strategy,
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": updated,
            "updatedReadyReplicas": updated_ready,
            "expectedUpdatedReplicas": replicas,
            "updateRevision": NEW,
            "currentRevision": OLD,
        },
    }


def pod(name: str, *, revision: str = OLD, owner: str = "web", **labels: str) -> views_pb2.PodView:
    view = views_pb2.PodView(phase="Running")
    view.meta.namespace, view.meta.name, view.meta.uid = NS, name, f"uid-{name}"
    view.meta.labels.update({"app": owner, REVISION_LABEL: revision, **labels})
    view.meta.owner_references.add(
        api_version="apps.kruise.io/v1alpha1",
        kind="CloneSet",
        name=owner,
        uid=f"uid-{owner}",
        controller=True,
    )
    view.conditions.add(type="Ready", status="True")
    return view


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            merge(child, value)
        else:
            target[key] = value


def event(obj: Any, type_: int = mesh_pb2.WatchEvent.TYPE_MODIFIED) -> mesh_pb2.WatchEvent:
    if isinstance(obj, views_pb2.PodView):
        return mesh_pb2.WatchEvent(
            type=type_, kind=mesh_pb2.KIND_POD, object=views_pb2.ObjectView(pod=obj)
        )
    return mesh_pb2.WatchEvent(
        type=type_,
        kind=mesh_pb2.KIND_CLONE_SET,
        object=views_pb2.ObjectView(clone_set=project_clone_set(obj)),
    )


@dataclass
class FakeCluster:
    """CloneSets as the API server keeps them; ``writes`` lists each patch asked for."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, Any, str]] = field(default_factory=list)
    gateway: Gateway | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Written by "someone else" just before the next patch lands (a lost race).
    interleave: list[Mapping[str, Any]] = field(default_factory=list)

    async def emit(self, *events: mesh_pb2.WatchEvent) -> None:
        assert self.gateway is not None
        async with self.lock:
            await self.gateway.send(events=list(events))

    async def change(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Someone else's write: bump the resourceVersion and send the event."""
        obj = self.objects[name]
        merge(obj, patch)
        meta = obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        await self.emit(event(obj))
        return obj

    async def patch(
        self,
        ref: Ref,
        *,
        patch: Any,
        kind: str = "merge",
        resource_version: str = "",
        uid: str = "",
        subresource: str = "",
    ) -> Written:
        if self.interleave:
            await self.change(ref.name, self.interleave.pop(0))
        self.writes.append((ref.name, copy.deepcopy(patch), resource_version))
        obj = self.objects.get(ref.name)
        if obj is None:
            raise errors.NotFound(f"clonesets {ref.name!r} not found")
        meta = obj["metadata"]
        if resource_version and resource_version != meta["resourceVersion"]:
            raise errors.Conflict("the object has been modified; please apply your changes")
        obj = await self.change(ref.name, patch)
        return Written(object=copy.deepcopy(obj), resource_version=meta["resourceVersion"], uid=uid)

    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written:
        raise AssertionError("the API never creates")

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        raise AssertionError("the API never deletes")


class ApiOnly:
    """The rollout feature without its reconcile loop: indexes, feed and API."""

    def __init__(self, context: FeatureContext, cluster: FakeCluster) -> None:
        self.controller = RolloutController(
            cache=context.mesh.cache, cluster=cluster, budget=None, owns=context.mesh.owns
        )  # type: ignore[arg-type]
        self.feed = StatusFeed(
            cache=context.mesh.cache,
            pods_of=self.controller.owned_pods,
            report=report.rollout_status,
            owns=context.mesh.owns,
            wait_indexed=self.controller.shell.wait_indexed,
        )
        self.api = api.RolloutApi(
            mesh=context.mesh,
            pods_of=self.controller.owned_pods,
            wait_indexed=self.controller.shell.wait_indexed,
            cluster=cluster,
            feed=self.feed,
        )
        context.mesh.add_listener(self.controller.on_event)
        context.mesh.add_snapshot_listener(self.controller.on_snapshot)
        context.mesh.add_listener(self.feed.on_event)
        context.mesh.add_snapshot_listener(self.feed.on_snapshot)
        self.handlers: Mapping[str, Any] = {}

    def servicers(self) -> list[FeatureServicer]:
        return [lambda server: api.register(self.api, server)]

    async def start(self) -> None:
        await self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()


@dataclass
class Replica:
    running: RunningService
    channel: grpc.aio.Channel
    cluster: FakeCluster
    stub: rollout_pb2_grpc.RolloutServiceStub

    async def sync(self, *objects: Any, ring: list[str] | None = None) -> None:
        """A snapshot of ``objects`` (CloneSet JSON or pod views)."""
        if self.cluster.gateway is None:
            self.cluster.gateway = Gateway(self.channel)
            await self.cluster.gateway.call.read()
        for obj in objects:
            if isinstance(obj, dict):
                self.cluster.objects[obj["metadata"]["name"]] = obj
        added = [event(o, mesh_pb2.WatchEvent.TYPE_ADDED) for o in objects]
        async with self.cluster.lock:
            await self.cluster.gateway.send(
                snapshot_begin=True, ring_members=ring or [ME], events=added, snapshot_end=True
            )

    def current(self, name: str = "web") -> dict[str, Any]:
        return self.cluster.objects[name]


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    cluster = FakeCluster()
    spec = ServiceSpec(
        name="rollout",
        kinds=[mesh_pb2.KIND_POD, mesh_pb2.KIND_CLONE_SET],
        handlers={},
        feature=lambda context: ApiOnly(context, cluster),
    )
    running = await started(spec)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc.port}")
    yield Replica(running, channel, cluster, rollout_pb2_grpc.RolloutServiceStub(channel))
    await channel.close()
    await running.stop(grace=0)


def ref(name: str = "web", **fields: Any) -> rollout_pb2.WorkloadRef:
    return rollout_pb2.WorkloadRef(namespace=NS, name=name, **fields)


def percent(value: str) -> rollout_pb2.IntOrPercent:
    return rollout_pb2.IntOrPercent(percent=value)


def count(value: int) -> rollout_pb2.IntOrPercent:
    return rollout_pb2.IntOrPercent(count=value)


async def failure(call: Any) -> tuple[grpc.StatusCode, str, list[Any]]:
    """The code, ErrorInfo reason and detail messages of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    found = rich.details_of(rpc_status.from_call(error))  # type: ignore[arg-type]
    details = [*found.fields, *found.preconditions]
    return error.code(), found.info.reason if found.info else "", details


# ---- reads ---------------------------------------------------------------------------------


async def test_status_of_a_partitioned_rollout(replica: Replica):
    held = pod("web-1", revision=NEW, **{LIFECYCLE_STATE_LABEL: PREPARING_UPDATE})
    held.conditions.add(type=KRUISE_POD_READY, status="False")
    await replica.sync(
        clone_set(
            partition="50%",
            updated=5,
            updated_ready=4,
            annotations={report.ROLLOUT_ID_ANNOTATION: "r-7"},
        ),
        pod("web-0", revision=NEW),
        held,
        pod("web-2"),
    )
    answer = await replica.stub.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref()))
    status = answer.status
    assert (status.ref.kind, status.ref.uid) == ("CloneSet", "uid-web")
    assert status.partition.percent == "50%" and status.partition_replicas == 5
    assert status.resource_version == "10" and status.spec_replicas == 10
    assert status.lifecycle.normal == 2 and status.lifecycle.preparing_update == 1
    assert list(status.held_not_ready) == ["web-1"]
    assert status.controlled_by.rollout_id == "r-7"
    assert not status.batch_complete


@pytest.mark.parametrize(
    ("request_ref", "code", "reason", "field_name"),
    [
        pytest.param(
            ref(name="gone"), grpc.StatusCode.NOT_FOUND, "WORKLOAD_NOT_FOUND", "", id="gone"
        ),
        pytest.param(
            rollout_pb2.WorkloadRef(namespace=NS),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "ref.name",
            id="no name",
        ),
        pytest.param(
            rollout_pb2.WorkloadRef(name="web"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "ref.namespace",
            id="no namespace",
        ),
        pytest.param(
            ref(kind="Deployment"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNSUPPORTED_KIND",
            "ref.kind",
            id="unknown kind",
        ),
        pytest.param(
            ref(uid="other"), grpc.StatusCode.FAILED_PRECONDITION, "UID_CHANGED", "", id="re-made"
        ),
    ],
)
async def test_bad_references(replica: Replica, request_ref, code, reason, field_name):
    await replica.sync(clone_set())
    request = rollout_pb2.GetRolloutStatusRequest(ref=request_ref)
    got_code, got_reason, details = await failure(replica.stub.GetRolloutStatus(request))
    assert (got_code, got_reason) == (code, reason)
    if field_name:
        assert details[0].field == field_name


async def test_no_answer_before_the_snapshot_or_for_another_replicas_namespace(replica: Replica):
    request = rollout_pb2.GetRolloutStatusRequest(ref=ref())
    code, reason, _ = await failure(replica.stub.GetRolloutStatus(request))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_SYNCED")
    members = [ME, "rollout-other:1"]
    from services.kit.ring import HashRing

    foreign = next(f"ns-{i}" for i in range(100) if HashRing(members).owner(f"ns-{i}") != ME)
    await replica.sync(clone_set(), ring=members)
    request = rollout_pb2.GetRolloutStatusRequest(
        ref=rollout_pb2.WorkloadRef(namespace=foreign, name="web")
    )
    code, reason, _ = await failure(replica.stub.GetRolloutStatus(request))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_OWNER")


# ---- SetPartition --------------------------------------------------------------------------


async def test_set_partition_lowers_it_with_the_object_it_read_as_precondition(replica: Replica):
    await replica.sync(clone_set())
    answer = await replica.stub.SetPartition(
        rollout_pb2.SetPartitionRequest(
            ref=ref(), partition=percent("50%"), expected_update_revision=NEW, rollout_id="r-1"
        )
    )
    assert answer.applied
    assert answer.status.partition.percent == "50%" and answer.status.partition_replicas == 5
    assert answer.status.controlled_by.rollout_id == "r-1"
    [(name, patch, precondition)] = replica.cluster.writes
    assert (name, precondition) == ("web", "10")
    assert patch["spec"]["updateStrategy"] == {"partition": "50%"}
    assert patch["metadata"]["annotations"][report.ROLLOUT_ID_ANNOTATION] == "r-1"
    # Read your write: the status at the written resourceVersion.
    again = await replica.stub.GetRolloutStatus(
        rollout_pb2.GetRolloutStatusRequest(
            ref=ref(), min_resource_version=answer.status.resource_version
        )
    )
    assert again.status.partition.percent == "50%"


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        pytest.param(
            {"partition": percent("50%"), "expected_update_revision": "web-older"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "UPDATE_REVISION_CHANGED",
            id="stale revision",
        ),
        pytest.param(
            {"partition": percent("50%"), "expected_resource_version": "9"},
            grpc.StatusCode.ABORTED,
            "RESOURCE_VERSION_CHANGED",
            id="stale resourceVersion",
        ),
        pytest.param(
            {"partition": count(10)},
            grpc.StatusCode.FAILED_PRECONDITION,
            "PARTITION_WOULD_RISE",
            id="partition would rise (50% -> 10)",
        ),
        pytest.param(
            {"partition": percent("50%"), "rollout_id": "r-2"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "CONTROLLED_BY_OTHER",
            id="claimed by another rollout id",
        ),
    ],
)
async def test_set_partition_preconditions(replica: Replica, fields, code, reason):
    await replica.sync(
        clone_set(partition="50%", annotations={report.ROLLOUT_ID_ANNOTATION: "r-1"})
    )
    if "rollout_id" not in fields:
        fields = {**fields, "rollout_id": "r-1"}
    request = rollout_pb2.SetPartitionRequest(ref=ref(), **fields)
    got_code, got_reason, details = await failure(replica.stub.SetPartition(request))
    assert (got_code, got_reason) == (code, reason)
    assert replica.cluster.writes == []
    if reason in ("UPDATE_REVISION_CHANGED", "RESOURCE_VERSION_CHANGED"):
        assert details and details[0].subject


async def test_a_rise_is_written_when_allowed(replica: Replica):
    await replica.sync(clone_set(partition=2))
    answer = await replica.stub.SetPartition(
        rollout_pb2.SetPartitionRequest(ref=ref(), partition=percent("100%"), allow_increase=True)
    )
    assert answer.applied and answer.status.partition_replicas == 10


async def test_a_controlled_clone_set_refuses_other_drivers(replica: Replica):
    control = (
        '{"apiVersion":"rollouts.kruise.io/v1beta1","kind":"BatchRelease","name":"br","uid":"u1"}'
    )
    await replica.sync(clone_set(annotations={report.CONTROL_INFO_ANNOTATION: control}))
    request = rollout_pb2.SetPartitionRequest(ref=ref(), partition=percent("50%"))
    code, reason, _ = await failure(replica.stub.SetPartition(request))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTROLLED_BY_OTHER")
    status = await replica.stub.GetRolloutStatus(rollout_pb2.GetRolloutStatusRequest(ref=ref()))
    assert status.status.controlled_by.kruise_rollout.name == "br"


async def test_dry_run_answers_what_would_be_written_and_writes_nothing(replica: Replica):
    await replica.sync(clone_set())
    answer = await replica.stub.SetPartition(
        rollout_pb2.SetPartitionRequest(ref=ref(), partition=count(8), paused=True, dry_run=True)
    )
    assert not answer.applied and answer.patch_json
    assert answer.status.partition.count == 8 and answer.status.paused
    assert replica.cluster.writes == []
    assert replica.current()["spec"]["updateStrategy"]["partition"] == "100%"


async def test_nothing_to_change_writes_nothing(replica: Replica):
    await replica.sync(clone_set(partition="50%"))
    answer = await replica.stub.SetPartition(
        rollout_pb2.SetPartitionRequest(ref=ref(), partition=percent("50%"))
    )
    assert not answer.applied and replica.cluster.writes == []


async def test_a_retried_request_id_answers_applied_again(replica: Replica):
    await replica.sync(clone_set())
    request = rollout_pb2.SetPartitionRequest(
        ref=ref(), partition=percent("80%"), expected_resource_version="10", request_id="req-1"
    )
    first = await replica.stub.SetPartition(request)
    # The answer was lost; the retry carries the same precondition, now stale.
    await replica.stub.GetRolloutStatus(
        rollout_pb2.GetRolloutStatusRequest(
            ref=ref(), min_resource_version=first.status.resource_version
        )
    )
    second = await replica.stub.SetPartition(request)
    assert first.applied and second.applied
    assert len(replica.cluster.writes) == 1


async def test_a_lost_race_is_planned_again_on_the_newer_object(replica: Replica):
    await replica.sync(clone_set())
    replica.cluster.interleave.append({"metadata": {"labels": {"team": "a"}}})
    answer = await replica.stub.SetPartition(
        rollout_pb2.SetPartitionRequest(ref=ref(), partition=percent("50%"))
    )
    assert answer.applied
    assert [rv for _, _, rv in replica.cluster.writes] == ["10", "11"]


async def test_a_lost_race_under_compare_and_set_is_the_callers_aborted(replica: Replica):
    await replica.sync(clone_set())
    replica.cluster.interleave.append({"metadata": {"labels": {"team": "a"}}})
    request = rollout_pb2.SetPartitionRequest(
        ref=ref(), partition=percent("50%"), expected_resource_version="10"
    )
    code, reason, _ = await failure(replica.stub.SetPartition(request))
    assert (code, reason) == (grpc.StatusCode.ABORTED, "RESOURCE_VERSION_CHANGED")


async def test_two_drivers_racing_with_compare_and_set_one_wins(replica: Replica):
    await replica.sync(clone_set())
    requests = [
        rollout_pb2.SetPartitionRequest(
            ref=ref(), partition=percent(p), expected_resource_version="10"
        )
        for p in ("80%", "60%")
    ]
    outcomes = await asyncio.gather(
        *(replica.stub.SetPartition(r) for r in requests), return_exceptions=True
    )
    won = [o for o in outcomes if isinstance(o, rollout_pb2.SetPartitionResponse)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].code() == grpc.StatusCode.ABORTED


@pytest.mark.parametrize(
    ("partition", "field_name"),
    [
        pytest.param(percent("150%"), "partition.percent", id="percent over 100%"),
        pytest.param(percent("50"), "partition.percent", id="percent without %"),
        pytest.param(count(-1), "partition.count", id="negative count"),
        pytest.param(count(11), "partition.count", id="count above replicas"),
        pytest.param(rollout_pb2.IntOrPercent(), "partition", id="neither count nor percent"),
    ],
)
async def test_bad_partitions_are_invalid_naming_the_field(replica: Replica, partition, field_name):
    await replica.sync(clone_set(partition=None))
    request = rollout_pb2.SetPartitionRequest(ref=ref(), partition=partition, allow_increase=True)
    code, _, details = await failure(replica.stub.SetPartition(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details[0].field == field_name


# ---- CheckBatch and Release ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("updated", "updated_ready", "ready"),
    [
        pytest.param(5, 5, True, id="5 of 5 updated and ready"),
        pytest.param(4, 4, False, id="one pod still to update"),
        pytest.param(5, 4, True, id="one unready pod within the 20% threshold"),
        pytest.param(5, 0, False, id="no updated pod ready"),
    ],
)
async def test_check_batch_is_kruise_rollouts_rule(replica: Replica, updated, updated_ready, ready):
    await replica.sync(clone_set(partition="50%", updated=updated, updated_ready=updated_ready))
    answer = await replica.stub.CheckBatch(
        rollout_pb2.CheckBatchRequest(ref=ref(), batch=percent("50%"))
    )
    assert (answer.ready, answer.desired_updated_replicas) == (ready, 5), answer.reason
    assert answer.reason


async def test_release_promotes_and_frees_the_claim(replica: Replica):
    await replica.sync(
        clone_set(partition="50%", annotations={report.ROLLOUT_ID_ANNOTATION: "r-1"})
    )
    other = rollout_pb2.ReleaseRequest(ref=ref(), promote=True, rollout_id="r-2")
    code, reason, _ = await failure(replica.stub.Release(other))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTROLLED_BY_OTHER")
    answer = await replica.stub.Release(
        rollout_pb2.ReleaseRequest(ref=ref(), promote=True, rollout_id="r-1")
    )
    assert answer.applied
    assert not answer.status.HasField("partition") and not answer.status.paused
    assert answer.status.controlled_by.WhichOneof("by") is None


# ---- WatchRolloutStatus --------------------------------------------------------------------


async def next_event(stream: Any) -> rollout_pb2.WatchRolloutStatusResponse:
    return await asyncio.wait_for(stream.read(), timeout=5)  # type: ignore[no-any-return]


async def test_watch_lists_then_follows_then_resumes_where_it_was(replica: Replica):
    await replica.sync(clone_set(), clone_set(name="api", labels={"app": "api", "tier": "x"}))
    stream = replica.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(ref=rollout_pb2.WorkloadRef(namespace=NS))
    )
    first, second, end = [await next_event(stream) for _ in range(3)]
    assert [e.status.ref.name for e in (first, second)] == ["api", "web"]
    assert {first.type, second.type} == {WatchType.TYPE_ADDED}
    assert end.type == WatchType.TYPE_BOOKMARK and end.initial_events_end and end.version

    await replica.cluster.change("web", {"status": {"updatedReplicas": 2}})
    modified = await next_event(stream)
    assert modified.type == WatchType.TYPE_MODIFIED and modified.status.status.updated_replicas == 2
    stream.cancel()

    # Missed while disconnected: a change and a deletion.
    await replica.cluster.change("web", {"status": {"updatedReplicas": 3}})
    api_obj = replica.current("api")
    await replica.cluster.emit(event(api_obj, mesh_pb2.WatchEvent.TYPE_DELETED))
    resumed = replica.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(
            ref=rollout_pb2.WorkloadRef(namespace=NS), resume_version=modified.version
        )
    )
    # Two CloneSets: their changes may come in either order.
    two = [await next_event(resumed), await next_event(resumed)]
    gone, again = sorted(two, key=lambda e: e.status.ref.name)
    assert again.type == WatchType.TYPE_MODIFIED and again.status.status.updated_replicas == 3
    assert gone.type == WatchType.TYPE_DELETED and gone.status.ref.name == "api"
    resumed.cancel()


async def test_a_selector_or_a_name_narrows_the_watch(replica: Replica):
    await replica.sync(clone_set(), clone_set(name="api", labels={"app": "api", "tier": "x"}))
    by_selector = replica.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(
            ref=rollout_pb2.WorkloadRef(namespace=NS), label_selector="tier=x"
        )
    )
    listed = await next_event(by_selector)
    assert listed.status.ref.name == "api"
    assert (await next_event(by_selector)).initial_events_end
    by_selector.cancel()
    by_name = replica.stub.WatchRolloutStatus(rollout_pb2.WatchRolloutStatusRequest(ref=ref()))
    assert (await next_event(by_name)).status.ref.name == "web"
    by_name.cancel()


async def test_a_version_this_replica_did_not_issue_is_expired(replica: Replica):
    await replica.sync(clone_set())
    stream = replica.stub.WatchRolloutStatus(
        rollout_pb2.WatchRolloutStatusRequest(ref=ref(), resume_version="abcdef.3")
    )
    code, reason, _ = await failure(next_event(stream))
    assert (code, reason) == (grpc.StatusCode.ABORTED, "RESOURCE_VERSION_EXPIRED")


async def test_a_namespace_that_moves_away_ends_its_watches_unavailable(replica: Replica):
    await replica.sync(clone_set())
    stream = replica.stub.WatchRolloutStatus(rollout_pb2.WatchRolloutStatusRequest(ref=ref()))
    await next_event(stream)
    await next_event(stream)
    others = ["rollout-a:1", "rollout-b:1"]  # a ring without this replica
    await replica.sync(clone_set(), ring=others)
    code, reason, _ = await failure(next_event(stream))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_OWNER")


@pytest.mark.parametrize(
    ("request_", "field_name"),
    [
        pytest.param(rollout_pb2.WatchRolloutStatusRequest(), "ref.namespace", id="no namespace"),
        pytest.param(
            rollout_pb2.WatchRolloutStatusRequest(
                ref=rollout_pb2.WorkloadRef(namespace=NS), label_selector="a in (b"
            ),
            "label_selector",
            id="malformed selector",
        ),
    ],
)
async def test_bad_watches_are_invalid(replica: Replica, request_, field_name):
    await replica.sync(clone_set())
    code, _, details = await failure(next_event(replica.stub.WatchRolloutStatus(request_)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details[0].field == field_name
