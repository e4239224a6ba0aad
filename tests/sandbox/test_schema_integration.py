"""Custom resources are pruned and validated against deploy/crds on every write, over HTTPS.

The examples in deploy/examples are OpenKruise-style YAML: each must come back exactly as
written, which proves our CRDs declare every field they use (an undeclared one would be
pruned silently, as a real cluster prunes it).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sandbox.admission_types import AdmissionAttributes
from sandbox.app import Sandbox, load_crd_documents
from tests.sandbox.conftest import Raw, fixture

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CRDS = ROOT / "deploy" / "crds"
# OpenKruise's kinds; the Argo Rollouts AnalysisTemplate there needs Argo's CRDs (it is checked
# in tests/unit/test_deploy_manifests.py).
EXAMPLES = sorted(
    path
    for path in (ROOT / "deploy" / "examples").glob("*.yaml")
    if yaml.safe_load(path.read_text())["apiVersion"].split("/")[0].endswith(".kruise.io")
)
CLONESETS = "/apis/apps.kruise.io/v1alpha1/namespaces/default/clonesets"
PUBS = "/apis/policy.kruise.io/v1alpha1/namespaces/default/podunavailablebudgets"
MERGE = "application/merge-patch+json"


def _plurals() -> dict[tuple[str, str], str]:
    return {
        (d["spec"]["group"], d["spec"]["names"]["kind"]): d["spec"]["names"]["plural"]
        for d in load_crd_documents([DEPLOY_CRDS])
    }


def _collection(obj: dict[str, Any]) -> str:
    group, version = obj["apiVersion"].split("/")
    plural = _plurals()[(group, obj["kind"])]
    return f"/apis/{group}/{version}/namespaces/default/{plural}"


@dataclass
class Recorder:
    """A stand-in admission dispatcher: records what each phase saw, may mutate."""

    patch_spec: dict[str, Any] = field(default_factory=dict)
    mutated: list[dict[str, Any]] = field(default_factory=list)
    validated: list[dict[str, Any]] = field(default_factory=list)

    async def mutate(self, attrs: AdmissionAttributes) -> dict[str, Any] | None:
        assert attrs.object is not None
        self.mutated.append(attrs.object)
        if not self.patch_spec or attrs.subresource:
            return None
        return {**attrs.object, "spec": {**attrs.object["spec"], **self.patch_spec}}

    async def validate(self, attrs: AdmissionAttributes) -> None:
        if attrs.object is not None:
            self.validated.append(attrs.object)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def kruise(tmp_path: Path, recorder: Recorder) -> AsyncIterator[Raw]:
    async with Sandbox(
        state_dir=tmp_path / "kruise",
        crd_dirs=[DEPLOY_CRDS],
        dispatcher_factory=lambda _store: recorder,
    ) as sb:
        ctx = ssl.create_default_context(cafile=str(sb.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            yield Raw(sb, s)


def _cloneset(name: str = "demo", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "CloneSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
            **spec,
        },
    }


def _assert_invalid(out: dict[str, Any], *, kind: str, group: str, name: str) -> list[Any]:
    real = fixture("errors/422-invalid-pod.json")["response"]["body"]
    assert out.keys() == real.keys()
    assert (out["kind"], out["status"], out["reason"], out["code"]) == (
        "Status",
        "Failure",
        "Invalid",
        422,
    )
    assert out["details"]["name"] == name
    assert (out["details"]["group"], out["details"]["kind"]) == (group, kind)
    assert out["message"].startswith(f'{kind}.{group} "{name}" is invalid: ')
    causes: list[Any] = out["details"]["causes"]
    return causes


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_every_example_applies_and_reads_back_unchanged(kruise: Raw, example: Path) -> None:
    body = yaml.safe_load(example.read_text())
    code, _, created = await kruise.call("POST", _collection(body), body)
    assert code == 201, created
    code, _, got = await kruise.call("GET", f"{_collection(body)}/{body['metadata']['name']}")
    assert code == 200
    for obj in (created, got):
        assert obj["spec"] == body["spec"]
        assert (obj["apiVersion"], obj["kind"]) == (body["apiVersion"], body["kind"])
        assert {k: obj["metadata"][k] for k in body["metadata"]} == body["metadata"]


async def test_a_cloneset_with_string_replicas_is_refused_and_not_stored(kruise: Raw) -> None:
    code, _, out = await kruise.call("POST", CLONESETS, _cloneset(replicas="three"))
    assert code == 422, out
    causes = _assert_invalid(out, kind="CloneSet", group="apps.kruise.io", name="demo")
    assert causes == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "string": spec.replicas in body must be of type '
            'integer: "string"',
            "field": "spec.replicas",
        }
    ]
    code, _, _ = await kruise.call("GET", f"{CLONESETS}/demo")
    assert code == 404


async def test_a_cloneset_missing_its_required_selector_is_refused(kruise: Raw) -> None:
    body = _cloneset()
    del body["spec"]["selector"]
    code, _, out = await kruise.call("POST", CLONESETS, body)
    assert code == 422
    causes = _assert_invalid(out, kind="CloneSet", group="apps.kruise.io", name="demo")
    assert causes == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}
    ]


async def test_an_unknown_field_is_dropped_while_the_template_keeps_everything(
    kruise: Raw,
) -> None:
    body = _cloneset(noSuchField={"a": 1})
    body["spec"]["template"]["spec"]["futurePodField"] = {"keep": True}
    code, _, created = await kruise.call("POST", CLONESETS, body)
    assert code == 201, created
    code, _, got = await kruise.call("GET", f"{CLONESETS}/demo")
    for obj in (created, got):
        assert "noSuchField" not in obj["spec"]
        assert obj["spec"]["template"] == body["spec"]["template"]


async def test_a_put_with_an_unknown_field_stores_it_pruned(kruise: Raw) -> None:
    code, _, created = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    changed = {**created, "spec": {**created["spec"], "replicas": 4, "noSuchField": 1}}
    code, _, out = await kruise.call("PUT", f"{CLONESETS}/demo", changed)
    assert code == 200, out
    assert out["spec"]["replicas"] == 4 and "noSuchField" not in out["spec"]


async def test_a_patch_adding_only_an_unknown_field_changes_nothing(kruise: Raw) -> None:
    code, _, created = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    patch = {"spec": {"noSuchField": 1}}
    code, _, out = await kruise.call("PATCH", f"{CLONESETS}/demo", patch, content_type=MERGE)
    assert code == 200, out
    assert out == created


@pytest.mark.parametrize("partition", ["20%", 3], ids=["a percentage", "a number"])
async def test_a_merge_patch_sets_an_int_or_string_partition(
    kruise: Raw, partition: int | str
) -> None:
    code, _, _ = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    patch = {"spec": {"updateStrategy": {"partition": partition}}}
    code, _, out = await kruise.call("PATCH", f"{CLONESETS}/demo", patch, content_type=MERGE)
    assert code == 200, out
    assert out["spec"]["updateStrategy"]["partition"] == partition


async def test_a_merge_patch_with_a_boolean_partition_is_refused(kruise: Raw) -> None:
    code, _, created = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    patch = {"spec": {"updateStrategy": {"partition": True}}}
    code, _, out = await kruise.call("PATCH", f"{CLONESETS}/demo", patch, content_type=MERGE)
    assert code == 422
    [cause] = _assert_invalid(out, kind="CloneSet", group="apps.kruise.io", name="demo")
    assert cause["field"] == "spec.updateStrategy.partition"
    assert cause["message"].endswith('must be of type integer,string: "boolean"')
    code, _, got = await kruise.call("GET", f"{CLONESETS}/demo")
    assert got == created


async def test_a_pub_status_write_with_a_wrong_type_is_refused(kruise: Raw) -> None:
    pub = {
        "apiVersion": "policy.kruise.io/v1alpha1",
        "kind": "PodUnavailableBudget",
        "metadata": {"name": "pub"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "maxUnavailable": 1},
    }
    code, _, created = await kruise.call("POST", PUBS, pub)
    assert code == 201, created
    status = {
        "unavailableAllowed": 1,
        "currentAvailable": 3,
        "desiredAvailable": 2,
        "totalReplicas": 3,
    }
    bad = {**created, "status": {**status, "unavailableAllowed": "one"}}
    code, _, out = await kruise.call("PUT", f"{PUBS}/pub/status", bad)
    assert code == 422, out
    [cause] = _assert_invalid(
        out, kind="PodUnavailableBudget", group="policy.kruise.io", name="pub"
    )
    assert cause == {
        "reason": "FieldValueTypeInvalid",
        "message": 'Invalid value: "string": status.unavailableAllowed in body must be of '
        'type integer: "string"',
        "field": "status.unavailableAllowed",
    }
    good = {**created, "status": {**status, "noSuchField": 1}}
    code, _, out = await kruise.call("PUT", f"{PUBS}/pub/status", good)
    assert code == 200, out
    assert out["status"] == status


async def test_a_status_write_missing_required_status_fields_is_refused(kruise: Raw) -> None:
    code, _, _ = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    patch = {"status": {"replicas": 2}}
    code, _, out = await kruise.call("PATCH", f"{CLONESETS}/demo/status", patch, content_type=MERGE)
    assert code == 422
    causes = _assert_invalid(out, kind="CloneSet", group="apps.kruise.io", name="demo")
    assert [c["field"] for c in causes] == [
        "status.readyReplicas",
        "status.availableReplicas",
        "status.updatedReplicas",
        "status.updatedReadyReplicas",
    ]


async def test_a_scale_write_goes_through_the_schema(kruise: Raw) -> None:
    code, _, _ = await kruise.call("POST", CLONESETS, _cloneset())
    assert code == 201
    scale = {"spec": {"replicas": 5}}
    code, _, out = await kruise.call("PATCH", f"{CLONESETS}/demo/scale", scale, content_type=MERGE)
    assert code == 200, out
    code, _, got = await kruise.call("GET", f"{CLONESETS}/demo")
    assert got["spec"]["replicas"] == 5


async def test_mutating_admission_sees_pruned_objects_and_its_result_is_validated(
    kruise: Raw, recorder: Recorder
) -> None:
    code, _, _ = await kruise.call("POST", CLONESETS, _cloneset(noSuchField=1))
    assert code == 201
    assert "noSuchField" not in recorder.mutated[-1]["spec"]
    assert "noSuchField" not in recorder.validated[-1]["spec"]

    recorder.patch_spec = {"replicas": "many", "webhookExtra": 1}
    seen = len(recorder.validated)
    code, _, out = await kruise.call("POST", CLONESETS, _cloneset("second"))
    assert code == 422, out
    [cause] = _assert_invalid(out, kind="CloneSet", group="apps.kruise.io", name="second")
    assert cause["field"] == "spec.replicas"
    assert len(recorder.validated) == seen  # refused before validating admission

    recorder.patch_spec = {"replicas": 7, "webhookExtra": 1}
    code, _, out = await kruise.call("POST", CLONESETS, _cloneset("third"))
    assert code == 201, out
    assert out["spec"]["replicas"] == 7 and "webhookExtra" not in out["spec"]
    assert "webhookExtra" not in recorder.validated[-1]["spec"]
