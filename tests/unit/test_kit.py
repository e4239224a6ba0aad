"""Pure kit helpers: the error tree's mappings and configuration parsing."""

from __future__ import annotations

import grpc
import pytest

from services.kit import errors
from services.kit.config import WorkloadKind, parse_service_config, parse_statefulset_like_kinds


@pytest.mark.parametrize(
    ("status", "reason", "expected", "code"),
    [
        pytest.param(
            404, "NotFound", errors.NotFound, grpc.StatusCode.NOT_FOUND, id="404 missing object"
        ),
        pytest.param(
            409,
            "Conflict",
            errors.Conflict,
            grpc.StatusCode.ABORTED,
            id="409 stale resourceVersion",
        ),
        pytest.param(
            409,
            "AlreadyExists",
            errors.AlreadyExists,
            grpc.StatusCode.ALREADY_EXISTS,
            id="409 already exists",
        ),
        pytest.param(410, "Expired", errors.Conflict, grpc.StatusCode.ABORTED, id="410 relist"),
        pytest.param(
            422, "Invalid", errors.Invalid, grpc.StatusCode.INVALID_ARGUMENT, id="422 invalid"
        ),
        pytest.param(
            400,
            "BadRequest",
            errors.Invalid,
            grpc.StatusCode.INVALID_ARGUMENT,
            id="400 bad request",
        ),
        pytest.param(
            403,
            "Forbidden",
            errors.Forbidden,
            grpc.StatusCode.PERMISSION_DENIED,
            id="403 forbidden",
        ),
        pytest.param(
            429,
            "TooManyRequests",
            errors.TooManyRequests,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            id="429 budget",
        ),
        pytest.param(
            503, "", errors.Unavailable, grpc.StatusCode.UNAVAILABLE, id="503 apiserver down"
        ),
    ],
)
def test_http_status_maps_to_one_error_and_one_grpc_code(status, reason, expected, code):
    error = errors.from_http(status, "msg", reason=reason)
    assert type(error) is expected
    assert error.code == code


def test_service_config_reads_flags_over_environment():
    env = {
        "KRUISE_MESH_GATEWAY": "dns:///gw:7000",
        "POD_IP": "10.1.2.3",
        "KRUISE_MESH_GRPC_PORT": "7100",
    }
    config = parse_service_config("budget", [], env)
    assert config.gateway == "dns:///gw:7000"
    assert config.advertise == "10.1.2.3:7100", "default advertise is POD_IP:port"
    config = parse_service_config("budget", ["--port", "0", "--advertise", "x:1"], env)
    assert (config.port, config.advertise) == (0, "x:1")


def test_service_config_rejects_a_non_numeric_port():
    with pytest.raises(SystemExit):
        parse_service_config("budget", ["--port", "seven"], {})


SHARDSET = WorkloadKind(group="apps.example.io", version="v1", kind="ShardSet")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", (), id="unset: no custom kinds"),
        pytest.param("  ", (), id="only whitespace: no custom kinds"),
        pytest.param("apps.example.io/v1/ShardSet", (SHARDSET,), id="one kind"),
        pytest.param(
            " apps.example.io / v1 / ShardSet ,", (SHARDSET,), id="spaces and a trailing comma"
        ),
        pytest.param(
            "apps.example.io/v1/ShardSet,db.example.io/v1beta1/Ring-Set",
            (SHARDSET, WorkloadKind("db.example.io", "v1beta1", "Ring-Set")),
            id="two kinds keep their order",
        ),
        pytest.param(
            "apps.example.io/v1/ShardSet,apps.example.io/v1/Ledger",
            (SHARDSET, WorkloadKind("apps.example.io", "v1", "Ledger")),
            id="two kinds of one group",
        ),
    ],
)
def test_statefulset_like_kinds_are_parsed(text: str, expected: tuple[WorkloadKind, ...]) -> None:
    assert parse_statefulset_like_kinds(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "apps.example.io/ShardSet",
            "statefulset-like kind 'apps.example.io/ShardSet': expected group/version/Kind",
            id="version missing",
        ),
        pytest.param("ShardSet", "expected group/version/Kind", id="only a Kind"),
        pytest.param("apps.example.io/v1/", "expected group/version/Kind", id="Kind missing"),
        pytest.param("a.io/v1/Shard/x", "expected group/version/Kind", id="four parts"),
        pytest.param(
            "/v1/Pod",
            "the group is empty; core-group kinds are not allowed",
            id="core group kind",
        ),
        pytest.param(
            "Apps.Example.io/v1/ShardSet",
            "group 'Apps.Example.io' is not a lowercase DNS subdomain",
            id="uppercase group",
        ),
        pytest.param(
            "apps.example.io/V1/ShardSet",
            "version 'V1' is not a lowercase DNS label",
            id="uppercase version",
        ),
        pytest.param(
            "apps.example.io/v1/shardSet",
            "Kind 'shardSet' must start with an uppercase letter",
            id="lowercase Kind",
        ),
        pytest.param(
            "apps.example.io/v1/Shard_Set",
            "Kind 'Shard_Set' must start with an uppercase letter and hold only letters",
            id="underscore in Kind",
        ),
        pytest.param(
            "apps.example.io/v1/ShardSet, apps.example.io/v2/ShardSet",
            "statefulset-like kind 'apps.example.io/v2/ShardSet': apps.example.io/ShardSet is "
            "already listed as 'apps.example.io/v1/ShardSet'",
            id="same kind twice at two versions",
        ),
        pytest.param(
            "apps.example.io/v1/ShardSet,apps.example.io/v1/ShardSet",
            "already listed",
            id="exact duplicate",
        ),
    ],
)
def test_malformed_statefulset_like_kind_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^statefulset-like kind ") as caught:
        parse_statefulset_like_kinds(text)
    assert message in str(caught.value)


def test_workload_kind_api_version_and_text() -> None:
    assert SHARDSET.api_version == "apps.example.io/v1"
    assert str(SHARDSET) == "apps.example.io/v1/ShardSet"


async def test_a_signal_is_caught_from_the_moment_the_block_is_entered() -> None:
    """Components enter ``caught_signals`` before printing their ready line: a supervisor
    that signals as soon as it reads the line gets the graceful stop, not a killed process."""
    import asyncio
    import os
    import signal

    from services.kit.rpc import caught_signals

    with caught_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # before anything awaits
        assert await asyncio.wait_for(stop, 2) == signal.SIGTERM
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGTERM), "the handler is gone after the block"
