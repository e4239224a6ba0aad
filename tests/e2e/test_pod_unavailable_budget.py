"""PodUnavailableBudget end to end, through the Kubernetes API only (SPEC 4.12 22-24 and
the concurrency acceptance).

The test plays the Deployment and ReplicaSet controllers (the sandbox runs neither): it
creates a Deployment, a ReplicaSet it controls and pods the ReplicaSet controls, so the
budget service resolves pods → ReplicaSet → Deployment as for a real Deployment, and
nothing re-creates a pod once it is gone (so "exactly N admitted" is exact).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.budget_world import World, storm
from tests.e2e.conftest import ensure_namespace, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def random_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMesh]:
    """Two budget replicas behind a gateway that sends every review to a random one."""
    async with LocalMesh(
        workdir=tmp_path_factory.mktemp("random-mesh"),
        replicas=2,
        gateway_args=["--review-routing", "random"],
    ) as running:
        yield running


async def test_evictions_and_deletes_spend_the_budget(kube: KubeClient) -> None:
    """SPEC 4.12 scenarios 22-24 against the real API: 429 for evictions, 403 for deletes,
    dry-run spends nothing, and scaling the Deployment to 0 is never blocked."""
    world = World(kube, "pub-scenarios", app="web")
    await world.build(4, max_unavailable=1)
    status = await world.wait_status(
        unavailableAllowed=1, desiredAvailable=3, currentAvailable=4, totalReplicas=4
    )
    assert not status.get("disruptedPods")

    # 22: a dry-run eviction is admitted and spends nothing; a real one spends the unit.
    assert await world.evict("web-0", dry_run=True) == 201
    assert (await world.status())["unavailableAllowed"] == 1
    assert await world.evict("web-0") == 201
    # 22/23: nothing left: the next eviction gets 429 (drains retry), a delete 403.
    assert await world.evict("web-1") == 429
    assert await world.delete("web-2") == 403
    assert await world.delete("web-2", dry_run=True) == 403
    await world.wait_status(unavailableAllowed=0, currentAvailable=3, totalReplicas=4)

    # 24: the Deployment scales to 0: totals follow and its pods go without refusals.
    await kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{world.ns}/deployments/web",
        body=b'{"spec":{"replicas":0}}',
        content_type="application/merge-patch+json",
    )
    await world.wait_status(totalReplicas=0, desiredAvailable=0)
    codes = [await world.delete(f"web-{i}") for i in (1, 2, 3)]
    assert codes == [200, 200, 200]


STORM_PODS = 1000


@pytest.mark.parametrize(
    "conflicts", [0, 30], ids=["owner routing", "owner routing, 30 forced 409s"]
)
async def test_a_thousand_concurrent_disruptions_admit_exactly_ten(
    mesh: LocalMesh, kube: KubeClient, conflicts: int
) -> None:
    world = World(kube, f"storm-{conflicts}")
    await world.build(STORM_PODS, max_unavailable=10)
    await world.wait_status(unavailableAllowed=10, totalReplicas=STORM_PODS)
    if conflicts:
        await kube.request(
            "POST",
            "/sandbox/v1/faults",
            body=orjson.dumps(
                {
                    "conflicts": {
                        "resource": "podunavailablebudgets",
                        "subresource": "status",
                        "namespace": world.ns,
                        "count": conflicts,
                    }
                }
            ),
        )
    codes = await storm(world, STORM_PODS)
    assert codes[200] + codes[201] == 10, codes
    # Decisions whose status write met 409 after 409 (8 in a row) are refused with 409
    # (429 for an eviction): refused, never admitted unrecorded.
    assert codes[403] + codes[429] + codes[409] == STORM_PODS - 10, codes
    await world.wait_status(unavailableAllowed=0, currentAvailable=STORM_PODS - 10)


async def test_a_thousand_disruptions_routed_to_random_replicas_admit_exactly_ten(
    random_mesh: LocalMesh,
) -> None:
    client = await KubeClient.connect(kubeconfig=random_mesh.kubeconfig)
    try:
        world = World(client, "storm-random")
        await world.build(STORM_PODS, max_unavailable=10)
        await world.wait_status(unavailableAllowed=10, totalReplicas=STORM_PODS)
        codes = await storm(world, STORM_PODS)
        assert codes[200] + codes[201] == 10, codes
        assert codes[403] + codes[429] == STORM_PODS - 10, codes
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {
                "selector": {"matchLabels": {"app": "x"}},
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxUnavailable": 1,
            },
            "selector and targetRef are mutually exclusive",
            id="both selector and targetRef",
        ),
        pytest.param({"maxUnavailable": 1}, "no selector or targetRef defined", id="neither"),
        pytest.param(
            {"selector": {"matchLabels": {"app": "x"}}, "maxUnavailable": "120%"},
            "spec.maxUnavailable",
            id="a percent above 100%",
        ),
        pytest.param(
            {"selector": {"matchLabels": {"app": "x"}}, "minAvailable": "5"},
            "spec.minAvailable",
            id="a string without %",
        ),
    ],
)
async def test_invalid_budgets_are_refused_with_the_field(kube: KubeClient, spec, message) -> None:
    await ensure_namespace(kube, "pub-invalid")
    body = {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    with pytest.raises(errors.Invalid) as refused:
        await kube.request_json(
            "POST",
            "/apis/policy.kruise.io/v1alpha1/namespaces/pub-invalid/podunavailablebudgets",
            body=orjson.dumps(body),
        )
    assert message in str(refused.value)


async def test_eviction_of_a_missing_pod_is_the_api_servers_404(kube: KubeClient) -> None:
    world = World(kube, "pub-scenarios", app="web")
    assert await world.evict("no-such-pod") == 404


async def test_scenario_25_an_in_place_update_to_a_broken_image_is_held_at_one_pod(
    kube: KubeClient,
) -> None:
    """SPEC 4.12 scenario 25 with the real CloneSet controller: its own maxUnavailable (2)
    would update both pods at once; the budget (1) holds the second while the first runs a
    broken image, past the 10 s window, and fixing the image lets both through."""
    ns = "pub-inplace"
    await ensure_namespace(kube, ns)
    world = World(kube, ns, app="clone")
    clone_path = f"/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets/clone"
    await world.post(
        f"/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets",
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "CloneSet",
            "metadata": {"name": "clone"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "clone"}},
                "template": {
                    "metadata": {"labels": {"app": "clone"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
                },
                "updateStrategy": {"type": "InPlaceIfPossible", "maxUnavailable": 2},
            },
        },
    )
    await world.post(
        f"/apis/policy.kruise.io/v1alpha1/namespaces/{ns}/podunavailablebudgets",
        {
            "apiVersion": "policy.kruise.io/v1alpha1",
            "kind": "PodUnavailableBudget",
            "metadata": {"name": "clone"},
            "spec": {
                "targetRef": {
                    "apiVersion": "apps.kruise.io/v1alpha1",
                    "kind": "CloneSet",
                    "name": "clone",
                },
                "maxUnavailable": 1,
            },
        },
    )
    await world.wait_status(
        unavailableAllowed=1, desiredAvailable=1, currentAvailable=2, totalReplicas=2
    )

    async def set_template_image(image: str) -> None:
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}
        await kube.request(
            "PATCH",
            clone_path,
            body=orjson.dumps(patch),
            content_type="application/merge-patch+json",
        )

    async def images() -> list[str]:
        pods = (await kube.request_json("GET", world.pods_path))["items"]
        return sorted(p["spec"]["containers"][0]["image"] for p in pods)

    broken = "registry.invalid/nginx:1.28"
    await set_template_image(broken)
    await world.wait_status(unavailableAllowed=0, currentAvailable=1, totalReplicas=2)

    # Converged: one pod broken, one un-updated, and it stays so past the 10 s window of
    # the admitted update (the broken pod is simply not ready; the controller keeps asking).
    async def past_the_window() -> bool:
        return not ((await world.status()).get("unavailablePods") or {})

    await eventually("the admitted update past its 10 s window", past_the_window, timeout=30)
    await asyncio.sleep(2.0)  # the controller asks again every second: still refused
    status = await world.status()
    assert (
        status["unavailableAllowed"],
        status["desiredAvailable"],
        status["currentAvailable"],
        status["totalReplicas"],
    ) == (0, 1, 1, 2)
    assert await images() == sorted([broken, "nginx:1.27"])
    clone = await kube.request_json("GET", clone_path)
    assert clone["status"]["updatedReplicas"] == 1

    # The image is fixed: the broken pod (not ready, so nothing to spend) takes it first,
    # becomes ready, and then the second pod may go.
    await set_template_image("nginx:1.28")

    async def both_fixed() -> bool:
        return await images() == ["nginx:1.28", "nginx:1.28"]

    await eventually("both pods on the fixed image", both_fixed, timeout=40)
    await world.wait_status(unavailableAllowed=1, currentAvailable=2, totalReplicas=2)


async def test_a_budget_of_one_paces_a_cloneset_that_would_update_three_at_once(
    kube: KubeClient,
) -> None:
    """A PodUnavailableBudget with maxUnavailable 1 over a 5-pod CloneSet whose own
    maxUnavailable is 3: a watch on the pods never sees more than one unavailable during
    the in-place update, and every pod ends updated."""
    ns = "pub-paced"
    await ensure_namespace(kube, ns)
    world = World(kube, ns, app="paced")
    await world.post(
        f"/apis/policy.kruise.io/v1alpha1/namespaces/{ns}/podunavailablebudgets",
        {
            "apiVersion": "policy.kruise.io/v1alpha1",
            "kind": "PodUnavailableBudget",
            "metadata": {"name": "paced"},
            "spec": {"selector": {"matchLabels": {"app": "paced"}}, "maxUnavailable": 1},
        },
    )
    await world.post(
        f"/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets",
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "CloneSet",
            "metadata": {"name": "paced"},
            "spec": {
                "replicas": 5,
                "selector": {"matchLabels": {"app": "paced"}},
                "template": {
                    "metadata": {"labels": {"app": "paced"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
                },
                "updateStrategy": {"type": "InPlaceIfPossible", "maxUnavailable": 3},
            },
        },
    )
    await world.wait_status(unavailableAllowed=1, currentAvailable=5, totalReplicas=5)
    listed = await kube.request_json("GET", world.pods_path)
    version = listed["metadata"]["resourceVersion"]
    pods = {p["metadata"]["name"]: p for p in listed["items"]}

    def unavailable() -> int:
        count = 0
        for pod in pods.values():
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
            if conditions.get("Ready") != "True":
                count += 1
        return count

    worst = seen = 0

    async def watch() -> None:
        nonlocal worst, seen
        async for line in kube.watch_lines(
            world.pods_path, query={"resourceVersion": version}, read_timeout=60
        ):
            event = orjson.loads(line)
            obj = event["object"]
            if event["type"] == "DELETED":
                pods.pop(obj["metadata"]["name"], None)
            else:
                pods[obj["metadata"]["name"]] = obj
            seen += 1
            worst = max(worst, unavailable())

    watcher = asyncio.create_task(watch())
    try:
        await kube.request(
            "PATCH",
            f"/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets/paced",
            body=orjson.dumps(
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "main", "image": "nginx:1.28"}]}
                        }
                    }
                }
            ),
            content_type="application/merge-patch+json",
        )

        async def all_updated() -> bool:
            clone = await kube.request_json(
                "GET", f"/apis/apps.kruise.io/v1alpha1/namespaces/{ns}/clonesets/paced"
            )
            st = clone.get("status") or {}
            return (
                st.get("observedGeneration") == clone["metadata"]["generation"]
                and st.get("updatedReadyReplicas") == 5
                and st.get("readyReplicas") == 5
                and st.get("currentRevision") == st.get("updateRevision")
            )

        await eventually("every pod updated and ready", all_updated, timeout=60)
    finally:
        if watcher.done():
            watcher.result()  # a watch that broke fails the test with its error
        watcher.cancel()
    assert seen, "the watch saw the update"
    assert worst == 1, f"at most one pod unavailable at a time, saw {worst} over {seen} events"
