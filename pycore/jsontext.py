"""Untrusted JSON text: bounded in length and depth before it is parsed, so that no input can
exhaust the parser's stack (CPython raises RecursionError, Pyodide's smaller wasm stack aborts)."""

from __future__ import annotations

import json
import re

from .errors import InputError

# A config.json is a few KB and a request a little more; 1,000,000 characters is generous.
MAX_JSON_CHARS = 1_000_000
# Requests nest about 5 deep (hf_config.text_config.rope_scaling ...); 64 leaves room and keeps
# json.loads far below any runtime's recursion limit.
MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, ignoring brackets inside strings."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(text, field: str):
    """Parse JSON text that came from a user; raise InputError naming ``field`` if it is too long,
    too deep, not JSON, or uses NaN/Infinity (not JSON, though Python accepts them)."""
    if not isinstance(text, str):
        raise InputError(field, "must be a JSON text")
    if len(text) > MAX_JSON_CHARS:
        raise InputError(field, f"is longer than {MAX_JSON_CHARS:,} characters")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise InputError(field, f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text, parse_constant=_reject_constant(field))
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(field, f"not valid JSON: {exc}"[:200]) from None


def _reject_constant(field: str):
    def reject(name: str):
        raise InputError(field, f"{name} is not allowed in JSON")
    return reject
