"""The budget service's settings from its environment (services/budget/feature.py)."""

from __future__ import annotations

import pytest

from services.budget.feature import LINGER_ENV, linger_ms


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 10.0),
        ({LINGER_ENV: ""}, 10.0),
        ({LINGER_ENV: "0"}, 0.0),
        ({LINGER_ENV: "25"}, 25.0),
        ({LINGER_ENV: "2.5"}, 2.5),
    ],
    ids=[
        "unset: 10 ms",
        "empty (the ConfigMap's default): 10 ms",
        "0: never lingers",
        "25 ms",
        "fractions of a millisecond",
    ],
)
def test_linger_is_read_in_milliseconds(env: dict[str, str], expected: float) -> None:
    assert linger_ms(env) == expected


@pytest.mark.parametrize("raw", ["ten", "-1", "5000", "nan"])
def test_a_linger_that_is_not_milliseconds_from_0_to_1000_is_refused(raw: str) -> None:
    with pytest.raises(
        ValueError, match=f"{LINGER_ENV} must be a number of milliseconds from 0 to 1000"
    ):
        linger_ms({LINGER_ENV: raw})
