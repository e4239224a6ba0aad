"""Auto-generation of PersistentPodStates from workload annotations (SPEC 1.2, 6.3)."""

from __future__ import annotations

import pytest

from kruise.common.v1 import views_pb2
from services.placement.generation import (
    AUTO_GENERATE,
    PREFERRED_TOPOLOGY,
    REQUIRED_TOPOLOGY,
    Create,
    Delete,
    GenerationAnnotations,
    Nothing,
    ReplaceSpec,
    annotation_change,
    owned_by,
    plan_generation,
)
from tests.unit.placement_builders import HOSTNAME, pps

OS = "kubernetes.io/os"


def sts(
    auto: str | None = "true",
    required: str | None = OS,
    preferred: str | None = HOSTNAME,
    api_version: str = "apps/v1",
) -> views_pb2.WorkloadView:
    view = views_pb2.WorkloadView(api_version=api_version, kind="StatefulSet")
    view.meta.namespace = "ns"
    view.meta.name = "echoserver"
    view.meta.uid = "sts-uid"
    for key, value in (
        (AUTO_GENERATE, auto),
        (REQUIRED_TOPOLOGY, required),
        (PREFERRED_TOPOLOGY, preferred),
    ):
        if value is not None:
            view.meta.annotations[key] = value
    return view


GENERATED_SPEC = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "echoserver"},
    "requiredPersistentTopology": {"nodeTopologyKeys": [OS]},
    "preferredPersistentTopology": [
        {"weight": 100, "preference": {"nodeTopologyKeys": [HOSTNAME]}}
    ],
}


def generated(**overrides) -> views_pb2.PersistentPodStateView:
    kw = {
        "target": ("apps/v1", "StatefulSet", "echoserver"),
        "required": [OS],
        "preferred": [(100, [HOSTNAME])],
        **overrides,
    }
    view = pps("echoserver", **kw)
    view.meta.uid = "pps-uid"
    return view


def test_create_names_the_object_after_the_workload_and_owns_it():
    plan = plan_generation(workload=sts(), existing=None)
    assert plan == Create(
        body={
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "PersistentPodState",
            "metadata": {
                "name": "echoserver",
                "namespace": "ns",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": "echoserver",
                        "uid": "sts-uid",
                        "controller": True,
                    }
                ],
            },
            "spec": GENERATED_SPEC,
        }
    )


@pytest.mark.parametrize(
    ("workload", "existing", "want"),
    [
        pytest.param(
            sts(),
            generated(),
            Nothing("PersistentPodState echoserver is up to date"),
            id="spec already as desired: nothing",
        ),
        pytest.param(
            sts(required=None),
            generated(),
            ReplaceSpec(
                spec={k: v for k, v in GENERATED_SPEC.items() if k != "requiredPersistentTopology"},
                resource_version="10",
            ),
            id="scenario 17: required annotation removed -> whole spec replaced",
        ),
        pytest.param(
            sts(),
            generated(retention="WhenDeleted"),
            ReplaceSpec(spec=GENERATED_SPEC, resource_version="10"),
            id="a hand-set retention policy is reset by the next generation",
        ),
        pytest.param(
            sts(auto=None),
            generated(),
            Delete(uid="pps-uid"),
            id="scenario 16: auto-generate removed -> deleted",
        ),
        pytest.param(
            sts(auto="false"),
            generated(),
            Delete(uid="pps-uid"),
            id="auto-generate not exactly 'true' -> deleted",
        ),
        pytest.param(
            sts(auto=None),
            None,
            Nothing("echoserver does not ask for a PersistentPodState"),
            id="nothing asked, nothing there",
        ),
        pytest.param(
            sts(required="", preferred=""),
            generated(),
            Nothing(
                "echoserver asks for a PersistentPodState but names no topology "
                f"({REQUIRED_TOPOLOGY} and {PREFERRED_TOPOLOGY} are empty)"
            ),
            id="auto-generate with no topology leaves an existing one alone",
        ),
    ],
)
def test_plan_generation(workload, existing, want):
    assert plan_generation(workload=workload, existing=existing) == want


def test_keys_are_split_on_commas_without_trimming():
    plan = plan_generation(workload=sts(required="a, b", preferred=None), existing=None)
    assert isinstance(plan, Create)
    assert plan.body["spec"]["requiredPersistentTopology"] == {"nodeTopologyKeys": ["a", " b"]}
    assert "preferredPersistentTopology" not in plan.body["spec"]


def test_kruise_statefulset_keeps_its_api_version():
    plan = plan_generation(workload=sts(api_version="apps.kruise.io/v1beta1"), existing=None)
    assert isinstance(plan, Create)
    assert plan.body["spec"]["targetRef"]["apiVersion"] == "apps.kruise.io/v1beta1"
    assert plan.body["metadata"]["ownerReferences"][0]["apiVersion"] == "apps.kruise.io/v1beta1"


A = GenerationAnnotations


@pytest.mark.parametrize(
    ("old", "new", "deleting", "want"),
    [
        pytest.param(None, A("true", OS, ""), False, True, id="created asking: generate"),
        pytest.param(
            None, A("true", "", ""), False, False, id="created asking without topology: no"
        ),
        pytest.param(None, A("", OS, HOSTNAME), False, False, id="created not asking: no"),
        pytest.param(A("true", OS, ""), A("true", OS, ""), False, False, id="status update: no"),
        pytest.param(
            A("true", OS, ""), A("", OS, ""), False, True, id="auto-generate removed: yes"
        ),
        pytest.param(
            A("true", OS, ""), A("true", OS, HOSTNAME), False, True, id="preferred added: yes"
        ),
        pytest.param(A("true", OS, ""), A("", "", ""), True, False, id="being deleted: never"),
    ],
)
def test_annotation_change(old, new, deleting, want):
    assert annotation_change(old, new, deleting=deleting) is want


def test_owned_by_matches_the_controller_uid():
    mine = generated()
    mine.meta.owner_references.add(
        api_version="apps/v1", kind="StatefulSet", name="echoserver", uid="sts-uid", controller=True
    )
    assert owned_by(mine, sts())
    assert not owned_by(generated(), sts())
