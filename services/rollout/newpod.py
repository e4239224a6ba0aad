"""A new CloneSet pod and its PersistentVolumeClaims, made from a revision's template and the
CloneSet's ``volumeClaimTemplates``. Pure; no I/O.

    name                      <cloneset>-<instance id>   (5 characters, Kubernetes' alphabet)
    labels                    the template's, controller-revision-hash: <revision>,
                              apps.kruise.io/cloneset-instance-id: <instance id>,
                              lifecycle.apps.kruise.io/state: Normal
    annotations               the template's, lifecycle.apps.kruise.io/timestamp
    ownerReferences           the CloneSet, as controller
    spec.readinessGates       + InPlaceUpdateReady when the update strategy is in place
    spec.volumes              one persistentVolumeClaim volume per claim template (named after
                              the template), then the template's other volumes

    claim name                <template name>-<cloneset>-<instance id>
    claim labels              the claim template's, the CloneSet's selector matchLabels,
                              apps.kruise.io/cloneset-instance-id: <instance id>
    claim ownerReferences     the template's, + the CloneSet as controller (deleted with it)

As OpenKruise's ``NewVersionedPods``/``UpdateStorage``/``GetPersistentVolumeClaims``
(``pkg/controller/cloneset/utils/cloneset_utils.go``). The instance id comes from the
caller's random source, so the functions stay pure; ``instance_ids`` first hands out the
ids of claims no pod uses any more, so a new pod gets the data of one that was deleted
behind the controller's back. ``KruisePodReady`` is not added here: the pod mutating webhook
injects it on CREATE for every pod owned by an ``apps.kruise.io`` workload (SPEC 3.4).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.rollout.pods import (
    IN_PLACE_UPDATE_READY,
    INSTANCE_ID_LABEL,
    LIFECYCLE_STATE_LABEL,
    LIFECYCLE_TIMESTAMP_ANNOTATION,
    NORMAL,
    REVISION_LABEL,
)
from services.rollout.revision import owner_reference

Json = dict[str, Any]

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
IN_PLACE_TYPES = ("InPlaceIfPossible", "InPlaceOnly")


def instance_id(rng: random.Random, taken: Collection[str] = ()) -> str:
    """Five characters of Kubernetes' vowel-free alphabet, not in ``taken``."""
    while True:
        candidate = "".join(rng.choice(ALPHABET) for _ in range(5))
        if candidate not in taken:
            return candidate


def pod_instance_id(pod: views_pb2.PodView, *, clone_set_name: str) -> str:
    """The pod's ``apps.kruise.io/cloneset-instance-id``, else its name's ``<cloneset>-`` suffix."""
    label = pod.meta.labels.get(INSTANCE_ID_LABEL, "")
    if label:
        return label
    prefix = f"{clone_set_name}-"
    return pod.meta.name[len(prefix) :] if pod.meta.name.startswith(prefix) else ""


@dataclass(frozen=True, slots=True)
class InstanceIds:
    """The instance ids of one scale-out.

    ``ids``: one per pod to create now, ids of orphan claims first (sorted), then fresh ones.
    ``waiting``: ids of orphan claims whose old pod is still terminating: it holds the name
    ``<cloneset>-<id>``, so the pods that would reuse them are not created this round (the
    old pod's deletion brings the CloneSet back). ``len(ids) + len(waiting)`` is the count
    asked for.
    """

    ids: tuple[str, ...]
    waiting: tuple[str, ...] = ()


def instance_ids(
    *,
    count: int,
    clone_set_name: str,
    pods: Sequence[views_pb2.PodView],
    claims: Sequence[views_pb2.PersistentVolumeClaimView],
    rng: random.Random,
) -> InstanceIds:
    """Instance ids for ``count`` new pods: OpenKruise's ``getOrGenAvailableIDs``.

    Pure; ``sync.scale`` names the new pods and their claims with the result. ``pods`` are
    all of the CloneSet's pods (terminating and finished ones too: they hold their names);
    ``claims`` all of its PersistentVolumeClaims.

    * An id is *orphaned* when a claim that is not being deleted carries it and no active
      pod does: its pod was deleted or evicted by someone else than the controller (the
      controller deletes a pod's claims with it). The new pods take these ids first, so
      they mount the old pod's claims.
    * An orphaned id whose old pod is still terminating is *waiting* (the name is taken,
      OpenKruise's create would fail with AlreadyExists until it is free); an orphaned id
      held by a Succeeded or Failed pod that is not being deleted is never reused (that
      name may stay taken for good).
    * Fresh ids avoid every pod's and every claim's id (terminating claims included: their
      names are taken until they go).

    Worked example: count 3; claims for ``aaaaa`` (no pod), ``bbbbb`` (its pod terminating)
    and ``ccccc`` (a running pod) → ids ``(aaaaa, <fresh>)``, waiting ``(bbbbb,)``.
    """
    active: set[str] = set()
    holding: set[str] = set()
    for pod in pods:
        pid = pod_instance_id(pod, clone_set_name=clone_set_name)
        if not pid:
            continue
        holding.add(pid)
        if not pod.meta.deletion_unix_ms and pod.phase not in ("Succeeded", "Failed"):
            active.add(pid)
    terminating = {
        pod_instance_id(p, clone_set_name=clone_set_name) for p in pods if p.meta.deletion_unix_ms
    }
    claim_ids = {c.meta.labels.get(INSTANCE_ID_LABEL, "") for c in claims} - {""}
    live_claim_ids = {
        c.meta.labels.get(INSTANCE_ID_LABEL, "") for c in claims if not c.meta.deletion_unix_ms
    } - {""}
    orphaned = sorted(live_claim_ids - active)
    free = [i for i in orphaned if i not in holding]
    held = [i for i in orphaned if i in terminating]
    reused = free[:count]
    waiting = held[: max(count - len(reused), 0)]
    taken = holding | claim_ids
    fresh: list[str] = []
    for _ in range(count - len(reused) - len(waiting)):
        new = instance_id(rng, taken)
        taken.add(new)
        fresh.append(new)
    return InstanceIds(ids=(*reused, *fresh), waiting=tuple(waiting))


def claim_name(*, template_name: str, clone_set_name: str, instance: str) -> str:
    """``<template name>-<cloneset name>-<instance id>``, e.g. ``data-web-x7k2p``."""
    return f"{template_name}-{clone_set_name}-{instance}"


def new_claims(
    *,
    clone_set: views_pb2.CloneSetView,
    templates: Sequence[Mapping[str, Any]],
    instance: str,
) -> list[Json]:
    """The PersistentVolumeClaims of instance ``instance``: one per template, in order.

    The template's spec is kept as written (the CloneSet defaulting webhook gave it
    ``volumeMode``); its ``status`` is dropped (the API server would reset it anyway).
    """
    out: list[Json] = []
    for template in templates:
        body: Json = copy.deepcopy(dict(template))
        meta: Json = dict(body.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        labels.update(clone_set.selector.match_labels)
        labels[INSTANCE_ID_LABEL] = instance
        refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
        meta.pop("generateName", None)
        meta.update(
            {
                "name": claim_name(
                    template_name=str(meta.get("name") or ""),
                    clone_set_name=clone_set.meta.name,
                    instance=instance,
                ),
                "namespace": clone_set.meta.namespace,
                "labels": labels,
                "ownerReferences": [*refs, owner_reference(clone_set)],
            }
        )
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": meta,
                "spec": dict(body.get("spec") or {}),
            }
        )
    return out


def claim_volumes(
    volumes: Sequence[Any],
    *,
    clone_set_name: str,
    templates: Sequence[Mapping[str, Any]],
    instance: str,
) -> list[Any]:
    """A pod's ``spec.volumes``: a ``persistentVolumeClaim`` volume per claim template, named
    after the template, then the template's ``volumes`` of other names (OpenKruise's
    ``UpdateStorage``: a claim template replaces a pod volume of the same name)."""
    names = [str((t.get("metadata") or {}).get("name") or "") for t in templates]
    claimed = [
        {
            "name": name,
            "persistentVolumeClaim": {
                "claimName": claim_name(
                    template_name=name, clone_set_name=clone_set_name, instance=instance
                )
            },
        }
        for name in names
    ]
    others = [v for v in volumes if not (isinstance(v, dict) and v.get("name") in names)]
    return [*claimed, *others]


def new_pod(
    *,
    clone_set: views_pb2.CloneSetView,
    template: Mapping[str, Any],
    revision: str,
    instance: str,
    now_rfc3339: str,
    claim_templates: Sequence[Mapping[str, Any]] = (),
) -> Json:
    """The pod object to create for ``clone_set`` from ``template`` at ``revision``."""
    body: Json = copy.deepcopy(dict(template))
    meta: Json = dict(body.pop("metadata", None) or {})
    labels = dict(meta.get("labels") or {})
    labels[REVISION_LABEL] = revision
    labels[INSTANCE_ID_LABEL] = instance
    labels[LIFECYCLE_STATE_LABEL] = NORMAL
    annotations = dict(meta.get("annotations") or {})
    annotations[LIFECYCLE_TIMESTAMP_ANNOTATION] = now_rfc3339
    meta.pop("name", None)
    meta.pop("generateName", None)
    meta.update(
        {
            "name": f"{clone_set.meta.name}-{instance}",
            "namespace": clone_set.meta.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(clone_set)],
        }
    )
    spec: Json = dict(body.get("spec") or {})
    if clone_set.update_strategy.type in IN_PLACE_TYPES:
        gates = [g for g in spec.get("readinessGates") or [] if isinstance(g, dict)]
        if not any(g.get("conditionType") == IN_PLACE_UPDATE_READY for g in gates):
            gates.append({"conditionType": IN_PLACE_UPDATE_READY})
        spec["readinessGates"] = gates
    if claim_templates:
        spec["volumes"] = claim_volumes(
            spec.get("volumes") or [],
            clone_set_name=clone_set.meta.name,
            templates=claim_templates,
            instance=instance,
        )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
