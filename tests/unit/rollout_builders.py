"""Builders for the rollout service's pure-function tables: each row stays a few lines.

The defaults are OpenKruise's CloneSet test fixtures (``cloneset_sync_utils_test.go``'s
``createTestPod``): a pod is at a revision, in lifecycle state ``Normal``, running and
ready, and not marked for deletion. Every keyword turns one of those off::

    pod(OLD)                                     old revision, Normal, running, ready
    pod(NEW, ready=False)                        Ready condition False (a fresh pod)
    pod(NEW, state=PREPARING_DELETE)             held by a preDelete hook
    pod(OLD, specified_delete=True)              labelled apps.kruise.io/specified-delete
    pod(NEW, in_place_ready=False)               InPlaceUpdateReady False (mid-update)
    pod(NEW, ready_since_ms=NOW - 10 * SECOND)   Ready for 10 s (minReadySeconds rows)
    pod(NEW, deleting=True)                      deletionTimestamp set
    pod(NEW, kruise_pod_ready=False)             KruisePodReady False (markPodNotReady)
    pods(3, OLD)                                 three such pods, named old-0..old-2
    member("bbbbb")                              pod sample-bbbbb, instance id bbbbb
    claim("bbbbb")                               its claim data-sample-bbbbb (Bound)

``OLD`` and ``NEW`` are the current and update revisions; ``NOW`` is every table's
clock. ``clone_set`` builds a CloneSetView for the status rows (``annotations`` and
``paused`` for the rollout API rows); ``cs_status`` the status its controller wrote;
``int_or_str`` a view's IntOrString.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kruise.common.v1 import views_pb2
from services.rollout.pods import (
    IN_PLACE_UPDATE_READY,
    INSTANCE_ID_LABEL,
    KRUISE_POD_READY,
    LIFECYCLE_STATE_LABEL,
    NORMAL,
    REVISION_LABEL,
    SPECIFIED_DELETE_LABEL,
)

NAMESPACE = "default"
CLONE_SET = "sample"
OLD = "sample-67b5f5d4c9"  # the current revision's name
NEW = "sample-7f9d8c6b5d"  # the update revision's name
NOW = 1_700_000_000_000  # unix ms
SECOND = 1000
SELECTOR = {"app": "sample"}


def int_or_str(value: int | str) -> views_pb2.IntOrString:
    if isinstance(value, str):
        return views_pb2.IntOrString(str_value=value)
    return views_pb2.IntOrString(int_value=value)


def pod(
    revision: str = NEW,
    *,
    name: str | None = None,
    state: str = NORMAL,
    ready: bool = True,
    phase: str = "Running",
    ready_since_ms: int = NOW - 3600 * SECOND,
    in_place_ready: bool | None = None,
    kruise_pod_ready: bool | None = None,
    specified_delete: bool = False,
    deleting: bool = False,
    labels: Mapping[str, str] | None = None,
    namespace: str = NAMESPACE,
) -> views_pb2.PodView:
    """One CloneSet pod; ``name`` defaults to ``<old|new|revision>-0``.

    ``state=""`` leaves the lifecycle label off (a pod from before lifecycle states);
    ``in_place_ready`` None leaves the InPlaceUpdateReady condition off (never updated in
    place), ``kruise_pod_ready`` None the KruisePodReady condition. ``ready_since_ms`` is
    the Ready condition's last transition (an hour ago).
    """
    view = views_pb2.PodView(phase=phase)
    view.meta.namespace = namespace
    view.meta.name = name if name is not None else f"{_short(revision)}-0"
    view.meta.uid = f"uid-{view.meta.name}"
    view.meta.creation_unix_ms = NOW - 7200 * SECOND
    view.meta.labels.update(SELECTOR)
    view.meta.labels[REVISION_LABEL] = revision
    if state:
        view.meta.labels[LIFECYCLE_STATE_LABEL] = state
    if specified_delete:
        view.meta.labels[SPECIFIED_DELETE_LABEL] = "true"
    view.meta.labels.update(labels or {})
    if deleting:
        view.meta.deletion_unix_ms = NOW - SECOND
    view.conditions.add(
        type="Ready", status="True" if ready else "False", last_transition_unix_ms=ready_since_ms
    )
    if in_place_ready is not None:
        view.conditions.add(
            type=IN_PLACE_UPDATE_READY, status="True" if in_place_ready else "False"
        )
    if kruise_pod_ready is not None:
        view.conditions.add(type=KRUISE_POD_READY, status="True" if kruise_pod_ready else "False")
    return view


def pods(
    count: int, revision: str = NEW, *, start: int = 0, **kwargs: Any
) -> list[views_pb2.PodView]:
    """``count`` pods like ``pod(revision, **kwargs)``, named ``<old|new>-<start + i>``."""
    prefix = _short(revision)
    return [pod(revision, name=f"{prefix}-{start + i}", **kwargs) for i in range(count)]


def member(instance: str, revision: str = NEW, **kwargs: Any) -> views_pb2.PodView:
    """A pod the CloneSet created: ``sample-<instance>``, labelled with its instance id."""
    labels = {INSTANCE_ID_LABEL: instance, **(kwargs.pop("labels", None) or {})}
    return pod(revision, name=f"{CLONE_SET}-{instance}", labels=labels, **kwargs)


def claim(
    instance: str,
    *,
    template: str = "data",
    deleting: bool = False,
    phase: str = "Bound",
    namespace: str = NAMESPACE,
) -> views_pb2.PersistentVolumeClaimView:
    """The claim ``<template>-sample-<instance>`` of instance ``instance``, as the controller
    made it (selector labels, instance id); ``deleting`` sets its deletionTimestamp."""
    view = views_pb2.PersistentVolumeClaimView(phase=phase)
    view.meta.namespace = namespace
    view.meta.name = f"{template}-{CLONE_SET}-{instance}"
    view.meta.uid = f"uid-{view.meta.name}"
    view.meta.labels.update(SELECTOR)
    view.meta.labels[INSTANCE_ID_LABEL] = instance
    if deleting:
        view.meta.deletion_unix_ms = NOW - SECOND
    return view


def clone_set(
    replicas: int | None = 4,
    *,
    name: str = CLONE_SET,
    partition: int | str | None = None,
    max_unavailable: int | str | None = None,
    max_surge: int | str | None = None,
    scale_max_unavailable: int | str | None = None,
    min_ready_seconds: int = 0,
    pods_to_delete: tuple[str, ...] = (),
    selector: Mapping[str, str] | None = SELECTOR,
    generation: int = 1,
    status: views_pb2.CloneSetStatus | None = None,
    namespace: str = NAMESPACE,
    annotations: Mapping[str, str] | None = None,
    paused: bool = False,
) -> views_pb2.CloneSetView:
    """A CloneSet view; ``replicas=None`` and the IntOrString fields at None leave them unset."""
    view = views_pb2.CloneSetView(min_ready_seconds=min_ready_seconds)
    view.meta.annotations.update(annotations or {})
    view.update_strategy.paused = paused
    view.meta.namespace = namespace
    view.meta.name = name
    view.meta.uid = f"uid-{name}"
    view.meta.generation = generation
    view.meta.resource_version = "100"
    if replicas is not None:
        view.replicas = replicas
    view.selector.match_labels.update(selector or {})
    strategy = view.update_strategy
    for field, value in (
        ("partition", partition),
        ("max_unavailable", max_unavailable),
        ("max_surge", max_surge),
    ):
        if value is not None:
            getattr(strategy, field).CopyFrom(int_or_str(value))
    if scale_max_unavailable is not None:
        view.scale_max_unavailable.CopyFrom(int_or_str(scale_max_unavailable))
    view.pods_to_delete.extend(pods_to_delete)
    if status is not None:
        view.status.CopyFrom(status)
    return view


def cs_status(
    *,
    updated: int,
    updated_ready: int,
    expected: int,
    replicas: int = 10,
    observed_generation: int = 1,
    update_revision: str = NEW,
    current_revision: str = OLD,
) -> views_pb2.CloneSetStatus:
    """The status a CloneSet controller wrote: the counters a rollout tool reads."""
    return views_pb2.CloneSetStatus(
        observed_generation=observed_generation,
        replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        updated_replicas=updated,
        updated_ready_replicas=updated_ready,
        expected_updated_replicas=expected,
        update_revision=update_revision,
        current_revision=current_revision,
    )


def _short(revision: str) -> str:
    return {OLD: "old", NEW: "new"}.get(revision, revision)
