"""Request fields declared once, on the dataclasses they fill.

Each field's ``Field`` validates and converts the value (JSON ``2.0`` becomes the int 2),
names the field by the path the user wrote in errors, and describes itself for the page, so
that the CLI, the page and the tests share one definition of what is valid.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from .errors import InputError, require_bool, require_choice, require_int, require_number, show

# The workload modes a field can be limited to (Field.modes): every layer's vocabulary, so it lives here.
MODES = ("full", "lora", "qlora", "inference", "peft")
TRAINING_MODES = ("full", "lora", "qlora", "peft")


@dataclass(frozen=True)
class Field:
    kind: str                      # int | number | choice | bool | text | names | ints
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    nullable: bool = False         # null (or absent) means "not set"
    path: str = ""                 # where the value sits in the request object; default: the name
    doc: str = ""
    unit: str = ""
    max_len: int = 64              # text and names: longest string; names: also most items
    modes: tuple = ()              # workload modes the field applies to (empty: all)
    labels: tuple = ()             # (choice, readable label) pairs for the page
    engines: tuple = ()            # serving engines the field applies to (empty: all)
    parser: object = None          # kind "object": parser(where, value) returns the parsed, hashable value
    # Outside names, declared here once: the page's URL parameter (pycore/request/links.py, web/state.js) and the
    # command line's flag (pycore/cli/args.py); empty: the field has none.
    url: str = ""
    cli: str = ""

    def check(self, where: str, value):
        """Return ``value`` converted to its Python type, or raise InputError naming ``where``."""
        if value is None and self.nullable:
            return None
        if self.kind == "int":
            return require_int(where, value, minimum=int(self.minimum), maximum=int(self.maximum))
        if self.kind == "number":
            return require_number(where, value, minimum=self.minimum, maximum=self.maximum)
        if self.kind == "choice":
            return require_choice(where, value, self.choices)
        if self.kind == "bool":
            return require_bool(where, value)
        if self.kind == "text":
            if not isinstance(value, str) or len(value) > self.max_len:
                raise InputError(where, f"must be a string of at most {self.max_len} characters, got {show(value)}")
            return value
        if self.kind == "names":
            return _names(where, value, self)
        if self.kind == "object":
            return self.parser(where, value)
        if self.kind == "ints":
            if not isinstance(value, list) or not 0 < len(value) <= self.max_len:
                raise InputError(where, f"must be a list of 1 to {self.max_len} integers")
            item = Field("int", minimum=self.minimum, maximum=self.maximum)
            return tuple(item.check(f"{where}[{i}]", x) for i, x in enumerate(value))
        raise AssertionError(self.kind)

    def describe(self) -> dict:
        out = {"type": self.kind}
        for key in ("minimum", "maximum", "doc", "unit"):
            if getattr(self, key) not in (None, ""):
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        if self.nullable:
            out["nullable"] = True
        if self.modes:
            out["modes"] = list(self.modes)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.engines:
            out["engines"] = list(self.engines)
        return out


def _names(where: str, value, f: Field):
    """A list of module names, or one of the field's keyword choices (such as 'all-linear')."""
    if isinstance(value, str) and value in f.choices:
        return value
    if not isinstance(value, list) or not value or len(value) > f.max_len:
        raise InputError(where, f"must be {' or '.join(repr(c) for c in f.choices) + ' or ' if f.choices else ''}"
                                f"a list of 1 to {f.max_len} names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise InputError(f"{where}[{i}]", f"must be a name of 1 to 64 characters, got {show(name)}")
    return tuple(value)


def integer(lo: int, hi: int, **kw) -> Field:
    return Field("int", minimum=lo, maximum=hi, **kw)


def number(lo: float, hi: float, **kw) -> Field:
    return Field("number", minimum=lo, maximum=hi, **kw)


def choice(values, **kw) -> Field:
    return Field("choice", choices=tuple(values), **kw)


def flag(**kw) -> Field:
    return Field("bool", **kw)


def text(max_len: int = 64, **kw) -> Field:
    return Field("text", max_len=max_len, **kw)


def names(keywords=(), max_items: int = 64, **kw) -> Field:
    return Field("names", choices=tuple(keywords), max_len=max_items, **kw)


def int_list(lo: int, hi: int, max_items: int = 64, **kw) -> Field:
    return Field("ints", minimum=lo, maximum=hi, max_len=max_items, **kw)


def obj(parser, **kw) -> Field:
    """A JSON object read by ``parser(where, value)`` (such as a PEFT adapter config)."""
    return Field("object", parser=parser, **kw)


def spec(default, f: Field):
    """A dataclass field whose request form is described by ``f``."""
    return dataclasses.field(default=default, metadata={"schema": f})


@lru_cache(maxsize=None)
def _fields(cls) -> tuple:
    """(name, Field, request path parts) of each declared field of ``cls``."""
    return tuple((fl.name, fl.metadata["schema"], tuple((fl.metadata["schema"].path or fl.name).split(".")))
                 for fl in dataclasses.fields(cls) if "schema" in fl.metadata)


@lru_cache(maxsize=None)
def _checks(cls, where: str) -> tuple:
    """(name, Field, full path) for validating objects of ``cls`` found at ``where``."""
    return tuple((name, f, _path(where, parts)) for name, f, parts in _fields(cls))


def build(cls, raw, where: str, **fixed):
    """Construct ``cls`` from the request object ``raw`` found at ``where``.

    Unknown keys are errors, absent keys take the dataclass defaults, and every given value is
    checked and converted by its Field. ``fixed`` supplies fields that the caller has already
    parsed (they are not read from ``raw``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(where, "must be a JSON object")
    known: dict = {}
    for _, _, parts in _fields(cls):
        node = known
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = None
    _reject_unknown(raw, known, where)
    kwargs = dict(fixed)
    for name, f, parts in _fields(cls):
        if name in fixed:
            continue
        node, present = raw, True
        for p in parts[:-1]:
            node = node.get(p)
            if node is None:
                present = False
                break
            if not isinstance(node, dict):
                raise InputError(_path(where, parts[:parts.index(p) + 1]), "must be a JSON object")
        if present and parts[-1] in node:
            kwargs[name] = f.check(_path(where, parts), node[parts[-1]])
    return cls(**kwargs)


def _reject_unknown(raw: dict, known: dict, where: str) -> None:
    for key, value in raw.items():
        if key not in known:
            raise InputError(join_path(where, key), "is not a known field; known: " + ", ".join(sorted(known)))
        if isinstance(known[key], dict) and isinstance(value, dict):
            _reject_unknown(value, known[key], join_path(where, key))


def validate(obj, where: str) -> None:
    """Check an already-built object's fields against their Fields (for objects made in code,
    such as a solver's variations): the value must be exactly what ``check`` would return."""
    for name, f, path in _checks(type(obj), where):
        value = getattr(obj, name)
        if f.kind == "int" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(path, f"must be an integer, got {show(value)}")
        if f.kind in ("names", "ints") and isinstance(value, tuple):
            value = list(value)
        f.check(path, value)


def declared(cls, where: str = "") -> tuple:
    """(full path, Field, default) of each declared field of ``cls`` found at ``where``: the table the URL
    parameters, the command line's flags and their defaults are read from."""
    defaults = {fl.name: fl.default for fl in dataclasses.fields(cls)}
    return tuple((_path(where, parts), f, defaults[name]) for name, f, parts in _fields(cls))


def describe(cls, where: str = "") -> dict:
    """The request form of ``cls``'s fields, keyed by their full path, with defaults, for the page."""
    out = {}
    defaults = {fl.name: fl.default for fl in dataclasses.fields(cls)}
    for name, f, parts in _fields(cls):
        d = f.describe()
        default = defaults[name]
        if default is not dataclasses.MISSING:
            d["default"] = list(default) if isinstance(default, tuple) else default
        out[_path(where, parts)] = d
    return out


def _path(where: str, parts) -> str:
    for part in parts:
        where = join_path(where, part)
    return where


def at_path(node, path: str):
    """The value at a dotted ``path`` inside nested objects, or None where any key on the way is absent."""
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def join_path(where: str, key) -> str:
    """The path of ``key`` inside ``where``: ``where.key``, or ``where["key"]`` (JSON-quoted, cut to 60
    characters) when the key has dots, brackets or other characters that would make the path ambiguous."""
    key = str(key)
    if _PLAIN_KEY.fullmatch(key):
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key[:60])}]"
