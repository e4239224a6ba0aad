"""Label selectors over views: match labels against one, parse kubectl's text into one.

Pure; no I/O. The budget service matches a PodUnavailableBudget's selector with
``selector_matches`` (``services.budget.status``, ``services.budget.object_webhooks``); the
rollout API's watch parses ``WatchRolloutStatusRequest.label_selector`` with
``parse_selector`` and then filters CloneSets with ``selector_matches(...,
empty_matches_all=True)``. Steering checks a rollout id with ``label_value_problem``.

    selector_matches(selector, labels)    Kubernetes label-selector semantics
    parse_selector("app=web,!canary")     kubectl syntax → LabelSelector, or ValueError
    qualified_name_problem(key)           why a label key is invalid (None when valid)
    label_value_problem(value)            why a label value is invalid (None when valid)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kruise.common.v1 import views_pb2
from services.kit.projection import parse_label_selector

__all__ = [
    "label_value_problem",
    "parse_selector",
    "qualified_name_problem",
    "selector_matches",
]

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_RULE = (
    "must be 63 characters or less, begin and end with an alphanumeric character, "
    "with only alphanumerics, '-', '_' or '.' between"
)
_SET_OPERATORS = ("In", "NotIn")
_EMPTY_SET = re.compile(r"\(\s*\)$")


def selector_matches(
    selector: views_pb2.LabelSelector,
    labels: Mapping[str, str],
    *,
    empty_matches_all: bool = False,
) -> bool:
    """Whether ``labels`` satisfy ``selector`` (Kubernetes label-selector semantics).

    An empty selector matches nothing by default (OpenKruise's validation forbids it for a
    PodUnavailableBudget; matching everything in the namespace would silently protect
    every pod); with ``empty_matches_all`` it matches everything, as an empty
    ``labelSelector`` does for a list or a watch. A selector with an unknown operator or an
    In/NotIn without values matches nothing (it does not convert).

    >>> sel = views_pb2.LabelSelector(match_labels={"app": "web"})
    >>> selector_matches(sel, {"app": "web", "x": "y"}), selector_matches(sel, {"app": "db"})
    (True, False)
    >>> empty = views_pb2.LabelSelector()
    >>> selector_matches(empty, {}), selector_matches(empty, {}, empty_matches_all=True)
    (False, True)
    """
    if not selector.match_labels and not selector.match_expressions:
        return empty_matches_all
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    return all(_requirement_holds(req, labels) for req in selector.match_expressions)


def _requirement_holds(req: views_pb2.LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = req.key in labels
    if req.operator in _SET_OPERATORS:
        inside = present and labels[req.key] in req.values
        return bool(req.values) and inside == (req.operator == "In")
    if req.operator == "Exists":
        return present and not req.values
    if req.operator == "DoesNotExist":
        return not present and not req.values
    return False


def parse_selector(text: str) -> views_pb2.LabelSelector:
    """kubectl's selector syntax → LabelSelector; ``ValueError`` naming the bad term.

    ``""`` (or only blanks) is the empty selector: match it with ``empty_matches_all``.
    The terms are ``projection.parse_label_selector``'s: ``k=v``/``k==v`` (matchLabels),
    ``k!=v`` (NotIn), ``k in (a,b)``, ``k notin (a,b)``, ``k`` (Exists), ``!k``
    (DoesNotExist), joined by commas. Every key must be a qualified name and every value
    a label value, as the API server requires. Worked examples::

        "app=web,tier in (a,b),!canary" → {app: web}, [tier In (a,b), canary DoesNotExist]
        "app=web,,tier=db"              → ValueError: term 2 is empty
        "replicas>1"                    → ValueError: term 1 "replicas>1": '<' and '>' ...
        "tier in (a,b"                  → ValueError: unbalanced parentheses
        "tier in ()"                    → ValueError: term 1 "tier in ()": 'in' needs ...
        "app=we b"                      → ValueError: term 1 "app=we b": ...
        "a/b/c=x"                       → ValueError: key "a/b/c": ...

    Every message starts ``label selector "<text>": ``.

    >>> dict(parse_selector("app=web,!canary").match_labels)
    {'app': 'web'}
    """
    if not text.strip():
        return views_pb2.LabelSelector()
    problem = _syntax_problem(text)
    parsed = parse_label_selector(text) if problem is None else None
    if parsed is None:
        raise ValueError(f"label selector {text!r}: {problem or 'not a label selector'}")
    problem = _content_problem(parsed)
    if problem:
        raise ValueError(f"label selector {text!r}: {problem}")
    return parsed


def _syntax_problem(text: str) -> str | None:
    """The first term ``projection.parse_label_selector`` refuses, and why; None if none."""
    terms = _split_terms(text)
    if terms is None:
        return "unbalanced parentheses"
    for number, term in enumerate(terms, start=1):
        if not term:
            return f"term {number} is empty"
        if parse_label_selector(term) is None:
            return f"term {number} {term!r}: {_term_problem(term)}"
        if _EMPTY_SET.search(term):
            return f"term {number} {term!r}: 'in' and 'notin' need at least one value"
    return None


def _split_terms(text: str) -> list[str] | None:
    """Commas outside parentheses split; None when the parentheses do not balance."""
    terms: list[str] = []
    depth = start = 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            terms.append(text[start:index].strip())
            start = index + 1
    if depth != 0:
        return None
    terms.append(text[start:].strip())
    return terms


def _term_problem(term: str) -> str:
    if any(c in term for c in "<>"):
        return "'<' and '>' have no LabelSelector form (use =, ==, !=, in, notin, k or !k)"
    if "(" in term:
        return "expected 'key in (v1,v2)' or 'key notin (v1,v2)' with label values"
    if "=" in term:
        return "expected 'key=value', 'key==value' or 'key!=value' with a label key and value"
    return "expected a label key, '!key', or a comparison"


def _content_problem(selector: views_pb2.LabelSelector) -> str | None:
    """The first invalid key or value of a parsed selector."""
    pairs = [(key, [value]) for key, value in selector.match_labels.items()]
    pairs.extend((req.key, list(req.values)) for req in selector.match_expressions)
    for key, values in pairs:
        if problem := qualified_name_problem(key):
            return f"key {key!r}: {problem}"
        for value in values:
            if problem := label_value_problem(value):
                return f"value {value!r} of key {key!r}: {problem}"
    return None


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a qualified name (``[prefix/]name``); None when it is.

    >>> qualified_name_problem("rollouts.kruise.io/rollout-id") is None
    True
    >>> qualified_name_problem("a/b/c")
    "a qualified name has at most one '/'"
    """
    prefix, slash, name = key.rpartition("/")
    if "/" in prefix:
        return "a qualified name has at most one '/'"
    if slash and not (len(prefix) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "the prefix must be a lowercase DNS subdomain of at most 253 characters"
    if len(name) > 63 or not _NAME.fullmatch(name):
        return f"the name part {_NAME_RULE}"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a label value (empty, or a name); None when it is.

    >>> label_value_problem("web-2"), label_value_problem("")
    (None, None)
    >>> label_value_problem("we b") is None
    False
    """
    if value == "" or (len(value) <= 63 and _NAME.fullmatch(value)):
        return None
    return _NAME_RULE
