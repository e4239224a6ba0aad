"""Which pods a CloneSet lets go: OpenKruise v1.2's ``claimPods`` (``refmanager``), decided.

Pure; no I/O. ``sync.plan_round`` turns each ``Release`` into one pod write before anything
else of the round (``release_patch``); the pods released are no longer counted.

OpenKruise's CloneSet lists the pods that carry an ownerReference to its uid (the
``ownerRefUID`` field index), then runs the controller-ref manager over them:

* controlled by another controller → ignored (never touched);
* controlled by this CloneSet and matching its selector → kept;
* controlled by this CloneSet, labels no longer matching → released (its ownerReference
  to the CloneSet removed), unless the CloneSet is being deleted;
* no controller reference → adopted if it matches, is not being deleted and the CloneSet is
  not being deleted.

Orphans with no reference to the CloneSet are never listed, so never adopted: OpenKruise
declined adoption on purpose (openkruise/kruise#486, "wontfix"; #1032: "CloneSet does not
support taking over orphan pods by design") since an adopted pod would lack the CloneSet's
instance id and its PersistentVolumeClaims. Here the controller's pods are those whose
*controller* reference names the CloneSet (``OwnerIndex``), so only the release branch can
occur; this module decides it.

    release_decision(clone_set, pods) -> tuple[Release, ...]

Worked example: selector ``app=web``; pods ``web-a`` (app=web), ``web-b`` (app=debug, the
user took it out for debugging) → ``(Release("web-b", index 0),)``: the CloneSet lets it
run on, unowned, and creates a replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit.selectors import selector_matches


@dataclass(frozen=True, slots=True)
class Release:
    """A pod to let go: ``ref_index`` is the position of its ownerReference to the CloneSet
    (removed by ``release_patch``), ``uid``/``resource_version`` what the decision saw."""

    pod: str
    uid: str
    resource_version: str
    ref_index: int


def _ref_index(pod: views_pb2.PodView, owner_uid: str) -> int:
    for i, ref in enumerate(pod.meta.owner_references):
        if ref.uid == owner_uid:
            return i
    return -1


def release_decision(
    clone_set: views_pb2.CloneSetView, pods: Sequence[views_pb2.PodView]
) -> tuple[Release, ...]:
    """The pods among ``pods`` this CloneSet controls whose labels no longer match its
    selector, in list order. Pure.

    A pod controlled by anyone else, or not by this CloneSet's uid, is never released; a
    CloneSet being deleted releases nothing (its pods go with it). The selector is matched
    with Kubernetes' semantics (an empty selector matches nothing, as validation forbids it).
    """
    if clone_set.meta.deletion_unix_ms:
        return ()
    owner = clone_set.meta.uid
    out: list[Release] = []
    for pod in pods:
        controller = next((r for r in pod.meta.owner_references if r.controller), None)
        if controller is None or controller.uid != owner:
            continue
        if selector_matches(clone_set.selector, pod.meta.labels):
            continue
        out.append(
            Release(
                pod=pod.meta.name,
                uid=pod.meta.uid,
                resource_version=pod.meta.resource_version,
                ref_index=_ref_index(pod, owner),
            )
        )
    return tuple(out)


def release_patch(release: Release, *, owner_uid: str) -> list[dict[str, Any]]:
    """The JSON patch that removes the CloneSet's ownerReference and nothing else: a ``test``
    that the entry at ``ref_index`` still names ``owner_uid``, then its ``remove`` (the
    write also carries the pod's resourceVersion as a precondition)."""
    path = f"/metadata/ownerReferences/{release.ref_index}"
    return [
        {"op": "test", "path": f"{path}/uid", "value": owner_uid},
        {"op": "remove", "path": path},
    ]
