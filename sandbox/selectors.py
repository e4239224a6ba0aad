"""Label and field selectors as the API server parses and applies them.

Pure; no I/O. ``parse_label_selector("app=web,tier in (a,b),!canary")`` gives a
``LabelSelector`` whose ``matches(labels)`` is used by list, watch, deletecollection and
PodDisruptionBudget lookups; ``selector_to_string`` renders a ``metav1.LabelSelector``
the way ``/scale`` reports ``status.selector``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sandbox import errors

LabelOp = Literal["=", "!=", "in", "notin", "exists", "!"]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: LabelOp
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        lbl = labels or {}
        return all(r.matches(lbl) for r in self.requirements)


EVERYTHING = LabelSelector(())


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _set_values(text: str, raw: str) -> frozenset[str]:
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise errors.bad_request(f"unable to parse requirement: {raw}")
    return frozenset(v.strip() for v in text[1:-1].split(",") if v.strip())


def _parse_requirement(raw: str) -> Requirement:
    term = raw.strip()
    if term.startswith("!"):
        return Requirement(term[1:].strip(), "!", frozenset())
    for keyword in (" notin ", " in "):
        idx = term.find(keyword)
        if idx > 0:
            op: LabelOp = "notin" if keyword == " notin " else "in"
            return Requirement(term[:idx].strip(), op, _set_values(term[idx + len(keyword) :], raw))
    for symbol, sop in (("!=", "!="), ("==", "="), ("=", "=")):
        idx = term.find(symbol)
        if idx > 0:
            eq_op: LabelOp = "!=" if sop == "!=" else "="
            return Requirement(
                term[:idx].strip(), eq_op, frozenset([term[idx + len(symbol) :].strip()])
            )
    if any(c in term for c in " ()<>"):
        raise errors.bad_request(f"unable to parse requirement: {raw}")
    return Requirement(term, "exists", frozenset())


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query syntax (equality- and set-based)."""
    if not text:
        return EVERYTHING
    return LabelSelector(tuple(_parse_requirement(p) for p in _split_top(text)))


def from_label_selector_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` dict (matchLabels / matchExpressions)."""
    if not sel:
        return EVERYTHING
    reqs: list[Requirement] = []
    for key, value in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "=", frozenset([str(value)])))
    ops: dict[str, LabelOp] = {
        "In": "in",
        "NotIn": "notin",
        "Exists": "exists",
        "DoesNotExist": "!",
    }
    for expr in sel.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise errors.bad_request(f"invalid label selector operator {expr.get('operator')}")
        reqs.append(Requirement(str(expr["key"]), op, frozenset(expr.get("values") or [])))
    return LabelSelector(tuple(reqs))


def selector_to_string(sel: Mapping[str, Any] | None) -> str:
    """Render a ``metav1.LabelSelector`` as the string form, e.g. ``app=web,x in (a,b)``."""
    if not sel:
        return ""
    parts: list[str] = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        op = expr.get("operator")
        vals = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append(f"{expr['key']} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({vals})")
        elif op == "Exists":
            parts.append(str(expr["key"]))
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


# --- field selectors -------------------------------------------------------------------

SUPPORTED_FIELDS = frozenset(
    {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "spec.schedulerName"}
)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...]

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for req in self.requirements:
            actual = field_value(obj, req.field)
            if (actual == req.value) == req.negate:
                return False
        return True


NO_FIELDS = FieldSelector(())


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted field path; missing fields read as ""."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    return str(cur)


def parse_field_selector(text: str | None, *, kind: str = "") -> FieldSelector:
    """Parse ``fieldSelector`` (``=``, ``==``, ``!=`` terms joined by commas)."""
    if not text:
        return NO_FIELDS
    reqs: list[FieldRequirement] = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        negate = "!=" in term
        sep = "!=" if negate else ("==" if "==" in term else "=")
        key, _, value = term.partition(sep)
        key = key.strip()
        if not _:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if key not in SUPPORTED_FIELDS or (
            key.startswith(("spec.", "status.")) and kind not in ("Pod", "")
        ):
            raise errors.bad_request(
                f"field label not supported: {key}"
                if kind == ""
                else f'"{key}" is not a known field selector: only "metadata.name", '
                f'"metadata.namespace"'
            )
        reqs.append(FieldRequirement(key, value.strip(), negate))
    return FieldSelector(tuple(reqs))
