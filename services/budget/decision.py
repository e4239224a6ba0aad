"""Pod admission against a PodUnavailableBudget: may this delete, eviction or update happen?

Pure; no I/O, no clock: ``now_ms`` (unix milliseconds) is an argument. ``decide`` is the
whole decision of one pod review (SPEC 4.6 and 4.7); ``commit_many`` folds the admitted
decisions of one budget that arrived together into one status write. The budget service's
pod webhooks gather the facts (the pod, its owner's fate, the budget named by the pod's
``kruise.io/related-pub``), answer ``Refuse`` as a denial with its code, and write an
``Admit``'s ``spend`` (a whole new status) with the resourceVersion the decision saw
before admitting; on a conflict they re-read the budget and call ``commit_many`` again
(OpenKruise retries 4 times, 500 ms apart). ``prescreen`` lets them skip all I/O for
reviews that can never consume budget. Turning an outcome into the AdmissionResponse is
``services.kit.admission``'s job::

    outcome = decide(...)
    verdict = admission.deny(outcome.message, code=outcome.code, reason=outcome.reason)

The decision order (OpenKruise v1.2 ``pkg/webhook/pod/validating/pod_unavailable_budget.go``
then ``PodUnavailableBudgetValidatePod``); every step but 3 and 9c admits:

0. DELETE without the pod (empty ``oldObject``), or an eviction of a pod the API server
   does not have (``pod`` None) → admit.
1. Namespace ``kube-system`` or ``kube-public`` → admit.
2. DELETE of a subresource, CREATE other than ``pods/eviction``, CONNECT → admit.
3. The pod's controller owner (resolved with its uid) is gone or being deleted → admit;
   the resolution failed → ``Refuse(400)`` with the error.
4. Pod phase ``Succeeded``/``Failed``/``Pending``/empty, or pod being deleted → admit.
5. No ``kruise.io/related-pub`` on the pod, or no such budget → admit (a budget that no
   longer exists never blocks anything).
6. ``kruise.io/pub-protect-operations`` on the budget (absent or empty: all protected):
   UPDATE needs ``UPDATE``; DELETE needs ``DELETE``; an eviction needs ``EVICT`` or
   ``DELETE`` (v1.4's ``EVICT`` accepted: naming it protects evictions whatever DELETE
   says; a list without it keeps v1.2's rule that DELETE governs evictions). Items are
   split on ``,`` and not trimmed.
7. Pod annotation ``pub.kruise.io/no-protect: "true"`` → admit.
8. UPDATE whose ``spec`` is unchanged (labels, annotations, status) → admit.
9. The budget check: (a) pod not running and ready → admit; (b) pod already in
   ``disruptedPods``/``unavailablePods`` → admit, nothing spent; (c) ``unavailableAllowed
   <= 0`` or more than 2,000 recorded pods → ``Refuse``; else one unit is spent
   (``unavailableAllowed - 1``, the pod recorded at ``now_ms`` in ``unavailablePods`` for
   UPDATE, ``disruptedPods`` otherwise; ``currentAvailable`` untouched), unless dry-run:
   then admit with nothing to write.

For UPDATE the pod checked is the NEW pod, as in v1.2.

``authorize_update`` is the same decision for a workload controller that asks before it
updates a pod, in place or by re-creating it (SPEC 4.11, ``BudgetService.AuthorizePodUpdate``):
an UPDATE that changes the spec, never a dry run, the owner alive (it is the one asking).
What it spends is what the webhook's UPDATE of that pod finds recorded later (step 9b).

Beyond OpenKruise:
* A refused eviction answers 429 TooManyRequests (what ``kubectl drain`` retries on, as
  for a PodDisruptionBudget); OpenKruise answers 403, so drains fail. DELETE and UPDATE
  keep 403 Forbidden.
* The refusal names the budget, its numbers and the pods already unavailable through it,
  instead of ``podunavailablebudget.policy.kruise.io "x" is forbidden: pub unavailable
  allowed is negative``.
* An eviction of a pod that does not exist is admitted (the API server answers 404);
  OpenKruise's failed GET made it a 400, which fails ``kubectl drain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from kruise.common.v1 import views_pb2
from services.budget.status import (
    MAX_UNAVAILABLE_POD_SIZE,
    BudgetStatus,
    pod_running_and_ready,
    status_of,
)

__all__ = [
    "OWNER_OK",
    "Action",
    "Admit",
    "Batch",
    "Operation",
    "Outcome",
    "OwnerCheck",
    "Refuse",
    "Spend",
    "StatusChange",
    "action_of",
    "authorize_update",
    "commit_many",
    "decide",
    "prescreen",
    "protects",
    "related_budget",
]

RELATED_PUB = "kruise.io/related-pub"
NO_PROTECT = "pub.kruise.io/no-protect"
PROTECT_OPERATIONS = "kruise.io/pub-protect-operations"
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public"})
EVICTION = "eviction"
LISTED_PODS = 10

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
Action = Literal["UPDATE", "DELETE", "EVICT"]
_VERBS: dict[Action, str] = {"UPDATE": "update", "DELETE": "delete", "EVICT": "evict"}


@dataclass(frozen=True, slots=True)
class OwnerCheck:
    """Step 3: what resolving the pod's controller owner, uid included, found.

    ``OWNER_OK`` when the pod has no controller owner or the owner is alive;
    ``gone`` when it is not found (also a custom kind without ``/scale``) or being
    deleted; ``error`` when the resolution failed (unknown kind, a non-404 error).
    """

    gone: bool = False
    error: str = ""


OWNER_OK = OwnerCheck()


@dataclass(frozen=True, slots=True)
class Spend:
    """One unit of budget spent on ``pod`` by ``action`` at ``at_ms``."""

    pod: str
    action: Action
    at_ms: int

    @property
    def into(self) -> Literal["unavailablePods", "disruptedPods"]:
        """The status map the pod is recorded in."""
        return "unavailablePods" if self.action == "UPDATE" else "disruptedPods"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A whole new status for budget ``namespace/name``, valid only at ``resource_version``."""

    namespace: str
    name: str
    resource_version: str
    status: BudgetStatus
    spends: tuple[Spend, ...]


@dataclass(frozen=True, slots=True)
class Admit:
    """Let the request through; write ``spend`` first when it is set. ``reason`` is for logs."""

    spend: StatusChange | None = None
    reason: str = ""

    allowed = True


@dataclass(frozen=True, slots=True)
class Refuse:
    """Deny the request: ``code`` and ``reason`` are the HTTP status and its name."""

    code: int
    message: str
    reason: str = "Forbidden"

    allowed = False


Outcome = Admit | Refuse


@dataclass(frozen=True, slots=True)
class Batch:
    """One status write for several admitted decisions of one budget.

    ``change`` is None when nothing has to be written; ``outcomes`` follow the input order:
    an ``Admit`` holds once ``change`` is written (or needs nothing), a ``Refuse`` is final.
    """

    change: StatusChange | None
    outcomes: tuple[Outcome, ...]


def related_budget(pod: views_pb2.PodView) -> str:
    """The name of the budget protecting ``pod`` (annotation ``kruise.io/related-pub``), or ""."""
    return pod.meta.annotations.get(RELATED_PUB, "")


def action_of(operation: Operation, sub_resource: str = "") -> Action | None:
    """The budget action a pod review asks for; None when it never consumes budget.

    >>> action_of("CREATE", "eviction"), action_of("DELETE"), action_of("DELETE", "status")
    ('EVICT', 'DELETE', None)
    """
    if operation == "UPDATE":
        return "UPDATE"
    if operation == "DELETE":
        return None if sub_resource else "DELETE"
    if operation == "CREATE":
        return "EVICT" if sub_resource == EVICTION else None
    return None


def prescreen(*, operation: Operation, sub_resource: str, namespace: str) -> Admit | None:
    """Steps 1-2 without any I/O: an ``Admit`` when the review can never consume budget.

    The webhook calls it before reading the pod, its owner or its budget; None means
    "gather the facts and call ``decide``".
    """
    if namespace in IGNORED_NAMESPACES:
        return Admit(reason=f"namespace {namespace} is never protected")
    if action_of(operation, sub_resource) is None:
        shown = f"{operation} {sub_resource}".strip()
        return Admit(reason=f"{shown} never consumes budget")
    return None


def protects(budget: views_pb2.PodUnavailableBudgetView, action: Action) -> bool:
    """Whether ``budget``'s ``kruise.io/pub-protect-operations`` covers ``action`` (step 6).

    >>> from kruise.common.v1.views_pb2 import PodUnavailableBudgetView as V
    >>> only = lambda ops: V(meta={"annotations": {PROTECT_OPERATIONS: ops}})
    >>> [protects(only("DELETE"), a) for a in ("UPDATE", "DELETE", "EVICT")]
    [False, True, True]
    >>> [protects(only("UPDATE,EVICT"), a) for a in ("UPDATE", "DELETE", "EVICT")]
    [True, False, True]
    """
    value = budget.meta.annotations.get(PROTECT_OPERATIONS, "")
    if not value:
        return True
    listed = set(value.split(","))
    if action == "EVICT":
        return "EVICT" in listed or "DELETE" in listed
    return action in listed


def decide(
    *,
    operation: Operation,
    sub_resource: str = "",
    namespace: str,
    dry_run: bool,
    pod: views_pb2.PodView | None,
    spec_changed: bool = False,
    owner: OwnerCheck = OWNER_OK,
    budget: views_pb2.PodUnavailableBudgetView | None,
    now_ms: int,
) -> Outcome:
    """The outcome of one pod review, in the order of the module docstring.

    ``pod`` is the pod under review: ``oldObject`` for DELETE, the NEW object for UPDATE,
    the pod read by name for an eviction (None when the API server says NotFound; any other
    read error is the caller's 400). ``spec_changed`` says whether ``oldObject.spec`` and
    ``object.spec`` differ (UPDATE only). ``budget`` is the PodUnavailableBudget named by the
    pod's ``kruise.io/related-pub`` in the pod's namespace, None when there is none.
    """
    screened = prescreen(operation=operation, sub_resource=sub_resource, namespace=namespace)
    if screened is not None:
        return screened
    action = action_of(operation, sub_resource)
    if pod is None or action is None:
        return Admit(reason="the pod does not exist")
    if owner.error:
        return Refuse(400, owner.error, reason="BadRequest")
    if owner.gone:
        return Admit(reason="the pod's workload is gone or being deleted")
    if pod.phase in ("", "Pending", "Succeeded", "Failed") or pod.meta.deletion_unix_ms:
        return Admit(reason="the pod is not running or is already terminating")
    if not related_budget(pod) or budget is None:
        return Admit(reason="no PodUnavailableBudget protects the pod")
    if not protects(budget, action):
        return Admit(reason=f"{PROTECT_OPERATIONS} of the budget does not list {action}")
    if pod.meta.annotations.get(NO_PROTECT) == "true":
        return Admit(reason=f"the pod is annotated {NO_PROTECT}")
    if action == "UPDATE" and not spec_changed:
        return Admit(reason="the pod's spec is unchanged")
    if not pod_running_and_ready(pod):
        return Admit(reason="the pod is not running and ready")

    status = status_of(budget)
    spend = Spend(pod=pod.meta.name, action=action, at_ms=now_ms)
    if status.recorded(spend.pod):
        return Admit(reason="the pod already counts as unavailable")
    spent = _spend(status, spend, budget=budget)
    if isinstance(spent, Refuse):
        return spent
    if dry_run:
        return Admit(reason="dry run: the budget allows it, nothing is written")
    return Admit(spend=_change(budget, spent, (spend,)), reason="one unit of budget spent")


def authorize_update(
    *,
    namespace: str,
    pod: views_pb2.PodView,
    budget: views_pb2.PodUnavailableBudgetView | None,
    now_ms: int,
) -> Outcome:
    """A workload controller's ask before it updates ``pod`` (SPEC 4.11): may it, and what
    does it spend?

    Pure; no I/O. ``decide`` for operation UPDATE with the spec changing (an in-place update
    or a re-creation changes what runs), not a dry run, and step 3 passed: the owner asking
    is alive. ``pod`` is the pod as the replica has it now; ``budget`` the budget its
    ``kruise.io/related-pub`` names, None when there is none. The result is read as the
    webhook's: ``Refuse`` with the webhook's words (403 for an exhausted budget), ``Admit``
    with a ``spend`` that ``services.budget.committer.BudgetCommitter`` writes before the
    answer goes out (the pod lands in ``unavailablePods``), or ``Admit`` with nothing to
    write (no budget, UPDATE not protected, ``pub.kruise.io/no-protect``, a pod not running
    and ready, or already recorded: the second ask for a pod spends nothing).

    Worked example: budget allowed 1; ask for web-0 → Admit(spend: unavailableAllowed 0,
    unavailablePods {web-0}); ask for web-1 → Refuse(403, "cannot update pod ns/web-1:
    PodUnavailableBudget ... allows no more unavailable pods ..."); ask for web-0 again →
    Admit, nothing spent.
    """
    return decide(
        operation="UPDATE",
        namespace=namespace,
        dry_run=False,
        pod=pod,
        spec_changed=True,
        owner=OWNER_OK,
        budget=budget,
        now_ms=now_ms,
    )


def commit_many(
    *, budget: views_pb2.PodUnavailableBudgetView, changes: Sequence[StatusChange]
) -> Batch:
    """Re-apply admitted decisions of ``budget``, in arrival order, to its current status.

    Each change's spends are taken again against what the earlier ones left: a pod already
    recorded (in the current status or earlier in the batch) is admitted without spending;
    a change whose spend finds ``unavailableAllowed <= 0`` or more than 2,000 recorded pods
    is refused (and spends nothing). The result is one ``StatusChange`` at ``budget``'s
    resourceVersion, or None when nothing was spent.

    Worked example: allowed 2; decisions for pods a, b, a, c arrive together → a spends,
    b spends, the second a is free, c is refused; one write: allowed 0, a and b recorded.
    """
    status = status_of(budget)
    taken: list[Spend] = []
    outcomes: list[Outcome] = []
    for change in changes:
        candidate = status
        mine: list[Spend] = []
        refused: Refuse | None = None
        for spend in change.spends:
            if candidate.recorded(spend.pod):
                continue
            spent = _spend(candidate, spend, budget=budget)
            if isinstance(spent, Refuse):
                refused = spent
                break
            candidate = spent
            mine.append(spend)
        if refused is not None:
            outcomes.append(refused)
            continue
        status = candidate
        taken.extend(mine)
        outcomes.append(
            Admit(reason="one unit of budget spent" if mine else "already counts as unavailable")
        )
    written = _change(budget, status, tuple(taken)) if taken else None
    return Batch(change=written, outcomes=tuple(outcomes))


def _spend(
    status: BudgetStatus, spend: Spend, *, budget: views_pb2.PodUnavailableBudgetView
) -> BudgetStatus | Refuse:
    """OpenKruise's ``checkAndDecrement``: the status after ``spend``, or the refusal."""
    if status.unavailable_allowed <= 0:
        return _refuse(spend, _exhausted(status), budget=budget)
    if status.recorded_count > MAX_UNAVAILABLE_POD_SIZE:
        detail = (
            f"has {status.recorded_count} admitted deletions, evictions and in-place updates "
            f"not yet confirmed by the budget controller (limit {MAX_UNAVAILABLE_POD_SIZE})"
        )
        return _refuse(spend, detail, budget=budget)
    if spend.action == "UPDATE":
        return replace(
            status,
            unavailable_allowed=status.unavailable_allowed - 1,
            unavailable_pods={**status.unavailable_pods, spend.pod: spend.at_ms},
        )
    return replace(
        status,
        unavailable_allowed=status.unavailable_allowed - 1,
        disrupted_pods={**status.disrupted_pods, spend.pod: spend.at_ms},
    )


def _change(
    budget: views_pb2.PodUnavailableBudgetView, status: BudgetStatus, spends: tuple[Spend, ...]
) -> StatusChange:
    return StatusChange(
        namespace=budget.meta.namespace,
        name=budget.meta.name,
        resource_version=budget.meta.resource_version,
        status=status,
        spends=spends,
    )


def _refuse(spend: Spend, detail: str, *, budget: views_pb2.PodUnavailableBudgetView) -> Refuse:
    """The denial: 429 for an eviction (drains retry), 403 for DELETE and UPDATE."""
    message = (
        f"cannot {_VERBS[spend.action]} pod {budget.meta.namespace}/{spend.pod}: "
        f"PodUnavailableBudget {budget.meta.name} {detail}"
    )
    if spend.action == "EVICT":
        return Refuse(429, message, reason="TooManyRequests")
    return Refuse(403, message)


def _exhausted(status: BudgetStatus) -> str:
    """Why no unit is left: the numbers, then who uses the budget up.

    >>> print(_exhausted(BudgetStatus(0, 7, 7, 10, {"web-9": 2}, {"web-8": 1})))
    allows no more unavailable pods (unavailableAllowed 0: currentAvailable 7, \
desiredAvailable 7, totalReplicas 10); already unavailable through it: web-8 (in-place \
update), web-9 (deletion or eviction)
    """
    numbers = (
        f"unavailableAllowed {status.unavailable_allowed}: "
        f"currentAvailable {status.current_available}, "
        f"desiredAvailable {status.desired_available}, "
        f"totalReplicas {status.total_replicas}"
    )
    recorded = sorted(
        [(ms, pod, "deletion or eviction") for pod, ms in status.disrupted_pods.items()]
        + [(ms, pod, "in-place update") for pod, ms in status.unavailable_pods.items()]
    )
    if recorded:
        shown = ", ".join(f"{pod} ({what})" for _, pod, what in recorded[:LISTED_PODS])
        if len(recorded) > LISTED_PODS:
            shown += f" and {len(recorded) - LISTED_PODS} more"
        users = f"already unavailable through it: {shown}"
    else:
        missing = status.total_replicas - status.current_available
        users = (
            f"{missing} of its {status.total_replicas} pods are not available"
            if missing > 0
            else "no pod is recorded as unavailable through it"
        )
    return f"allows no more unavailable pods ({numbers}); {users}"
