"""Disruption planning: which of these pods can be evicted now, in what order, and which wait.

Pure; no I/O, no clock: ``now_ms`` (unix milliseconds) is an argument. ``plan_disruption``
answers a tool that wants to drain pods (``kubectl drain``, a node upgrade, a rebalancer)
before it sends a single eviction; ``services.budget.api`` (``PlanDisruption``) feeds it
the replica cache's pods and budgets and turns the ``Plan`` into the RPC's entries. Nothing
is spent or written: the plan says what the eviction webhook would answer if the evictions
arrived one by one in the plan's order.

Each pod is put to ``services.budget.decision.decide`` as an eviction (action ``EVICT``),
so the plan and the webhook cannot disagree on which pods a budget protects; the budget
check itself (``decide`` step 9b-9c, OpenKruise's ``checkAndDecrement``) is then replayed
on a simulated status, one unit per eviction, so that 10,000 pods cost one pass:

* the pod does not exist → ``GONE`` (an eviction would get 404);
* the eviction would be admitted without spending anything → ``NOW``, ordered first, in
  request order: namespace ``kube-system``/``kube-public``; pod ``Pending``/``Succeeded``/
  ``Failed`` or being deleted; no ``kruise.io/related-pub`` or no such budget; the budget's
  ``kruise.io/pub-protect-operations`` does not cover evictions (``protects``); pod
  annotated ``pub.kruise.io/no-protect: "true"``; pod not running and ready; pod already
  in the budget's ``disruptedPods``/``unavailablePods``;
* the eviction spends one unit of the budget's ``unavailableAllowed`` → ``NOW``, ordered
  after the free ones, round-robin across budgets (budgets in order of their first pod in
  the request, each budget's pods in request order), so a drain disrupts every workload a
  little rather than one a lot; the unit is taken from the simulated status, so each
  budget gives out at most ``unavailableAllowed`` units in the whole plan;
* no unit is left → ``WAIT``, with the budget's numbers (as the webhook's refusal words
  them) and what would let the pod go: the k-th pod waiting on a budget can go once
  ``k + max(desiredAvailable - currentAvailable, 0)`` more of its pods are available again
  (the pods evicted before it are replaced and ready; a budget already short needs its
  shortfall back first). A budget refusing because more than 2,000 disruptions are
  unconfirmed gives the webhook's text and waits for its controller.

Not simulated: the owner check (``decide`` step 3). A pod whose workload is gone or being
deleted is planned as protected, although the webhook admits its eviction; the plan errs
towards waiting. Entries of ``disruptedPods`` are not expired either: the webhook uses the
status as it is, and so does the plan.

A pod listed twice is planned once, at its first position; later positions repeat that
step.

Worked example: budget ``web`` allows 1 (currentAvailable 3, desiredAvailable 2,
totalReplicas 3); pods web-0, web-1, web-2 are running and ready, ``job-x`` has no budget::

    >>> from kruise.common.v1.views_pb2 import PodUnavailableBudgetView, PodView
    >>> budget = PodUnavailableBudgetView(
    ...     meta={"namespace": "ns", "name": "web"},
    ...     unavailable_allowed=1, current_available=3, desired_available=2, total_replicas=3)
    >>> def pod(name, budget=""):
    ...     annotations = {"kruise.io/related-pub": budget} if budget else {}
    ...     return PodView(meta={"namespace": "ns", "name": name, "annotations": annotations},
    ...                    phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    >>> plan = plan_disruption(
    ...     pods=[Candidate("ns", "web-0", pod("web-0", "web")),
    ...           Candidate("ns", "web-1", pod("web-1", "web")),
    ...           Candidate("ns", "job-x", pod("job-x")),
    ...           Candidate("ns", "web-2", pod("web-2", "web")),
    ...           Candidate("ns", "gone", None)],
    ...     budgets={("ns", "web"): budget}, now_ms=0)
    >>> [(s.pod, s.verdict, s.order) for s in plan.steps]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('web-0', 'NOW', 2), ('web-1', 'WAIT', 0), ('job-x', 'NOW', 1), ('web-2', 'WAIT', 0),
     ('gone', 'GONE', 0)]
    >>> print(plan.steps[0].reason)
    uses one unit of PodUnavailableBudget web (unavailableAllowed 1 -> 0)
    >>> print(plan.steps[3].reason)  # doctest: +NORMALIZE_WHITESPACE
    PodUnavailableBudget web allows no more unavailable pods (unavailableAllowed 1:
    currentAvailable 3, desiredAvailable 2, totalReplicas 3), used up by the eviction
    planned before it: web-0; it can be evicted once 2 more of its pods are available again
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from kruise.common.v1 import views_pb2
from services.budget.decision import LISTED_PODS, RELATED_PUB, Admit, decide, related_budget
from services.budget.status import MAX_UNAVAILABLE_POD_SIZE, BudgetStatus, status_of

__all__ = [
    "BudgetKey",
    "Candidate",
    "Plan",
    "Step",
    "Verdict",
    "plan_disruption",
]

Verdict = Literal["NOW", "WAIT", "GONE"]
BudgetKey = tuple[str, str]
"""(namespace, name) of a PodUnavailableBudget."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pod the caller wants to evict: its name, and its view (None when it does not exist)."""

    namespace: str
    name: str
    pod: views_pb2.PodView | None


@dataclass(frozen=True, slots=True)
class Step:
    """The plan for one requested pod.

    ``budget`` is the pod's ``kruise.io/related-pub`` ("" without one, even for a pod that
    does not exist). ``order`` is the pod's place among the ``NOW`` steps, from 1; 0 for
    ``WAIT`` and ``GONE``. ``spends`` is True for a ``NOW`` step that uses one unit of its
    budget (False for the free ones, which are ordered first).
    """

    namespace: str
    pod: str
    budget: str
    verdict: Verdict
    order: int
    reason: str
    spends: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """One ``Step`` per requested pod, in request order."""

    steps: tuple[Step, ...]

    @property
    def now(self) -> tuple[Step, ...]:
        """The pods that can be evicted now, in the order to evict them."""
        return tuple(sorted((s for s in self.steps if s.verdict == "NOW"), key=_order))

    @property
    def waiting(self) -> tuple[Step, ...]:
        """The pods that must wait, in request order."""
        return tuple(s for s in self.steps if s.verdict == "WAIT")


@dataclass
class _Ledger:
    """One budget during the simulation.

    ``probe`` is the budget without its status (identity and annotations, one unit
    allowed, no recorded pods): ``decide`` against it answers steps 1-9a for any pod in
    constant time, spending exactly when the pod is protected, running and ready. Steps 9b
    and 9c then run here on ``status``, the budget's status as the plan spends it.
    """

    name: str
    probe: views_pb2.PodUnavailableBudgetView
    original: BudgetStatus
    status: BudgetStatus
    disrupted: dict[str, int]
    spenders: list[str] = field(default_factory=list)
    waiting: int = 0
    recorded_text: str | None = None

    @classmethod
    def of(cls, budget: views_pb2.PodUnavailableBudgetView) -> _Ledger:
        probe = views_pb2.PodUnavailableBudgetView(unavailable_allowed=1)
        probe.meta.namespace = budget.meta.namespace
        probe.meta.name = budget.meta.name
        probe.meta.annotations.update(budget.meta.annotations)
        status = status_of(budget)
        return cls(
            name=budget.meta.name,
            probe=probe,
            original=status,
            status=status,
            disrupted=dict(status.disrupted_pods),
        )

    def spend(self, pod: str, at_ms: int) -> None:
        """``decision``'s decrement for an eviction: one unit less, the pod recorded."""
        self.disrupted[pod] = at_ms
        self.status = replace(
            self.status,
            unavailable_allowed=self.status.unavailable_allowed - 1,
            disrupted_pods=self.disrupted,
        )
        self.spenders.append(pod)


def plan_disruption(
    *,
    pods: Sequence[Candidate],
    budgets: Mapping[BudgetKey, views_pb2.PodUnavailableBudgetView],
    now_ms: int,
) -> Plan:
    """Plan the eviction of ``pods`` against ``budgets`` (see the module docstring).

    ``budgets`` holds at least the budgets the pods' ``kruise.io/related-pub`` name, keyed
    by (namespace, name); a named budget missing from it does not exist. ``now_ms`` only
    stamps the simulated ``disruptedPods`` entries. Nothing in the inputs is changed.
    One pass over ``pods``; each costs constant time apart from its budget's first use.
    """
    ledgers: dict[BudgetKey, _Ledger] = {}
    steps: list[Step | None] = []
    first: dict[tuple[str, str], int] = {}
    free: list[int] = []
    spending: dict[BudgetKey, list[int]] = {}
    for index, candidate in enumerate(pods):
        identity = (candidate.namespace, candidate.name)
        if identity in first:
            steps.append(None)  # filled from the first occurrence below
            continue
        first[identity] = index
        step = _plan_one(candidate, budgets=budgets, ledgers=ledgers, now_ms=now_ms)
        steps.append(step)
        if step.verdict == "NOW":
            if step.spends:
                spending.setdefault((step.namespace, step.budget), []).append(index)
            else:
                free.append(index)

    order = [*free, *_round_robin(list(spending.values()))]
    for position, index in enumerate(order, start=1):
        planned = steps[index]
        assert planned is not None
        steps[index] = replace(planned, order=position)
    done: list[Step] = []
    for index, candidate in enumerate(pods):
        planned = steps[index]
        if planned is None:
            planned = steps[first[(candidate.namespace, candidate.name)]]
            assert planned is not None
        done.append(planned)
    return Plan(steps=tuple(done))


def _plan_one(
    candidate: Candidate,
    *,
    budgets: Mapping[BudgetKey, views_pb2.PodUnavailableBudgetView],
    ledgers: dict[BudgetKey, _Ledger],
    now_ms: int,
) -> Step:
    pod = candidate.pod
    if pod is None:
        return Step(
            namespace=candidate.namespace,
            pod=candidate.name,
            budget="",
            verdict="GONE",
            order=0,
            reason="the pod does not exist: there is nothing to evict",
        )
    name = related_budget(pod)
    key = (candidate.namespace, name)
    ledger = ledgers.get(key)
    if ledger is None and name and key in budgets:
        ledger = ledgers[key] = _Ledger.of(budgets[key])
    # Steps 1-9a: decision's own order, against the probe (it spends iff the pod is
    # protected, running and ready; it never refuses: one unit, nothing recorded).
    outcome = decide(
        operation="CREATE",
        sub_resource="eviction",
        namespace=candidate.namespace,
        dry_run=False,
        pod=pod,
        budget=ledger.probe if ledger is not None else None,
        now_ms=now_ms,
    )
    assert isinstance(outcome, Admit), "the probe allows one unit and records nothing"
    step = Step(
        namespace=candidate.namespace,
        pod=candidate.name,
        budget=name,
        verdict="NOW",
        order=0,
        reason=outcome.reason,
    )
    if outcome.spend is None:
        if name and ledger is None:
            missing = f"; its {RELATED_PUB} names {name}, which does not exist"
            return replace(step, reason=step.reason + missing)
        return step
    assert ledger is not None, "only a pod with a budget spends"
    # Steps 9b-9c on the simulated status, as decision's check-and-decrement.
    status = ledger.status
    if status.recorded(candidate.name):
        return replace(step, reason="the pod already counts as unavailable")
    if status.unavailable_allowed <= 0:
        ledger.waiting += 1
        return replace(step, verdict="WAIT", reason=_exhausted(ledger))
    if status.recorded_count > MAX_UNAVAILABLE_POD_SIZE:
        reason = (
            f"PodUnavailableBudget {name} has {status.recorded_count} admitted deletions, "
            "evictions and in-place updates not yet confirmed by the budget controller "
            f"(limit {MAX_UNAVAILABLE_POD_SIZE}); it can be evicted once the budget "
            "controller has confirmed them"
        )
        return replace(step, verdict="WAIT", reason=reason)
    before = status.unavailable_allowed
    ledger.spend(candidate.name, now_ms)
    reason = (
        f"uses one unit of PodUnavailableBudget {name} "
        f"(unavailableAllowed {before} -> {before - 1})"
    )
    return replace(step, reason=reason, spends=True)


def _exhausted(ledger: _Ledger) -> str:
    """Why a pod waits on ``ledger``'s budget, in the words of ``decision``'s refusal, and
    what frees it."""
    status = ledger.original
    numbers = (
        f"unavailableAllowed {status.unavailable_allowed}: "
        f"currentAvailable {status.current_available}, "
        f"desiredAvailable {status.desired_available}, "
        f"totalReplicas {status.total_replicas}"
    )
    parts = [f"PodUnavailableBudget {ledger.name} allows no more unavailable pods ({numbers})"]
    if ledger.spenders:
        count = len(ledger.spenders)
        what = "the eviction" if count == 1 else f"the {count} evictions"
        parts.append(f", used up by {what} planned before it: {_listed(ledger.spenders)}")
    if ledger.recorded_text is None:
        recorded = sorted(
            [(ms, pod, "deletion or eviction") for pod, ms in status.disrupted_pods.items()]
            + [(ms, pod, "in-place update") for pod, ms in status.unavailable_pods.items()]
        )
        shown = [f"{pod} ({what})" for _, pod, what in recorded[: LISTED_PODS + 1]]
        listed = _listed(shown, total=len(recorded))
        ledger.recorded_text = f"; already unavailable through it: {listed}" if recorded else ""
    parts.append(ledger.recorded_text)
    shortfall = max(status.desired_available - status.current_available, 0)
    if shortfall and not ledger.spenders:
        parts.append(f"; {shortfall} fewer of its pods are available than it requires")
    needed = ledger.waiting + shortfall
    pods = "1 more of its pods is" if needed == 1 else f"{needed} more of its pods are"
    parts.append(f"; it can be evicted once {pods} available again")
    return "".join(parts)


def _listed(names: Sequence[str], *, total: int | None = None) -> str:
    """The first ``LISTED_PODS`` names, then how many more (of ``total``, default all)."""
    count = len(names) if total is None else total
    shown = ", ".join(names[:LISTED_PODS])
    if count > LISTED_PODS:
        shown += f" and {count - LISTED_PODS} more"
    return shown


def _round_robin(queues: list[list[int]]) -> list[int]:
    """One from each queue in turn: [[1, 2, 3], [4], [5, 6]] → [1, 4, 5, 2, 6, 3]."""
    out: list[int] = []
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def _order(step: Step) -> int:
    return step.order
