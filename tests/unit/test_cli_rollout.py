"""The pure parts of ``kruise-mesh rollout`` (services.cli.rollout_cmd): arguments and lines."""

from __future__ import annotations

import argparse
import doctest

import pytest

from kruise.common.v1 import views_pb2
from kruise.rollout.v1 import rollout_pb2 as pb
from services.cli import rollout_cmd
from services.cli.rollout_cmd import batch_done, parse_duration, parse_ref, status_line


@pytest.mark.parametrize("text", ["web", "/web", "demo/", "a/b/c", ""])
def test_a_ref_is_namespace_slash_name(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_ref(text)


@pytest.mark.parametrize("text", ["10", "10m", "1h30m", "0.5s", "250ms"])
def test_durations(text):
    assert parse_duration(text) > 0


@pytest.mark.parametrize("text", ["ten minutes", "10x", "m", "10m junk"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["50%", "5", "0", "100%"])
def test_partition_flag_accepts_counts_and_percents(text):
    assert rollout_cmd.partition_arg(text) == text


@pytest.mark.parametrize("text", ["half", "5.5", "-1", "50%%"])
def test_partition_flag_refuses_the_rest(text):
    with pytest.raises(argparse.ArgumentTypeError):
        rollout_cmd.partition_arg(text)


def clone_set(**fields) -> pb.RolloutStatus:
    status = pb.RolloutStatus(
        ref=pb.WorkloadRef(namespace="demo", name="web"),
        generation=fields.pop("generation", 3),
        spec_replicas=10,
        status=views_pb2.CloneSetStatus(
            observed_generation=fields.pop("observed", 3),
            updated_replicas=fields.pop("updated", 0),
            updated_ready_replicas=fields.pop("ready", 0),
            expected_updated_replicas=fields.pop("expected", 5),
        ),
        **fields,
    )
    return status


def test_a_status_line_says_everything_a_reader_needs():
    status = clone_set(
        updated=3,
        ready=2,
        partition=pb.IntOrPercent(percent="50%"),
        partition_replicas=5,
        paused=True,
        lifecycle=pb.LifecycleCounts(normal=8, preparing_delete=1, updating=1),
        held_not_ready=["web-x"],
        controlled_by=pb.ControlledBy(
            kruise_rollout=pb.KruiseRolloutControl(kind="BatchRelease", name="web")
        ),
    )
    assert status_line(status) == (
        "demo/web: updated 3/5, ready 2/5 of 10; partition 50% (5); paused; "
        "lifecycle Updating 1, PreparingDelete 1; held NotReady: web-x; "
        "controlled by Kruise Rollout (BatchRelease web); in progress"
    )


@pytest.mark.parametrize(
    ("status", "line_ends"),
    [
        pytest.param(clone_set(generation=4), "generation 4", id="spec not yet observed"),
        pytest.param(clone_set(batch_complete=True), "batch complete", id="batch done"),
        pytest.param(
            clone_set(batch_complete=True, rollout_complete=True),
            "rollout complete",
            id="all done",
        ),
        pytest.param(
            clone_set(controlled_by=pb.ControlledBy(rollout_id="r1")),
            "controlled by rollout id r1; in progress",
            id="claimed by a tool",
        ),
    ],
)
def test_status_line_states(status, line_ends):
    assert status_line(status).endswith(line_ends)


def test_a_status_line_without_a_partition():
    assert "; partition none;" in status_line(clone_set())


@pytest.mark.parametrize(
    ("status", "min_generation", "done"),
    [
        pytest.param(clone_set(batch_complete=True), 0, True, id="complete"),
        pytest.param(clone_set(batch_complete=False), 0, False, id="in progress"),
        pytest.param(
            clone_set(batch_complete=True, generation=2, observed=2),
            3,
            False,
            id="complete, but from before our write (step 2/3)",
        ),
        pytest.param(
            clone_set(batch_complete=True, generation=3, observed=3),
            3,
            True,
            id="complete after our write (step 3/3)",
        ),
    ],
)
def test_batch_done(status, min_generation, done):
    assert batch_done(status, min_generation=min_generation) is done


def test_docstring_examples_hold():
    assert doctest.testmod(rollout_cmd).failed == 0
