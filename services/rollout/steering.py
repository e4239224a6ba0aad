"""Steering a CloneSet's rollout: validate the rollout API's requests, plan SetPartition
and Release as JSON merge patches.

Pure; no I/O, no clock. The rollout API servicer (``services.rollout.api``) calls a
``check_*`` function on every request before it reads anything, then, for SetPartition and
Release, the ``plan_*`` function with the CloneSet from the replica cache; it turns a
``Refused`` into a gRPC status with google.rpc details (ErrorInfo reason, BadRequest
``field``, PreconditionFailure ``subject``), and writes ``Change.patch`` through the cluster
API unless the request is a dry run or the patch is None. Nothing here raises.

    Refused(code, reason, message, field, subject)   the call fails; nothing is written
    Change(patch, replayed, message)                 patch None: nothing to write
                                                     (replayed: the request id was applied
                                                     before; answer applied=true)

Refusals, by code and ErrorInfo reason (rollout.proto)::

    INVALID_ARGUMENT     INVALID_REQUEST    a missing or malformed field (``field`` names it)
                         UNSUPPORTED_KIND   ref.kind / ref.api_version not CloneSet's
    FAILED_PRECONDITION  UID_CHANGED        ref.uid is not the CloneSet's uid
                         CONTROLLED_BY_OTHER  Kruise Rollout, or another rollout id, holds it
                         UPDATE_REVISION_CHANGED  status.updateRevision is not the expected
                         PARTITION_WOULD_RISE     more pods would be kept than now

The order of ``plan_set_partition``'s checks is part of the contract: a replayed request
id answers before any precondition (a retry of an applied call must not fail on the state
its own write produced).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2
from services.kit.intstr import IntOrStr
from services.kit.selectors import label_value_problem, parse_selector
from services.rollout.partition import partition_replicas
from services.rollout.report import (
    CLONE_SET_API_VERSION,
    CLONE_SET_KIND,
    CONTROL_INFO_ANNOTATION,
    REQUEST_ID_ANNOTATION,
    ROLLOUT_ID_ANNOTATION,
    claim_holder,
    current_partition,
    spec_replicas,
)

__all__ = [
    "MAX_BOOKMARK_SECONDS",
    "MAX_REQUEST_ID_LENGTH",
    "Change",
    "Code",
    "Patch",
    "Reason",
    "Refused",
    "check_check_batch",
    "check_int_or_percent",
    "check_ref",
    "check_release",
    "check_set_partition",
    "check_watch",
    "int_or_percent_value",
    "plan_release",
    "plan_set_partition",
]

Code = Literal["INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND"]
Reason = Literal[
    "INVALID_REQUEST",
    "UNSUPPORTED_KIND",
    "UPDATE_REVISION_CHANGED",
    "UID_CHANGED",
    "PARTITION_WOULD_RISE",
    "CONTROLLED_BY_OTHER",
    "WORKLOAD_NOT_FOUND",
]
Patch = dict[str, Any]

MAX_REQUEST_ID_LENGTH = 253
MAX_BOOKMARK_SECONDS = 3600

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PERCENT = re.compile(r"[0-9]+%")
_CONTROL_SUBJECT = f"metadata.annotations[{CONTROL_INFO_ANNOTATION}]"
_CLAIM_SUBJECT = f"metadata.annotations[{ROLLOUT_ID_ANNOTATION}]"


@dataclass(frozen=True)
class Refused:
    """The call fails with gRPC ``code``; ``reason`` is the ErrorInfo reason.

    ``field`` is the BadRequest field path ("partition.percent", "ref.name") for
    INVALID_ARGUMENT; ``subject`` the PreconditionFailure subject ("status.updateRevision")
    for FAILED_PRECONDITION.
    """

    code: Code
    reason: Reason
    message: str
    field: str = ""
    subject: str = ""


@dataclass(frozen=True)
class Change:
    """What to write. ``patch`` is a JSON merge patch (None: nothing to write, answer
    applied=false, or applied=true when ``replayed``); ``message`` is the answer's message."""

    patch: Patch | None
    replayed: bool = False
    message: str = ""


def _invalid(field: str, message: str) -> Refused:
    return Refused("INVALID_ARGUMENT", "INVALID_REQUEST", message, field=field)


def _precondition(reason: Reason, message: str, subject: str) -> Refused:
    return Refused("FAILED_PRECONDITION", reason, message, subject=subject)


# --- request checks --------------------------------------------------------------------


def check_ref(ref: rollout_pb2.WorkloadRef, *, name_required: bool = True) -> Refused | None:
    """The WorkloadRef names a CloneSet well; None when it does.

    namespace: required, a DNS-1123 label; name: required when ``name_required``, a DNS-1123
    subdomain when given; kind "" or "CloneSet" and api_version "" or
    "apps.kruise.io/v1alpha1", otherwise UNSUPPORTED_KIND. Examples::

        {namespace: "", name: "web"}                  → INVALID_REQUEST, field ref.namespace
        {namespace: "Prod", name: "web"}              → INVALID_REQUEST, field ref.namespace
        {namespace: "prod", kind: "Deployment", ...}  → UNSUPPORTED_KIND, field ref.kind
        {namespace: "prod", name: ""}, name_required=False → None (a namespace watch)
    """
    if not ref.namespace:
        return _invalid("ref.namespace", "ref.namespace is required")
    if len(ref.namespace) > 63 or not _DNS1123_LABEL.fullmatch(ref.namespace):
        return _invalid(
            "ref.namespace",
            f"ref.namespace {ref.namespace!r} is not a DNS-1123 label (lowercase alphanumerics "
            "and '-', at most 63 characters)",
        )
    if name_required and not ref.name:
        return _invalid("ref.name", "ref.name is required")
    if ref.name and (len(ref.name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(ref.name)):
        return _invalid(
            "ref.name",
            f"ref.name {ref.name!r} is not a DNS-1123 subdomain (lowercase alphanumerics, "
            "'-' and '.', at most 253 characters)",
        )
    return _check_kind(ref)


def _check_kind(ref: rollout_pb2.WorkloadRef) -> Refused | None:
    for field, value, wanted in (
        ("ref.kind", ref.kind, CLONE_SET_KIND),
        ("ref.api_version", ref.api_version, CLONE_SET_API_VERSION),
    ):
        if value and value != wanted:
            return Refused(
                "INVALID_ARGUMENT",
                "UNSUPPORTED_KIND",
                f"{field} {value!r} is not supported: only {CLONE_SET_KIND} "
                f"({CLONE_SET_API_VERSION}) is",
                field=field,
            )
    return None


def check_int_or_percent(value: rollout_pb2.IntOrPercent, field: str) -> Refused | None:
    """A count >= 0, or a percent "0%".."100%" (digits then "%"); None when valid.

    ``field`` is the message's path ("partition"); a violation names the member::

        count 3, "0%", "100%", "007%"   → None
        count -1                        → partition.count: must be >= 0
        "101%", "150%"                  → partition.percent: over 100%
        "50"                            → partition.percent: needs a % ("50%")
        "abc%", "-5%", "5.5%", ""       → partition.percent: not digits followed by %
        neither member set              → partition: set count or percent
    """
    which = value.WhichOneof("value")
    if which == "count":
        if value.count < 0:
            return _invalid(f"{field}.count", f"{field}.count {value.count} must be >= 0")
        return None
    if which == "percent":
        return _check_percent(value.percent, f"{field}.percent")
    return _invalid(field, f"{field} is empty: set count or percent")


def _check_percent(text: str, field: str) -> Refused | None:
    if _PERCENT.fullmatch(text):
        if int(text[:-1]) > 100:
            return _invalid(field, f"{field} {text!r} is over 100%")
        return None
    if text.isdigit():
        return _invalid(field, f"{field} {text!r} needs a % (write {text + '%'!r})")
    return _invalid(
        field, f"{field} {text!r} must be an integer percent from '0%' to '100%', such as '20%'"
    )


def check_set_partition(request: rollout_pb2.SetPartitionRequest) -> Refused | None:
    """SetPartition's request alone: ref, partition syntax, rollout_id a label value,
    request_id at most 253 characters. None when valid."""
    return (
        check_ref(request.ref)
        or (
            check_int_or_percent(request.partition, "partition")
            if request.HasField("partition")
            else None
        )
        or _check_rollout_id(request.rollout_id)
        or _check_request_id(request.request_id)
    )


def check_check_batch(request: rollout_pb2.CheckBatchRequest) -> Refused | None:
    """CheckBatch's request alone: ref; a target (desired_updated_replicas >= 0, or batch a
    valid count or percent); failure_threshold valid when set; rollout_id a label value.

    The servicer turns the target into a count with ``batch.desired_updated`` in both
    cases, so a count above spec.replicas is clamped, not refused.
    """
    return (
        check_ref(request.ref)
        or _check_target(request)
        or (
            check_int_or_percent(request.failure_threshold, "failure_threshold")
            if request.HasField("failure_threshold")
            else None
        )
        or _check_rollout_id(request.rollout_id)
    )


def _check_target(request: rollout_pb2.CheckBatchRequest) -> Refused | None:
    which = request.WhichOneof("target")
    if which == "batch":
        return check_int_or_percent(request.batch, "batch")
    if which == "desired_updated_replicas":
        if request.desired_updated_replicas < 0:
            return _invalid(
                "desired_updated_replicas",
                f"desired_updated_replicas {request.desired_updated_replicas} must be >= 0",
            )
        return None
    return _invalid("desired_updated_replicas", "set desired_updated_replicas or batch")


def check_release(request: rollout_pb2.ReleaseRequest) -> Refused | None:
    """Release's request alone: ref, rollout_id a label value, request_id length."""
    return (
        check_ref(request.ref)
        or _check_rollout_id(request.rollout_id)
        or _check_request_id(request.request_id)
    )


def check_watch(request: rollout_pb2.WatchRolloutStatusRequest) -> Refused | None:
    """WatchRolloutStatus's request: namespace required, name optional; label_selector in
    kubectl syntax (``kit.selectors.parse_selector``); not both name and selector;
    bookmark_seconds 0..3600 (0 means 30)."""
    refused = check_ref(request.ref, name_required=False)
    if refused is not None:
        return refused
    if request.ref.name and request.label_selector:
        return _invalid("label_selector", "give ref.name or label_selector, not both")
    try:
        parse_selector(request.label_selector)
    except ValueError as error:
        return _invalid("label_selector", str(error))
    if not 0 <= request.bookmark_seconds <= MAX_BOOKMARK_SECONDS:
        return _invalid(
            "bookmark_seconds",
            f"bookmark_seconds {request.bookmark_seconds} must be 0 to {MAX_BOOKMARK_SECONDS}",
        )
    return None


def _check_rollout_id(rollout_id: str) -> Refused | None:
    problem = label_value_problem(rollout_id)
    if problem is None:
        return None
    return _invalid("rollout_id", f"rollout_id {rollout_id!r} is not a label value: {problem}")


def _check_request_id(request_id: str) -> Refused | None:
    if len(request_id) <= MAX_REQUEST_ID_LENGTH:
        return None
    return _invalid(
        "request_id",
        f"request_id has {len(request_id)} characters, at most {MAX_REQUEST_ID_LENGTH}",
    )


# --- plans -----------------------------------------------------------------------------


def int_or_percent_value(value: rollout_pb2.IntOrPercent) -> IntOrStr:
    """The IntOrStr an IntOrPercent stands for (a checked one: count or percent set)."""
    return value.percent if value.WhichOneof("value") == "percent" else value.count


def plan_set_partition(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> Change | Refused:
    """What SetPartition writes to ``clone_set`` (a request ``check_set_partition`` passed).

    In order:

    1. replay: request_id set and equal to the last-request-id annotation → Change(None,
       replayed=True), whatever the state now;
    2. ref.uid set and not the CloneSet's → UID_CHANGED;
    3. Kruise Rollout's control-info annotation → CONTROLLED_BY_OTHER; a rollout-id claim by
       another id (or any claim while the request has no id) → CONTROLLED_BY_OTHER;
    4. expected_update_revision set and not status.updateRevision → UPDATE_REVISION_CHANGED;
    5. partition count > spec.replicas → INVALID_REQUEST (field partition.count);
    6. the new partition keeps more pods than the current one (both as counts of
       spec.replicas, Kruise rounding) and not allow_increase → PARTITION_WOULD_RISE;
    7. the merge patch of what differs: the claim annotation (when rollout_id is new), the
       partition (when it differs *as written*), paused (when it differs), and the
       last-request-id annotation with any of them. Nothing differs → Change(None).

    A partition that keeps the same pods written differently (5 vs "50%" of 10) is written:
    it is a change of spec, not a rise. Worked examples, spec.replicas 10, partition "50%":

        partition "30%"                        → {"spec":{"updateStrategy":{"partition":"30%"}}}
        partition 5                            → partition 5 written (same 5 kept)
        partition "80%"                        → PARTITION_WOULD_RISE (8 kept > 5 kept)
        partition "50%", paused unset          → Change(None, "partition already 50%")
        partition "99%" with replicas 3, current 3 → 2 kept ≤ 3: written

    A current partition that does not parse counts as 0 kept (the controller's reading),
    so any partition above 0 would rise. ``dry_run`` changes nothing here: the servicer
    skips the write.
    """
    early = _replay(clone_set, request.request_id) or _preconditions(clone_set, request)
    if early is not None:
        return early
    patch = _set_partition_patch(clone_set, request)
    if patch is None:
        return Change(None, message=_unchanged_message(clone_set, request))
    return Change(patch, message=_set_partition_message(clone_set, request))


def _replay(clone_set: views_pb2.CloneSetView, request_id: str) -> Change | None:
    if request_id and clone_set.meta.annotations.get(REQUEST_ID_ANNOTATION) == request_id:
        return Change(None, replayed=True, message=f"request {request_id!r} was applied before")
    return None


def _preconditions(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> Refused | None:
    return (
        _check_uid(clone_set, request.ref)
        or _check_control(clone_set, request.rollout_id, force=False)
        or _check_update_revision(clone_set, request.expected_update_revision)
        or _check_partition_fits(clone_set, request)
    )


def _check_uid(clone_set: views_pb2.CloneSetView, ref: rollout_pb2.WorkloadRef) -> Refused | None:
    if not ref.uid or ref.uid == clone_set.meta.uid:
        return None
    return _precondition(
        "UID_CHANGED",
        f"CloneSet {_name(clone_set)} has uid {clone_set.meta.uid!r}, not {ref.uid!r}: "
        "it was deleted and made again",
        "metadata.uid",
    )


def _check_control(
    clone_set: views_pb2.CloneSetView, rollout_id: str, *, force: bool
) -> Refused | None:
    if force:
        return None
    if CONTROL_INFO_ANNOTATION in clone_set.meta.annotations:
        return _precondition(
            "CONTROLLED_BY_OTHER",
            f"Kruise Rollout drives CloneSet {_name(clone_set)} (annotation "
            f"{CONTROL_INFO_ANNOTATION}); Release with force takes it away",
            _CONTROL_SUBJECT,
        )
    holder = claim_holder(clone_set.meta)
    if holder and holder != rollout_id:
        asker = f"rollout id {rollout_id!r}" if rollout_id else "a request without rollout_id"
        return _precondition(
            "CONTROLLED_BY_OTHER",
            f"rollout id {holder!r} holds CloneSet {_name(clone_set)}, not {asker}; "
            f"Release with rollout_id {holder!r} (or force) frees it",
            _CLAIM_SUBJECT,
        )
    return None


def _check_update_revision(clone_set: views_pb2.CloneSetView, expected: str) -> Refused | None:
    actual = clone_set.status.update_revision
    if not expected or expected == actual:
        return None
    return _precondition(
        "UPDATE_REVISION_CHANGED",
        f"status.updateRevision is {actual!r}, not the expected {expected!r}: "
        "the pod template changed since the plan",
        "status.updateRevision",
    )


def _check_partition_fits(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> Refused | None:
    if not request.HasField("partition"):
        return None
    replicas = spec_replicas(clone_set)
    new = int_or_percent_value(request.partition)
    if isinstance(new, int) and new > replicas:
        return _invalid(
            "partition.count", f"partition.count {new} is more than spec.replicas {replicas}"
        )
    current = current_partition(clone_set)
    kept_now = _kept(current, replicas)
    kept_new = partition_replicas(new, replicas)
    if kept_new <= kept_now or request.allow_increase:
        return None
    return _precondition(
        "PARTITION_WOULD_RISE",
        f"partition {new} keeps {kept_new} of {replicas} pods, more than the {kept_now} kept "
        f"now ({_shown(current)}); raising it rolls no pod back; set allow_increase to "
        "raise it anyway",
        "spec.updateStrategy.partition",
    )


def _kept(partition: IntOrStr | None, replicas: int) -> int:
    try:
        return partition_replicas(partition, replicas)
    except ValueError:
        return 0


def _set_partition_patch(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> Patch | None:
    strategy: dict[str, object] = {}
    if request.HasField("partition"):
        new = int_or_percent_value(request.partition)
        if new != current_partition(clone_set):
            strategy["partition"] = new
    if request.HasField("paused") and request.paused != clone_set.update_strategy.paused:
        strategy["paused"] = request.paused
    annotations: dict[str, object] = {}
    if request.rollout_id and claim_holder(clone_set.meta) != request.rollout_id:
        annotations[ROLLOUT_ID_ANNOTATION] = request.rollout_id
    return _patch(annotations, strategy, request_id=request.request_id)


def _patch(
    annotations: dict[str, object], strategy: dict[str, object], *, request_id: str
) -> Patch | None:
    """The merge patch of ``annotations`` and ``strategy``, with the request id recorded;
    None when both are empty (the request id alone is never written)."""
    if not annotations and not strategy:
        return None
    if request_id:
        annotations[REQUEST_ID_ANNOTATION] = request_id
    patch: Patch = {}
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    if strategy:
        patch["spec"] = {"updateStrategy": strategy}
    return patch


def _set_partition_message(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> str:
    parts = []
    if request.HasField("partition"):
        new = int_or_percent_value(request.partition)
        kept = partition_replicas(new, spec_replicas(clone_set))
        parts.append(
            f"partition {_shown(current_partition(clone_set))} → {new} "
            f"({kept} of {spec_replicas(clone_set)} kept)"
        )
    if request.HasField("paused"):
        parts.append(f"paused {str(request.paused).lower()}")
    if request.rollout_id and claim_holder(clone_set.meta) != request.rollout_id:
        parts.append(f"claimed by rollout id {request.rollout_id!r}")
    return "; ".join(parts)


def _unchanged_message(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.SetPartitionRequest
) -> str:
    parts = []
    if request.HasField("partition"):
        parts.append(f"partition already {_shown(current_partition(clone_set))}")
    if request.HasField("paused"):
        parts.append(f"paused already {str(request.paused).lower()}")
    if request.rollout_id:
        parts.append(f"already claimed by rollout id {request.rollout_id!r}")
    return "; ".join(parts) or "nothing to change"


def plan_release(
    clone_set: views_pb2.CloneSetView, request: rollout_pb2.ReleaseRequest
) -> Change | Refused:
    """What Release writes to ``clone_set`` (Kruise Rollout's Finalize; a request
    ``check_release`` passed).

    In order: replay (as SetPartition); ref.uid; control — Kruise Rollout's control-info
    annotation, or a rollout-id claim by another id (or any claim while the request has no
    id), refuse with CONTROLLED_BY_OTHER unless ``force``. Then the merge patch:

        rollout-id annotation present                → null (the claim is freed)
        control-info annotation present and force    → null
        promote and partition set                    → spec.updateStrategy.partition null
        promote and paused                           → spec.updateStrategy.paused false
        any of those and request_id                  → last-request-id annotation

    Nothing to change (no claim, and promote false or nothing to promote) → Change(None).
    Example: claimed by "r1", partition "50%", paused; Release(rollout_id "r1", promote) →
    {"metadata":{"annotations":{claim: null, last-request-id: ...}},
     "spec":{"updateStrategy":{"partition": null, "paused": false}}}.
    """
    early = (
        _replay(clone_set, request.request_id)
        or _check_uid(clone_set, request.ref)
        or _check_control(clone_set, request.rollout_id, force=request.force)
    )
    if early is not None:
        return early
    annotations: dict[str, object] = {}
    if ROLLOUT_ID_ANNOTATION in clone_set.meta.annotations:
        annotations[ROLLOUT_ID_ANNOTATION] = None
    if request.force and CONTROL_INFO_ANNOTATION in clone_set.meta.annotations:
        annotations[CONTROL_INFO_ANNOTATION] = None
    strategy: dict[str, object] = {}
    if request.promote and clone_set.update_strategy.HasField("partition"):
        strategy["partition"] = None
    if request.promote and clone_set.update_strategy.paused:
        strategy["paused"] = False
    message = _release_message(annotations, strategy)
    return Change(_patch(annotations, strategy, request_id=request.request_id), message=message)


def _release_message(annotations: dict[str, object], strategy: dict[str, object]) -> str:
    parts = []
    if ROLLOUT_ID_ANNOTATION in annotations:
        parts.append("claim released")
    if CONTROL_INFO_ANNOTATION in annotations:
        parts.append("Kruise Rollout's control taken away")
    if "partition" in strategy:
        parts.append("partition cleared")
    if "paused" in strategy:
        parts.append("unpaused")
    return "; ".join(parts) or "nothing to release"


def _name(clone_set: views_pb2.CloneSetView) -> str:
    return f"{clone_set.meta.namespace}/{clone_set.meta.name}"


def _shown(partition: IntOrStr | None) -> str:
    return "unset" if partition is None else str(partition)


def at_least(resource_version: str, wanted: str) -> bool:
    """Whether ``resource_version`` is ``wanted`` or newer. Kubernetes resourceVersions are
    etcd revisions (integers) in practice; others compare only for equality."""
    if resource_version.isdigit() and wanted.isdigit():
        return int(resource_version) >= int(wanted)
    return resource_version == wanted


def preview(view: views_pb2.CloneSetView, patch: dict[str, Any]) -> views_pb2.CloneSetView:
    """The CloneSet as it would be after ``patch`` (a plan's merge patch of annotations,
    partition and paused): what a dry run answers. Pure."""
    after = views_pb2.CloneSetView()
    after.CopyFrom(view)
    annotations = patch.get("metadata", {}).get("annotations", {})
    for key, value in annotations.items():
        if value is None:
            after.meta.annotations.pop(key, None)
        else:
            after.meta.annotations[key] = value
    strategy = patch.get("spec", {}).get("updateStrategy", {})
    if "partition" in strategy:
        value = strategy["partition"]
        if value is None:
            after.update_strategy.ClearField("partition")
        elif isinstance(value, int):
            after.update_strategy.partition.int_value = value
        else:
            after.update_strategy.partition.str_value = value
    if "paused" in strategy:
        after.update_strategy.paused = bool(strategy["paused"])
    return after
