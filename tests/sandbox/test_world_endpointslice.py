"""The world's EndpointSlice controller: its pure decisions as table rows, then the controller
running in a World against the sandbox API server over HTTPS (and ``kubectl get``)."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.app import Sandbox
from sandbox.world import World
from sandbox.world.client import ApiClient, Reflector
from sandbox.world.endpointslice import (
    CONTROLLER_NAME,
    HEADLESS_LABEL,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    SlicePlan,
    desired_slices,
    endpoint_view,
    find_port,
    plan_slices,
    slice_differs,
    wants_slices,
)
from tests.sandbox.conftest import fixture

Obj = dict[str, Any]

NS = "demo"
ZONES = {"node-a1": "zone-a", "node-b1": "zone-b", "node-bare": ""}
GATE = "example.com/gate"
NOW = "2026-11-26T04:13:26Z"
MANAGED = {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}

# ---------------------------------------------------------------------------------------------
# builders


def service(
    name: str = "web",
    *,
    ports: list[Obj] | None = None,
    publish: bool = False,
    uid: str = "svc-uid",
    **spec: Any,
) -> Obj:
    body: Obj = {
        "selector": {"app": "web"},
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}],
        **spec,
    }
    if publish:
        body["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "uid": uid},
        "spec": body,
    }


def pod(
    name: str,
    state: str = "ready",
    *,
    ip: str = "10.244.1.2",
    node: str = "node-a1",
    terminating: bool = False,
    ports: list[Obj] | None = None,
) -> Obj:
    """A pod as the world's kubelet reports it. ``state``: ready, containers-not-ready,
    gate-false, pending (no IP yet) or failed."""
    ready = state == "ready"
    conditions = [
        {
            "type": "ContainersReady",
            "status": "False" if state == "containers-not-ready" else "True",
        },
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    if state == "gate-false":
        conditions[1]["reason"] = "ReadinessGatesNotReady"
        conditions.append({"type": GATE, "status": "False"})
    status: Obj = {
        "phase": "Running",
        "conditions": conditions,
        "podIP": ip,
        "podIPs": [{"ip": ip}],
    }
    if state == "pending":
        status = {"phase": "Pending"}
    if state == "failed":
        status = {"phase": "Failed", "podIP": ip, "podIPs": [{"ip": ip}]}
    meta: Obj = {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = NOW
    container: Obj = {"name": "app", "image": "nginx:1.27"}
    if ports is not None:
        container["ports"] = ports
    spec: Obj = {"nodeName": node, "containers": [container]}
    if state == "gate-false":
        spec["readinessGates"] = [{"conditionType": GATE}]
    return {"metadata": meta, "spec": spec, "status": status}


def endpoint(
    name: str,
    *,
    ready: bool,
    serving: bool,
    terminating: bool = False,
    ip: str = "10.244.1.2",
    node: str | None = "node-a1",
    zone: str | None = "zone-a",
) -> Obj:
    out: Obj = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": NS, "name": name, "uid": f"uid-{name}"},
    }
    if node:
        out["nodeName"] = node
    if zone:
        out["zone"] = zone
    return out


def endpoints_of(svc: Obj, pods: list[Obj]) -> list[Obj] | None:
    [only] = desired_slices(svc, pods, node_zones=ZONES).slices
    endpoints: list[Obj] | None = only["endpoints"]
    return endpoints


# ---------------------------------------------------------------------------------------------
# desired slices: which pods, with which conditions


@pytest.mark.parametrize(
    ("svc", "pods", "expected"),
    [
        pytest.param(
            service(),
            [pod("web-0")],
            [endpoint("web-0", ready=True, serving=True)],
            id="ready pod: ready and serving",
        ),
        pytest.param(
            service(),
            [pod("web-0", "containers-not-ready")],
            [endpoint("web-0", ready=False, serving=False)],
            id="containers not ready: listed, not ready, not serving",
        ),
        pytest.param(
            service(),
            [pod("web-0", "gate-false")],
            [endpoint("web-0", ready=False, serving=False)],
            id="readiness gate False: listed, not ready, not serving",
        ),
        pytest.param(
            service(),
            [pod("web-0", terminating=True)],
            [endpoint("web-0", ready=False, serving=True, terminating=True)],
            id="terminating ready pod: kept, not ready, still serving (KEP-1672)",
        ),
        pytest.param(
            service(),
            [pod("web-0", "gate-false", terminating=True)],
            [endpoint("web-0", ready=False, serving=False, terminating=True)],
            id="terminating not-ready pod: kept, only terminating",
        ),
        pytest.param(
            service(),
            [pod("web-0", "pending")],
            None,
            id="pod without an IP: not listed (placeholder slice)",
        ),
        pytest.param(
            service(),
            [pod("web-0", "failed")],
            None,
            id="failed pod: terminal, not listed",
        ),
        pytest.param(
            service(publish=True),
            [pod("web-0", "gate-false")],
            [endpoint("web-0", ready=True, serving=False)],
            id="publishNotReadyAddresses: a not-ready pod is ready, not serving",
        ),
        pytest.param(
            service(publish=True),
            [pod("web-0", "gate-false", terminating=True)],
            [endpoint("web-0", ready=True, serving=False, terminating=True)],
            id="publishNotReadyAddresses: ready forced even when terminating (podToEndpoint)",
        ),
        pytest.param(
            service(),
            [pod("web-0", node="node-bare")],
            [endpoint("web-0", ready=True, serving=True, node="node-bare", zone=None)],
            id="node without a zone label: no zone",
        ),
        pytest.param(
            service(),
            [pod("web-1", ip="10.244.3.7", node="node-b1"), pod("web-0")],
            [
                endpoint("web-0", ready=True, serving=True),
                endpoint(
                    "web-1",
                    ready=True,
                    serving=True,
                    ip="10.244.3.7",
                    node="node-b1",
                    zone="zone-b",
                ),
            ],
            id="two pods: sorted by name, each with its node's zone",
        ),
        pytest.param(
            service(),
            [pod("web-0", ip="fd00::5")],
            None,
            id="IPv6-only pod: nothing for the IPv4 slice",
        ),
    ],
)
def test_endpoint_conditions(svc: Obj, pods: list[Obj], expected: list[Obj] | None) -> None:
    assert endpoints_of(svc, pods) == expected


def test_pod_on_an_unknown_node_is_skipped_and_retried() -> None:
    result = desired_slices(service(), [pod("web-0", node="node-z9")], node_zones=ZONES)
    assert result.unknown_nodes == ("web-0",)
    assert result.slices[0]["endpoints"] is None


def test_pod_on_an_unknown_node_is_published_when_not_ready_addresses_are() -> None:
    result = desired_slices(service(publish=True), [pod("web-0", node="node-z9")], node_zones=ZONES)
    assert result.unknown_nodes == ()
    assert result.slices[0]["endpoints"] == [
        endpoint("web-0", ready=True, serving=True, node="node-z9", zone=None)
    ]


def test_hostname_only_for_pods_in_the_services_subdomain() -> None:
    in_domain, elsewhere = pod("web-0"), pod("web-1", ip="10.244.1.3")
    in_domain["spec"].update(hostname="web-0", subdomain="web")
    elsewhere["spec"].update(hostname="web-1", subdomain="other")
    eps = endpoints_of(service(), [in_domain, elsewhere])
    assert eps is not None
    assert [e.get("hostname") for e in eps] == ["web-0", None]
    assert list(eps[0]) == ["addresses", "conditions", "hostname", "targetRef", "nodeName", "zone"]


# ---------------------------------------------------------------------------------------------
# ports


HTTP_8080 = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("service_port", "container_ports", "expected"),
    [
        pytest.param({"port": 80, "targetPort": 9376}, None, 9376, id="numeric targetPort"),
        pytest.param(
            {"port": 80, "targetPort": "http"}, HTTP_8080, 8080, id="named targetPort: pod's port"
        ),
        pytest.param(
            {"port": 80, "targetPort": "http"},
            [{"name": "http", "containerPort": 8080}],
            8080,
            id="named targetPort, container port protocol defaulted to TCP",
        ),
        pytest.param(
            {"port": 53, "targetPort": "http", "protocol": "UDP"},
            HTTP_8080,
            None,
            id="named targetPort with another protocol: not found",
        ),
        pytest.param(
            {"port": 80, "targetPort": "metrics"}, HTTP_8080, None, id="named port absent"
        ),
        pytest.param({"port": 80}, None, 80, id="no targetPort: the service port"),
    ],
)
def test_find_port(
    service_port: Obj, container_ports: list[Obj] | None, expected: int | None
) -> None:
    assert find_port(pod("web-0", ports=container_ports), service_port) == expected


def test_named_target_port_in_a_sidecar_counts() -> None:
    p = pod("web-0")
    p["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "ports": [{"name": "mesh", "containerPort": 15001}],
        },
        {"name": "init", "ports": [{"name": "mesh", "containerPort": 1}]},
    ]
    assert find_port(p, {"port": 80, "targetPort": "mesh"}) == 15001


def test_slice_ports_name_protocol_port_and_app_protocol() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
        ]
    )
    [only] = desired_slices(svc, [pod("web-0", ports=HTTP_8080)], node_zones=ZONES).slices
    assert only["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
        {"name": "dns", "protocol": "UDP", "port": 5353},
    ]


def test_pods_resolving_different_ports_go_to_different_slices() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    pods = [
        pod("web-0", ports=HTTP_8080),
        pod("web-1", ip="10.244.1.3"),  # no port named http
        pod("web-2", ip="10.244.1.4", ports=HTTP_8080),
    ]
    slices = desired_slices(svc, pods, node_zones=ZONES).slices
    summary = [(s["ports"], [e["targetRef"]["name"] for e in s["endpoints"] or []]) for s in slices]
    assert summary == [
        ([{"name": "http", "protocol": "TCP", "port": 8080}], ["web-0", "web-2"]),
        (None, ["web-1"]),
    ]


# ---------------------------------------------------------------------------------------------
# the slice itself: metadata, placeholder, splitting, services that get none


def test_slice_metadata() -> None:
    svc = service(clusterIP="None")
    svc["metadata"]["labels"] = {"team": "a", SERVICE_NAME_LABEL: "spoofed", MANAGED_BY_LABEL: "me"}
    [only] = desired_slices(svc, [pod("web-0")], node_zones=ZONES).slices
    assert only["apiVersion"] == "discovery.k8s.io/v1"
    assert only["kind"] == "EndpointSlice"
    assert only["addressType"] == "IPv4"
    assert only["metadata"] == {
        "generateName": "web-",
        "namespace": NS,
        "labels": {"team": "a", HEADLESS_LABEL: "", **MANAGED},
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": "web",
                "uid": "svc-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def test_no_pods_gives_one_placeholder_slice() -> None:
    [only] = desired_slices(service(), [], node_zones=ZONES).slices
    assert (only["ports"], only["endpoints"]) == (None, None)
    assert only["metadata"]["labels"] == MANAGED


def test_more_than_100_endpoints_are_split() -> None:
    pods = [pod(f"web-{i:03d}", ip=f"10.244.{1 + i // 200}.{2 + i % 200}") for i in range(205)]
    slices = desired_slices(service(), pods, node_zones=ZONES).slices
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 5]
    assert slices[2]["endpoints"][0]["targetRef"]["name"] == "web-200"


@pytest.mark.parametrize(
    ("svc", "expected"),
    [
        pytest.param(service(), True, id="selector"),
        pytest.param(service(selector=None), False, id="no selector"),
        pytest.param(service(selector={}), False, id="empty selector (the server drops it)"),
        pytest.param(service(type="ExternalName"), False, id="ExternalName"),
    ],
)
def test_wants_slices(svc: Obj, expected: bool) -> None:
    assert wants_slices(svc) is expected


def test_the_captured_headless_service_gives_the_captured_slice() -> None:
    """The real controller's slice for a headless Service over StatefulSet pods web-0/web-1."""
    svc = fixture("api/service-get-headless.json")["response"]["body"]
    [real] = fixture("api/endpointslice-list-headless-service-2-ready.json")["response"]["body"][
        "items"
    ]
    pods = []
    for ep in real["endpoints"]:
        ref = ep["targetRef"]
        ip = ep["addresses"][0]
        p = pod(ref["name"], ip=ip, node=ep["nodeName"])
        p["metadata"].update(namespace=ref["namespace"], uid=ref["uid"])
        p["spec"].update(hostname=ref["name"], subdomain="web")
        pods.append(p)
    zones = {ep["nodeName"]: ep["zone"] for ep in real["endpoints"]}
    [ours] = desired_slices(svc, pods, node_zones=zones).slices
    assert ours["endpoints"] == real["endpoints"]
    assert ours["ports"] == real["ports"]
    assert ours["addressType"] == real["addressType"]
    meta = real["metadata"]
    assert ours["metadata"]["labels"] == meta["labels"]
    assert ours["metadata"]["ownerReferences"] == meta["ownerReferences"]
    assert ours["metadata"]["generateName"] == meta["generateName"]


# ---------------------------------------------------------------------------------------------
# slice_differs


def stored(body: Obj, name: str = "web-abcde", *, uid: str = "slice-uid", rv: int = 7) -> Obj:
    """``body`` as the server would hold it after a create."""
    out = copy.deepcopy(body)
    meta = out["metadata"]
    meta.pop("generateName", None)
    meta.update(name=name, generateName="web-", uid=uid, resourceVersion=str(rv))
    meta["creationTimestamp"] = NOW
    return out


BASE = stored(desired_slices(service(), [pod("web-0")], node_zones=ZONES).slices[0])


def _edit(edit: Callable[[Obj], None]) -> Obj:
    out = copy.deepcopy(BASE)
    edit(out)
    return out


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        pytest.param(BASE, False, id="same content, server metadata aside"),
        pytest.param(
            _edit(lambda s: s["endpoints"][0]["targetRef"].update(resourceVersion="99")),
            False,
            id="a targetRef resourceVersion is ignored",
        ),
        pytest.param(
            _edit(lambda s: s["metadata"]["labels"].update(extra="x")),
            True,
            id="a label someone added is taken away",
        ),
        pytest.param(
            _edit(lambda s: s["endpoints"][0]["conditions"].update(ready=False)),
            True,
            id="conditions changed",
        ),
        pytest.param(_edit(lambda s: s.update(ports=[])), True, id="ports changed"),
    ],
)
def test_slice_differs(existing: Obj, expected: bool) -> None:
    [want] = desired_slices(service(), [pod("web-0")], node_zones=ZONES).slices
    assert slice_differs(existing, want) is expected


def test_null_and_empty_lists_are_the_same() -> None:
    [placeholder] = desired_slices(service(), [], node_zones=ZONES).slices
    existing = stored({**placeholder, "endpoints": [], "ports": []})
    assert not slice_differs(existing, placeholder)


# ---------------------------------------------------------------------------------------------
# plan_slices: fitting the desired slices onto what exists, one sync after another


def plan_for(pods: list[Obj], existing: list[Obj], svc: Obj | None = None) -> SlicePlan:
    svc = svc or service()
    desired = desired_slices(svc, pods, node_zones=ZONES).slices
    return plan_slices(svc, desired, existing)


def names_in(body: Obj) -> list[str]:
    return [e["targetRef"]["name"] for e in body.get("endpoints") or []]


THREE = [pod(f"web-{i}", ip=f"10.244.1.{2 + i}") for i in range(3)]


def test_step_1_first_sync_creates_the_slice() -> None:
    plan = plan_for(THREE, [])
    assert (len(plan.create), plan.update, plan.delete) == (1, (), ())
    assert names_in(plan.create[0]) == ["web-0", "web-1", "web-2"]


def test_step_2_nothing_changed_nothing_written() -> None:
    existing = stored(plan_for(THREE, []).create[0])
    assert plan_for(THREE, [existing]) == SlicePlan()


def test_step_3_gate_false_updates_the_slice_in_place() -> None:
    existing = stored(plan_for(THREE, []).create[0])
    pods = [THREE[0], pod("web-1", "gate-false", ip="10.244.1.3"), THREE[2]]
    plan = plan_for(pods, [existing])
    assert (plan.create, plan.delete) == ((), ())
    [update] = plan.update
    assert (update["metadata"]["name"], update["metadata"]["resourceVersion"]) == ("web-abcde", "7")
    assert [e["conditions"]["ready"] for e in update["endpoints"]] == [True, False, True]


def test_step_4_deleted_pod_leaves_the_slice() -> None:
    existing = stored(plan_for(THREE, []).create[0])
    [update] = plan_for(THREE[:2], [existing]).update
    assert names_in(update) == ["web-0", "web-1"]


def test_step_5_last_pod_gone_the_slice_becomes_the_placeholder() -> None:
    existing = stored(plan_for(THREE, []).create[0])
    plan = plan_for([], [existing])
    assert (plan.create, plan.delete) == ((), ())
    [update] = plan.update
    assert update["metadata"]["name"] == "web-abcde"
    assert (update["ports"], update["endpoints"]) == (None, None)


def test_step_6_a_pod_comes_back_into_the_placeholder() -> None:
    placeholder = stored(plan_for([], []).create[0])
    plan = plan_for(THREE[:1], [placeholder])
    assert (plan.create, plan.delete) == ((), ())
    [update] = plan.update
    assert (update["metadata"]["name"], names_in(update)) == ("web-abcde", ["web-0"])
    assert update["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]


def test_slices_of_an_older_service_with_the_same_name_are_replaced() -> None:
    old = stored(plan_for(THREE, [], service(uid="old-uid")).create[0], uid="old-slice")
    plan = plan_for(THREE, [old])
    assert plan.delete == (("web-abcde", "old-slice"),)
    assert len(plan.create) == 1 and plan.update == ()
    assert plan.create[0]["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"


def test_endpoints_stay_in_their_slice_and_new_ones_fill_up_then_overflow() -> None:
    pods = [pod(f"web-{i:03d}", ip=f"10.244.2.{2 + i}") for i in range(105)]
    full = stored(plan_for(pods[:100], []).create[0], "web-full")
    plan = plan_for(pods, [full])
    assert plan.update == () and plan.delete == ()
    [new] = plan.create
    assert names_in(new) == [f"web-{i:03d}" for i in range(100, 105)]


def test_removed_endpoints_make_room_in_the_slice_they_were_in() -> None:
    pods = [pod(f"web-{i:03d}", ip=f"10.244.2.{2 + i}") for i in range(150)]
    first, second = plan_for(pods, []).create
    a, b = stored(first, "web-aaaaa", uid="a"), stored(second, "web-bbbbb", uid="b")
    # web-000 goes away, web-150 arrives: it takes the free place in web-aaaaa
    now = pods[1:] + [pod("web-150", ip="10.244.3.2")]
    plan = plan_for(now, [a, b])
    assert (plan.create, plan.delete) == ((), ())
    [update] = plan.update
    assert update["metadata"]["name"] == "web-aaaaa"
    assert names_in(update) == [f"web-{i:03d}" for i in range(1, 100)] + ["web-150"]


def test_a_changed_port_reuses_the_slice() -> None:
    existing = stored(plan_for(THREE, []).create[0])
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": 9090}])
    plan = plan_for(THREE, [existing], svc)
    assert (plan.create, plan.delete) == ((), ())
    [update] = plan.update
    assert update["metadata"]["name"] == "web-abcde"
    assert update["ports"] == [{"name": "http", "protocol": "TCP", "port": 9090}]


def test_endpoint_view_ignores_what_endpoints_do_not_show() -> None:
    before = pod("web-0")
    after = copy.deepcopy(before)
    after["status"]["containerStatuses"] = [{"name": "app", "restartCount": 1}]
    after["metadata"]["resourceVersion"] = "12"
    assert endpoint_view(before) == endpoint_view(after)
    assert endpoint_view(before) != endpoint_view(pod("web-0", "gate-false"))
    assert endpoint_view(before) != endpoint_view(pod("web-0", terminating=True))


# ---------------------------------------------------------------------------------------------
# the controller in a World, against the sandbox API server

SERVICES = f"/api/v1/namespaces/{NS}/services"
PODS = f"/api/v1/namespaces/{NS}/pods"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
SMP = "application/strategic-merge-patch+json"
KUBECTL = shutil.which("kubectl")


@dataclass
class Env:
    sb: Sandbox
    client: ApiClient
    slices: Reflector
    pods: Reflector
    history: list[Obj] = field(default_factory=list)  # every slice state seen, in order

    async def wait(self, what: str, check: Callable[[], Any], timeout: float = 8.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    def slices_of(self, service_name: str) -> list[Obj]:
        return [
            s
            for s in self.slices.cache.values()
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service_name
        ]

    def endpoints_of(self, service_name: str) -> dict[str, Obj]:
        """pod name -> endpoint, over all the service's slices."""
        return {
            e["targetRef"]["name"]: e
            for s in self.slices_of(service_name)
            for e in s.get("endpoints") or []
        }

    async def set_gate(self, pod_name: str, value: str) -> None:
        await self.client.request(
            "PATCH",
            f"{PODS}/{pod_name}/status",
            body={"status": {"conditions": [{"type": GATE, "status": value}]}},
            content_type=SMP,
        )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """A sandbox running a World whose kubelet takes 0.4 s to finish a deletion (so that the
    terminating state can be seen), and reflectors of our own on pods and endpointslices."""

    def make_world(sb: Sandbox) -> World:
        return World(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file), delete_delay=0.4)

    async with Sandbox(state_dir=tmp_path, port=0, world=[make_world]) as sb:
        client = ApiClient(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))
        slices = Reflector(client=client, path="/apis/discovery.k8s.io/v1/endpointslices")
        pods = Reflector(client=client, path="/api/v1/pods")
        e = Env(sb=sb, client=client, slices=slices, pods=pods)
        slices.subscribe(lambda key, old, new: e.history.append(new) if new else None)
        runners = [asyncio.create_task(r.run()) for r in (slices, pods)]
        try:
            await client.create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            )
            await asyncio.wait_for(asyncio.gather(slices.synced.wait(), pods.synced.wait()), 5)
            yield e
        finally:
            for task in runners:
                task.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            await client.close()


def gated_statefulset(name: str, replicas: int) -> Obj:
    container = {"name": "app", "image": "nginx:1.27", "ports": HTTP_8080}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "readinessGates": [{"conditionType": GATE}]},
            },
        },
    }


def service_body(name: str, *, selector: dict[str, str] | None = None) -> Obj:
    spec: Obj = {"ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    if selector is not None:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def conditions(e: Obj | None) -> tuple[bool, bool, bool] | None:
    if e is None:
        return None
    c = e["conditions"]
    return (c["ready"], c["serving"], c["terminating"])


async def test_slice_follows_readiness_gates_termination_and_deletion(env: Env) -> None:
    await env.client.create(SERVICES, service_body("web", selector={"app": "web"}))
    await env.client.create(STS, gated_statefulset("web", 3))
    names = ["web-0", "web-1", "web-2"]

    def all_listed(want: tuple[bool, bool, bool]) -> bool:
        eps = env.endpoints_of("web")
        return sorted(eps) == names and all(conditions(eps[n]) == want for n in names)

    await env.wait("3 not-ready endpoints (gates unset)", lambda: all_listed((False, False, False)))
    for name in names:
        await env.set_gate(name, "True")
    await env.wait("3 ready endpoints", lambda: all_listed((True, True, False)))
    [the_slice] = env.slices_of("web")
    assert re.fullmatch(r"web-[a-z0-9]{5}", the_slice["metadata"]["name"])
    assert the_slice["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert the_slice["metadata"]["ownerReferences"][0]["kind"] == "Service"
    web1 = env.endpoints_of("web")["web-1"]
    pod1 = env.pods.cache[f"{NS}/web-1"]
    assert web1["addresses"] == [pod1["status"]["podIP"]]
    assert web1["hostname"] == "web-1"
    assert web1["nodeName"] == pod1["spec"]["nodeName"]
    assert web1["zone"] == "zone-" + pod1["spec"]["nodeName"][len("node-")]

    # the readiness gate goes False: web-1 stays listed, not ready, not serving
    await env.set_gate("web-1", "False")
    await env.wait(
        "web-1 not ready",
        lambda: conditions(env.endpoints_of("web").get("web-1")) == (False, False, False),
    )
    assert conditions(env.endpoints_of("web")["web-0"]) == (True, True, False)

    # web-2 is deleted: terminating (not ready, still serving), then gone; its replacement
    # (a new uid) comes back not ready, since its gate is unset
    old_uid = env.pods.cache[f"{NS}/web-2"]["metadata"]["uid"]
    deleted_at = len(env.history)
    await env.client.delete(f"{PODS}/web-2")

    def replaced() -> bool:
        e = env.endpoints_of("web").get("web-2")
        return e is not None and e["targetRef"]["uid"] != old_uid

    await env.wait("web-2 replaced", replaced)
    seen = [
        conditions(e)
        for s in env.history[deleted_at:]
        for e in s.get("endpoints") or []
        if e["targetRef"]["uid"] == old_uid
    ]
    assert (False, True, True) in seen, "the terminating pod was listed as serving"
    assert conditions(env.endpoints_of("web")["web-2"]) == (False, False, False)
    assert len(env.slices_of("web")) == 1
    assert {s["metadata"]["name"] for s in env.history} == {the_slice["metadata"]["name"]}, (
        "every change went to the one slice: no duplicate was ever created"
    )


async def test_bare_pod_deleted_leaves_the_slice(env: Env) -> None:
    await env.client.create(SERVICES, service_body("solo", selector={"app": "solo"}))
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solo", "namespace": NS, "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "ports": HTTP_8080}]},
    }
    await env.client.create(PODS, body)
    await env.wait(
        "solo ready",
        lambda: conditions(env.endpoints_of("solo").get("solo")) == (True, True, False),
    )
    await env.client.delete(f"{PODS}/solo")
    await env.wait("solo gone", lambda: not env.endpoints_of("solo"))
    [placeholder] = env.slices_of("solo")
    assert (placeholder.get("endpoints"), placeholder.get("ports")) == (None, None)


async def test_selectorless_services_get_nothing_deleted_ones_lose_theirs(env: Env) -> None:
    await env.client.create(SERVICES, service_body("manual"))
    await env.client.create(SERVICES, service_body("empty", selector={"app": "nobody"}))
    await env.wait("placeholder for empty", lambda: env.slices_of("empty"))
    await asyncio.sleep(0.2)
    assert env.slices_of("manual") == []
    await env.client.delete(f"{SERVICES}/empty")
    await env.wait("slice garbage-collected", lambda: not env.slices_of("empty"))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
async def test_kubectl_get_endpointslices(env: Env, tmp_path: Path) -> None:
    await env.client.create(SERVICES, service_body("web", selector={"app": "web"}))
    await env.client.create(STS, gated_statefulset("web", 2))
    await env.wait("2 endpoints", lambda: len(env.endpoints_of("web")) == 2)
    assert KUBECTL is not None
    kubeconfig = str(env.sb.kubeconfig_path)
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        kubeconfig,
        "get",
        "endpointslices",
        "-n",
        NS,
        env={**os.environ, "HOME": str(tmp_path), "KUBECONFIG": kubeconfig},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    header, *rows = [line.split() for line in out.decode().splitlines()]
    assert header == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    [row] = rows
    assert row[0].startswith("web-") and row[1:3] == ["IPv4", "8080"]
    ips = sorted(e["addresses"][0] for e in env.endpoints_of("web").values())
    assert sorted(row[3].split(",")) == ips
