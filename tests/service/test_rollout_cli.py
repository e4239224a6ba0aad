"""``kruise-mesh rollout ...`` run in-process against a scripted rollout API.

Exit codes and the printed lines are the contract (CI and scripts read them): 0 when the
batch is complete, also under a partition (kubectl-kruise never exits there,
kruise-tools#67); 1 with one ``error:`` line and the fields the server names, never a
traceback.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import grpc
import pytest
from rich.console import Console

from kruise.rollout.v1 import rollout_pb2 as pb
from services.cli import rollout_cmd
from tests.service.scripted_rollout import (
    ScriptedRollout,
    Watch,
    end_of_listing,
    event,
    rich_error,
    rollout_status,
    serve,
)

ADDED, MODIFIED, DELETED = Watch.TYPE_ADDED, Watch.TYPE_MODIFIED, Watch.TYPE_DELETED


class Run:
    """One scripted rollout API and the command lines run against it."""

    def __init__(self, far_end: ScriptedRollout, address: str) -> None:
        self.far_end = far_end
        self.address = address
        self.out = ""
        self.err = ""

    async def __call__(self, *argv: str, tty: bool = False) -> int:
        out, err = io.StringIO(), io.StringIO()
        console = Console(file=out, force_terminal=tty, width=200)
        errors = Console(file=err, force_terminal=False, width=200)
        # the scripted far end serves plain text (as a gateway with --api-auth off on
        # loopback): the CLI's behaviour is under test here, not its credentials
        args = rollout_cmd.parse_args([*argv, "--server", self.address, "--plaintext"])
        code = await rollout_cmd.run(args, console=console, errors=errors)
        self.out, self.err = out.getvalue(), err.getvalue()
        assert "Traceback" not in self.out + self.err
        return code

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    far_end = ScriptedRollout()
    server = await serve(far_end)
    yield Run(far_end, f"127.0.0.1:{server.port}")
    await server.stop(grace=0)


def get(status: pb.RolloutStatus) -> pb.GetRolloutStatusResponse:
    return pb.GetRolloutStatusResponse(status=status)


BATCH = {"partition": "50%", "partition_replicas": 5, "expected": 5}
STARTING = rollout_status(**BATCH, updated=1, summary="1/5 updated")
HALFWAY = rollout_status(**BATCH, updated=3, ready=2, summary="3/5 updated, 2 ready")
DONE = rollout_status(**BATCH, updated=5, ready=5, batch_complete=True)


async def test_status_prints_once_and_exits(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    assert await run("status", "demo/web") == 0
    assert run.lines == [
        "demo/web: updated 3/5, ready 2/5 of 10; partition 50% (5); in progress",
    ]
    assert run.far_end.requests["GetRolloutStatus"][0].ref.name == "web"


async def test_status_watch_exits_when_the_batch_under_a_partition_is_complete(run):
    run.far_end.answers["GetRolloutStatus"] = [get(STARTING)]
    run.far_end.watches = [
        [
            event(ADDED, STARTING, "v1"),  # what `get` said: not printed again
            end_of_listing("v2"),
            event(MODIFIED, HALFWAY, "v3"),
            event(MODIFIED, DONE, "v4"),
            event(MODIFIED, rollout_status(updated=9), "v5"),  # never read
        ]
    ]
    assert await run("status", "demo/web", "--watch") == 0
    assert run.lines == [
        "demo/web: updated 1/5, ready 0/5 of 10; partition 50% (5); in progress",
        "demo/web: updated 3/5, ready 2/5 of 10; partition 50% (5); in progress",
        "demo/web: updated 5/5, ready 5/5 of 10; partition 50% (5); batch complete",
    ]
    assert run.err == ""


async def test_status_watch_of_a_complete_batch_exits_at_once(run):
    run.far_end.answers["GetRolloutStatus"] = [get(DONE)]
    assert await run("status", "demo/web", "-w") == 0
    assert len(run.lines) == 1 and run.lines[0].endswith("batch complete")
    assert run.far_end.requests["WatchRolloutStatus"] == []


async def test_status_watch_times_out_with_the_reason(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.watches = [[event(ADDED, HALFWAY, "v1"), end_of_listing("v2")]]
    assert await run("status", "demo/web", "--watch", "--timeout", "300ms") == 1
    assert run.err.strip() == (
        "error: timed out after 0.3s waiting for the batch of demo/web to complete: "
        "3/5 updated, 2 ready"
    )


async def test_status_watch_fails_when_the_cloneset_is_deleted(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.watches = [
        [event(ADDED, HALFWAY, "v1"), end_of_listing("v2"), event(DELETED, HALFWAY, "v3")]
    ]
    assert await run("status", "demo/web", "--watch") == 1
    assert run.err.strip() == "error: CloneSet demo/web was deleted"


async def test_status_watch_fails_when_the_cloneset_is_gone_before_the_watch(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.watches = [[end_of_listing("v2")]]
    assert await run("status", "demo/web", "--watch") == 1
    assert "demo/web was deleted" in run.err


async def test_status_of_a_missing_cloneset_is_one_error_line(run):
    run.far_end.answers["GetRolloutStatus"] = [
        rich_error(
            grpc.StatusCode.NOT_FOUND, "CloneSet demo/web not found", reason="WORKLOAD_NOT_FOUND"
        )
    ]
    assert await run("status", "demo/web") == 1
    assert run.err.splitlines() == [
        "error: NOT_FOUND (WORKLOAD_NOT_FOUND): CloneSet demo/web not found"
    ]


async def test_status_on_a_terminal_is_a_live_view(run):
    run.far_end.answers["GetRolloutStatus"] = [get(STARTING)]
    run.far_end.watches = [
        [event(ADDED, STARTING, "v1"), end_of_listing("v2"), event(MODIFIED, DONE, "v3")]
    ]
    assert await run("status", "demo/web", "--watch", tty=True) == 0
    assert "CloneSet demo/web" in run.out and "batch complete" in run.out


async def test_step_is_preconditioned_on_the_revision_it_read_and_waits(run):
    before = rollout_status(partition="100%", partition_replicas=10, generation=2)
    written = rollout_status(**BATCH, generation=3, observed=2)
    run.far_end.answers["GetRolloutStatus"] = [get(before)]
    run.far_end.answers["SetPartition"] = [
        pb.SetPartitionResponse(status=written, applied=True, patch_json="{}")
    ]
    stale_but_complete = rollout_status(partition="100%", generation=2, batch_complete=True)
    run.far_end.watches = [
        [
            event(ADDED, stale_but_complete, "v1"),  # the replica has not seen the write yet
            end_of_listing("v2"),
            event(MODIFIED, rollout_status(**BATCH, generation=3, updated=2), "v3"),
            event(
                MODIFIED,
                rollout_status(**BATCH, generation=3, updated=5, ready=5, batch_complete=True),
                "v4",
            ),
        ]
    ]
    code = await run("step", "demo/web", "--partition", "50%", "--wait", "--rollout-id", "r1")
    assert code == 0, run.err
    sent = run.far_end.requests["SetPartition"][0]
    assert sent.partition.percent == "50%" and sent.expected_update_revision == "web-new"
    assert sent.rollout_id == "r1" and not sent.allow_increase and not sent.dry_run
    assert run.lines[0] == "demo/web: partition 100% (10) → 50% (5) (revision web-new); applied"
    assert run.lines[-1].endswith("updated 5/5, ready 5/5 of 10; partition 50% (5); batch complete")
    assert len(run.lines) == 4


async def test_step_with_a_bad_partition_prints_the_field_the_server_names(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.answers["SetPartition"] = [
        rich_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "partition: 150% is over 100%",
            reason="INVALID_REQUEST",
            field="partition.percent",
        )
    ]
    assert await run("step", "demo/web", "--partition", "150%") == 1
    assert run.err.splitlines() == [
        "error: INVALID_ARGUMENT (INVALID_REQUEST): partition: 150% is over 100%",
        "  field partition.percent",
    ]
    assert run.out == ""


async def test_step_that_would_raise_the_partition_says_why(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.answers["SetPartition"] = [
        rich_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            "partition 80% keeps 8 pods, more than 5 now",
            reason="PARTITION_WOULD_RISE",
            subject="spec.updateStrategy.partition",
        )
    ]
    assert await run("step", "demo/web", "--partition", "80%") == 1
    assert run.err.splitlines() == [
        "error: FAILED_PRECONDITION (PARTITION_WOULD_RISE): partition 80% keeps 8 pods, "
        "more than 5 now",
        "  spec.updateStrategy.partition",
    ]


async def test_step_dry_run_says_what_it_would_write_and_does_not_wait(run):
    run.far_end.answers["GetRolloutStatus"] = [get(HALFWAY)]
    run.far_end.answers["SetPartition"] = [
        pb.SetPartitionResponse(
            status=rollout_status(partition=2, partition_replicas=2, expected=8),
            applied=True,
            patch_json='{"spec":{"updateStrategy":{"partition":2}}}',
        )
    ]
    assert await run("step", "demo/web", "--partition", "2", "--dry-run", "--wait") == 0
    assert run.far_end.requests["SetPartition"][0].dry_run
    assert run.far_end.requests["SetPartition"][0].partition.count == 2
    assert run.lines == [
        "demo/web: partition 50% (5) → 2 (revision web-new); "
        'dry run, would patch {"spec":{"updateStrategy":{"partition":2}}}'
    ]
    assert run.far_end.requests["WatchRolloutStatus"] == []


@pytest.mark.parametrize(
    ("command", "applied", "line", "paused"),
    [
        pytest.param("pause", True, "demo/web: paused", True, id="pause"),
        pytest.param("pause", False, "demo/web: already paused", True, id="pause twice"),
        pytest.param("resume", True, "demo/web: resumed", False, id="resume"),
    ],
)
async def test_pause_and_resume(run, command, applied, line, paused):
    run.far_end.answers["SetPartition"] = [pb.SetPartitionResponse(applied=applied)]
    assert await run(command, "demo/web", "--rollout-id", "r1") == 0
    assert run.lines == [line]
    sent = run.far_end.requests["SetPartition"][0]
    assert sent.HasField("paused") and sent.paused is paused
    assert not sent.HasField("partition") and sent.rollout_id == "r1"


@pytest.mark.parametrize(
    ("flags", "promote", "line"),
    [
        pytest.param([], True, "demo/web: promoted (partition cleared, unpaused)", id="promote"),
        pytest.param(
            ["--keep-partition"],
            False,
            "demo/web: released, partition 50% (5) kept",
            id="release, keep the partition",
        ),
    ],
)
async def test_promote(run, flags, promote, line):
    run.far_end.answers["Release"] = [
        pb.ReleaseResponse(status=rollout_status(**BATCH), applied=True)
    ]
    assert await run("promote", "demo/web", *flags) == 0
    assert run.lines == [line]
    assert run.far_end.requests["Release"][0].promote is promote


async def test_promote_says_what_the_server_did(run):
    run.far_end.answers["Release"] = [
        pb.ReleaseResponse(applied=True, message="claim released; partition cleared")
    ]
    assert await run("promote", "demo/web", "--rollout-id", "r1") == 0
    assert run.lines == ["demo/web: promoted (claim released; partition cleared)"]
    assert run.far_end.requests["Release"][0].rollout_id == "r1"


async def test_promote_refused_by_another_controller(run):
    run.far_end.answers["Release"] = [
        rich_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            "Kruise Rollout BatchRelease web controls demo/web",
            reason="CONTROLLED_BY_OTHER",
        )
    ]
    assert await run("promote", "demo/web") == 1
    assert "CONTROLLED_BY_OTHER" in run.err and "--force" not in run.out


async def test_an_unreachable_server_is_one_error_line():
    out, err = io.StringIO(), io.StringIO()
    args = rollout_cmd.parse_args(["status", "demo/web", "--server", "127.0.0.1:1"])
    code = await rollout_cmd.run(
        args, console=Console(file=out, width=200), errors=Console(file=err, width=200)
    )
    assert code == 1
    assert err.getvalue().startswith("error: UNAVAILABLE: ")
    assert "(rollout API at 127.0.0.1:1)" in err.getvalue()


def test_the_server_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv("KRUISE_MESH_ROLLOUT_API", raising=False)
    assert rollout_cmd.server_address(None) == "127.0.0.1:7070"
    monkeypatch.setenv("KRUISE_MESH_ROLLOUT_API", "kruise-mesh-rollout-api:7070")
    assert rollout_cmd.server_address(None) == "kruise-mesh-rollout-api:7070"
    assert rollout_cmd.server_address("other:1") == "other:1"
