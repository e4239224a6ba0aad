"""The rollout client against a real grpc.aio server playing a script (the far end).

The watch must survive what the rollout API does to it in real life: a stream broken
mid-way (the replica serving it restarted: UNAVAILABLE, or the connection dropped), a
resume the new replica cannot serve (ABORTED, RESOURCE_VERSION_EXPIRED), then a fresh
listing; the consumer must see one continuous story.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from kruise.rollout.v1 import rollout_pb2 as pb
from services.cli.rollout_client import (
    InvalidRequest,
    PreconditionFailed,
    RolloutClient,
    VersionExpired,
    WatchEvent,
    WorkloadNotFound,
)
from tests.service.scripted_rollout import (
    END,
    Fail,
    ScriptedRollout,
    Watch,
    end_of_listing,
    event,
    rich_error,
    rollout_status,
    serve,
)

ADDED, MODIFIED, DELETED = Watch.TYPE_ADDED, Watch.TYPE_MODIFIED, Watch.TYPE_DELETED


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedRollout, RolloutClient]]:
    far_end = ScriptedRollout()
    server = await serve(far_end)
    client = RolloutClient.connect(f"127.0.0.1:{server.port}", timeout=5)
    yield far_end, client
    await client.close()
    await server.stop(grace=0)


async def take(events, count: int) -> list[str]:
    """The next ``count`` events, in short: ``"MODIFIED a 1"``."""
    told: list[str] = []
    async with asyncio.timeout(15):
        while len(told) < count:
            e: WatchEvent = await anext(events)
            told.append(
                e.type
                if e.type == "BOOKMARK"
                else f"{e.type} {e.status.ref.name} {e.status.status.updated_replicas}"
            )
    return told


def first_listing(last: str = "v5") -> list[Watch]:
    return [
        event(ADDED, rollout_status("a"), "v1"),
        event(ADDED, rollout_status("b"), "v2"),
        event(ADDED, rollout_status("d"), "v3"),
        end_of_listing("v4"),
        event(MODIFIED, rollout_status("a", updated=1), last),
    ]


def relisting() -> list[Watch]:
    return [
        event(ADDED, rollout_status("a", updated=1), "v20"),  # as the consumer knows it
        event(ADDED, rollout_status("d", updated=2), "v21"),  # changed meanwhile
        event(ADDED, rollout_status("c"), "v22"),  # new
        end_of_listing("v23"),  # b is gone
        event(MODIFIED, rollout_status("c", updated=1), "v24"),
    ]


STORY_BEFORE = ["ADDED a 0", "ADDED b 0", "ADDED d 0", "MODIFIED a 1"]
STORY_AFTER = ["MODIFIED d 2", "ADDED c 0", "DELETED b 0", "MODIFIED c 1"]


async def test_a_watch_resumes_then_relists_and_the_story_stays_continuous(scripted):
    far_end, client = scripted
    expired = rich_error(
        grpc.StatusCode.ABORTED,
        "version v5 was issued by another replica",
        reason="RESOURCE_VERSION_EXPIRED",
    )
    far_end.watches = [
        [*first_listing(), Fail(rich_error(grpc.StatusCode.UNAVAILABLE, "replica restarting"))],
        [Fail(expired)],
        relisting(),
    ]
    async with contextlib.aclosing(client.watch("demo", label_selector="app=web")) as events:
        assert await take(events, 8) == STORY_BEFORE + STORY_AFTER
    asked = far_end.requests["WatchRolloutStatus"]
    assert [r.resume_version for r in asked] == ["", "v5", ""]
    assert {(r.ref.namespace, r.label_selector) for r in asked} == {("demo", "app=web")}


async def test_a_watch_survives_its_server_going_away():
    """The process serving the stream dies; another comes up at the same address and
    cannot resume from v5."""
    first = ScriptedRollout()
    first.watches = [first_listing()]
    server = await serve(first)
    port = server.port
    client = RolloutClient.connect(f"127.0.0.1:{port}", timeout=5)
    events = client.watch("demo")
    second = ScriptedRollout()
    second.watches = [
        [Fail(rich_error(grpc.StatusCode.ABORTED, "too old", reason="RESOURCE_VERSION_EXPIRED"))],
        relisting(),
    ]
    try:
        assert await take(events, 4) == STORY_BEFORE
        await server.stop(grace=0)
        await asyncio.sleep(0.3)  # the client finds the connection gone and retries
        server = await serve(second, port=port)
        assert await take(events, 4) == STORY_AFTER
    finally:
        await events.aclose()
        await client.close()
        await server.stop(grace=0)
    assert [r.resume_version for r in second.requests["WatchRolloutStatus"]] == ["v5", ""]


async def test_a_clean_end_of_stream_is_resumed_from_the_last_version(scripted):
    far_end, client = scripted
    far_end.watches = [
        [*first_listing(), END],
        [event(DELETED, rollout_status("b"), "v6")],
    ]
    async with contextlib.aclosing(client.watch("demo", bookmarks=True)) as events:
        assert await take(events, 6) == [
            "ADDED a 0",
            "ADDED b 0",
            "ADDED d 0",
            "BOOKMARK",
            "MODIFIED a 1",
            "DELETED b 0",
        ]
    assert [r.resume_version for r in far_end.requests["WatchRolloutStatus"]] == ["", "v5"]


async def test_a_watch_error_resuming_cannot_fix_is_raised(scripted):
    far_end, client = scripted
    far_end.watches = [
        [
            Fail(
                rich_error(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "bad selector",
                    field="label_selector",
                )
            )
        ]
    ]
    with pytest.raises(InvalidRequest) as caught:
        async with contextlib.aclosing(client.watch("demo", label_selector="a in")) as events:
            await anext(events)
    assert caught.value.violations[0].field == "label_selector"


async def test_an_expired_version_without_a_version_is_not_looped_on(scripted):
    far_end, client = scripted
    expired = rich_error(grpc.StatusCode.ABORTED, "no", reason="RESOURCE_VERSION_EXPIRED")
    far_end.watches = [[Fail(expired)]]
    with pytest.raises(VersionExpired):
        async with contextlib.aclosing(client.watch("demo")) as events:
            await anext(events)


async def test_unary_calls_send_what_they_are_given_and_raise_typed_errors(scripted):
    far_end, client = scripted
    far_end.answers["GetRolloutStatus"] = [pb.GetRolloutStatusResponse(status=rollout_status())]
    got = await client.get("demo", "web", min_resource_version="7")
    assert got.ref.name == "web"
    assert far_end.requests["GetRolloutStatus"][0].min_resource_version == "7"

    far_end.answers["SetPartition"] = [
        rich_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the update revision is web-newer, not web-new",
            reason="UPDATE_REVISION_CHANGED",
            metadata={"updateRevision": "web-newer"},
        )
    ]
    with pytest.raises(PreconditionFailed) as caught:
        await client.set_partition(
            "demo", "web", partition="50%", expected_update_revision="web-new"
        )
    assert caught.value.reason == "UPDATE_REVISION_CHANGED"
    assert caught.value.metadata == {"updateRevision": "web-newer"}
    sent = far_end.requests["SetPartition"][0]
    assert sent.partition.percent == "50%" and sent.expected_update_revision == "web-new"
    assert uuid.UUID(sent.request_id), "a fresh idempotency key"

    far_end.answers["Release"] = [
        rich_error(
            grpc.StatusCode.NOT_FOUND, "CloneSet demo/web not found", reason="WORKLOAD_NOT_FOUND"
        )
    ]
    with pytest.raises(WorkloadNotFound):
        await client.release("demo", "web", promote=True)
    assert far_end.requests["Release"][0].request_id

    far_end.answers["CheckBatch"] = [pb.CheckBatchResponse(ready=True, reason="batch ready")]
    answer = await client.check_batch("demo", "web", batch="20%", failure_threshold=1)
    assert answer.ready
    sent_check = far_end.requests["CheckBatch"][0]
    assert sent_check.batch.percent == "20%" and sent_check.failure_threshold.count == 1


async def test_a_retried_write_keeps_its_idempotency_key(scripted):
    """UNAVAILABLE before an answer: gRPC retries the same request, request_id and all."""
    far_end, client = scripted
    far_end.answers["SetPartition"] = [
        rich_error(grpc.StatusCode.UNAVAILABLE, "owner moving"),
        pb.SetPartitionResponse(applied=True),
    ]
    answer = await client.set_partition("demo", "web", partition=5)
    assert answer.applied
    keys = [r.request_id for r in far_end.requests["SetPartition"]]
    assert len(keys) == 2 and keys[0] == keys[1]
