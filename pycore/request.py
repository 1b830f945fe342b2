"""Parse and validate a JSON request (schema 1) into the core's frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .catalog import catalog_gpu, catalog_model
from .errors import InputError, MAX_DIMENSION, require_bool, require_int, require_number
from .model.hfconfig import read_hf_config
from .model.spec import DIMENSION_FIELDS, ModelSpec
from .units import GiB
from .parallel.zero import Parallelism
from .workload import Framework, Hardware, Precision, Workload

SCHEMA = 1
DEFAULT_GPU = "h100-sxm-80gb"
_WORKLOAD_KEYS = {"mode", "batch_size", "seq_len", "new_tokens", "optimizer", "attention",
                  "gradient_checkpointing", "lora", "qlora_double_quant"}
_TOP_KEYS = {"schema", "model", "hf_config", "workload", "precision", "framework", "parallelism", "gpu", "solve"}


@dataclass(frozen=True)
class Request:
    model: ModelSpec
    model_id: str
    workload: Workload
    precision: Precision
    framework: Framework
    hardware: Hardware
    parallelism: Parallelism
    gpu_id: str
    solve: bool


def _obj(field: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(field, "must be a JSON object")
    return value


def _unknown(field: str, given: dict, allowed) -> None:
    for key in given:
        if key not in allowed:
            raise InputError(f"{field}.{key}" if field else str(key)[:60],
                             "is not a known field; known: " + ", ".join(sorted(allowed)))


def parse_model(raw, hf_config) -> tuple[ModelSpec, str]:
    if hf_config is not None:
        return read_hf_config(hf_config), "custom"
    if isinstance(raw, str):
        return catalog_model(raw), raw
    if isinstance(raw, dict):
        if "hf_config" in raw:
            return read_hf_config(raw["hf_config"], str(raw.get("name", ""))[:100]), "custom"
        if "dimensions" in raw:
            dims = _obj("model.dimensions", raw["dimensions"])
            _unknown("model.dimensions", dims, set(DIMENSION_FIELDS) | {"name"})
            missing = [k for k in ("n_layers", "hidden_size", "n_heads", "vocab_size") if k not in dims]
            if missing:
                raise InputError("model.dimensions." + missing[0], "is required")
            d = dict(dims)
            d.setdefault("name", "custom")
            d.setdefault("family", "decoder")
            h = require_int("model.dimensions.hidden_size", d["hidden_size"], maximum=MAX_DIMENSION)
            heads = require_int("model.dimensions.n_heads", d["n_heads"], maximum=MAX_DIMENSION)
            d.setdefault("ffn_size", 4 * h)
            d.setdefault("n_kv_heads", heads)
            d.setdefault("head_dim", max(1, h // heads))
            if d.get("family") == "gpt2":
                d.setdefault("learned_positions", True)
            if not isinstance(d["name"], str):
                raise InputError("model.dimensions.name", "must be a string")
            try:
                return ModelSpec(**d), "custom"
            except TypeError as exc:
                raise InputError("model.dimensions", f"bad value: {exc}"[:200]) from None
        raise InputError("model", "must be a catalog id, {\"hf_config\": {...}} or {\"dimensions\": {...}}")
    raise InputError("model", "is required: a catalog id, {\"hf_config\": {...}} or {\"dimensions\": {...}}")


def parse_workload(raw: dict) -> Workload:
    raw = _obj("workload", raw)
    _unknown("workload", raw, _WORKLOAD_KEYS)
    lora = _obj("workload.lora", raw.get("lora"))
    _unknown("workload.lora", lora, {"rank", "alpha", "targets"})
    targets = lora.get("targets")
    if isinstance(targets, list):
        if len(targets) > 64:
            raise InputError("workload.lora.targets", "at most 64 module names")
        targets = tuple(targets)
    elif targets not in (None, "all-linear"):
        raise InputError("workload.lora.targets", "must be a list of module names or 'all-linear'")
    kw = {k: raw[k] for k in ("mode", "batch_size", "seq_len", "new_tokens", "optimizer", "attention",
                              "gradient_checkpointing", "qlora_double_quant") if k in raw}
    for k in ("batch_size", "seq_len", "new_tokens"):
        if k in kw and isinstance(kw[k], float) and kw[k] == kw[k] and abs(kw[k]) < 1e18 and kw[k].is_integer():
            kw[k] = int(kw[k])
    if "rank" in lora:
        kw["lora_rank"] = lora["rank"]
    if "alpha" in lora:
        kw["lora_alpha"] = lora["alpha"]
    kw["lora_targets"] = targets
    return Workload(**kw)


def parse_precision(raw: dict) -> Precision:
    raw = _obj("precision", raw)
    _unknown("precision", raw, {"weights", "autocast", "kv_cache"})
    return Precision(**raw)


def parse_framework(raw: dict) -> Framework:
    raw = _obj("framework", raw)
    _unknown("framework", raw, {f.name for f in fields(Framework)})
    return Framework(**raw)


def parse_parallelism(raw) -> Parallelism:
    raw = _obj("parallelism", raw)
    _unknown("parallelism", raw, {"data_parallel", "zero_stage"})
    return Parallelism(**raw)


def parse_gpu(raw) -> tuple[Hardware, str]:
    if raw is None:
        raw = DEFAULT_GPU
    if isinstance(raw, str):
        entry = catalog_gpu(raw)
        return Hardware(entry["name"], entry["memory_bytes"]), raw
    if isinstance(raw, dict):
        _unknown("gpu", raw, {"memory_bytes", "memory_gib", "name"})
        name = raw.get("name", "custom GPU")
        if not isinstance(name, str):
            raise InputError("gpu.name", "must be a string")
        if "memory_bytes" in raw:
            mem = require_int("gpu.memory_bytes", raw["memory_bytes"], minimum=1, maximum=2 ** 50)
        elif "memory_gib" in raw:
            mem = int(require_number("gpu.memory_gib", raw["memory_gib"], minimum=0.001, maximum=2 ** 20) * GiB)
        else:
            raise InputError("gpu.memory_gib", "a custom GPU needs memory_gib or memory_bytes")
        return Hardware(name[:80], mem), "custom"
    raise InputError("gpu", "must be a catalog id or {\"memory_gib\": N}")


def parse_request(data) -> Request:
    if not isinstance(data, dict):
        raise InputError("request", "must be a JSON object")
    _unknown("", data, _TOP_KEYS)
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise InputError("schema", f"this version reads schema {SCHEMA}, got {str(schema)[:20]}")
    model, model_id = parse_model(data.get("model"), data.get("hf_config"))
    hardware, gpu_id = parse_gpu(data.get("gpu"))
    return Request(model=model, model_id=model_id, workload=parse_workload(data.get("workload")),
                   precision=parse_precision(data.get("precision")), framework=parse_framework(data.get("framework")),
                   hardware=hardware, parallelism=parse_parallelism(data.get("parallelism")), gpu_id=gpu_id, solve=require_bool("solve", data.get("solve", False)))
