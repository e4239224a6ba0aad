"""Which CloneSet pods are updated first, and which are deleted first on scale-in (SPEC 2.5, 2.6).

Pure; no I/O, no clock (time is ``now_ms``). The rollout controller's update and scale
steps send the writes for the pods these functions return. They mirror OpenKruise v1.2:
``Update`` and ``SortUpdateIndexes`` / ``limitUpdateIndexes`` in
``pkg/controller/cloneset/sync/cloneset_update.go``, ``pkg/util/updatesort/{priority,
scatter}_sort.go``, ``choosePodsToDelete`` in ``cloneset_scale.go``, and
``ActivePodsWithRanks`` with its rankers in ``pkg/controller/cloneset/utils/pod_sorter.go``.

Updating (SPEC 2.5 steps 2-4), with ``d`` the round's ``ExpectationDiffs``::

    wait = functools.partial(waits_for_update, update_num=d.update_num,
                             update_revision=update_revision)               # step 2
    ordered = update_order(pods, waiting=wait, priority=parse_priority(...),
                           scatter=parse_scatter(...))                       # step 3
    chosen = choose_for_update(ordered, pods=pods, update_num=d.update_num,
                               update_max_unavailable=d.update_max_unavailable,
                               update_revision=..., current_revision=...,
                               min_ready_seconds=..., now_ms=now_ms)         # step 4

``waiting`` matters only to the scatter step, which spreads the waiting pods against the
totals over every pod; ``choose_for_update`` applies the same filter itself, so passing it
the order of every pod gives the same choice when no scatterStrategy is set.

Scaling in (SPEC 2.6)::

    victims = choose_scale_in(pods, scale_num=d.scale_num,
                              scale_num_old_revision=d.scale_num_old_revision,
                              delete_ready_limit=d.delete_ready_limit, ...)

The CloneSetView keeps ``spec.template`` as JSON but not ``updateStrategy.priorityStrategy``
and ``scatterStrategy``: the caller takes them from the CloneSet's raw JSON,
``parse_priority(spec["updateStrategy"].get("priorityStrategy"))`` and
``parse_scatter(spec["updateStrategy"].get("scatterStrategy"))``; ``spread_constraints_of``
reads ``topologySpreadConstraints`` from the template.

Sorts here are stable where Go's ``sort.Slice`` / ``sort.Sort`` are not: pods that compare
equal keep their input order, one of the orders OpenKruise may produce for them.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.rollout.pods import (
    DELETION_COST_ANNOTATION,
    INPLACE_GRACE_ANNOTATION,
    PREPARING_DELETE,
    PREPARING_UPDATE,
    UPDATED,
    available,
    is_ready,
    is_updated,
    lifecycle_state,
    max_restarts,
    ready_since_ms,
)

__all__ = [
    "HOSTNAME_LABEL",
    "LabelRequirement",
    "PriorityStrategy",
    "SpreadConstraint",
    "WeightTerm",
    "choose_for_update",
    "choose_scale_in",
    "deletion_cost",
    "deletion_ranks",
    "limit_ready_deletions",
    "parse_priority",
    "parse_scatter",
    "scale_in_order",
    "spread_constraints_of",
    "update_order",
    "waits_for_update",
]

PodView = views_pb2.PodView
HOSTNAME_LABEL = "kubernetes.io/hostname"
"""A spread constraint on this key ranks pods within a node without the same-node ranker."""

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}  # any other phase counts as 0
_MAX_INT64 = 2**63 - 1
_INT32 = range(-(2**31), 2**31)


# --- strategies, parsed from the CloneSet's JSON -----------------------------------------


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One ``matchExpressions`` entry: ``operator`` In, NotIn, Exists or DoesNotExist."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WeightTerm:
    """``weightPriority[i]``: pods matching the selector gain ``weight``.

    ``valid`` is False when Kubernetes would refuse the selector (an unknown operator, In or
    NotIn without values, Exists or DoesNotExist with values); such a term never counts, as
    OpenKruise ``continue``s past the selector error. An empty selector matches every pod.
    """

    weight: int
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()
    valid: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        if not self.valid:
            return False
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        return all(_requirement_matches(r, labels) for r in self.match_expressions)


@dataclass(frozen=True, slots=True)
class PriorityStrategy:
    """``updateStrategy.priorityStrategy``: ``weightPriority`` wins when both are set.

    weight_priority  higher summed weight of matching terms updates first
    order_priority   the ``orderedKey``s; see ``update_order`` for how they rank pods
    """

    weight_priority: tuple[WeightTerm, ...] = ()
    order_priority: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    """A topology to spread over when scaling in; ``limited_values`` (when non-empty) keeps
    only nodes whose label value is among them. A CloneSet takes one per template
    ``topologySpreadConstraints`` entry, without limited values."""

    topology_key: str
    limited_values: frozenset[str] = frozenset()


def parse_priority(raw: Mapping[str, Any] | None) -> PriorityStrategy | None:
    """``spec.updateStrategy.priorityStrategy`` (raw JSON) → a strategy, or None when unset or
    without terms (OpenKruise then keeps the default order). Malformed entries are skipped."""
    if not isinstance(raw, Mapping):
        return None
    weights = tuple(_weight_term(t) for t in _list(raw.get("weightPriority")) if _is_map(t))
    orders = tuple(
        str(t.get("orderedKey", "")) for t in _list(raw.get("orderPriority")) if _is_map(t)
    )
    if not weights and not orders:
        return None
    return PriorityStrategy(weight_priority=weights, order_priority=orders)


def parse_scatter(raw: Sequence[Any] | None) -> tuple[tuple[str, str], ...]:
    """``spec.updateStrategy.scatterStrategy`` (raw JSON list of ``{key, value}``) → terms."""
    return tuple((str(t.get("key", "")), str(t.get("value", ""))) for t in _list(raw) if _is_map(t))


def spread_constraints_of(template: Mapping[str, Any] | None) -> tuple[SpreadConstraint, ...]:
    """The pod template's ``spec.topologySpreadConstraints`` keys (``GetPodSpreadConstraint``)."""
    spec = template.get("spec") if isinstance(template, Mapping) else None
    entries = _list(spec.get("topologySpreadConstraints")) if isinstance(spec, Mapping) else []
    return tuple(SpreadConstraint(str(c.get("topologyKey", ""))) for c in entries if _is_map(c))


# --- updating (SPEC 2.5) ------------------------------------------------------------------


def waits_for_update(pod: PodView, *, update_num: int, update_revision: str) -> bool:
    """SPEC 2.5 step 2: ``pod`` is a candidate to update this round.

    With ``update_num`` > 0 the pods not at the update revision wait; with ``update_num`` < 0
    (rollback under CloneSetPartitionRollback) the pods at it do; with 0 none do. Of
    those, PreparingDelete pods never wait; ``Updated`` pods always do; any other pod waits
    unless it carries a non-empty ``apps.kruise.io/inplace-update-grace`` annotation.

    That annotation is an in-place update waiting out its grace period (``{"revision": ...,
    "containerImages": ...}``; the start time is the ``inplace-update-state`` annotation's
    ``updateTimestamp``). OpenKruise skips the pod while the annotation is there, without
    reading the time; its refresh step (``inplace.finish_grace_patch`` here) removes the
    annotation once the grace period has passed.
    """
    if update_num == 0 or is_updated(pod, update_revision) == (update_num > 0):
        return False
    state = lifecycle_state(pod)
    if state == PREPARING_DELETE:
        return False
    if state == UPDATED:
        return True
    return not pod.meta.annotations.get(INPLACE_GRACE_ANNOTATION, "")


def update_order(
    pods: Sequence[PodView],
    *,
    priority: PriorityStrategy | None,
    scatter: Sequence[tuple[str, str]],
    waiting: Callable[[PodView], bool] | None = None,
) -> list[PodView]:
    """SPEC 2.5 step 3: the pods for which ``waiting(pod)`` holds (all when None), first first.

    1. Kubernetes' ActivePods order: unscheduled < scheduled; Pending < Unknown < Running
       (other phases count as Pending); not ready < ready; when both are ready, the one
       ready more recently first (a zero transition time first); more container restarts
       first; newer ``creationTimestamp`` first (zero first). ActivePods ignores
       minReadySeconds, so no clock is needed.
    2. ``priority``: ``weight_priority`` ranks by the sum of the weights of the terms whose
       selector matches, higher first. Otherwise ``order_priority``: a pod ranks by the
       first ordered key (in term order) it has a label for, lower term index first, then,
       within that key, by the integer the label value ends with, larger first ("v-10"
       before "v-9"; no trailing digits, or too many for an int64, counts as 0). Quirks
       kept: pods with none of the keys come before all the others, and equal pods are
       ordered by their position in ``pods``, later first, which undoes step 1's order
       among them.
    3. ``scatter`` (``[(key, value)]``): pods whose label ``key`` equals ``value`` are spread
       evenly through the sequence (``_scatter``). The density it aims at counts every pod
       in ``pods``, waiting or not.
    4. PreparingUpdate pods first, otherwise stable.
    """
    indexes = [i for i, p in enumerate(pods) if waiting is None or waiting(p)]
    indexes.sort(key=lambda i: _active_key(pods[i]))
    if priority is not None:
        indexes.sort(key=_priority_key(pods, priority))
    if scatter:
        indexes = _scatter(pods, indexes, scatter)
    indexes.sort(key=lambda i: lifecycle_state(pods[i]) != PREPARING_UPDATE)
    return [pods[i] for i in indexes]


def choose_for_update(
    ordered: Sequence[PodView],
    *,
    pods: Sequence[PodView],
    update_num: int,
    update_max_unavailable: int,
    update_revision: str,
    current_revision: str,
    min_ready_seconds: int,
    now_ms: int,
) -> list[PodView]:
    """SPEC 2.5 steps 2 and 4 (``limitUpdateIndexes``): the pods to update now, in order.

    ``ordered`` is ``update_order``'s result; the pods in it that do not wait for an update
    (``waits_for_update``) are dropped, and the rest cut to ``|update_num|``. ``pods`` is
    every pod of the CloneSet, for two counts: ``unavailable`` (not ``available`` for
    minReadySeconds) and ``target_unavailable``, those of them at the target revision (the
    update revision, or the current revision when rolling back, ``update_num`` < 0). Then,
    walking the candidates with ``chosen`` picked so far, stop at the first where

    * ``target_unavailable + chosen >= update_max_unavailable`` (pods at the target revision
      that are, or are about to be, unavailable stay under the budget), or
    * the candidate is available and ``unavailable >= update_max_unavailable`` (taking an
      available pod down must not reach the budget; each one taken adds 1 to
      ``unavailable``; taking an already-unavailable pod is free on this count).

    Worked example: replicas 5, maxUnavailable 2, no surge (``update_max_unavailable`` = 2);
    pods: ``n1`` at the new revision, not ready; old ``o1`` not ready; old ``o2``..``o4``
    available; ``update_num`` 4. Candidates in order: o1, o2, o3, o4 (not ready first).
    unavailable = 2, target_unavailable = 1. o1: 1 + 0 < 2, unavailable already → chosen 1.
    o2: 1 + 1 >= 2 → stop. Result [o1]. Without ``n1`` (4 old pods, unavailable = 1,
    target_unavailable = 0): o1 free → 1; o2: 0 + 1 < 2, available, 1 < 2 → unavailable 2,
    chosen 2; o3: 0 + 2 >= 2 → stop. Result [o1, o2].
    """
    if update_num == 0:
        return []
    target = update_revision if update_num > 0 else current_revision
    candidates = [
        p
        for p in ordered
        if waits_for_update(p, update_num=update_num, update_revision=update_revision)
    ][: abs(update_num)]

    def is_available(pod: PodView) -> bool:
        return available(pod, min_ready_seconds=min_ready_seconds, now_ms=now_ms)

    unavailable = target_unavailable = 0
    for pod in pods:
        if not is_available(pod):
            unavailable += 1
            if is_updated(pod, target):
                target_unavailable += 1
    chosen = 0
    for pod in candidates:
        if target_unavailable + chosen >= update_max_unavailable:
            break
        if is_available(pod):
            if unavailable >= update_max_unavailable:
                break
            unavailable += 1
        chosen += 1
    return candidates[:chosen]


# --- scaling in (SPEC 2.6) -----------------------------------------------------------------


def deletion_ranks(
    pods: Sequence[PodView],
    *,
    spread: Sequence[SpreadConstraint] = (),
    node_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[float]:
    """Each pod's spread rank among ``pods`` (aligned with it): higher is deleted sooner.

    Without ``spread``, the same-node ranker: on every node holding k > 1 of ``pods``, sort
    them (ActivePods order with deletion cost, as in ``scale_in_order`` but without
    availability or ranks) and rank them k-1, k-2, ..., 1, 0, so the most crowded nodes
    give up their weakest pods first; unscheduled pods and lone pods rank 0.

    With ``spread``, the topology ranker, using ``node_labels`` (node name → labels; pods on
    nodes missing from it are not ranked). For each constraint, the pods are grouped by
    their node's value for the key (nodes without the label, or with a value outside
    ``limited_values``, are left out); each group of size n is sorted as above, using the
    same-node ranks unless the key is ``kubernetes.io/hostname``, and its pods gain
    n, n-1, ..., 1 times ln(number of groups + 2).
    """
    if spread:
        return _spread_ranks(pods, spread, node_labels or {})
    return _same_node_ranks(pods)


def scale_in_order(
    pods: Sequence[PodView],
    *,
    min_ready_seconds: int,
    now_ms: int,
    spread: Sequence[SpreadConstraint] = (),
    node_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[PodView]:
    """``pods`` in the order they are deleted when scaling in (``ActivePodsWithRanks``).

    Unassigned < assigned; Pending < Unknown < Running; not ``available`` (for
    minReadySeconds) < available; not ready < ready; lower
    ``controller.kubernetes.io/pod-deletion-cost`` first (not an int32 written plainly,
    e.g. "+1", "007", "1.5": 0); higher ``deletion_ranks`` first; when both are ready, the
    one ready more recently first; more restarts first; newer first (zero first). Ranks
    are computed among ``pods`` only: ``choose_scale_in`` ranks each revision group apart.
    """
    ranks = deletion_ranks(pods, spread=spread, node_labels=node_labels)

    def key(i: int) -> tuple[Any, ...]:
        pod = pods[i]
        ok = available(pod, min_ready_seconds=min_ready_seconds, now_ms=now_ms)
        return _deletion_key(pod, rank=ranks[i], available=ok)

    return [pods[i] for i in sorted(range(len(pods)), key=key)]


def choose_scale_in(
    pods: Sequence[PodView],
    *,
    scale_num: int,
    scale_num_old_revision: int,
    delete_ready_limit: int,
    update_revision: str,
    min_ready_seconds: int,
    now_ms: int,
    spread: Sequence[SpreadConstraint] = (),
    node_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[PodView]:
    """The pods to delete to scale in (``choosePodsToDelete``, then the ready limit).

    ``scale_num`` and ``scale_num_old_revision`` are ``ExpectationDiffs``' (negative: scale
    in; anything else returns []). With ``total = -scale_num`` and ``old = -scale_num_old_
    revision``, the victims are ``old`` pods not at ``update_revision`` and ``total - old``
    at it (all ``total`` old ones when ``old >= total``; all new ones when ``old <= 0``),
    each group sorted by ``scale_in_order`` (ranked within the group) unless all of it
    goes, and a group smaller than asked is taken whole. Old victims come first. Then
    ``limit_ready_deletions``: every not-ready victim goes, ready ones only while
    ``delete_ready_limit`` lasts.
    """
    if scale_num >= 0:
        return []
    total, old = -scale_num, -scale_num_old_revision
    updated = [p for p in pods if is_updated(p, update_revision)]
    not_updated = [p for p in pods if not is_updated(p, update_revision)]

    def choose(group: list[PodView], diff: int) -> list[PodView]:
        if diff < len(group):
            group = scale_in_order(
                group,
                min_ready_seconds=min_ready_seconds,
                now_ms=now_ms,
                spread=spread,
                node_labels=node_labels,
            )
        return group[:diff]

    if old >= total:
        victims = choose(not_updated, total)
    elif old > 0:
        victims = choose(not_updated, old) + choose(updated, total - old)
    else:
        victims = choose(updated, total)
    return limit_ready_deletions(victims, delete_ready_limit=delete_ready_limit)


def limit_ready_deletions(victims: Sequence[PodView], *, delete_ready_limit: int) -> list[PodView]:
    """``victims`` less the ready ones past ``delete_ready_limit``, in order.

    "Ready" is OpenKruise's ``isPodReady``: lifecycle state empty or Normal, running and
    ready, and InPlaceUpdateReady not False, without minReadySeconds. Specified deletes go
    through the same limit (SPEC 2.6).
    """
    kept: list[PodView] = []
    budget = delete_ready_limit
    for pod in victims:
        # minReadySeconds 0: ``available`` then never reads the clock.
        if not available(pod, min_ready_seconds=0, now_ms=0):
            kept.append(pod)
        elif budget > 0:
            kept.append(pod)
            budget -= 1
    return kept


# --- sort keys ---------------------------------------------------------------------------


def _zero_or_newer_first(unix_ms: int) -> tuple[int, int]:
    """``afterOrZero``: a zero time sorts before any other, then the later time first."""
    return (0, 0) if unix_ms == 0 else (1, -unix_ms)


def _active_key(pod: PodView) -> tuple[Any, ...]:
    """Kubernetes' ``ActivePods.Less`` as a sort key."""
    ready = is_ready(pod)
    return (
        1 if pod.node_name else 0,
        _PHASE_ORDINAL.get(pod.phase, 0),
        ready,
        _zero_or_newer_first(ready_since_ms(pod)) if ready else (0, 0),
        -max_restarts(pod),
        _zero_or_newer_first(pod.meta.creation_unix_ms),
    )


def _deletion_key(pod: PodView, *, rank: float, available: bool) -> tuple[Any, ...]:
    """``ActivePodsWithRanks.Less`` as a sort key (``available`` True when there is no
    AvailableFunc: every pod then ties on it)."""
    ready = is_ready(pod)
    return (
        1 if pod.node_name else 0,
        _PHASE_ORDINAL.get(pod.phase, 0),
        available,
        ready,
        deletion_cost(pod),
        -rank,
        _zero_or_newer_first(ready_since_ms(pod)) if ready else (0, 0),
        -max_restarts(pod),
        _zero_or_newer_first(pod.meta.creation_unix_ms),
    )


_DELETION_COST = re.compile(r"-?[0-9]+")


def deletion_cost(pod: PodView) -> int:
    """``controller.kubernetes.io/pod-deletion-cost`` as OpenKruise reads it: an int32 with
    no "+" and no leading zeros ("0" itself is fine); anything else, or unset, is 0."""
    value = pod.meta.annotations.get(DELETION_COST_ANNOTATION)
    if not value or not _DELETION_COST.fullmatch(value):
        return 0
    if value[0] == "0" and value != "0":
        return 0
    cost = int(value)
    return cost if cost in _INT32 else 0


def _priority_key(
    pods: Sequence[PodView], strategy: PriorityStrategy
) -> Callable[[int], tuple[int, ...]]:
    """``prioritySort.compare`` as a key over pod indexes; ties: larger index first."""
    if strategy.weight_priority:

        def weight_key(i: int) -> tuple[int, ...]:
            labels = pods[i].meta.labels
            weight = sum(t.weight for t in strategy.weight_priority if t.matches(labels))
            return (-weight, -i)

        return weight_key
    if strategy.order_priority:

        def order_key(i: int) -> tuple[int, ...]:
            level, order = _order_priority(pods[i].meta.labels, strategy.order_priority)
            return (level, -order, -i)

        return order_key
    return lambda i: (0,)  # no terms: OpenKruise leaves the order as it is


def _order_priority(labels: Mapping[str, str], keys: Sequence[str]) -> tuple[int, int]:
    for level, key in enumerate(keys):
        if key in labels:
            return level, _int_suffix(labels[key])
    return -1, 0


def _int_suffix(value: str) -> int:
    """``getIntFromStringSuffix``: the trailing ASCII digits as an int64, else 0."""
    digits = re.search(r"[0-9]+\Z", value)
    if digits is None:
        return 0
    number = int(digits.group())
    return number if number <= _MAX_INT64 else 0


def _requirement_matches(req: LabelRequirement, labels: Mapping[str, str]) -> bool:
    if req.operator == "In":
        return req.key in labels and labels[req.key] in req.values
    if req.operator == "NotIn":
        return req.key not in labels or labels[req.key] not in req.values
    if req.operator == "Exists":
        return req.key in labels
    return req.key not in labels  # DoesNotExist (other operators make the term invalid)


def _weight_term(raw: Mapping[str, Any]) -> WeightTerm:
    weight = raw.get("weight")
    selector = raw.get("matchSelector")
    selector = selector if isinstance(selector, Mapping) else {}
    match_labels = selector.get("matchLabels")
    labels = (
        tuple(sorted((str(k), str(v)) for k, v in match_labels.items()))
        if isinstance(match_labels, Mapping)
        else ()
    )
    valid = True
    requirements: list[LabelRequirement] = []
    for expr in _list(selector.get("matchExpressions")):
        if not _is_map(expr):
            valid = False
            continue
        req = LabelRequirement(
            key=str(expr.get("key", "")),
            operator=str(expr.get("operator", "")),
            values=tuple(str(v) for v in _list(expr.get("values"))),
        )
        if req.operator in ("In", "NotIn"):
            valid = valid and bool(req.values)
        elif req.operator in ("Exists", "DoesNotExist"):
            valid = valid and not req.values
        else:
            valid = False
        requirements.append(req)
    return WeightTerm(
        weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else 0,
        match_labels=labels,
        match_expressions=tuple(requirements),
        valid=valid,
    )


# --- scatter (pkg/util/updatesort/scatter_sort.go) ---------------------------------------


def _scatter(
    pods: Sequence[PodView], indexes: list[int], terms: Sequence[tuple[str, str]]
) -> list[int]:
    """``scatterSort.Sort``: scatter the waiting ``indexes`` by each term in turn.

    With more than one term, only the terms some waiting pod matches (label present and
    equal) are used, the most matched first (ties in strategy order; a term listed twice
    counts twice).
    """
    if len(indexes) <= 1:
        return indexes
    if len(terms) == 1:
        ordered = list(terms)
    else:
        counts: dict[str, int] = {}
        ordered = []
        for key, value in terms:
            for i in indexes:
                labels = pods[i].meta.labels
                if key in labels and labels[key] == value:
                    term_id = f"{key}:{value}"  # OpenKruise's id; "a:b"+"c" = "a"+"b:c"
                    if term_id not in counts:
                        ordered.append((key, value))
                        counts[term_id] = 0
                    counts[term_id] += 1
        ordered.sort(key=lambda t: -counts[f"{t[0]}:{t[1]}"])
    for term in ordered:
        indexes = _scatter_by_term(pods, indexes, term)
    return indexes


def _scatter_by_term(
    pods: Sequence[PodView], indexes: list[int], term: tuple[str, str]
) -> list[int]:
    """``scatterPodsByRule``: interleave the matching waiting pods with the others.

    A pod matches when its label ``key`` (missing = "") equals ``value``. Nothing moves
    unless at least two waiting pods match and two do not. The last matching pod is set
    aside and goes last; the others go in groups sized by ``_groups`` from the density
    of matching pods among all ``pods``, any unmatched remainder first, then alternating
    matched and unmatched groups, then what is left of each.
    """
    key, value = term
    matched = [i for i in indexes if pods[i].meta.labels.get(key, "") == value]
    unmatched = [i for i in indexes if pods[i].meta.labels.get(key, "") != value]
    if len(matched) <= 1 or len(unmatched) <= 1:
        return indexes
    total_matched = sum(1 for p in pods if p.meta.labels.get(key, "") == value)
    total_unmatched = len(pods) - total_matched

    last = matched.pop()
    total_matched -= 1
    group_num, matched_size, unmatched_size, remainder = _groups(
        total_matched, total_unmatched, len(matched), len(unmatched)
    )
    out = unmatched[:remainder] if remainder > 0 else []
    unmatched = unmatched[remainder:] if remainder > 0 else unmatched
    for _ in range(group_num):
        for source, size in ((matched, matched_size), (unmatched, unmatched_size)):
            taken = source[:size] if len(source) >= size else source[:]
            out.extend(taken)
            del source[: len(taken)]
    out.extend(matched)
    out.extend(unmatched)
    out.append(last)
    return out


def _group(matched: int, unmatched: int) -> tuple[int, int, int]:
    """``newScatterGroup``: (groups, matched per group, unmatched per group)."""
    groups = min(matched, unmatched)
    return groups, _go_round(matched / groups), _go_round(unmatched / groups)


def _groups(
    total_matched: int, total_unmatched: int, update_matched: int, update_unmatched: int
) -> tuple[int, int, int, int]:
    """``calculateGroupByDensity``: (groups, matched size, unmatched size, remainder).

    When the waiting pods are no denser in matching pods than all pods (compared as Go
    float32 ratios), the groups split the waiting pods evenly. Otherwise the group sizes
    follow all pods' density, as many groups as the waiting pods fill, and the unmatched
    waiting pods left over go first.
    """
    if _f32(total_unmatched / total_matched) >= _f32(update_unmatched / update_matched):
        return (*_group(update_matched, update_unmatched), 0)
    _, matched_size, unmatched_size = _group(total_matched, total_unmatched)
    groups = min(update_matched // matched_size, update_unmatched // unmatched_size)
    return groups, matched_size, unmatched_size, update_unmatched - groups * unmatched_size


def _go_round(x: float) -> int:
    """Go's ``math.Round`` for x >= 0: halves away from zero (Python rounds them to even)."""
    return math.floor(x + 0.5)


def _f32(x: float) -> float:
    """``float32(a) / float32(b)`` for small ints: the float64 quotient rounded to float32
    is the same number (a double has more than 2 * 24 + 2 bits)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


# --- rankers (pkg/controller/cloneset/utils/pod_sorter.go) -------------------------------


def _same_node_ranks(pods: Sequence[PodView]) -> list[float]:
    ranks = [0.0] * len(pods)
    on_node: dict[str, list[int]] = {}
    for i, pod in enumerate(pods):
        if pod.node_name:
            on_node.setdefault(pod.node_name, []).append(i)
    for members in on_node.values():
        if len(members) <= 1:
            continue
        members = sorted(members, key=lambda i: _deletion_key(pods[i], rank=0.0, available=True))
        members = members[:-1]
        for position, i in enumerate(members):
            ranks[i] = float(len(members) - position)
    return ranks


def _spread_ranks(
    pods: Sequence[PodView],
    constraints: Sequence[SpreadConstraint],
    node_labels: Mapping[str, Mapping[str, str]],
) -> list[float]:
    ranks = [0.0] * len(pods)
    nodes: list[str] = []
    on_node: dict[str, list[int]] = {}
    for i, pod in enumerate(pods):
        if not pod.node_name or pod.node_name not in node_labels:
            continue
        if pod.node_name not in on_node:
            nodes.append(pod.node_name)
        on_node.setdefault(pod.node_name, []).append(i)
    same_node = _same_node_ranks(pods)
    for constraint in constraints:
        topologies: dict[str, list[int]] = {}
        for node in nodes:
            labels = node_labels[node]
            if constraint.topology_key not in labels:
                continue
            value = labels[constraint.topology_key]
            if constraint.limited_values and value not in constraint.limited_values:
                continue
            topologies.setdefault(value, []).extend(on_node[node])
        use_same_node = constraint.topology_key != HOSTNAME_LABEL
        weight = math.log(len(topologies) + 2)
        for members in topologies.values():
            members = sorted(
                members,
                key=functools.partial(_topology_key, pods, same_node if use_same_node else None),
            )
            for position, i in enumerate(members):
                ranks[i] += float(len(members) - position) * weight
    return ranks


def _topology_key(
    pods: Sequence[PodView], same_node: Sequence[float] | None, i: int
) -> tuple[Any, ...]:
    rank = same_node[i] if same_node is not None else 0.0
    return _deletion_key(pods[i], rank=rank, available=True)


# --- raw JSON helpers --------------------------------------------------------------------


def _list(raw: object) -> list[Any]:
    return raw if isinstance(raw, list) else list(raw) if isinstance(raw, tuple) else []


def _is_map(raw: object) -> bool:
    return isinstance(raw, Mapping)
