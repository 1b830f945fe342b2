"""The serving family's dispatcher: one engine's estimate for a model, its settings and a GPU, and
the result object the API returns."""

from __future__ import annotations

from importlib import import_module

from ..errors import InputError
from ..model.spec import ModelSpec
from ..training.workload import Hardware
from .config import Serving, validate_serving
from ..model.formats import NONE, WeightFormat, named_format
from .result import ServingEstimate

# engine -> (module under pycore.serving, function), imported on first use
ENGINE_FUNCTIONS = {"vllm": ("vllm", "estimate_vllm"), "sglang": ("sglang", "estimate_sglang"),
                    "llamacpp": ("llamacpp", "estimate_llamacpp")}


def weight_format(s: Serving, checkpoint: WeightFormat) -> WeightFormat:
    """The format the engine loads: the checkpoint's own (its quantization_config), or the one named
    by --quantization for a 16-bit checkpoint. Naming another format than the checkpoint's is an
    error, as it is in the engines."""
    if s.quantization is None:
        if s.quant_group_size is not None and checkpoint.quantised:
            raise InputError("workload.quant_group_size", "the checkpoint's quantization_config sets the group size")
        return checkpoint
    if checkpoint.quantised and checkpoint.method != s.quantization:
        raise InputError("workload.quantization", f"the checkpoint is stored as {checkpoint.method} "
                                                  f"({checkpoint.source}); leave quantization unset or give "
                                                  f"{checkpoint.method}")
    if checkpoint.quantised:
        return checkpoint
    return named_format(s.quantization, s.quant_group_size, "workload.quantization")


def estimate_serving(m: ModelSpec, s: Serving, hw: Hardware, checkpoint: WeightFormat = NONE,
                     cuda_context: int = 820 * 1024 ** 2) -> ServingEstimate:
    validate_serving(s)
    if s.engine == "hf":
        raise InputError("workload.engine", "the hf engine is estimated by the inference workload")
    if m.family == "bert" and not (s.engine == "vllm" and s.runner == "pooling"):
        raise InputError("model", "the serving engines generate text with decoder models; BERT is an encoder (vLLM serves it with runner pooling)")
    module, function = ENGINE_FUNCTIONS[s.engine]
    fn = getattr(import_module(f".{module}", __package__), function)
    if s.engine == "llamacpp":
        return fn(m, s, hw)
    return fn(m, s, hw, weight_format(s, checkpoint), cuda_context)


def serving_dict(e: ServingEstimate) -> dict:
    """The fields a serving answer adds to the result object."""
    out = {
        "engine": e.engine, "version": e.version, "gpus": e.gpus,
        "kv_cache_bytes": e.kv_cache_bytes, "kv_cache_tokens": e.kv_cache_tokens, "context_len": e.context_len,
        "max_concurrency": e.max_concurrency, "max_context_len": e.max_context_len, "starts": e.starts,
        "refusal": e.refusal, "report": e.report, "settings": e.settings,
    }
    if e.host is not None:
        out["host"] = e.host.to_dict()
    if e.devices:
        out["devices"] = [d.to_dict() for d in e.devices]
    return out
