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
