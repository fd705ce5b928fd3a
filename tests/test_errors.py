"""One error line whatever the value it quotes (issue 21): dind.errors' escaping and cuts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dind.errors import SHOWN, clipped, control, printable, shown


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tcp://a\nb", "'tcp://a\\nb'"),
        ("a'b\\c", "'a\\'b\\\\c'"),
        ("x\udcff", "'x\\udcff'"),  # a byte that was not UTF-8 (surrogateescape)
        ("\u2028", "'\\u2028'"),
    ],
)
def test_shown_quotes_and_escapes(value: str, expected: str) -> None:
    assert shown(value) == expected


def test_a_long_value_is_cut_and_its_length_said() -> None:
    assert shown("x" * 100_000) == f"'{'x' * SHOWN}'... (100000 characters)"
    assert printable("x" * 100_000, 10) == "xxxxxxxxxx... (100000 characters)"
    assert printable("x" * 100_000, None) == "x" * 100_000


@given(st.text(max_size=400))
def test_one_bounded_line_for_any_text(text: str) -> None:
    """The fuzzer's find: a character may escape to ten (\\U0010ffff); the bound is on
    what is printed, not on the characters taken."""
    for out in (shown(text), printable(text)):
        assert "\n" not in out and "\r" not in out
        assert not any(control(c) for c in out)
        assert len(out) <= SHOWN + len(" ... (400 characters)") + 2
    assert printable(printable(text, None), None) == printable(text, None)


def test_clipped_cuts_at_a_word() -> None:
    reason = "Could not deserialize key data. " * 10
    out = clipped(reason, 40)
    assert out == "Could not deserialize key data. Could..."
    assert clipped("short\nsecond line") == "short"
