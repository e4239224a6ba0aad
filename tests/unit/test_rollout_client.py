"""The pure parts of the rollout client (services.cli.rollout_client): requests, errors, story."""

from __future__ import annotations

import doctest
import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2 as pb
from services.cli import rollout_client
from services.cli.rollout_client import (
    Conflict,
    FieldViolation,
    InvalidRequest,
    PreconditionFailed,
    PreconditionViolation,
    RolloutError,
    Unavailable,
    VersionExpired,
    WatchEvent,
    WatchStory,
    WorkloadNotFound,
    backoff,
    check_batch_request,
    error_from_status,
    int_or_percent,
    release_request,
    set_partition_request,
)

Watch = pb.WatchRolloutStatusResponse


# --- "50%" and "5" ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("50%", pb.IntOrPercent(percent="50%"), id="a percent"),
        pytest.param("100%", pb.IntOrPercent(percent="100%"), id="all of them"),
        pytest.param(" 05 % ", pb.IntOrPercent(percent="5%"), id="spaces and a leading zero"),
        pytest.param("5", pb.IntOrPercent(count=5), id="a count as text"),
        pytest.param(5, pb.IntOrPercent(count=5), id="a count"),
        pytest.param(0, pb.IntOrPercent(count=0), id="zero: update every pod"),
        pytest.param("150%", pb.IntOrPercent(percent="150%"), id="over 100%: the server says"),
    ],
)
def test_partitions_are_counts_or_percents(value, expected):
    assert int_or_percent(value, field="partition") == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("fifty", id="words"),
        pytest.param("50%%", id="two percent signs"),
        pytest.param("-1", id="a negative count as text"),
        pytest.param("5.5", id="a fraction"),
        pytest.param("", id="nothing"),
        pytest.param(True, id="a bool"),
    ],
)
def test_malformed_partitions_are_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as caught:
        int_or_percent(value, field="partition")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.violations] == ["partition"]


# --- arguments → requests -----------------------------------------------------------------


def test_set_partition_request_leaves_unset_what_is_not_given():
    request = set_partition_request("demo", "web", partition=None)
    assert not request.HasField("partition") and not request.HasField("paused")
    assert (request.ref.namespace, request.ref.name, request.ref.kind) == (
        "demo",
        "web",
        "CloneSet",
    )


def test_set_partition_request_carries_every_argument():
    request = set_partition_request(
        "demo",
        "web",
        partition="50%",
        paused=False,
        rollout_id="r1",
        expected_update_revision="web-abc",
        expected_resource_version="42",
        allow_increase=True,
        dry_run=True,
        request_id="req-1",
    )
    assert request.partition == pb.IntOrPercent(percent="50%")
    assert request.HasField("paused") and request.paused is False
    assert (request.rollout_id, request.expected_update_revision) == ("r1", "web-abc")
    assert (request.expected_resource_version, request.request_id) == ("42", "req-1")
    assert request.allow_increase and request.dry_run


@pytest.mark.parametrize(
    ("kwargs", "target", "threshold"),
    [
        pytest.param({"desired": 5}, ("desired_updated_replicas", 5), None, id="a pod count"),
        pytest.param(
            {"batch": "20%", "failure_threshold": "10%"},
            ("batch", pb.IntOrPercent(percent="20%")),
            pb.IntOrPercent(percent="10%"),
            id="Kruise Rollout's plan: a percent batch and threshold",
        ),
        pytest.param(
            {"batch": 2, "failure_threshold": 0},
            ("batch", pb.IntOrPercent(count=2)),
            pb.IntOrPercent(count=0),
            id="a count batch, no failure tolerated",
        ),
        pytest.param({}, None, None, id="no target: the server decides"),
    ],
)
def test_check_batch_request(kwargs, target, threshold):
    request = check_batch_request("demo", "web", rollout_id="r1", **kwargs)
    if target is None:
        assert request.WhichOneof("target") is None
    else:
        assert request.WhichOneof("target") == target[0]
        assert getattr(request, target[0]) == target[1]
    if threshold is None:
        assert not request.HasField("failure_threshold")
    else:
        assert request.failure_threshold == threshold
    assert request.rollout_id == "r1"


def test_check_batch_refuses_two_targets():
    with pytest.raises(InvalidRequest, match="not both"):
        check_batch_request("demo", "web", desired=5, batch="50%")


def test_release_request():
    request = release_request("demo", "web", promote=True, rollout_id="r1", force=True)
    assert request.promote and request.force and request.rollout_id == "r1"
    assert not request.dry_run


def test_every_method_retries_on_unavailable_and_the_watch_has_no_deadline():
    config = json.loads(rollout_client.service_config(timeout_s=7))
    unary, watch = config["methodConfig"]
    assert {n["method"] for n in unary["name"]} == {
        "GetRolloutStatus",
        "CheckBatch",
        "SetPartition",
        "Release",
    }
    assert unary["timeout"] == "7s"
    assert [n["method"] for n in watch["name"]] == ["WatchRolloutStatus"]
    assert "timeout" not in watch
    assert watch["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_stays_between_half_and_the_ceiling(attempt):
    ceiling = min(2.0, 0.1 * 2**attempt)
    assert ceiling / 2 <= backoff(attempt) <= ceiling


# --- errors -------------------------------------------------------------------------------


def packed(*details) -> status_pb2.Status:
    status = status_pb2.Status()
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        status.details.append(any_detail)
    return status


def info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=rollout_client.DOMAIN, metadata=metadata
    )


@pytest.mark.parametrize(
    ("code", "details", "cls", "reason"),
    [
        pytest.param(
            grpc.StatusCode.NOT_FOUND,
            [info("WORKLOAD_NOT_FOUND")],
            WorkloadNotFound,
            "WORKLOAD_NOT_FOUND",
            id="the CloneSet is gone",
        ),
        pytest.param(
            grpc.StatusCode.INVALID_ARGUMENT,
            [info("UNSUPPORTED_KIND")],
            InvalidRequest,
            "UNSUPPORTED_KIND",
            id="a Deployment",
        ),
        pytest.param(
            grpc.StatusCode.FAILED_PRECONDITION,
            [info("PARTITION_WOULD_RISE")],
            PreconditionFailed,
            "PARTITION_WOULD_RISE",
            id="the partition would rise",
        ),
        pytest.param(
            grpc.StatusCode.ABORTED,
            [info("RESOURCE_VERSION_CHANGED")],
            Conflict,
            "RESOURCE_VERSION_CHANGED",
            id="lost the compare-and-set",
        ),
        pytest.param(
            grpc.StatusCode.ABORTED,
            [info("RESOURCE_VERSION_EXPIRED")],
            VersionExpired,
            "RESOURCE_VERSION_EXPIRED",
            id="a watch version too old",
        ),
        pytest.param(grpc.StatusCode.UNAVAILABLE, [], Unavailable, "", id="no owner yet"),
        pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, [], Unavailable, "", id="too slow"),
        pytest.param(grpc.StatusCode.INTERNAL, [], RolloutError, "", id="anything else"),
    ],
)
def test_codes_and_reasons_become_the_tree(code, details, cls, reason):
    error = error_from_status(code, "msg", packed(*details) if details else None)
    assert type(error) is cls
    assert (error.code, error.reason, str(error)) == (code, reason, "msg")


def test_version_expired_is_a_conflict():
    assert issubclass(VersionExpired, Conflict)


def test_details_are_read_for_a_program():
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="partition.percent", description="150% is over 100%"
            )
        ]
    )
    failed = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="REVISION", subject="demo/web", description="update revision is web-new"
            )
        ]
    )
    status = packed(info("INVALID_REQUEST", field="partition"), bad, failed)
    error = error_from_status(grpc.StatusCode.INVALID_ARGUMENT, "bad partition", status)
    assert error.metadata == {"field": "partition"}
    assert error.violations == (FieldViolation("partition.percent", "150% is over 100%"),)
    assert error.preconditions == (
        PreconditionViolation("REVISION", "demo/web", "update revision is web-new"),
    )
    assert error.describe() == [
        "INVALID_ARGUMENT (INVALID_REQUEST): bad partition",
        "  partition.percent: 150% is over 100%",
        "  REVISION demo/web: update revision is web-new",
    ]


def test_details_that_repeat_the_message_only_name_the_field_or_subject():
    """The rollout API's own shape (services.kit.rich): description == message."""
    message = "partition 80% keeps 8 pods, more than 5 now"
    failed = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="PARTITION_WOULD_RISE",
                subject="spec.updateStrategy.partition",
                description=message,
            )
        ]
    )
    error = error_from_status(
        grpc.StatusCode.FAILED_PRECONDITION, message, packed(info("PARTITION_WOULD_RISE"), failed)
    )
    assert error.describe() == [
        f"FAILED_PRECONDITION (PARTITION_WOULD_RISE): {message}",
        "  spec.updateStrategy.partition",
    ]


def test_a_status_without_details_still_names_its_code():
    error = error_from_status(grpc.StatusCode.UNAVAILABLE, "", None)
    assert str(error) == "UNAVAILABLE" and error.describe() == ["UNAVAILABLE: UNAVAILABLE"]


# --- the watch story ----------------------------------------------------------------------


def status(name: str, updated: int = 0, ns: str = "demo") -> pb.RolloutStatus:
    return pb.RolloutStatus(
        ref=pb.WorkloadRef(namespace=ns, name=name),
        status=views_pb2.CloneSetStatus(updated_replicas=updated),
    )


def added(name, updated=0, version="") -> Watch:
    return Watch(type=Watch.TYPE_ADDED, status=status(name, updated), version=version)


def modified(name, updated=0, version="") -> Watch:
    return Watch(type=Watch.TYPE_MODIFIED, status=status(name, updated), version=version)


def deleted(name, updated=0, version="") -> Watch:
    return Watch(type=Watch.TYPE_DELETED, status=status(name, updated), version=version)


def end(version="") -> Watch:
    return Watch(type=Watch.TYPE_BOOKMARK, version=version, initial_events_end=True)


def bookmark(version="") -> Watch:
    return Watch(type=Watch.TYPE_BOOKMARK, version=version)


def told(events: list[WatchEvent]) -> list[str]:
    """``["ADDED a 0", "BOOKMARK"]``: the story in short."""
    return [
        e.type
        if e.type == "BOOKMARK"
        else f"{e.type} {e.status.ref.name} {e.status.status.updated_replicas}"
        for e in events
    ]


def play(story: WatchStory, *responses: Watch) -> list[str]:
    return told([e for r in responses for e in story.receive(r)])


def test_a_first_listing_is_told_as_it_comes():
    story = WatchStory()
    story.opening()
    assert story.resume_version == ""
    assert play(story, added("a", 0, "1"), added("b", 0, "2"), end("3")) == [
        "ADDED a 0",
        "ADDED b 0",
        "BOOKMARK",
    ]
    assert story.resume_version == "3"
    assert play(story, modified("a", 1, "4"), bookmark("5"), deleted("b", 0, "6")) == [
        "MODIFIED a 1",
        "BOOKMARK",
        "DELETED b 0",
    ]
    assert story.resume_version == "6" and list(story.known) == [("demo", "a")]


def test_a_version_from_inside_a_listing_is_never_resumed():
    story = WatchStory()
    story.opening()
    play(story, added("a", 0, "1"))
    assert story.resume_version == "", "the rest of the listing would be skipped"


def test_replays_after_a_resume_are_not_told_twice():
    story = WatchStory()
    story.opening()
    play(story, added("a", 0, "1"), end("2"), modified("a", 1, "3"))
    story.opening()
    assert story.resume_version == "3"
    # The server replays the last event and an ADDED for what the consumer knows.
    assert play(story, modified("a", 1, "3"), added("a", 2, "4")) == ["MODIFIED a 2"]


@pytest.mark.parametrize(
    ("relisting", "expected"),
    [
        pytest.param(
            [added("a", 1, "10"), added("c", 0, "11"), end("12")],
            ["ADDED c 0", "DELETED b 0", "BOOKMARK"],
            id="a unchanged (skipped), b gone (DELETED), c new (ADDED)",
        ),
        pytest.param(
            [added("a", 2, "10"), added("b", 0, "11"), end("12")],
            ["MODIFIED a 2", "BOOKMARK"],
            id="a changed while we were away (MODIFIED, not ADDED)",
        ),
        pytest.param(
            [end("12")],
            ["DELETED a 1", "DELETED b 0", "BOOKMARK"],
            id="everything gone",
        ),
        pytest.param(
            [added("b", 0, "10"), deleted("b", 0, "11"), end("12")],
            ["DELETED b 0", "DELETED a 1", "BOOKMARK"],
            id="a deletion inside the listing is told once",
        ),
    ],
)
def test_an_expired_version_relists_and_tells_only_the_difference(relisting, expected):
    story = WatchStory()
    story.opening()
    play(story, added("a", 0, "1"), added("b", 0, "2"), end("3"), modified("a", 1, "4"))
    story.expired()
    story.opening()
    assert story.resume_version == ""
    assert play(story, *relisting) == expected
    assert story.resume_version == "12" and not story.listing


def test_a_relisting_broken_halfway_starts_again():
    story = WatchStory()
    story.opening()
    play(story, added("a", 0, "1"), added("b", 0, "2"), end("3"))
    story.expired()
    story.opening()
    play(story, added("b", 0, "10"))  # broken here: b listed, a not yet
    story.opening()
    assert story.resume_version == ""
    assert play(story, added("a", 0, "20"), end("21")) == ["DELETED b 0", "BOOKMARK"]


def test_docstring_examples_hold():
    assert doctest.testmod(rollout_client).failed == 0
