"""The server's admission hook: attributes built per request, mutation used, denial returned.

The dispatcher here is a small recording one; the webhook dispatcher itself is tested in
test_admission*.py.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from sandbox.admission_types import AdmissionAttributes, ObjectSource
from sandbox.app import Sandbox
from sandbox.errors import ApiError
from tests.sandbox.conftest import Raw


class Recorder:
    def __init__(self, source: ObjectSource) -> None:
        self.source = source
        self.calls: list[tuple[str, AdmissionAttributes]] = []

    async def mutate(self, attrs: AdmissionAttributes) -> dict[str, Any] | None:
        self.calls.append(("mutate", attrs))
        if (
            attrs.resource.resource == "pods"
            and attrs.operation == "CREATE"
            and not attrs.subresource
        ):
            obj = dict(attrs.object or {})
            meta = dict(obj["metadata"])
            meta["labels"] = {**(meta.get("labels") or {}), "mutated": "yes"}
            obj["metadata"] = meta
            return obj
        return None

    async def validate(self, attrs: AdmissionAttributes) -> None:
        self.calls.append(("validate", attrs))
        if attrs.operation == "DELETE" and attrs.name == "protected":
            raise ApiError.status(code=403, reason="Forbidden", message="denied: protected")


async def test_admission_attributes_and_denial(tmp_path: Path) -> None:
    holder: list[Recorder] = []

    def factory(source: ObjectSource) -> Recorder:
        holder.append(Recorder(source))
        return holder[0]

    async with Sandbox(state_dir=tmp_path, dispatcher_factory=factory) as sb:
        ctx = ssl.create_default_context(cafile=str(sb.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            raw = Raw(sb, s)
            rec = holder[0]
            body = {
                "metadata": {"generateName": "p-"},
                "spec": {"containers": [{"name": "c", "image": "a:1"}]},
            }
            code, _, created = await raw.call("POST", "/api/v1/namespaces/default/pods", body)
            assert code == 201 and created["metadata"]["labels"]["mutated"] == "yes"
            (m_op, m), (v_op, v) = rec.calls[:2]
            assert (m_op, v_op) == ("mutate", "validate")
            assert m.name == "" and "uid" not in m.object["metadata"]  # type: ignore[index]
            assert v.name == created["metadata"]["name"] and v.object["metadata"]["uid"]  # type: ignore[index]
            assert m.options == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
            assert m.user_info["username"] == "sandbox-admin"

            rec.calls.clear()
            name = created["metadata"]["name"]
            await raw.call(
                "PATCH",
                f"/api/v1/namespaces/default/pods/{name}?fieldManager=kubectl-label",
                {"metadata": {"labels": {"x": "1"}}},
                content_type="application/merge-patch+json",
            )
            assert rec.calls[0][1].operation == "UPDATE"
            assert rec.calls[0][1].options == {
                "kind": "UpdateOptions",
                "apiVersion": "meta.k8s.io/v1",
                "fieldManager": "kubectl-label",
            }

            rec.calls.clear()
            await raw.call(
                "POST",
                f"/api/v1/namespaces/default/pods/{name}/eviction?dryRun=All",
                {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}},
            )
            ev = rec.calls[0][1]
            assert (ev.kind.group, ev.kind.kind, ev.subresource, ev.dry_run) == (
                "policy",
                "Eviction",
                "eviction",
                True,
            )
            assert ev.old_object is None

            await raw.call(
                "POST",
                "/api/v1/namespaces/default/pods",
                body | {"metadata": {"name": "protected"}},
            )
            rec.calls.clear()
            code, _, denied = await raw.call("DELETE", "/api/v1/namespaces/default/pods/protected")
            assert code == 403 and denied["message"] == "denied: protected"
            d = rec.calls[0][1]
            assert d.object is None and d.old_object is not None
            assert d.options == {
                "kind": "DeleteOptions",
                "apiVersion": "meta.k8s.io/v1",
                "gracePeriodSeconds": 30,
            }
            assert [c[0] for c in rec.calls] == ["validate"]

            rec.calls.clear()
            await raw.call(
                "POST",
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                {"metadata": {"name": "w"}, "webhooks": []},
            )
            assert rec.calls == []  # webhook configurations never go to admission


class Holding:
    """Holds the first ``operation`` on a pod (not a subresource) in admission until released:
    in mutating admission for an UPDATE, in validating admission for a DELETE (which has no
    mutating step)."""

    def __init__(self, source: ObjectSource, operation: str) -> None:
        self.source = source
        self.operation = operation
        self.held = 0
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def _hold(self, attrs: AdmissionAttributes) -> None:
        if attrs.operation == self.operation and not attrs.subresource and self.held == 0:
            self.held += 1
            self.waiting.set()
            await self.release.wait()

    async def mutate(self, attrs: AdmissionAttributes) -> dict[str, Any] | None:
        if self.operation == "UPDATE":
            await self._hold(attrs)
        return None

    async def validate(self, attrs: AdmissionAttributes) -> None:
        if self.operation == "DELETE":
            await self._hold(attrs)


async def status_written_while_held(
    tmp_path: Path, *, operation: str, held_call: tuple[str, str, Any, str]
) -> tuple[int, dict[str, Any]]:
    """Create pod ``p`` (on a node), start ``held_call`` (method, path suffix, body, content
    type) and hold it in admission, write the pod's Ready condition meanwhile, release it;
    return the held call's code and the pod as stored afterwards."""
    holder: list[Holding] = []

    def factory(source: ObjectSource) -> Holding:
        holder.append(Holding(source, operation))
        return holder[0]

    async with Sandbox(state_dir=tmp_path, dispatcher_factory=factory) as sb:
        ctx = ssl.create_default_context(cafile=str(sb.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            raw = Raw(sb, s)
            body = {
                "metadata": {"name": "p"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "a:1"}]},
            }
            code, _, _ = await raw.call("POST", "/api/v1/namespaces/default/pods", body)
            assert code == 201
            path = "/api/v1/namespaces/default/pods/p"
            method, suffix, held_body, content_type = held_call
            held = asyncio.create_task(
                raw.call(method, path + suffix, held_body, content_type=content_type)
            )
            hold = holder[0]
            await asyncio.wait_for(hold.waiting.wait(), 5)
            status = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
            code, _, _ = await raw.call(
                "PATCH",
                f"{path}/status",
                status,
                content_type="application/strategic-merge-patch+json",
            )
            assert code == 200
            hold.release.set()
            held_code, _, _ = await held
            code, _, pod = await raw.call("GET", path)
            assert code == 200
            return held_code, pod


def ready_status(pod: dict[str, Any]) -> str | None:
    ready = [c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"]
    return ready[0]["status"] if ready else None


async def test_a_write_that_lands_during_admission_is_not_undone(tmp_path: Path) -> None:
    """kube-apiserver's GuaranteedUpdate: a patch whose object moved while it awaited its
    webhooks is applied again to the new object, not written over it."""
    label = ("PATCH", "", {"metadata": {"labels": {"x": "1"}}}, "application/merge-patch+json")
    code, pod = await status_written_while_held(tmp_path, operation="UPDATE", held_call=label)
    assert code == 200
    assert pod["metadata"]["labels"] == {"x": "1"}
    assert ready_status(pod) == "True", "the status write survived"


async def test_a_write_that_lands_during_a_delete_s_admission_is_kept(tmp_path: Path) -> None:
    """A graceful pod DELETE marks the object as it is after admission, not as it was read."""
    delete = ("DELETE", "", None, "application/json")
    code, pod = await status_written_while_held(tmp_path, operation="DELETE", held_call=delete)
    assert code == 200
    assert pod["metadata"].get("deletionTimestamp")
    assert ready_status(pod) == "True", "the status write survived"
