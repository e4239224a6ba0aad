"""IntOrString scaling, exactly as Kubernetes' ``intstr`` package does it (SPEC 0.1).

Pure; no I/O. Budget (PodUnavailableBudget's desiredAvailable) and rollout (CloneSet
maxSurge/maxUnavailable, partition) turn a spec's IntOrString into a count with these.

Two flavours, because OpenKruise v1.2 uses both:

* ``scaled_value`` is ``GetScaledValueFromIntOrPercent`` (strict): an int is returned
  as is, never clamped; a string must end with ``%`` and the rest must be an integer
  (Go's ``strconv.Atoi``: optional sign, ASCII digits, 64-bit range), otherwise
  ``ValueError``. PodUnavailableBudget and CloneSet's partition use it.
* ``lenient_value`` is the deprecated ``GetValueFromIntOrPercent``: every ``%`` is
  removed and any string is a percentage, so ``"99"`` means 99 %. CloneSet's
  maxSurge/maxUnavailable and its validating webhook use it.

A percentage ``p`` of ``total`` is ``ceil(p * total / 100)`` when rounding up and
``floor(p * total / 100)`` otherwise, computed in IEEE doubles as Go does.

Errors carry Go's exact text, so messages and events read as OpenKruise's::

    scaled_value("50", ...)    invalid value for IntOrString: invalid type: string is not
                               a percentage
    scaled_value("5.5%", ...)  invalid value for IntOrString: invalid value "5.5%":
                               strconv.Atoi: parsing "5.5": invalid syntax
    lenient_value("x%", ...)   invalid value for IntOrString: invalid value "x%":
                               strconv.Atoi: parsing "x": invalid syntax
"""

from __future__ import annotations

import json
import math
import re

from kruise.common.v1 import views_pb2

__all__ = ["IntOrStr", "from_view", "lenient_value", "scaled_value"]

IntOrStr = int | str

_ATOI = re.compile(r"[+-]?[0-9]+")
_INT64 = range(-(2**63), 2**63)
_PREFIX = "invalid value for IntOrString: "


def scaled_value(value: IntOrStr, *, total: int, round_up: bool) -> int:
    """The count ``value`` stands for out of ``total``; strict (GetScaledValueFromIntOrPercent).

    Worked examples (``total`` 10)::

        30         → 30   (an int is never clamped, even above total)
        "30%"      → 3
        "25%"      → 3 rounding up, 2 rounding down
        "0%"       → 0;   "100%" → 10;   "150%" → 15 (no clamping either)
        "-10%"     → -1 rounding down (Atoi accepts a sign)
        "30"       → ValueError: not a percentage
        "0.5%"     → ValueError: Atoi refuses a fraction (Kruise >= 1.4 parses floats for
                     CloneSet partition; v1.2 does not)
        " 5%"      → ValueError: no whitespace is trimmed

    >>> scaled_value("30%", total=10, round_up=False), scaled_value("25%", total=10, round_up=True)
    (3, 3)
    >>> scaled_value(100, total=10, round_up=False)
    100
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(_PREFIX + "invalid type: neither int nor percentage")
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(_PREFIX + "invalid type: string is not a percentage")
    percent = _atoi(value[:-1], original=value)
    return _percent_of(percent, total=total, round_up=round_up)


def lenient_value(value: IntOrStr, *, total: int, round_up: bool) -> int:
    """The count ``value`` stands for out of ``total``; lenient (GetValueFromIntOrPercent).

    Every ``%`` is removed and any string is a percentage::

        "99"  → same as "99%";   "%5%" → same as "5%";   "" → ValueError (Atoi of "")

    >>> lenient_value("99", total=200, round_up=True)
    198
    >>> lenient_value(7, total=200, round_up=True)
    7
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(_PREFIX + "invalid type: neither int nor percentage")
    if isinstance(value, int):
        return value
    percent = _atoi(value.replace("%", ""), original=value)
    return _percent_of(percent, total=total, round_up=round_up)


def from_view(view: views_pb2.IntOrString) -> IntOrStr:
    """The value of a view's IntOrString; one with neither member set is Go's zero value, 0.

    >>> from_view(views_pb2.IntOrString(str_value="30%")), from_view(views_pb2.IntOrString())
    ('30%', 0)
    """
    which = view.WhichOneof("value")
    if which == "str_value":
        return view.str_value
    if which == "int_value":
        return view.int_value
    return 0


def _percent_of(percent: int, *, total: int, round_up: bool) -> int:
    scaled = float(percent) * float(total) / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def _atoi(text: str, *, original: str) -> int:
    """Go's ``strconv.Atoi`` with intstr's wrapping of its error."""
    if not _ATOI.fullmatch(text):
        reason = "invalid syntax"
    else:
        number = int(text)
        if number in _INT64:
            return number
        reason = "value out of range"
    raise ValueError(
        f"{_PREFIX}invalid value {_go_quote(original)}: "
        f"strconv.Atoi: parsing {_go_quote(text)}: {reason}"
    )


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text these values hold (JSON string escaping)."""
    return json.dumps(text, ensure_ascii=False)
