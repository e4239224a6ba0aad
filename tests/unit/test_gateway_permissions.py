"""The services' permissions at the gateway (services.gateway.permissions).

Rows read as what a component asks the ClusterService for, and whether the gateway carries
it out. The last tests keep ``GATEWAY_OWN`` honest: every file of the gateway that talks to
the API server on its own account is in it, with the verbs it uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from kruise.rollout.v1 import rollout_pb2
from services.budget.decision import RELATED_PUB
from services.gateway import app, config, mesh_certs, permissions
from services.gateway.hub import WATCHED
from services.gateway.permissions import Decision, authorize
from services.kit.identity import COMPONENTS
from services.rollout import report, steering
from services.rollout.steering import Change
from tests.unit.rollout_builders import clone_set

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / "services" / "gateway"

CORE, APPS, KRUISE, POLICY = "", "apps", "apps.kruise.io", "policy.kruise.io"


def ask(
    component: str | None,
    verb: str,
    resource: str,
    *,
    group: str = CORE,
    namespace: str = "default",
    patch: Any = None,
) -> Decision:
    """``resource`` as ``pods`` or ``pods/status``; ``patch`` a JSON document (or bytes)."""
    name, _, sub = resource.partition("/")
    body = patch if patch is None or isinstance(patch, bytes) else orjson.dumps(patch)
    return authorize(
        component,
        verb=verb,
        group=group,
        resource=name,
        subresource=sub,
        namespace=namespace,
        patch=body,
    )


def annotation(key: str, value: object) -> dict[str, Any]:
    return {"metadata": {"annotations": {key: value}}}


ALLOWED, DENIED = True, False

SCENARIOS = [
    # placement
    pytest.param(
        "placement",
        "patch",
        "persistentpodstates/status",
        {"group": KRUISE},
        ALLOWED,
        id="placement records pod states",
    ),
    pytest.param(
        "placement",
        "create",
        "persistentpodstates",
        {"group": KRUISE},
        ALLOWED,
        id="placement generates a PersistentPodState",
    ),
    pytest.param(
        "placement", "create", "events", {}, ALLOWED, id="placement reports a pod that moved"
    ),
    pytest.param("placement", "delete", "pods", {}, DENIED, id="placement deletes a pod"),
    pytest.param("placement", "get", "nodes", {}, DENIED, id="placement reads a node (cache only)"),
    pytest.param(
        "placement",
        "patch",
        "podunavailablebudgets/status",
        {"group": POLICY},
        DENIED,
        id="placement spends a budget",
    ),
    # budget
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": {"metadata": {"labels": {"app": "x"}}}},
        DENIED,
        id="budget patches a pod's labels",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": annotation(RELATED_PUB, "web-pub")},
        ALLOWED,
        id="budget sets kruise.io/related-pub",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": {"metadata": {"annotations": {RELATED_PUB: "p"}, "labels": {"a": "b"}}}},
        DENIED,
        id="budget sets related-pub and a label in one patch",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": annotation("kruise.io/other", "x")},
        DENIED,
        id="budget sets another annotation",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": {"metadata": {"annotations": None}}},
        DENIED,
        id="budget wipes every annotation",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": {"metadata": {"$patch": "replace", "annotations": {RELATED_PUB: "p"}}}},
        DENIED,
        id="budget replaces the metadata with a strategic directive",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods",
        {"patch": [{"op": "add", "path": "/metadata/annotations/x", "value": "p"}]},
        DENIED,
        id="budget sends a JSON patch",
    ),
    pytest.param(
        "budget",
        "patch",
        "pods/status",
        {"patch": annotation(RELATED_PUB, "p")},
        DENIED,
        id="budget patches a pod's status",
    ),
    pytest.param(
        "budget",
        "patch",
        "podunavailablebudgets/status",
        {"group": POLICY},
        ALLOWED,
        id="budget spends its budget",
    ),
    pytest.param(
        "budget",
        "patch",
        "podunavailablebudgets",
        {"group": POLICY, "patch": {"spec": {"maxUnavailable": 100}}},
        DENIED,
        id="budget widens a budget's spec",
    ),
    pytest.param(
        "budget",
        "get",
        "shardsets/scale",
        {"group": "apps.example.io"},
        ALLOWED,
        id="budget counts a custom workload through /scale",
    ),
    pytest.param(
        "budget", "get", "replicasets", {"group": APPS}, ALLOWED, id="budget resolves an owner"
    ),
    pytest.param(
        "budget",
        "get",
        "pods",
        {"namespace": "kube-system"},
        ALLOWED,
        id="budget reads a pod in kube-system (reads are not fenced by namespace)",
    ),
    pytest.param("budget", "get", "secrets", {}, DENIED, id="budget reads a Secret"),
    pytest.param("budget", "delete", "pods", {}, DENIED, id="budget evicts a pod itself"),
    # rollout
    pytest.param("rollout", "create", "pods", {}, ALLOWED, id="rollout scales out"),
    pytest.param(
        "rollout",
        "create",
        "pods",
        {"namespace": "kube-system"},
        DENIED,
        id="rollout creates a pod in kube-system",
    ),
    pytest.param(
        "rollout",
        "delete",
        "pods",
        {"namespace": "kruise-mesh"},
        DENIED,
        id="rollout deletes a pod of the mesh itself",
    ),
    pytest.param(
        "rollout",
        "patch",
        "pods/status",
        {"patch": {"status": {"conditions": []}}},
        ALLOWED,
        id="rollout sets KruisePodReady",
    ),
    pytest.param(
        "rollout",
        "create",
        "persistentvolumeclaims",
        {},
        ALLOWED,
        id="rollout creates a pod's claim",
    ),
    pytest.param(
        "rollout",
        "patch",
        "controllerrevisions",
        {"group": APPS, "patch": {"revision": 3}},
        ALLOWED,
        id="rollout renumbers a revision",
    ),
    pytest.param(
        "rollout",
        "patch",
        "clonesets/status",
        {"group": KRUISE},
        ALLOWED,
        id="rollout writes a CloneSet's status",
    ),
    pytest.param(
        "rollout",
        "patch",
        "clonesets",
        {"group": KRUISE, "patch": {"spec": {"updateStrategy": {"partition": "30%"}}}},
        ALLOWED,
        id="rollout API sets a partition",
    ),
    pytest.param(
        "rollout",
        "patch",
        "clonesets",
        {"group": KRUISE, "patch": {"spec": {"template": {"spec": {"hostNetwork": True}}}}},
        DENIED,
        id="rollout changes a CloneSet's template",
    ),
    pytest.param(
        "rollout",
        "patch",
        "clonesets",
        {"group": KRUISE, "patch": {"spec": {"replicas": 100}}},
        DENIED,
        id="rollout scales a CloneSet",
    ),
    pytest.param("rollout", "create", "configmaps", {}, DENIED, id="rollout creates a ConfigMap"),
    pytest.param(
        "rollout",
        "create",
        "clusterrolebindings",
        {"group": "rbac.authorization.k8s.io", "namespace": ""},
        DENIED,
        id="rollout binds cluster-admin",
    ),
    # other identities
    pytest.param("gateway", "get", "pods", {}, DENIED, id="the gateway's identity asks"),
    pytest.param("stranger", "get", "pods", {}, DENIED, id="a component the mesh does not know"),
    # no identity (plain TCP): the union of the tables
    pytest.param(
        None,
        "create",
        "pods",
        {"namespace": "kube-system"},
        DENIED,
        id="no identity, create a pod in kube-system",
    ),
    pytest.param(
        None, "delete", "nodes", {"namespace": ""}, DENIED, id="no identity, delete a node"
    ),
    pytest.param(None, "get", "secrets", {}, DENIED, id="no identity, read a Secret"),
    pytest.param(
        None,
        "patch",
        "clonesets",
        {"group": KRUISE, "patch": {"spec": {"template": {}}}},
        DENIED,
        id="no identity, change a CloneSet's template",
    ),
    pytest.param(
        None,
        "create",
        "events",
        {"namespace": "kruise-mesh"},
        DENIED,
        id="no identity, an Event in the mesh's namespace",
    ),
    pytest.param(
        None, "create", "pods", {}, ALLOWED, id="no identity, create a pod (rollout could)"
    ),
    pytest.param(
        None,
        "patch",
        "persistentpodstates/status",
        {"group": KRUISE},
        ALLOWED,
        id="no identity, record pod states (placement could)",
    ),
]


@pytest.mark.parametrize(("component", "verb", "resource", "where", "allowed"), SCENARIOS)
def test_authorize(
    component: str | None, verb: str, resource: str, where: dict[str, Any], allowed: bool
) -> None:
    decision = ask(component, verb, resource, **where)
    assert decision.allowed is allowed, decision.reason
    # Either way, the reason names who, what and on what.
    name, _, sub = resource.partition("/")
    spelled = permissions.resource_name(
        group=where.get("group", CORE), resource=name, subresource=sub
    )
    assert decision.reason.startswith(f"{component or 'a caller without a mesh identity'} may")
    assert f"{verb} {spelled}" in decision.reason


@pytest.mark.parametrize(
    ("decision", "reason"),
    [
        pytest.param(
            ask("placement", "delete", "pods"),
            "placement may not delete pods",
            id="not in the table",
        ),
        pytest.param(
            ask("rollout", "create", "pods", namespace="kube-system"),
            "rollout may not create pods in namespace kube-system: no mesh service writes there",
            id="protected namespace",
        ),
        pytest.param(
            ask("budget", "patch", "pods", patch={"metadata": {"labels": {"a": "b"}}}),
            "budget may patch pods only to change metadata.annotations[kruise.io/related-pub],"
            " and this patch changes metadata.labels",
            id="beyond the constraint",
        ),
        pytest.param(
            ask("budget", "patch", "pods", patch=b"[]"),
            "budget may patch pods only to change metadata.annotations[kruise.io/related-pub],"
            " and this patch is not a merge patch (a JSON object)",
            id="a JSON patch where a merge patch is needed",
        ),
        pytest.param(
            ask(
                "rollout",
                "patch",
                "clonesets",
                group=KRUISE,
                patch={"spec": {"updateStrategy": {"maxSurge": 1}}},
            ),
            "rollout may patch clonesets.apps.kruise.io only to change "
            "metadata.annotations[rollout.kruise-mesh.io/rollout-id], "
            "metadata.annotations[rollout.kruise-mesh.io/last-request-id], "
            "metadata.annotations[batchrelease.rollouts.kruise.io/control-info], "
            "spec.updateStrategy.partition, spec.updateStrategy.paused, "
            "and this patch changes spec.updateStrategy.maxSurge",
            id="rollout API beyond partition and paused",
        ),
    ],
)
def test_denial_reasons(decision: Decision, reason: str) -> None:
    assert decision == Decision(False, reason)


def test_the_protected_namespaces_follow_the_mesh_namespace() -> None:
    assert permissions.protected_namespaces("mesh") == {
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "mesh",
    }
    decision = authorize(
        "rollout",
        verb="create",
        group=CORE,
        resource="pods",
        namespace="mesh",
        protected=permissions.protected_namespaces("mesh"),
    )
    assert not decision.allowed


# -- the services' real writes pass --------------------------------------------------------------


def _request_id(**fields: Any) -> dict[str, Any]:
    return {"request_id": "r-1", **fields}


def _partition(percent: str, **fields: Any) -> rollout_pb2.SetPartitionRequest:
    request = rollout_pb2.SetPartitionRequest(**_request_id(**fields))
    request.partition.percent = percent
    return request


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            steering.plan_set_partition(
                clone_set(10, partition="50%"), _partition("30%", rollout_id="ro-1")
            ),
            id="SetPartition claims and lowers the partition",
        ),
        pytest.param(
            steering.plan_set_partition(
                clone_set(10, partition="50%"),
                rollout_pb2.SetPartitionRequest(paused=True, request_id="r-2"),
            ),
            id="SetPartition pauses",
        ),
        pytest.param(
            steering.plan_release(
                clone_set(
                    10,
                    partition="50%",
                    paused=True,
                    annotations={
                        report.ROLLOUT_ID_ANNOTATION: "ro-1",
                        report.CONTROL_INFO_ANNOTATION: "{}",
                    },
                ),
                rollout_pb2.ReleaseRequest(
                    rollout_id="ro-1", promote=True, force=True, request_id="r-3"
                ),
            ),
            id="Release frees the claim and promotes",
        ),
    ],
)
def test_the_rollout_apis_own_patches_are_allowed(change: Any) -> None:
    assert isinstance(change, Change) and change.patch is not None
    decision = ask("rollout", "patch", "clonesets", group=KRUISE, patch=change.patch)
    assert decision.allowed, decision.reason


def test_the_constraints_name_the_services_annotations() -> None:
    assert permissions.RELATED_PUB == RELATED_PUB
    assert (permissions.ROLLOUT_ID, permissions.LAST_REQUEST_ID, permissions.CONTROL_INFO) == (
        report.ROLLOUT_ID_ANNOTATION,
        report.REQUEST_ID_ANNOTATION,
        report.CONTROL_INFO_ANNOTATION,
    )


def test_every_mesh_identity_has_a_table_and_only_the_services_a_full_one() -> None:
    assert set(permissions.TABLES) == set(COMPONENTS)
    assert {c for c, table in permissions.TABLES.items() if table} == {
        "placement",
        "rollout",
        "budget",
    }


# -- service_grants: what the gateway needs to carry the tables out ------------------------------


def test_a_patch_also_needs_the_read_after_a_failed_precondition() -> None:
    grants = permissions.service_grants(
        {"x": (permissions.Rule("patch", APPS, "things", "status"),)}
    )
    assert sorted(grants) == [
        permissions.Grant("get", APPS, "things"),
        permissions.Grant("patch", APPS, "things/status"),
    ]


# -- GATEWAY_OWN is honest ------------------------------------------------------------------------

# Requests the gateway sends through its KubeClient, with a literal method; and any other use of
# request()/request_json() (a method the test cannot read).
CALL = re.compile(r"\bkube\.(request|request_json)\(\s*\"([A-Z]+)\"")
ANY_CALL = re.compile(r"\bkube\.(request|request_json)\(")
WATCH = re.compile(r"\bkube\.watch_lines\(|\bReflector\(")
VERBS = {
    "GET": {"get", "list"},
    "POST": {"create"},
    "PUT": {"update"},
    "PATCH": {"patch"},
    "DELETE": {"delete"},
}
# Not the gateway's own account: the adapter itself, the services' ClusterService (TABLES).
NOT_OWN = {"services/gateway/cluster_api.py", "services/gateway/permissions.py"}


def own_calls() -> dict[str, set[str]]:
    """Each gateway file that talks to the API server → the HTTP methods (WATCH) it uses."""
    found: dict[str, set[str]] = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in NOT_OWN or rel.startswith("services/gateway/kube/"):
            continue
        text = path.read_text()
        methods = {m for _, m in CALL.findall(text)}
        assert len(CALL.findall(text)) == len(ANY_CALL.findall(text)), (
            f"{rel}: a kube request whose method is not a literal; name it so this test can "
            "check GATEWAY_OWN"
        )
        if WATCH.search(text):
            methods.add("WATCH")
        if methods:
            found[rel] = methods
    return found


OWN_CALLS = own_calls()


def test_every_gateway_file_that_calls_the_api_server_is_in_gateway_own() -> None:
    named = {own.by for own in permissions.GATEWAY_OWN}
    assert sorted(set(OWN_CALLS) - named) == []
    assert sorted(named - set(OWN_CALLS)) == []


@pytest.mark.parametrize("rel", sorted(OWN_CALLS))
def test_gateway_own_names_the_verbs_each_file_uses(rel: str) -> None:
    verbs = {v for own in permissions.GATEWAY_OWN if own.by == rel for v in own.verbs}
    for method in sorted(OWN_CALLS[rel]):
        wanted = {"list", "watch"} if method == "WATCH" else VERBS[method]
        if method == "WATCH":
            assert wanted <= verbs, f"{rel} lists and watches; GATEWAY_OWN says {sorted(verbs)}"
        else:
            assert wanted & verbs, f"{rel} sends {method}; GATEWAY_OWN says {sorted(verbs)}"


def plural(kind: str) -> str:
    """Discovery's plural for the hub's kinds (all regular)."""
    return kind.lower() + "s"


def test_the_hub_lists_and_watches_exactly_what_gateway_own_says() -> None:
    hub = {
        (own.group, own.resource)
        for own in permissions.GATEWAY_OWN
        if own.by == "services/gateway/hub.py"
    }
    watched = {(spec.api_version.rpartition("/")[0], plural(spec.kind)) for spec in WATCHED}
    assert hub == watched


def test_gateway_own_names_the_objects_the_gateway_is_configured_with() -> None:
    named = {
        (own.resource, name)
        for own in permissions.GATEWAY_OWN
        if own.deployed
        for name in own.names
    }
    assert named == {
        ("leases", app.LEASE_NAME),
        ("secrets", config.GatewayConfig().cert_secret),
        ("secrets", permissions.MESH_CA_SECRET),
        *(("secrets", mesh_certs.secret_name(c)) for c in mesh_certs.SERVICES),
        *((f"{kind.lower()}s", name) for kind, name in app.WEBHOOK_CONFIGS.items()),
    }
