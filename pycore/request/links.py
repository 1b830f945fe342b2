"""A result as a Markdown table, and a request as the page's link (``python -m pycore ... --url``) and as the command line ("Copy as
command" on the page). Both go through the request: CLI flags -> request -> link -> the page's
request, and the page's request -> command -> the same request (tests/test_links.py and
tests/browser/links.test.mjs check the round trips).

``URL_PARAMS`` is the page's table too (catalog.json request.url_params, read by web/state.js); the serving
fields keep their own names in links. ``FLAGS`` is the command line's (pycore/cli/args.py). Both are read
from the fields' declarations (schema.Field url and cli), where a new parameter or flag is added.
"""

from __future__ import annotations

import base64
import shlex
import zlib
from urllib.parse import urlencode

from ..errors import InputError
from .parse import DEFAULT_GPU, DEFAULT_MODEL, cli_flags, request_schema, url_params
from ..schema import at_path
from ..training.workload import implied_precision


def __getattr__(name: str):
    """``URL_PARAMS`` (URL parameter -> request path) and ``FLAGS`` (request path -> command-line flag), derived
    on first use from the fields' declarations (request.url_params, request.cli_flags): nothing to edit here
    when a field gains a parameter or a flag."""
    if name == "URL_PARAMS":
        return url_params()
    if name == "FLAGS":
        return cli_flags()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fields() -> dict:
    return request_schema()["fields"]


def _serving_paths() -> dict:
    """Serving field name -> path, for the fields only serving has (the page's serve parameters)."""
    return {path[len("workload."):]: path for path, f in _fields().items()
            if path.startswith("workload.") and f.get("modes") == ["serve"]}


def _absent(req: dict, path: str, fields: dict):
    """The value the core takes for ``path`` when the request leaves it out: the field's default, or the
    value another given field implies (fp32 weights under autocast, workload.implied_precision)."""
    where, _, name = path.rpartition(".")
    precision = req.get("precision")
    if where == "precision" and isinstance(precision, dict):
        implied = implied_precision({k: v for k, v in precision.items() if k != name})
        if name in implied:
            return implied[name]
    return fields.get(path, {}).get("default")


def _text(value) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):                 # a PEFT adapter config travels as its JSON text
        import json
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def compress_config(text: str) -> str:
    """The page's ``cfg`` value: raw deflate, base64url without padding (web/state.js compressConfig)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = c.compress(text.encode("utf-8")) + c.flush()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def to_query(req: dict) -> str:
    """The page's query string for a request: the values that differ from the defaults."""
    fields = _fields()
    q = []
    model = req.get("model")
    if isinstance(req.get("hf_config"), (str, dict)):
        import json
        text = req["hf_config"] if isinstance(req["hf_config"], str) else json.dumps(req["hf_config"])
        q.append(("cfg", compress_config(text)))
    elif isinstance(model, dict):
        raise InputError("model", "a link carries a catalog id or a config.json, not a model given by its size")
    elif model and model != DEFAULT_MODEL:
        q.append(("model", model))
    for param, path in url_params().items():
        if param == "mem":
            continue
        value = at_path(req, path)
        if value is None or value == _absent(req, path, fields):
            continue
        q.append((param, _text(value)))
    gpu = req.get("gpu")
    if isinstance(gpu, dict) and gpu.get("memory_gib") is not None:
        q.append(("mem", _text(gpu["memory_gib"])))
    elif isinstance(gpu, str) and gpu != DEFAULT_GPU:
        q.append(("gpu", gpu))
    return urlencode(q, safe=",")


def to_url(req: dict, base: str) -> str:
    query = to_query(req)
    return base + ("?" + query if query else "")


def to_command(req: dict) -> str:
    """The command line that builds this request (``python -m pycore estimate|serve ...``)."""
    fields = _fields()
    workload = req.get("workload") or {}
    serving = workload.get("mode") == "serve"
    args = ["python", "-m", "pycore", "serve" if serving else "estimate"]
    model = req.get("model")
    if req.get("hf_config") is not None:
        args += ["--hf-config", "config.json"]            # the pasted config, saved beside the command
    elif isinstance(model, dict) and "parameters" in model:
        args += ["--params", _text(model["parameters"])]
        if model.get("largest_layer_parameters") is not None:
            args += ["--largest-layer-params", _text(model["largest_layer_parameters"])]
    elif isinstance(model, dict):
        raise InputError("model", "the command line takes a catalog id, a config.json or a parameter count, "
                                  "not a model given by its dimensions")
    elif model:
        args += ["--model", model]
    if serving:
        for name, path in _serving_paths().items():
            value = workload.get(name)
            if value is None or value == fields[path].get("default"):
                continue
            flag = "--" + name.replace("_", "-")
            if name == "flash_attn":
                args += [flag, str(value)]
            elif value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + name.replace("_", "-"))
            else:
                args += [flag, _text(value)]
    else:
        args += _flag_args(req, fields)
        ctx = at_path(req, "framework.cuda_context_bytes")
        if ctx is not None:
            args += ["--cuda-context-mib", _text(ctx / 2 ** 20)]
        for key, value in sorted((at_path(req, "parallelism.options") or {}).items()):
            args += ["--option", f"{key}={_text(value)}"]
    gpu = req.get("gpu")
    if isinstance(gpu, dict) and gpu.get("memory_gib") is not None:
        args += ["--gpu-memory-gib", _text(gpu["memory_gib"])]
    elif isinstance(gpu, str):
        args += ["--gpu", gpu]
    return shlex.join(args)


def _flag_args(req: dict, fields: dict) -> list:
    """The flags of the fields that declare one (request.cli_flags), for the values the core would not take
    without them; a JSON object (a PEFT adapter config) travels as the file the command names."""
    args = []
    for path, flag in cli_flags().items():
        value = at_path(req, path)
        if value is None or path == "gpu.memory_gib" or value == _absent(req, path, fields):
            continue
        if fields.get(path, {}).get("type") == "object":
            args += [flag, "adapter_config.json"]
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, _text(value)]
    return args


def markdown(result: dict) -> str:
    """The result's breakdown as a Markdown table (the page's "Export as Markdown")."""
    from ..units import GiB
    lines = [f"**{result['model']['name']}** on **{result['gpu']['name']}** "
             f"({result['gpu']['memory_bytes'] / GiB:.2f} GiB): {result['device_total_bytes'] / GiB:.2f} GiB, "
             f"{result.get('verdict', 'fits' if result.get('fits') else 'does not fit')}", "",
             "| term | GiB | bytes |", "| --- | ---: | ---: |"]

    def walk(node, depth):
        name = ("&nbsp;" * 4 * depth) + str(node["name"]).replace("|", "\\|")
        lines.append(f"| {name} | {node['bytes'] / GiB:.2f} | {node['bytes']:,} |")
        if depth < 2:
            for child in node.get("children", []):
                walk(child, depth + 1)
    walk(result["breakdown"], 0)
    band = (result.get("error_band") or {}).get("basis")
    if band:
        lines += ["", f"Error band: {band}"]
    return "\n".join(lines) + "\n"
