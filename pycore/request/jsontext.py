"""Untrusted JSON text: bounded in length and depth before it is parsed, so that no input can
exhaust the parser's stack (CPython raises RecursionError, Pyodide's smaller wasm stack aborts)."""

from __future__ import annotations

import json
import re
from itertools import accumulate

from ..errors import InputError

# A config.json is a few KB and a request a little more; 1,000,000 characters is generous.
MAX_JSON_CHARS = 1_000_000
# A request carries a config.json (up to MAX_JSON_CHARS) and a pasted measurement (up to the checker's
# 200,000 characters) as JSON strings, and escaping can make a character six ("\u0000"): the request's
# own limit leaves room for both at their limits, so that the field at fault is the one named.
MAX_REQUEST_CHARS = 6 * (MAX_JSON_CHARS + 200_000) + 100_000
# Requests nest about 5 deep (hf_config.text_config.rope_scaling ...); 64 leaves room and keeps
# json.loads far below any runtime's recursion limit.
MAX_JSON_DEPTH = 64

# Strings are skipped in one left-to-right pass: from each opening quote its body is matched
# possessively (`*+`, Python 3.11+), so no character is read twice. (The previous pattern, tried at every
# quote, backtracked on an unterminated string of escaped quotes: 64 KB took 15 s.) An unterminated
# string ends the scan; the parser then reports it.
_QUOTE = re.compile(r'"')
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)
_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, ignoring brackets inside strings, in time
    linear in its length."""
    outside, pos = [], 0
    while (m := _QUOTE.search(text, pos)) is not None:
        outside.append(text[pos:m.start()])
        end = _STRING_REST.match(text, m.end())
        if end is None:
            pos = len(text)
            break
        pos = end.end()
    outside.append(text[pos:])
    brackets = _BRACKETS.sub("", "".join(outside))
    return max(accumulate(map(_STEP.__getitem__, brackets), initial=0))


def parse_json(text, field: str, max_chars: int = MAX_JSON_CHARS):
    """Parse JSON text that came from a user; raise InputError naming ``field`` if it is too long,
    too deep, not JSON, or uses NaN/Infinity (not JSON, though Python accepts them)."""
    check_limits(text, field, max_chars)
    try:
        return json.loads(text, parse_constant=_reject_constant(field))
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(field, f"not valid JSON: {exc}"[:200]) from None


def check_limits(text, field: str, max_chars: int = MAX_JSON_CHARS) -> None:
    """Raise InputError naming ``field`` unless ``text`` is a string within the length and depth limits."""
    if not isinstance(text, str):
        raise InputError(field, "must be a JSON text")
    if len(text) > max_chars:
        raise InputError(field, f"is longer than {max_chars:,} characters")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InputError(field, f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")


def _reject_constant(field: str):
    def reject(name: str):
        raise InputError(field, f"{name} is not allowed in JSON")
    return reject
