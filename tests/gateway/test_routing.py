"""Routing: static --services parsing, EndpointSlice projection, the Router, and discovery."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.gateway.discovery import (
    EndpointSliceDiscovery,
    SliceEndpoints,
    endpoints_from_slice,
    members_by_service,
)
from services.gateway.hub import ReflectorConfig
from services.gateway.kube.client import KubeClient
from services.gateway.routing import (
    Router,
    format_address,
    parse_service_names,
    parse_static_services,
)
from services.kit.ring import HashRing
from tests.fixtures import REAL_APISERVER
from tests.gateway.test_hub import ensure_namespace

FIXTURE = Path(REAL_APISERVER / "api" / "endpointslice-list-headless-service-2-ready.json")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            "placement=127.0.0.1:7101,127.0.0.1:7102;budget=127.0.0.1:7301",
            {
                "placement": frozenset({"127.0.0.1:7101", "127.0.0.1:7102"}),
                "budget": frozenset({"127.0.0.1:7301"}),
            },
            id="two services, one with two replicas",
        ),
        pytest.param(
            " rollout = 10.0.0.1:7200 , ; ;",
            {"rollout": frozenset({"10.0.0.1:7200"})},
            id="whitespace and empty parts ignored",
        ),
        pytest.param(
            "budget=a:1;budget=b:1",
            {"budget": frozenset({"a:1", "b:1"})},
            id="service named twice gets the union",
        ),
        pytest.param("budget=", {"budget": frozenset()}, id="service with no replicas yet"),
        pytest.param("", {}, id="nothing configured"),
    ],
)
def test_parse_static_services(spec: str, expected: dict[str, frozenset[str]]) -> None:
    assert parse_static_services(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("placement", id="no equals sign"),
        pytest.param("=a:1", id="no service name"),
        pytest.param("budget=a", id="address without port"),
        pytest.param("budget=a:http", id="port not a number"),
        pytest.param("budget=a:70000", id="port out of range"),
    ],
)
def test_parse_static_services_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_static_services(spec)


def test_parse_service_names_as_in_deploy() -> None:
    assert parse_service_names("placement=kruise-mesh-placement,budget=kruise-mesh-budget") == {
        "placement": "kruise-mesh-placement",
        "budget": "kruise-mesh-budget",
    }


@pytest.mark.parametrize(
    ("ip", "port", "expected"),
    [
        pytest.param("10.0.0.1", 7100, "10.0.0.1:7100", id="IPv4"),
        pytest.param("fd00::1", 7100, "[fd00::1]:7100", id="IPv6 bracketed"),
    ],
)
def test_format_address(ip: str, port: int, expected: str) -> None:
    assert format_address(ip, port) == expected


def slice_(
    service: str, *endpoints: tuple[str, bool | None, bool], port: str = "grpc"
) -> dict[str, Any]:
    eps = []
    for address, ready, terminating in endpoints:
        conditions: dict[str, Any] = {"terminating": terminating}
        if ready is not None:
            conditions["ready"] = ready
        eps.append({"addresses": [address], "conditions": conditions})
    return {
        "metadata": {"labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": port, "port": 7100, "protocol": "TCP"}],
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            slice_("svc", ("10.0.0.1", True, False), ("10.0.0.2", True, False)),
            {"10.0.0.1:7100", "10.0.0.2:7100"},
            id="two ready replicas",
        ),
        pytest.param(
            slice_("svc", ("10.0.0.1", True, False), ("10.0.0.2", False, False)),
            {"10.0.0.1:7100"},
            id="not-ready replica left out",
        ),
        pytest.param(
            slice_("svc", ("10.0.0.1", None, False)),
            {"10.0.0.1:7100"},
            id="absent ready condition counts as ready",
        ),
        pytest.param(
            slice_("svc", ("10.0.0.1", True, True)),
            set(),
            id="terminating replica left out",
        ),
        pytest.param(
            slice_("svc", ("10.0.0.1", True, False), port="http"),
            set(),
            id="no port named grpc: nothing",
        ),
    ],
)
def test_endpoints_from_slice(obj: dict[str, Any], expected: set[str]) -> None:
    got = endpoints_from_slice(obj)
    assert got == SliceEndpoints("svc", frozenset(expected))


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixtures absent")
def test_endpoints_from_real_apiserver_slice() -> None:
    body = json.loads(FIXTURE.read_text())["response"]["body"]
    got = endpoints_from_slice(body["items"][0], port_name="http")
    assert got == SliceEndpoints("web", frozenset({"10.244.1.2:80", "10.244.2.2:80"}))


def test_members_by_service_unions_slices_and_lists_empty_services() -> None:
    slices = [
        SliceEndpoints("kruise-mesh-budget", frozenset({"a:1"})),
        SliceEndpoints("kruise-mesh-budget", frozenset({"b:1"})),
        SliceEndpoints("unrelated", frozenset({"c:1"})),
    ]
    services = {"budget": "kruise-mesh-budget", "rollout": "kruise-mesh-rollout"}
    assert members_by_service(slices, services=services) == {
        "budget": frozenset({"a:1", "b:1"}),
        "rollout": frozenset(),
    }


def test_router_owner_and_change_notifications() -> None:
    router = Router({"budget": ["a:1", "b:1"]})
    heard: list[tuple[str, HashRing]] = []
    remove = router.add_listener(lambda service, ring: heard.append((service, ring)))
    assert router.owner("budget", "team-a") in {"a:1", "b:1"}
    assert router.owner("rollout", "team-a") is None
    assert router.set_members("budget", ["b:1", "a:1"]) is False  # same members: no news
    assert router.set_members("budget", ["a:1"]) is True
    assert heard == [("budget", HashRing(["a:1"]))]
    assert router.owner("budget", "team-a") == "a:1"
    remove()
    router.set_members("budget", [])
    assert len(heard) == 1 and router.owner("budget", "team-a") is None


def test_random_review_routing_spreads_budget_reviews_but_keeps_placement_with_its_owner() -> None:
    """Placement decides from its replica's cache (a non-owner would skip the injection);
    the budget reads through the API where it does not own the namespace."""
    members = [f"r{i}:1" for i in range(4)]
    router = Router({"budget": members, "placement": members})
    namespaces = [f"team-{i}" for i in range(40)]
    budget = {router.any_member("budget", ns) for ns in namespaces for _ in range(5)}
    assert budget == set(members)
    for ns in namespaces:
        assert router.any_member("placement", ns) == router.owner("placement", ns)


def slice_body(name: str, service: str, *addresses: str, ready: bool = True) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": "kruise-mesh",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
            "ports": [{"name": "grpc", "port": 7100, "protocol": "TCP"}],
        }
    )


async def test_discovery_follows_endpointslices(kube: KubeClient) -> None:
    await ensure_namespace(kube, "kruise-mesh")
    path = "/apis/discovery.k8s.io/v1/namespaces/kruise-mesh/endpointslices"
    await kube.request("POST", path, body=slice_body("budget-1", "kruise-mesh-budget", "10.0.0.1"))
    await kube.request("POST", path, body=slice_body("other", "something-else", "10.9.9.9"))
    router = Router()
    changes: list[str] = []
    router.add_listener(lambda service, ring: changes.append(service))
    discovery = EndpointSliceDiscovery(
        kube,
        router,
        namespace="kruise-mesh",
        services={"budget": "kruise-mesh-budget", "rollout": "kruise-mesh-rollout"},
        config=ReflectorConfig(read_timeout=10, backoff_initial=0.05),
    )
    await discovery.start()
    try:
        async with asyncio.timeout(5):
            await discovery.wait_synced()
        assert router.ring("budget").members == ("10.0.0.1:7100",)
        assert router.ring("rollout").members == ()
        await kube.request(
            "POST", path, body=slice_body("budget-2", "kruise-mesh-budget", "10.0.0.2")
        )
        async with asyncio.timeout(5):
            while len(router.ring("budget").members) < 2:
                await asyncio.sleep(0.02)
        await kube.request(
            "PUT",
            f"{path}/budget-1",
            body=slice_body("budget-1", "kruise-mesh-budget", "10.0.0.1", ready=False),
        )
        async with asyncio.timeout(5):
            while router.ring("budget").members != ("10.0.0.2:7100",):
                await asyncio.sleep(0.02)
        assert "rollout" in changes or router.ring("rollout").members == ()
    finally:
        await discovery.stop()
