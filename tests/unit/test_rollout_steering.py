"""Steering (services.rollout.steering): request checks, SetPartition and Release plans.

The CloneSet is ``sample`` in ``default`` with 10 replicas, partition "50%", status on
``NEW`` (``rollout_builders``). Each plan row reads as a step a rollout tool takes.
"""

from __future__ import annotations

from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2
from services.rollout import steering
from services.rollout.report import (
    CONTROL_INFO_ANNOTATION,
    REQUEST_ID_ANNOTATION,
    ROLLOUT_ID_ANNOTATION,
)
from services.rollout.steering import (
    Change,
    Refused,
    check_check_batch,
    check_int_or_percent,
    check_ref,
    check_release,
    check_set_partition,
    check_watch,
    plan_release,
    plan_set_partition,
)
from tests.unit.rollout_builders import NEW, clone_set, cs_status

IOP = rollout_pb2.IntOrPercent
Ref = rollout_pb2.WorkloadRef
REF = Ref(namespace="default", name="sample")
CONTROL_INFO = '{"apiVersion":"rollouts.kruise.io/v1beta1","kind":"BatchRelease","name":"demo"}'


def web(
    replicas: int = 10,
    *,
    partition: int | str | None = "50%",
    paused: bool = False,
    **annotations: str,
) -> Any:
    """The CloneSet under steering; annotations by short name: claim, control, request."""
    names = {
        "claim": ROLLOUT_ID_ANNOTATION,
        "control": CONTROL_INFO_ANNOTATION,
        "request": REQUEST_ID_ANNOTATION,
    }
    return clone_set(
        replicas,
        partition=partition,
        paused=paused,
        annotations={names[k]: v for k, v in annotations.items()},
        status=cs_status(updated=5, updated_ready=5, expected=5, replicas=replicas),
    )


def set_partition(partition: int | str | None = None, **fields: Any) -> Any:
    request = rollout_pb2.SetPartitionRequest(ref=fields.pop("ref", REF), **fields)
    if isinstance(partition, int):
        request.partition.count = partition
    elif isinstance(partition, str):
        request.partition.percent = partition
    return request


def release(**fields: Any) -> rollout_pb2.ReleaseRequest:
    return rollout_pb2.ReleaseRequest(ref=fields.pop("ref", REF), **fields)


def refused(reason: str, *, field: str = "", subject: str = "") -> tuple[str, str, str]:
    return (reason, field, subject)


def shape(result: Change | Refused | None) -> object:
    """A Refused as (reason, field, subject); a Change as is; None as None."""
    if isinstance(result, Refused):
        return (result.reason, result.field, result.subject)
    return result


# --- check_ref -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "name_required", "expected"),
    [
        pytest.param(REF, True, None, id="namespace and name"),
        pytest.param(Ref(namespace="default", name="sample", kind="CloneSet",
                         api_version="apps.kruise.io/v1alpha1"), True, None,
                     id="kind and api_version spelled out"),
        pytest.param(Ref(name="sample"), True, refused("INVALID_REQUEST", field="ref.namespace"),
                     id="namespace missing"),
        pytest.param(Ref(namespace="Default", name="sample"), True,
                     refused("INVALID_REQUEST", field="ref.namespace"),
                     id="namespace not a DNS-1123 label"),
        pytest.param(Ref(namespace="a" * 64, name="sample"), True,
                     refused("INVALID_REQUEST", field="ref.namespace"),
                     id="namespace over 63 characters"),
        pytest.param(Ref(namespace="default"), True, refused("INVALID_REQUEST", field="ref.name"),
                     id="name missing"),
        pytest.param(Ref(namespace="default"), False, None, id="name optional (a watch)"),
        pytest.param(Ref(namespace="default", name="web_1"), True,
                     refused("INVALID_REQUEST", field="ref.name"), id="name with an underscore"),
        pytest.param(Ref(namespace="default", name="web.v1"), True, None,
                     id="name a dotted subdomain"),
        pytest.param(Ref(namespace="default", name="sample", kind="Deployment"), True,
                     refused("UNSUPPORTED_KIND", field="ref.kind"), id="a Deployment"),
        pytest.param(Ref(namespace="default", name="sample", api_version="apps/v1"), True,
                     refused("UNSUPPORTED_KIND", field="ref.api_version"), id="apps/v1"),
    ],
)  # fmt: skip
def test_check_ref(ref: rollout_pb2.WorkloadRef, name_required: bool, expected: object) -> None:
    assert shape(check_ref(ref, name_required=name_required)) == expected


def test_messages_name_the_field() -> None:
    result = check_ref(Ref(namespace="default", name="sample", kind="StatefulSet"))
    assert result == Refused(
        "INVALID_ARGUMENT",
        "UNSUPPORTED_KIND",
        "ref.kind 'StatefulSet' is not supported: only CloneSet (apps.kruise.io/v1alpha1) is",
        field="ref.kind",
    )


# --- check_int_or_percent ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        pytest.param(IOP(count=0), "", "", id="count 0"),
        pytest.param(IOP(count=7), "", "", id="count 7"),
        pytest.param(IOP(percent="0%"), "", "", id="0%"),
        pytest.param(IOP(percent="100%"), "", "", id="100%"),
        pytest.param(IOP(percent="007%"), "", "", id="leading zeros"),
        pytest.param(IOP(percent="101%"), "partition.percent", "over 100%", id="101%"),
        pytest.param(IOP(percent="150%"), "partition.percent", "over 100%", id="150%"),
        pytest.param(IOP(percent="50"), "partition.percent", "needs a % (write '50%')", id="50"),
        pytest.param(IOP(count=-1), "partition.count", "must be >= 0", id="count -1"),
        pytest.param(IOP(percent="-1%"), "partition.percent", "integer percent", id="-1%"),
        pytest.param(IOP(percent="abc%"), "partition.percent", "integer percent", id="abc%"),
        pytest.param(IOP(percent="5.5%"), "partition.percent", "integer percent", id="5.5%"),
        pytest.param(IOP(percent=" 5%"), "partition.percent", "integer percent", id="blank"),
        pytest.param(IOP(percent=""), "partition.percent", "integer percent", id="empty percent"),
        pytest.param(IOP(), "partition", "set count or percent", id="empty oneof"),
    ],
)
def test_check_int_or_percent(value: rollout_pb2.IntOrPercent, field: str, message: str) -> None:
    result = check_int_or_percent(value, "partition")
    if not field:
        assert result is None
        return
    assert result is not None
    assert (result.code, result.reason, result.field) == (
        "INVALID_ARGUMENT",
        "INVALID_REQUEST",
        field,
    )
    assert message in result.message and field in result.message


# --- request checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(set_partition("30%"), None, id="a percent"),
        pytest.param(set_partition(paused=True), None, id="paused only"),
        pytest.param(set_partition("150%"), refused("INVALID_REQUEST", field="partition.percent"),
                     id="150%"),
        pytest.param(set_partition(3, ref=Ref(namespace="default")),
                     refused("INVALID_REQUEST", field="ref.name"), id="no name"),
        pytest.param(set_partition(3, rollout_id="r/1"),
                     refused("INVALID_REQUEST", field="rollout_id"), id="rollout id with a slash"),
        pytest.param(set_partition(3, rollout_id="r" * 64),
                     refused("INVALID_REQUEST", field="rollout_id"), id="rollout id too long"),
        pytest.param(set_partition(3, request_id="x" * 253), None, id="request id of 253"),
        pytest.param(set_partition(3, request_id="x" * 254),
                     refused("INVALID_REQUEST", field="request_id"), id="request id of 254"),
    ],
)  # fmt: skip
def test_check_set_partition(request_: rollout_pb2.SetPartitionRequest, expected: object) -> None:
    assert shape(check_set_partition(request_)) == expected


CB = rollout_pb2.CheckBatchRequest


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(CB(ref=REF, desired_updated_replicas=2), None, id="a count"),
        pytest.param(CB(ref=REF, desired_updated_replicas=0), None, id="a count of 0 is set"),
        pytest.param(CB(ref=REF, batch=IOP(percent="20%")), None, id="a batch percent"),
        pytest.param(CB(ref=REF), refused("INVALID_REQUEST", field="desired_updated_replicas"),
                     id="no target"),
        pytest.param(CB(ref=REF, desired_updated_replicas=-1),
                     refused("INVALID_REQUEST", field="desired_updated_replicas"),
                     id="a negative count"),
        pytest.param(CB(ref=REF, batch=IOP(percent="50")),
                     refused("INVALID_REQUEST", field="batch.percent"), id="batch '50'"),
        pytest.param(CB(ref=REF, batch=IOP()), refused("INVALID_REQUEST", field="batch"),
                     id="batch with an empty oneof"),
        pytest.param(CB(ref=REF, batch=IOP(count=2), failure_threshold=IOP(percent="abc%")),
                     refused("INVALID_REQUEST", field="failure_threshold.percent"),
                     id="a bad failure threshold"),
        pytest.param(CB(ref=REF, batch=IOP(count=2), failure_threshold=IOP(count=0)), None,
                     id="failure threshold 0"),
        pytest.param(CB(ref=REF, batch=IOP(count=2), rollout_id="-r"),
                     refused("INVALID_REQUEST", field="rollout_id"), id="a bad rollout id"),
        pytest.param(CB(ref=Ref(namespace="default", name="x", kind="Deployment"),
                        desired_updated_replicas=1),
                     refused("UNSUPPORTED_KIND", field="ref.kind"), id="a Deployment"),
    ],
)  # fmt: skip
def test_check_check_batch(request_: rollout_pb2.CheckBatchRequest, expected: object) -> None:
    assert shape(check_check_batch(request_)) == expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(release(promote=True, rollout_id="r1"), None, id="promote"),
        pytest.param(release(rollout_id="r 1"), refused("INVALID_REQUEST", field="rollout_id"),
                     id="a bad rollout id"),
        pytest.param(release(request_id="x" * 254), refused("INVALID_REQUEST", field="request_id"),
                     id="a long request id"),
        pytest.param(release(ref=Ref(name="sample")),
                     refused("INVALID_REQUEST", field="ref.namespace"), id="no namespace"),
    ],
)  # fmt: skip
def test_check_release(request_: rollout_pb2.ReleaseRequest, expected: object) -> None:
    assert shape(check_release(request_)) == expected


W = rollout_pb2.WatchRolloutStatusRequest
NS = Ref(namespace="default")


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(W(ref=REF), None, id="one CloneSet"),
        pytest.param(W(ref=NS), None, id="a namespace, every CloneSet"),
        pytest.param(W(ref=NS, label_selector="app=web,tier in (a,b),!canary"), None,
                     id="a namespace and a selector"),
        pytest.param(W(ref=Ref(name="sample")), refused("INVALID_REQUEST", field="ref.namespace"),
                     id="no namespace"),
        pytest.param(W(ref=NS, label_selector="replicas>1"),
                     refused("INVALID_REQUEST", field="label_selector"), id="a bad selector"),
        pytest.param(W(ref=REF, label_selector="app=web"),
                     refused("INVALID_REQUEST", field="label_selector"), id="name and selector"),
        pytest.param(W(ref=NS, bookmark_seconds=3600), None, id="bookmarks hourly"),
        pytest.param(W(ref=NS, bookmark_seconds=3601),
                     refused("INVALID_REQUEST", field="bookmark_seconds"), id="bookmarks 3601 s"),
        pytest.param(W(ref=NS, bookmark_seconds=-1),
                     refused("INVALID_REQUEST", field="bookmark_seconds"), id="bookmarks -1 s"),
        pytest.param(W(ref=Ref(namespace="default", kind="Deployment")),
                     refused("UNSUPPORTED_KIND", field="ref.kind"), id="a Deployment"),
    ],
)  # fmt: skip
def test_check_watch(request_: rollout_pb2.WatchRolloutStatusRequest, expected: object) -> None:
    assert shape(check_watch(request_)) == expected


def test_watch_selector_message_is_the_parser_s() -> None:
    result = check_watch(W(ref=NS, label_selector="tier in (a,b"))
    assert result is not None
    assert result.message == "label selector 'tier in (a,b': unbalanced parentheses"


# --- plan_set_partition -----------------------------------------------------------------------


def strategy(**fields: object) -> dict[str, object]:
    return {"spec": {"updateStrategy": fields}}


@pytest.mark.parametrize(
    ("cs", "request_", "expected"),
    [
        pytest.param(web(), set_partition("30%"), strategy(partition="30%"),
                     id="lower 50% → 30% (next batch)"),
        pytest.param(web(), set_partition(3), strategy(partition=3), id="lower 50% → 3 pods"),
        pytest.param(web(), set_partition(5), strategy(partition=5),
                     id="50% → 5: same pods kept, written as a count"),
        pytest.param(web(partition=5), set_partition("50%"), strategy(partition="50%"),
                     id="5 → 50%: same pods kept, written as a percent"),
        pytest.param(web(), set_partition("0%"), strategy(partition="0%"),
                     id="last batch: 0%"),
        pytest.param(web(3, partition=3), set_partition("99%"), strategy(partition="99%"),
                     id="99% of 3 keeps 2 (< 3): a lowering"),
        pytest.param(web(partition=None), set_partition(0), strategy(partition=0),
                     id="null → 0: same pods, written"),
        pytest.param(web(), set_partition(paused=True), strategy(paused=True), id="pause"),
        pytest.param(web(paused=True), set_partition("20%", paused=False),
                     strategy(partition="20%", paused=False), id="lower and resume"),
        pytest.param(web(), set_partition("80%", allow_increase=True), strategy(partition="80%"),
                     id="raise with allow_increase"),
        pytest.param(web(partition=None), set_partition("100%", allow_increase=True),
                     strategy(partition="100%"), id="null → 100% with allow_increase"),
        pytest.param(web(), set_partition("30%", rollout_id="r1", request_id="q1"),
                     {"metadata": {"annotations": {ROLLOUT_ID_ANNOTATION: "r1",
                                                   REQUEST_ID_ANNOTATION: "q1"}},
                      "spec": {"updateStrategy": {"partition": "30%"}}},
                     id="first call claims the rollout, records the request id"),
        pytest.param(web(claim="r1"), set_partition("30%", rollout_id="r1", request_id="q2"),
                     {"metadata": {"annotations": {REQUEST_ID_ANNOTATION: "q2"}},
                      "spec": {"updateStrategy": {"partition": "30%"}}},
                     id="claim already held: not written again"),
        pytest.param(web(), set_partition(rollout_id="r1"),
                     {"metadata": {"annotations": {ROLLOUT_ID_ANNOTATION: "r1"}}},
                     id="claim only"),
        pytest.param(web(claim="r1", request="q0"),
                     set_partition("30%", rollout_id="r1", request_id="q1"),
                     {"metadata": {"annotations": {REQUEST_ID_ANNOTATION: "q1"}},
                      "spec": {"updateStrategy": {"partition": "30%"}}},
                     id="a new request id replaces the last"),
    ],
)  # fmt: skip
def test_plan_set_partition_writes(
    cs: Any, request_: rollout_pb2.SetPartitionRequest, expected: dict[str, object]
) -> None:
    result = plan_set_partition(cs, request_)
    assert isinstance(result, Change)
    assert (result.patch, result.replayed) == (expected, False)


@pytest.mark.parametrize(
    ("cs", "request_", "message"),
    [
        pytest.param(web(4), set_partition("30%", rollout_id="r1"),
                     "partition 50% → 30% (2 of 4 kept); claimed by rollout id 'r1'",
                     id="the first step claims"),
        pytest.param(web(4, claim="r1"), set_partition("30%", rollout_id="r1"),
                     "partition 50% → 30% (2 of 4 kept)",
                     id="a later step of the same rollout does not claim again"),
    ],
)  # fmt: skip
def test_plan_set_partition_says_what_it_writes(
    cs: Any, request_: rollout_pb2.SetPartitionRequest, message: str
) -> None:
    result = plan_set_partition(cs, request_)
    assert isinstance(result, Change)
    assert result.message == message


@pytest.mark.parametrize(
    ("cs", "request_", "message"),
    [
        pytest.param(web(), set_partition("50%"), "partition already 50%", id="same partition"),
        pytest.param(web(paused=True), set_partition("50%", paused=True),
                     "partition already 50%; paused already true", id="same partition, paused"),
        pytest.param(web(claim="r1"), set_partition("50%", rollout_id="r1", request_id="q1"),
                     "partition already 50%; already claimed by rollout id 'r1'",
                     id="same partition, claim held: the request id alone is not written"),
        pytest.param(web(), set_partition(), "nothing to change", id="an empty request"),
    ],
)  # fmt: skip
def test_plan_set_partition_nothing_to_write(
    cs: Any, request_: rollout_pb2.SetPartitionRequest, message: str
) -> None:
    assert plan_set_partition(cs, request_) == Change(None, replayed=False, message=message)


@pytest.mark.parametrize(
    ("cs", "request_", "expected"),
    [
        pytest.param(web(), set_partition("30%", ref=Ref(namespace="default", name="sample",
                                                           uid="uid-old")),
                     refused("UID_CHANGED", subject="metadata.uid"), id="CloneSet made again"),
        pytest.param(web(control=CONTROL_INFO), set_partition("30%", rollout_id="r1"),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{CONTROL_INFO_ANNOTATION}]"),
                     id="Kruise Rollout drives it"),
        pytest.param(web(control="{garbage"), set_partition("30%"),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{CONTROL_INFO_ANNOTATION}]"),
                     id="Kruise Rollout drives it (malformed control-info)"),
        pytest.param(web(claim="r0"), set_partition("30%", rollout_id="r1"),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{ROLLOUT_ID_ANNOTATION}]"),
                     id="another rollout id holds it"),
        pytest.param(web(claim="r0"), set_partition("30%"),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{ROLLOUT_ID_ANNOTATION}]"),
                     id="claimed, and the request has no id"),
        pytest.param(web(), set_partition("30%", expected_update_revision="sample-old"),
                     refused("UPDATE_REVISION_CHANGED", subject="status.updateRevision"),
                     id="the template changed since the plan"),
        pytest.param(web(), set_partition(11), refused("INVALID_REQUEST", field="partition.count"),
                     id="count above spec.replicas"),
        pytest.param(web(), set_partition("80%"),
                     refused("PARTITION_WOULD_RISE", subject="spec.updateStrategy.partition"),
                     id="50% → 80% would keep more"),
        pytest.param(web(), set_partition(6),
                     refused("PARTITION_WOULD_RISE", subject="spec.updateStrategy.partition"),
                     id="50% → 6 would keep more"),
        pytest.param(web(partition=None), set_partition("100%"),
                     refused("PARTITION_WOULD_RISE", subject="spec.updateStrategy.partition"),
                     id="null → 100% would keep more"),
        pytest.param(web(partition="50"), set_partition(1),
                     refused("PARTITION_WOULD_RISE", subject="spec.updateStrategy.partition"),
                     id="an unparsable current partition counts as 0 kept"),
    ],
)  # fmt: skip
def test_plan_set_partition_refuses(
    cs: Any, request_: rollout_pb2.SetPartitionRequest, expected: object
) -> None:
    assert shape(plan_set_partition(cs, request_)) == expected


def test_refusal_messages_carry_the_numbers() -> None:
    rise = plan_set_partition(web(), set_partition("80%"))
    assert isinstance(rise, Refused) and rise.code == "FAILED_PRECONDITION"
    assert "keeps 8 of 10 pods, more than the 5 kept now (50%)" in rise.message
    moved = plan_set_partition(web(), set_partition("30%", expected_update_revision="sample-old"))
    assert isinstance(moved, Refused)
    assert f"{NEW!r}" in moved.message and "'sample-old'" in moved.message
    held = plan_set_partition(web(claim="r0"), set_partition("30%", rollout_id="r1"))
    assert isinstance(held, Refused)
    assert "'r0' holds" in held.message and "Release with rollout_id 'r0'" in held.message


@pytest.mark.parametrize(
    "cs",
    [
        pytest.param(web(request="q1"), id="the same state, a stale expected revision"),
        pytest.param(web(partition="30%", request="q1"), id="after its own write"),
        pytest.param(web(claim="r0", request="q1"), id="even when now held by another id"),
    ],
)
def test_replayed_request_answers_applied(cs: Any) -> None:
    request_ = set_partition(
        "30%", rollout_id="r1", request_id="q1", expected_update_revision="sample-old"
    )
    result = plan_set_partition(cs, request_)
    assert isinstance(result, Change)
    assert (result.patch, result.replayed) == (None, True)


def test_dry_run_plans_the_same_change() -> None:
    wet = plan_set_partition(web(), set_partition("30%", rollout_id="r1"))
    dry = plan_set_partition(web(), set_partition("30%", rollout_id="r1", dry_run=True))
    assert dry == wet


# --- plan_release ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cs", "request_", "expected"),
    [
        pytest.param(web(claim="r1", paused=True), release(rollout_id="r1", promote=True,
                                                           request_id="q9"),
                     {"metadata": {"annotations": {ROLLOUT_ID_ANNOTATION: None,
                                                   REQUEST_ID_ANNOTATION: "q9"}},
                      "spec": {"updateStrategy": {"partition": None, "paused": False}}},
                     id="promote: claim freed, partition cleared, resumed"),
        pytest.param(web(claim="r1"), release(rollout_id="r1"),
                     {"metadata": {"annotations": {ROLLOUT_ID_ANNOTATION: None}}},
                     id="release without promoting keeps partition"),
        pytest.param(web(claim="r0"), release(rollout_id="r1", force=True),
                     {"metadata": {"annotations": {ROLLOUT_ID_ANNOTATION: None}}},
                     id="force frees another id's claim"),
        pytest.param(web(control=CONTROL_INFO), release(force=True, promote=True),
                     {"metadata": {"annotations": {CONTROL_INFO_ANNOTATION: None}},
                      "spec": {"updateStrategy": {"partition": None}}},
                     id="force takes Kruise Rollout's control away"),
        pytest.param(web(), release(promote=True), strategy(partition=None),
                     id="unclaimed: promote"),
        pytest.param(web(partition=None, paused=True), release(promote=True),
                     strategy(paused=False), id="promote only resumes"),
        pytest.param(web(), release(rollout_id="r1", promote=True), strategy(partition=None),
                     id="an id while nobody holds it is fine"),
    ],
)  # fmt: skip
def test_plan_release_writes(
    cs: Any, request_: rollout_pb2.ReleaseRequest, expected: dict[str, object]
) -> None:
    result = plan_release(cs, request_)
    assert isinstance(result, Change)
    assert (result.patch, result.replayed) == (expected, False)


@pytest.mark.parametrize(
    ("cs", "request_", "expected"),
    [
        pytest.param(web(partition=None), release(promote=True),
                     Change(None, message="nothing to release"), id="promoted already"),
        pytest.param(web(), release(request_id="q1"), Change(None, message="nothing to release"),
                     id="no claim, no promote: the request id alone is not written"),
        pytest.param(web(claim="r1", request="q1"), release(rollout_id="r1", request_id="q1"),
                     Change(None, replayed=True, message="request 'q1' was applied before"),
                     id="replay"),
        pytest.param(web(control=CONTROL_INFO, request="q1"), release(request_id="q1"),
                     Change(None, replayed=True, message="request 'q1' was applied before"),
                     id="replay answers before the control check"),
    ],
)  # fmt: skip
def test_plan_release_nothing_to_write(
    cs: Any, request_: rollout_pb2.ReleaseRequest, expected: Change
) -> None:
    assert plan_release(cs, request_) == expected


@pytest.mark.parametrize(
    ("cs", "request_", "expected"),
    [
        pytest.param(web(control=CONTROL_INFO), release(promote=True),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{CONTROL_INFO_ANNOTATION}]"),
                     id="Kruise Rollout drives it, no force"),
        pytest.param(web(claim="r0"), release(rollout_id="r1"),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{ROLLOUT_ID_ANNOTATION}]"),
                     id="another id holds it"),
        pytest.param(web(claim="r0"), release(promote=True),
                     refused("CONTROLLED_BY_OTHER",
                             subject=f"metadata.annotations[{ROLLOUT_ID_ANNOTATION}]"),
                     id="held, and the request has no id"),
        pytest.param(web(claim="r1"),
                     release(rollout_id="r1", ref=Ref(namespace="default", name="sample",
                                                      uid="uid-old")),
                     refused("UID_CHANGED", subject="metadata.uid"), id="CloneSet made again"),
    ],
)  # fmt: skip
def test_plan_release_refuses(
    cs: Any, request_: rollout_pb2.ReleaseRequest, expected: object
) -> None:
    assert shape(plan_release(cs, request_)) == expected


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        pytest.param("12", "10", True, id="newer etcd revision"),
        pytest.param("10", "10", True, id="the same one"),
        pytest.param("9", "10", False, id="an older one"),
        pytest.param("abc", "abc", True, id="opaque versions: only equal"),
        pytest.param("abd", "abc", False, id="opaque versions: different"),
    ],
)
def test_at_least(current: str, wanted: str, expected: bool) -> None:
    assert steering.at_least(current, wanted) is expected


def test_preview_applies_a_plans_patch_to_a_copy() -> None:
    view = views_pb2.CloneSetView()
    view.update_strategy.partition.str_value = "100%"
    view.meta.annotations["drop-me"] = "x"
    after = steering.preview(
        view,
        {
            "metadata": {
                "annotations": {"drop-me": None, "rollout.kruise-mesh.io/rollout-id": "r"}
            },
            "spec": {"updateStrategy": {"partition": 3, "paused": True}},
        },
    )
    assert after.update_strategy.partition.int_value == 3 and after.update_strategy.paused
    assert dict(after.meta.annotations) == {ROLLOUT_ID_ANNOTATION: "r"}
    assert view.update_strategy.partition.str_value == "100%"  # the cached view is untouched
    cleared = steering.preview(view, {"spec": {"updateStrategy": {"partition": None}}})
    assert not cleared.update_strategy.HasField("partition")
