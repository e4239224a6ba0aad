"""``revision.history_of`` and ``plan_revisions`` over it: which revisions are a CloneSet's
history (OpenKruise v1.2's ``ListControllerRevisions(parent, selector)``), and what a
CloneSet re-applied after ``kubectl delete cloneset web --cascade=orphan`` decides.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kruise.common.v1 import views_pb2
from services.rollout import revision

NS = "shop"
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "main", "image": "nginx:1"}]},
}
OTHER: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "main", "image": "nginx:2"}]},
}


def clone_set(uid: str = "u2", *, limit: int = 10) -> views_pb2.CloneSetView:
    cs = views_pb2.CloneSetView(revision_history_limit=limit)
    cs.meta.namespace, cs.meta.name, cs.meta.uid = NS, "web", uid
    cs.selector.match_labels["app"] = "web"
    return cs


def rev(
    name: str,
    *,
    owner: str | None = None,
    kind: str = "CloneSet",
    controller: bool = True,
    app: str = "web",
    number: int = 1,
    template: dict[str, Any] | None = None,
    namespace: str = NS,
) -> views_pb2.ControllerRevisionView:
    view = views_pb2.ControllerRevisionView(revision=number)
    view.meta.namespace, view.meta.name, view.meta.uid = namespace, name, f"uid-{name}"
    view.meta.labels["app"] = app
    if owner is not None:
        view.meta.owner_references.add(
            api_version="apps.kruise.io/v1alpha1",
            kind=kind,
            name="web",
            uid=owner,
            controller=controller,
        )
    view.data_json = orjson.dumps(revision.revision_data(template or TEMPLATE))
    return view


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        pytest.param([rev("web-a", owner="u2")], ["web-a"], id="controlled by this CloneSet"),
        pytest.param(
            [rev("web-b")], ["web-b"], id="orphan matching the selector (left by --cascade=orphan)"
        ),
        pytest.param(
            [rev("web-c", owner="u1")], [], id="controlled by a namesake being deleted: not ours"
        ),
        pytest.param([rev("db-d", app="db")], [], id="orphan outside the selector"),
        pytest.param(
            [rev("web-e", owner="u2", app="db")],
            ["web-e"],
            id="ours by its controller even with other labels (as ListControllerRevisions)",
        ),
        pytest.param(
            [rev("web-f", owner="u1", controller=False)],
            ["web-f"],
            id="an owner that is not its controller: still an orphan",
        ),
        pytest.param(
            [rev("web-g", owner="sts-uid", kind="StatefulSet")],
            [],
            id="held by another kind of controller",
        ),
        pytest.param([rev("web-h", namespace="other")], [], id="another namespace"),
        pytest.param(
            [rev("web-a", owner="u2"), rev("web-b"), rev("web-c", owner="u1")],
            ["web-a", "web-b"],
            id="mixed: order kept",
        ),
    ],
)
def test_history_of(views: list[views_pb2.ControllerRevisionView], expected: list[str]) -> None:
    found = revision.history_of(clone_set=clone_set(), views=views)
    assert [v.meta.name for v in found] == expected


def orphan_of_template(
    template: dict[str, Any], number: int = 1
) -> views_pb2.ControllerRevisionView:
    name = revision.revision_name("web", revision.revision_data(template))
    return rev(name, number=number, template=template)


@pytest.mark.parametrize(
    ("stored", "expected_create", "expected_renumber", "expected_update"),
    [
        pytest.param(
            [orphan_of_template(TEMPLATE)],
            False,
            None,
            orphan_of_template(TEMPLATE).meta.name,
            id="re-applied unchanged: the orphaned revision is reused, nothing created",
        ),
        pytest.param(
            [orphan_of_template(TEMPLATE, 1), orphan_of_template(OTHER, 2)],
            False,
            3,
            orphan_of_template(TEMPLATE).meta.name,
            id="re-applied with an older orphaned template: renumbered to newest + 1",
        ),
        pytest.param(
            [orphan_of_template(OTHER, 4)],
            True,
            None,
            revision.revision_name("web", revision.revision_data(TEMPLATE)),
            id="re-applied with a new template: created, numbered after the orphans (5)",
        ),
    ],
)
def test_plan_revisions_over_orphans(
    stored: list[views_pb2.ControllerRevisionView],
    expected_create: bool,
    expected_renumber: int | None,
    expected_update: str,
) -> None:
    cs = clone_set()
    history = revision.revisions_of(revision.history_of(clone_set=cs, views=stored))
    plan = revision.plan_revisions(
        clone_set=cs, template=TEMPLATE, stored=history, live_revisions=()
    )
    assert plan.update == expected_update
    assert (plan.create is not None) == expected_create
    if plan.create is not None:
        assert plan.create.body["revision"] == max(v.revision for v in stored) + 1
        assert plan.create.body["metadata"]["ownerReferences"][0]["uid"] == "u2"
    assert (plan.renumber.number if plan.renumber else None) == expected_renumber
    assert plan.collision_count == 0 and plan.delete == ()


def test_orphans_count_against_the_history_limit() -> None:
    """As OpenKruise's truncateHistory over ListControllerRevisions: orphans are history."""
    cs = clone_set(limit=1)
    stored = [
        orphan_of_template(OTHER, 1),
        orphan_of_template({**OTHER, "spec": {"containers": [{"name": "m", "image": "x"}]}}, 2),
        orphan_of_template(TEMPLATE, 3),
    ]
    history = revision.revisions_of(revision.history_of(clone_set=cs, views=stored))
    plan = revision.plan_revisions(
        clone_set=cs, template=TEMPLATE, stored=history, live_revisions=()
    )
    assert plan.create is None and plan.update == stored[2].meta.name
    assert [d.name for d in plan.delete] == [stored[0].meta.name]
