"""A new CloneSet pod, made from a revision's template. Pure; no I/O.

    name                      <cloneset>-<instance id>   (5 characters, Kubernetes' alphabet)
    labels                    the template's, controller-revision-hash: <revision>,
                              apps.kruise.io/cloneset-instance-id: <instance id>,
                              lifecycle.apps.kruise.io/state: Normal
    annotations               the template's, lifecycle.apps.kruise.io/timestamp
    ownerReferences           the CloneSet, as controller
    spec.readinessGates       + InPlaceUpdateReady when the update strategy is in place

The instance id comes from the caller's random source, so the function stays pure.
``KruisePodReady`` is not added here: the pod mutating webhook injects it on CREATE for
every pod owned by an ``apps.kruise.io`` workload (SPEC 3.4).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Collection, Mapping
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


def new_pod(
    *,
    clone_set: views_pb2.CloneSetView,
    template: Mapping[str, Any],
    revision: str,
    instance: str,
    now_rfc3339: str,
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
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
