"""CloneSet status (services.rollout.status, SPEC 2.3): counters, revisions, writes, selector.

Pods come from ``rollout_builders`` (old = current revision, new = update revision,
running, ready for an hour, lifecycle state Normal unless the row says otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from kruise.common.v1 import views_pb2
from services.rollout.pods import PREPARING_DELETE, PREPARING_UPDATE, UPDATED
from services.rollout.status import (
    CloneSetStatus,
    compute_status,
    label_selector_string,
    status_body,
    status_changed,
)
from tests.unit.rollout_builders import NEW, NOW, OLD, SECOND, clone_set, pod, pods

SELECTOR = "app=sample"


def status_of(
    cs: views_pb2.CloneSetView,
    given: list[views_pb2.PodView],
    *,
    current_revision: str = OLD,
) -> CloneSetStatus:
    return compute_status(
        clone_set=cs,
        pods=given,
        update_revision=NEW,
        current_revision=current_revision,
        collision_count=0,
        label_selector=SELECTOR,
        now_ms=NOW,
    )


# --- counters --------------------------------------------------------------------------

ready_for_10s = NOW - 10 * SECOND
ready_for_31s = NOW - 31 * SECOND


@pytest.mark.parametrize(
    ("given", "min_ready_seconds", "counters"),
    [
        pytest.param(
            pod(OLD, ready=False), 0, (1, 0, 0, 0, 0), id="old, not ready → replicas only"
        ),
        pytest.param(pod(OLD), 0, (1, 1, 1, 0, 0), id="old, ready → ready and available"),
        pytest.param(pod(NEW), 0, (1, 1, 1, 1, 1), id="updated and ready → every counter"),
        pytest.param(pod(NEW, ready=False), 0, (1, 0, 0, 1, 0), id="updated, not ready → updated"),
        pytest.param(
            pod(NEW, phase="Pending"), 0, (1, 0, 0, 1, 0), id="Ready True but Pending → not ready"
        ),
        pytest.param(
            pod(NEW, in_place_ready=False),
            0,
            (1, 0, 0, 1, 0),
            id="ready but InPlaceUpdateReady False → not ready, not available",
        ),
        pytest.param(
            pod(NEW, in_place_ready=True), 0, (1, 1, 1, 1, 1), id="InPlaceUpdateReady True → ready"
        ),
        pytest.param(
            pod(NEW, state=PREPARING_DELETE),
            0,
            (1, 1, 0, 1, 1),
            id="PreparingDelete, ready → ready but not available",
        ),
        pytest.param(
            pod(NEW, state=PREPARING_UPDATE),
            0,
            (1, 1, 0, 1, 1),
            id="PreparingUpdate, ready → ready but not available",
        ),
        pytest.param(
            pod(NEW, state=UPDATED), 0, (1, 1, 0, 1, 1), id="Updated, ready → not available"
        ),
        pytest.param(pod(NEW, state=""), 0, (1, 1, 1, 1, 1), id="no lifecycle state → available"),
        pytest.param(
            pod(NEW, ready_since_ms=ready_for_10s),
            30,
            (1, 1, 0, 1, 1),
            id="ready 10s, minReadySeconds 30 → ready, not yet available",
        ),
        pytest.param(
            pod(NEW, ready_since_ms=ready_for_31s),
            30,
            (1, 1, 1, 1, 1),
            id="ready 31s, minReadySeconds 30 → available",
        ),
        pytest.param(
            pod(NEW.rsplit("-", 1)[-1]),
            0,
            (1, 1, 1, 1, 1),
            id="labelled with the short hash → updated",
        ),
    ],
)
def test_counters(
    given: views_pb2.PodView, min_ready_seconds: int, counters: tuple[int, ...]
) -> None:
    """(replicas, readyReplicas, availableReplicas, updatedReplicas, updatedReadyReplicas)."""
    status = status_of(clone_set(1, min_ready_seconds=min_ready_seconds), [given])
    assert (
        status.replicas,
        status.ready_replicas,
        status.available_replicas,
        status.updated_replicas,
        status.updated_ready_replicas,
    ) == counters


# --- revisions and expectedUpdatedReplicas ---------------------------------------------


@pytest.mark.parametrize(
    ("cs", "given", "current", "expected"),
    [
        pytest.param(
            clone_set(4, partition="99%"),
            [pod(NEW), *pods(3, OLD)],
            OLD,
            (OLD, 1),
            id="R4 P99%: 1 of 4 updated → expected 1, current stays (the e2e)",
        ),
        pytest.param(
            clone_set(4, partition="99%"),
            pods(4, OLD),
            OLD,
            (OLD, 1),
            id="R4 P99%: none updated yet → expected 1",
        ),
        pytest.param(
            clone_set(4, partition="99%"),
            pods(4),
            OLD,
            (NEW, 4),
            id="R4 P99%: all 4 updated → current flips, expected all 4",
        ),
        pytest.param(
            clone_set(4, partition="99%"),
            pods(4, ready=False),
            OLD,
            (NEW, 4),
            id="R4: all 4 updated but not ready → current flips anyway",
        ),
        pytest.param(
            clone_set(4),
            [*pods(3), pod(OLD)],
            OLD,
            (OLD, 4),
            id="R4 no partition: 3 of 4 updated → current stays, expected 4",
        ),
        pytest.param(
            clone_set(4, partition=2),
            [*pods(2), *pods(2, OLD)],
            NEW,
            (NEW, 4),
            id="revisions equal (P2) → expected spec.replicas 4",
        ),
        pytest.param(
            clone_set(10, partition="30%"),
            pods(10, OLD),
            OLD,
            (OLD, 7),
            id="R10 P30%, revisions differ → expected 7",
        ),
        pytest.param(
            clone_set(5, partition="50"),
            pods(5, OLD),
            OLD,
            (OLD, 0),
            id="R5 P'50' (invalid) → expected left at 0",
        ),
        pytest.param(
            clone_set(None), [pod(OLD)], OLD, (OLD, 1), id="replicas unset → expected 1 (default)"
        ),
        pytest.param(
            clone_set(4, partition="99%"),
            [],
            OLD,
            (NEW, 4),
            id="no pods → 0 of 0 updated, current flips (v1.2 does)",
        ),
    ],
)
def test_revisions_and_expected(
    cs: views_pb2.CloneSetView,
    given: list[views_pb2.PodView],
    current: str,
    expected: tuple[str, int],
) -> None:
    """(currentRevision, expectedUpdatedReplicas)."""
    status = status_of(cs, given, current_revision=current)
    assert (status.current_revision, status.expected_updated_replicas) == expected


def test_partition_99_percent_of_4_updates_one() -> None:
    """SPEC 2.7's e2e: InPlaceIfPossible, partition 99%, 4 ready pods, one upgraded."""
    cs = clone_set(4, partition="99%", max_unavailable="50%", generation=2)
    assert status_of(cs, [pod(NEW), *pods(3, OLD)]) == CloneSetStatus(
        observed_generation=2,
        replicas=4,
        ready_replicas=4,
        available_replicas=4,
        updated_replicas=1,
        updated_ready_replicas=1,
        expected_updated_replicas=1,
        update_revision=NEW,
        current_revision=OLD,
        collision_count=0,
        label_selector=SELECTOR,
    )


# --- status_changed --------------------------------------------------------------------

WRITTEN = CloneSetStatus(
    observed_generation=2,
    replicas=4,
    ready_replicas=4,
    available_replicas=4,
    updated_replicas=1,
    updated_ready_replicas=1,
    expected_updated_replicas=1,
    update_revision=NEW,
    current_revision=OLD,
    collision_count=0,
    label_selector=SELECTOR,
)


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        pytest.param({}, False, id="nothing differs → no write"),
        pytest.param({"observed_generation": 3}, True, id="observedGeneration grew → write"),
        pytest.param({"observed_generation": 1}, False, id="observedGeneration smaller → no write"),
        pytest.param({"replicas": 5}, True, id="replicas → write"),
        pytest.param({"ready_replicas": 3}, True, id="readyReplicas → write"),
        pytest.param({"available_replicas": 3}, True, id="availableReplicas → write"),
        pytest.param({"updated_replicas": 2}, True, id="updatedReplicas → write"),
        pytest.param({"updated_ready_replicas": 0}, True, id="updatedReadyReplicas → write"),
        pytest.param({"expected_updated_replicas": 4}, True, id="expectedUpdatedReplicas → write"),
        pytest.param({"update_revision": "sample-3"}, True, id="updateRevision → write"),
        pytest.param({"current_revision": NEW}, True, id="currentRevision → write"),
        pytest.param({"label_selector": "app=other"}, True, id="labelSelector → write"),
        pytest.param({"collision_count": 1}, False, id="collisionCount alone → no write"),
    ],
)
def test_status_changed(change: dict[str, object], changed: bool) -> None:
    old = views_pb2.CloneSetStatus(**asdict(WRITTEN))
    assert status_changed(old, replace(WRITTEN, **change)) is changed  # type: ignore[arg-type]


# --- status_body -----------------------------------------------------------------------

READY = {"type": "Progressing", "status": "True", "reason": "CloneSetAvailable"}


@pytest.mark.parametrize(
    ("status", "conditions", "body"),
    [
        pytest.param(
            WRITTEN,
            None,
            {
                "observedGeneration": 2,
                "replicas": 4,
                "readyReplicas": 4,
                "availableReplicas": 4,
                "updatedReplicas": 1,
                "updatedReadyReplicas": 1,
                "expectedUpdatedReplicas": 1,
                "updateRevision": NEW,
                "currentRevision": OLD,
                "collisionCount": 0,
                "labelSelector": SELECTOR,
            },
            id="every field, camelCase",
        ),
        pytest.param(
            replace(WRITTEN, expected_updated_replicas=0),
            None,
            {
                "observedGeneration": 2,
                "replicas": 4,
                "readyReplicas": 4,
                "availableReplicas": 4,
                "updatedReplicas": 1,
                "updatedReadyReplicas": 1,
                "updateRevision": NEW,
                "currentRevision": OLD,
                "collisionCount": 0,
                "labelSelector": SELECTOR,
            },
            id="expectedUpdatedReplicas 0 → left out (omitempty)",
        ),
        pytest.param(
            replace(WRITTEN, collision_count=2),
            [READY],
            {
                "observedGeneration": 2,
                "replicas": 4,
                "readyReplicas": 4,
                "availableReplicas": 4,
                "updatedReplicas": 1,
                "updatedReadyReplicas": 1,
                "expectedUpdatedReplicas": 1,
                "updateRevision": NEW,
                "currentRevision": OLD,
                "collisionCount": 2,
                "conditions": [READY],
                "labelSelector": SELECTOR,
            },
            id="existing conditions are kept",
        ),
        pytest.param(
            CloneSetStatus(0, 0, 0, 0, 0, 0, 0, "", "", 0, ""),
            [],
            {
                "observedGeneration": 0,
                "replicas": 0,
                "readyReplicas": 0,
                "availableReplicas": 0,
                "updatedReplicas": 0,
                "updatedReadyReplicas": 0,
                "collisionCount": 0,
            },
            id="empty strings and conditions → left out, counters and collisionCount stay",
        ),
    ],
)
def test_status_body(
    status: CloneSetStatus, conditions: list[dict[str, str]] | None, body: dict[str, object]
) -> None:
    assert status_body(status, conditions) == body


# --- label_selector_string -------------------------------------------------------------


def selector(
    labels: dict[str, str] | None = None, *expressions: tuple[str, str, list[str]]
) -> views_pb2.LabelSelector:
    view = views_pb2.LabelSelector(match_labels=labels or {})
    for key, operator, values in expressions:
        view.match_expressions.add(key=key, operator=operator, values=values)
    return view


@pytest.mark.parametrize(
    ("given", "text"),
    [
        pytest.param(selector({"app": "web"}), "app=web", id="one label → key=value"),
        pytest.param(selector({"b": "2", "a": "1"}), "a=1,b=2", id="labels sorted by key"),
        pytest.param(selector({"app": ""}), "app=", id="an empty value"),
        pytest.param(
            selector(None, ("env", "In", ["prod", "dev"])),
            "env in (dev,prod)",
            id="In → key in (values sorted)",
        ),
        pytest.param(
            selector(None, ("env", "NotIn", ["qa"])), "env notin (qa)", id="NotIn → key notin (v)"
        ),
        pytest.param(selector(None, ("gpu", "Exists", [])), "gpu", id="Exists → key"),
        pytest.param(
            selector(None, ("spot", "DoesNotExist", [])), "!spot", id="DoesNotExist → !key"
        ),
        pytest.param(
            selector({"app": "web"}, ("tier", "In", ["db", "cache"])),
            "app=web,tier in (cache,db)",
            id="labels and expressions, comma-joined",
        ),
        pytest.param(
            selector({"z": "1"}, ("zone", "Exists", []), ("a", "DoesNotExist", [])),
            "!a,z=1,zone",
            id="labels and expressions sorted together by key",
        ),
        pytest.param(
            selector({"app": "web"}, ("app", "NotIn", ["db"])),
            "app=web,app notin (db)",
            id="same key: the label first, then the expression",
        ),
        pytest.param(
            selector({"apps.kruise.io/name": "x"}), "apps.kruise.io/name=x", id="a prefixed key"
        ),
        pytest.param(selector(), "<none>", id="empty selector → <none>"),
        pytest.param(selector(None, ("env", "Like", ["a"])), "<error>", id="unknown operator"),
        pytest.param(selector(None, ("env", "In", [])), "<error>", id="In without values"),
        pytest.param(selector(None, ("gpu", "Exists", ["1"])), "<error>", id="Exists with values"),
        pytest.param(selector({"-app": "web"}), "<error>", id="invalid key"),
        pytest.param(selector({"Bad_/app": "web"}), "<error>", id="invalid key prefix"),
        pytest.param(selector({"app": "a b"}), "<error>", id="invalid value"),
        pytest.param(selector(None, ("env", "In", ["x" * 64])), "<error>", id="value over 63"),
    ],
)
def test_label_selector_string(given: views_pb2.LabelSelector, text: str) -> None:
    assert label_selector_string(given) == text
