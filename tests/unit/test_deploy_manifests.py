"""Checks of the install in deploy/: every manifest parses and names itself, the CRDs match
OpenKruise v1.2 (group, versions, scope, subresources, fields), the webhook configurations carry
exactly the paths and failure policies the gateway serves, the kustomization lists every file,
and the feature services hold no Kubernetes credentials.

The examples in deploy/examples/ are checked against the CRD schemas by `validate`, a small
structural validator (type, properties, required, additionalProperties, items, enum,
x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string) that rejects unknown fields as
kube-apiserver does under strict field validation (kubectl's default).
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.gateway.permissions import Grant, gateway_grants
from services.gateway.rollout_http import HTTP_TIMEOUT_S

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXAMPLES = DEPLOY / "examples"
MONITORING = DEPLOY / "monitoring"  # optional: the Prometheus Operator's kinds
CERT_MANAGER = DEPLOY / "cert-manager"  # optional: a Component (test_deploy_cert_manager.py)
NAMESPACE = "kruise-mesh"
SERVICES = ("placement", "rollout", "budget")

Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    """Every YAML file of the install (deploy/ without examples/, monitoring/ and
    cert-manager/), sorted."""
    return sorted(
        p
        for p in DEPLOY.rglob("*.yaml")
        if EXAMPLES not in p.parents
        and MONITORING not in p.parents
        and CERT_MANAGER not in p.parents
        and p.name != "kustomization.yaml"
    )


@functools.cache
def load(path: Path) -> list[Doc]:
    """The documents of one YAML file, parsed once; callers must not mutate them."""
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def all_docs() -> list[Doc]:
    return [d for p in manifest_files() for d in load(p)]


def find(kind: str, name: str) -> Doc:
    matches = [d for d in all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def crd_schema(plural_group: str) -> Doc:
    crd = find("CustomResourceDefinition", plural_group)
    (version,) = crd["spec"]["versions"]
    schema: Doc = version["schema"]["openAPIV3Schema"]
    return schema


# --- every document ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [*manifest_files(), *sorted(EXAMPLES.glob("*.yaml"))], ids=lambda p: p.name
)
def test_every_document_has_api_version_kind_and_name(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        assert doc.get("metadata", {}).get("name"), doc


def test_namespaced_objects_live_in_the_mesh_namespace() -> None:
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PriorityClass",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    for doc in all_docs():
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in cluster_scoped:
            assert namespace is None, doc["metadata"]["name"]
        else:
            assert namespace == NAMESPACE, doc["metadata"]["name"]


def test_namespace_is_labelled_so_the_webhooks_skip_it() -> None:
    assert find("Namespace", NAMESPACE)["metadata"]["labels"]["control-plane"] == "kruise-mesh"


# --- CRDs ----------------------------------------------------------------------------------------

CRDS = [
    pytest.param(
        "clonesets.apps.kruise.io",
        "apps.kruise.io",
        "CloneSet",
        ["clone"],
        {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.labelSelector",
            },
        },
        id="CloneSet",
    ),
    pytest.param(
        "persistentpodstates.apps.kruise.io",
        "apps.kruise.io",
        "PersistentPodState",
        [],
        {"status": {}},
        id="PersistentPodState",
    ),
    pytest.param(
        "podunavailablebudgets.policy.kruise.io",
        "policy.kruise.io",
        "PodUnavailableBudget",
        ["pub"],
        {"status": {}},
        id="PodUnavailableBudget",
    ),
]


@pytest.mark.parametrize(("name", "group", "kind", "short_names", "subresources"), CRDS)
def test_crd_matches_openkruise(
    name: str, group: str, kind: str, short_names: list[str], subresources: Doc
) -> None:
    crd = find("CustomResourceDefinition", name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = crd["spec"]
    assert spec["group"] == group
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["listKind"] == f"{kind}List"
    assert f"{spec['names']['plural']}.{group}" == name
    assert spec["names"].get("shortNames", []) == short_names
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        ("v1alpha1", True, True)
    ]
    assert spec["versions"][0]["subresources"] == subresources


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        pytest.param(
            "clonesets.apps.kruise.io",
            [
                "DESIRED",
                "UPDATED",
                "UPDATED_READY",
                "READY",
                "TOTAL",
                "AGE",
                "CONTAINERS",
                "IMAGES",
            ],
            id="CloneSet",
        ),
        pytest.param(
            "podunavailablebudgets.policy.kruise.io",
            ["Allowed", "Current", "Desired", "Total", "AGE"],
            id="PodUnavailableBudget",
        ),
        pytest.param(
            "persistentpodstates.apps.kruise.io",
            ["TARGET_KIND", "TARGET", "AGE"],
            id="PersistentPodState",
        ),
    ],
)
def test_printer_columns(name: str, columns: list[str]) -> None:
    (version,) = find("CustomResourceDefinition", name)["spec"]["versions"]
    printed = version["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    for column in printed:
        assert column["jsonPath"].startswith("."), column
        assert column["type"] in {"integer", "string", "date"}, column


def field(schema: Doc, dotted: str) -> Doc:
    """The schema node at `dotted`; `*` steps into additionalProperties, `[]` into items."""
    node = schema
    for step in dotted.split("."):
        if step == "*":
            node = node["additionalProperties"]
        elif step == "[]":
            node = node["items"]
        else:
            assert step in node.get("properties", {}), f"{dotted}: no field {step!r}"
            node = node["properties"][step]
    return node


INT_OR_STRING = "int-or-string"

V12_FIELDS = [
    # CloneSet (SPEC.md 2.1, 3.1)
    *[
        pytest.param("clonesets.apps.kruise.io", path, typ, id=f"cloneset {path}")
        for path, typ in [
            ("spec.replicas", "integer"),
            ("spec.selector.matchLabels", "object"),
            ("spec.selector.matchExpressions.[].values", "array"),
            ("spec.template", "object"),
            ("spec.volumeClaimTemplates", "array"),
            ("spec.scaleStrategy.podsToDelete", "array"),
            ("spec.scaleStrategy.maxUnavailable", INT_OR_STRING),
            ("spec.updateStrategy.type", "string"),
            ("spec.updateStrategy.partition", INT_OR_STRING),
            ("spec.updateStrategy.maxUnavailable", INT_OR_STRING),
            ("spec.updateStrategy.maxSurge", INT_OR_STRING),
            ("spec.updateStrategy.paused", "boolean"),
            ("spec.updateStrategy.priorityStrategy.weightPriority.[].weight", "integer"),
            ("spec.updateStrategy.priorityStrategy.weightPriority.[].matchSelector", "object"),
            ("spec.updateStrategy.priorityStrategy.orderPriority.[].orderedKey", "string"),
            ("spec.updateStrategy.scatterStrategy.[].key", "string"),
            ("spec.updateStrategy.inPlaceUpdateStrategy.gracePeriodSeconds", "integer"),
            ("spec.revisionHistoryLimit", "integer"),
            ("spec.minReadySeconds", "integer"),
            ("spec.lifecycle.preDelete.labelsHandler", "object"),
            ("spec.lifecycle.preDelete.finalizersHandler", "array"),
            ("spec.lifecycle.preDelete.markPodNotReady", "boolean"),
            ("spec.lifecycle.inPlaceUpdate.markPodNotReady", "boolean"),
            ("status.observedGeneration", "integer"),
            ("status.replicas", "integer"),
            ("status.readyReplicas", "integer"),
            ("status.availableReplicas", "integer"),
            ("status.updatedReplicas", "integer"),
            ("status.updatedReadyReplicas", "integer"),
            ("status.expectedUpdatedReplicas", "integer"),
            ("status.updateRevision", "string"),
            ("status.currentRevision", "string"),
            ("status.collisionCount", "integer"),
            ("status.conditions.[].lastTransitionTime", "string"),
            ("status.labelSelector", "string"),
        ]
    ],
    # PersistentPodState (SPEC.md 1.1)
    *[
        pytest.param("persistentpodstates.apps.kruise.io", path, typ, id=f"pps {path}")
        for path, typ in [
            ("spec.targetRef.apiVersion", "string"),
            ("spec.targetRef.kind", "string"),
            ("spec.targetRef.name", "string"),
            ("spec.requiredPersistentTopology.nodeTopologyKeys", "array"),
            ("spec.preferredPersistentTopology.[].weight", "integer"),
            ("spec.preferredPersistentTopology.[].preference.nodeTopologyKeys", "array"),
            ("spec.persistentPodStateRetentionPolicy", "string"),
            ("status.observedGeneration", "integer"),
            ("status.podStates.*.nodeName", "string"),
            ("status.podStates.*.nodeTopologyLabels", "object"),
        ]
    ],
    # PodUnavailableBudget (SPEC.md 4.1)
    *[
        pytest.param("podunavailablebudgets.policy.kruise.io", path, typ, id=f"pub {path}")
        for path, typ in [
            ("spec.selector.matchLabels", "object"),
            ("spec.targetRef.apiVersion", "string"),
            ("spec.targetRef.kind", "string"),
            ("spec.targetRef.name", "string"),
            ("spec.maxUnavailable", INT_OR_STRING),
            ("spec.minAvailable", INT_OR_STRING),
            ("status.observedGeneration", "integer"),
            ("status.disruptedPods.*", "string"),
            ("status.unavailablePods.*", "string"),
            ("status.unavailableAllowed", "integer"),
            ("status.currentAvailable", "integer"),
            ("status.desiredAvailable", "integer"),
            ("status.totalReplicas", "integer"),
        ]
    ],
]


@pytest.mark.parametrize(("crd", "path", "typ"), V12_FIELDS)
def test_crd_has_every_v1_2_field(crd: str, path: str, typ: str) -> None:
    node = field(crd_schema(crd), path)
    if typ == INT_OR_STRING:
        assert node.get("x-kubernetes-int-or-string") is True
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    else:
        assert node["type"] == typ


def schema_nodes(node: Doc, path: str = "") -> Iterator[tuple[str, Doc]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


@pytest.mark.parametrize("crd", [p.values[0] for p in CRDS])
def test_crd_schema_is_structural(crd: str) -> None:
    """Every node has a type, except int-or-string and preserve-unknown-fields nodes."""
    for path, node in schema_nodes(crd_schema(crd)):
        if node.get("x-kubernetes-int-or-string"):
            assert set(node) <= {"x-kubernetes-int-or-string", "anyOf", "description"}, path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
        for required in node.get("required", []):
            assert required in node.get("properties", {}), f"{path}: {required} not a property"


# --- webhooks ------------------------------------------------------------------------------------

WEBHOOKS = {
    # name: (configuration kind, path, failurePolicy, sideEffects, resources, operations)
    "mpod-placement.kruise.io": (
        "MutatingWebhookConfiguration",
        "/placement/mutate-pods",
        "Ignore",
        "None",
        ["pods"],
        ["CREATE"],
    ),
    "mpod-rollout.kruise.io": (
        "MutatingWebhookConfiguration",
        "/rollout/mutate-pods",
        "Ignore",
        "None",
        ["pods"],
        ["CREATE"],
    ),
    "mcloneset.kruise.io": (
        "MutatingWebhookConfiguration",
        "/rollout/mutate-clonesets",
        "Fail",
        "None",
        ["clonesets"],
        ["CREATE", "UPDATE"],
    ),
    "mpod-budget.kruise.io": (
        "MutatingWebhookConfiguration",
        "/budget/mutate-pods",
        "Ignore",
        "None",
        ["pods"],
        ["CREATE"],
    ),
    "vpps.kruise.io": (
        "ValidatingWebhookConfiguration",
        "/placement/validate-persistentpodstates",
        "Fail",
        "None",
        ["persistentpodstates"],
        ["CREATE", "UPDATE"],
    ),
    "vcloneset.kruise.io": (
        "ValidatingWebhookConfiguration",
        "/rollout/validate-clonesets",
        "Fail",
        "None",
        ["clonesets"],
        ["CREATE", "UPDATE"],
    ),
    "vpub.kruise.io": (
        "ValidatingWebhookConfiguration",
        "/budget/validate-podunavailablebudgets",
        "Fail",
        "None",
        ["podunavailablebudgets"],
        ["CREATE", "UPDATE"],
    ),
    "vpod-budget.kruise.io": (
        "ValidatingWebhookConfiguration",
        "/budget/validate-pods",
        "Ignore",
        "NoneOnDryRun",
        ["pods"],
        ["UPDATE", "DELETE"],
    ),
    "vpodeviction-budget.kruise.io": (
        "ValidatingWebhookConfiguration",
        "/budget/validate-pod-eviction",
        "Fail",
        "NoneOnDryRun",
        ["pods/eviction"],
        ["CREATE"],
    ),
}


def webhooks() -> list[tuple[str, Doc]]:
    return [
        (doc["kind"], hook)
        for doc in all_docs()
        if doc["kind"] in {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
        for hook in doc["webhooks"]
    ]


def test_webhook_configurations_are_named_as_the_gateway_expects() -> None:
    find("MutatingWebhookConfiguration", "kruise-mesh-mutating")
    find("ValidatingWebhookConfiguration", "kruise-mesh-validating")


def test_webhook_paths_are_exactly_the_served_set() -> None:
    paths = [hook["clientConfig"]["service"]["path"] for _, hook in webhooks()]
    assert sorted(paths) == sorted(w[1] for w in WEBHOOKS.values())
    assert sorted(hook["name"] for _, hook in webhooks()) == sorted(WEBHOOKS)


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_webhook_entry(name: str) -> None:
    kind, path, failure_policy, side_effects, resources, operations = WEBHOOKS[name]
    ((found_kind, hook),) = [(k, h) for k, h in webhooks() if h["name"] == name]
    assert found_kind == kind
    assert hook["clientConfig"]["service"] == {
        "name": "kruise-mesh-webhook",
        "namespace": NAMESPACE,
        "port": 443,
        "path": path,
    }
    assert "caBundle" not in hook["clientConfig"], "the gateway injects caBundle at start"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == failure_policy
    assert hook["sideEffects"] == side_effects
    assert hook["timeoutSeconds"] == 5
    (rule,) = hook["rules"]
    assert rule["resources"] == resources
    assert rule["operations"] == operations
    if kind == "MutatingWebhookConfiguration":
        assert hook["reinvocationPolicy"] == "Never"


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_webhook_skips_kube_system_and_the_mesh_namespace(name: str) -> None:
    ((_, hook),) = [(k, h) for k, h in webhooks() if h["name"] == name]
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", "kube-public"],
    } in expressions
    assert {"key": "control-plane", "operator": "DoesNotExist"} in expressions


def test_webhook_service_targets_the_gateway_webhook_port() -> None:
    service = find("Service", "kruise-mesh-webhook")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    gateway = find("Deployment", "kruise-mesh-gateway")
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == 9443


# --- kustomization -------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load(DEPLOY / "kustomization.yaml")
    listed = sorted(kustomization["resources"])
    assert listed == sorted(str(p.relative_to(DEPLOY)) for p in manifest_files())
    assert kustomization["namespace"] == NAMESPACE
    image = {"name": "kruise-mesh", "newName": "localhost/kruise-mesh", "newTag": "0.1.0"}
    assert image in kustomization["images"]  # what `make image` names it


@pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")
def test_kubectl_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=30, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert len(docs) == len(all_docs())
    images = {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"localhost/kruise-mesh:0.1.0"}


# --- workloads -----------------------------------------------------------------------------------


def pod_spec(component: str) -> Doc:
    spec: Doc = find("Deployment", f"kruise-mesh-{component}")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("component", SERVICES)
def test_services_mount_no_service_account_token(component: str) -> None:
    account = find("ServiceAccount", f"kruise-mesh-{component}")
    assert account["automountServiceAccountToken"] is False
    spec = pod_spec(component)
    assert spec["serviceAccountName"] == f"kruise-mesh-{component}"
    assert spec["automountServiceAccountToken"] is False
    for volume in spec.get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            assert "serviceAccountToken" not in source, volume["name"]
    bound = [
        subject["name"]
        for doc in all_docs()
        if doc["kind"] in {"RoleBinding", "ClusterRoleBinding"}
        for subject in doc["subjects"]
    ]
    assert bound and set(bound) == {"kruise-mesh-gateway"}


@pytest.mark.parametrize(
    ("component", "ports", "command"),
    [
        pytest.param(
            "gateway",
            {"grpc": 7000, "webhook": 9443, "metrics": 9090, "api": 7070, "api-http": 8080},
            ["python", "-m", "services.gateway"],
            id="gateway",
        ),
        *[
            pytest.param(
                c,
                {"grpc": 7100, "metrics": 9090},
                ["python", "-m", f"services.{c}"],
                id=c,
            )
            for c in SERVICES
        ],
    ],
)
def test_deployment_shape(component: str, ports: dict[str, int], command: list[str]) -> None:
    deployment = find("Deployment", f"kruise-mesh-{component}")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(component)
    (container,) = spec["containers"]
    assert container["command"] == command
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == ports
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert "preStop" in container["lifecycle"]
    assert spec["terminationGracePeriodSeconds"] > 5
    assert spec["topologySpreadConstraints"]
    env = {e["name"] for e in container["env"]}
    assert {"KRUISE_MESH_NAMESPACE", "POD_NAME", "POD_IP"} <= env
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    pdb = find("PodDisruptionBudget", f"kruise-mesh-{component}")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    # HTTP probes on the ops port: the gRPC ports take mesh certificates (or tokens) only.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    if component == "gateway":
        assert {"KRUISE_MESH_WEBHOOK_CERT_DIR", "KRUISE_MESH_SERVICES"} <= env
        assert "KRUISE_MESH_CA_SECRET" in env  # the gateway is the mesh CA
        (certs,) = secrets.values()
        assert certs["secretName"] == "kruise-mesh-webhook-certs"
        assert certs["optional"] is True
    else:
        assert {"KRUISE_MESH_GATEWAY", "KRUISE_MESH_TLS_DIR"} <= env
        # The component's mesh certificate, which the gateway keeps in this Secret.
        assert secrets["mesh-tls"]["secretName"] == f"kruise-mesh-{component}-tls"
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "mesh-tls"]
        assert mount["readOnly"] is True
        tls_dir = next(e["value"] for e in container["env"] if e["name"] == "KRUISE_MESH_TLS_DIR")
        assert mount["mountPath"] == tls_dir


@pytest.mark.parametrize(
    ("name", "port"),
    [("kruise-mesh-gateway-grpc", 7000), *[(f"kruise-mesh-{c}", 7100) for c in SERVICES]],
)
def test_discovery_services_are_headless(name: str, port: int) -> None:
    service = find("Service", name)
    assert service["spec"]["clusterIP"] == "None"
    if name != "kruise-mesh-gateway-grpc":
        # the gateway syncs a replica before it is Ready, so it must see it before then
        assert service["spec"]["publishNotReadyAddresses"] is True
    (service_port,) = service["spec"]["ports"]
    assert (service_port["name"], service_port["port"]) == ("grpc", port)


def test_rollout_api_service_targets_the_gateway_api_ports() -> None:
    """Tools' one address: RolloutService gRPC and its HTTP/JSON front, on every gateway."""
    service = find("Service", "kruise-mesh-rollout-api")
    spec = service["spec"]
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert "clusterIP" not in spec, "a ClusterIP, not headless: tools need one address"
    gateway = find("Deployment", "kruise-mesh-gateway")
    assert spec["selector"] == gateway["spec"]["selector"]["matchLabels"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ports = {p["name"]: (p["port"], container_ports[p["targetPort"]]) for p in spec["ports"]}
    assert ports == {"grpc": (7070, 7070), "http": (8080, 8080)}
    assert {p["name"]: p.get("appProtocol") for p in spec["ports"]} == {
        "grpc": "grpc",
        "http": "http",
    }


@pytest.mark.parametrize("component", SERVICES)
def test_hpa_per_service(component: str) -> None:
    hpa = find("HorizontalPodAutoscaler", f"kruise-mesh-{component}")["spec"]
    assert hpa["scaleTargetRef"]["name"] == f"kruise-mesh-{component}"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    (metric,) = hpa["metrics"]
    assert metric["resource"]["target"]["averageUtilization"] == 70


# --- a structural validator, and the examples checked with it ------------------------------------

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def validate(value: Any, schema: Doc, path: str = "") -> list[str]:
    """Errors of `value` against an openAPIV3Schema node, as "<path>: <reason>" strings.

    Pure. Unknown fields are errors (strict field validation) unless the node keeps unknown
    fields; the root's `metadata` is left to ObjectMeta validation, as kube-apiserver does.
    """
    if schema.get("x-kubernetes-int-or-string"):
        ok = _JSON_TYPES["integer"](value) or isinstance(value, str)
        return [] if ok else [f"{path}: must be an integer or a string"]
    typ = schema.get("type")
    if typ is not None and not _JSON_TYPES[typ](value):
        return [f"{path}: must be of type {typ}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']}")
    if typ == "integer" and schema.get("format") in _INT_RANGES:
        low, high = _INT_RANGES[schema["format"]]
        if not low <= value <= high:
            errors.append(f"{path}: out of range for {schema['format']}")
    if typ == "array" and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    if typ == "object":
        errors += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
        properties: Doc = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if path == "" and key == "metadata":
                continue
            if key in properties:
                errors += validate(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{key}: unknown field")
    return errors


def schema_for(doc: Doc) -> Doc:
    group, version = doc["apiVersion"].split("/")
    for crd in all_docs():
        if crd["kind"] != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        if spec["group"] == group and spec["names"]["kind"] == doc["kind"]:
            (served,) = [v for v in spec["versions"] if v["name"] == version]
            schema: Doc = served["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"no CRD for {doc['apiVersion']} {doc['kind']}")


def example(name: str) -> Doc:
    (doc,) = load(EXAMPLES / name)
    return doc


EXAMPLE_FILES = [
    "cloneset-partition-lifecycle.yaml",
    "persistentpodstate.yaml",
    "podunavailablebudget.yaml",
]
# Examples of other projects' kinds, whose CRDs deploy/ does not carry.
TOOL_EXAMPLES = ["argo-analysis-cloneset-batch.yaml"]


def test_examples_cover_each_kind() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(
        [*EXAMPLE_FILES, *TOOL_EXAMPLES]
    )
    assert [example(f)["kind"] for f in EXAMPLE_FILES] == [
        "CloneSet",
        "PersistentPodState",
        "PodUnavailableBudget",
    ]


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_is_valid_against_its_crd(name: str) -> None:
    doc = example(name)
    assert validate(doc, schema_for(doc)) == []


def test_cloneset_example_uses_percent_partition_and_mark_pod_not_ready() -> None:
    spec = example("cloneset-partition-lifecycle.yaml")["spec"]
    assert spec["updateStrategy"]["partition"] == "20%"
    assert spec["lifecycle"]["preDelete"]["markPodNotReady"] is True
    assert spec["lifecycle"]["inPlaceUpdate"]["markPodNotReady"] is True


def test_pub_example_uses_target_ref() -> None:
    assert example("podunavailablebudget.yaml")["spec"]["targetRef"]["kind"] == "CloneSet"


def test_argo_analysis_example_gates_on_check_batch_through_the_rollout_api_service() -> None:
    doc = example("argo-analysis-cloneset-batch.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    assert "namespace" not in doc["metadata"], "applied in the Rollout's namespace"
    args = doc["spec"]["args"]
    assert [a["name"] for a in args] == ["namespace", "cloneset", "batch", "api-token"]
    (metric,) = doc["spec"]["metrics"]
    web = metric["provider"]["web"]
    # HTTPS with the caller's bearer token (the gateway checks it: services/gateway/callers.py),
    # read from a Secret, and the certificate checked (no "insecure")
    assert "secretKeyRef" in args[-1]["valueFrom"]
    assert web["headers"] == [{"key": "Authorization", "value": "Bearer {{ args.api-token }}"}]
    assert not web.get("insecure")
    service = find("Service", "kruise-mesh-rollout-api")
    (http,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    base = f"https://{service['metadata']['name']}.{NAMESPACE}.svc:{http['port']}"
    path = (
        "/apis/rollout.kruise-mesh.io/v1/namespaces/{{args.namespace}}/clonesets/"
        "{{args.cloneset}}/batch?batch={{args.batch}}"
    )
    assert web["url"].startswith(base + path)
    assert web["jsonPath"] == "{$.ready}"
    assert metric["successCondition"] == "result == true"
    # Waits for the batch: not-ready answers are not failures, the first ready one succeeds.
    assert (metric["failureLimit"], metric["consecutiveSuccessLimit"]) == (-1, 1)
    assert metric["count"] >= 1 and metric["interval"]
    # Argo waits longer than the gateway, so it reads the gateway's 504, not its own timeout.
    assert web.get("timeoutSeconds", 10) > HTTP_TIMEOUT_S


def _set(doc: Doc, dotted: str, value: Any) -> Doc:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


def _delete(doc: Doc, dotted: str) -> Doc:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    del node[last]
    return doc


@pytest.mark.parametrize(
    ("name", "mutate", "expected"),
    [
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _set(d, "spec.updateStrategy.partition", ["20%"]),
            ".spec.updateStrategy.partition: must be an integer or a string",
            id="cloneset partition given as a list",
        ),
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _set(d, "spec.updateStrategy.partition", True),
            ".spec.updateStrategy.partition: must be an integer or a string",
            id="cloneset partition given as a boolean",
        ),
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _delete(d, "spec.selector"),
            ".spec.selector: required",
            id="cloneset without a selector",
        ),
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _set(d, "spec.lifecycle.preDelete.markPodNotready", True),
            ".spec.lifecycle.preDelete.markPodNotready: unknown field",
            id="cloneset hook with a misspelt markPodNotReady",
        ),
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _set(d, "spec.replicas", "10"),
            ".spec.replicas: must be of type integer",
            id="cloneset replicas as a string",
        ),
        pytest.param(
            "cloneset-partition-lifecycle.yaml",
            lambda d: _set(d, "spec.replicas", 2**31),
            ".spec.replicas: out of range for int32",
            id="cloneset replicas beyond int32",
        ),
        pytest.param(
            "persistentpodstate.yaml",
            lambda d: _delete(d, "spec.targetRef.kind"),
            ".spec.targetRef.kind: required",
            id="pps targetRef without kind",
        ),
        pytest.param(
            "persistentpodstate.yaml",
            lambda d: _set(d, "spec.requiredPersistentTopology.nodeTopologyKeys", "zone"),
            ".spec.requiredPersistentTopology.nodeTopologyKeys: must be of type array",
            id="pps topology keys as a string",
        ),
        pytest.param(
            "podunavailablebudget.yaml",
            lambda d: _set(d, "spec.maxUnavailable", 1.5),
            ".spec.maxUnavailable: must be an integer or a string",
            id="pub maxUnavailable as a float",
        ),
        pytest.param(
            "podunavailablebudget.yaml",
            lambda d: _set(d, "spec.maxUnavailible", 1),
            ".spec.maxUnavailible: unknown field",
            id="pub with a misspelt field",
        ),
    ],
)
def test_invalid_example_is_rejected(
    name: str, mutate: Callable[[Doc], Doc], expected: str
) -> None:
    doc = mutate(copy.deepcopy(example(name)))
    assert expected in validate(doc, schema_for(doc))


def test_template_keeps_unknown_fields_and_status_is_checked() -> None:
    doc = copy.deepcopy(example("cloneset-partition-lifecycle.yaml"))
    doc["spec"]["template"]["spec"]["anythingAtAll"] = {"x": 1}
    doc["status"] = {"replicas": 1}
    errors = validate(doc, schema_for(doc))
    assert errors == [
        ".status.readyReplicas: required",
        ".status.availableReplicas: required",
        ".status.updatedReplicas: required",
        ".status.updatedReadyReplicas: required",
    ]


# --- RBAC: one table is the truth ----------------------------------------------------------------
# The gateway's rights in deploy/rbac.yaml are exactly permissions.gateway_grants():
# what the services' tables let them ask the ClusterService for (and the reads those writes
# imply), and what the gateway does on its own account (GATEWAY_OWN). A rule nobody needs fails
# one test, a need no rule grants another, each naming the grant and who needs it.

GATEWAY_ROLES = (
    ("ClusterRole", "kruise-mesh-gateway", "cluster"),
    ("Role", "kruise-mesh-gateway", "mesh-namespace"),
)


def gateway_rbac() -> dict[Grant, str]:
    """Every single permission deploy/ grants the gateway, with the role granting it."""
    out: dict[Grant, str] = {}
    for kind, name, scope in GATEWAY_ROLES:
        for rule in find(kind, name)["rules"]:
            assert "nonResourceURLs" not in rule, f"{kind} {name}: nonResourceURLs {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for object_name in rule.get("resourceNames") or [""]:
                            grant = Grant(verb, group, resource, object_name, scope)  # type: ignore[arg-type]
                            out[grant] = f"{kind} {name}"
    return out


NEEDED = gateway_grants()
GRANTED = gateway_rbac()


@pytest.mark.parametrize("grant", sorted(NEEDED), ids=str)
def test_gateway_rbac_grants_what_the_mesh_needs(grant: Grant) -> None:
    assert grant in GRANTED, (
        f"deploy/rbac.yaml lacks {grant}, needed by: {'; '.join(NEEDED[grant])}"
    )


@pytest.mark.parametrize("grant", sorted(GRANTED), ids=str)
def test_gateway_rbac_grants_nothing_nobody_needs(grant: Grant) -> None:
    assert grant in NEEDED, (
        f"deploy/rbac.yaml grants {grant} ({GRANTED[grant]}), which no table in "
        "services/gateway/permissions.py needs: remove it, or add the row that needs it"
    )


def test_only_the_gateway_is_granted_anything() -> None:
    roles = {(kind, name) for kind, name, _ in GATEWAY_ROLES}
    aggregated = ("ClusterRole", "kruise-mesh-gateway-workloads")
    for doc in all_docs():
        if doc["kind"] in {"Role", "ClusterRole"}:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key in roles | {aggregated}, f"unexpected {key}"
    # Custom workload kinds are aggregated into this one by the operator; it grants nothing itself.
    assert find(*aggregated)["rules"] == []


# --- monitoring (optional, Prometheus Operator) ---------------------------------------------

MONITORING_FILES = ("podmonitor.yaml", "rules.yaml")


def alert_rules() -> list[Doc]:
    (rule,) = load(MONITORING / "rules.yaml")
    assert rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_monitoring_kustomization_lists_its_manifests() -> None:
    (kustomization,) = load(MONITORING / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(MONITORING_FILES)
    assert sorted(p.name for p in MONITORING.glob("*.yaml")) == sorted(
        [*MONITORING_FILES, "kustomization.yaml"]
    )


def test_pod_monitor_scrapes_every_component_by_its_metrics_port() -> None:
    (monitor,) = load(MONITORING / "podmonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for component in ("gateway", *SERVICES):
        template = find("Deployment", f"kruise-mesh-{component}")["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), component
        ports = {p["name"]: p for c in template["spec"]["containers"] for p in c["ports"]}
        assert ports[endpoint["port"]]["containerPort"] == 9090, component
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == endpoint["path"]


def test_every_alert_says_what_and_how_bad() -> None:
    for rule in alert_rules():
        assert rule["alert"].startswith("KruiseMesh"), rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule


def registered_metrics() -> dict[str, tuple[str, ...]]:
    """Every kruise_mesh_* metric the components register, with its label names."""
    import importlib

    from prometheus_client import REGISTRY

    for module in (
        "services.gateway.app",
        "services.gateway.webhook.server",
        "services.budget.committer",
        "services.budget.controller",
        "services.placement.controller",
    ):
        importlib.import_module(module)
    out: dict[str, tuple[str, ...]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():  # noqa: SLF001 - test only
        if name.startswith("kruise_mesh_"):
            out[name] = tuple(getattr(collector, "_labelnames", ()))
    return out


def test_every_metric_an_alert_reads_is_one_the_code_serves_with_those_labels() -> None:
    import re

    metrics = registered_metrics()
    selector = re.compile(r"(kruise_mesh_[a-z_]+)(?:\{([^}]*)\})?")
    seen = 0
    for rule in alert_rules():
        for name, matchers in selector.findall(rule["expr"]):
            seen += 1
            assert name in metrics, f"{rule['alert']}: no metric {name}"
            for matcher in filter(None, (m.strip() for m in matchers.split(","))):
                label = re.split(r"[=!~]", matcher, maxsplit=1)[0]
                bucket_bound = name.endswith("_bucket") and label == "le"  # a histogram's
                assert bucket_bound or label in metrics[name], (
                    f"{rule['alert']}: {name} has no label {label}"
                )
    assert seen >= len(alert_rules())


@pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_monitoring() -> None:
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d)
    assert kinds == ["PodMonitor", "PrometheusRule"]


# --- pod security and network policies (issue 10) -----------------------------------------------

DOCKERFILE = DEPLOY.parent / "Dockerfile"
MESH_LABELS = {"app.kubernetes.io/name": "kruise-mesh"}


def deployments() -> list[Doc]:
    return [d for d in all_docs() if d["kind"] == "Deployment"]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = find("Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"]
    assert labels["pod-security.kubernetes.io/enforce-version"].startswith("v1.")


@pytest.mark.parametrize("component", ["gateway", *SERVICES])
def test_every_container_is_restricted_and_writes_only_to_empty_dirs(component: str) -> None:
    spec = pod_spec(component)
    (user,) = [
        line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER ")
    ]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, "image: numeric non-root"
    assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in spec.items() if v}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    allowed_volumes = {"emptyDir", "secret", "configMap", "projected"}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert all(set(v) - {"name"} <= allowed_volumes for v in volumes.values()), volumes
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] == int(user.split(":")[0]), container["name"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(p.get("hostPort") for p in container.get("ports", []))
        for mount in container.get("volumeMounts", []):
            if not mount.get("readOnly"):
                assert "emptyDir" in volumes[mount["name"]], f"{mount} is writable"
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_gateway_webhook_client_ca_is_off_until_configured() -> None:
    config = find("ConfigMap", "kruise-mesh-config")["data"]
    assert config["webhook-client-ca"] == ""
    spec = pod_spec("gateway")
    (container,) = spec["containers"]
    (env,) = [e for e in container["env"] if e["name"] == "KRUISE_MESH_WEBHOOK_CLIENT_CA"]
    assert env["valueFrom"]["configMapKeyRef"] == {
        "name": "kruise-mesh-config",
        "key": "webhook-client-ca",
        "optional": True,
    }
    (volume,) = [v for v in spec["volumes"] if v["name"] == "webhook-client-ca"]
    assert volume["configMap"] == {"name": "kruise-mesh-webhook-client-ca", "optional": True}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-client-ca"]
    assert mount["mountPath"] == "/etc/kruise-mesh/webhook-client-ca"


def _selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, op = labels.get(e["key"]), e["operator"]
        ok = {
            "In": value in e.get("values", []),
            "NotIn": value not in e.get("values", []),
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[op]
        if not ok:
            return False
    return True


# Who might connect: (namespace, namespace labels, pod labels); None is a caller that is no pod
# (kube-apiserver on a host network or outside the cluster, a node).
PEERS: dict[str, tuple[str, dict[str, str], dict[str, str]] | None] = {
    "gateway": (NAMESPACE, {}, {**MESH_LABELS, "app.kubernetes.io/component": "gateway"}),
    **{s: (NAMESPACE, {}, {**MESH_LABELS, "app.kubernetes.io/component": s}) for s in SERVICES},
    "mesh-namespace-pod": (NAMESPACE, {}, {"app": "other"}),
    "user-pod": ("shop", {}, {"app": "web"}),
    # pods elsewhere wearing the mesh's labels: a label is not an identity across namespaces
    "impostor-gateway": ("shop", {}, {**MESH_LABELS, "app.kubernetes.io/component": "gateway"}),
    "impostor-budget": ("shop", {}, {**MESH_LABELS, "app.kubernetes.io/component": "budget"}),
    "prometheus": ("monitoring", {}, {"app": "prometheus"}),
    "outside": None,
}


def _reaches(peer: str, component: str, port: int) -> bool:
    target = find("Deployment", f"kruise-mesh-{component}")
    labels = target["spec"]["template"]["metadata"]["labels"]
    policies = [
        d
        for d in all_docs()
        if d["kind"] == "NetworkPolicy"
        and "Ingress" in d["spec"]["policyTypes"]
        and _selects(d["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True
    source = PEERS[peer]
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
                continue
            if not rule.get("from"):
                return True
            for entry in rule["from"]:
                if source is None:
                    continue  # no selector names a caller that is not a pod
                namespace, ns_labels, pod_labels = source
                ns_labels = {"kubernetes.io/metadata.name": namespace, **ns_labels}
                if "namespaceSelector" in entry:
                    ns_ok = _selects(entry["namespaceSelector"], ns_labels)
                else:
                    ns_ok = namespace == policy["metadata"]["namespace"]
                pod_ok = _selects(entry.get("podSelector"), pod_labels)
                if "ipBlock" not in entry and ns_ok and pod_ok:
                    return True
    return False


EVERYONE = set(PEERS)
CLUSTER_PODS = EVERYONE - {"outside"}
REACH = [
    # (component, port, who may connect)
    ("gateway", 7000, set(SERVICES)),
    ("gateway", 9443, EVERYONE),
    ("gateway", 7070, CLUSTER_PODS),
    ("gateway", 8080, CLUSTER_PODS),
    ("gateway", 9090, {"prometheus"}),
    ("gateway", 22, set()),
    *[(s, 7100, {"gateway"}) for s in SERVICES],
    *[(s, 9090, {"prometheus"}) for s in SERVICES],
    *[(s, 7000, set()) for s in SERVICES],
]


@pytest.mark.parametrize(("component", "port", "peers"), REACH, ids=lambda v: str(v))
def test_network_policies_let_in_exactly(component: str, port: int, peers: set[str]) -> None:
    assert {p for p in PEERS if _reaches(p, component, port)} == peers


def test_every_mesh_pod_is_fenced_by_a_default_deny() -> None:
    policy = find("NetworkPolicy", "kruise-mesh-default-deny")["spec"]
    assert policy == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.skipif(not Path("/usr/bin/kubectl").exists(), reason="kubectl is not installed")
def test_the_metrics_namespace_is_one_overlay_patch_away(tmp_path: Path) -> None:
    import os

    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY, tmp_path)],
                "patches": [
                    {
                        "target": {"kind": "NetworkPolicy", "name": "kruise-mesh-metrics"},
                        "patch": yaml.safe_dump(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/ingress/0/from/0/namespaceSelector/matchLabels/"
                                    "kubernetes.io~1metadata.name",
                                    "value": "prometheus",
                                }
                            ]
                        ),
                    }
                ],
            }
        )
    )
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    (policy,) = [
        d
        for d in yaml.safe_load_all(rendered.stdout)
        if d and d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "kruise-mesh-metrics"
    ]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}
    ]
