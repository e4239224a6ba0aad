"""Builders for budget's pure-function tables: each row stays a few lines.

The defaults are OpenKruise's test fixtures: PodUnavailableBudget ``pub-test`` in
``default`` selecting ``pub-controller=true`` with maxUnavailable 30 %, and pods
``test-pod-N`` labelled for it, running, ready and state-consistent (``nginx:v1``).
"""

from __future__ import annotations

from kruise.common.v1 import views_pb2

NAMESPACE = "default"
PUB = "pub-test"
NOW = 1_700_000_000_000  # unix ms; every table's "now"
SECOND = 1000
SELECTOR = {"pub-controller": "true"}
IMAGE_ID = "nginx@sha256:a9286defaba7b3a519d585ba0e37d0b2cbee74ebfe590960b0b1d6a5e97d1e1d"


def int_or_str(value: int | str) -> views_pb2.IntOrString:
    if isinstance(value, str):
        return views_pb2.IntOrString(str_value=value)
    return views_pb2.IntOrString(int_value=value)


def pub(
    name: str = PUB,
    *,
    namespace: str = NAMESPACE,
    selector: dict[str, str] | None = SELECTOR,
    expressions: list[tuple[str, str, list[str]]] | None = None,
    target: tuple[str, str, str] | None = None,
    max_unavailable: int | str | None = "30%",
    min_available: int | str | None = None,
    annotations: dict[str, str] | None = None,
    allowed: int = 0,
    current: int = 0,
    desired: int = 0,
    total: int = 0,
    disrupted: dict[str, int] | None = None,
    unavailable: dict[str, int] | None = None,
    generation: int = 1,
    observed: int = 1,
    resource_version: str = "100",
) -> views_pb2.PodUnavailableBudgetView:
    """A budget view; ``selector=None`` (and no ``expressions``) leaves the selector unset."""
    view = views_pb2.PodUnavailableBudgetView()
    view.meta.namespace = namespace
    view.meta.name = name
    view.meta.uid = f"uid-{name}"
    view.meta.generation = generation
    view.meta.resource_version = resource_version
    view.meta.annotations.update(annotations or {})
    if selector is not None or expressions:
        view.selector.match_labels.update(selector or {})
        for key, operator, values in expressions or []:
            view.selector.match_expressions.add(key=key, operator=operator, values=values)
        view.selector.SetInParent()
    if target is not None:
        view.target_ref.api_version, view.target_ref.kind, view.target_ref.name = target
        view.target_ref.SetInParent()
    if max_unavailable is not None:
        view.max_unavailable.CopyFrom(int_or_str(max_unavailable))
    if min_available is not None:
        view.min_available.CopyFrom(int_or_str(min_available))
    view.observed_generation = observed
    view.disrupted_pods.update(disrupted or {})
    view.unavailable_pods.update(unavailable or {})
    view.unavailable_allowed = allowed
    view.current_available = current
    view.desired_available = desired
    view.total_replicas = total
    return view


def pod(
    name: str = "test-pod-0",
    *,
    namespace: str = NAMESPACE,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    ready: bool = True,
    deleting: bool = False,
    related_pub: str | None = PUB,
    annotations: dict[str, str] | None = None,
    containers: list[tuple[str, str]] | None = None,
    statuses: list[tuple[str, str, str]] | None = None,
) -> views_pb2.PodView:
    """A pod view; ``containers`` are (name, image), ``statuses`` (name, image, imageID)."""
    view = views_pb2.PodView(phase=phase)
    view.meta.namespace = namespace
    view.meta.name = name
    view.meta.labels.update({"app": "nginx", **SELECTOR} if labels is None else labels)
    if related_pub is not None:
        view.meta.annotations["kruise.io/related-pub"] = related_pub
    view.meta.annotations.update(annotations or {})
    if deleting:
        view.meta.deletion_unix_ms = NOW - SECOND
    view.conditions.add(type="Ready", status="True" if ready else "False")
    for container, image in containers if containers is not None else [("nginx", "nginx:v1")]:
        view.containers.add(name=container, image=image)
    default_statuses = [("nginx", "nginx:v1", IMAGE_ID)]
    for container, image, image_id in statuses if statuses is not None else default_statuses:
        view.container_statuses.add(name=container, image=image, image_id=image_id)
    return view


def pods(
    count: int,
    *,
    not_ready: range | tuple[int, ...] = (),
    deleting: range | tuple[int, ...] = (),
    start: int = 0,
    **kwargs: object,
) -> list[views_pb2.PodView]:
    """``test-pod-{start}..`` ``count`` pods; the ordinals in ``not_ready``/``deleting`` are so."""
    return [
        pod(
            f"test-pod-{i}",
            ready=i not in not_ready,
            deleting=i in deleting,
            **kwargs,  # type: ignore[arg-type]
        )
        for i in range(start, start + count)
    ]


def names(ordinals: range | tuple[int, ...], at_ms: int = NOW) -> dict[str, int]:
    """``{test-pod-N: at_ms}`` for each ordinal: a disruptedPods/unavailablePods map."""
    return {f"test-pod-{i}": at_ms for i in ordinals}
