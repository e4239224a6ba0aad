"""Validation of a PersistentPodState on CREATE and UPDATE (SPEC 1.3).

Pure; no I/O. ``validate_persistent_pod_state`` reads the object as submitted (the raw JSON
dict of the AdmissionReview), the stored object on UPDATE and the other PersistentPodStates
of the namespace, and returns Kubernetes-style field errors; an empty list admits.
``services.placement.webhooks`` turns a non-empty list into a 422 denial with
``services.kit.admission.invalid(denial_message(errors))``.

The rules, in the order their errors are listed (OpenKruise v1.2
``pkg/webhook/persistentpodstate/validating``):

1. ``spec.targetRef``: apiVersion, kind or name empty → "empty TargetReference is not valid";
   a non-empty apiVersion that ``schema.ParseGroupVersion`` rejects (more than one ``/``) →
   an error on ``spec.targetRef.apiVersion``; kind not ``StatefulSet`` and (group, kind) not
   in ``statefulset_like`` → "TargetReference.Kind must be StatefulSet" (the message lists the
   accepted StatefulSet-like kinds when there are any). An all-empty targetRef therefore gets
   two errors, as in OpenKruise.
2. ``requiredPersistentTopology`` absent AND ``preferredPersistentTopology`` empty → one error
   on ``spec``.
3. On UPDATE, a targetRef that differs from the stored one in any of its three fields
   (the version included) → "targetRef cannot be modified".
4. The first other PersistentPodState whose target has the same group (version ignored), kind
   and name → one error naming it; no further conflict errors.

Weight range and empty topology keys are not validated (v1.2 does not, nor does any later
OpenKruise). Decisions where OpenKruise's source left room:

* Field paths use the JSON names (``spec.targetRef``); OpenKruise v1.2 printed the Go name
  ``spec.TargetReference`` for the first rules and ``spec.targetReference`` for the conflict.
  The messages keep OpenKruise's text.
* "cannot be modified" is a ``Required value`` error, the type OpenKruise v1.2 uses (current
  OpenKruise master says ``Forbidden: targetRef is immutable``).
* A kind ``StatefulSet`` is accepted in any API group, as in v1.2 (OpenKruise 1.4+ accepts it
  only in ``apps`` and ``apps.kruise.io``).
* A sibling that is being deleted still conflicts: OpenKruise lists every PersistentPodState of
  the namespace and skips none (``SiblingRef.deleting`` is carried for callers, not consulted).
* Siblings are compared in name order so the denial names the same sibling whatever order the
  cache returns; a sibling with the object's own name is skipped; a sibling whose apiVersion
  does not parse never conflicts (reference equality of SPEC 0.2).
* Malformed input never raises: a field of the wrong JSON type gets an ``Invalid value`` error
  saying what it must be, and the rules that need that field are skipped. A missing or null
  ``spec`` is a single ``spec: Required value``; a missing targetRef field reads as ``""``, as
  Go decodes it. A weight must be an integer that fits int32 (Go's decoder rejects anything
  else); its range is not checked.

    >>> errors = validate_persistent_pod_state(
    ...     obj={"metadata": {"name": "web"}, "spec": {"targetRef": {}}}, old=None, siblings=()
    ... )
    >>> print(denial_message(errors[:1]))
    spec.targetRef: Invalid value: {"apiVersion":"","kind":"","name":""}: empty TargetReference \
is not valid
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.kit.fielderrors import (
    INVALID,
    REQUIRED,
    FieldError,
    TargetRef,
    denial_message,
    must_be,
    read_target_ref,
)

__all__ = ["FieldError", "SiblingRef", "denial_message", "validate_persistent_pod_state"]


STATEFULSET = "StatefulSet"
EMPTY_TARGET = "empty TargetReference is not valid"
KIND_NOT_STATEFULSET = "TargetReference.Kind must be StatefulSet"
EMPTY_TOPOLOGY = "TopologyConstraint and TopologyPreference cannot be empty at the same time"
TARGET_MODIFIED = "targetRef cannot be modified"

_INT32 = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class SiblingRef:
    """What validation needs of another PersistentPodState in the same namespace."""

    name: str
    api_version: str
    kind: str
    target_name: str
    deleting: bool = False


def validate_persistent_pod_state(
    *,
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    siblings: Iterable[SiblingRef],
    statefulset_like: Collection[tuple[str, str]] = (),
) -> list[FieldError]:
    """The field errors of ``obj``; empty when it may be admitted.

    ``old`` is the stored object on UPDATE (None on CREATE); ``siblings`` are the OTHER
    PersistentPodStates of ``obj``'s namespace (the caller filters the namespace);
    ``statefulset_like`` are extra (group, Kind) pairs accepted as targets, the whitelist of
    OpenKruise 1.4+. See the module docstring for the rules and their order.
    """
    spec = obj.get("spec")
    if spec is None:
        return [FieldError("spec", REQUIRED, "")]
    if not isinstance(spec, Mapping):
        return [must_be("spec", spec, "an object")]

    errors: list[FieldError] = []
    raw_target = spec.get("targetRef")
    target = read_target_ref({} if raw_target is None else raw_target, errors)
    if target is not None:
        errors.extend(_target_errors(target, statefulset_like))
    has_topology = _read_topology(spec, errors)
    if has_topology is False:
        errors.append(FieldError("spec", INVALID, EMPTY_TOPOLOGY, dict(spec)))
    policy = spec.get("persistentPodStateRetentionPolicy")
    if policy is not None and not isinstance(policy, str):
        errors.append(must_be("spec.persistentPodStateRetentionPolicy", policy, "a string"))
    if target is None:
        return errors

    if old is not None and target != _stored_target(old):
        errors.append(FieldError("spec.targetRef", REQUIRED, TARGET_MODIFIED))
    conflict = _conflicting_sibling(_own_name(obj), target, siblings)
    if conflict is not None:
        errors.append(
            FieldError(
                "spec.targetRef",
                INVALID,
                f"targetReference is in conflict with other PersistentPodState {conflict}",
                target.as_value(),
            )
        )
    return errors


def _group(api_version: str) -> str | None:
    """The API group of ``api_version`` as ``schema.ParseGroupVersion`` reads it; None if invalid.

    >>> [_group(v) for v in ("", "v1", "apps/v1", "/", "a/b/c")]
    ['', '', 'apps', '', None]
    """
    if api_version in ("", "/"):
        return ""
    slashes = api_version.count("/")
    if slashes > 1:
        return None
    return api_version.partition("/")[0] if slashes else ""


STATEFULSET_GROUPS = frozenset({"apps", "apps.kruise.io"})


def _target_errors(
    target: TargetRef, statefulset_like: Collection[tuple[str, str]]
) -> list[FieldError]:
    errors = []
    if not (target.api_version and target.kind and target.name):
        errors.append(FieldError("spec.targetRef", INVALID, EMPTY_TARGET, target.as_value()))
    group = _group(target.api_version)
    if group is None:
        errors.append(
            FieldError(
                "spec.targetRef.apiVersion",
                INVALID,
                f"unexpected GroupVersion string: {target.api_version}",
                target.api_version,
            )
        )
    if (
        target.kind == STATEFULSET
        and target.api_version
        and group is not None
        and group not in STATEFULSET_GROUPS
    ):
        # v1.2 admitted a StatefulSet of any group and then never found it; kruise-mesh
        # (as OpenKruise 1.4) only knows the apps and apps.kruise.io StatefulSets.
        errors.append(
            FieldError(
                "spec.targetRef.apiVersion",
                INVALID,
                "a StatefulSet target must be in API group apps or apps.kruise.io",
                target.api_version,
            )
        )
    accepted = target.kind == STATEFULSET or (
        group is not None and (group, target.kind) in statefulset_like
    )
    if not accepted:
        errors.append(
            FieldError("spec.targetRef", INVALID, _kind_detail(statefulset_like), target.as_value())
        )
    return errors


def _kind_detail(statefulset_like: Collection[tuple[str, str]]) -> str:
    """v1.2's message, followed by the accepted kinds as ``Kind.group`` when there are some."""
    if not statefulset_like:
        return KIND_NOT_STATEFULSET
    kinds = sorted({f"{kind}.{group}" if group else kind for group, kind in statefulset_like})
    return f"{KIND_NOT_STATEFULSET} or a StatefulSet-like kind: {', '.join(kinds)}"


def _read_topology(spec: Mapping[Any, Any], errors: list[FieldError]) -> bool | None:
    """Whether a required or a preferred topology is set; None when either is malformed."""
    required = spec.get("requiredPersistentTopology")
    required_ok = required is None or _read_term(
        required, "spec.requiredPersistentTopology", errors
    )
    preferred = spec.get("preferredPersistentTopology")
    path = "spec.preferredPersistentTopology"
    if preferred is None:
        preferred = []
    if not isinstance(preferred, list):
        errors.append(must_be(path, preferred, "a list"))
        return None
    # A list, not a generator: every item reports its errors, not only the first bad one.
    preferred_ok = all(
        [_read_preferred(item, f"{path}[{i}]", errors) for i, item in enumerate(preferred)]
    )
    if not (required_ok and preferred_ok):
        return None
    return required is not None or bool(preferred)


def _read_preferred(item: object, path: str, errors: list[FieldError]) -> bool:
    """Check one ``{weight, preference}`` item's shape; True if well formed."""
    if not isinstance(item, Mapping):
        errors.append(must_be(path, item, "an object"))
        return False
    ok = True
    weight = item.get("weight")
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int) or weight not in _INT32
    ):
        errors.append(must_be(f"{path}.weight", weight, "a 32-bit integer"))
        ok = False
    preference = item.get("preference")
    if preference is not None and not _read_term(preference, f"{path}.preference", errors):
        ok = False
    return ok


def _read_term(term: object, path: str, errors: list[FieldError]) -> bool:
    """Check a ``{nodeTopologyKeys: [string]}`` term's shape; True if well formed."""
    if not isinstance(term, Mapping):
        errors.append(must_be(path, term, "an object"))
        return False
    keys = term.get("nodeTopologyKeys")
    if keys is None:
        return True
    if not isinstance(keys, list):
        errors.append(must_be(f"{path}.nodeTopologyKeys", keys, "a list of strings"))
        return False
    bad = [
        must_be(f"{path}.nodeTopologyKeys[{i}]", key, "a string")
        for i, key in enumerate(keys)
        if not isinstance(key, str)
    ]
    errors.extend(bad)
    return not bad


def _stored_target(old: Mapping[str, Any]) -> TargetRef | None:
    """The stored targetRef, read leniently: None (never equal) when it is malformed."""
    spec = old.get("spec") if isinstance(old, Mapping) else None
    raw = spec.get("targetRef") if isinstance(spec, Mapping) else None
    return read_target_ref({} if raw is None else raw, [])


def _own_name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else ""


def _conflicting_sibling(
    own_name: str, target: TargetRef, siblings: Iterable[SiblingRef]
) -> str | None:
    """The first sibling, by name, that targets the same group, kind and name."""
    group = _group(target.api_version)
    if group is None:
        return None
    for sibling in sorted(siblings, key=lambda s: s.name):
        if (
            sibling.name != own_name
            and sibling.kind == target.kind
            and sibling.target_name == target.name
            and _group(sibling.api_version) == group
        ):
            return sibling.name
    return None
