"""Untrusted YAML text: the subset that training configs use, read without PyYAML (the core is standard
library only and runs in Pyodide).

Read: block mappings and sequences by indentation, flow ``[...]`` and ``{...}`` (over several lines too),
plain, single- and double-quoted scalars, ``|`` and ``>`` block scalars, comments, one leading ``---``.
Scalars resolve as PyYAML's SafeLoader resolves them (YAML 1.1: ``yes``/``no``/``on``/``off`` are booleans
and a float needs a dot, so ``2e-5`` stays a string), so that a config means here what it means to the
tool that reads it (axolotl, torchtune via OmegaConf and LLaMA-Factory all load with PyYAML).
Refused with an error naming the line: anchors and aliases, tags, several documents, complex keys, tabs
in indentation, duplicate keys. Bounded like pycore/request/jsontext.py: length and nesting depth.
"""

from __future__ import annotations

import re

from ..errors import InputError
from ..request.jsontext import MAX_JSON_CHARS, MAX_JSON_DEPTH

MAX_YAML_CHARS = MAX_JSON_CHARS
MAX_YAML_DEPTH = MAX_JSON_DEPTH

# PyYAML's implicit resolvers (yaml/resolver.py, Resolver.add_implicit_resolver, PyYAML 6.0), less the
# sexagesimal forms (190:20:30), which no training config uses.
_BOOL = {"yes": True, "Yes": True, "YES": True, "true": True, "True": True, "TRUE": True, "on": True, "On": True,
         "ON": True, "no": False, "No": False, "NO": False, "false": False, "False": False, "FALSE": False,
         "off": False, "Off": False, "OFF": False}
_NULL = ("", "~", "null", "Null", "NULL")
_INT = re.compile(r"[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0[0-7_]+|0|[1-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?")
_SPECIAL_FLOAT = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"), "+.inf": float("inf"),
                  "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
                  ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "/": "/", " ": " ", "a": "\a",
            "b": "\b", "e": "\x1b", "f": "\f", "v": "\v"}


class _Line:
    __slots__ = ("number", "indent", "text")

    def __init__(self, number: int, indent: int, text: str):
        self.number, self.indent, self.text = number, indent, text


def parse_yaml(text, field: str):
    """Parse the YAML subset above; raise InputError naming ``field`` and the line on anything else."""
    if not isinstance(text, str):
        raise InputError(field, "must be YAML text")
    if len(text) > MAX_YAML_CHARS:
        raise InputError(field, f"is longer than {MAX_YAML_CHARS:,} characters")
    reader = _Reader(text, field)
    return reader.document()


class _Reader:
    def __init__(self, text: str, field: str):
        self.field = field
        self.raw = text.replace("\r\n", "\n").split("\n")
        self.lines = self._logical_lines()
        self.i = 0

    def error(self, number: int, message: str) -> InputError:
        return InputError(self.field, f"line {number}: {message}")

    # -- lines ---------------------------------------------------------------------------------
    def _logical_lines(self) -> list:
        out = []
        started = False
        for n, raw in enumerate(self.raw, 1):
            body = _strip_comment(raw)
            stripped = body.strip()
            if not stripped:
                continue
            if stripped.startswith(("---", "...")) and body.startswith(("---", "...")):
                if started or stripped.startswith("...") or stripped.strip("-").strip():
                    raise self.error(n, "several YAML documents (--- or ...) are not read; give one document")
                started = True
                continue
            lead = body[:len(body) - len(body.lstrip(" \t"))]
            if "\t" in lead:
                raise self.error(n, "a tab in the indentation; indent with spaces")
            if stripped[0] in "&*!%?|>@`":
                raise self.error(n, _refusal(stripped[0]))
            started = True
            out.append(_Line(n, len(lead), body.rstrip()[len(lead):]))
        return out

    def document(self):
        if not self.lines:
            return None
        first = self.lines[0]
        if first.text[0] in "[{":                          # a flow collection as the document (JSON)
            self.i = 1
            value = self.flow_value(first.text, first, 1)
        else:
            value = self.block(first.indent, 1)
        if self.i < len(self.lines):
            line = self.lines[self.i]
            raise self.error(line.number, "unexpected indentation (the block above ended)")
        return value

    # -- blocks ------------------------------------------------------------------------------------
    def block(self, indent: int, depth: int):
        if depth > MAX_YAML_DEPTH:
            raise self.error(self.lines[self.i].number, f"nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        line = self.lines[self.i]
        if _is_item(line.text):
            return self.sequence(indent, depth)
        return self.mapping(indent, depth)

    def sequence(self, indent: int, depth: int) -> list:
        out = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent < indent or (line.indent == indent and not _is_item(line.text)):
                break
            if line.indent > indent:
                raise self.error(line.number, "unexpected indentation in a list")
            rest = line.text[1:].lstrip(" ")
            if not rest:
                self.i += 1
                out.append(self.nested(indent, depth, line.number, allow_same=False))
                continue
            offset = line.indent + len(line.text) - len(rest)
            if _is_item(rest) or _key_split(rest) is not None:
                self.lines[self.i] = _Line(line.number, offset, rest)     # the item's block starts here
                out.append(self.block(offset, depth + 1))
            else:
                self.i += 1
                out.append(self.inline(rest, line, offset, depth))
        return out

    def mapping(self, indent: int, depth: int) -> dict:
        out = {}
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.indent < indent:
                break
            if line.indent > indent:
                raise self.error(line.number, "unexpected indentation")
            if _is_item(line.text):
                break
            split = _key_split(line.text)
            if split is None:
                raise self.error(line.number, f"expected 'key: value', got {line.text[:40]!r}")
            key_text, rest = split
            key = self.key(key_text, line)
            if key in out:
                raise self.error(line.number, f"the key {key!r} is given twice")
            self.i += 1
            if not rest:
                out[key] = self.nested(indent, depth, line.number, allow_same=True)
            else:
                offset = line.indent + len(line.text) - len(rest)
                out[key] = self.inline(rest, line, offset, depth)
        return out

    def nested(self, indent: int, depth: int, number: int, allow_same: bool):
        """The block under a key or a bare '-': more indented, or a list at the key's own indent."""
        if self.i >= len(self.lines):
            return None
        nxt = self.lines[self.i]
        if nxt.indent > indent or (allow_same and nxt.indent == indent and _is_item(nxt.text)):
            return self.block(nxt.indent, depth + 1)
        return None

    def key(self, text: str, line: _Line):
        if not text:
            raise self.error(line.number, "a key is missing before ':'")
        if text[0] in "'\"":
            value, end = _quoted(text, 0, self.error, line.number)
            if text[end:].strip():
                raise self.error(line.number, "text after a quoted key")
            return value
        if text[0] in "[{":
            raise self.error(line.number, "a list or mapping as a key is not read")
        value = _plain(text.strip())
        if isinstance(value, float) and value != value:
            raise self.error(line.number, "NaN as a key")
        return value

    # -- values on one line ------------------------------------------------------------------------
    def inline(self, text: str, line: _Line, column: int, depth: int):
        first = text[0]
        if first in "&*!":
            raise self.error(line.number, _refusal(first))
        if first in "|>":
            return self.block_scalar(text, line)
        if first in "[{":
            return self.flow_value(text, line, depth)
        if first in "'\"":
            value, end = _quoted(text, 0, self.error, line.number)
            if text[end:].strip():
                raise self.error(line.number, "text after a quoted value")
            return value
        if self.i < len(self.lines) and self.lines[self.i].indent > line.indent and \
                not _is_item(self.lines[self.i].text) and _key_split(self.lines[self.i].text) is None:
            raise self.error(self.lines[self.i].number, "a plain value continued on the next line is not read; "
                                                        "put it on one line or quote it")
        return _plain(text)

    def flow_value(self, text: str, line: _Line, depth: int):
        """A flow list or mapping, joined over the following lines until its brackets close."""
        parts = [text]
        depth = _open_brackets(text)                # counted line by line: quoted values stay on one line
        while depth > 0:
            if self.i >= len(self.lines):
                raise self.error(line.number, "a [ or { is not closed")
            parts.append(self.lines[self.i].text)
            depth += _open_brackets(self.lines[self.i].text)
            self.i += 1
        joined = " ".join(parts)
        value, end = _Flow(joined, self, line.number).value(0, depth)
        if joined[end:].strip():
            raise self.error(line.number, f"text after the closing bracket: {joined[end:].strip()[:30]!r}")
        return value

    def block_scalar(self, header: str, line: _Line) -> str:
        style, chomp = header[0], header[1:].strip()
        if chomp not in ("", "-", "+"):
            raise self.error(line.number, "block scalar indicators other than | |- |+ > >- >+ are not read")
        # the raw lines below the header, more indented than the key (blank lines kept)
        body = []
        n = line.number
        while n < len(self.raw):
            raw = self.raw[n]
            if raw.strip() and len(raw) - len(raw.lstrip(" ")) <= line.indent:
                break
            body.append(raw)
            n += 1
        while self.i < len(self.lines) and self.lines[self.i].number <= n:
            self.i += 1
        while body and not body[-1].strip():
            body.pop()
        strip = min((len(b) - len(b.lstrip(" ")) for b in body if b.strip()), default=0)
        lines = [b[strip:] for b in body]
        text = "\n".join(lines) if style == "|" else _fold(lines)
        return text if chomp == "-" else text + "\n" if text else ""


class _Flow:
    """Flow collections: [a, 'b', {c: 1}]."""

    def __init__(self, text: str, reader: _Reader, number: int):
        self.text, self.reader, self.number = text, reader, number

    def skip(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in " \n":
            pos += 1
        return pos

    def value(self, pos: int, depth: int):
        if depth > MAX_YAML_DEPTH:
            raise self.reader.error(self.number, f"nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        pos = self.skip(pos)
        if pos >= len(self.text):
            raise self.reader.error(self.number, "a value is missing")
        ch = self.text[pos]
        if ch == "[":
            return self.items(pos + 1, depth)
        if ch == "{":
            return self.pairs(pos + 1, depth)
        if ch in "'\"":
            return _quoted(self.text, pos, self.reader.error, self.number)
        if ch in "&*!|>":
            raise self.reader.error(self.number, _refusal(ch))
        end = pos
        while end < len(self.text) and self.text[end] not in ",]}" and not (
                self.text[end] == ":" and (end + 1 == len(self.text) or self.text[end + 1] in " ,]}")):
            end += 1
        return _plain(self.text[pos:end].strip()), end

    def items(self, pos: int, depth: int):
        out = []
        pos = self.skip(pos)
        while True:
            if pos < len(self.text) and self.text[pos] == "]":
                return out, pos + 1
            value, pos = self.value(pos, depth + 1)
            out.append(value)
            pos = self.skip(pos)
            if pos < len(self.text) and self.text[pos] == ",":
                pos = self.skip(pos + 1)
            elif pos >= len(self.text) or self.text[pos] != "]":
                raise self.reader.error(self.number, "expected , or ] in a flow list")

    def pairs(self, pos: int, depth: int):
        out = {}
        pos = self.skip(pos)
        while True:
            if pos < len(self.text) and self.text[pos] == "}":
                return out, pos + 1
            key, pos = self.value(pos, depth + 1)
            pos = self.skip(pos)
            if pos >= len(self.text) or self.text[pos] != ":":
                raise self.reader.error(self.number, "expected key: value in a flow mapping")
            value, pos = self.value(pos + 1, depth + 1)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise self.reader.error(self.number, "a list or mapping as a key is not read")
            if key in out:
                raise self.reader.error(self.number, f"the key {key!r} is given twice")
            out[key] = value
            pos = self.skip(pos)
            if pos < len(self.text) and self.text[pos] == ",":
                pos = self.skip(pos + 1)
            elif pos >= len(self.text) or self.text[pos] != "}":
                raise self.reader.error(self.number, "expected , or } in a flow mapping")


def _refusal(ch: str) -> str:
    what = {"&": "anchors (&name)", "*": "aliases (*name)", "!": "tags (!tag)", "%": "directives (%YAML)",
            "?": "complex keys (? key)", "@": "reserved characters", "`": "reserved characters",
            "|": "a block scalar here", ">": "a block scalar here"}[ch]
    return f"{what} are not read by this YAML reader; write the value out"


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _key_split(text: str):
    """(key, rest) if ``text`` is 'key: rest' or 'key:' (the colon outside quotes), else None."""
    if text[0] in "'\"":
        try:
            _, end = _quoted(text, 0, None, 0)
        except InputError:
            return None
        rest = text[end:]
        if rest.startswith(":") and (len(rest) == 1 or rest[1] == " "):
            return text[:end], rest[1:].strip()
        return None
    if text[0] in "[{":
        return None
    for m in re.finditer(r":(?: |$)", text):
        return text[:m.start()].rstrip(), text[m.end():].strip()
    return None


def _quoted(text: str, pos: int, error, number: int):
    """A single- or double-quoted scalar starting at ``pos``: (value, index after the closing quote)."""
    quote = text[pos]
    out = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if quote == "'" and ch == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if quote == '"' and ch == '"':
            return "".join(out), i + 1
        if quote == '"' and ch == "\\":
            esc = text[i + 1:i + 2]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            digits = text[i + 2:i + 2 + width] if width else ""
            if not width or not re.fullmatch(r"[0-9a-fA-F]+", digits or "-") or len(digits) != width:
                raise _quote_error(error, number, f"unknown escape \\{esc}")
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise _quote_error(error, number, f"escape \\{esc}{digits} is beyond Unicode")
            out.append(chr(code))
            i += 2 + width
            continue
        out.append(ch)
        i += 1
    raise _quote_error(error, number, f"a {quote} quote is not closed (quoted values stay on one line)")


def _quote_error(error, number: int, message: str) -> InputError:
    return error(number, message) if error else InputError("yaml", message)


def _plain(text: str):
    """A plain scalar resolved as PyYAML's SafeLoader does."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        body = digits.lstrip("+-")
        if len(body) > 400:
            return text                            # a number too long to be a setting: kept as text
        if body.startswith("0b"):
            return sign * int(body[2:], 2)
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body, 8)
        return sign * int(body)
    if _FLOAT.fullmatch(text):
        return float(text.replace("_", ""))
    if text in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text]
    return text


def _strip_comment(line: str) -> str:
    """The line without its comment: '#' at the start or after a space, outside a quoted scalar. A quote
    opens a scalar only where a value or key starts (line start, after ': ', '- ', '[', '{' or ',')."""
    quote = None
    prev = " "
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                if quote == "'" and line[i + 1:i + 2] == "'":
                    i += 2
                    continue
                quote = None
            elif quote == '"' and ch == "\\":
                i += 2
                continue
        elif ch in "'\"" and _value_start(line, i):
            quote = ch
        elif ch == "#" and prev in " \t":
            return line[:i]
        prev = ch
        i += 1
    return line


def _value_start(line: str, i: int) -> bool:
    before = line[:i].rstrip(" ")
    return not before or before.endswith((":", "-", "[", "{", ","))


def _open_brackets(text: str) -> int:
    """How many [ and { are still open in ``text`` (brackets inside quotes do not count)."""
    depth = 0
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and _value_start(text, i):
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return depth


def _fold(lines: list) -> str:
    """A folded (>) block: lines joined by spaces, a blank line kept as a newline."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("\n")
        elif out and not out[-1].endswith("\n"):
            out.append(" " + line)
        else:
            out.append(line)
    return "".join(out)
