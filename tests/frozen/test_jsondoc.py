"""The one JSON parser of the tool: exact depth for valid JSON, refusal past the bound."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dind.frozen.jsondoc import MAX_DEPTH, nesting, parse_json

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('[]{}"\\ ab\n\u00e9'))
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@given(_values)
def test_nesting_is_exact_for_valid_json(value: object) -> None:
    """Brackets inside strings (escaped quotes included) do not count."""
    text = json.dumps(value, ensure_ascii=False)
    assert nesting(text) == depth(value)
    assert parse_json(text.encode()) == value
    assert parse_json(text.encode("utf-16")) == value  # decoded as json.loads does


def test_bound() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert nesting('{"a": "[[[[", "b": [1, {"c": "\\"]]]"}]}') == 3


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,  # unterminated
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b'"x", ' + b"[" * 100_000,  # invalid before the brackets: still counted
    ],
)
def test_deep_input_is_a_value_error_not_a_recursion_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="nested deeper than"):
        parse_json(data)


@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 1_000_000,  # a string that never ends, full of escaped quotes
        '"\\"' * 700_000 + "\\",
        "[]" * 1_000_000,
        '"' * 2_000_000,
    ],
)
def test_linear_time_on_hostile_strings(text: str) -> None:
    """A regex that retried at every quote would take hours here."""
    started = time.monotonic()
    nesting(text)
    assert time.monotonic() - started < 5
