"""Custom StatefulSet-like kinds: the pure CRD → /scale paths decision, then against the sandbox:
the kinds resolved from their CRDs, the hub delivering them as workloads, unusable kinds skipped
with a warning, the gateway's wiring, and its configuration flag."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest

from kruise.common.v1 import mesh_pb2
from services.gateway.app import Leading
from services.gateway.config import GatewayConfig, parse_gateway_config
from services.gateway.hub import ADDED, MODIFIED, WATCHED, Hub, HubEvent, ReflectorConfig, WatchSpec
from services.gateway.kube.client import KubeClient
from services.gateway.kube.discovery import Resource
from services.gateway.routing import Router
from services.gateway.statefulset_like import (
    CRD_PATH,
    Unusable,
    crd_scale_paths,
    resolve_statefulset_like,
)
from services.kit import errors
from services.kit.config import WorkloadKind
from services.kit.projection import ScalePaths

FAST = ReflectorConfig(
    timeout_seconds=30, read_timeout=10.0, retry_unserved=0.3, backoff_initial=0.05, backoff_max=0.2
)
SHARDSET = WorkloadKind(group="apps.example.io", version="v1", kind="ShardSet")
LEDGER = WorkloadKind(group="apps.example.io", version="v1", kind="Ledger")  # CRD without /scale
ABSENT = WorkloadKind(group="absent.example.io", version="v1", kind="Ghost")  # no CRD at all
SHARD_SCALE = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}
SHARDS = "/apis/apps.example.io/v1/namespaces/team-a/shardsets"


def crd(
    *,
    plural: str,
    kind: str,
    group: str = "apps.example.io",
    versions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A CustomResourceDefinition body; by default one served version v1 with status and scale."""
    if versions is None:
        versions = [version("v1", scale=SHARD_SCALE)]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind},
            "versions": versions,
        },
    }


def version(
    name: str, *, scale: dict[str, str] | None = None, served: bool = True
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale is not None:
        subresources["scale"] = scale
    return {
        "name": name,
        "served": served,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
        "subresources": subresources,
    }


# -- pure: which CRDs can be watched, and through which paths ------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            crd(plural="shardsets", kind="ShardSet"),
            ScalePaths(".spec.replicas", ".status.selector", ".status.replicas"),
            id="served v1 with /scale",
        ),
        pytest.param(
            crd(
                plural="shardsets",
                kind="ShardSet",
                versions=[
                    version("v1beta1", served=False),
                    version("v1", scale={"specReplicasPath": ".spec.size"}),
                ],
            ),
            ScalePaths(".spec.size", "", ".status.replicas"),
            id="the configured version among several; no labelSelectorPath",
        ),
        pytest.param(
            crd(plural="shardsets", kind="ShardSet", versions=[version("v1")]),
            Unusable("has no /scale subresource"),
            id="no /scale subresource",
        ),
        pytest.param(
            crd(plural="shardsets", kind="ShardSet", versions=[version("v2", scale=SHARD_SCALE)]),
            Unusable("has no version v1 (versions: v2)"),
            id="configured version absent",
        ),
        pytest.param(
            crd(
                plural="shardsets",
                kind="ShardSet",
                versions=[version("v1", scale=SHARD_SCALE, served=False)],
            ),
            Unusable("is not served at version v1"),
            id="configured version no longer served",
        ),
        pytest.param(
            crd(
                plural="shardsets",
                kind="ShardSet",
                versions=[version("v1", scale={"labelSelectorPath": ".status.selector"})],
            ),
            Unusable("has a /scale subresource without a usable specReplicasPath"),
            id="scale without specReplicasPath",
        ),
        pytest.param(
            crd(plural="shardsets", kind="ShardSet", group="other.example.io"),
            Unusable(
                "is not what CRD 'shardsets.other.example.io' defines (other.example.io/ShardSet)"
            ),
            id="CRD of another group",
        ),
        pytest.param({}, Unusable("is not what CRD '' defines (None/None)"), id="empty document"),
    ],
)
def test_crd_scale_paths(body: dict[str, Any], expected: ScalePaths | Unusable) -> None:
    assert crd_scale_paths(body, wanted=SHARDSET) == expected


# -- against the sandbox --------------------------------------------------------------------------


async def install(kube: KubeClient, body: dict[str, Any]) -> None:
    await kube.request("POST", CRD_PATH, body=orjson.dumps(body))


@pytest.fixture
async def crds(kube: KubeClient) -> AsyncIterator[KubeClient]:
    """The sandbox with CRDs ShardSet (/scale) and Ledger (no /scale), and namespace team-a."""
    await install(kube, crd(plural="shardsets", kind="ShardSet"))
    await install(kube, crd(plural="ledgers", kind="Ledger", versions=[version("v1")]))
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    await kube.request("POST", "/api/v1/namespaces", body=orjson.dumps(namespace))
    yield kube


async def create_shardset(kube: KubeClient, name: str, *, replicas: int) -> dict[str, Any]:
    body = {
        "apiVersion": "apps.example.io/v1",
        "kind": "ShardSet",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}}},
    }
    created: dict[str, Any] = orjson.loads(
        await kube.request("POST", SHARDS, body=orjson.dumps(body))
    )
    return created


async def next_event(sub: Any, *, timeout: float = 5.0) -> HubEvent:
    async with asyncio.timeout(timeout):
        event: HubEvent = await sub.get()
        return event


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings of services.gateway.statefulset_like (not the hub's own)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "services.gateway.statefulset_like"
    ]


async def test_hub_delivers_a_shardset_as_a_workload(
    crds: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    kube = crds
    existing = await create_shardset(kube, "db", replicas=3)
    with caplog.at_level(logging.INFO, logger="services.gateway.statefulset_like"):
        specs = await resolve_statefulset_like(kube, [SHARDSET, LEDGER, ABSENT])
    assert specs == [
        WatchSpec(
            "apps.example.io/v1",
            "ShardSet",
            scale=ScalePaths(".spec.replicas", ".status.selector", ".status.replicas"),
        )
    ]
    assert warnings(caplog) == [
        "statefulset-like kind apps.example.io/Ledger has no /scale subresource; not watched",
        "statefulset-like kind absent.example.io/Ghost is not served at absent.example.io/v1 "
        "(no such CustomResourceDefinition or version); not watched",
    ]
    hub = Hub(kube, kinds=specs, config=FAST, freeze_gc=False)
    async with hub:
        async with asyncio.timeout(10):
            await hub.wait_synced()
        (listed,) = hub.snapshot([mesh_pb2.KIND_WORKLOAD], owns=lambda ns: True)
        view = listed.view.workload
        assert (view.api_version, view.kind, view.meta.namespace, view.meta.name) == (
            "apps.example.io/v1",
            "ShardSet",
            "team-a",
            "db",
        )
        assert (view.meta.uid, view.spec_replicas) == (existing["metadata"]["uid"], 3)

        with hub.subscribe([mesh_pb2.KIND_WORKLOAD]) as sub:
            created = await create_shardset(kube, "cache", replicas=2)
            added = await next_event(sub)
            assert (added.type, added.name) == (ADDED, "cache")
            assert added.view.workload.meta.uid == created["metadata"]["uid"]
            assert added.view.workload.spec_replicas == 2
            # Scaled through /scale (specReplicasPath), the status written through /status.
            await kube.request(
                "PATCH",
                f"{SHARDS}/cache/scale",
                body=orjson.dumps({"spec": {"replicas": 5}}),
                content_type="application/merge-patch+json",
            )
            scaled = await next_event(sub)
            assert (scaled.type, scaled.view.workload.spec_replicas) == (MODIFIED, 5)
            await kube.request(
                "PATCH",
                f"{SHARDS}/cache/status",
                body=orjson.dumps({"status": {"replicas": 5, "selector": "app=cache"}}),
                content_type="application/merge-patch+json",
            )
            status = (await next_event(sub)).view.workload
            assert status.status_replicas == 5
            assert dict(status.selector.match_labels) == {"app": "cache"}


class ForbidList:
    """The sandbox's client, except that listing ``resource`` answers 403 as RBAC would."""

    def __init__(self, kube: KubeClient, resource: str) -> None:
        self.kube = kube
        self.resource = resource

    async def resolve(self, *, api_version: str, kind: str) -> Resource:
        return await self.kube.resolve(api_version=api_version, kind=kind)

    def path(self, res: Resource, **kw: Any) -> str:
        return self.kube.path(res, **kw)

    async def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, **kw: Any
    ) -> bytes:
        if method == "GET" and path.endswith(f"/{self.resource}"):
            raise errors.Forbidden(f'{self.resource} is forbidden: cannot list resource "{path}"')
        return await self.kube.request(method, path, query=query, **kw)

    def watch_lines(self, path: str, **kw: Any) -> AsyncIterator[bytes]:
        return self.kube.watch_lines(path, **kw)


async def test_kind_the_gateway_may_not_list_is_not_watched(
    crds: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Watched, it would never sync, and every replica's first snapshot waits for all kinds.
    forbidding = ForbidList(crds, "shardsets")
    with caplog.at_level(logging.WARNING):
        assert await resolve_statefulset_like(forbidding, [SHARDSET]) == []
    (warning,) = warnings(caplog)
    assert warning.startswith("statefulset-like kind apps.example.io/ShardSet cannot be listed")
    assert "kruise-mesh-gateway-workloads" in warning


async def test_builtin_kind_listed_again_is_not_watched_twice(
    crds: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    kruise_sts = WorkloadKind(group="apps.kruise.io", version="v1beta1", kind="StatefulSet")
    with caplog.at_level(logging.WARNING):
        assert await resolve_statefulset_like(crds, [kruise_sts]) == []
    assert warnings(caplog) == [
        "statefulset-like kind apps.kruise.io/StatefulSet is a built-in kind, watched already; "
        "not watched"
    ]


async def test_gateway_hub_watches_the_configured_kinds(
    crds: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    await create_shardset(crds, "db", replicas=4)
    config = GatewayConfig(statefulset_like=(SHARDSET, LEDGER, ABSENT))
    leading = Leading(kube=crds, router=Router(), config=config)
    with caplog.at_level(logging.WARNING):
        await leading.start()
    try:
        assert leading.hub is not None
        watched = [(r.api_version, r.kind) for r in leading.hub.reflectors]
        assert watched == [
            *((w.api_version, w.kind) for w in WATCHED),
            ("apps.example.io/v1", "ShardSet"),
        ]
        async with asyncio.timeout(10):
            await leading.hub.wait_synced()  # the kinds left out hold nothing back
        in_team_a = leading.hub.snapshot([mesh_pb2.KIND_WORKLOAD], owns=lambda ns: ns == "team-a")
        shards = [e.view.workload for e in in_team_a]
        assert [(w.kind, w.meta.name, w.spec_replicas) for w in shards] == [("ShardSet", "db", 4)]
        assert [w.split(" ")[2] for w in warnings(caplog)] == [
            "apps.example.io/Ledger",
            "absent.example.io/Ghost",
        ]
    finally:
        await leading.stop()


RING = WorkloadKind(group="apps.example.io", version="v1", kind="Ring")  # CRD installed later


async def test_a_crd_installed_after_the_gateway_started_is_watched_without_a_restart(
    crds: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    config = GatewayConfig(statefulset_like=(RING,), statefulset_like_recheck_s=0.2)
    leading = Leading(kube=crds, router=Router(), config=config)
    with caplog.at_level(logging.WARNING):
        await leading.start()
        try:
            assert leading.hub is not None
            assert ("apps.example.io/v1", "Ring") not in [
                (r.api_version, r.kind) for r in leading.hub.reflectors
            ]
            with leading.hub.subscribe([mesh_pb2.KIND_WORKLOAD]) as sub:
                await asyncio.sleep(0.7)  # a few look-ups find nothing, and say so once
                await install(crds, crd(plural="rings", kind="Ring"))
                body = {
                    "apiVersion": "apps.example.io/v1",
                    "kind": "Ring",
                    "metadata": {"name": "ring-a", "namespace": "team-a"},
                    "spec": {"replicas": 3},
                }
                path = "/apis/apps.example.io/v1/namespaces/team-a/rings"
                await crds.request("POST", path, body=orjson.dumps(body))
                added = await next_event(sub)
            ring = added.view.workload
            assert (added.type, ring.kind, ring.meta.name, ring.spec_replicas) == (
                ADDED,
                "Ring",
                "ring-a",
                3,
            )
        finally:
            await leading.stop()
    assert warnings(caplog) == [
        "statefulset-like kind apps.example.io/Ring is not served at apps.example.io/v1 "
        "(no such CustomResourceDefinition or version); not watched"
    ]


# -- the gateway's flag ---------------------------------------------------------------------------

SERVICES = ["--services", "placement=127.0.0.1:7100"]


def test_gateway_reads_statefulset_like_kinds_from_flag_over_environment() -> None:
    env = {"KRUISE_MESH_STATEFULSET_LIKE_KINDS": "db.example.io/v1/Ring"}
    assert parse_gateway_config(SERVICES, env).statefulset_like == (
        WorkloadKind("db.example.io", "v1", "Ring"),
    )
    argv = [*SERVICES, "--statefulset-like-kinds", "apps.example.io/v1/ShardSet"]
    assert parse_gateway_config(argv, env).statefulset_like == (SHARDSET,)
    assert parse_gateway_config(SERVICES, {}).statefulset_like == ()


def test_gateway_refuses_a_malformed_statefulset_like_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"KRUISE_MESH_STATEFULSET_LIKE_KINDS": "apps.example.io/v1/ShardSet,v1/Pod"}
    with pytest.raises(SystemExit) as exited:
        parse_gateway_config(SERVICES, env)
    assert exited.value.code == 2
    assert (
        "error: --statefulset-like-kinds: statefulset-like kind 'v1/Pod': "
        "expected group/version/Kind" in capsys.readouterr().err
    )


@pytest.mark.parametrize("value", ["0", "-5"])
def test_gateway_refuses_a_recheck_interval_that_is_not_positive(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_gateway_config([*SERVICES, "--statefulset-like-recheck", value], {})
    assert exited.value.code == 2
    assert (
        "error: --statefulset-like-recheck must be a positive number of seconds"
        in capsys.readouterr().err
    )
