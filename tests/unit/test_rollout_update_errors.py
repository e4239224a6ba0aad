"""``sync.plan_round``'s update errors: a pod the update step cannot update, as data.

OpenKruise v1.2's ``updatePod`` (``pkg/controller/cloneset/sync/cloneset_update.go``)
returns an error in two cases, and ``Update`` stops at the first one (the pods before it
were updated, the ones after it wait), which ``syncCloneSet`` writes as ``FailedUpdate``:

* ``InPlaceOnly`` and a change that cannot be made in place (anything but images and
  template metadata): "find Pod <name> update strategy is InPlaceOnly but can not update
  in-place"; nothing is re-created;
* the change can be made in place (``InPlaceIfPossible`` or ``InPlaceOnly``) but the pod's
  lifecycle state is none of ""/Normal/PreparingUpdate/Updating/Updated: "not allowed to
  in-place update pod <name> in state <state>". A change that cannot be made in place is
  not asked about the state: ``InPlaceIfPossible`` re-creates the pod anyway.

Rows read as scenarios: a CloneSet whose pods are at ``v1`` (nginx:1) gets a new template.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kruise.common.v1 import views_pb2
from services.kit.projection import project_clone_set, project_pod
from services.rollout import revision, status, sync
from services.rollout.actions import Action, PatchPod, PatchPodStatus

NOW_MS = 1_800_000_000_000
NOW = "2027-01-15T08:00:00Z"
STATE = "lifecycle.apps.kruise.io/state"


def template(image: str = "nginx:1", *, env: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if env is not None:
        container["env"] = [{"name": "MODE", "value": env}]
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}


V1 = template()
IMAGE = template("nginx:2")  # in place
ENV = template(env="debug")  # not in place
IMAGE_AND_ENV = template("nginx:2", env="debug")


def stored(tpl: dict[str, Any], number: int) -> revision.Revision:
    name = revision.revision_name("web", revision.revision_data(tpl))
    return revision.Revision(name=name, number=number, template=tpl)


def pod(
    name: str, rev: str, *, state: str = "Normal", ready_at: str = "2027-01-01T00:00:00Z"
) -> views_pb2.PodView:
    body = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "5",
            "labels": {"app": "web", "controller-revision-hash": rev, STATE: state},
            "ownerReferences": [
                {
                    "apiVersion": "apps.kruise.io/v1alpha1",
                    "kind": "CloneSet",
                    "name": "web",
                    "uid": "cs",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "main", "image": "nginx:1"}],
            "readinessGates": [{"conditionType": "InPlaceUpdateReady"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": ready_at},
                {"type": "InPlaceUpdateReady", "status": "True"},
            ],
            "containerStatuses": [
                {"name": "main", "image": "nginx:1", "imageID": "id-1", "ready": True}
            ],
        },
    }
    return project_pod(body)


def observe(
    strategy: str,
    new: dict[str, Any],
    *,
    states: tuple[str, ...] = ("Normal",),
    lifecycle: dict[str, Any] | None = None,
    olds: tuple[dict[str, Any], ...] = (V1,),
) -> sync.Observed:
    """One pod per entry of ``states`` (web-0, web-1, ...), each at ``olds[i]`` (the last
    one repeated), the newest ready first; the template changed to ``new``."""
    spec: dict[str, Any] = {
        "replicas": len(states),
        "selector": {"matchLabels": {"app": "web"}},
        "template": new,
        "updateStrategy": {"type": strategy, "maxUnavailable": len(states)},
        "revisionHistoryLimit": 10,
    }
    if lifecycle:
        spec["lifecycle"] = lifecycle
    cs = project_clone_set(
        {
            "metadata": {"name": "web", "namespace": "ns", "uid": "cs", "resourceVersion": "9"},
            "spec": spec,
        }
    )
    unique = {_key(tpl): tpl for tpl in olds}
    revs = [stored(tpl, i + 1) for i, tpl in enumerate(unique.values())]
    by_key = {_key(r.template): r for r in revs}
    plan = revision.plan_revisions(
        clone_set=cs, template=new, stored=revs, live_revisions={r.name for r in revs}
    )
    pods = tuple(
        pod(
            f"web-{i}",
            by_key[_key(olds[min(i, len(olds) - 1)])].name,
            state=state,
            ready_at=f"2027-01-01T0{9 - i}:00:00Z",  # web-0 most recently ready: first
        )
        for i, state in enumerate(states)
    )
    return sync.Observed(
        clone_set=cs,
        pods=pods,
        revisions=plan,
        now_ms=NOW_MS,
        rng=random.Random(1),
        stored_templates={
            **{r.name: r.template for r in revs},
            plan.update: plan.update_template,
        },
    )


def _key(tpl: dict[str, Any]) -> Any:
    return revision.revision_name("web", revision.revision_data(tpl))


def writes(actions: tuple[Action, ...]) -> list[str]:
    """Each action as ``<pod>: <what>``: in-place (the image patch), not-ready (the
    InPlaceUpdateReady False first), state <s>, or re-create (specified-delete)."""
    out = []
    for a in actions:
        if isinstance(a, PatchPodStatus):
            out.append(f"{a.name}: not-ready")
        elif isinstance(a, PatchPod) and a.kind == "json":
            out.append(f"{a.name}: in-place")
        elif isinstance(a, PatchPod) and "apps.kruise.io/specified-delete" in str(a.patch):
            out.append(f"{a.name}: re-create")
        elif isinstance(a, PatchPod):
            out.append(f"{a.name}: state {a.patch['metadata']['labels'][STATE]}")
        else:
            out.append(f"{type(a).__name__}")
    return out


IN_PLACE_ONLY_ERROR = "find Pod {} update strategy is InPlaceOnly but can not update in-place"
STATE_ERROR = "not allowed to in-place update pod {} in state {}"
HOLD = {"inPlaceUpdate": {"labelsHandler": {"app": "web"}}}  # every pod carries it: hooked


@pytest.mark.parametrize(
    ("observed", "expected_writes", "expected_error"),
    [
        pytest.param(
            observe("InPlaceOnly", IMAGE),
            ["web-0: not-ready", "web-0: in-place"],
            "",
            id="InPlaceOnly, image change: updated in place, no error",
        ),
        pytest.param(
            observe("InPlaceOnly", ENV),
            [],
            IN_PLACE_ONLY_ERROR.format("web-0"),
            id="InPlaceOnly, env change: nothing written, the InPlaceOnly error",
        ),
        pytest.param(
            observe("InPlaceOnly", IMAGE_AND_ENV),
            [],
            IN_PLACE_ONLY_ERROR.format("web-0"),
            id="InPlaceOnly, image and env change: the InPlaceOnly error",
        ),
        pytest.param(
            observe("InPlaceIfPossible", ENV),
            ["web-0: re-create"],
            "",
            id="InPlaceIfPossible, env change: re-created, no error (unchanged)",
        ),
        pytest.param(
            observe("ReCreate", IMAGE),
            ["web-0: re-create"],
            "",
            id="ReCreate, image change: re-created, no error (unchanged)",
        ),
        pytest.param(
            observe("InPlaceOnly", IMAGE, states=("PreparingNormal",)),
            [],
            STATE_ERROR.format("web-0", "PreparingNormal"),
            id="InPlaceOnly, image change, pod in a state v1.2 does not know: the state error",
        ),
        pytest.param(
            observe("InPlaceIfPossible", IMAGE, states=("PreparingNormal",)),
            [],
            STATE_ERROR.format("web-0", "PreparingNormal"),
            id="InPlaceIfPossible, image change, unknown state: the state error too",
        ),
        pytest.param(
            observe("InPlaceIfPossible", ENV, states=("PreparingNormal",)),
            ["web-0: re-create"],
            "",
            id="InPlaceIfPossible, env change, unknown state: re-created (state not asked)",
        ),
        pytest.param(
            observe("InPlaceOnly", ENV, states=("PreparingNormal",)),
            [],
            IN_PLACE_ONLY_ERROR.format("web-0"),
            id="InPlaceOnly, env change, unknown state: the InPlaceOnly error (state not asked)",
        ),
        pytest.param(
            observe("ReCreate", IMAGE, states=("PreparingNormal",)),
            ["web-0: re-create"],
            "",
            id="ReCreate, unknown state: re-created, no error",
        ),
        pytest.param(
            observe("InPlaceOnly", IMAGE, lifecycle=HOLD),
            ["web-0: state PreparingUpdate"],
            "",
            id="InPlaceOnly, hooked Normal pod: PreparingUpdate, no error",
        ),
    ],
)
def test_one_pod(observed: sync.Observed, expected_writes: list[str], expected_error: str) -> None:
    planned = sync.plan_round(observed)
    assert planned.phase == "update"
    assert writes(planned.actions) == expected_writes
    assert planned.error == expected_error


@pytest.mark.parametrize(
    ("observed", "expected_writes", "expected_error"),
    [
        pytest.param(
            observe("InPlaceOnly", IMAGE, states=("Normal", "Normal", "Normal")),
            [f"web-{i}: {w}" for i in range(3) for w in ("not-ready", "in-place")],
            "",
            id="InPlaceOnly, image change, three pods: all three in place",
        ),
        pytest.param(
            observe(
                "InPlaceOnly",
                IMAGE,
                states=("Normal", "Normal", "Normal"),
                olds=(V1, ENV, V1),
            ),
            ["web-0: not-ready", "web-0: in-place"],
            IN_PLACE_ONLY_ERROR.format("web-1"),
            id="InPlaceOnly, web-1 at a revision with env: web-0 updated, web-1 the error, "
            "web-2 waits",
        ),
        pytest.param(
            observe("InPlaceIfPossible", IMAGE, states=("Normal", "PreparingNormal", "Normal")),
            ["web-0: not-ready", "web-0: in-place"],
            STATE_ERROR.format("web-1", "PreparingNormal"),
            id="InPlaceIfPossible, web-1 in an unknown state: web-0 updated, web-1 the error, "
            "web-2 waits",
        ),
        pytest.param(
            observe(
                "InPlaceIfPossible",
                IMAGE,
                states=("Normal", "Normal", "Normal"),
                olds=(V1, ENV, V1),
            ),
            [
                "web-0: not-ready",
                "web-0: in-place",
                "web-1: re-create",
                "web-2: not-ready",
                "web-2: in-place",
            ],
            "",
            id="InPlaceIfPossible, web-1 at a revision with env: re-created, the round goes on",
        ),
    ],
)
def test_a_round_stops_at_its_first_error(
    observed: sync.Observed, expected_writes: list[str], expected_error: str
) -> None:
    planned = sync.plan_round(observed)
    assert writes(planned.actions) == expected_writes
    assert planned.error == expected_error


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        pytest.param(
            observe("InPlaceOnly", ENV),
            [
                {
                    "type": "FailedUpdate",
                    "status": "True",
                    "lastTransitionTime": NOW,
                    "message": IN_PLACE_ONLY_ERROR.format("web-0"),
                }
            ],
            id="InPlaceOnly, env change → FailedUpdate with OpenKruise's message",
        ),
        pytest.param(
            observe("InPlaceIfPossible", IMAGE, states=("PreparingNormal",)),
            [
                {
                    "type": "FailedUpdate",
                    "status": "True",
                    "lastTransitionTime": NOW,
                    "message": STATE_ERROR.format("web-0", "PreparingNormal"),
                }
            ],
            id="unknown state, image change → FailedUpdate with the state message",
        ),
        pytest.param(
            observe("InPlaceOnly", IMAGE),
            [],
            id="InPlaceOnly, image change → no condition",
        ),
    ],
)
def test_the_round_error_becomes_failed_update(
    observed: sync.Observed, expected: list[dict[str, str]]
) -> None:
    """What the shell does when every write before the error went through: the round's
    error is its failure (``RolloutController._run``)."""
    planned = sync.plan_round(observed)
    failure = planned.error or None
    scale_error, update_error = status.round_errors(planned.phase, failure)
    assert (
        status.next_conditions([], scale_error=scale_error, update_error=update_error, now=NOW)
        == expected
    )


def test_reverting_the_template_clears_failed_update() -> None:
    """The template goes back to the pods' own: nothing to update, the round is idle, and
    the FailedUpdate the last round wrote is removed."""
    failing = sync.plan_round(observe("InPlaceOnly", ENV))
    before = status.next_conditions(
        [], scale_error="", update_error=failing.error, now="2027-01-15T07:59:00Z"
    )
    reverted = sync.plan_round(observe("InPlaceOnly", V1))
    assert (reverted.phase, reverted.actions, reverted.error) == ("idle", (), "")
    scale_error, update_error = status.round_errors(reverted.phase, reverted.error or None)
    assert (
        status.next_conditions(before, scale_error=scale_error, update_error=update_error, now=NOW)
        == []
    )
