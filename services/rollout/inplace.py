"""In-place update of a CloneSet pod: what may change in place, the writes, and completion.

Pure; no I/O. The rollout controller sends what these functions return.

A pod is updated in place when its old and new revisions' templates differ only in
container images and in template labels and annotations (OpenKruise's default
``CalculateInPlaceUpdateSpec``); any other difference (resources, env, a new container)
needs a re-create. An update is three pod writes (SPEC 2.1; the lifecycle label rides on
the second):

1. ``status``: condition ``InPlaceUpdateReady`` False, reason ``StartInPlaceUpdate``:
   the ``InPlaceUpdateReady`` readiness gate makes the pod NotReady, so it leaves its
   Service's endpoints before a container restarts;
2. the pod: a JSON patch replacing each changed container image (each guarded by a
   ``test`` of that container's name, so a pod whose containers moved is refused, not
   corrupted), the template's labels and annotations, the revision label, and the
   ``apps.kruise.io/inplace-update-state`` annotation recording the revision, the time
   and each changed container's imageID before the update. With
   ``inPlaceUpdateStrategy.gracePeriodSeconds`` the images wait: the update spec goes into
   ``apps.kruise.io/inplace-update-grace`` and the images are applied once the grace
   period has passed (``grace_expired``);
3. once every changed container reports a new imageID (``update_completed``): ``status``
   condition ``InPlaceUpdateReady`` True.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kruise.common.v1 import views_pb2
from services.kit.projection import to_unix_ms
from services.rollout.pods import (
    IN_PLACE_UPDATE_READY,
    INPLACE_GRACE_ANNOTATION,
    INPLACE_STATE_ANNOTATION,
    LIFECYCLE_STATE_LABEL,
    LIFECYCLE_TIMESTAMP_ANNOTATION,
    REVISION_LABEL,
    condition,
)

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateSpec:
    """What an in-place update changes: images by container name, and the template's
    labels and annotations (None deletes a key the old template had)."""

    revision: str
    images: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str | None] = field(default_factory=dict)
    annotations: Mapping[str, str | None] = field(default_factory=dict)


def _meta_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, str | None]:
    changed: dict[str, str | None] = {k: str(v) for k, v in new.items() if old.get(k) != v}
    changed.update({k: None for k in old if k not in new})
    return changed


def _without_in_place_fields(template: Mapping[str, Any]) -> Json:
    stripped = copy.deepcopy(dict(template))
    meta = stripped.get("metadata")
    if isinstance(meta, dict):
        meta.pop("labels", None)
        meta.pop("annotations", None)
    spec = stripped.get("spec")
    if isinstance(spec, dict):
        for container in spec.get("containers") or []:
            if isinstance(container, dict):
                container.pop("image", None)
    return stripped


def _containers(template: Mapping[str, Any]) -> list[Json]:
    spec = template.get("spec")
    raw = spec.get("containers") if isinstance(spec, dict) else None
    return [c for c in raw or [] if isinstance(c, dict)]


def in_place_spec(
    old_template: Mapping[str, Any], new_template: Mapping[str, Any], *, revision: str
) -> UpdateSpec | None:
    """The in-place update from ``old_template`` to ``new_template``; None when the change
    cannot be made in place (anything but images, labels and annotations differs).

    >>> old = {"spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}
    >>> new = {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}
    >>> in_place_spec(old, new, revision="web-2").images
    {'app': 'nginx:2'}
    >>> grown = {"spec": {"containers": [{"name": "app", "image": "nginx:2", "env": []}]}}
    >>> in_place_spec(old, grown, revision="web-2") is None
    True
    """
    if _without_in_place_fields(old_template) != _without_in_place_fields(new_template):
        return None
    images = {
        str(n.get("name")): str(n.get("image"))
        for o, n in zip(_containers(old_template), _containers(new_template), strict=True)
        if o.get("image") != n.get("image")
    }
    old_meta = old_template.get("metadata") or {}
    new_meta = new_template.get("metadata") or {}
    return UpdateSpec(
        revision=revision,
        images=images,
        labels=_meta_diff(old_meta.get("labels") or {}, new_meta.get("labels") or {}),
        annotations=_meta_diff(
            old_meta.get("annotations") or {}, new_meta.get("annotations") or {}
        ),
    )


def _escape(key: str) -> str:
    """A map key as a JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def ready_condition(*, status: bool, reason: str, now_rfc3339: str) -> Json:
    """The ``InPlaceUpdateReady`` condition to write into ``status.conditions``."""
    return {
        "type": IN_PLACE_UPDATE_READY,
        "status": "True" if status else "False",
        "reason": reason,
        "lastTransitionTime": now_rfc3339,
    }


def condition_patch(cond: Json) -> Json:
    """A strategic merge patch of ``pods/status`` setting one condition (merged by type)."""
    return {"status": {"conditions": [cond]}}


def needs_initial_condition(pod: views_pb2.PodView) -> bool:
    """A pod with the ``InPlaceUpdateReady`` gate and no such condition yet (a new pod): the
    refresh step sets it True, as OpenKruise's in-place ``Refresh`` does."""
    return (
        IN_PLACE_UPDATE_READY in pod.readiness_gates
        and condition(pod, IN_PLACE_UPDATE_READY) is None
        and not pod.meta.deletion_unix_ms
    )


def needs_not_ready_first(pod: views_pb2.PodView) -> bool:
    """Write 1 is needed: the pod has the gate and its condition is not already False."""
    if IN_PLACE_UPDATE_READY not in pod.readiness_gates:
        return False
    cond = condition(pod, IN_PLACE_UPDATE_READY)
    return cond is None or cond.status != "False"


def update_state(pod: views_pb2.PodView, spec: UpdateSpec, *, now_rfc3339: str) -> Json:
    """The ``apps.kruise.io/inplace-update-state`` record: revision, time, and each changed
    container's imageID before the update (completion is judged against it)."""
    ids = {cs.name: cs.image_id for cs in pod.container_statuses}
    return {
        "revision": spec.revision,
        "updateTimestamp": now_rfc3339,
        "lastContainerStatuses": {
            name: {"imageID": ids.get(name, "")} for name in sorted(spec.images)
        },
    }


def update_patch(
    pod: views_pb2.PodView,
    spec: UpdateSpec,
    *,
    now_rfc3339: str,
    grace_seconds: int = 0,
    lifecycle_state: str = "",
) -> list[Json]:
    """Write 2: the JSON patch, guarded by a ``test`` of the pod's current revision label, that
    updates ``pod`` in place (images now, or after the grace
    period when ``grace_seconds`` > 0), with labels, annotations and the lifecycle state.

    Raises ValueError when a container to update is not in the pod (a pod made from another
    template: the caller re-creates it instead).
    """
    # Guard: the pod is still at the revision it was decided on (a second replica, or a
    # decision on a stale cache, finds it moved on and is refused instead of redoing it).
    decided_at = pod.meta.labels.get(REVISION_LABEL)
    ops: list[Json] = (
        [{"op": "test", "path": f"/metadata/labels/{_escape(REVISION_LABEL)}", "value": decided_at}]
        if decided_at is not None
        else []
    )
    if not pod.meta.labels:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    if not pod.meta.annotations:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    labels: dict[str, str | None] = dict(spec.labels)
    labels[REVISION_LABEL] = spec.revision
    annotations: dict[str, str | None] = dict(spec.annotations)
    state = update_state(pod, spec, now_rfc3339=now_rfc3339)
    annotations[INPLACE_STATE_ANNOTATION] = orjson.dumps(state).decode()
    if lifecycle_state:
        labels[LIFECYCLE_STATE_LABEL] = lifecycle_state
        annotations[LIFECYCLE_TIMESTAMP_ANNOTATION] = now_rfc3339
    if grace_seconds > 0 and spec.images:
        grace = {"revision": spec.revision, "containerImages": dict(sorted(spec.images.items()))}
        annotations[INPLACE_GRACE_ANNOTATION] = orjson.dumps(grace).decode()
    else:
        ops.extend(image_ops(pod, spec.images))
    for section, changes, current in (
        ("labels", labels, pod.meta.labels),
        ("annotations", annotations, pod.meta.annotations),
    ):
        for key, value in sorted(changes.items()):
            path = f"/metadata/{section}/{_escape(key)}"
            if value is None:
                if key in current:
                    ops.append({"op": "remove", "path": path})
            else:
                ops.append({"op": "add", "path": path, "value": value})
    return ops


def image_ops(pod: views_pb2.PodView, images: Mapping[str, str]) -> list[Json]:
    """``replace`` ops for each container image, each guarded by a test of the name."""
    index = {c.name: i for i, c in enumerate(pod.containers)}
    ops: list[Json] = []
    for name, image in sorted(images.items()):
        if name not in index:
            raise ValueError(f"pod {pod.meta.name} has no container {name!r}")
        i = index[name]
        ops.append({"op": "test", "path": f"/spec/containers/{i}/name", "value": name})
        ops.append({"op": "replace", "path": f"/spec/containers/{i}/image", "value": image})
    return ops


def grace_of(pod: views_pb2.PodView) -> tuple[str, dict[str, str]] | None:
    """The revision and images an in-place update waits to apply (grace period), if any."""
    raw = pod.meta.annotations.get(INPLACE_GRACE_ANNOTATION)
    if not raw:
        return None
    try:
        grace = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(grace, dict) or not isinstance(grace.get("containerImages"), dict):
        return None
    images = {str(k): str(v) for k, v in grace["containerImages"].items()}
    return str(grace.get("revision", "")), images


def state_of(pod: views_pb2.PodView) -> Json | None:
    raw = pod.meta.annotations.get(INPLACE_STATE_ANNOTATION)
    if not raw:
        return None
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return state if isinstance(state, dict) else None


def started_ms(state: Mapping[str, Any]) -> int:
    return to_unix_ms(state.get("updateTimestamp"))


def grace_expired(pod: views_pb2.PodView, *, grace_seconds: int, now_ms: int) -> bool:
    """The grace period of a waiting in-place update has passed."""
    state = state_of(pod)
    if state is None:
        return True
    return started_ms(state) + grace_seconds * 1000 <= now_ms


def finish_grace_patch(pod: views_pb2.PodView) -> list[Json] | None:
    """After the grace period: the JSON patch applying the waiting images; None if none wait."""
    grace = grace_of(pod)
    if grace is None:
        return None
    ops = [
        *image_ops(pod, grace[1]),
        {"op": "remove", "path": f"/metadata/annotations/{_escape(INPLACE_GRACE_ANNOTATION)}"},
    ]
    return ops


def update_completed(pod: views_pb2.PodView) -> bool:
    """Every container the update changed runs its new image: a new imageID, and the image
    the spec names (SPEC 2.1). A pod with no update in flight counts as completed.

    As OpenKruise's ``DefaultCheckInPlaceUpdateCompleted``, an imageID unchanged since the
    update means "not yet" only while the container does not run the spec's image (an
    image without a tag read as ``:latest``). When it does, the pod was updated back to
    the image it runs (A → B → A before kubelet restarted it): kubelet restarts it with
    the same image, so no new imageID ever comes, and waiting for one would leave the pod
    Updating, and unavailable, for good."""
    state = state_of(pod)
    if state is None:
        return True
    if grace_of(pod) is not None:
        return False
    last = state.get("lastContainerStatuses") or {}
    if not isinstance(last, dict):
        return True
    spec_images = {c.name: c.image for c in pod.containers}
    statuses = {cs.name: cs for cs in pod.container_statuses}
    for name, before in last.items():
        cs = statuses.get(name)
        if cs is None:
            return False
        before_id = before.get("imageID", "") if isinstance(before, dict) else ""
        if not cs.image_id:
            return False
        if cs.image_id == before_id:
            wanted = spec_images.get(name, "")
            if ":" not in wanted:
                wanted = f"{wanted}:latest"
            if cs.image != wanted:
                return False
        elif spec_images.get(name) and cs.image and cs.image != spec_images[name]:
            return False
    return True


def in_place_condition_false(pod: views_pb2.PodView) -> bool:
    cond = condition(pod, IN_PLACE_UPDATE_READY)
    return cond is not None and cond.status == "False"
