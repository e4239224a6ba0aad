"""CloneSet ``volumeClaimTemplates``: the claims of a pod, its volumes, which instance ids a
scale-out hands out, and which claims go with a deleted pod (OpenKruise v1.2,
``sync/cloneset_scale.go`` and ``utils/cloneset_utils.go``).

Pure functions (``newpod.new_claims``, ``newpod.claim_volumes``, ``newpod.instance_ids``,
``sync.claims_of``) and whole rounds of ``sync.plan_round``; rows read as scenario steps.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.rollout import newpod, sync
from services.rollout.actions import (
    Action,
    CreatePod,
    CreatePvc,
    DeletePod,
    DeletePvc,
    PatchPod,
)
from services.rollout.pods import INSTANCE_ID_LABEL, PREPARING_DELETE
from services.rollout.revision import RevisionPlan
from tests.unit.rollout_builders import (
    CLONE_SET,
    NAMESPACE,
    NEW,
    NOW,
    SELECTOR,
    claim,
    clone_set,
    member,
)

DATA = {
    "metadata": {"name": "data", "labels": {"tier": "db"}},
    "spec": {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
        "volumeMode": "Filesystem",
    },
    "status": {"phase": "Pending"},  # the defaulting webhook's
}
LOGS = {"metadata": {"name": "logs"}, "spec": {"resources": {"requests": {"storage": "1Mi"}}}}
TEMPLATE = {
    "metadata": {"labels": SELECTOR},
    "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
}
OWNER = {
    "apiVersion": "apps.kruise.io/v1alpha1",
    "kind": "CloneSet",
    "name": CLONE_SET,
    "uid": f"uid-{CLONE_SET}",
    "controller": True,
    "blockOwnerDeletion": True,
}


class ScriptedRng(random.Random):
    """``choice`` returns the next character of ``script``: fresh ids a row can name."""

    def __init__(self, script: str = "") -> None:
        super().__init__(0)
        self.script = list(script)

    def choice(self, seq: Sequence[Any]) -> Any:
        return self.script.pop(0)


# ---- the claims and volumes of one pod -----------------------------------------------------


@pytest.mark.parametrize(
    "templates, expected",
    [
        pytest.param(
            [DATA],
            [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": "data-sample-x7k2p",
                        "namespace": NAMESPACE,
                        "labels": {
                            "tier": "db",
                            "app": "sample",
                            INSTANCE_ID_LABEL: "x7k2p",
                        },
                        "ownerReferences": [OWNER],
                    },
                    "spec": DATA["spec"],
                }
            ],
            id="template labels + selector matchLabels + instance id, owned by the CloneSet",
        ),
        pytest.param(
            [
                {
                    "metadata": {
                        "name": "data",
                        "labels": {"app": "other"},
                        "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u"}],
                    },
                    "spec": {},
                }
            ],
            [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": "data-sample-x7k2p",
                        "namespace": NAMESPACE,
                        "labels": {"app": "sample", INSTANCE_ID_LABEL: "x7k2p"},
                        "ownerReferences": [{"kind": "Thing", "name": "t", "uid": "u"}, OWNER],
                    },
                    "spec": {},
                }
            ],
            id="the selector wins over a template label; template owners kept, CloneSet added",
        ),
    ],
)
def test_claim_bodies(templates: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    got = newpod.new_claims(clone_set=clone_set(2), templates=templates, instance="x7k2p")
    assert got == expected


def test_claims_are_named_template_cloneset_instance_in_template_order() -> None:
    got = newpod.new_claims(clone_set=clone_set(2), templates=[DATA, LOGS], instance="x7k2p")
    assert [c["metadata"]["name"] for c in got] == ["data-sample-x7k2p", "logs-sample-x7k2p"]
    assert DATA["status"] == {"phase": "Pending"}, "the template is not changed"


def pvc_volume(name: str, claim_name: str) -> dict[str, Any]:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim_name}}


@pytest.mark.parametrize(
    "volumes, templates, expected",
    [
        pytest.param(
            [],
            [DATA, LOGS],
            [
                pvc_volume("data", "data-sample-x7k2p"),
                pvc_volume("logs", "logs-sample-x7k2p"),
            ],
            id="one volume per claim template, named after it",
        ),
        pytest.param(
            [{"name": "cache", "emptyDir": {}}],
            [DATA],
            [pvc_volume("data", "data-sample-x7k2p"), {"name": "cache", "emptyDir": {}}],
            id="the template's other volumes follow",
        ),
        pytest.param(
            [{"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}],
            [DATA],
            [pvc_volume("data", "data-sample-x7k2p"), {"name": "cache", "emptyDir": {}}],
            id="a template volume of a claim's name is replaced by the claim",
        ),
    ],
)
def test_claim_volumes(
    volumes: list[Any], templates: list[dict[str, Any]], expected: list[Any]
) -> None:
    got = newpod.claim_volumes(
        volumes, clone_set_name=CLONE_SET, templates=templates, instance="x7k2p"
    )
    assert got == expected


@pytest.mark.parametrize(
    "claim_templates, volumes",
    [
        pytest.param([DATA], [pvc_volume("data", "data-sample-x7k2p")], id="with a template"),
        pytest.param([], None, id="without: spec.volumes untouched"),
    ],
)
def test_new_pod_mounts_its_claims(
    claim_templates: list[dict[str, Any]], volumes: list[Any] | None
) -> None:
    pod = newpod.new_pod(
        clone_set=clone_set(2),
        template=TEMPLATE,
        revision=NEW,
        instance="x7k2p",
        now_rfc3339="2026-01-01T00:00:00Z",
        claim_templates=claim_templates,
    )
    assert pod["metadata"]["name"] == "sample-x7k2p"
    assert pod["metadata"]["labels"][INSTANCE_ID_LABEL] == "x7k2p"
    assert pod["spec"].get("volumes") == volumes


# ---- instance ids of a scale-out -----------------------------------------------------------


@pytest.mark.parametrize(
    "count, pods, claims, script, ids, waiting",
    [
        pytest.param(2, [], [], "bbbbbccccc", ("bbbbb", "ccccc"), (), id="no claims: fresh ids"),
        pytest.param(
            1,
            [member("bbbbb")],
            [claim("bbbbb"), claim("ccccc")],
            "",
            ("ccccc",),
            (),
            id="a pod deleted by hand left its claim: its replacement takes the id",
        ),
        pytest.param(
            1,
            [],
            [claim("ddddd"), claim("ccccc"), claim("ccccc", template="logs")],
            "",
            ("ccccc",),
            (),
            id="two orphaned ids, one pod: the first in order; two claims of one id: one id",
        ),
        pytest.param(
            1,
            [member("bbbbb")],
            [claim("bbbbb")],
            "bbbbbddddd",
            ("ddddd",),
            (),
            id="a running pod's claim is not reused; a fresh id avoids its id",
        ),
        pytest.param(
            1,
            [member("ccccc", deleting=True)],
            [claim("ccccc")],
            "",
            (),
            ("ccccc",),
            id="the old pod is still terminating: its id waits for the name",
        ),
        pytest.param(
            2,
            [member("ccccc", deleting=True)],
            [claim("ccccc")],
            "ddddd",
            ("ddddd",),
            ("ccccc",),
            id="terminating old pod, two to create: one fresh, one waits",
        ),
        pytest.param(
            1,
            [member("ccccc", phase="Failed")],
            [claim("ccccc")],
            "cccccddddd",
            ("ddddd",),
            (),
            id="a Failed pod keeps its name: never reused, never waited for",
        ),
        pytest.param(
            1,
            [],
            [claim("ccccc", deleting=True)],
            "cccccddddd",
            ("ddddd",),
            (),
            id="a claim being deleted is not reused, nor its id handed out fresh",
        ),
    ],
)
def test_instance_ids(
    count: int,
    pods: list[views_pb2.PodView],
    claims: list[views_pb2.PersistentVolumeClaimView],
    script: str,
    ids: tuple[str, ...],
    waiting: tuple[str, ...],
) -> None:
    got = newpod.instance_ids(
        count=count,
        clone_set_name=CLONE_SET,
        pods=pods,
        claims=claims,
        rng=ScriptedRng(script),
    )
    assert got == newpod.InstanceIds(ids=ids, waiting=waiting)


# ---- which claims go with a deleted pod ----------------------------------------------------


@pytest.mark.parametrize(
    "pod, claims, expected",
    [
        pytest.param(
            member("bbbbb"),
            [claim("bbbbb"), claim("bbbbb", template="logs"), claim("ccccc")],
            ["data-sample-bbbbb", "logs-sample-bbbbb"],
            id="every claim of its instance id, no other",
        ),
        pytest.param(
            member("bbbbb"),
            [claim("bbbbb", deleting=True)],
            [],
            id="a claim already being deleted is not deleted again",
        ),
        pytest.param(
            member("bbbbb", labels={INSTANCE_ID_LABEL: ""}),
            [claim("")],
            [],
            id="a pod without an instance id takes none",
        ),
    ],
)
def test_claims_of(
    pod: views_pb2.PodView, claims: list[views_pb2.PersistentVolumeClaimView], expected: list[str]
) -> None:
    assert [c.meta.name for c in sync.claims_of(pod, claims)] == expected


# ---- whole rounds ---------------------------------------------------------------------------


def observed(
    cs: views_pb2.CloneSetView,
    pods: list[views_pb2.PodView],
    claims: list[views_pb2.PersistentVolumeClaimView],
    *,
    script: str = "",
    templates: tuple[dict[str, Any], ...] = (DATA,),
) -> sync.Observed:
    return sync.Observed(
        clone_set=cs,
        pods=tuple(pods),
        revisions=RevisionPlan(
            update=NEW,
            current=NEW,
            collision_count=0,
            update_template=TEMPLATE,
            current_template=TEMPLATE,
        ),
        now_ms=NOW,
        rng=ScriptedRng(script),
        stored_templates={NEW: TEMPLATE},
        claims=tuple(claims),
        claim_templates=templates,
    )


def hooked(cs: views_pb2.CloneSetView) -> views_pb2.CloneSetView:
    cs.pre_delete.labels_handler["example.io/hold"] = "true"
    return cs


def steps(actions: Sequence[Action]) -> list[tuple[str, str] | tuple[str, str, str]]:
    out: list[tuple[str, str] | tuple[str, str, str]] = []
    for a in actions:
        if isinstance(a, CreatePvc):
            out.append(("create claim", a.name, a.pod))
        elif isinstance(a, CreatePod):
            out.append(("create pod", a.name))
        elif isinstance(a, DeletePod):
            out.append(("delete pod", a.name))
        elif isinstance(a, DeletePvc):
            out.append(("delete claim", a.name, a.pod))
        elif isinstance(a, PatchPod):
            out.append(("patch pod", a.name))
    return out


@pytest.mark.parametrize(
    "obs, expected",
    [
        pytest.param(
            observed(clone_set(2, max_unavailable=1), [], [], script="bbbbbccccc"),
            [
                ("create claim", "data-sample-bbbbb", "sample-bbbbb"),
                ("create pod", "sample-bbbbb"),
                ("create claim", "data-sample-ccccc", "sample-ccccc"),
                ("create pod", "sample-ccccc"),
            ],
            id="scale out 0 -> 2: each pod's claim right before it",
        ),
        pytest.param(
            observed(
                clone_set(2, max_unavailable=1),
                [member("bbbbb")],
                [claim("bbbbb"), claim("ccccc")],
            ),
            [("create pod", "sample-ccccc")],
            id="pod deleted by hand (step 2/2): the new pod reuses its id and its claim",
        ),
        pytest.param(
            observed(
                clone_set(2, max_unavailable=1),
                [member("bbbbb")],
                [claim("bbbbb"), claim("ccccc")],
                templates=(DATA, LOGS),
            ),
            [
                ("create claim", "logs-sample-ccccc", "sample-ccccc"),
                ("create pod", "sample-ccccc"),
            ],
            id="a template added since: the reused id gets only the claim it lacks",
        ),
        pytest.param(
            observed(
                clone_set(2, max_unavailable=1),
                [member("bbbbb"), member("ccccc", deleting=True)],
                [claim("bbbbb"), claim("ccccc")],
            ),
            [],
            id="pod deleted by hand (step 1/2): still terminating, its replacement waits",
        ),
        pytest.param(
            observed(
                clone_set(1, max_unavailable=1),
                [member("bbbbb", ready=False), member("ccccc")],
                [claim("bbbbb"), claim("bbbbb", template="logs"), claim("ccccc")],
            ),
            [
                ("delete pod", "sample-bbbbb"),
                ("delete claim", "data-sample-bbbbb", "sample-bbbbb"),
                ("delete claim", "logs-sample-bbbbb", "sample-bbbbb"),
            ],
            id="scale in 2 -> 1: the victim's claims go right after it",
        ),
        pytest.param(
            observed(
                clone_set(2, max_unavailable=1),
                [member("bbbbb"), member("ccccc"), member("ddddd", specified_delete=True)],
                [claim("bbbbb"), claim("ccccc"), claim("ddddd")],
            ),
            [("delete pod", "sample-ddddd"), ("delete claim", "data-sample-ddddd", "sample-ddddd")],
            id="re-create update (specified delete, its replacement up): claims go too (v1.2)",
        ),
        pytest.param(
            observed(
                hooked(clone_set(1, max_unavailable=1)),
                [
                    member("bbbbb", ready=False, labels={"example.io/hold": "true"}),
                    member("ccccc", labels={"example.io/hold": "true"}),
                ],
                [claim("bbbbb"), claim("ccccc")],
            ),
            [("patch pod", "sample-bbbbb")],
            id="scale in held by a preDelete hook: PreparingDelete, the claims stay",
        ),
        pytest.param(
            observed(
                hooked(clone_set(1, max_unavailable=1)),
                [member("bbbbb", state=PREPARING_DELETE), member("ccccc")],
                [claim("bbbbb"), claim("ccccc")],
            ),
            [("delete pod", "sample-bbbbb"), ("delete claim", "data-sample-bbbbb", "sample-bbbbb")],
            id="hook released: the PreparingDelete pod goes with its claims",
        ),
    ],
)
def test_round(obs: sync.Observed, expected: list[tuple[str, ...]]) -> None:
    assert steps(sync.plan_round(obs).actions) == expected


def test_a_waiting_replacement_says_why() -> None:
    obs = observed(
        clone_set(2, max_unavailable=1),
        [member("bbbbb"), member("ccccc", deleting=True)],
        [claim("bbbbb"), claim("ccccc")],
    )
    notes = sync.plan_round(obs).notes
    assert any("ccccc" in n and "sample-ccccc" in n for n in notes), notes
