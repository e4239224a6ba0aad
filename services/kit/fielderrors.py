"""Kubernetes field errors: what an object validation webhook returns, worded as the API
server words them (``k8s.io/apimachinery/pkg/util/validation/field``).

    errors = [FieldError("spec.targetRef", INVALID, "must be an object", value)]
    admission.invalid(denial_message(errors))   # one error as is, several as "[e1, e2]"

Pure; no I/O. Used by ``services.placement.validation`` and ``services.budget.validation``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

INVALID = "Invalid value"
REQUIRED = "Required value"
FORBIDDEN = "Forbidden"
INTERNAL = "Internal error"

# field.Error types whose rendering omits the value (k8s.io/apimachinery ErrorBody).
_VALUELESS = frozenset({REQUIRED, FORBIDDEN, "Too long", INTERNAL})


@dataclass(frozen=True, slots=True)
class FieldError:
    """One error about one field, rendered as Kubernetes ``field.Error`` renders itself.

    ``type`` is a field.ErrorType string ("Invalid value", "Required value", "Forbidden",
    "Duplicate value", ...). ``value`` is shown, as JSON, for the types that carry a value
    (all but Required, Forbidden, Too long and Internal error); None shows as ``null``.

    >>> str(FieldError("spec.targetRef", INVALID, "must be an object", "web"))
    'spec.targetRef: Invalid value: "web": must be an object'
    >>> str(FieldError("spec", REQUIRED, ""))
    'spec: Required value'
    """

    path: str
    type: str
    detail: str
    value: object = None

    def __str__(self) -> str:
        body = self.type if self.type in _VALUELESS else f"{self.type}: {render(self.value)}"
        return f"{self.path}: {body}: {self.detail}" if self.detail else f"{self.path}: {body}"


def denial_message(errors: Sequence[FieldError]) -> str:
    """The errors as Kubernetes' ``utilerrors.Aggregate`` prints them.

    No errors → ``""``; one → as is; several → ``"[e1, e2]"``, repeated messages once.
    """
    messages = list(dict.fromkeys(str(error) for error in errors))
    if len(messages) == 1:
        return messages[0]
    return f"[{', '.join(messages)}]" if messages else ""


def must_be(path: str, value: object, what: str) -> FieldError:
    """The error for a field of the wrong shape: ``<path>: Invalid value: <v>: must be <what>``."""
    return FieldError(path, INVALID, f"must be {what}", value)


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A ``spec.targetRef`` as three strings (a missing field reads as ``""``, as Go decodes)."""

    api_version: str
    kind: str
    name: str

    def as_value(self) -> dict[str, str]:
        """The value OpenKruise prints: its TargetReference struct as JSON."""
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}


def read_target_ref(raw: object, errors: list[FieldError]) -> TargetRef | None:
    """``spec.targetRef`` read from raw JSON; a malformed one adds its errors and gives None."""
    if not isinstance(raw, Mapping):
        errors.append(must_be("spec.targetRef", raw, "an object"))
        return None
    values: list[str] = []
    for key in ("apiVersion", "kind", "name"):
        value = raw.get(key)
        if value is None:
            value = ""
        elif not isinstance(value, str):
            errors.append(must_be(f"spec.targetRef.{key}", value, "a string"))
            continue
        values.append(value)
    return TargetRef(*values) if len(values) == 3 else None


def render(value: object) -> str:
    """A bad value as field.Error prints it: JSON (strings quoted, None as ``null``)."""
    try:
        return json.dumps(
            value,
            ensure_ascii=False,
            separators=(",", ":"),
            default=lambda o: dict(o) if isinstance(o, Mapping) else repr(o),
        )
    except (TypeError, ValueError, RecursionError):
        return repr(value)
