"""The one place JSON is parsed: every document the tool reads comes through ``parse_json``.

Registries, token servers and an output directory's ``manifest.json`` are all input
the tool does not control. ``json.loads`` recurses once per ``[``/``{``, so a body of
100000 brackets ends in a RecursionError; here the nesting is measured first, in
linear time, and anything deeper than ``MAX_DEPTH`` is refused with a ValueError,
the error ``json.loads`` itself raises for bad input. Real manifests, configs and
``docker save`` manifests are under ten levels deep.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

MAX_DEPTH = 64

# A string literal, or an unterminated one up to the end (possessive, so linear even
# for `"\"\"\"...` without a closing quote).
_STRING = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting(text: str) -> int:
    """How deep ``[`` and ``{`` nest outside strings.

    Exact for valid JSON; for invalid JSON never less than the depth ``json.loads``
    reaches before it stops at the first error (up to there both read strings alike).
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def parse_json(data: bytes | str, max_depth: int = MAX_DEPTH) -> object:
    """``json.loads``, refusing documents nested deeper than ``max_depth`` (ValueError).

    Bytes are decoded as ``json.loads`` does (UTF-8, -16 or -32); a decoding error is
    a ValueError too.
    """
    text = (
        data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
    )
    depth = nesting(text)
    if depth > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text)
