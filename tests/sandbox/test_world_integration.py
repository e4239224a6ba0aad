"""The world against the real sandbox API server over HTTPS on 127.0.0.1.

Each test starts a sandbox and a World, then acts only through the Kubernetes API, as a user
with kubectl would, and watches the world move: scheduling, kubelet status, StatefulSets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.app import Sandbox
from sandbox.world import World
from sandbox.world.client import ApiClient, NotFound, Reflector

NS = "demo"
PODS = f"/api/v1/namespaces/{NS}/pods"
STS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
SMP = "application/strategic-merge-patch+json"
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


@dataclass
class Env:
    client: ApiClient
    world: World
    pods: Reflector
    events: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)

    async def wait(self, what: str, check: Callable[[], Any], timeout: float = 8.0) -> Any:
        """Poll ``check`` (against the test's own pod cache or the API) until truthy."""
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

    def pod(self, name: str) -> dict[str, Any] | None:
        return self.pods.cache.get(f"{NS}/{name}")


def ready(pod: dict[str, Any] | None) -> bool:
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conds.get("Ready") == "True"


def condition(pod: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((pod or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def make_world(sb: Sandbox) -> World:
    return World(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """A sandbox running a World (wired as the sandbox wires it), plus a client of our own."""
    async with Sandbox(state_dir=tmp_path, port=0, world=[make_world]) as sb:
        (world,) = sb.world
        assert isinstance(world, World)
        client = ApiClient(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))
        pods = Reflector(client=client, path="/api/v1/pods")
        runner = asyncio.create_task(pods.run())
        e = Env(client=client, world=world, pods=pods)
        pods.subscribe(lambda key, old, new: e.events.append((key, "old" if old else "new", new)))
        try:
            await client.create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            )
            await asyncio.wait_for(pods.synced.wait(), 5)
            yield e
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await client.close()


def statefulset(
    name: str,
    *,
    replicas: int,
    node_selector: dict[str, str] | None = None,
    image: str = "nginx:1.27",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "nginx", "image": image}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def bare_pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec},
    }


async def sts_status(env: Env, name: str) -> dict[str, Any]:
    return (await env.client.get(f"{STS}/{name}")).get("status") or {}


async def test_statefulset_comes_up_in_order_on_selected_nodes(env: Env):
    seen_ready_before: dict[str, bool] = {}

    def on_pod(key: str, old: Any, new: Any) -> None:
        if new is not None and old is None and key.startswith(f"{NS}/web-"):
            ordinal = int(key.rsplit("-", 1)[1])
            seen_ready_before[key] = ordinal == 0 or ready(env.pod(f"web-{ordinal - 1}"))

    env.pods.subscribe(on_pod)
    await env.client.create(STS, statefulset("web", replicas=3, node_selector={ZONE: "zone-b"}))

    async def all_ready() -> bool:
        status = await sts_status(env, "web")
        return status.get("readyReplicas") == 3 and status.get("replicas") == 3

    await env.wait("web ready", all_ready)
    assert seen_ready_before == {f"{NS}/web-{i}": True for i in range(3)}, "OrderedReady"
    for i in range(3):
        pod = env.pod(f"web-{i}")
        assert pod is not None and ready(pod)
        assert pod["spec"]["nodeName"] in ("node-b1", "node-b2")
        assert pod["status"]["podIP"].startswith(("10.244.3.", "10.244.4."))
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"web-{i}", "web")
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(i)
    status = await sts_status(env, "web")
    assert status["currentRevision"] == status["updateRevision"]
    assert (
        status["currentRevision"]
        == env.pod("web-0")["metadata"]["labels"][  # type: ignore[index]
            "controller-revision-hash"
        ]
    )
    revs = await env.client.get(f"/apis/apps/v1/namespaces/{NS}/controllerrevisions")
    assert [r["metadata"]["name"] for r in revs["items"]] == [status["updateRevision"]]


async def test_deleted_pod_returns_to_its_node_with_its_ip(env: Env):
    await env.client.create(STS, statefulset("db", replicas=2, node_selector={HOST: "node-c1"}))
    await env.wait("db ready", lambda: ready(env.pod("db-1")))
    before = env.pod("db-1")
    assert before is not None
    await env.client.delete(f"{PODS}/db-1")

    def back() -> bool:
        pod = env.pod("db-1")
        return (
            ready(pod) and pod is not None and pod["metadata"]["uid"] != before["metadata"]["uid"]
        )

    await env.wait("db-1 re-created", back)
    after = env.pod("db-1")
    assert after is not None
    assert after["spec"]["nodeName"] == before["spec"]["nodeName"] == "node-c1"
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert after["status"]["podIP"] != env.pod("db-0")["status"]["podIP"]  # type: ignore[index]


async def test_scale_in_removes_highest_ordinal_first(env: Env):
    await env.client.create(STS, statefulset("web", replicas=3))
    await env.wait("web-2 ready", lambda: ready(env.pod("web-2")))
    env.events.clear()
    await env.client.merge_patch(f"{STS}/web", {"spec": {"replicas": 1}})
    await env.wait("scaled in", lambda: env.pod("web-1") is None and env.pod("web-2") is None)
    gone = [key for key, _, new in env.events if new is None]
    assert gone == [f"{NS}/web-2", f"{NS}/web-1"]
    terminating_web1_while_web2_present = [
        key
        for key, _, new in env.events
        if new is not None and new["metadata"].get("deletionTimestamp") and key.endswith("web-1")
    ]
    assert terminating_web1_while_web2_present, "graceful deletion went through the kubelet"
    assert ready(env.pod("web-0"))

    async def status_one() -> bool:
        return (await sts_status(env, "web")).get("replicas") == 1

    await env.wait("status replicas 1", status_one)


async def test_rolling_update_replaces_pods_from_the_highest_ordinal(env: Env):
    await env.client.create(STS, statefulset("web", replicas=3))
    await env.wait("web-2 ready", lambda: ready(env.pod("web-2")))
    old_rev = (await sts_status(env, "web"))["updateRevision"]
    env.events.clear()
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}
    }
    await env.client.merge_patch(f"{STS}/web", patch)

    async def done() -> bool:
        status = await sts_status(env, "web")
        return (
            status.get("updatedReplicas") == 3
            and status.get("readyReplicas") == 3
            and status.get("currentRevision") == status.get("updateRevision") != old_rev
        )

    await env.wait("rolled out", done)
    gone = [key.rsplit("/", 1)[1] for key, _, new in env.events if new is None]
    assert gone == ["web-2", "web-1", "web-0"]
    for i in range(3):
        pod = env.pod(f"web-{i}")
        assert pod is not None
        assert pod["status"]["containerStatuses"][0]["image"] == "nginx:1.28"
    revs = await env.client.get(f"/apis/apps/v1/namespaces/{NS}/controllerrevisions")
    assert sorted(r["revision"] for r in revs["items"]) == [1, 2]


async def test_readiness_gate_toggles_ready(env: Env):
    gate = "example.com/gate"
    await env.client.create(PODS, bare_pod("gated", readinessGates=[{"conditionType": gate}]))
    await env.wait("running", lambda: (env.pod("gated") or {}).get("status", {}).get("podIP"))
    pod = env.pod("gated")
    assert condition(pod, "Ready")["status"] == "False"
    assert condition(pod, "Ready")["reason"] == "ReadinessGatesNotReady"
    assert condition(pod, "ContainersReady")["status"] == "True"
    for value, want in (("True", "True"), ("False", "False"), ("True", "True")):
        await env.client.request(
            "PATCH",
            f"{PODS}/gated/status",
            body={"status": {"conditions": [{"type": gate, "status": value}]}},
            content_type=SMP,
        )
        await env.wait(
            f"Ready {want}", lambda w=want: condition(env.pod("gated"), "Ready").get("status") == w
        )
        assert condition(env.pod("gated"), gate)["status"] == value


async def test_in_place_image_change_restarts_the_container(env: Env):
    await env.client.create(PODS, bare_pod("inplace"))
    await env.wait("ready", lambda: ready(env.pod("inplace")))
    ip = env.pod("inplace")["status"]["podIP"]  # type: ignore[index]
    env.events.clear()
    patch = {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}
    await env.client.request("PATCH", f"{PODS}/inplace", body=patch, content_type=SMP)

    def restarted() -> bool:
        pod = env.pod("inplace")
        cs = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        return ready(pod) and cs[0].get("image") == "nginx:1.28"

    await env.wait("new image running", restarted)
    seen_not_ready = [new for _, _, new in env.events if new is not None and not ready(new)]
    assert seen_not_ready, "the container went not-ready during the restart"
    assert seen_not_ready[0]["status"]["containerStatuses"][0]["image"] == "nginx:1.27"
    cs = env.pod("inplace")["status"]["containerStatuses"][0]  # type: ignore[index]
    assert (cs["imageID"], cs["restartCount"]) == ("sandbox://nginx:1.28", 1)
    assert env.pod("inplace")["status"]["podIP"] == ip  # type: ignore[index]


async def test_unschedulable_pod_waits_for_a_fitting_node(env: Env):
    await env.client.create(PODS, bare_pod("nowhere", nodeSelector={ZONE: "zone-z"}))
    await env.wait(
        "Unschedulable",
        lambda: condition(env.pod("nowhere"), "PodScheduled").get("reason") == "Unschedulable",
    )
    assert condition(env.pod("nowhere"), "PodScheduled")["message"].startswith(
        "0/6 nodes are available: 6 node(s) didn't match Pod's node affinity/selector."
    )
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-z1", "labels": {ZONE: "zone-z", HOST: "node-z1"}},
    }
    await env.client.create("/api/v1/nodes", node)
    await env.wait(
        "bound to node-z1",
        lambda: (env.pod("nowhere") or {}).get("spec", {}).get("nodeName") == "node-z1",
    )
    with pytest.raises(NotFound):
        await env.client.get(f"{PODS}/never-created")


async def test_claims_are_bound_and_pods_using_them_run(env: Env):
    claims = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-web-0"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    created = await env.client.create(claims, body)
    assert created["status"]["phase"] == "Pending"
    assert created["spec"]["volumeMode"] == "Filesystem"

    async def bound() -> bool:
        got = await env.client.get(f"{claims}/data-web-0")
        return got["status"] == {
            "phase": "Bound",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
        }

    await env.wait("claim bound", bound)
    # Nothing waits for a claim: a pod of a claim that does not even exist yet runs too.
    for name, claim in (("web-0", "data-web-0"), ("web-1", "data-web-1")):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "nginx", "image": "nginx:1.27"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            },
        }
        await env.client.create(PODS, pod)
    await env.wait("both pods ready", lambda: ready(env.pod("web-0")) and ready(env.pod("web-1")))
    deleted = await env.client.delete(f"{claims}/data-web-0")
    assert deleted["metadata"]["name"] == "data-web-0"  # the object, as kube-apiserver answers


async def test_world_registers_nodes_and_stops_idempotently(tmp_path: Path):
    async with Sandbox(state_dir=tmp_path, port=0) as sb:
        world = make_world(sb)
        await world.start()
        client = ApiClient(api_url=sb.url, token=sb.token, ca_file=str(sb.ca_file))
        try:
            nodes = (await client.get("/api/v1/nodes"))["items"]
            by_name = {n["metadata"]["name"]: n for n in nodes}
            assert sorted(by_name) == [f"node-{z}{i}" for z in "abc" for i in (1, 2)]
            b2 = by_name["node-b2"]
            assert b2["metadata"]["labels"][ZONE] == "zone-b"
            assert b2["metadata"]["labels"]["topology.kubernetes.io/region"] == "sandbox"
            assert b2["status"]["addresses"][0] == {"type": "InternalIP", "address": "127.0.1.4"}
            assert {c["type"]: c["status"] for c in b2["status"]["conditions"]}["Ready"] == "True"
        finally:
            await client.close()
            await world.stop()
            await world.stop()
