"""The sandbox's admission dispatch against real HTTPS webhook servers on 127.0.0.1.

Every AdmissionReview captured from a real kube-apiserver must be reproduced
byte-for-byte (apart from the fresh uid), and every webhook-deny fixture must give
the client response the real apiserver gave.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from sandbox.admission import (
    WebhookDispatcher,
    begin_request,
    current_warnings,
    parse_configuration,
    parse_selector,
    rule_matches,
    selector_matches,
    warning_header,
)
from sandbox.admission_types import AdmissionAttributes, GroupVersionKind, GroupVersionResource
from sandbox.errors import ApiError
from services.cli.procs import free_port
from tests.sandbox.admission_support import (
    FIXTURES,
    DictSource,
    WebhookServer,
    allow,
    attrs_from_review,
    json_patch,
    load_fixture,
    make_tls,
    webhook,
    webhook_config,
)

MUTATING = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
VALIDATING = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
SVC_HOST = "hooks.kruise-system.svc"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[WebhookServer]:
    tls, bundle, _ = make_tls(tmp_path, hosts=[SVC_HOST])
    srv = WebhookServer(tls=tls, ca_bundle=bundle)

    async def allow_all(review: dict[str, Any]) -> dict[str, Any]:
        return allow(review)

    srv.responders["/mutate"] = allow_all
    srv.responders["/validate"] = allow_all
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def source() -> DictSource:
    src = DictSource()
    src.add_namespace("capture", {"fixtures": "capture"})
    src.add_namespace("demo")
    return src


@pytest.fixture
async def dispatcher(source: DictSource) -> AsyncIterator[WebhookDispatcher]:
    d = WebhookDispatcher(source)
    yield d
    await d.close()


def install(
    source: DictSource,
    *,
    mutating: list[dict[str, Any]] | None = None,
    validating: list[dict[str, Any]] | None = None,
    suffix: str = "",
) -> None:
    if mutating is not None:
        cfg = webhook_config(
            kind="MutatingWebhookConfiguration",
            name="fixtures-mutating" + suffix,
            webhooks=mutating,
        )
        source.put(group=MUTATING[0], resource=MUTATING[1], obj=cfg)
    if validating is not None:
        cfg = webhook_config(
            kind="ValidatingWebhookConfiguration",
            name="fixtures-validating" + suffix,
            webhooks=validating,
        )
        source.put(group=VALIDATING[0], resource=VALIDATING[1], obj=cfg)


def install_fixture_hooks(source: DictSource, server: WebhookServer, **overrides: Any) -> None:
    """The two webhooks the fixtures were captured with, pointed at ``server``."""
    install(
        source,
        mutating=[
            webhook(
                name="mutate.fixtures.example.com",
                url=server.url("/mutate"),
                ca_bundle=server.ca_bundle,
                reinvocationPolicy="Never",
                **overrides,
            )
        ],
        validating=[
            webhook(
                name="validate.fixtures.example.com",
                url=server.url("/validate"),
                ca_bundle=server.ca_bundle,
                **overrides,
            )
        ],
    )


def pod_attrs(
    *,
    operation: str = "CREATE",
    namespace: str = "capture",
    labels: dict[str, str] | None = None,
    old_labels: dict[str, str] | None = None,
    subresource: str = "",
    dry_run: bool = False,
) -> AdmissionAttributes:
    def pod(lbls: dict[str, str] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "p", "namespace": namespace}
        if lbls is not None:
            meta["labels"] = lbls
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"containers": []}}

    return AdmissionAttributes(
        operation=operation,  # type: ignore[arg-type]
        kind=GroupVersionKind("", "v1", "Pod"),
        resource=GroupVersionResource("", "v1", "pods"),
        subresource=subresource,
        namespace=namespace,
        name="p",
        object=None if operation == "DELETE" else pod(labels),
        old_object=None if operation == "CREATE" else pod(old_labels),
        options={"kind": f"{operation.title()}Options", "apiVersion": "meta.k8s.io/v1"},
        dry_run=dry_run,
        user_info={"username": "tester"},
    )


def closed_port() -> int:
    return free_port()


# --------------------------------------------------------------------------- wire shape


async def test_every_captured_review_is_reproduced(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    install_fixture_hooks(source, server)
    files = sorted((FIXTURES / "admission").glob("*.json"))
    assert len(files) > 50
    uids: set[str] = set()
    for path in files:
        captured = load_fixture(f"admission/{path.name}")
        review = captured["admissionReview"]
        attrs = attrs_from_review(review["request"])
        before = len(server.received)
        if ".mutating." in path.name:
            assert await dispatcher.mutate(attrs) is attrs.object, path.name
        else:
            await dispatcher.validate(attrs)
        assert len(server.received) == before + 1, path.name
        got = server.received[-1]
        assert got.path_qs == captured["httpRequest"]["path"], path.name
        for header in ("Content-Type", "Accept", "User-Agent"):
            assert got.headers[header] == captured["httpRequest"]["headers"][header], path.name
        uid = got.review["request"]["uid"]
        assert uuid.UUID(uid).version == 4 and uid not in uids, path.name
        uids.add(uid)
        got.review["request"]["uid"] = review["request"]["uid"]
        # Same keys, same order, same values: re-serialised bytes are identical.
        assert orjson.dumps(got.review) == orjson.dumps(review), path.name


# --------------------------------------------------------------------------- matching (pure)

_RULE = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "scope": "*"}


@pytest.mark.parametrize(
    ("rule", "attrs", "expected"),
    [
        pytest.param({**_RULE, "resources": ["pods"]}, pod_attrs(), True, id="pods CREATE"),
        pytest.param(
            {**_RULE, "resources": ["pods"]},
            pod_attrs(operation="UPDATE"),
            False,
            id="operation not listed",
        ),
        pytest.param(
            {**_RULE, "operations": ["*"], "resources": ["pods"]},
            pod_attrs(operation="DELETE"),
            True,
            id="operations *",
        ),
        pytest.param(
            {**_RULE, "resources": ["pods"]},
            pod_attrs(subresource="status"),
            False,
            id="pods does not cover pods/status",
        ),
        pytest.param(
            {**_RULE, "resources": ["pods/status"]},
            pod_attrs(subresource="status"),
            True,
            id="pods/status",
        ),
        pytest.param(
            {**_RULE, "resources": ["pods/eviction"]},
            pod_attrs(subresource="eviction"),
            True,
            id="pods/eviction",
        ),
        pytest.param({**_RULE, "resources": ["*"]}, pod_attrs(), True, id="* covers pods"),
        pytest.param(
            {**_RULE, "resources": ["*"]},
            pod_attrs(subresource="status"),
            False,
            id="* does not cover subresources",
        ),
        pytest.param(
            {**_RULE, "resources": ["*/status"]},
            pod_attrs(subresource="status"),
            True,
            id="*/status",
        ),
        pytest.param(
            {**_RULE, "resources": ["*/status"]},
            pod_attrs(subresource="eviction"),
            False,
            id="*/status is not eviction",
        ),
        pytest.param(
            {**_RULE, "resources": ["*/*"]},
            pod_attrs(subresource="eviction"),
            True,
            id="*/* covers all",
        ),
        pytest.param(
            {**_RULE, "apiGroups": ["apps"], "resources": ["pods"]},
            pod_attrs(),
            False,
            id="other group",
        ),
        pytest.param(
            {**_RULE, "apiVersions": ["*"], "apiGroups": ["*"], "resources": ["pods"]},
            pod_attrs(),
            True,
            id="group and version *",
        ),
        pytest.param(
            {**_RULE, "resources": ["pods"], "scope": "Namespaced"},
            pod_attrs(),
            True,
            id="Namespaced scope",
        ),
        pytest.param(
            {**_RULE, "resources": ["pods"], "scope": "Cluster"},
            pod_attrs(),
            False,
            id="Cluster scope excludes namespaced",
        ),
    ],
)
def test_rule_matching(rule: dict[str, Any], attrs: AdmissionAttributes, expected: bool) -> None:
    (hook,) = parse_configuration(
        {"metadata": {"name": "c"}, "webhooks": [{"name": "h", "rules": [rule]}]},
        mutating=False,
    )
    assert rule_matches(hook.rules[0], attrs) is expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param({}, {}, True, id="empty matches all"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True, id="matchLabels"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "2"}, False, id="matchLabels differs"),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
            id="In",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {},
            True,
            id="NotIn on missing key",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
            id="NotIn",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True, id="Exists"
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]},
            {"a": "x"},
            False,
            id="DoesNotExist",
        ),
    ],
)
def test_selector_matching(
    selector: dict[str, Any], labels: dict[str, str], expected: bool
) -> None:
    assert selector_matches(parse_selector(selector), labels) is expected


def test_invalid_selector_operator_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


# --------------------------------------------------------------------------- matching (wired)


async def test_namespace_and_object_selectors(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    source.add_namespace("skipped", {"kruise.io/skip": "true"})
    install(
        source,
        validating=[
            webhook(
                name="by-ns-name.example.com",
                url=server.url("/validate"),
                ca_bundle=server.ca_bundle,
                namespaceSelector={
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", "skipped"],
                        }
                    ]
                },
                objectSelector={"matchLabels": {"app": "web"}},
            )
        ],
    )
    cases = [
        (pod_attrs(namespace="demo", labels={"app": "web"}), True),
        (pod_attrs(namespace="skipped", labels={"app": "web"}), False),
        (pod_attrs(namespace="kube-system", labels={"app": "web"}), False),  # not in source
        (pod_attrs(namespace="demo", labels={"app": "db"}), False),
        (pod_attrs(operation="UPDATE", labels={"app": "db"}, old_labels={"app": "web"}), True),
        (pod_attrs(operation="DELETE", old_labels={"app": "web"}), True),
        (pod_attrs(operation="DELETE", old_labels=None), False),
    ]
    for attrs, expected in cases:
        before = len(server.received)
        await dispatcher.validate(attrs)
        assert (len(server.received) == before + 1) is expected, attrs


async def test_fixture_namespace_selector_skips_other_namespaces(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    install_fixture_hooks(source, server)
    await dispatcher.validate(pod_attrs(namespace="demo"))
    await dispatcher.mutate(pod_attrs(namespace="demo"))
    assert server.received == []
    await dispatcher.validate(pod_attrs(namespace="capture"))
    assert len(server.received) == 1


async def test_match_conditions_and_exempt_resources_are_not_called(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    every = [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]
    install(
        source,
        validating=[
            webhook(
                name="cel.example.com",
                url=server.url("/validate"),
                ca_bundle=server.ca_bundle,
                matchConditions=[{"name": "x", "expression": "true"}],
            ),
            webhook(
                name="all.example.com",
                url=server.url("/validate"),
                ca_bundle=server.ca_bundle,
                rules=every,
                namespaceSelector={},
            ),
        ],
    )
    await dispatcher.validate(pod_attrs())
    assert len(server.received) == 1  # only all.example.com
    config = source.list_objects(group=VALIDATING[0], resource=VALIDATING[1])[0]
    await dispatcher.validate(
        AdmissionAttributes(
            operation="UPDATE",
            kind=GroupVersionKind(VALIDATING[0], "v1", "ValidatingWebhookConfiguration"),
            resource=GroupVersionResource(VALIDATING[0], "v1", VALIDATING[1]),
            subresource="",
            namespace="",
            name=config["metadata"]["name"],
            object=config,
            old_object=config,
            options=None,
            dry_run=False,
        )
    )
    assert len(server.received) == 1


async def test_new_configuration_takes_effect_at_once(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    await dispatcher.validate(pod_attrs())
    assert server.received == []
    install_fixture_hooks(source, server)
    await dispatcher.validate(pod_attrs())
    assert len(server.received) == 1
    source.objects[VALIDATING].clear()
    await dispatcher.validate(pod_attrs())
    assert len(server.received) == 1


# --------------------------------------------------------------------------- mutation


async def test_jsonpatch_fixture_is_applied_and_seen_by_validation(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    captured = load_fixture("webhook-mutate/pod-create-jsonpatch.mutating-review-and-response.json")
    patched = load_fixture(
        "webhook-mutate/pod-create-jsonpatch.validating-review-sees-patched-object.json"
    )

    async def mutate(review: dict[str, Any]) -> dict[str, Any]:
        answer = captured["webhookResponse"]
        return {**answer, "response": {**answer["response"], "uid": review["request"]["uid"]}}

    server.responders["/mutate"] = mutate
    install_fixture_hooks(source, server)
    attrs = attrs_from_review(captured["admissionReview"]["request"])
    original = orjson.dumps(attrs.object)
    obj = await dispatcher.mutate(attrs)
    assert orjson.dumps(attrs.object) == original  # the input is not changed in place
    assert obj is not None
    want = patched["admissionReview"]["request"]["object"]
    assert obj["metadata"]["labels"] == want["metadata"]["labels"]
    assert obj["metadata"]["annotations"] == want["metadata"]["annotations"]
    assert obj["spec"] == want["spec"]
    await dispatcher.validate(
        AdmissionAttributes(**{**_fields(attrs), "object": obj, "name": "jsonpatch-pod"})
    )
    assert server.received[-1].review["request"]["object"] == obj


def _fields(attrs: AdmissionAttributes) -> dict[str, Any]:
    return {name: getattr(attrs, name) for name in AdmissionAttributes.__dataclass_fields__}


async def test_mutating_webhooks_run_in_order_on_the_patched_object(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    def appender(tag: str) -> Any:
        async def respond(review: dict[str, Any]) -> dict[str, Any]:
            labels = review["request"]["object"]["metadata"].get("labels", {})
            seen = labels.get("order", "")
            op = {"op": "add", "path": "/metadata/labels/order", "value": seen + tag}
            if "labels" not in review["request"]["object"]["metadata"]:
                op = {"op": "add", "path": "/metadata/labels", "value": {"order": tag}}
            return allow(review, **json_patch([op]))

        return respond

    for tag in "abc":
        server.responders[f"/{tag}"] = appender(tag)

    def hook(tag: str) -> dict[str, Any]:
        return webhook(name=f"{tag}.example.com", url=server.url(f"/{tag}"), **_ca(server))

    # Configurations sorted by name ("-1" before "-2"), then webhook order inside each.
    install(source, mutating=[hook("c")], suffix="-2")
    install(source, mutating=[hook("a"), hook("b")], suffix="-1")
    obj = await dispatcher.mutate(pod_attrs())
    assert obj is not None and obj["metadata"]["labels"] == {"order": "abc"}
    assert [r.path_qs.split("?")[0] for r in server.received] == ["/a", "/b", "/c"]


def _ca(server: WebhookServer) -> dict[str, Any]:
    return {"ca_bundle": server.ca_bundle}


async def test_bad_patch_is_an_internal_error_even_with_ignore(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    async def bad(review: dict[str, Any]) -> dict[str, Any]:
        return allow(review, **json_patch([{"op": "replace", "path": "/nope/x", "value": 1}]))

    server.responders["/mutate"] = bad
    install_fixture_hooks(source, server, failurePolicy="Ignore")
    with pytest.raises(ApiError) as err:
        await dispatcher.mutate(pod_attrs())
    assert err.value.code == 500
    assert err.value.body["reason"] == "InternalError"


# --------------------------------------------------------------------------- failures


async def test_unreachable_webhook_fail_reproduces_fixture(
    source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    client = load_fixture(
        "webhook-deny/pod-create-webhook-unreachable-failurepolicy-fail.client-response.json"
    )
    port = closed_port()
    install(source, mutating=[webhook(name="mutate.fixtures.example.com", url=_url(port))])
    with pytest.raises(ApiError) as err:
        await dispatcher.mutate(pod_attrs())
    expected = orjson.dumps(client["response"]["body"]).replace(b"19443", str(port).encode())
    assert err.value.code == client["response"]["status"] == 500
    assert orjson.dumps(err.value.body) == expected


def _url(port: int) -> str:
    return f"https://127.0.0.1:{port}/mutate"


async def test_unreachable_webhook_ignore_is_skipped(
    source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    port = closed_port()
    install(
        source,
        mutating=[webhook(name="m.example.com", url=_url(port), failurePolicy="Ignore")],
        validating=[webhook(name="v.example.com", url=_url(port), failurePolicy="Ignore")],
    )
    attrs = pod_attrs()
    assert await dispatcher.mutate(attrs) is attrs.object
    await dispatcher.validate(attrs)


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_timeout(
    policy: str, server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    async def slow(review: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(2)
        return allow(review)

    server.responders["/validate"] = slow
    install_fixture_hooks(source, server, timeoutSeconds=1, failurePolicy=policy)
    started = time.monotonic()
    if policy == "Fail":
        with pytest.raises(ApiError) as err:
            await dispatcher.validate(pod_attrs())
        assert err.value.code == 500
        assert err.value.body["message"] == (
            'Internal error occurred: failed calling webhook "validate.fixtures.example.com": '
            f'failed to call webhook: Post "{server.url("/validate")}?timeout=1s": '
            "context deadline exceeded"
        )
    else:
        await dispatcher.validate(pod_attrs())
    assert 0.9 < time.monotonic() - started < 1.8
    assert server.received[-1].path_qs == "/validate?timeout=1s"


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        pytest.param(
            lambda r: web.Response(status=500, text="boom"),
            "failed to call webhook: the server responded with the status code 500 "
            "but did not return more information",
            id="non-200",
        ),
        pytest.param(
            lambda r: web.Response(text="not json", content_type="application/json"),
            "failed to call webhook: ",
            id="undecodable body",
        ),
        pytest.param(
            lambda r: {**allow(r), "response": {"uid": "other", "allowed": True}},
            'received invalid webhook response: expected response.uid="',
            id="wrong uid",
        ),
        pytest.param(
            lambda r: {"kind": "AdmissionReview", "response": r["request"]},
            "received invalid webhook response: expected webhook response of "
            "admission.k8s.io/v1, Kind=AdmissionReview, got , Kind=AdmissionReview",
            id="missing apiVersion",
        ),
        pytest.param(
            lambda r: allow(r, **json_patch([])),
            "received invalid webhook response: validating webhook may not return response.patch",
            id="validating patch",
        ),
    ],
)
async def test_bad_answers_follow_failure_policy(
    answer: Any,
    detail: str,
    server: WebhookServer,
    source: DictSource,
    dispatcher: WebhookDispatcher,
) -> None:
    async def respond(review: dict[str, Any]) -> Any:
        return answer(review)

    server.responders["/validate"] = respond
    install_fixture_hooks(source, server)
    with pytest.raises(ApiError) as err:
        await dispatcher.validate(pod_attrs())
    prefix = 'Internal error occurred: failed calling webhook "validate.fixtures.example.com": '
    assert err.value.code == 500
    assert err.value.body["message"].startswith(prefix + detail)
    install_fixture_hooks(source, server, failurePolicy="Ignore")
    await dispatcher.validate(pod_attrs())


async def test_untrusted_certificate_is_a_call_failure(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher, tmp_path: Path
) -> None:
    _, other_bundle, _ = make_tls(tmp_path / "other", hosts=[])
    install(
        source,
        validating=[
            webhook(name="v.example.com", url=server.url("/validate"), ca_bundle=other_bundle)
        ],
    )
    with pytest.raises(ApiError) as err:
        await dispatcher.validate(pod_attrs())
    assert "tls: failed to verify certificate" in err.value.body["message"]
    assert server.received == []


# --------------------------------------------------------------------------- denials


DENY_CASES = [
    "eviction-429",
    "pod-delete-denied-403",
    "pod-delete-denied-no-code-with-message",
    "pod-delete-denied-no-status",
    "pod-delete-denied-reason-only",
]


@pytest.mark.parametrize("case", DENY_CASES)
async def test_denial_reproduces_client_response(
    case: str, server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    captured = load_fixture(f"admission/webhook-deny-{case}.validating.json")
    client_name = case.replace("eviction-429", "eviction-denied-429")
    client = load_fixture(f"webhook-deny/{client_name}.client-response.json")

    async def deny(review: dict[str, Any]) -> dict[str, Any]:
        answer = captured["webhookResponse"]
        return {**answer, "response": {**answer["response"], "uid": review["request"]["uid"]}}

    server.responders["/validate"] = deny
    install_fixture_hooks(source, server)
    with pytest.raises(ApiError) as err:
        await dispatcher.validate(attrs_from_review(captured["admissionReview"]["request"]))
    assert err.value.code == client["response"]["status"]
    assert orjson.dumps(err.value.body) == orjson.dumps(client["response"]["body"])


async def test_warnings_are_collected_for_the_request(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    captured = load_fixture(
        "admission/webhook-deny-pod-delete-allowed-with-warnings.validating.json"
    )
    client = load_fixture("webhook-deny/pod-delete-allowed-with-warnings.client-response.json")

    async def warn(review: dict[str, Any]) -> dict[str, Any]:
        answer = captured["webhookResponse"]
        return {**answer, "response": {**answer["response"], "uid": review["request"]["uid"]}}

    server.responders["/validate"] = warn
    install_fixture_hooks(source, server)
    attrs = attrs_from_review(captured["admissionReview"]["request"])

    async def one_request() -> list[str]:
        begin_request()
        await dispatcher.validate(attrs)
        return [warning_header(w) for w in current_warnings()]

    # Two concurrent requests each see only their own warnings.
    first, second = await asyncio.gather(one_request(), one_request())
    assert first == second == [client["response"]["headers"]["Warning"]]
    assert warning_header('say "hi"') == '299 - "say \\"hi\\""'


# --------------------------------------------------------------------------- dryRun, service


@pytest.mark.parametrize(
    ("side_effects", "called"),
    [("None", True), ("NoneOnDryRun", True), ("Some", False), ("Unknown", False)],
)
async def test_dry_run_requires_side_effect_free_webhooks(
    side_effects: str,
    called: bool,
    server: WebhookServer,
    source: DictSource,
    dispatcher: WebhookDispatcher,
) -> None:
    install_fixture_hooks(source, server, sideEffects=side_effects)
    attrs = pod_attrs(dry_run=True)
    if called:
        await dispatcher.mutate(attrs)
        await dispatcher.validate(attrs)
        assert [r.review["request"]["dryRun"] for r in server.received] == [True, True]
        return
    for step in (dispatcher.mutate, dispatcher.validate):
        with pytest.raises(ApiError) as err:
            await step(attrs)
        assert err.value.body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'admission webhook "{}" does not support dry run'.format(
                "mutate.fixtures.example.com"
                if step == dispatcher.mutate
                else "validate.fixtures.example.com"
            ),
            "reason": "BadRequest",
            "code": 400,
        }
    assert server.received == []
    await dispatcher.validate(pod_attrs(dry_run=False))  # not a dry run: called as usual


async def test_service_client_config_uses_resolver_and_service_name(
    server: WebhookServer, source: DictSource
) -> None:
    calls: list[tuple[str, str, int]] = []

    def resolve(namespace: str, name: str, port: int) -> str | None:
        calls.append((namespace, name, port))
        return f"https://127.0.0.1:{server.port}" if name == "hooks" else None

    def svc(name: str, **extra: Any) -> dict[str, Any]:
        hook = webhook(name=f"{name}.example.com", ca_bundle=server.ca_bundle, **extra)
        hook["clientConfig"]["service"] = {
            "namespace": "kruise-system",
            "name": name,
            "path": "/validate",
        }
        return hook

    install(source, validating=[svc("hooks")])
    async with WebhookDispatcher(source, service_resolver=resolve) as dispatcher:
        await dispatcher.validate(pod_attrs())
        assert calls == [("kruise-system", "hooks", 443)]
        assert server.received[-1].path_qs == "/validate?timeout=10s"
        install(source, validating=[svc("missing")])
        with pytest.raises(ApiError) as err:
            await dispatcher.validate(pod_attrs())
        assert err.value.body["message"].endswith(
            'Post "https://missing.kruise-system.svc:443/validate?timeout=10s": '
            "dial tcp: lookup missing.kruise-system.svc: no such host"
        )


async def test_validating_webhooks_run_concurrently(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    async def slow(review: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.4)
        return allow(review)

    server.responders["/validate"] = slow
    hooks = [
        webhook(name=f"v{i}.example.com", url=server.url("/validate"), **_ca(server))
        for i in range(3)
    ]
    install(source, validating=hooks)
    started = time.monotonic()
    await dispatcher.validate(pod_attrs())
    assert time.monotonic() - started < 1.0
    assert len(server.received) == 3


async def test_close_releases_sessions(server: WebhookServer, source: DictSource) -> None:
    install_fixture_hooks(source, server)
    dispatcher = WebhookDispatcher(source)
    await dispatcher.validate(pod_attrs())
    sessions = list(dispatcher._sessions.values())
    assert len(sessions) == 1
    await dispatcher.close()
    assert all(s.closed for s in sessions)


def test_fixture_patch_decodes_as_documented() -> None:
    captured = load_fixture("webhook-mutate/pod-create-jsonpatch.mutating-review-and-response.json")
    patch = base64.b64decode(captured["webhookResponse"]["response"]["patch"])
    assert json.loads(patch) == captured["decodedPatch"]


async def test_cluster_scoped_objects_skip_the_namespace_selector(
    server: WebhookServer, source: DictSource, dispatcher: WebhookDispatcher
) -> None:
    nodes = [
        {"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["nodes"]}
    ]
    install(
        source,
        validating=[
            webhook(
                name="nodes.example.com", url=server.url("/validate"), rules=nodes, **_ca(server)
            )
        ],
    )
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-a"}}
    await dispatcher.validate(
        AdmissionAttributes(
            operation="CREATE",
            kind=GroupVersionKind("", "v1", "Node"),
            resource=GroupVersionResource("", "v1", "nodes"),
            subresource="",
            namespace="",
            name="node-a",
            object=node,
            old_object=None,
            options={"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
            dry_run=False,
        )
    )
    (got,) = server.received
    assert "namespace" not in got.review["request"]
    assert got.review["request"]["name"] == "node-a"
