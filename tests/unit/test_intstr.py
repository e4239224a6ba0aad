"""IntOrString scaling (services.kit.intstr, SPEC 0.1): strict and lenient, with Go's messages."""

from __future__ import annotations

import pytest

from kruise.common.v1 import views_pb2
from services.kit.intstr import from_view, lenient_value, scaled_value

NOT_PERCENT = "invalid value for IntOrString: invalid type: string is not a percentage"
NEITHER = "invalid value for IntOrString: invalid type: neither int nor percentage"


def syntax(original: str, parsed: str) -> str:
    return (
        f'invalid value for IntOrString: invalid value "{original}": '
        f'strconv.Atoi: parsing "{parsed}": invalid syntax'
    )


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        pytest.param("30%", 10, False, 3, id="30% of 10 is 3"),
        pytest.param("30%", 10, True, 3, id="30% of 10 is 3 rounding up too"),
        pytest.param("25%", 10, True, 3, id="25% of 10 rounds up to 3"),
        pytest.param("25%", 10, False, 2, id="25% of 10 rounds down to 2"),
        pytest.param("50%", 5, True, 3, id="minAvailable 50% of 5 is 3 (rounded up)"),
        pytest.param("80%", 10, True, 8, id="minAvailable 80% of 10 is 8"),
        pytest.param("0%", 10, False, 0, id="0% is 0"),
        pytest.param("100%", 10, False, 10, id="100% is total"),
        pytest.param("150%", 10, False, 15, id="a percent above 100 is not clamped"),
        pytest.param("1%", 0, True, 0, id="any percent of 0 is 0"),
        pytest.param("1%", 1, True, 1, id="1% of 1 rounds up to 1"),
        pytest.param("1%", 1, False, 0, id="1% of 1 rounds down to 0"),
        pytest.param("-10%", 10, False, -1, id="a signed percent parses (Atoi)"),
        pytest.param("+10%", 10, False, 1, id="a plus sign parses (Atoi)"),
        pytest.param("007%", 100, False, 7, id="leading zeros parse"),
        pytest.param(100, 10, False, 100, id="an int is returned as is, above total"),
        pytest.param(-3, 10, True, -3, id="a negative int is returned as is"),
        pytest.param("29%", 100, True, 29, id="float arithmetic as Go: 29*100/100 is exact"),
        pytest.param("7%", 30, True, 3, id="7% of 30 = 2.1 rounds up to 3"),
    ],
)
def test_scaled_value(value, total, round_up, expected):
    assert scaled_value(value, total=total, round_up=round_up) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("30", NOT_PERCENT, id="a string without % is not a percentage"),
        pytest.param("", NOT_PERCENT, id="an empty string is not a percentage"),
        pytest.param("%30", NOT_PERCENT, id="a leading % is not a percentage"),
        pytest.param("0.5%", syntax("0.5%", "0.5"), id="a fraction is refused (v1.2 Atoi)"),
        pytest.param("%", syntax("%", ""), id="a bare % has no number"),
        pytest.param("abc%", syntax("abc%", "abc"), id="letters are refused"),
        pytest.param(" 5%", syntax(" 5%", " 5"), id="whitespace is not trimmed"),
        pytest.param("1_000%", syntax("1_000%", "1_000"), id="no underscores (unlike int())"),
        pytest.param("50%%", syntax("50%%", "50%"), id="only one % is removed"),
        pytest.param(
            "99999999999999999999%",
            'invalid value for IntOrString: invalid value "99999999999999999999%": '
            'strconv.Atoi: parsing "99999999999999999999": value out of range',
            id="beyond int64 is out of range",
        ),
        pytest.param(True, NEITHER, id="a bool is neither int nor percentage"),
        pytest.param(1.5, NEITHER, id="a float is neither int nor percentage"),
    ],
)
def test_scaled_value_refuses(value, message):
    with pytest.raises(ValueError) as caught:
        scaled_value(value, total=10, round_up=False)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        pytest.param("99", 200, True, 198, id="a string without % is a percentage"),
        pytest.param("99%", 200, True, 198, id="a percent string as usual"),
        pytest.param("%5%", 100, False, 5, id="every % is removed"),
        pytest.param("25%", 10, False, 2, id="rounds down"),
        pytest.param("25", 10, True, 3, id="rounds up"),
        pytest.param(7, 200, True, 7, id="an int is returned as is"),
    ],
)
def test_lenient_value(value, total, round_up, expected):
    assert lenient_value(value, total=total, round_up=round_up) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("", syntax("", ""), id="an empty string has no number"),
        pytest.param("x%", syntax("x%", "x"), id="letters are refused, % removed in the quote"),
        pytest.param("0.5%", syntax("0.5%", "0.5"), id="a fraction is refused"),
        pytest.param(None, NEITHER, id="None is neither int nor percentage"),
    ],
)
def test_lenient_value_refuses(value, message):
    with pytest.raises(ValueError) as caught:
        lenient_value(value, total=10, round_up=False)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        pytest.param(views_pb2.IntOrString(int_value=3), 3, id="int"),
        pytest.param(views_pb2.IntOrString(int_value=0), 0, id="int zero"),
        pytest.param(views_pb2.IntOrString(str_value="30%"), "30%", id="string"),
        pytest.param(views_pb2.IntOrString(str_value=""), "", id="empty string stays a string"),
        pytest.param(views_pb2.IntOrString(), 0, id="unset is Go's zero value 0"),
    ],
)
def test_from_view(view, expected):
    assert from_view(view) == expected
