"""What the integrations share: the request read from live torch objects (model, PEFT adapter,
quantisation, optimizer, device), the estimate, and the stop before step 1. torch is imported inside the
functions that need it; the core never imports this package."""

from __future__ import annotations

import json
import logging
import math
import warnings

from ..api import estimate_dict
from ..runconfig.launchers import fsdp_layout, read_deepspeed
from ..runconfig.reading import Reading
from ..units import GiB

logger = logging.getLogger("pycore.preflight")
ON_RISK = ("raise", "warn")
# transformers' config._attn_implementation -> workload.attention (flex and kernels-hub attention save
# what SDPA saves: no s x s scores)
_ATTENTION = {"sdpa": "sdpa", "flash_attention_2": "flash", "flash_attention_3": "flash", "eager": "eager"}
_DTYPES = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}
# The largest terms a refusal names (the breakdown of the peak, largest first).
TOP_TERMS = 4


class PreflightError(RuntimeError):
    """The run does not fit: the message has the breakdown's largest terms and the first plan that fits;
    ``result`` is the estimate (the JSON API's result object, with the request under "request")."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def full_numel(p) -> int:
    """A parameter's full element count: ZeRO-3 keeps a 0-element local shard and the full shape in
    ``ds_shape`` (deepspeed/runtime/zero/partition_parameters.py); FSDP1's FlatParameter its unsharded
    size in ``_unpadded_unsharded_size``; a DTensor (FSDP2) reports its global shape already."""
    shape = getattr(p, "ds_shape", None)
    if shape is None:
        shape = getattr(p, "_unpadded_unsharded_size", None)
    return math.prod(shape) if shape is not None else p.numel()


def unwrap(model):
    """The model inside DDP / FSDP / DeepSpeed engine wrappers (``.module``)."""
    seen = 0
    while hasattr(model, "module") and not hasattr(model, "config") and seen < 8:
        model, seen = model.module, seen + 1
    return model


def model_part(model, notes: list) -> dict:
    """The request's model, mode, LoRA settings, weights' dtype, attention and checkpointing, read from
    the model object (a transformers PreTrainedModel, or a peft PeftModel around one)."""
    model = unwrap(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError("pre-flight reads a transformers model (one with .config); got " + type(model).__name__)
    hf_config = json.loads(json.dumps(config.to_dict(), default=str))
    workload = {"mode": "full"}
    lora = _lora(model, notes)
    if lora is not None:
        workload["mode"] = "lora"
        workload["lora"] = lora
    quant = _quantization(base, config)
    if quant is not None:
        if quant.get("load_in_4bit") and lora is not None:
            workload["mode"] = "qlora"
            workload["qlora_double_quant"] = bool(quant.get("bnb_4bit_use_double_quant", False))
        else:
            notes.append(f"quantization {quant.get('quant_method', '?')} without a 4-bit LoRA is not modelled for "
                         "training; estimated over 16-bit weights")
    workload["attention"] = _ATTENTION.get(str(getattr(config, "_attn_implementation", "sdpa")), "sdpa")
    # transformers 5.x renames is_gradient_checkpointing to is_activation_checkpointing (the old name warns)
    checkpointing = getattr(type(base), "is_activation_checkpointing", None)
    workload["gradient_checkpointing"] = bool(getattr(base, "is_activation_checkpointing" if checkpointing
                                                      else "is_gradient_checkpointing", False))
    params = sum(full_numel(p) for p in base.parameters())
    name = str(getattr(config, "_name_or_path", "") or type(base).__name__)[:100]
    return {"hf_config": hf_config, "name": name, "workload": workload, "dtype": model_dtype(base),
            "parameters": params}


def model_dtype(model) -> str:
    """The dtype most of the model's floating-point parameters are stored in (by full element count)."""
    counts: dict = {}
    for p in model.parameters():
        name = _DTYPES.get(str(p.dtype))
        if name:
            counts[name] = counts.get(name, 0) + full_numel(p)
    return max(counts, key=counts.get) if counts else "fp32"


def _lora(model, notes: list):
    configs = getattr(model, "peft_config", None)
    if not configs:
        return None
    active = getattr(model, "active_adapter", "default")
    if isinstance(active, (list, tuple)):
        active = active[0]
    cfg = configs.get(active) or next(iter(configs.values()))
    if str(getattr(cfg, "peft_type", "")).split(".")[-1].upper() != "LORA":
        notes.append(f"PEFT method {getattr(cfg, 'peft_type', '?')} is not modelled; estimated as LoRA")
    targets = getattr(cfg, "target_modules", None)
    if isinstance(targets, (set, list, tuple)):
        targets = sorted(str(t) for t in targets)
    elif isinstance(targets, str) and targets != "all-linear":
        notes.append(f"target_modules {targets!r} is a pattern; estimated over the attention projections")
        targets = None
    out = {"rank": int(cfg.r), "alpha": float(getattr(cfg, "lora_alpha", 2 * cfg.r))}
    if targets:
        out["targets"] = targets
    return out


def _quantization(base, config):
    q = getattr(config, "quantization_config", None)
    if q is None:
        quantizer = getattr(base, "hf_quantizer", None)
        q = getattr(quantizer, "quantization_config", None)
    if q is None:
        return None
    return q.to_dict() if hasattr(q, "to_dict") else dict(q)


def precision_part(dtype: str, mixed: str | None, mode: str, notes: list) -> dict:
    """Weights' dtype and autocast: autocast applies over fp32 weights; over 16-bit weights the run is
    that dtype throughout."""
    if mixed and dtype == "fp32" and mode != "qlora":
        return {"weights": "fp32", "autocast": mixed}
    if mixed and dtype != mixed and dtype != "fp32":
        notes.append(f"weights are {dtype} and mixed precision {mixed}: estimated in {dtype}")
    return {"weights": dtype}


def optimizer_name(optimizer, notes: list) -> str | None:
    """workload.optimizer of a live optimizer (torch.optim, bitsandbytes, transformers' Adafactor), through
    accelerate's and Lightning's wrappers."""
    inner = optimizer
    for attr in ("optimizer", "_optimizer"):
        inner = getattr(inner, attr, inner)
    cls, module = type(inner).__name__, type(inner).__module__
    defaults = getattr(inner, "defaults", {}) or {}
    if module.startswith("torch.optim") and cls in ("AdamW", "Adam"):
        if defaults.get("fused"):
            return "adamw_fused"
        return "adamw_single" if defaults.get("foreach") is False else "adamw"
    if module.startswith("torch.optim") and cls == "SGD":
        return "sgd_momentum" if defaults.get("momentum") else "sgd"
    if module.startswith("torch.optim") and cls == "Adafactor":
        return "adafactor"
    if cls == "Adafactor":
        return "adafactor_hf"
    if module.startswith("bitsandbytes"):
        if "Paged" in cls and "8bit" in cls:
            return "paged_adamw_8bit"
        if "8bit" in cls and "Adam" in cls:
            return "adamw_8bit"
        if cls.startswith("Lion") and "8bit" not in cls:
            return "lion"
    if module.startswith("deepspeed") and "Adam" in cls:
        return "adamw"
    notes.append(f"optimizer {module}.{cls} is not modelled; estimated with AdamW")
    return None


def deepspeed_parallelism(config: dict, world: int) -> dict:
    """The layout of a DeepSpeed config dict (as TrainingArguments, accelerate or Lightning hold it)."""
    r = Reading("deepspeed", config)
    read_deepspeed(r)
    par = dict(r.request.get("parallelism", {}))
    par["data_parallel"] = world
    return par


def fsdp_parallelism(strategy, offload, version, reshard, world: int, notes: list) -> dict:
    r = Reading("fsdp", {})
    fsdp_layout(r, strategy, offload, version, reshard, {"offload": "fsdp", "version": "fsdp", "reshard": "fsdp"})
    notes += r.notes
    par = dict(r.request.get("parallelism", {}))
    par["data_parallel"] = world
    return par


def gpu_part(gpu):
    """"auto": this process's CUDA device's total memory; a catalog id; or a byte count."""
    if isinstance(gpu, bool):
        raise ValueError(f"gpu must be 'auto', a catalog id or a byte count; got {gpu!r}")
    if isinstance(gpu, int):
        return {"memory_bytes": gpu, "name": "this GPU"}
    if gpu != "auto":
        return gpu
    import torch
    if not torch.cuda.is_available():
        raise ValueError("gpu='auto' reads this process's CUDA device, and torch sees none "
                         "(torch.cuda.is_available() is False); give gpu='rtx-4090-24gb' (see `python -m pycore "
                         "gpus`) or the memory in bytes")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"memory_bytes": int(props.total_memory), "name": str(props.name)[:100]}


def framework_part() -> dict:
    """The installed versions (from the packages' metadata: nothing is imported), so that the version rules
    (docs/method.md#versions) follow this run."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("torch", "transformers", "peft"):
        try:
            out[name] = version(name).split("+")[0]
        except PackageNotFoundError:
            continue
    return out


def build_request(model_info: dict, workload: dict, precision: dict, parallelism: dict, gpu) -> dict:
    req = {"schema": 1, "model": {"hf_config": model_info["hf_config"], "name": model_info["name"]}, "workload": {**model_info["workload"], **workload},
           "precision": precision, "gpu": gpu_part(gpu), "framework": framework_part()}
    if parallelism:
        req["parallelism"] = parallelism
    return req


def run(request: dict, on_risk: str, notes: list, parameters: int) -> dict:
    """Estimate; stop (or warn) when the run does not fit. Returns the result with "request" and "notes"."""
    if on_risk not in ON_RISK:
        raise ValueError(f"on_risk must be one of {', '.join(ON_RISK)}; got {on_risk!r}")
    resp = estimate_dict(request)
    if resp["status"] != "ok" and any(e["field"].startswith("model.hf_config") for e in resp["errors"]):
        # a model type the core does not read: its model states from the parameters counted on the model
        notes.append(f"the model's config is not read by the estimator ({resp['errors'][0]['message'][:120]}); "
                     "estimated from its parameter count (model states only)")
        request = {**request, "model": {"parameters": parameters}}
        resp = estimate_dict(request)
    if resp["status"] != "ok":
        errors = "; ".join(f"{e['field']}: {e['message']}" for e in resp["errors"])
        if any(e["field"].startswith("gpu") for e in resp["errors"]):
            raise ValueError(f"pre-flight: {errors}")
        warnings.warn(f"pre-flight could not estimate this run: {errors}", stacklevel=3)
        return {"status": "error", "errors": resp["errors"], "request": request, "notes": notes}
    result = resp["result"]
    result["request"] = request
    result["notes"] = notes
    if result["verdict"] == "does not fit":
        fit = estimate_dict({**request, "fit": {"limit": 3}})
        plans = fit["result"]["fit"]["plans"] if fit["status"] == "ok" else []
        result["fit"] = fit["result"]["fit"] if fit["status"] == "ok" else None
        fitting = [p for p in plans if p["verdict"] == "fits"]
        message = refusal(result, (fitting or plans or [None])[0])
        if on_risk == "raise":
            raise PreflightError(message, result)
        logger.warning(message)
        warnings.warn(message, stacklevel=3)
    elif result["verdict"] == "at risk":
        logger.warning(summary(result) + " (at risk: within the error band of the GPU's memory)")
    else:
        logger.info(summary(result))
    return result


def summary(result: dict) -> str:
    gib = result["device_total_bytes"] / GiB
    return (f"pre-flight: {result['model']['name']} on {result['gpu']['name']} "
            f"({result['gpu']['memory_bytes'] / GiB:.1f} GiB): {gib:.2f} GiB estimated, {result['verdict']}")


def refusal(result: dict, plan: dict | None) -> str:
    """The breakdown's largest terms and the first plan that fits, with the arguments it changes."""
    band = result.get("error_band", {}).get("basis", "")
    peak = result["breakdown"]["children"][0]
    terms = sorted(peak["children"], key=lambda n: -n["bytes"])[:TOP_TERMS]
    lines = [summary(result) + f" (short by {-result['headroom_bytes'] / GiB:.2f} GiB; {band})",
             f"  peak {result['peak_allocated_bytes'] / GiB:.2f} GiB allocated at {result['peak_phase']}: "
             f"{result['peak_moment']}",
             "  largest terms: " + ", ".join(f"{t['name']} {t['bytes'] / GiB:.2f} GiB" for t in terms)]
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    if plan is None:
        lines.append("  no combination of the usual changes fits this GPU (see python -m pycore fit)")
        return "\n".join(lines)
    lines.append(f"  make it fit: {plan['device_total_bytes'] / GiB:.2f} GiB, {plan['verdict']}")
    lines += [f"    - {c['change']} ({c['cost']})" for c in plan["changes"]]
    now = (result.get("run_arguments") or {}).get("training_arguments", {})
    then = (plan.get("run_arguments") or {}).get("training_arguments", {})
    changed = {k: v for k, v in then.items() if now.get(k) != v}
    if changed:
        lines.append("    TrainingArguments: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
    for key, name in (("lora_config", "LoraConfig"), ("bnb_config", "BitsAndBytesConfig")):
        value = (plan.get("run_arguments") or {}).get(key)
        if value and value != (result.get("run_arguments") or {}).get(key):
            lines.append(f"    {name}: " + ", ".join(f"{k}={v!r}" for k, v in value.items()))
    if "deepspeed_config" in (plan.get("run_arguments") or {}):
        lines.append("    ds_config.json: see PreflightError.result['fit']['plans'] (run_arguments)")
    return "\n".join(lines)
