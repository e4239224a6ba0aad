"""PATCH: merge, JSON and strategic merge on built-ins; 415 and 422 as the real server."""

from __future__ import annotations

from tests.sandbox.conftest import Raw, fixture

PODS = "/api/v1/namespaces/default/pods"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CLONESETS = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"


async def _make_deployment(raw: Raw) -> None:
    body = {
        "metadata": {"name": "podtemplate-demo"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ]
                },
            },
        },
    }
    code, _, _ = await raw.call("POST", DEPLOY, body)
    assert code == 201


async def test_strategic_merge_by_name_matches_fixture(raw: Raw) -> None:
    await _make_deployment(raw)
    real = fixture("api/patch-strategic-deployment-env-readinessgates.json")
    code, _, out = await raw.call(
        "PATCH",
        DEPLOY + "/podtemplate-demo",
        real["request"]["body"],
        content_type="application/strategic-merge-patch+json",
    )
    assert code == 200
    spec = out["spec"]["template"]["spec"]
    want = real["response"]["body"]["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == [c["name"] for c in want["containers"]]
    assert spec["containers"][0]["env"] == want["containers"][0]["env"]
    assert spec["readinessGates"] == want["readinessGates"]
    assert out["metadata"]["generation"] == 2


async def test_merge_patch_replaces_lists_and_json_patch(raw: Raw) -> None:
    await _make_deployment(raw)
    code, _, out = await raw.call(
        "PATCH",
        DEPLOY + "/podtemplate-demo",
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}},
        content_type="application/merge-patch+json",
    )
    assert code == 200
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["only"]

    code, _, created = await raw.call(
        "POST",
        PODS,
        {"metadata": {"name": "jp"}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}},
    )
    ops = [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "a:2"},
        {"op": "add", "path": "/metadata/labels", "value": {"x~y/z": "1"}},
    ]
    code, _, out = await raw.call(
        "PATCH", PODS + "/jp", ops, content_type="application/json-patch+json"
    )
    assert code == 200 and out["spec"]["containers"][0]["image"] == "a:2"
    assert out["metadata"]["generation"] == 2  # image change bumps generation

    failing = [{"op": "test", "path": "/metadata/name", "value": "other"}]
    code, _, body = await raw.call(
        "PATCH", PODS + "/jp", failing, content_type="application/json-patch+json"
    )
    assert (
        code == 422
        and body == fixture("errors/422-json-patch-test-op-failed.json")["response"]["body"]
    )

    code, _, body = await raw.call(
        "PATCH", PODS + "/jp", data=b"[{", content_type="application/json-patch+json"
    )
    assert (
        code == 400 and body == fixture("errors/400-malformed-json-patch.json")["response"]["body"]
    )

    env = [{"op": "add", "path": "/spec/containers/0/env", "value": [{"name": "A", "value": "1"}]}]
    code, _, body = await raw.call(
        "PATCH", PODS + "/jp", env, content_type="application/json-patch+json"
    )
    assert code == 422 and body["details"]["causes"][0]["field"] == "spec"


async def test_unsupported_media_types(raw: Raw) -> None:
    await raw.call(
        "POST",
        PODS,
        {"metadata": {"name": "m"}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}},
    )
    code, _, body = await raw.call(
        "PATCH", PODS + "/m", {"metadata": {}}, content_type="application/json"
    )
    assert (
        code == 415
        and body == fixture("errors/415-patch-wrong-content-type.json")["response"]["body"]
    )

    await raw.call(
        "POST",
        CLONESETS,
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "CloneSet",
            "metadata": {"name": "cs"},
            "spec": {"replicas": 1},
        },
    )
    code, _, body = await raw.call(
        "PATCH",
        CLONESETS + "/cs",
        {"spec": {"replicas": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    real = fixture("errors/415-cr-strategic-merge-patch-unsupported.json")["response"]["body"]
    assert code == 415 and body == real
    code, _, out = await raw.call(
        "PATCH",
        CLONESETS + "/cs",
        {"spec": {"replicas": 2}},
        content_type="application/merge-patch+json",
    )
    assert code == 200 and out["spec"]["replicas"] == 2 and out["metadata"]["generation"] == 2
