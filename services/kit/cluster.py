"""The services' client of the gateway's cluster API, and the Protocols it satisfies.

Services decide; the gateway writes. Every write names what it was decided on:

    cluster = ClusterClient.connect("127.0.0.1:7000")
    try:
        await cluster.update_status(ref, status={...}, resource_version=seen_rv)
    except errors.Conflict:
        ...  # the object moved on: re-read, re-decide

Reads and conditional writes are retried on UNAVAILABLE by the channel's retry
policy (a conditional write that did land the first time answers ABORTED on the
retry, which is the same outcome as any other lost race). Errors come back as the
``services.kit.errors`` tree. Tests use an in-memory implementation of the same
Protocols instead of a gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc
import orjson

from kruise.cluster.v1 import cluster_pb2, cluster_pb2_grpc
from services.kit import errors
from services.kit.rpc import mesh_channel
from services.kit.tls import MeshTls

SERVICE = "kruise.cluster.v1.ClusterService"
IDEMPOTENT = [(SERVICE, m) for m in ("Get", "GetScale", "UpdateStatus", "Patch", "Delete")]
PatchKind = Literal["merge", "json", "strategic"]
_PATCH_TYPES = {
    "merge": cluster_pb2.PATCH_TYPE_MERGE,
    "json": cluster_pb2.PATCH_TYPE_JSON,
    "strategic": cluster_pb2.PATCH_TYPE_STRATEGIC,
}


@dataclass(frozen=True, slots=True)
class Ref:
    api_version: str
    kind: str
    namespace: str
    name: str

    def proto(self) -> cluster_pb2.ObjectRef:
        return cluster_pb2.ObjectRef(
            api_version=self.api_version, kind=self.kind, namespace=self.namespace, name=self.name
        )


@dataclass(frozen=True, slots=True)
class Written:
    """The object as the API server stored it."""

    object: dict[str, Any]
    resource_version: str
    uid: str


@dataclass(frozen=True, slots=True)
class Scale:
    spec_replicas: int
    selector: str
    uid: str = ""


class ObjectReader(Protocol):
    async def get(self, ref: Ref) -> Written: ...

    async def get_scale(self, ref: Ref) -> Scale: ...


class StatusWriter(Protocol):
    async def update_status(
        self, ref: Ref, *, status: dict[str, Any], resource_version: str, uid: str = ""
    ) -> Written: ...


class ObjectWriter(Protocol):
    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written: ...

    async def patch(
        self,
        ref: Ref,
        *,
        patch: Any,
        kind: PatchKind = "merge",
        resource_version: str = "",
        uid: str = "",
        subresource: str = "",
    ) -> Written: ...

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None: ...


class EventRecorder(Protocol):
    async def record_event(
        self, ref: Ref, *, uid: str, type: str, reason: str, message: str
    ) -> None: ...


def _written(answer: cluster_pb2.ObjectResponse) -> Written:
    return Written(
        object=orjson.loads(answer.object_json) if answer.object_json else {},
        resource_version=answer.resource_version,
        uid=answer.uid,
    )


class ClusterClient:
    """ObjectReader, StatusWriter, ObjectWriter and EventRecorder over the gateway."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        component: str,
        timeout: float = 5.0,
        fence: str = "",
    ):
        self.channel = channel
        self.component = component
        self.timeout = timeout
        self.fence = fence
        self._metadata = (("kruise-mesh-fence", fence),) if fence else None
        self._stub = cluster_pb2_grpc.ClusterServiceStub(channel)

    def fenced(self, identity: str) -> ClusterClient:
        """The same client on the same channel whose writes carry ``identity``
        (``<service>/<replica>``): the gateway refuses them (``FailedPrecondition``) unless
        that replica owns the object's namespace on its ring."""
        return ClusterClient(
            self.channel, component=self.component, timeout=self.timeout, fence=identity
        )

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        component: str,
        timeout: float = 5.0,
        tls: MeshTls | None = None,
    ) -> ClusterClient:
        # Round robin: a headless Service (or an ipv4:a,b target) names every gateway replica.
        channel = mesh_channel(
            target, tls=tls, peer="gateway", idempotent=IDEMPOTENT, round_robin=True
        )
        return cls(channel, component=component, timeout=timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e) from e

    async def get(self, ref: Ref) -> Written:
        return _written(await self._call(self._stub.Get, cluster_pb2.GetRequest(ref=ref.proto())))

    async def get_scale(self, ref: Ref) -> Scale:
        answer = await self._call(self._stub.GetScale, cluster_pb2.GetScaleRequest(ref=ref.proto()))
        return Scale(spec_replicas=answer.spec_replicas, selector=answer.selector, uid=answer.uid)

    async def create(self, ref: Ref, obj: dict[str, Any]) -> Written:
        request = cluster_pb2.CreateRequest(ref=ref.proto(), object_json=orjson.dumps(obj))
        return _written(await self._call(self._stub.Create, request))

    async def patch(
        self,
        ref: Ref,
        *,
        patch: Any,
        kind: PatchKind = "merge",
        resource_version: str = "",
        uid: str = "",
        subresource: str = "",
    ) -> Written:
        request = cluster_pb2.PatchRequest(
            ref=ref.proto(),
            type=_PATCH_TYPES[kind],
            patch=orjson.dumps(patch),
            subresource=subresource,
            preconditions=cluster_pb2.Preconditions(uid=uid, resource_version=resource_version),
        )
        return _written(await self._call(self._stub.Patch, request))

    async def update_status(
        self, ref: Ref, *, status: dict[str, Any], resource_version: str, uid: str = ""
    ) -> Written:
        if not resource_version:
            raise errors.Invalid("update_status needs the resourceVersion the decision saw")
        request = cluster_pb2.UpdateStatusRequest(
            ref=ref.proto(),
            status_json=orjson.dumps(status),
            preconditions=cluster_pb2.Preconditions(uid=uid, resource_version=resource_version),
        )
        return _written(await self._call(self._stub.UpdateStatus, request))

    async def delete(self, ref: Ref, *, resource_version: str = "", uid: str = "") -> None:
        request = cluster_pb2.DeleteRequest(
            ref=ref.proto(),
            preconditions=cluster_pb2.Preconditions(uid=uid, resource_version=resource_version),
        )
        await self._call(self._stub.Delete, request)

    async def record_event(
        self, ref: Ref, *, uid: str, type: str, reason: str, message: str
    ) -> None:
        request = cluster_pb2.RecordEventRequest(
            involved=ref.proto(),
            involved_uid=uid,
            type=type,
            reason=reason,
            message=message,
            reporting_component=f"kruise-mesh-{self.component}",
        )
        await self._call(self._stub.RecordEvent, request)
