"""Validation of a PodUnavailableBudget on CREATE and UPDATE (SPEC 4.8).

Pure; no I/O. ``validate_pod_unavailable_budget`` reads the object as submitted (the raw
JSON dict of the AdmissionReview), the stored object on UPDATE and the other budgets of
the namespace (views from the replica cache), and returns Kubernetes-style field errors;
an empty list admits. The budget service's ``validate-podunavailablebudgets`` webhook
turns a non-empty list into a denial with ``denial_message(errors)``: OpenKruise answers
400 (``admission.Errored``), ``services.kit.admission.bad_request``; kruise-mesh's other
object webhooks answer 422 (``invalid``), and either refuses the object.

The rules, in the order their errors are listed (OpenKruise
``pkg/webhook/podunavailablebudget/validating/pub_create_update_handler.go``):

1. ``kruise.io/pub-protect-operations``, when present, is split on ``,``; each item that
   is not exactly ``UPDATE``, ``DELETE`` or ``EVICT`` (v1.4's, accepted) gives one
   ``metadata: Internal error: annotation[kruise.io/pub-protect-operations] is invalid``
   (an empty value is one bad item; identical messages print once).
2. Selector and targetRef: neither → "no selector or targetRef defined in
   PodUnavailableBudget"; both → "selector and targetRef are mutually exclusive"; a
   targetRef with an empty field → "empty TargetReference is not valid for
   PodUnavailableBudget."; an apiVersion with more than one ``/`` → "unexpected
   GroupVersion string: ..."; a selector is checked as Kubernetes'
   ``ValidateLabelSelector`` does (operators, values, label keys and values) and must
   not be empty ("empty selector is not valid for PodUnavailableBudget.").
3. maxUnavailable and minAvailable: neither → "no maxUnavailable or minAvailable defined
   in PodUnavailableBudget"; both → "maxUnavailable and minAvailable are mutually
   exclusive"; the one set must be an integer >= 0 ("must be greater than or equal to 0")
   or match ``[0-9]+%`` (Kubernetes' percent message), and a percent must not exceed
   100 % ("must not be greater than 100%").
4. On UPDATE, a selector or targetRef different from the stored one → "selector and
   targetRef cannot be modified".
5. The first other budget of the namespace (by name) that conflicts → one error naming
   it: both have a targetRef with the same API group (version ignored), kind and name; or
   both have a selector and the selectors loosely overlap (same keys, each pair of
   requirements can match a common value: ``app=a`` vs ``app=a`` overlap, ``app=a`` vs
   ``app=b`` or ``app=a`` vs ``app=a,tier=x`` do not). A selector budget and a targetRef
   budget never conflict.

The targetRef's kind is not checked: any kind with a ``/scale`` subresource is a valid
target (v1.2, #982). A kind the cluster does not know is found out at run time: the
status loop sees no workload (totalReplicas 0) and the pod webhook's owner resolution
fails (HTTP 400), as in OpenKruise.

Decisions where OpenKruise's source left room (as ``services.placement.validation``):

* Field paths use the JSON names: ``spec.targetRef`` where OpenKruise printed
  ``spec.TargetReference`` (and ``spec.targetReference`` for a conflict); the combined
  paths ``spec.selector, targetRef`` and ``spec.maxUnavailable, minAvailable`` and every
  message keep OpenKruise's text.
* Values print as compact JSON (``"101%"``, ``{"matchLabels":{"app":"a"}}``), not Go's
  ``%#v`` of the struct.
* Selectors are compared on UPDATE after reading absent and empty ``matchLabels`` /
  ``matchExpressions`` alike (Go's ``reflect.DeepEqual`` tells them apart).
* A matchExpressions value that is not a valid label value is named with its reason
  (OpenKruise added an ``Invalid value`` with no detail when the selector did not convert).
* Malformed input never raises: a field of the wrong JSON type gets an ``Invalid value``
  error saying what it must be, and the rules that need it are skipped; a missing or
  null ``spec`` is a single ``spec: Required value``.
* OpenKruise 1.4's ``pub.kruise.io/protect-total-replicas`` is not known (not v1.2).

    >>> errors = validate_pod_unavailable_budget(
    ...     obj={"metadata": {"name": "pub"}, "spec": {"maxUnavailable": "101%"}},
    ...     old=None,
    ...     siblings=(),
    ... )
    >>> print(denial_message(errors))
    [spec.selector, targetRef: Required value: no selector or targetRef defined in \
PodUnavailableBudget, spec.maxUnavailable: Invalid value: "101%": must not be greater than 100%]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kruise.common.v1 import views_pb2
from services.budget.decision import PROTECT_OPERATIONS
from services.kit.fielderrors import (
    FORBIDDEN,
    INTERNAL,
    INVALID,
    REQUIRED,
    FieldError,
    TargetRef,
    denial_message,
    must_be,
    read_target_ref,
)

__all__ = ["FieldError", "denial_message", "validate_pod_unavailable_budget"]


PROTECTABLE = frozenset({"UPDATE", "DELETE", "EVICT"})
SELECTOR_OR_TARGET = "spec.selector, targetRef"
MAX_OR_MIN = "spec.maxUnavailable, minAvailable"

NO_SELECTOR_OR_TARGET = "no selector or targetRef defined in PodUnavailableBudget"
SELECTOR_AND_TARGET = "selector and targetRef are mutually exclusive"
EMPTY_TARGET = "empty TargetReference is not valid for PodUnavailableBudget."
EMPTY_SELECTOR = "empty selector is not valid for PodUnavailableBudget."
NO_MAX_OR_MIN = "no maxUnavailable or minAvailable defined in PodUnavailableBudget"
MAX_AND_MIN = "maxUnavailable and minAvailable are mutually exclusive"
NEGATIVE = "must be greater than or equal to 0"
OVER_100 = "must not be greater than 100%"
NOT_INT_OR_PERCENT = "must be an integer or percentage (e.g '5%')"
IMMUTABLE = "selector and targetRef cannot be modified"

_PERCENT = re.compile(r"[0-9]+%")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_INT32 = range(-(2**31), 2**31)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``validation.RegexError``, its double spaces included."""
    shown = "".join(("" if i == 0 else " or ") + f"'{e}', " for i, e in enumerate(examples))
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


PERCENT_MSG = _regex_error(
    "a valid percent string must be a numeric string followed by an ending '%'",
    "[0-9]+%",
    "1%",
    "93%",
)
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character",
    f"({_QNAME_FMT})?",
    "MyValue",
    "my_value",
    "12345",
)
_DNS1123_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character",
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
    "example.com",
)


def validate_pod_unavailable_budget(
    *,
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    siblings: Iterable[views_pb2.PodUnavailableBudgetView],
) -> list[FieldError]:
    """The field errors of ``obj``; empty when it may be admitted.

    ``old`` is the stored object on UPDATE (None on CREATE); ``siblings`` are the budgets
    of ``obj``'s namespace (one with ``obj``'s own name is skipped, and so is one from
    another namespace when both name theirs). See the module docstring for the rules and
    their order.
    """
    errors = _annotation_errors(obj)
    spec = obj.get("spec")
    if spec is None:
        return [*errors, FieldError("spec", REQUIRED, "")]
    if not isinstance(spec, Mapping):
        return [*errors, must_be("spec", spec, "an object")]

    selector = _read_selector(spec.get("selector"), errors)
    raw_target = spec.get("targetRef")
    target = None if raw_target is None else read_target_ref(raw_target, errors)
    has_selector = spec.get("selector") is not None
    has_target = spec.get("targetRef") is not None
    if not has_selector and not has_target:
        errors.append(FieldError(SELECTOR_OR_TARGET, REQUIRED, NO_SELECTOR_OR_TARGET))
    elif has_selector and has_target:
        errors.append(FieldError(SELECTOR_OR_TARGET, REQUIRED, SELECTOR_AND_TARGET))
    elif target is not None:
        errors.extend(_target_errors(target))
    elif selector is not None:
        errors.extend(_selector_errors(selector))

    errors.extend(_budget_number_errors(spec))

    if old is not None and _selection_of(spec) != _selection_of(_spec_of(old)):
        errors.append(FieldError(SELECTOR_OR_TARGET, REQUIRED, IMMUTABLE))

    conflict = _conflict(
        _own_meta(obj, "name"),
        _own_meta(obj, "namespace"),
        target=target,
        selector=selector,
        siblings=siblings,
    )
    if conflict is not None:
        errors.append(conflict)
    return errors


# --- 1. annotations ------------------------------------------------------------------------


def _annotation_errors(obj: Mapping[str, Any]) -> list[FieldError]:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping) or PROTECT_OPERATIONS not in annotations:
        return []
    value = annotations[PROTECT_OPERATIONS]
    items = value.split(",") if isinstance(value, str) else [value]
    detail = f"annotation[{PROTECT_OPERATIONS}] is invalid"
    return [FieldError("metadata", INTERNAL, detail) for item in items if item not in PROTECTABLE]


# --- 2. selector and targetRef -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Selector:
    match_labels: tuple[tuple[str, str], ...]
    match_expressions: tuple[_Requirement, ...]
    raw: Mapping[str, Any]

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


def _read_selector(raw: object, errors: list[FieldError]) -> _Selector | None:
    """``spec.selector`` as typed parts; None if absent or malformed (errors added)."""
    if raw is None:
        return None
    path = "spec.selector"
    if not isinstance(raw, Mapping):
        errors.append(must_be(path, raw, "an object"))
        return None
    ok = True
    labels_raw = raw.get("matchLabels") or {}
    labels: list[tuple[str, str]] = []
    if not isinstance(labels_raw, Mapping):
        errors.append(must_be(f"{path}.matchLabels", labels_raw, "an object of strings"))
        ok = False
    else:
        for key, value in labels_raw.items():
            if not isinstance(value, str):
                errors.append(must_be(f"{path}.matchLabels", value, "a string"))
                ok = False
            else:
                labels.append((str(key), value))
    exprs_raw = raw.get("matchExpressions") or []
    exprs: list[_Requirement] = []
    if not isinstance(exprs_raw, list):
        errors.append(must_be(f"{path}.matchExpressions", exprs_raw, "a list"))
        ok = False
    else:
        for i, item in enumerate(exprs_raw):
            requirement = _read_requirement(item, f"{path}.matchExpressions[{i}]", errors)
            if requirement is None:
                ok = False
            else:
                exprs.append(requirement)
    return _Selector(tuple(labels), tuple(exprs), raw) if ok else None


def _read_requirement(item: object, path: str, errors: list[FieldError]) -> _Requirement | None:
    if not isinstance(item, Mapping):
        errors.append(must_be(path, item, "an object"))
        return None
    key, operator = item.get("key", ""), item.get("operator", "")
    values = item.get("values") or []
    if not isinstance(key, str) or not isinstance(operator, str):
        errors.append(must_be(path, item, "an object with string key and operator"))
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        errors.append(must_be(f"{path}.values", values, "a list of strings"))
        return None
    return _Requirement(key, operator, tuple(values))


def _api_group(api_version: str) -> str | None:
    """The API group of ``api_version`` as ``schema.ParseGroupVersion`` reads it; None if invalid.

    >>> [_api_group(v) for v in ("", "v1", "apps/v1", "a/b/c")]
    ['', '', 'apps', None]
    """
    slashes = api_version.count("/")
    if slashes > 1:
        return None
    return api_version.partition("/")[0] if slashes else ""


def _target_errors(target: TargetRef) -> list[FieldError]:
    errors = []
    if not (target.api_version and target.kind and target.name):
        errors.append(FieldError("spec.targetRef", INVALID, EMPTY_TARGET, target.as_value()))
    if _api_group(target.api_version) is None:
        detail = f"unexpected GroupVersion string: {target.api_version}"
        errors.append(FieldError("spec.targetRef", INVALID, detail, target.as_value()))
    return errors


def _selector_errors(selector: _Selector) -> list[FieldError]:
    """Kubernetes' ``ValidateLabelSelector``, the emptiness rule, then what does not convert."""
    path = "spec.selector"
    errors: list[FieldError] = []
    for key, value in selector.match_labels:
        errors.extend(_label_key_errors(key, f"{path}.matchLabels"))
        errors.extend(
            FieldError(f"{path}.matchLabels", INVALID, msg, value)
            for msg in _label_value_messages(value)
        )
    for i, req in enumerate(selector.match_expressions):
        at = f"{path}.matchExpressions[{i}]"
        if req.operator in ("In", "NotIn"):
            if not req.values:
                errors.append(
                    FieldError(
                        f"{at}.values",
                        REQUIRED,
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    )
                )
        elif req.operator in ("Exists", "DoesNotExist"):
            if req.values:
                errors.append(
                    FieldError(
                        f"{at}.values",
                        FORBIDDEN,
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errors.append(
                FieldError(f"{at}.operator", INVALID, "not a valid selector operator", req.operator)
            )
        errors.extend(_label_key_errors(req.key, f"{at}.key"))
    if selector.empty:
        errors.append(FieldError(path, INVALID, EMPTY_SELECTOR, selector.raw))
    for i, req in enumerate(selector.match_expressions):
        if req.operator not in ("In", "NotIn"):
            continue
        for j, value in enumerate(req.values):
            errors.extend(
                FieldError(f"{path}.matchExpressions[{i}].values[{j}]", INVALID, msg, value)
                for msg in _label_value_messages(value)
            )
    return errors


def _label_key_errors(key: str, path: str) -> list[FieldError]:
    """Kubernetes' ``IsQualifiedName`` messages for a label key."""
    messages: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        messages.append(
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        )
    else:
        name = parts[-1]
        if len(parts) == 2:
            prefix = parts[0]
            if not prefix:
                messages.append("prefix part must be non-empty")
            else:
                if len(prefix) > 253:
                    messages.append("prefix part must be no more than 253 characters")
                if not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                    messages.append(f"prefix part {_DNS1123_MSG}")
        if not name:
            messages.append("name part must be non-empty")
        elif len(name) > 63:
            messages.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME.fullmatch(name):
            messages.append(
                "name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            )
    return [FieldError(path, INVALID, msg, key) for msg in messages]


def _label_value_messages(value: str) -> list[str]:
    messages = []
    if len(value) > 63:
        messages.append("must be no more than 63 characters")
    if value and not _QUALIFIED_NAME.fullmatch(value):
        messages.append(_LABEL_VALUE_MSG)
    return messages


# --- 3. maxUnavailable / minAvailable ------------------------------------------------------


def _budget_number_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    max_unavailable = spec.get("maxUnavailable")
    min_available = spec.get("minAvailable")
    if max_unavailable is None and min_available is None:
        return [FieldError(MAX_OR_MIN, REQUIRED, NO_MAX_OR_MIN)]
    if max_unavailable is not None and min_available is not None:
        return [FieldError(MAX_OR_MIN, REQUIRED, MAX_AND_MIN)]
    if max_unavailable is not None:
        return _int_or_percent_errors(max_unavailable, "spec.maxUnavailable")
    return _int_or_percent_errors(min_available, "spec.minAvailable")


def _int_or_percent_errors(value: object, path: str) -> list[FieldError]:
    """``ValidatePositiveIntOrPercent`` then ``IsNotMoreThan100Percent`` (k8s apps validation)."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [FieldError(path, INVALID, PERCENT_MSG, value)]
        if int(value[:-1]) > 100:
            return [FieldError(path, INVALID, OVER_100, value)]
        return []
    if isinstance(value, int) and not isinstance(value, bool) and value in _INT32:
        return [FieldError(path, INVALID, NEGATIVE, value)] if value < 0 else []
    return [FieldError(path, INVALID, NOT_INT_OR_PERCENT, value)]


# --- 4. immutability -----------------------------------------------------------------------


def _spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _selection_of(spec: Mapping[str, Any]) -> tuple[object, object]:
    """selector and targetRef, compared after reading absent and empty parts alike."""
    selector = spec.get("selector")
    if isinstance(selector, Mapping):
        selector = {
            "matchLabels": dict(selector.get("matchLabels") or {}),
            "matchExpressions": list(selector.get("matchExpressions") or []),
        }
    target = spec.get("targetRef")
    if isinstance(target, Mapping):
        target = {k: target.get(k) or "" for k in ("apiVersion", "kind", "name")}
    return selector, target


# --- 5. conflicts --------------------------------------------------------------------------


def _conflict(
    own_name: str,
    own_namespace: str,
    *,
    target: TargetRef | None,
    selector: _Selector | None,
    siblings: Iterable[views_pb2.PodUnavailableBudgetView],
) -> FieldError | None:
    """The error for the first conflicting sibling by name, or None."""
    for other in sorted(siblings, key=lambda s: s.meta.name):
        if other.meta.name == own_name:
            continue
        if own_namespace and other.meta.namespace and other.meta.namespace != own_namespace:
            continue
        if target is not None and other.HasField("target_ref"):
            group = _api_group(target.api_version)
            if (
                group is not None
                and group == _api_group(other.target_ref.api_version)
                and target.kind == other.target_ref.kind
                and target.name == other.target_ref.name
            ):
                detail = (
                    "pub.spec.targetReference is in conflict with other "
                    f"PodUnavailableBudget {other.meta.name}"
                )
                return FieldError("spec.targetRef", INVALID, detail, target.as_value())
        elif (
            selector is not None
            and other.HasField("selector")
            and _loosely_overlap(_requirements(selector), _view_requirements(other.selector))
        ):
            detail = (
                "pub.spec.selector is in conflict with other "
                f"PodUnavailableBudget {other.meta.name}"
            )
            return FieldError("spec.selector", INVALID, detail, selector.raw)
    return None


def _requirements(selector: _Selector) -> dict[str, _Requirement]:
    """OpenKruise's ``convertSelectorToMatchExpressions``: matchLabels win over an expression."""
    out = {req.key: req for req in selector.match_expressions}
    out.update({k: _Requirement(k, "In", (v,)) for k, v in selector.match_labels})
    return out


def _view_requirements(selector: views_pb2.LabelSelector) -> dict[str, _Requirement]:
    out = {
        req.key: _Requirement(req.key, req.operator, tuple(req.values))
        for req in selector.match_expressions
    }
    out.update({k: _Requirement(k, "In", (v,)) for k, v in selector.match_labels.items()})
    return out


def _loosely_overlap(first: Mapping[str, _Requirement], second: Mapping[str, _Requirement]) -> bool:
    """OpenKruise's ``IsSelectorLooseOverlap``: the same keys, each pair overlapping."""
    if first.keys() != second.keys():
        return False
    return all(
        _requirements_overlap(first[k], second[k]) and _requirements_overlap(second[k], first[k])
        for k in first
    )


def _requirements_overlap(a: _Requirement, b: _Requirement) -> bool:
    """OpenKruise's ``isMatchExpOverlap``: can one label value satisfy ``a`` as ``b`` sees it."""
    a_values, b_values = set(a.values), set(b.values)
    if a.operator == "In":
        return (
            b.operator == "Exists"
            or (b.operator == "In" and bool(a_values & b_values))
            or (b.operator == "NotIn" and not a_values <= b_values)
        )
    if a.operator == "Exists":
        return b.operator in ("In", "NotIn", "Exists")
    if a.operator == "NotIn":
        return b.operator in ("Exists", "DoesNotExist", "NotIn") or (
            b.operator == "In" and not b_values <= a_values
        )
    if a.operator == "DoesNotExist":
        return b.operator in ("DoesNotExist", "NotIn")
    return False


# --- helpers -------------------------------------------------------------------------------


def _own_meta(obj: Mapping[str, Any], key: str) -> str:
    metadata = obj.get("metadata")
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) else ""
