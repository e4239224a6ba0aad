"""Kubernetes protobuf request bodies: the decoder against kubectl's captured requests, and the
server accepting them (answering in JSON) or refusing an undecodable kind with 415."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sandbox import protobuf
from tests.sandbox.conftest import FIXTURES, Raw

CAPTURES = sorted((FIXTURES / "protobuf").glob("*-post.json"))
PB = protobuf.MEDIA_TYPE


def _capture(path: Any) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _body(cap: dict[str, Any]) -> bytes:
    return base64.b64decode(cap["requestBodyBase64"])


def _prune(v: Any) -> Any:
    """JSON with the zero values Go's encoders may or may not write left out (list items kept)."""
    if isinstance(v, dict):
        out = {k: _prune(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, "", 0, False, {}, [])}
    if isinstance(v, list):
        return [x if isinstance(x, str) else _prune(x) for x in v]
    return v


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_decoder_matches_kubectl_json(path: Any) -> None:
    cap = _capture(path)
    got = protobuf.decode(_body(cap))
    want_path = path.with_name(path.stem + ".request.json")
    if not want_path.exists():  # create token: kubectl prints only the token
        assert got["kind"] == "TokenRequest"
        assert got["apiVersion"] == "authentication.k8s.io/v1"
        assert got["spec"] == {}
        return
    want = json.loads(want_path.read_text())
    assert _prune(got) == _prune(want)
    assert got["kind"] == want["kind"] and got["apiVersion"] == want["apiVersion"]


def test_decoder_keeps_exact_values() -> None:
    by_kind = {protobuf.decode(_body(_capture(p)))["kind"]: p for p in CAPTURES}
    dep = protobuf.decode(_body(_capture(by_kind["Deployment"])))
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    svc = protobuf.decode(_body(_capture(by_kind["Service"])))
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    pdb = protobuf.decode(_body(_capture(by_kind["PodDisruptionBudget"])))
    assert pdb["spec"]["maxUnavailable"] == 1
    role = protobuf.decode(_body(_capture(by_kind["Role"])))
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    sec = protobuf.decode(_body(_capture(by_kind["Secret"])))
    assert sec["data"] == {"k": "dg=="}


def test_decoder_refuses_unknown_kind_and_fields() -> None:
    ns = _body(_capture(CAPTURES[0]))
    bogus = ns.replace(b"\x12\tNamespace", b"\x12\tNamespacX")
    with pytest.raises(protobuf.Undecodable) as e:
        protobuf.decode(bogus)
    assert e.value.kind == "NamespacX"
    with pytest.raises(protobuf.Undecodable):
        protobuf.decode(b"not protobuf", expected_kind="Namespace")
    # Namespace with an unknown field 9 (varint) appended to its raw object
    env = protobuf._message(protobuf._UNKNOWN, ns[4:], "")
    raw = env["raw"] + b"\x48\x01"
    tm = b"\x0a\x02v1\x12\x09Namespace"
    body = protobuf.MAGIC + b"\x0a" + bytes([len(tm)]) + tm + b"\x12" + bytes([len(raw)]) + raw
    with pytest.raises(protobuf.Undecodable) as e:
        protobuf.decode(body)
    assert "field number 9" in e.value.why


async def test_server_creates_every_captured_kind(raw: Raw) -> None:
    for path in CAPTURES:
        cap = _capture(path)
        status, headers, body = await raw.call(
            "POST", cap["path"], data=_body(cap), content_type=PB
        )
        assert status == cap["responseStatus"], (path.name, body)
        assert headers["Content-Type"].startswith("application/json")
        assert isinstance(body, dict)
        assert body["kind"] == protobuf.decode(_body(cap))["kind"]
    status, _, cm = await raw.call("GET", "/api/v1/namespaces/pbcap/configmaps/cm1")
    assert status == 200 and cm["data"] == {"a": "1", "b": "two"}
    status, _, dep = await raw.call("GET", "/apis/apps/v1/namespaces/pbcap/deployments/web")
    assert status == 200 and dep["spec"]["replicas"] == 2


async def test_server_refuses_undecodable_kind_with_415(raw: Raw) -> None:
    ns = _body(_capture(CAPTURES[0]))
    bogus = ns.replace(b"\x0a\x02v1\x12\x09Namespace", b"\x0a\x02v1\x12\x09LimitRang")
    status, _, body = await raw.call("POST", "/api/v1/namespaces", data=bogus, content_type=PB)
    assert status == 415, body
    assert body["reason"] == "UnsupportedMediaType"
    assert "LimitRang" in body["message"]
