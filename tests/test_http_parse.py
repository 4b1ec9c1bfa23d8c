"""web/http.py's integer rule, at its edges: plain ASCII digits within low..high, the error
naming the parameter and the value (killing the mutants bench/mutation.py found)."""
from __future__ import annotations

import pytest

from datasette_imageclust.web.http import MAX_ID, Problem, parse_int


@pytest.mark.parametrize("raw, low, high, expected", [
    ("0", 0, 10, 0),
    ("10", 0, 10, 10),
    ("3", 3, 10, 3),
    ("007", 0, 10, 7),
    ("000", 0, 10, 0),
    ("9223372036854775807", 0, MAX_ID, 9223372036854775807),  # as many digits as high
    ("0009223372036854775807", 0, MAX_ID, 9223372036854775807),
])
def test_parse_int_accepts_the_bounds(raw, low, high, expected):
    assert parse_int(raw, "id", low, high) == expected


@pytest.mark.parametrize("raw, low, high, message", [
    ("11", 0, 10, "id must be between 0 and 10, not '11'"),
    ("2", 3, 10, "id must be between 3 and 10, not '2'"),
    ("100", 0, 10, "id must be between 0 and 10, not '100'"),
    ("9223372036854775808", 0, MAX_ID, f"id must be between 0 and {MAX_ID}, not '9223372036854775808'"),
    ("1" + "0" * 50, 0, MAX_ID, f"id must be between 0 and {MAX_ID}, not '{'1' + '0' * 39}'"),
    ("-1", 0, 10, "id must be a whole number written with the digits 0-9, not '-1'"),
    ("", 0, 10, "id must be a whole number written with the digits 0-9, not ''"),
    ("1a", 0, 10, "id must be a whole number written with the digits 0-9, not '1a'"),
])
def test_parse_int_refuses_with_a_400_naming_it(raw, low, high, message):
    with pytest.raises(Problem) as e:
        parse_int(raw, "id", low, high)
    assert e.value.status == 400
    assert str(e.value) == message


def test_parse_int_defaults_to_sqlite_ids():
    assert parse_int("0", "id") == 0
    assert parse_int(str(MAX_ID), "id") == MAX_ID
    with pytest.raises(Problem):
        parse_int(str(MAX_ID + 1), "id")
