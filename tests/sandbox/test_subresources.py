"""status/scale subresources on a CRD and apps kinds, binding, eviction, CRD lifecycle."""

from __future__ import annotations

from kubernetes_asyncio import client

from tests.sandbox.conftest import Raw, fixture

CS = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"
PODS = "/api/v1/namespaces/default/pods"


def cloneset(name: str) -> dict:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}},
    }


async def test_cr_status_and_scale(api: client.ApiClient, raw: Raw) -> None:
    co = client.CustomObjectsApi(api)
    created = await co.create_namespaced_custom_object(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", cloneset("demo")
    )
    assert "status" not in created
    scale = await co.get_namespaced_custom_object_scale(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo"
    )
    real = fixture("api/cr-scale-get-cloneset-before-status.json")["response"]["body"]
    assert scale["status"] == real["status"] and scale["spec"] == {"replicas": 2}
    assert sorted(scale["metadata"]) == sorted(real["metadata"])

    # main-resource writes ignore status; /status ignores spec and keeps generation
    created["status"] = {"replicas": 9}
    created["spec"]["replicas"] = 3
    upd = await co.replace_namespaced_custom_object(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo", created
    )
    assert "status" not in upd and upd["metadata"]["generation"] == 2
    upd["status"] = {"replicas": 3, "labelSelector": "app=demo"}
    upd["spec"]["replicas"] = 7
    st = await co.replace_namespaced_custom_object_status(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo", upd
    )
    assert (
        st["spec"]["replicas"] == 3
        and st["status"]["replicas"] == 3
        and st["metadata"]["generation"] == 2
    )

    scale = await co.get_namespaced_custom_object_scale(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo"
    )
    assert scale["status"] == {"replicas": 3, "selector": "app=demo"}
    old_rv = scale["metadata"]["resourceVersion"]
    scale["spec"]["replicas"] = 5
    new_scale = await co.replace_namespaced_custom_object_scale(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo", scale
    )
    assert new_scale["spec"]["replicas"] == 5 and new_scale["metadata"]["resourceVersion"] != old_rv
    code, _, body = await raw.call("PUT", CS + "/demo/scale", scale)  # stale Scale RV
    real = fixture("errors/409-cr-scale-put-stale-resourceversion.json")["response"]["body"]
    assert code == 409 and body == real | {
        "message": real["message"].replace("demo-cloneset", "demo"),
        "details": real["details"] | {"name": "demo"},
    }
    code, _, body = await raw.call(
        "PATCH",
        CS + "/demo/scale",
        {"spec": {"replicas": 1}},
        content_type="application/merge-patch+json",
    )
    assert code == 200 and body["spec"]["replicas"] == 1
    got = await co.get_namespaced_custom_object(
        "apps.kruise.io", "v1alpha1", "default", "clonesets", "demo"
    )
    assert got["spec"]["replicas"] == 1 and got["metadata"]["generation"] == 4

    code, _, body = await raw.call(
        "PATCH",
        CS + "/demo/status",
        {"status": {"readyReplicas": 1}},
        content_type="application/merge-patch+json",
    )
    assert code == 200 and body["status"]["readyReplicas"] == 1 and body["status"]["replicas"] == 3


async def test_statefulset_scale_string_selector(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    sts = {
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "a:1"}]},
            },
        },
    }
    await apps.create_namespaced_stateful_set("default", sts)
    scale = await apps.read_namespaced_stateful_set_scale("web", "default")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=web"
    await apps.patch_namespaced_stateful_set_scale("web", "default", {"spec": {"replicas": 2}})
    assert (await apps.read_namespaced_stateful_set("web", "default")).spec.replicas == 2


async def test_binding_and_eviction(raw: Raw) -> None:
    await raw.call(
        "POST",
        "/api/v1/nodes",
        {"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
    )
    await raw.call(
        "POST",
        PODS,
        {
            "metadata": {"name": "evict-me", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "a:1"}]},
        },
    )
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "evict-me"},
        "target": {"kind": "Node", "name": "node-a"},
    }
    code, _, _ = await raw.call("POST", PODS + "/evict-me/binding", binding)
    assert code == 201
    _, _, p = await raw.call("GET", PODS + "/evict-me")
    assert p["spec"]["nodeName"] == "node-a"
    assert p["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"
    code, _, body = await raw.call("POST", PODS + "/evict-me/binding", binding)
    assert code == 409 and body["reason"] == "Conflict"

    pdb = {
        "metadata": {"name": "pdb-demo"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
    }
    await raw.call("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb)
    await raw.call(
        "PATCH",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/pdb-demo/status",
        {"status": {"disruptionsAllowed": 0, "desiredHealthy": 1, "currentHealthy": 1}},
        content_type="application/merge-patch+json",
    )
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "evict-me", "namespace": "default"},
    }
    code, _, body = await raw.call("POST", PODS + "/evict-me/eviction", eviction)
    real = fixture("api/eviction-pdb-disruptionsallowed-0-429.json")["response"]["body"]
    assert code == 429 and body["reason"] == real["reason"] and body["message"] == real["message"]
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"

    await raw.call(
        "PATCH",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/pdb-demo/status",
        {"status": {"disruptionsAllowed": 1}},
        content_type="application/merge-patch+json",
    )
    code, _, body = await raw.call("POST", PODS + "/evict-me/eviction?dryRun=All", eviction)
    assert code == 201
    code, _, body = await raw.call("POST", PODS + "/evict-me/eviction", eviction)
    assert code == 201 and body == fixture("api/eviction-no-pdb-201.json")["response"]["body"]
    _, _, p = await raw.call("GET", PODS + "/evict-me")
    assert p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    _, _, got = await raw.call(
        "GET", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/pdb-demo"
    )
    assert got["status"]["disruptionsAllowed"] == 0 and "evict-me" in got["status"]["disruptedPods"]

    code, _, body = await raw.call(
        "POST", PODS + "/no-such-pod/eviction", eviction | {"metadata": {"name": "no-such-pod"}}
    )
    real = fixture("api/eviction-missing-pod-404.json")["response"]["body"]
    assert code == 404 and body == real


async def test_crd_registration_lifecycle(raw: Raw) -> None:
    code, _, crd = await raw.call(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clonesets.apps.kruise.io"
    )
    real = fixture("api/crd-get-clonesets-established.json")["response"]["body"]["status"]
    assert [c["type"] for c in crd["status"]["conditions"]] == [
        c["type"] for c in real["conditions"]
    ]
    assert crd["status"]["acceptedNames"] == real["acceptedNames"]

    gadget = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"kind": "Gadget", "plural": "gadgets"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    code, _, _ = await raw.call(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", gadget
    )
    assert code == 201
    code, _, _ = await raw.call(
        "POST",
        "/apis/example.com/v1/gadgets",
        {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}},
    )
    assert code == 201
    code, _, lst = await raw.call("GET", "/apis/example.com/v1/gadgets")
    assert lst["items"][0]["kind"] == "Gadget"  # custom lists keep kind on items
    code, _, groups = await raw.call("GET", "/apis")
    assert "example.com" in [g["name"] for g in groups["groups"]]
    code, _, _ = await raw.call(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
    )
    assert code == 200
    code, _, _ = await raw.call("GET", "/apis/example.com/v1/gadgets")
    assert code == 404
