"""Test support for the admission dispatcher: fixture loading, a dict-backed object
source, and real HTTPS webhook servers on 127.0.0.1.

The source is a fake of the sandbox store (not of the dispatcher under test); the
webhook servers are real aiohttp servers with a throwaway CA from
``services.kit.certs``.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from sandbox.admission_types import AdmissionAttributes, GroupVersionKind, GroupVersionResource
from services.kit.certs import CertPair, generate_ca, issue_serving_cert, write_pair
from tests.fixtures import REAL_APISERVER

FIXTURES = REAL_APISERVER


def load_fixture(relative: str) -> dict[str, Any]:
    with open(FIXTURES / relative, "rb") as f:
        data: dict[str, Any] = orjson.loads(f.read())
    return data


def attrs_from_review(
    request: dict[str, Any], *, object_: dict[str, Any] | None = None
) -> AdmissionAttributes:
    """The AdmissionAttributes the REST layer would build for a captured review."""
    kind = request["kind"]
    resource = request["resource"]
    return AdmissionAttributes(
        operation=request["operation"],
        kind=GroupVersionKind(kind["group"], kind["version"], kind["kind"]),
        resource=GroupVersionResource(resource["group"], resource["version"], resource["resource"]),
        subresource=request.get("subResource", ""),
        namespace=request.get("namespace", ""),
        name=request.get("name", ""),
        object=object_ if object_ is not None else request["object"],
        old_object=request["oldObject"],
        options=request["options"],
        dry_run=request["dryRun"],
        user_info=request["userInfo"],
    )


class DictSource:
    """An in-memory ObjectSource: ``objects[(group, resource)]`` is a list of objects."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def put(self, *, group: str, resource: str, obj: dict[str, Any]) -> None:
        items = self.objects.setdefault((group, resource), [])
        name = obj["metadata"]["name"]
        items[:] = [o for o in items if o["metadata"]["name"] != name]
        items.append(obj)

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name}
        if labels is not None:
            meta["labels"] = labels
        self.put(group="", resource="namespaces", obj={"metadata": meta})

    def list_objects(
        self, *, group: str, resource: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects.get((group, resource), [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]

    def get_object(
        self, *, group: str, resource: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        for o in self.list_objects(group=group, resource=resource, namespace=namespace):
            if o["metadata"]["name"] == name:
                return o
        return None


@dataclass
class Received:
    path_qs: str
    headers: dict[str, str]
    body: bytes
    review: dict[str, Any]


Responder = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | web.StreamResponse]]


def allow(review: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An allowing AdmissionReview answer echoing the request uid."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True, **extra},
    }


def json_patch(ops: list[dict[str, Any]]) -> dict[str, str]:
    return {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


@dataclass
class WebhookServer:
    """A real HTTPS server on 127.0.0.1 whose paths answer through ``responders``."""

    tls: ssl.SSLContext
    ca_bundle: str
    responders: dict[str, Responder] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def by_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path_qs.split("?")[0] == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        review = orjson.loads(body)
        self.received.append(Received(request.path_qs, dict(request.headers), body, review))
        responder = self.responders.get(request.path)
        if responder is None:
            return web.Response(status=404, text="no such webhook")
        answer = await responder(review)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def make_tls(directory: Path, *, hosts: list[str]) -> tuple[ssl.SSLContext, str, CertPair]:
    """A server SSLContext for ``hosts`` and the base64 caBundle that trusts it."""
    ca = generate_ca(common_name="admission-test-ca")
    serving = issue_serving_cert(ca=ca, hosts=hosts)
    cert_path, key_path = write_pair(directory, "webhook", serving)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, base64.b64encode(ca.cert_pem).decode(), ca


def webhook_config(
    *,
    kind: str,
    name: str,
    webhooks: list[dict[str, Any]],
    resource_version: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}"}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "kind": kind,
        "apiVersion": "admissionregistration.k8s.io/v1",
        "metadata": meta,
        "webhooks": webhooks,
    }


POD_RULES = [
    {
        "operations": ["CREATE", "UPDATE", "DELETE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods", "pods/status", "pods/eviction"],
        "scope": "Namespaced",
    },
    {
        "operations": ["CREATE", "UPDATE"],
        "apiGroups": ["apps.kruise.io", "policy.kruise.io"],
        "apiVersions": ["v1alpha1"],
        "resources": [
            "clonesets",
            "clonesets/status",
            "clonesets/scale",
            "persistentpodstates",
            "persistentpodstates/status",
            "podunavailablebudgets",
            "podunavailablebudgets/status",
        ],
        "scope": "Namespaced",
    },
]


def webhook(
    *,
    name: str,
    url: str | None = None,
    ca_bundle: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """One webhook entry shaped like the fixtures' configuration, with overrides."""
    client: dict[str, Any] = {}
    if url is not None:
        client["url"] = url
    if ca_bundle:
        client["caBundle"] = ca_bundle
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": client,
        "rules": POD_RULES,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "namespaceSelector": {"matchLabels": {"fixtures": "capture"}},
        "objectSelector": {},
        "sideEffects": "NoneOnDryRun",
        "timeoutSeconds": 10,
        "admissionReviewVersions": ["v1"],
    }
    hook.update(overrides)
    return hook
