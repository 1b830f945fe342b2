"""The command line's flags and the JSON request they make (the same request the page sends)."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from ..request.jsontext import MAX_JSON_CHARS, check_limits

# The argument group of each request part's flags (the flags themselves are the fields' declarations).
_GROUPS = {"precision": "workload", "workload": "workload",
           "framework": "software versions (the rules of docs/method.md#versions)",
           "parallelism": "multi-GPU layout (training)"}
_TYPES = {"int": int, "number": float, "text": str, "choice": str, "names": str, "ints": str, "object": str}


def add_model_args(p) -> None:
    g = p.add_argument_group("model (one of)")
    g.add_argument("--model", help="catalog id (see `models`)")
    g.add_argument("--hf-config", metavar="FILE", help="a Hugging Face config.json")
    g.add_argument("--params", type=float, default=None, help="a model given by its parameter count (model states only)")
    g.add_argument("--largest-layer-params", type=float, default=None, help="with --params: the largest module's parameters")


def add_field_args(p, parts) -> None:
    """One flag per request field of ``parts`` that declares one (schema.Field cli), its type from the field and
    its help from the field's doc and default. A flag not given leaves the field out of the request, which then
    takes the schema's default: no default is written twice. The dest is the field's request path."""
    from ..request.parse import outside_fields
    groups: dict = {}
    for path, f, default in outside_fields():
        part = path.split(".")[0]
        if not f.cli or part not in parts:
            continue
        title = _GROUPS[part]
        g = groups[title] if title in groups else groups.setdefault(title, p.add_argument_group(title))
        help_text = _help(path, f, default)
        if f.kind == "bool":
            g.add_argument(f.cli, dest=path, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kind = int if f.kind == "choice" and all(isinstance(c, int) for c in f.choices) else _TYPES[f.kind]
        metavar = "FILE" if f.kind == "object" else f.cli.lstrip("-").upper().replace("-", "_")
        g.add_argument(f.cli, dest=path, type=kind, default=None, metavar=metavar, help=help_text)


def _help(path: str, f, default) -> str:
    """The field's doc, its choices (when there are a few) and the schema's default."""
    notes = [f"one of {', '.join(map(str, f.choices))}"] if f.kind == "choice" and len(f.choices) <= 12 else []
    if default not in (None, ""):
        notes.append(f"default {','.join(map(str, default)) if isinstance(default, tuple) else default}")
    return (f.doc or path) + (f" ({'; '.join(notes)})" if notes else "")


def add_workload_args(p, serving: bool = False) -> None:
    add_field_args(p, ("precision", "workload", "framework"))
    v = p.add_argument_group(_GROUPS["framework"])
    v.add_argument("--cuda-context-mib", type=float, default=None, help="memory outside the allocator, MiB "
                                                                         "(default: by torch version)")


def add_layout_args(p) -> None:
    add_field_args(p, ("parallelism",))
    g = p.add_argument_group(_GROUPS["parallelism"])
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe option (parallelism.options), e.g. --option reduce_bucket_size=2e8")


# Short flags of the serving verb, as the engines spell them: --tp and --pp map to the engine's own
# field (vLLM tensor_parallel_size, SGLang tp_size); --ngl and --flash-attn are llama.cpp's.
SERVE_ALIASES = {"--tp": ("tensor_parallel_size", "tp_size"), "--pp": ("pipeline_parallel_size", "pp_size"),
                 "--dp": ("data_parallel_size", None)}


def add_serve_args(p) -> None:
    """One flag per serving field (--max-model-len, --gpu-memory-utilization, --n-ctx, ...), read from
    the schema, so the CLI accepts exactly what the request does."""
    from ..schema import _fields
    from ..serving.config import Serving
    g = p.add_argument_group("serving (engine settings; see docs/serving.md)")
    kinds = {"int": int, "number": float, "text": str, "choice": str}
    for name, f, _ in _fields(Serving):
        flag = "--" + name.replace("_", "-")
        if name == "flash_attn":
            g.add_argument(flag, dest="serve_flash_attn", nargs="?", const="on", default=None,
                           help="llama.cpp: on (when given without a value), off or auto")
            continue
        help_text = f.doc or name
        if f.engines:
            help_text += f" [{', '.join(f.engines)}]"
        if f.kind == "bool":
            g.add_argument(flag, dest=f"serve_{name}", action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        elif f.kind == "choice" and all(isinstance(c, int) for c in f.choices):
            g.add_argument(flag, dest=f"serve_{name}", type=int, default=None, help=help_text)
        else:
            g.add_argument(flag, dest=f"serve_{name}", type=kinds[f.kind], default=None, help=help_text)
    for flag in SERVE_ALIASES:
        g.add_argument(flag, dest=f"alias_{flag[2:]}", type=int, default=None, help="tensor/pipeline/data degree")
    g.add_argument("--ngl", dest="serve_n_gpu_layers", type=int, default=None, help="llama.cpp -ngl")


def serve_part(a) -> dict:
    from ..schema import _fields
    from ..serving.config import Serving
    w = {"mode": "serve"}
    for name, _, _ in _fields(Serving):
        value = getattr(a, f"serve_{name}", None)
        if value is not None:
            w[name] = _whole(value) if isinstance(value, float) and name.endswith(("_bytes", "_tokens")) else value
    engine = w.get("engine", "vllm")
    for flag, (vllm_name, sglang_name) in SERVE_ALIASES.items():
        value = getattr(a, f"alias_{flag[2:]}", None)
        if value is not None:
            target = sglang_name if engine == "sglang" else vllm_name
            if target is None:
                target = vllm_name
            w[target] = value
    return w


def add_gpu_args(p) -> None:
    from ..request.parse import DEFAULT_GPU, cli_flags
    g = p.add_argument_group("GPU")
    g.add_argument("--gpu", default=DEFAULT_GPU, help="catalog id (see `gpus`)")
    g.add_argument(cli_flags()["gpu.memory_gib"], dest="gpu_memory_gib", type=float, default=None,
                   help="a custom GPU's memory instead of --gpu")


def read_text_file(path: str, option: str) -> tuple[str, str | None]:
    """Read at most MAX_JSON_CHARS characters of UTF-8 text; a longer file (or /dev/zero) is refused
    without reading the rest."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(4 * MAX_JSON_CHARS + 4)          # UTF-8 takes at most 4 bytes a character
    except OSError as exc:
        return "", f"{option}: cannot read {printable(path)}: {printable(exc.strerror or str(exc))}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"{option}: {printable(path)} is not UTF-8 text (byte {exc.start})"
    if len(text) > MAX_JSON_CHARS:
        return "", f"{option}: {printable(path)} is longer than {MAX_JSON_CHARS:,} characters"
    return text, None


def printable(text) -> str:
    """``text`` with control characters, lone surrogates and other unprintable characters escaped,
    so that a name from a config file cannot move the cursor, retitle or clear the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\n" else ascii(ch)[1:-1] for ch in str(text))


def _whole(x: float):
    return int(x) if x == int(x) else x


def model_part(a) -> tuple[dict, str | None]:
    if a.hf_config:
        text, problem = read_text_file(a.hf_config, "--hf-config")
        return ({"hf_config": text}, problem)          # parsed by the core, bounded in size and depth
    if a.params is not None:
        model = {"parameters": _whole(a.params)}
        if a.largest_layer_params is not None:
            model["largest_layer_parameters"] = _whole(a.largest_layer_params)
        return {"model": model}, None
    if a.model:
        return {"model": a.model}, None
    return {}, "give --model ID, --hf-config FILE or --params N"


def layout_part(a) -> tuple[dict, str | None]:
    """The recipe's options (--option KEY=VALUE); the layout's fields come with the other flags (field_part)."""
    options = {}
    for item in a.option:
        key, sep, value = item.partition("=")
        if not sep:
            return {}, f"--option {printable(item)}: give KEY=VALUE"
        try:
            check_limits(value, f"--option {printable(key)[:40]}")     # the API's limits, before parsing
        except InputError as exc:
            return {}, str(exc)
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value            # not JSON: the text itself, checked by the option's field
    if options:
        return {"options": {k: _whole(v) if isinstance(v, float) else v for k, v in options.items()}}, None
    return {}, None


def field_part(a) -> tuple[dict, str | None]:
    """The request's fields from the flags given (add_field_args), each at its path."""
    from ..request.parse import outside_fields
    req: dict = {}
    for path, f, _ in outside_fields():
        value = getattr(a, path, None)
        if value is None:
            continue
        value, problem = _flag_value(f, value)
        if problem:
            return {}, problem
        *parents, last = path.split(".")
        node = req
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return req, None


def _flag_value(f, value) -> tuple[object, str | None]:
    """A flag's text as the request's JSON value: comma lists, whole numbers as integers, a JSON file read."""
    if f.kind == "number":
        return _whole(value), None
    if f.kind == "names" and isinstance(value, str) and value not in f.choices:
        return [t for t in value.split(",") if t], None
    if f.kind == "ints" and isinstance(value, str):
        try:
            return [int(x) for x in value.split(",")], None
        except ValueError:
            return None, f"{f.cli}: give whole numbers separated by commas"
    if f.kind == "object" and isinstance(value, str):
        return read_json_file(value, f.cli)
    return value, None


def read_json_file(path: str, option: str) -> tuple[object, str | None]:
    """A JSON file such as adapter_config.json, bounded like --hf-config; the core checks its fields."""
    text, problem = read_text_file(path, option)
    if problem:
        return None, problem
    from ..errors import InputError
    from ..request.jsontext import parse_json
    try:
        return parse_json(text, option), None
    except InputError as exc:
        return None, printable(f"{option}: {exc.message}")


def build_request(a) -> tuple[dict, str | None]:
    req: dict = {"schema": 1}
    model, problem = model_part(a)
    if problem:
        return {}, problem
    req.update(model)
    fields, problem = field_part(a)
    if problem:
        return {}, problem
    req.update(fields)
    if getattr(a, "cuda_context_mib", None) is not None:
        req.setdefault("framework", {})["cuda_context_bytes"] = int(a.cuda_context_mib * 2 ** 20)
    req["gpu"] = {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu
    req["solve"] = getattr(a, "solve", False)
    options, problem = layout_part(a)
    if problem:
        return {}, problem
    if options:
        req.setdefault("parallelism", {}).update(options)
    return req, None
