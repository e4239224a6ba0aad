"""Spending a budget exactly once: per-budget serialized, batched, conditional status writes.

    pod webhook ──decide()──▶ Admit(spend) ──commit()──▶ per-budget queue
                                                          │  (one write in flight per budget)
                                 commit_many() (pure) ◀───┘  every decision waiting meanwhile
                                        │
                                        └──▶ UpdateStatus(status, resourceVersion seen, uid)
                                               ├─ ok       → every waiting decision answered
                                               ├─ ABORTED  → GET the budget, commit_many again
                                               └─ gone     → admitted (no budget blocks nothing)

Inside one replica, decisions for a budget never race: they queue, and whatever queued
while a write was in flight is folded into the next write (OpenKruise writes once per
decision and retries conflicts 500 ms apart, so a contended budget stalls). A budget under
steady load whose writes carry few decisions (many budgets, few requests in flight each)
lingers ``linger_s`` (10 ms) before its next write, so more decisions share it: each write
costs the gateway and the API server far more than a decision. An idle budget's first
decision, and a budget whose writes already carry many, are written at once. Across
replicas — a rebalancing, two gateways routing differently — the resourceVersion
precondition does the same job: a second writer gets ``ABORTED``, re-reads, and re-decides
on what the first one spent. A refusal that comes from a re-decision names the fresh
numbers.

The status loop (``services.budget.controller``) takes the same per-budget lock for its
own writes (``locked``) and reports what it wrote (``remember``), so the next decision
starts from the newest status even before its watch event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter, Histogram

from kruise.common.v1 import mesh_pb2, views_pb2
from services.budget.decision import Admit, Outcome, Refuse, StatusChange, commit_many
from services.budget.status import BudgetStatus, status_body
from services.kit import errors
from services.kit.cache import ObjectCache
from services.kit.cluster import ObjectReader, Ref, StatusWriter
from services.kit.objects import newer
from services.kit.projection import project_pod_unavailable_budget

log = logging.getLogger(__name__)

PUB = mesh_pb2.KIND_POD_UNAVAILABLE_BUDGET
PUB_API_VERSION = "policy.kruise.io/v1alpha1"
PUB_KIND = "PodUnavailableBudget"

WRITES = Counter(
    "kruise_mesh_budget_status_writes_total",
    "Budget status writes by the admission path, by result",
    ["result"],
)
BATCH = Histogram(
    "kruise_mesh_budget_decisions_per_write",
    "Admitted decisions committed by one status write",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class Cluster(StatusWriter, ObjectReader, Protocol):
    """What the committer needs of the cluster API."""


Key = tuple[str, str]


def budget_ref(namespace: str, name: str) -> Ref:
    return Ref(PUB_API_VERSION, PUB_KIND, namespace, name)


def with_status(
    view: views_pb2.PodUnavailableBudgetView,
    status: BudgetStatus,
    *,
    resource_version: str,
) -> views_pb2.PodUnavailableBudgetView:
    """``view`` as stored after writing ``status`` at ``resource_version`` (cheaper than
    projecting the returned object again: the status is what was just written). Pure."""
    out = views_pb2.PodUnavailableBudgetView()
    out.CopyFrom(view)
    out.meta.resource_version = resource_version
    out.observed_generation = status.observed_generation
    out.unavailable_allowed = status.unavailable_allowed
    out.current_available = status.current_available
    out.desired_available = status.desired_available
    out.total_replicas = status.total_replicas
    out.disrupted_pods.clear()
    out.disrupted_pods.update(status.disrupted_pods)
    out.unavailable_pods.clear()
    out.unavailable_pods.update(status.unavailable_pods)
    return out


@dataclass
class _Waiting:
    change: StatusChange
    answer: asyncio.Future[Outcome]
    read: views_pb2.PodUnavailableBudgetView | None = None


@dataclass
class _Budget:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: list[_Waiting] = field(default_factory=list)
    written: views_pb2.PodUnavailableBudgetView | None = None
    draining: bool = False
    last_write_end: float = float("-inf")  # loop time
    last_batch: int = 0


class BudgetCommitter:
    def __init__(
        self,
        *,
        cache: ObjectCache,
        cluster: Cluster,
        attempts: int = 8,
        backoff_s: float = 0.005,
        linger_s: float = 0.01,
        hot_s: float = 0.05,
        small_batch: int = 4,
    ) -> None:
        self.cache = cache
        self.cluster = cluster
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.linger_s = linger_s
        self.hot_s = hot_s
        self.small_batch = small_batch
        self._budgets: dict[Key, _Budget] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def _state(self, key: Key) -> _Budget:
        state = self._budgets.get(key)
        if state is None:
            state = self._budgets[key] = _Budget()
        return state

    # ---- shared with the status loop ----------------------------------------------------
    def freshest(
        self,
        namespace: str,
        name: str,
        *,
        read: views_pb2.PodUnavailableBudgetView | None = None,
    ) -> views_pb2.PodUnavailableBudgetView | None:
        """The newest known view of the budget: the cache's (or ``read``, a view just read
        from the API server when this replica does not hold the namespace) or the last one
        written here."""
        base = self.cache.get(PUB, namespace, name)
        if base is None:
            base = read
        if base is None:
            # Deleted (or not seen yet): what this replica wrote is no proof it still exists.
            return None
        state = self._budgets.get((namespace, name))
        return newer(base, state.written if state else None)

    async def read(self, namespace: str, name: str) -> views_pb2.PodUnavailableBudgetView | None:
        """The budget as the API server has it now (None when it does not exist)."""
        return await self._read((namespace, name))

    def remember(self, view: views_pb2.PodUnavailableBudgetView) -> None:
        """Record a budget as just written (by the status loop or by a commit)."""
        state = self._state((view.meta.namespace, view.meta.name))
        state.written = newer(state.written, view)

    @contextlib.asynccontextmanager
    async def locked(self, namespace: str, name: str) -> AsyncIterator[None]:
        """Hold the budget's write lock (one status write at a time per budget here)."""
        async with self._state((namespace, name)).lock:
            yield

    def forget(self, namespace: str, name: str) -> None:
        state = self._budgets.get((namespace, name))
        if state is not None and not state.waiting and not state.lock.locked():
            del self._budgets[(namespace, name)]

    # ---- the admission path -------------------------------------------------------------
    async def commit(
        self,
        change: StatusChange,
        *,
        read: views_pb2.PodUnavailableBudgetView | None = None,
    ) -> Outcome:
        """Spend ``change`` (decided on a possibly stale view); the final outcome.

        ``read`` is the view the decision read from the API server, when this replica does
        not hold the budget's namespace (see ``freshest``).
        """
        key = (change.namespace, change.name)
        state = self._state(key)
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        state.waiting.append(_Waiting(change, answer, read))
        if not state.draining:
            state.draining = True
            task = asyncio.create_task(self._drain(key, state))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await answer

    async def _drain(self, key: Key, state: _Budget) -> None:
        try:
            while state.waiting:
                if self._lingers(state):
                    await asyncio.sleep(self.linger_s)
                batch, state.waiting = state.waiting, []
                try:
                    async with state.lock:
                        read = None
                        for w in batch:
                            read = newer(read, w.read)
                        outcomes = await self._write(key, [w.change for w in batch], read)
                except Exception as e:  # noqa: BLE001 - every waiter must get an answer
                    for w in batch:
                        if not w.answer.done():
                            w.answer.set_exception(e)
                    continue
                state.last_write_end = asyncio.get_running_loop().time()
                state.last_batch = len(batch)
                for w, outcome in zip(batch, outcomes, strict=True):
                    if not w.answer.done():
                        w.answer.set_result(outcome)
        finally:
            state.draining = False

    def _lingers(self, state: _Budget) -> bool:
        """Wait for more decisions: the budget wrote a small batch moments ago."""
        if self.linger_s <= 0 or state.last_batch >= self.small_batch:
            return False
        return asyncio.get_running_loop().time() - state.last_write_end < self.hot_s

    async def _read(self, key: Key) -> views_pb2.PodUnavailableBudgetView | None:
        try:
            got = await self.cluster.get(budget_ref(*key))
        except errors.NotFound:
            return None
        view = project_pod_unavailable_budget(got.object)
        self.remember(view)
        return view

    async def _write(
        self,
        key: Key,
        changes: Sequence[StatusChange],
        read: views_pb2.PodUnavailableBudgetView | None,
    ) -> list[Outcome]:
        budget = self.freshest(*key, read=read)
        for attempt in range(self.attempts):
            if budget is None:
                # A budget that no longer exists never blocks anything.
                return [Admit(reason="the budget no longer exists") for _ in changes]
            batch = commit_many(budget=budget, changes=changes)
            if batch.change is None:
                return list(batch.outcomes)
            try:
                written = await self.cluster.update_status(
                    budget_ref(*key),
                    status=status_body(batch.change.status),
                    resource_version=budget.meta.resource_version,
                    uid=budget.meta.uid,
                )
            except errors.Conflict:
                WRITES.labels("conflict").inc()
                log.info(
                    "budget changed under the decision; re-deciding on a fresh read",
                    extra={"budget": f"{key[0]}/{key[1]}", "attempt": attempt + 1},
                )
                # Someone else wrote: re-read at once; if conflicts persist, back off a
                # little (5 ms doubling: 8 attempts span about 0.6 s, well inside a
                # webhook's deadline), then give up with a refusal, never an admission.
                if attempt:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
                budget = await self._read(key)
                continue
            except errors.NotFound:
                return [Admit(reason="the budget no longer exists") for _ in changes]
            WRITES.labels("written").inc()
            BATCH.observe(len(batch.change.spends))
            self.remember(
                with_status(budget, batch.change.status, resource_version=written.resource_version)
            )
            return list(batch.outcomes)
        WRITES.labels("gave-up").inc()
        return [_gave_up(change, self.attempts) for change in changes]


def _gave_up(change: StatusChange, attempts: int) -> Refuse:
    action = change.spends[0].action if change.spends else "DELETE"
    pods = ", ".join(s.pod for s in change.spends) or "the pod"
    message = (
        f"cannot record the disruption of {change.namespace}/{pods} in PodUnavailableBudget "
        f"{change.name}: its status changed under {attempts} attempts in a row; retry"
    )
    if action == "EVICT":
        return Refuse(429, message, reason="TooManyRequests")
    return Refuse(409, message, reason="Conflict")
