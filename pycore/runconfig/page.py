"""The page's "start from a training config" box: the config read into the page's link (the page loads it
as it loads any link), with the fields used, read and ignored. JSON in, JSON out; never raises."""

from __future__ import annotations

import json

from ..errors import InputError
from ..request.jsontext import parse_json


def from_config_json(request_json: str) -> str:
    """{"text": the config, "base": the page's current request} -> {"status": "ok", "result": {"query",
    "kind", "used", "read_only", "ignored", "notes", "not_on_page"}} or {"status": "error", "errors": [...]}."""
    from ..request.parse import SCHEMA
    try:
        return json.dumps({"schema": SCHEMA, "status": "ok", "result": _read(parse_json(request_json, "request"))})
    except InputError as exc:
        return json.dumps({"schema": SCHEMA, "status": "error", "errors": [exc.as_dict()]})
    except (RecursionError, MemoryError) as exc:
        return json.dumps({"schema": SCHEMA, "status": "error",
                           "errors": [{"field": "from", "message": f"too large or deep: {type(exc).__name__}"}]})
    except Exception as exc:  # noqa: BLE001 - the contract is that nothing escapes this function
        return json.dumps({"schema": SCHEMA, "status": "error",
                           "errors": [{"field": "from", "message": f"internal error: {type(exc).__name__}"[:200]}]})


def _read(data) -> dict:
    from ..request.links import URL_PARAMS, to_query
    from ..request.parse import parse_request
    from . import read_run_config
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise InputError("from", "give the config's text")
    base = data.get("base") if isinstance(data.get("base"), dict) else {}
    reading = read_run_config(data["text"])
    merged = merge(base, reading["request"])
    parse_request(merged)                       # the same checks as an estimate: a bad value names its field
    shown = set(URL_PARAMS.values())
    not_on_page = [path for path, _ in _paths(reading["request"]) if path not in shown and path != "model"]
    return {"query": to_query(merged), "kind": reading["kind"], "used": reading["used"],
            "read_only": reading["read_only"], "ignored": reading["ignored"], "notes": reading["notes"],
            "not_on_page": not_on_page}


def merge(base: dict, read: dict) -> dict:
    """The page's request with the config's fields over it; a model the config names replaces the page's."""
    out = {k: v for k, v in base.items() if k not in ("solve", "fit", "sweep", "plan", "measured")}
    if "model" in read:
        out.pop("hf_config", None)
    for key, value in read.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _paths(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
