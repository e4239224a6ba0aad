"""The rollout service's admission handlers: convert, delegate to the pure modules, answer.

* ``mutate-pods`` (pod CREATE): a pod whose controller owner is an ``apps.kruise.io``
  workload gets the ``KruisePodReady`` readiness gate (``readiness.inject_readiness_gate``,
  SPEC 3.4), which markPodNotReady turns False while the pod waits in a lifecycle hook.
* ``mutate-clonesets`` (CREATE, UPDATE): OpenKruise's defaults (``defaults``).
* ``validate-clonesets`` (CREATE, UPDATE): OpenKruise's checks (``validation``), refused
  with HTTP 422 and the field errors.

An unreadable review is refused with 400 and says why; nothing here raises into the mesh
stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import Counter

from kruise.common.v1 import mesh_pb2
from services.kit import admission
from services.kit.admission import Verdict
from services.kit.mesh import Handler
from services.kit.objects import controller_ref
from services.rollout import defaults, readiness, validation

if TYPE_CHECKING:
    from services.rollout.controller import RolloutController

POD = mesh_pb2.KIND_POD

GATES = Counter(
    "kruise_mesh_rollout_readiness_gates_total",
    "Pod CREATE reviews answered by rollout, by outcome",
    ["outcome"],
)


def decide_pod(request: mesh_pb2.AdmissionRequest) -> tuple[Verdict, str]:
    """The verdict for a pod CREATE review, and a one-word outcome for the metric."""
    try:
        pod = admission.created_pod(request)
    except admission.BadReview as e:
        return admission.bad_request(str(e)), "bad-review"
    if pod is None:
        return admission.ALLOWED, "skipped"
    ops = readiness.inject_readiness_gate(pod, owner_group=readiness.controller_group(pod))
    if not ops:
        return admission.ALLOWED, "not-kruise"
    return admission.allow(patch=ops), "injected"


def pod_lookup(controller: RolloutController, namespace: str) -> validation.PodLookup:
    """The podsToDelete rule's view of the replica's cached pods."""

    def find(name: str) -> validation.PodFacts | None:
        pod = controller.cache.get(POD, namespace, name)
        if pod is None:
            return None
        owner = controller_ref(pod.meta.owner_references)
        return validation.PodFacts(
            terminating=bool(pod.meta.deletion_unix_ms),
            controller_uid=owner.uid if owner is not None else "",
        )

    return find


def handlers(controller: RolloutController) -> Mapping[str, Handler]:
    async def mutate_pods(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        verdict, outcome = decide_pod(request)
        GATES.labels(outcome).inc()
        return admission.to_response(request, verdict)

    async def mutate_clonesets(request: mesh_pb2.AdmissionRequest) -> mesh_pb2.AdmissionResponse:
        return admission.to_response(request, defaults.decide_clone_set_defaults(request))

    async def validate_clonesets(
        request: mesh_pb2.AdmissionRequest,
    ) -> mesh_pb2.AdmissionResponse:
        verdict = validation.decide_clone_set(
            request, find_pod=pod_lookup(controller, request.namespace)
        )
        return admission.to_response(request, verdict)

    return {
        "mutate-pods": mutate_pods,
        "mutate-clonesets": mutate_clonesets,
        "validate-clonesets": validate_clonesets,
    }
