"""Pure kit helpers: the error tree's mappings and configuration parsing."""

from __future__ import annotations

import grpc
import pytest

from services.kit import errors
from services.kit.config import parse_service_config


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
