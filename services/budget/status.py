"""The budget's status loop: what a PodUnavailableBudget's status should say now.

Pure; no I/O, no clock: ``now_ms`` (unix milliseconds) is an argument. ``reconcile`` is
the whole decision of one sync of one PodUnavailableBudget (SPEC 4.5, "Reconcile" steps
3-6); the budget controller gathers its inputs (the budget, the workload's replicas, the
budget's pods) from the replica cache, writes ``status_body(result.status)`` with the
resourceVersion it read when ``result.changed``, records the Events the result names and
requeues after ``result.requeue_after_ms``. The admission side (``services.budget.decision``)
reads and spends the same ``BudgetStatus``.

The numbers, in order:

1. ``totalReplicas`` = the workload's replicas (targetRef), or the sum of the replicas of
   the distinct workloads owning the selected pods (selector, ``total_replicas_of``);
   0 when nothing resolves.
2. ``desiredAvailable``:
   * maxUnavailable set → ``max(total - strict(maxUnavailable, total, round down), 0)``;
   * else minAvailable → ``strict(minAvailable, total, round up)`` (an int as is, even
     above total);
   * neither → 0.
   A string without ``%`` cannot be scaled: the result is a ``ScaleError`` (Warning Event
   ``CalculateExpectedPodCountFailed``, no status write, retry with backoff).
3. The pod maps, rebuilt from the budget's (only active pods keep an entry):
   * ``disruptedPods`` (admitted deletions/evictions): kept until ``recorded + 20 s``;
     an entry older than that whose pod is still active is dropped and named in
     ``not_deleted`` (Warning Event ``NotDeleted`` on the pod);
   * ``unavailablePods`` (admitted in-place updates): kept until ``recorded + 10 s``,
     then dropped silently;
   * an entry "is older" when ``recorded + window < now`` (strictly), as OpenKruise.
4. ``currentAvailable`` = active pods in neither kept map that are running and ready
   (phase Running, condition Ready True) AND state-consistent (``pod_state_consistent``).
5. ``unavailableAllowed = max(currentAvailable - desiredAvailable, 0)``.
6. ``changed`` unless all four numbers, both maps and ``observedGeneration ==
   metadata.generation`` are already what the budget says (then nothing is written).
7. ``requeue_after_ms``: until the earliest kept entry can expire, i.e. the first
   millisecond at which ``recorded + window < now`` holds (so never 0; OpenKruise's
   ``RequeueAfter: time.Until(recheck)`` can be 0 at the boundary, which does not requeue).

The 2,000-entry cap on both maps together is enforced where entries are added, at
admission (``services.budget.decision``); this loop only removes entries.

Worked example (SPEC 4.12 scenario 14): 100 replicas, maxUnavailable 30 % → desired 70;
unavailablePods 0..4 recorded 10.5 s ago (dropped) and 5..9 now (kept), disruptedPods
10..19 now, pods 10..14 terminating (their entries dropped) → maps {5..9} and {15..19};
95 active pods minus 10 recorded → current 85, allowed 15, requeue in 10.001 s.

Timestamps: the status stores ``metav1.Time``, which serialises as RFC 3339 with whole
seconds, so a recorded time read back from the API server is truncated to its second
(up to 999 ms older than admitted). ``status_body`` writes them that way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit.intstr import from_view, scaled_value
from services.kit.objects import pod_active
from services.kit.selectors import selector_matches

__all__ = [
    "DELETION_TIMEOUT_MS",
    "MAX_UNAVAILABLE_POD_SIZE",
    "UPDATED_DELAY_CHECK_MS",
    "BudgetStatus",
    "OwnerReplicas",
    "Reconciliation",
    "ScaleError",
    "desired_available",
    "pod_active",
    "pod_available",
    "pod_running_and_ready",
    "pod_state_consistent",
    "reconcile",
    "rfc3339",
    "selector_matches",
    "selector_pods",
    "status_body",
    "status_of",
    "total_replicas_of",
]

DELETION_TIMEOUT_MS = 20_000
UPDATED_DELAY_CHECK_MS = 10_000
MAX_UNAVAILABLE_POD_SIZE = 2000

NOT_DELETED = "NotDeleted"
NO_PODS = "NoPods"
CALCULATE_FAILED = "CalculateExpectedPodCountFailed"

# Pod annotations read by the state-consistency check (OpenKruise apis/apps/pub and
# pkg/control/sidecarcontrol).
INPLACE_UPDATE_STATE = ("apps.kruise.io/inplace-update-state", "inplace-update-state")
INPLACE_UPDATE_GRACE = ("apps.kruise.io/inplace-update-grace", "inplace-update-grace")
RUNTIME_CONTAINERS_META = "apps.kruise.io/runtime-containers-meta"
SIDECARSET_INJECTED_LIST = "kruise.io/sidecarset-injected-list"
SIDECARSET_INPLACE_STATE = "kruise.io/sidecarset-inplace-update-state"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A PodUnavailableBudget's ``status``; the pod maps are pod name → unix ms recorded."""

    unavailable_allowed: int
    current_available: int
    desired_available: int
    total_replicas: int
    disrupted_pods: Mapping[str, int] = field(default_factory=dict)
    unavailable_pods: Mapping[str, int] = field(default_factory=dict)
    observed_generation: int = 0

    def recorded(self, pod: str) -> bool:
        """The pod already counts as unavailable through this budget (either map)."""
        return pod in self.disrupted_pods or pod in self.unavailable_pods

    @property
    def recorded_count(self) -> int:
        """``len(disruptedPods) + len(unavailablePods)``, what the 2,000 cap limits."""
        return len(self.disrupted_pods) + len(self.unavailable_pods)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The decided status. ``changed`` says whether it must be written.

    ``not_deleted`` names the pods whose admitted deletion never happened within 20 s
    (one ``NotDeleted`` Warning Event each, on the pod); ``no_pods`` asks for the Normal
    Event ``NoPods`` on the budget; ``requeue_after_ms`` is None when no entry is kept.
    """

    status: BudgetStatus
    changed: bool
    requeue_after_ms: int | None = None
    not_deleted: tuple[str, ...] = ()
    no_pods: bool = False

    def not_deleted_message(self, *, namespace: str, name: str) -> str:
        """The Event text OpenKruise writes on each ``not_deleted`` pod."""
        return f"Pod was expected by PUB {namespace}/{name} to be deleted but it wasn't"


@dataclass(frozen=True, slots=True)
class ScaleError:
    """The spec's maxUnavailable/minAvailable cannot be scaled; nothing is written."""

    message: str

    @property
    def event_message(self) -> str:
        """The Warning Event ``CalculateExpectedPodCountFailed`` OpenKruise records."""
        return f"Failed to calculate the number of expected pods: {self.message}"


@dataclass(frozen=True, slots=True)
class OwnerReplicas:
    """A pod's controller as resolved through the workload finder (SPEC 0.2)."""

    uid: str
    replicas: int
    deleting: bool = False


def status_of(budget: views_pb2.PodUnavailableBudgetView) -> BudgetStatus:
    """The status a budget view carries."""
    return BudgetStatus(
        unavailable_allowed=budget.unavailable_allowed,
        current_available=budget.current_available,
        desired_available=budget.desired_available,
        total_replicas=budget.total_replicas,
        disrupted_pods=dict(budget.disrupted_pods),
        unavailable_pods=dict(budget.unavailable_pods),
        observed_generation=budget.observed_generation,
    )


def total_replicas_of(owners: Iterable[OwnerReplicas | None]) -> int:
    """A selector budget's totalReplicas: the replicas of each distinct live owner, summed.

    ``owners`` are the resolved controllers of the selected pods, one per pod or per
    distinct ownerReference; None (no controller, not found) and workloads being deleted
    count 0, and a workload reached twice (two ReplicaSets of one Deployment) counts once.

    >>> total_replicas_of([OwnerReplicas("d1", 10), OwnerReplicas("d1", 10), None])
    10
    """
    seen: dict[str, int] = {}
    for owner in owners:
        if owner is None or owner.deleting:
            continue
        seen.setdefault(owner.uid, owner.replicas)
    return sum(seen.values())


def desired_available(budget: views_pb2.PodUnavailableBudgetView, *, total: int) -> int:
    """desiredAvailable for ``total`` replicas; raises ``ValueError`` (Kubernetes' text).

    >>> from kruise.common.v1.views_pb2 import IntOrString, PodUnavailableBudgetView as V
    >>> desired_available(V(max_unavailable=IntOrString(str_value="30%")), total=10)
    7
    >>> desired_available(V(min_available=IntOrString(str_value="50%")), total=5)
    3
    """
    if budget.HasField("max_unavailable"):
        unavailable = scaled_value(from_view(budget.max_unavailable), total=total, round_up=False)
        return max(total - unavailable, 0)
    if budget.HasField("min_available"):
        return scaled_value(from_view(budget.min_available), total=total, round_up=True)
    return 0


def recreated_since(pod: views_pb2.PodView, recorded_ms: int) -> bool:
    """``pod`` was created in a later second than the disruption recorded at ``recorded_ms``:
    it is a new pod of the same name, the disrupted one is gone. Beyond OpenKruise v1.2,
    where a re-created StatefulSet pod stays "disrupted" until the entry expires (20 s) and
    draws a ``NotDeleted`` event. Whole seconds, as both times are stored; a pod re-created
    within the same second keeps the entry until it expires (the safe side).

    >>> from kruise.common.v1 import views_pb2
    >>> pod = views_pb2.PodView(meta=views_pb2.ObjectMeta(creation_unix_ms=5_000))
    >>> recreated_since(pod, 4_999), recreated_since(pod, 5_000)
    (True, False)
    """
    return pod.meta.creation_unix_ms // 1000 > recorded_ms // 1000


def reconcile(
    *,
    budget: views_pb2.PodUnavailableBudgetView,
    total_replicas: int | None,
    pods: Iterable[views_pb2.PodView],
    now_ms: int,
    available: Callable[[views_pb2.PodView], bool] | None = None,
) -> Reconciliation | ScaleError:
    """Decide ``budget``'s status at ``now_ms``.

    ``total_replicas`` is the resolved expected count (None when the targetRef workload is
    not found: 0). ``pods`` are the budget's pods (a targetRef's workload pods, or
    ``selector_pods``); inactive ones are ignored here. ``available`` is ``pod_available``
    or a stand-in that answers the same: a caller that remembers the answer per pod
    resourceVersion (the status loop), or one that knows more (e.g. container env).
    """
    total = total_replicas or 0
    is_available = available or pod_available
    try:
        desired = desired_available(budget, total=total)
    except ValueError as e:
        return ScaleError(str(e))
    disrupted: dict[str, int] = {}
    unavailable: dict[str, int] = {}
    not_deleted: list[str] = []
    recheck_ms: int | None = None
    active = [pod for pod in pods if pod_active(pod)]
    for pod in active:
        name = pod.meta.name
        if name in budget.disrupted_pods:
            recorded = budget.disrupted_pods[name]
            if recreated_since(pod, recorded):
                # The disrupted pod is gone and its successor (same name, a StatefulSet's)
                # counts for itself: no 20 s wait, no NotDeleted event.
                pass
            elif recorded + DELETION_TIMEOUT_MS < now_ms:
                not_deleted.append(name)
            else:
                disrupted[name] = recorded
                recheck_ms = _earliest(recheck_ms, recorded + DELETION_TIMEOUT_MS + 1)
        if name in budget.unavailable_pods:
            recorded = budget.unavailable_pods[name]
            if recorded + UPDATED_DELAY_CHECK_MS >= now_ms:
                unavailable[name] = recorded
                recheck_ms = _earliest(recheck_ms, recorded + UPDATED_DELAY_CHECK_MS + 1)

    current = sum(
        1
        for pod in active
        if pod.meta.name not in disrupted and pod.meta.name not in unavailable and is_available(pod)
    )
    status = BudgetStatus(
        unavailable_allowed=max(current - desired, 0),
        current_available=current,
        desired_available=desired,
        total_replicas=total,
        disrupted_pods=disrupted,
        unavailable_pods=unavailable,
        observed_generation=budget.meta.generation,
    )
    return Reconciliation(
        status=status,
        changed=status != status_of(budget),
        requeue_after_ms=None if recheck_ms is None else recheck_ms - now_ms,
        not_deleted=tuple(sorted(not_deleted)),
        no_pods=not active,
    )


def status_body(status: BudgetStatus) -> dict[str, object]:
    """The ``status`` object to write (Go's JSON: empty maps and generation 0 left out).

    >>> status_body(BudgetStatus(1, 8, 7, 10, disrupted_pods={"web-0": 1_700_000_000_999}))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'disruptedPods': {'web-0': '2023-11-14T22:13:20Z'}, 'unavailableAllowed': 1,
     'currentAvailable': 8, 'desiredAvailable': 7, 'totalReplicas': 10}
    """
    body: dict[str, object] = {}
    if status.observed_generation:
        body["observedGeneration"] = status.observed_generation
    if status.disrupted_pods:
        body["disruptedPods"] = _times(status.disrupted_pods)
    if status.unavailable_pods:
        body["unavailablePods"] = _times(status.unavailable_pods)
    body["unavailableAllowed"] = status.unavailable_allowed
    body["currentAvailable"] = status.current_available
    body["desiredAvailable"] = status.desired_available
    body["totalReplicas"] = status.total_replicas
    return body


def rfc3339(unix_ms: int) -> str:
    """``metav1.Time`` as JSON: UTC, whole seconds (milliseconds truncated). Cached per
    second: a status write formats every recorded pod's time, and they share seconds.

    >>> rfc3339(1_500), rfc3339(0)
    ('1970-01-01T00:00:01Z', '1970-01-01T00:00:00Z')
    """
    return _rfc3339_second(unix_ms // 1000)


@lru_cache(maxsize=8192)
def _rfc3339_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- pods ----------------------------------------------------------------------------------


def pod_available(pod: views_pb2.PodView) -> bool:
    """Counted in ``currentAvailable`` (when not recorded): running, ready and state-consistent."""
    return pod_running_and_ready(pod) and pod_state_consistent(pod)


def pod_running_and_ready(pod: views_pb2.PodView) -> bool:
    """Phase ``Running`` and condition ``Ready`` is ``True``."""
    return pod.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.conditions
    )


def selector_pods(
    budget: views_pb2.PodUnavailableBudgetView, pods: Iterable[views_pb2.PodView]
) -> list[views_pb2.PodView]:
    """A selector budget's pods: active pods of its namespace that its selector matches.

    A budget with a targetRef gets none here (targetRef wins; its pods are the workload's,
    found through ownership, SPEC 0.2), nor does one without a selector.
    """
    if budget.HasField("target_ref") or not budget.HasField("selector"):
        return []
    return [
        pod
        for pod in pods
        if pod.meta.namespace == budget.meta.namespace
        and pod_active(pod)
        and selector_matches(budget.selector, pod.meta.labels)
    ]


def pod_state_consistent(pod: views_pb2.PodView) -> bool:
    """Whether the pod runs what its spec says (OpenKruise ``IsPodStateConsistent``).

    * Every container image a digest (``repo@sha256:...``) → consistent iff each
      container's status imageID (``docker-pullable://`` style prefix removed) has the
      same repository and digest. No containers at all → consistent.
    * Otherwise both must hold:
      - sidecars (annotation ``kruise.io/sidecarset-injected-list`` set): no container
        recorded in ``kruise.io/sidecarset-inplace-update-state`` for a listed SidecarSet
        still has its recorded imageID while its status image differs from the spec;
      - workload in-place update (``apps.kruise.io/inplace-update-state``): no grace
        annotation, no pending batch (``nextContainerImages`` etc.), and every container in
        ``lastContainerStatuses`` has a status whose imageID changed, or kept it with the
        spec image (``:latest`` added to an untagged one) equal to the status image.
        No state annotation → consistent; one that does not parse → inconsistent.

    Limits of the view, decided: a PodView carries no container env, so the sidecar
    containers are the ones the sidecar state records rather than those with env
    ``IS_INJECTED=true``; and no container hashes, so the ``runtime-containers-meta``
    shortcut is not taken (an ``updateEnvFromMetadata`` update without that annotation is
    inconsistent, as in OpenKruise; with it, the image check decides). Image references
    are split into repository, tag and digest textually, without Docker's normalisation
    (``busybox`` and ``docker.io/library/busybox`` differ), as OpenKruise's parser does.
    """
    images = {c.name: c.image for c in pod.containers}
    if all(_image_digest(image) for image in images.values()):
        image_ids = {s.name: _strip_scheme(s.image_id) for s in pod.container_statuses}
        return all(
            name in image_ids and _images_equal(image, image_ids[name])
            for name, image in images.items()
        )
    return _sidecars_updated(pod, images) and _inplace_update_completed(pod, images)


def _sidecars_updated(pod: views_pb2.PodView, images: Mapping[str, str]) -> bool:
    annotations = pod.meta.annotations
    sidecar_sets = [s for s in annotations.get(SIDECARSET_INJECTED_LIST, "").split(",") if s]
    raw = annotations.get(SIDECARSET_INPLACE_STATE)
    if not sidecar_sets or raw is None:
        return True
    states = _json_object(raw)
    if states is None:
        return False
    last: dict[str, str] = {}
    for name in sidecar_sets:
        state = states.get(name)
        statuses = state.get("lastContainerStatuses") if isinstance(state, dict) else None
        if isinstance(statuses, dict):
            last.update({c: _image_id(s) for c, s in statuses.items()})
    for status in pod.container_statuses:
        if (
            status.name in last
            and last[status.name] == status.image_id
            and images.get(status.name) != status.image
        ):
            return False
    return True


def _inplace_update_completed(pod: views_pb2.PodView, images: Mapping[str, str]) -> bool:
    annotations = pod.meta.annotations
    if any(key in annotations for key in INPLACE_UPDATE_GRACE):
        return False
    raw = next((annotations[k] for k in INPLACE_UPDATE_STATE if k in annotations), None)
    if raw is None:
        return True
    state = _json_object(raw)
    if state is None:
        return False
    for pending in ("nextContainerImages", "nextContainerRefMetadata", "nextContainerResources"):
        if state.get(pending):
            return False
    if state.get("updateEnvFromMetadata") is True and RUNTIME_CONTAINERS_META not in annotations:
        return False
    statuses = state.get("lastContainerStatuses")
    last = {c: _image_id(s) for c, s in statuses.items()} if isinstance(statuses, dict) else {}
    wanted = {name: image if ":" in image else f"{image}:latest" for name, image in images.items()}
    for status in pod.container_statuses:
        if status.name not in last:
            continue
        if last.pop(status.name) == status.image_id and wanted.get(status.name) != status.image:
            return False
    return not last


def _json_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _image_id(status: object) -> str:
    image_id = status.get("imageID") if isinstance(status, dict) else None
    return image_id if isinstance(image_id, str) else ""


def _strip_scheme(image_id: str) -> str:
    """``docker-pullable://busybox@sha256:...`` → ``busybox@sha256:...``."""
    return image_id.split("://")[1] if "://" in image_id else image_id


def _parse_image(image: str) -> tuple[str, str, str] | None:
    """(repository, tag, digest) of an image reference; None when it is not one."""
    name, at, digest = image.partition("@")
    if at and (":" not in digest or not digest.split(":", 1)[1]):
        return None
    slash = name.rfind("/")
    colon = name.rfind(":")
    repo, tag = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
    if not repo or (colon > slash and not tag):
        return None
    return repo, tag, digest


def _image_digest(image: str) -> bool:
    parsed = _parse_image(image)
    return parsed is not None and bool(parsed[2])


def _images_equal(first: str, second: str) -> bool:
    """Same repository and digest (both digests) or same repository and tag."""
    a, b = _parse_image(first), _parse_image(second)
    if a is None or b is None:
        return False
    if a[2] and b[2]:
        return a[0] == b[0] and a[2] == b[2]
    return a[0] == b[0] and a[1] == b[1]


def _earliest(current: int | None, candidate: int) -> int:
    return candidate if current is None else min(current, candidate)


def _times(pods: Mapping[str, int]) -> dict[str, str]:
    return {name: rfc3339(ms) for name, ms in sorted(pods.items())}


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A pod of a budget that does not count as available, and why (``GetBudget``)."""

    pod: str
    reason: str
    since_ms: int = 0


def unavailable_pods(
    budget: views_pb2.PodUnavailableBudgetView, pods: Iterable[views_pb2.PodView]
) -> list[Unavailable]:
    """The budget's pods that use it up, by name: recorded disruptions and in-place
    updates first (with when they were admitted), then pods that are terminating, not
    running, not ready or not yet running their spec's images. Pure.
    """
    out: list[Unavailable] = []
    seen: set[str] = set()
    for name, ms in sorted(budget.disrupted_pods.items()):
        out.append(Unavailable(name, "disrupted", ms))
        seen.add(name)
    for name, ms in sorted(budget.unavailable_pods.items()):
        if name not in seen:
            out.append(Unavailable(name, "updating", ms))
            seen.add(name)
    for pod in sorted(pods, key=lambda p: p.meta.name):
        name = pod.meta.name
        if name in seen or pod.phase in ("Succeeded", "Failed"):
            continue
        if pod.meta.deletion_unix_ms:
            out.append(Unavailable(name, "terminating", pod.meta.deletion_unix_ms))
        elif pod.phase != "Running":
            out.append(Unavailable(name, "not-running"))
        elif not pod_running_and_ready(pod):
            out.append(Unavailable(name, "not-ready"))
        elif not pod_state_consistent(pod):
            out.append(Unavailable(name, "inconsistent"))
    return out
