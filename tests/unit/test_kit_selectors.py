"""Label selectors (services.kit.selectors): kubectl syntax in, matching out.

The rollout API's watch parses ``label_selector`` with ``parse_selector`` and matches
CloneSets with ``selector_matches(..., empty_matches_all=True)``; the budget matches with
the default (an empty selector matches nothing). The budget's own rows stay in
``test_budget_status.py``.
"""

from __future__ import annotations

import pytest

from kruise.common.v1 import views_pb2
from services.budget import status as budget_status
from services.kit.selectors import (
    label_value_problem,
    parse_selector,
    qualified_name_problem,
    selector_matches,
)

WEB = {"app": "web", "tier": "a"}
CANARY = {"app": "web", "tier": "b", "canary": "true"}
DB = {"app": "db"}


def test_budget_imports_the_same_function() -> None:
    assert budget_status.selector_matches is selector_matches


@pytest.mark.parametrize(
    ("text", "matching"),
    [
        pytest.param("", ["web", "canary", "db"], id="empty selects every CloneSet (watch)"),
        pytest.param("   ", ["web", "canary", "db"], id="blanks are empty"),
        pytest.param("app=web", ["web", "canary"], id="equality"),
        pytest.param("app==web", ["web", "canary"], id="double equals"),
        pytest.param("app!=web", ["db"], id="inequality"),
        pytest.param("tier in (a,b)", ["web", "canary"], id="in"),
        pytest.param("tier notin (a)", ["canary", "db"], id="notin matches a missing key"),
        pytest.param("canary", ["canary"], id="exists"),
        pytest.param("!canary", ["web", "db"], id="does not exist"),
        pytest.param("app=web,tier in (a,b),!canary", ["web"], id="the proto's example"),
        pytest.param("app=web,app=db", [], id="a key twice must hold twice"),
        pytest.param("tier!=", ["web", "canary", "db"], id="!= empty value is valid"),
    ],
)
def test_parse_then_match(text: str, matching: list[str]) -> None:
    selector = parse_selector(text)
    objects = {"web": WEB, "canary": CANARY, "db": DB}
    found = [
        name
        for name, labels in objects.items()
        if selector_matches(selector, labels, empty_matches_all=True)
    ]
    assert found == matching


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("app=web,,tier=db", "term 2 is empty", id="empty term"),
        pytest.param("app=web,", "term 2 is empty", id="trailing comma"),
        pytest.param("replicas>1", "'<' and '>' have no LabelSelector form", id="greater than"),
        pytest.param("tier in (a,b", "unbalanced parentheses", id="open parenthesis"),
        pytest.param("tier in a,b)", "unbalanced parentheses", id="close parenthesis"),
        pytest.param("tier in (a,(b))", "expected 'key in (v1,v2)'", id="nested parentheses"),
        pytest.param("tier in ()", "need at least one value", id="empty set"),
        pytest.param("app=we b", "expected 'key=value'", id="space inside a value"),
        pytest.param("a/b/c=x", "key 'a/b/c': a qualified name has at most one '/'", id="slashes"),
        pytest.param("Foo.io/app=x", "key 'Foo.io/app': the prefix", id="uppercase prefix"),
        pytest.param(f"app={'v' * 64}", "value 'vvvv", id="value over 63 characters"),
        pytest.param("-app", "expected a label key", id="key starting with a dash"),
    ],
)
def test_parse_refuses_with_a_precise_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_selector(text)
    assert str(caught.value).startswith(f"label selector {text!r}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("labels", "empty_matches_all", "expected"),
    [
        pytest.param({}, False, False, id="empty selector matches nothing (budget)"),
        pytest.param({"x": "y"}, False, False, id="empty selector, labelled object (budget)"),
        pytest.param({}, True, True, id="empty selector matches all (watch)"),
    ],
)
def test_empty_selector(labels: dict[str, str], empty_matches_all: bool, expected: bool) -> None:
    empty = views_pb2.LabelSelector()
    assert selector_matches(empty, labels, empty_matches_all=empty_matches_all) is expected


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        pytest.param("app", True, id="name"),
        pytest.param("rollouts.kruise.io/rollout-id", True, id="prefixed"),
        pytest.param("a" * 63, True, id="63 characters"),
        pytest.param("a" * 64, False, id="64 characters"),
        pytest.param("/app", False, id="empty prefix"),
        pytest.param("app/", False, id="empty name"),
        pytest.param("a_b.c-d", True, id="inner punctuation"),
        pytest.param("_a", False, id="leading underscore"),
    ],
)
def test_qualified_name_problem(key: str, valid: bool) -> None:
    assert (qualified_name_problem(key) is None) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("r-1", True, id="rollout id"),
        pytest.param("v" * 63, True, id="63 characters"),
        pytest.param("v" * 64, False, id="64 characters"),
        pytest.param("a/b", False, id="slash"),
        pytest.param("r-", False, id="trailing dash"),
    ],
)
def test_label_value_problem(value: str, valid: bool) -> None:
    assert (label_value_problem(value) is None) is valid
