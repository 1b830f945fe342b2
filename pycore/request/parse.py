"""Parse and validate a JSON request (schema 1) into the core's frozen dataclasses.

Every error names the field by the path the user wrote. Unknown fields are errors everywhere,
except inside ``hf_config``, which is a config.json and carries many fields that do not matter
for memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import import_module
from typing import TYPE_CHECKING

from ..data.catalog import catalog_gpu, catalog_model, catalog_quantization
from ..errors import InputError, MAX_DIMENSION, MAX_TOKENS, require_bool, require_int
from .jsontext import MAX_JSON_CHARS, MAX_JSON_DEPTH, parse_json
from ..model.hfconfig import read_hf_config
from ..model.spec import ModelSize, ModelSpec
from ..model.layout import Parallelism
from ..parallel.options import RECIPE_OPTIONS
from ..schema import build, declared, describe, integer, join_path, number, text
from ..model.formats import NONE, WeightFormat, read_quantization
from ..units import GiB
from ..training.workload import AUTOCAST_WEIGHTS, MODES, Framework, Hardware, Precision, Workload, implied_precision, weight_dtypes

if TYPE_CHECKING:                       # loaded on a request's first use (_search_query)
    from ..plan.fit import FitQuery
    from ..plan.layouts import PlanQuery
    from ..plan.sweep import SweepQuery

SCHEMA = 1
DEFAULT_GPU = "h100-sxm-80gb"
DEFAULT_MODEL = "llama-3.1-8b"          # the page's model when its link names none (not the core's: it needs one)
_TOP_KEYS = ("schema", "model", "hf_config", "workload", "precision", "framework", "parallelism", "gpu", "solve",
             "plan", "measured", "fit", "sweep")
_REQUIRED_DIMENSIONS = ("n_layers", "hidden_size", "n_heads", "vocab_size")
_GPU_MEMORY_GIB = number(0.001, 2 ** 20, url="mem", cli="--gpu-memory-gib")
_GPU_MEMORY_BYTES = integer(1, 2 ** 50)
_NAME = text(100)


@dataclass(frozen=True)
class Request:
    model: ModelSpec | ModelSize
    model_id: str
    workload: Workload
    precision: Precision
    framework: Framework
    hardware: Hardware
    parallelism: Parallelism
    gpu_id: str
    solve: bool
    plan: PlanQuery | None = None
    fit: FitQuery | None = None             # the cheapest combinations of changes that fit
    sweep: SweepQuery | None = None         # memory against batch, length or GPUs
    serving: object | None = None           # workload mode "serve": a serving.config.Serving
    checkpoint: WeightFormat = NONE         # the config.json's quantization_config


def _unknown(where: str, given: dict, allowed) -> None:
    for key in given:
        if key not in allowed:
            raise InputError(join_path(where, key), "is not a known field; known: " + ", ".join(sorted(allowed)))


def _hf_config(value, where: str, name: str = "") -> tuple[ModelSpec, WeightFormat]:
    """A config.json given as an object, or as its text (parsed here, bounded in size and depth),
    with the weight format its quantization_config declares."""
    if isinstance(value, str):
        value = parse_json(value, where)
    spec = read_hf_config(value, name, prefix=where + ".")
    return spec, read_quantization(value, where)


def parse_model(raw, hf_config) -> tuple[ModelSpec, str]:
    model, model_id, _ = parse_model_and_format(raw, hf_config)
    return model, model_id


def parse_model_and_format(raw, hf_config) -> tuple[ModelSpec | ModelSize, str, WeightFormat]:
    if hf_config is not None:
        if raw is not None:
            raise InputError("hf_config", "give either model or hf_config, not both")
        spec, fmt = _hf_config(hf_config, "hf_config")
        return spec, "custom", fmt
    if isinstance(raw, str):
        return catalog_model(raw), raw, catalog_quantization(raw)
    if isinstance(raw, dict):
        if "hf_config" in raw:
            _unknown("model", raw, ("hf_config", "name"))
            name = _NAME.check("model.name", raw["name"]) if "name" in raw else ""
            spec, fmt = _hf_config(raw["hf_config"], "model.hf_config", name)
            return spec, "custom", fmt
        if "dimensions" in raw:
            _unknown("model", raw, ("dimensions",))
            return parse_dimensions(raw["dimensions"]), "custom", NONE
        if "parameters" in raw:
            return build(ModelSize, raw, "model"), "custom", NONE
        raise InputError("model", "must be a catalog id, {\"hf_config\": {...}}, {\"dimensions\": {...}} or "
                                  "{\"parameters\": N}")
    raise InputError("model", "is required: a catalog id, {\"hf_config\": {...}} or {\"dimensions\": {...}}")


def parse_dimensions(dims) -> ModelSpec:
    """A model given by its dimensions; ffn, KV heads and head size default as in a Llama-style decoder."""
    where = "model.dimensions"
    if not isinstance(dims, dict):
        raise InputError(where, "must be a JSON object")
    missing = [k for k in _REQUIRED_DIMENSIONS if k not in dims]
    if missing:
        raise InputError(f"{where}.{missing[0]}", "is required")
    d = {k: v for k, v in dims.items() if k != "name"}
    name = _NAME.check(where + ".name", dims["name"]) if "name" in dims else "custom"
    d.setdefault("family", "decoder")
    h = integer(1, MAX_DIMENSION).check(where + ".hidden_size", d["hidden_size"])
    heads = integer(1, MAX_DIMENSION).check(where + ".n_heads", d["n_heads"])
    if "ffn_size" not in d and 4 * h > MAX_DIMENSION:
        raise InputError(where + ".hidden_size", f"must be at most {MAX_DIMENSION // 4:,} when ffn_size is not given "
                                                 "(it defaults to 4 x hidden_size)")
    d.setdefault("ffn_size", 4 * h)
    d.setdefault("n_kv_heads", heads)
    d.setdefault("head_dim", max(1, h // heads))
    if d.get("family") == "gpt2":
        d.setdefault("learned_positions", True)
    if "warnings" in d:
        raise InputError(where + ".warnings", "is not a known field")
    try:
        return build(ModelSpec, d, where, name=name)
    except InputError as exc:
        if exc.field.startswith("model.") and not exc.field.startswith(where):
            raise InputError(where + exc.field[len("model"):], exc.message) from None
        raise


def parse_gpu(raw) -> tuple[Hardware, str]:
    if raw is None:
        raw = DEFAULT_GPU
    if isinstance(raw, str):
        entry = catalog_gpu(raw)
        return Hardware(entry["name"], entry["memory_bytes"]), raw
    if isinstance(raw, dict):
        _unknown("gpu", raw, ("memory_bytes", "memory_gib", "name"))
        name = _NAME.check("gpu.name", raw["name"]) if "name" in raw else "custom GPU"
        if "memory_bytes" in raw:
            mem = _GPU_MEMORY_BYTES.check("gpu.memory_bytes", raw["memory_bytes"])
        elif "memory_gib" in raw:
            mem = int(_GPU_MEMORY_GIB.check("gpu.memory_gib", raw["memory_gib"]) * GiB)
        else:
            raise InputError("gpu.memory_gib", "a custom GPU needs memory_gib or memory_bytes")
        return Hardware(name, mem), "custom"
    raise InputError("gpu", "must be a catalog id or {\"memory_gib\": N}")


def parse_parallelism(raw) -> Parallelism:
    """The layout, with the options of its recipe (each recipe declares its own)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError("parallelism", "must be a JSON object")
    rest = {k: v for k, v in raw.items() if k != "options"}
    par = build(Parallelism, rest, "parallelism", options=None)
    options = build(RECIPE_OPTIONS[par.recipe], raw.get("options"), "parallelism.options")
    return replace(par, options=options)


def _serving_request(data: dict, model, model_id: str, checkpoint: WeightFormat, hardware, gpu_id: str,
                     raw: dict) -> Request:
    """Workload mode "serve": the engine's own settings, checked against the engine named."""
    for key in ("parallelism", "plan", "precision", "fit", "sweep"):
        if data.get(key) is not None:
            raise InputError(key, "does not apply to serving; the engine's settings go in workload")
    if isinstance(model, ModelSize):
        raise InputError("model", "serving needs the model's dimensions or config.json, not only its size")
    from ..serving.config import Serving, check_fields_for_engine     # loaded on first use
    rest = {k: v for k, v in raw.items() if k != "mode"}
    serving = build(Serving, rest, "workload")
    check_fields_for_engine(rest, serving.engine)
    return Request(model=model, model_id=model_id, workload=Workload(mode="inference"), precision=Precision(),
                   framework=build(Framework, data.get("framework"), "framework"), hardware=hardware,
                   parallelism=Parallelism(), gpu_id=gpu_id, solve=require_bool("solve", data.get("solve", False)),
                   serving=serving, checkpoint=checkpoint)


# A Hugging Face model id (owner/name, as the Hub allows them: letters, digits, '-', '_', '.', at most
# 96 each) and where its config.json is fetched from; the page's CSP allows only these origins.
HUB = {"id_pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$",
       "config_url": "https://huggingface.co/{id}/resolve/main/config.json",
       "adapter_url": "https://huggingface.co/{id}/resolve/main/adapter_config.json",
       "origins": ["https://huggingface.co", "https://*.hf.co"]}


def request_schema() -> dict:
    """What the page needs to build and check a request: every field's type, range, choices,
    labels, default and the modes it applies to, keyed by its path in the request."""
    from ..check.parse import MAX_TEXT_CHARS
    from ..plan.fit import FitQuery
    from ..plan.layouts import PlanQuery
    from ..plan.sweep import SweepQuery
    from ..serving.config import Serving
    fields = {**_merged(describe(Workload, "workload"), describe(Serving, "workload")), **describe(Precision, "precision"),
              **describe(Parallelism, "parallelism"), **describe(Framework, "framework"),
              **{k: v for recipe, cls in RECIPE_OPTIONS.items()
                 for k, v in _recipe_fields(recipe, describe(cls, "parallelism.options")).items()},
              **describe(PlanQuery, "plan"), **describe(FitQuery, "fit"),
              **describe(SweepQuery, "sweep"), "gpu.memory_gib": _GPU_MEMORY_GIB.describe()}
    return {"schema": SCHEMA, "fields": fields, "defaults": {"gpu": DEFAULT_GPU, "model": DEFAULT_MODEL},
            "implied": implied_fields(),
            "weights_by_mode": {mode: list(weight_dtypes(mode)) for mode in MODES},
            "limits": {"max_json_chars": MAX_JSON_CHARS, "max_json_depth": MAX_JSON_DEPTH, "max_tokens": MAX_TOKENS,
                       "max_measured_chars": MAX_TEXT_CHARS},
            "hub": HUB, "url_params": url_params()}


def outside_fields() -> tuple:
    """(request path, Field, default) of every field with an outside name (a URL parameter or a CLI flag),
    in the order links list them: the one table links.py, cli/args.py and the page derive theirs from."""
    from ..plan.layouts import PlanQuery
    classes = (("precision", Precision), ("workload", Workload), ("framework", Framework),
               ("parallelism", Parallelism), ("plan", PlanQuery))
    rows = [row for where, cls in classes for row in declared(cls, where)] + [("gpu.memory_gib", _GPU_MEMORY_GIB, None)]
    return tuple(row for row in rows if row[1].url or row[1].cli)


def url_params() -> dict:
    """URL parameter -> request path: the fields that declare one, then the serving workload's own fields,
    which keep their engine's names in links (?mode=serve&engine=vllm&max_model_len=32768)."""
    from ..serving.config import Serving
    out = {f.url: path for path, f, _ in outside_fields() if f.url}
    shared = {path for path, _, _ in declared(Workload, "workload")}
    for path, f, _ in declared(Serving, "workload"):
        if path not in shared:
            out.setdefault(f.url or path[len("workload."):], path)
    return out


def cli_flags() -> dict:
    """Request path -> command-line flag (a flag without a value for a boolean), for the estimate verbs;
    the serve verb's flags are the serving fields' own names (cli/args.py add_serve_args)."""
    return {path: f.cli for path, f, _ in outside_fields() if f.cli}


def implied_fields() -> dict:
    """The defaults another field's value changes (workload.implied_precision), for the page's notes."""
    return {"precision.weights": {"when": "precision.autocast", "value": AUTOCAST_WEIGHTS}}


def _merged(workload: dict, serving: dict) -> dict:
    """Workload and serving fields in one map; a path both have (cache_implementation: the hf engine
    and inference share transformers' name) applies to the modes of both, and to the engines of the
    serving one."""
    out = dict(workload)
    for path, f in serving.items():
        if path in out:
            out[path] = {**out[path], "modes": list(out[path].get("modes", [])) + f["modes"], "engines": f["engines"]}
        else:
            out[path] = f
    return out


def _recipe_fields(recipe: str, fields: dict) -> dict:
    """Options are keyed by recipe: parallelism.options.<name> may differ between recipes."""
    return {k.replace("parallelism.options.", f"parallelism.options[{recipe}]."): {**v, "recipe": recipe}
            for k, v in fields.items()}


def parse_request(data) -> Request:
    if not isinstance(data, dict):
        raise InputError("request", "must be a JSON object")
    _unknown("", data, _TOP_KEYS)
    schema = require_int("schema", data.get("schema", SCHEMA), minimum=0, maximum=1_000_000)
    if schema != SCHEMA:
        raise InputError("schema", f"this version reads schema {SCHEMA}, got {schema}")
    model, model_id, checkpoint = parse_model_and_format(data.get("model"), data.get("hf_config"))
    hardware, gpu_id = parse_gpu(data.get("gpu"))
    raw_workload = data.get("workload")
    if isinstance(raw_workload, dict) and raw_workload.get("mode") == "serve":
        return _serving_request(data, model, model_id, checkpoint, hardware, gpu_id, raw_workload)
    workload = build(Workload, raw_workload, "workload")
    if workload.batch_size * workload.seq_len > MAX_TOKENS:
        given = data.get("workload") or {}
        field = "workload.seq_len" if "seq_len" in given else "workload.batch_size"
        raise InputError(field, f"batch_size x seq_len must be at most {MAX_TOKENS:,}; got "
                                f"{workload.batch_size:,} x {workload.seq_len:,}")
    raw_precision = data.get("precision")
    return Request(model=model, model_id=model_id, workload=workload,
                   precision=build(Precision, raw_precision, "precision", **implied_precision(raw_precision)),
                   framework=build(Framework, data.get("framework"), "framework"),
                   hardware=hardware, parallelism=parse_parallelism(data.get("parallelism")),
                   gpu_id=gpu_id, solve=require_bool("solve", data.get("solve", False)),
                   plan=_search_query(data, "plan"), fit=_search_query(data, "fit"), sweep=_search_query(data, "sweep"))


# Each search's query type lives with its search (pycore/plan/), which a request loads only when it asks
# for that search: an estimate does not pay for importing them (the page's first answer comes sooner).
_SEARCH_QUERIES = {"plan": ("..plan.layouts", "PlanQuery"), "fit": ("..plan.fit", "FitQuery"),
                   "sweep": ("..plan.sweep", "SweepQuery")}


def _search_query(data: dict, key: str):
    if data.get(key) is None:
        return None
    module, name = _SEARCH_QUERIES[key]
    return build(getattr(import_module(module, __package__), name), data[key], key)
