"""The placement service's admission handlers: convert, delegate to the pure modules, answer.

* ``mutate-pods`` (pod CREATE): a pod of a StatefulSet (or a configured
  StatefulSet-like kind) whose PersistentPodState recorded it gets the recorded
  topology injected (``services.placement.injection``). Skipped, unchanged (SPEC
  1.4): a subresource, an operation other than CREATE, a resource other than pods,
  no controller owner or an unsupported owner kind, no PersistentPodState for the
  owner, no record for the pod, a record without topology labels.
* ``validate-persistentpodstates`` (CREATE/UPDATE): SPEC 1.3 through
  ``services.placement.validation``; refused with HTTP 422 and the field errors.

An unreadable review is refused with 400 and says why; nothing here raises into the
mesh stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import Counter

from kruise.common.v1 import mesh_pb2
from services.kit import admission
from services.kit.admission import Verdict
from services.kit.mesh import Handler
from services.kit.objects import controller_owner
from services.placement import injection, validation

if TYPE_CHECKING:
    from services.placement.controller import PlacementController

PPS = mesh_pb2.KIND_PERSISTENT_POD_STATE

INJECTIONS = Counter(
    "kruise_mesh_placement_injections_total",
    "Pod CREATE reviews answered by placement, by outcome",
    ["outcome"],
)


def decide_injection(
    controller: PlacementController, request: mesh_pb2.AdmissionRequest
) -> tuple[Verdict, str]:
    """The verdict for a pod review and a one-word outcome for the metric."""
    try:
        pod = admission.created_pod(request)
    except admission.BadReview as e:
        return admission.bad_request(str(e)), "bad-review"
    if pod is None:
        return admission.ALLOWED, "skipped"
    metadata = pod.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name = name if isinstance(name, str) and name else request.name
    owner = controller_owner(pod)
    if not name or owner is None:
        return admission.ALLOWED, "not-owned"
    api_version, kind, owner_name = (
        owner.get("apiVersion"),
        owner.get("kind"),
        owner.get("name"),
    )
    if not (isinstance(api_version, str) and isinstance(kind, str) and isinstance(owner_name, str)):
        return admission.ALLOWED, "not-owned"
    if not controller.kinds.accepts(api_version=api_version, kind=kind):
        return admission.ALLOWED, "not-owned"
    pps = controller.pps_for_target(
        request.namespace, api_version=api_version, kind=kind, name=owner_name
    )
    if pps is None:
        return admission.ALLOWED, "no-pps"
    found = injection.build_injection(pps, name)
    if found is None:
        return admission.ALLOWED, "no-record"
    return admission.allow(patch=injection.injection_patch(pod, found)), "injected"


def decide_validation(
    controller: PlacementController, request: mesh_pb2.AdmissionRequest
) -> Verdict:
    if request.operation not in (mesh_pb2.OPERATION_CREATE, mesh_pb2.OPERATION_UPDATE):
        return admission.ALLOWED
    try:
        objects = admission.reviewed_objects(request)
    except admission.BadReview as e:
        return admission.bad_request(str(e))
    if objects.object is None:
        return admission.bad_request("the review carries no PersistentPodState")
    siblings = [
        validation.SiblingRef(
            name=p.meta.name,
            api_version=p.target_ref.api_version,
            kind=p.target_ref.kind,
            target_name=p.target_ref.name,
            deleting=bool(p.meta.deletion_unix_ms),
        )
        for p in controller.cache.items(PPS, request.namespace)
        if p.meta.name != request.name
    ]
    found = validation.validate_persistent_pod_state(
        obj=objects.object,
        old=objects.old_object if request.operation == mesh_pb2.OPERATION_UPDATE else None,
        siblings=siblings,
        statefulset_like=controller.kinds.extra,
    )
    if found:
        return admission.invalid(validation.denial_message(found))
    return admission.ALLOWED


def handlers(controller: PlacementController) -> Mapping[str, Handler]:
    async def mutate_pods(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        verdict, outcome = decide_injection(controller, request)
        INJECTIONS.labels(outcome).inc()
        return admission.to_response(request, verdict)

    async def validate_persistentpodstates(
        request: mesh_pb2.AdmissionRequest,
    ) -> mesh_pb2.AdmissionResponse:
        return admission.to_response(request, decide_validation(controller, request))

    return {
        "mutate-pods": mutate_pods,
        "validate-persistentpodstates": validate_persistentpodstates,
    }
