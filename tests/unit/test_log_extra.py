"""No log call passes an ``extra`` key that is a LogRecord attribute.

``logging`` raises ``KeyError: "Attempt to overwrite 'name' in LogRecord"`` for such a key,
at the moment the line is logged: a crash that only shows on the path that logs it (the
gateway's first start in a cluster did). This test parses every module and refuses them.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = [REPO / "services", REPO / "sandbox"]

# What logging.Logger.makeRecord refuses: every attribute of a fresh record, plus the two
# the formatter adds.
RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


def _keys(node: ast.expr) -> list[tuple[str, int]]:
    """String keys of a dict literal or a ``dict(k=...)`` call, with their lines."""
    if isinstance(node, ast.Dict):
        return [
            (k.value, k.lineno)
            for k in node.keys
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        ]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return [(kw.arg, kw.value.lineno) for kw in node.keywords if kw.arg is not None]
    return []


def offending(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg != "extra":
                continue
            for key, line in _keys(kw.value):
                if key in RESERVED:
                    found.append(f"{filename}:{line}: extra key {key!r} is a LogRecord attribute")
    return found


def test_the_reserved_names_include_the_usual_suspects() -> None:
    assert {"name", "msg", "args", "module", "filename", "message", "process"} <= RESERVED


def test_the_check_catches_a_reserved_key() -> None:
    bad = 'log.info("x", extra={"kind": k, "name": n})\nlog.info("y", extra=dict(module=m))\n'
    assert offending(bad, "bad.py") == [
        "bad.py:1: extra key 'name' is a LogRecord attribute",
        "bad.py:2: extra key 'module' is a LogRecord attribute",
    ]
    assert offending('log.info("x", extra={"kind": k, "object": n})\n', "ok.py") == []


def test_no_log_call_overwrites_a_log_record_attribute() -> None:
    found = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            found += offending(path.read_text(), str(path.relative_to(REPO)))
    assert not found, "\n".join(found)
