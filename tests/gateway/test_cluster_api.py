"""ClusterService over real gRPC (port 0, generated stub) against the sandbox API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import pytest
from prometheus_client import REGISTRY

from kruise.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from services.gateway.cluster_api import (
    SERVICE_NAME,
    ClusterApi,
    add_to_server,
    delete_options,
    event_body,
    patch_body,
    scale_response,
    status_patch,
)
from services.gateway.kube.client import KubeClient
from services.gateway.permissions import Rule
from services.kit import errors
from services.kit.rpc import create_server

if TYPE_CHECKING:
    from kruise.cluster.v1.cluster_pb2_grpc import ClusterServiceAsyncStub as Stub
Ref = cluster_pb2.ObjectRef
Pre = cluster_pb2.Preconditions

CM = Ref(api_version="v1", kind="ConfigMap", namespace="default", name="cm")
CS = Ref(api_version="apps.kruise.io/v1alpha1", kind="CloneSet", namespace="default", name="web")

CLONESET = {
    "apiVersion": "apps.kruise.io/v1alpha1",
    "kind": "CloneSet",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        },
    },
}


def cloneset_status(**fields: object) -> dict[str, object]:
    """A CloneSet status with the fields its CRD requires (the API server checks them)."""
    required = {
        "replicas": 0,
        "readyReplicas": 0,
        "availableReplicas": 0,
        "updatedReplicas": 0,
        "updatedReadyReplicas": 0,
    }
    return {**required, **fields}


# The mechanics under test here are the API's, on ConfigMaps and CloneSets; who may do what
# is tests/gateway/test_cluster_api_permissions.py's subject, so this table allows them all.
MECHANICS = {
    "test": tuple(
        Rule(verb, group, resource, sub)
        for verb, group, resource, sub in (
            *((v, "", "configmaps", "") for v in ("get", "create", "patch", "delete")),
            *((v, "apps.kruise.io", "clonesets", "") for v in ("get", "create", "patch")),
            ("patch", "apps.kruise.io", "clonesets", "status"),
            ("get", "*", "*", "scale"),
            ("create", "", "events", ""),
        )
    )
}


@pytest.fixture
async def stub(kube: KubeClient) -> AsyncIterator[Stub]:
    servicer = ClusterApi(kube, tables=MECHANICS)
    server = await create_server(
        register=[lambda s: add_to_server(s, servicer)], service_names=[SERVICE_NAME], port=0
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield cluster_pb2_grpc.ClusterServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(grace=None)


async def create_cm(stub: Stub, **data: str) -> cluster_pb2.ObjectResponse:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data}
    return await stub.Create(cluster_pb2.CreateRequest(ref=CM, object_json=orjson.dumps(body)))


async def create_cloneset(stub: Stub) -> cluster_pb2.ObjectResponse:
    return await stub.Create(cluster_pb2.CreateRequest(ref=CS, object_json=orjson.dumps(CLONESET)))


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


# -- pure helpers ------------------------------------------------------------------------------

MERGE, JSON, STRATEGIC = (
    cluster_pb2.PATCH_TYPE_MERGE,
    cluster_pb2.PATCH_TYPE_JSON,
    cluster_pb2.PATCH_TYPE_STRATEGIC,
)


@pytest.mark.parametrize(
    ("patch_type", "patch", "pre", "expected"),
    [
        pytest.param(
            MERGE,
            b'{"spec":{"x":1}}',
            Pre(),
            b'{"spec":{"x":1}}',
            id="merge without preconditions goes out unchanged",
        ),
        pytest.param(
            MERGE,
            b'{"spec":{"x":1}}',
            Pre(resource_version="7", uid="u"),
            {"spec": {"x": 1}, "metadata": {"resourceVersion": "7", "uid": "u"}},
            id="merge gets metadata.resourceVersion and uid",
        ),
        pytest.param(
            STRATEGIC,
            b'{"metadata":{"labels":{"a":"b"}}}',
            Pre(resource_version="7"),
            {"metadata": {"labels": {"a": "b"}, "resourceVersion": "7"}},
            id="strategic keeps its own metadata and adds the resourceVersion",
        ),
        pytest.param(
            JSON,
            b'[{"op":"remove","path":"/spec/x"}]',
            Pre(resource_version="7", uid="u"),
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "test", "path": "/metadata/uid", "value": "u"},
                {"op": "remove", "path": "/spec/x"},
            ],
            id="json patch gets test ops prepended",
        ),
    ],
)
def test_patch_body(
    patch_type: cluster_pb2.PatchType.ValueType, patch: bytes, pre: Pre, expected: Any
) -> None:
    body, _ = patch_body(patch_type=patch_type, patch=patch, preconditions=pre)
    if isinstance(expected, bytes):
        assert body == expected
    else:
        assert orjson.loads(body) == expected


@pytest.mark.parametrize(
    ("patch_type", "patch", "message"),
    [
        pytest.param(cluster_pb2.PATCH_TYPE_UNSPECIFIED, b"{}", "type", id="unknown patch type"),
        pytest.param(MERGE, b"{nope", "patch: not valid JSON", id="merge patch that is not JSON"),
        pytest.param(MERGE, b"[]", "patch: must be a JSON object", id="merge patch that is a list"),
        pytest.param(JSON, b"{}", "patch: must be a JSON array", id="json patch that is an object"),
    ],
)
def test_patch_body_rejects(
    patch_type: cluster_pb2.PatchType.ValueType, patch: bytes, message: str
) -> None:
    with pytest.raises(errors.Invalid, match=message):
        patch_body(patch_type=patch_type, patch=patch, preconditions=Pre())


@pytest.mark.parametrize(
    ("pre", "tests"),
    [
        pytest.param(
            Pre(resource_version="5"),
            [{"op": "test", "path": "/metadata/resourceVersion", "value": "5"}],
            id="decided on version 5: the write holds only while it is still 5",
        ),
        pytest.param(
            Pre(resource_version="5", uid="u-1"),
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
                {"op": "test", "path": "/metadata/uid", "value": "u-1"},
            ],
            id="and on that very object, not a namesake re-created since",
        ),
    ],
)
def test_status_patch_replaces_the_whole_status_conditionally(pre, tests) -> None:
    body, content_type = status_patch(status={"y": 2}, preconditions=pre)
    assert content_type == "application/json-patch+json"
    assert orjson.loads(body) == [*tests, {"op": "add", "path": "/status", "value": {"y": 2}}]


def test_delete_options() -> None:
    assert orjson.loads(
        delete_options(preconditions=Pre(uid="u"), grace_period_seconds=0, dry_run=True)
    ) == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "preconditions": {"uid": "u"},
        "gracePeriodSeconds": 0,
        "dryRun": ["All"],
    }


def test_scale_response_of_an_unset_status() -> None:
    assert scale_response({"spec": {"replicas": 2}}) == cluster_pb2.GetScaleResponse(
        spec_replicas=2
    )


def test_event_body() -> None:
    request = cluster_pb2.RecordEventRequest(
        involved=CS,
        involved_uid="u1",
        type="Warning",
        reason="Blocked",
        message="m",
        reporting_component="kruise-mesh-budget",
    )
    event = event_body(request, now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), suffix="ab")
    assert event["metadata"] == {"name": "web.ab", "namespace": "default"}
    assert event["involvedObject"] == {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "name": "web",
        "namespace": "default",
        "uid": "u1",
    }
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2024-05-01T12:00:00Z"
    assert (event["source"], event["count"], event["type"]) == (
        {"component": "kruise-mesh-budget"},
        1,
        "Warning",
    )


# -- over gRPC against the sandbox -------------------------------------------------------------


async def test_create_get_roundtrip(stub: Stub) -> None:
    created = await create_cm(stub, a="1")
    assert created.resource_version and created.uid
    got = await stub.Get(cluster_pb2.GetRequest(ref=CM))
    assert (got.uid, got.resource_version) == (created.uid, created.resource_version)
    assert orjson.loads(got.object_json)["data"] == {"a": "1"}
    code, _ = await code_of(create_cm(stub))
    assert code == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("patch_type", "patch"),
    [
        pytest.param(MERGE, b'{"data":{"a":"2"}}', id="merge"),
        pytest.param(JSON, b'[{"op":"replace","path":"/data/a","value":"2"}]', id="json"),
        pytest.param(STRATEGIC, b'{"data":{"a":"2"}}', id="strategic"),
    ],
)
async def test_patch_with_stale_version_is_aborted_and_fresh_lands(
    stub: Stub, patch_type: cluster_pb2.PatchType.ValueType, patch: bytes
) -> None:
    created = await create_cm(stub, a="1")
    await stub.Patch(
        cluster_pb2.PatchRequest(ref=CM, type=MERGE, patch=b'{"data":{"b":"1"}}')
    )  # someone else writes: created.resource_version is now stale
    stale = cluster_pb2.PatchRequest(
        ref=CM,
        type=patch_type,
        patch=patch,
        preconditions=Pre(resource_version=created.resource_version),
    )
    code, details = await code_of(stub.Patch(stale))
    assert code == grpc.StatusCode.ABORTED, details

    fresh_rv = (await stub.Get(cluster_pb2.GetRequest(ref=CM))).resource_version
    fresh = cluster_pb2.PatchRequest(
        ref=CM,
        type=patch_type,
        patch=patch,
        preconditions=Pre(resource_version=fresh_rv, uid=created.uid),
    )
    landed = await stub.Patch(fresh)
    assert orjson.loads(landed.object_json)["data"] == {"a": "2", "b": "1"}
    assert landed.resource_version != fresh_rv


@pytest.mark.parametrize("patch_type", [MERGE, JSON, STRATEGIC])
async def test_patch_with_wrong_uid_is_aborted(
    stub: Stub, patch_type: cluster_pb2.PatchType.ValueType
) -> None:
    await create_cm(stub, a="1")
    patch = b"[]" if patch_type == JSON else b"{}"
    code, details = await code_of(
        stub.Patch(
            cluster_pb2.PatchRequest(
                ref=CM, type=patch_type, patch=patch, preconditions=Pre(uid="not-the-uid")
            )
        )
    )
    assert code == grpc.StatusCode.ABORTED, details


async def test_patch_status_subresource(stub: Stub) -> None:
    created = await create_cloneset(stub)
    patched = await stub.Patch(
        cluster_pb2.PatchRequest(
            ref=CS,
            type=MERGE,
            subresource="status",
            patch=orjson.dumps({"status": cloneset_status(replicas=2)}),
            preconditions=Pre(resource_version=created.resource_version),
        )
    )
    assert orjson.loads(patched.object_json)["status"]["replicas"] == 2


async def test_update_status(stub: Stub) -> None:
    created = await create_cloneset(stub)
    status = orjson.dumps(
        cloneset_status(replicas=0, labelSelector="app=web", observedGeneration=1)
    )
    code, details = await code_of(
        stub.UpdateStatus(cluster_pb2.UpdateStatusRequest(ref=CS, status_json=status))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "preconditions.resource_version is required" in details

    updated = await stub.UpdateStatus(
        cluster_pb2.UpdateStatusRequest(
            ref=CS,
            status_json=status,
            preconditions=Pre(resource_version=created.resource_version, uid=created.uid),
        )
    )
    obj = orjson.loads(updated.object_json)
    assert obj["status"]["labelSelector"] == "app=web"
    assert obj["spec"]["replicas"] == 3

    # The new status replaces the old one whole: a key the decision left out is gone.
    without = await stub.UpdateStatus(
        cluster_pb2.UpdateStatusRequest(
            ref=CS,
            status_json=orjson.dumps(cloneset_status(replicas=0)),
            preconditions=Pre(resource_version=updated.resource_version),
        )
    )
    assert "labelSelector" not in orjson.loads(without.object_json)["status"]
    updated = without

    for stale in (
        Pre(resource_version=created.resource_version),
        Pre(resource_version=updated.resource_version, uid="other"),
    ):
        code, details = await code_of(
            stub.UpdateStatus(
                cluster_pb2.UpdateStatusRequest(ref=CS, status_json=status, preconditions=stale)
            )
        )
        assert code == grpc.StatusCode.ABORTED, details


async def test_update_status_conflict_injected_by_the_server(stub: Stub, kube: KubeClient) -> None:
    created = await create_cloneset(stub)
    await kube.request(
        "POST",
        "/sandbox/v1/faults",
        body=orjson.dumps(
            {"conflicts": {"resource": "clonesets", "subresource": "status", "count": 1}}
        ),
    )
    request = cluster_pb2.UpdateStatusRequest(
        ref=CS,
        status_json=orjson.dumps(cloneset_status(replicas=1)),
        preconditions=Pre(resource_version=created.resource_version),
    )
    code, _ = await code_of(stub.UpdateStatus(request))
    assert code == grpc.StatusCode.ABORTED
    assert (await stub.UpdateStatus(request)).resource_version


async def test_delete_with_preconditions(stub: Stub) -> None:
    created = await create_cm(stub, a="1")
    code, _ = await code_of(
        stub.Delete(cluster_pb2.DeleteRequest(ref=CM, preconditions=Pre(uid="other")))
    )
    assert code == grpc.StatusCode.ABORTED
    await stub.Delete(
        cluster_pb2.DeleteRequest(
            ref=CM,
            preconditions=Pre(uid=created.uid, resource_version=created.resource_version),
            grace_period_seconds=0,
        )
    )
    code, _ = await code_of(stub.Get(cluster_pb2.GetRequest(ref=CM)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.Delete(cluster_pb2.DeleteRequest(ref=CM)))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_get_scale(stub: Stub) -> None:
    created = await create_cloneset(stub)
    await stub.UpdateStatus(
        cluster_pb2.UpdateStatusRequest(
            ref=CS,
            status_json=orjson.dumps(cloneset_status(replicas=2, labelSelector="app=web")),
            preconditions=Pre(resource_version=created.resource_version),
        )
    )
    scale = await stub.GetScale(cluster_pb2.GetScaleRequest(ref=CS))
    assert (scale.spec_replicas, scale.status_replicas, scale.selector) == (3, 2, "app=web")
    assert scale.resource_version


async def test_get_scale_not_found(stub: Stub) -> None:
    await create_cm(stub)
    code, details = await code_of(stub.GetScale(cluster_pb2.GetScaleRequest(ref=CM)))
    assert code == grpc.StatusCode.NOT_FOUND and "no scale subresource" in details
    missing = Ref(api_version=CS.api_version, kind="CloneSet", namespace="default", name="nope")
    code, details = await code_of(stub.GetScale(cluster_pb2.GetScaleRequest(ref=missing)))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details


async def test_record_event(stub: Stub, kube: KubeClient) -> None:
    created = await create_cloneset(stub)
    await stub.RecordEvent(
        cluster_pb2.RecordEventRequest(
            involved=CS,
            involved_uid=created.uid,
            type="Normal",
            reason="ScaledUp",
            message="3 replicas",
            reporting_component="kruise-mesh-rollout",
        )
    )
    events = await kube.request_json("GET", "/api/v1/namespaces/default/events")
    [event] = events["items"]
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"]["uid"] == created.uid
    assert (event["reason"], event["type"], event["count"]) == ("ScaledUp", "Normal", 1)
    assert event["source"]["component"] == "kruise-mesh-rollout"


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        pytest.param(
            "Get",
            cluster_pb2.GetRequest(ref=Ref(api_version="v1", name="x")),
            "ref.kind",
            id="empty kind",
        ),
        pytest.param(
            "Get",
            cluster_pb2.GetRequest(
                ref=Ref(api_version="v1", kind="Gadget", namespace="default", name="x")
            ),
            "ref.kind: unknown kind",
            id="unknown kind",
        ),
        pytest.param(
            "Get",
            cluster_pb2.GetRequest(ref=Ref(api_version="v1", kind="ConfigMap", name="x")),
            "ref.namespace",
            id="namespaced kind without namespace",
        ),
        pytest.param(
            "Create",
            cluster_pb2.CreateRequest(ref=CM, object_json=b"{oops"),
            "object_json",
            id="create body that is not JSON",
        ),
        pytest.param(
            "Patch",
            cluster_pb2.PatchRequest(ref=CM, patch=b"{}"),
            "type",
            id="unspecified patch type",
        ),
        pytest.param(
            "Patch",
            cluster_pb2.PatchRequest(ref=CM, type=MERGE, patch=b"[1"),
            "patch",
            id="patch that is not JSON",
        ),
        pytest.param(
            "Patch",
            cluster_pb2.PatchRequest(ref=CM, type=MERGE, patch=b"{}", subresource="scale"),
            "subresource",
            id="patch of an unsupported subresource",
        ),
        pytest.param(
            "UpdateStatus",
            cluster_pb2.UpdateStatusRequest(
                ref=CS, status_json=b"[]", preconditions=Pre(resource_version="1")
            ),
            "status_json",
            id="status that is not an object",
        ),
        pytest.param(
            "RecordEvent",
            cluster_pb2.RecordEventRequest(involved=CS, reason="R", type="Odd"),
            "type",
            id="event type neither Normal nor Warning",
        ),
    ],
)
async def test_invalid_arguments(stub: Stub, method: str, request_: Any, field: str) -> None:
    code, details = await code_of(getattr(stub, method)(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details


async def test_json_patch_with_fresh_version_but_wrong_uid_is_aborted(stub: Stub) -> None:
    created = await create_cm(stub, a="1")
    request = cluster_pb2.PatchRequest(
        ref=CM,
        type=JSON,
        patch=b'[{"op":"replace","path":"/data/a","value":"2"}]',
        preconditions=Pre(resource_version=created.resource_version, uid="not-the-uid"),
    )
    code, details = await code_of(stub.Patch(request))
    assert code == grpc.StatusCode.ABORTED and "uid" in details


async def test_calls_are_counted_by_method_and_code(stub: Stub) -> None:
    def count(code: str) -> float:
        labels = {"method": "Get", "code": code}
        return REGISTRY.get_sample_value("kruise_mesh_cluster_api_requests_total", labels) or 0.0

    before_ok, before_missing = count("OK"), count("NOT_FOUND")
    await code_of(stub.Get(cluster_pb2.GetRequest(ref=CM)))
    await create_cm(stub)
    await stub.Get(cluster_pb2.GetRequest(ref=CM))
    assert (count("OK"), count("NOT_FOUND")) == (before_ok + 1, before_missing + 1)
