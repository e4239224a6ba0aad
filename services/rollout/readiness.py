"""The ``KruisePodReady`` pod condition: a not-ready lock with many writers (SPEC 3.4).

Pure; no I/O, no clock: ``now_ms`` (unix milliseconds) is an argument. Three writers use it:

* the pod CREATE mutating webhook gives pods of ``apps.kruise.io`` controllers the
  readiness gate (``inject_readiness_gate``; a JSONPatch for the AdmissionResponse);
* the pod-readiness controller gives a non-terminating gated pod without the condition
  ``KruisePodReady`` True (``needs_initial_condition``, ``initial_condition``);
* lifecycle hooks (``services.rollout.lifecycle``) and other features add and remove
  entries (``add_not_ready_key``, ``remove_not_ready_key``).

The condition's ``message`` is the lock: a JSON array of ``{"userAgent", "key"}`` entries,
sorted by userAgent then key, written compactly as Go's ``json.Marshal`` does::

    [{"userAgent":"Lifecycle","key":"preDeleteHook"}]

Any entry makes the status False; removing the last one makes it True (message ``[]``).
Because the pod carries the gate, kubelet keeps the pod NotReady while it is False.

The add/remove functions return a strategic merge patch for the ``pods/status``
subresource, ``{"status": {"conditions": [...]}}``, holding only the conditions that change,
each whole. Pod conditions merge by ``type`` under a strategic merge patch
(``patchMergeKey: type``), so the other conditions are kept; a JSON merge patch (RFC 7386)
would replace the whole list and must not be used. The shell sends it with the pod's
resourceVersion and, on a conflict, re-reads the pod and asks again (OpenKruise retries
``UpdateStatus`` on conflict).

Adding a key also recomputes ``Ready`` as kubelet would, so the pod leaves its Services'
endpoints at once instead of at kubelet's next sync: only when ``Ready`` exists and
``ContainersReady`` is True; ``Ready`` is rewritten only when its status changes. Removing
a key never touches ``Ready`` (kubelet turns it True). v1.2 left ``status`` empty when it
created the condition while adding a key; here it is ``False``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kruise.common.v1 import views_pb2
from services.kit.admission import JsonPatch
from services.rollout.pods import KRUISE_POD_READY, condition

__all__ = [
    "KRUISE_GROUP",
    "READINESS_GATES_NOT_READY",
    "add_not_ready_key",
    "controller_group",
    "dump_message",
    "initial_condition",
    "inject_readiness_gate",
    "needs_initial_condition",
    "parse_message",
    "remove_not_ready_key",
    "rfc3339",
]

KRUISE_GROUP = "apps.kruise.io"
READINESS_GATES_NOT_READY = "ReadinessGatesNotReady"

Entry = tuple[str, str]  # (userAgent, key)
Json = dict[str, Any]

# Go's json.Marshal escapes these inside strings; Python's json.dumps does not.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def rfc3339(unix_ms: int) -> str:
    """A ``metav1.Time`` as Kubernetes writes it: whole seconds, UTC."""
    return datetime.fromtimestamp(unix_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_message(message: str) -> list[Entry]:
    """The entries of a condition message; an unreadable message has none (as in Go)."""
    if not message:
        return []
    try:
        items = json.loads(message)
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [
        (str(item.get("userAgent", "")), str(item.get("key", "")))
        for item in items
        if isinstance(item, dict)
    ]


def dump_message(entries: Iterable[Entry]) -> str:
    """Entries sorted by userAgent then key, as compact JSON byte-for-byte like Go's."""
    text = json.dumps(
        [{"userAgent": ua, "key": key} for ua, key in sorted(entries)],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def _as_json(cond: views_pb2.Condition) -> Json:
    out: Json = {"type": cond.type, "status": cond.status}
    if cond.reason:
        out["reason"] = cond.reason
    if cond.message:
        out["message"] = cond.message
    if cond.last_transition_unix_ms:
        out["lastTransitionTime"] = rfc3339(cond.last_transition_unix_ms)
    return out


def _ready_after(pod: views_pb2.PodView, statuses: Mapping[str, str], now_ms: int) -> Json | None:
    """The new ``Ready`` condition once gate conditions have ``statuses``; None: unchanged.

    Kubelet's rule (``GeneratePodReadyCondition``) applied only where OpenKruise applies it:
    ``Ready`` exists and ``ContainersReady`` is True.
    """
    ready = condition(pod, "Ready")
    if ready is None or statuses.get("ContainersReady") != "True":
        return None
    problems: list[str] = []
    for gate in pod.readiness_gates:
        status = statuses.get(gate)
        if status is None:
            problems.append(
                f"corresponding condition of pod readiness gate {json.dumps(gate)} does not exist."
            )
        elif status != "True":
            problems.append(
                f'the status of pod readiness gate {json.dumps(gate)} is not "True", but {status}'
            )
    new: Json = {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(now_ms)}
    if problems:
        new = {
            "type": "Ready",
            "status": "False",
            "reason": READINESS_GATES_NOT_READY,
            "message": ", ".join(problems),
            "lastTransitionTime": rfc3339(now_ms),
        }
    return None if new["status"] == ready.status else new


def _patch(*conditions: Json | None) -> Json:
    return {"status": {"conditions": [c for c in conditions if c is not None]}}


def add_not_ready_key(
    pod: views_pb2.PodView, *, user_agent: str, key: str, now_ms: int
) -> Json | None:
    """The ``pods/status`` patch that adds the entry ``user_agent``/``key`` (status False).

    None when nothing changes: the pod lacks the ``KruisePodReady`` gate, or the entry is
    already listed. A missing condition is created with just this entry.

    Example: a gated, ready pod with ``KruisePodReady`` True and message ``[]``, add
    ``Lifecycle``/``preDeleteHook`` → ``KruisePodReady`` False with message
    ``[{"userAgent":"Lifecycle","key":"preDeleteHook"}]``, and ``Ready`` False, reason
    ``ReadinessGatesNotReady``, message ``the status of pod readiness gate
    "KruisePodReady" is not "True", but False``.
    """
    if KRUISE_POD_READY not in pod.readiness_gates:
        return None
    entry = (user_agent, key)
    current = condition(pod, KRUISE_POD_READY)
    new: Json
    if current is None:
        new = {"type": KRUISE_POD_READY, "status": "False"}
        entries = [entry]
    else:
        entries = parse_message(current.message)
        if entry in entries:
            return None
        entries.append(entry)
        new = _as_json(current)
        new["status"] = "False"
    new["message"] = dump_message(entries)
    new["lastTransitionTime"] = rfc3339(now_ms)
    statuses = {c.type: c.status for c in pod.conditions}
    statuses[KRUISE_POD_READY] = "False"
    return _patch(new, _ready_after(pod, statuses, now_ms))


def remove_not_ready_key(
    pod: views_pb2.PodView, *, user_agent: str, key: str, now_ms: int
) -> Json | None:
    """The ``pods/status`` patch that removes the entry ``user_agent``/``key``.

    None when nothing changes: no gate, no condition, or the entry is not listed. When no
    entry remains the status becomes True (message ``[]``); otherwise it is kept.
    ``Ready`` is left to kubelet.
    """
    if KRUISE_POD_READY not in pod.readiness_gates:
        return None
    current = condition(pod, KRUISE_POD_READY)
    if current is None:
        return None
    entries = parse_message(current.message)
    if (user_agent, key) not in entries:
        return None
    remaining = [e for e in entries if e != (user_agent, key)]
    new = _as_json(current)
    if not remaining:
        new["status"] = "True"
    new["message"] = dump_message(remaining)
    new["lastTransitionTime"] = rfc3339(now_ms)
    return _patch(new)


def needs_initial_condition(pod: views_pb2.PodView) -> bool:
    """The pod-readiness controller's rule: a pod not being deleted, with the gate and
    without the condition, gets ``initial_condition``."""
    return (
        not pod.meta.deletion_unix_ms
        and KRUISE_POD_READY in pod.readiness_gates
        and condition(pod, KRUISE_POD_READY) is None
    )


def initial_condition(*, now_ms: int) -> Json:
    """``KruisePodReady`` True; the shell writes it as ``{"status": {"conditions": [it]}}``."""
    return {"type": KRUISE_POD_READY, "status": "True", "lastTransitionTime": rfc3339(now_ms)}


def controller_group(pod_json: Mapping[str, Any]) -> str:
    """The API group of the pod's controller owner ("" for the core group or no owner).

    ``apps.kruise.io/v1alpha1`` → ``apps.kruise.io``; ``apps/v1`` → ``apps``; ``v1`` → "".
    """
    owners = (pod_json.get("metadata") or {}).get("ownerReferences") or []
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            api_version = str(owner.get("apiVersion", ""))
            return api_version.rpartition("/")[0]
    return ""


def inject_readiness_gate(pod_json: Mapping[str, Any], *, owner_group: str) -> JsonPatch:
    """The JSONPatch (RFC 6902) a pod CREATE review answers with: add the readiness gate
    ``KruisePodReady`` when the controller owner's group is ``apps.kruise.io``.

    No ``spec.readinessGates`` (or null, or empty) → add the list; other gates → append;
    the gate already there, or another group → nothing.
    """
    if owner_group != KRUISE_GROUP:
        return []
    spec = pod_json.get("spec")
    if not isinstance(spec, Mapping):
        return []
    gate = {"conditionType": KRUISE_POD_READY}
    gates = spec.get("readinessGates")
    if not isinstance(gates, list) or not gates:
        return [{"op": "add", "path": "/spec/readinessGates", "value": [gate]}]
    if any(isinstance(g, Mapping) and g.get("conditionType") == KRUISE_POD_READY for g in gates):
        return []
    return [{"op": "add", "path": "/spec/readinessGates/-", "value": gate}]
