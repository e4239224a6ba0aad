"""``claim.release_decision`` and ``sync.plan_round``'s release step (OpenKruise's
``claimPods``): rows read as scenarios of one CloneSet ``web`` selecting ``app=web``."""

from __future__ import annotations

import random

import pytest

from kruise.common.v1 import views_pb2
from services.rollout import claim, revision, sync
from services.rollout.actions import PatchPod
from tests.unit.rollout_builders import NEW, NOW, clone_set, pod

CS = clone_set(2)
OWNER = CS.meta.uid


def owned(
    name: str, *, by: str = OWNER, controller: bool = True, **labels: str
) -> views_pb2.PodView:
    view = pod(name=name, labels=labels)
    if by:
        view.meta.owner_references.add(
            api_version="apps.kruise.io/v1alpha1",
            kind="CloneSet",
            name="web",
            uid=by,
            controller=controller,
        )
    view.meta.resource_version = "7"
    return view


def with_other_first(view: views_pb2.PodView) -> views_pb2.PodView:
    refs = list(view.meta.owner_references)
    del view.meta.owner_references[:]
    view.meta.owner_references.add(kind="ConfigMap", name="keep", uid="uid-cm")
    view.meta.owner_references.extend(refs)
    return view


deleting = clone_set(2)
deleting.meta.deletion_unix_ms = NOW


@pytest.mark.parametrize(
    ("cs", "pods", "expected"),
    [
        pytest.param(CS, [owned("a"), owned("b")], [], id="every pod matches: nothing released"),
        pytest.param(
            CS,
            [owned("a"), owned("b", app="debug")],
            [("b", 0)],
            id="user relabels web-b app=debug: released",
        ),
        pytest.param(
            CS,
            [with_other_first(owned("b", app="debug"))],
            [("b", 1)],
            id="released pod keeps its other ownerReference (index 1 removed)",
        ),
        pytest.param(
            CS,
            [owned("x", by="uid-other", app="debug")],
            [],
            id="pod of another controller never touched",
        ),
        pytest.param(
            CS,
            [owned("x", controller=False, app="debug")],
            [],
            id="non-controller reference to web: not ours to release",
        ),
        pytest.param(CS, [owned("o", by="")], [], id="orphan matching the selector: not adopted"),
        pytest.param(
            deleting,
            [owned("b", app="debug")],
            [],
            id="CloneSet being deleted releases nothing",
        ),
    ],
)
def test_release_decision(
    cs: views_pb2.CloneSetView, pods: list[views_pb2.PodView], expected: list[tuple[str, int]]
) -> None:
    got = claim.release_decision(cs, pods)
    assert [(r.pod, r.ref_index) for r in got] == expected
    assert all(r.uid == f"uid-{r.pod}" and r.resource_version == "7" for r in got)


def test_release_patch_tests_the_uid_then_removes_the_reference() -> None:
    release = claim.Release("b", "uid-b", "7", 1)
    assert claim.release_patch(release, owner_uid=OWNER) == [
        {"op": "test", "path": "/metadata/ownerReferences/1/uid", "value": OWNER},
        {"op": "remove", "path": "/metadata/ownerReferences/1"},
    ]


def observed(pods: list[views_pb2.PodView], busy: frozenset[str] = frozenset()) -> sync.Observed:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    plan = revision.RevisionPlan(
        update=NEW,
        current=NEW,
        collision_count=0,
        update_template=template,
        current_template=template,
    )
    return sync.Observed(
        clone_set=CS, pods=tuple(pods), revisions=plan, now_ms=NOW, rng=random.Random(1), busy=busy
    )


def test_round_releases_first_and_creates_nothing_meanwhile() -> None:
    # 2 replicas; web-b relabelled: the round only releases it (no replacement yet).
    acted = sync.plan_round(observed([owned("a"), owned("b", app="debug")]))
    assert acted.phase == "release"
    assert acted.actions == (
        PatchPod(
            "b",
            "uid-b",
            "7",
            claim.release_patch(claim.Release("b", "uid-b", "7", 0), owner_uid=OWNER),
            kind="json",
        ),
    )
    assert acted.requeue_ms == sync.RELEASE_REQUEUE_MS


def test_round_after_release_scales_out_for_the_released_pod() -> None:
    # The cache shows web-b unowned: it is not the CloneSet's any more → one new pod.
    acted = sync.plan_round(observed([owned("a")]))
    assert acted.phase == "scale"
    assert len(acted.actions) == 1


def test_busy_pod_waits_for_its_release() -> None:
    acted = sync.plan_round(observed([owned("a"), owned("b", app="debug")], busy=frozenset({"b"})))
    assert acted.phase != "release"
