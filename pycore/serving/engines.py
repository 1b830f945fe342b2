"""The serving family's dispatcher: one engine's estimate for a model, its settings and a GPU, and
the result object the API returns."""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module

from ..errors import InputError
from ..model.spec import ModelSpec
from ..workload import Hardware
from .config import Serving, validate_serving
from .formats import NONE, WeightFormat, named_format
from .kv import recurrent_state_bytes
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
    if m.family == "bert":
        raise InputError("model", "the serving engines generate text with decoder models; BERT is an encoder")
    module, function = ENGINE_FUNCTIONS[s.engine]
    fn = getattr(import_module(f".{module}", __package__), function)
    if s.engine == "llamacpp":
        e = fn(m, s, hw)
    else:
        e = fn(m, s, hw, weight_format(s, checkpoint), cuda_context)
    if m.linear_attn_layers and s.engine != "llamacpp":          # llama.cpp's recurrent cells are counted
        e = replace(e, warnings=e.warnings + (_recurrent_note(m, s),))
    return e


def _recurrent_note(m: ModelSpec, s: Serving) -> str:
    """What the token budget leaves out for a hybrid linear-attention model."""
    tp = getattr(s, "tensor_parallel_size", 1) or 1
    per = m.linear_attn_layers * recurrent_state_bytes(m, tp)
    return (f"{m.linear_attn_layers} of {m.n_layers} layers are linear attention (Gated DeltaNet): they cache no "
            f"tokens, and each running request keeps a fixed state instead, {per / 2 ** 20:.1f} MiB per request on "
            f"each GPU in bf16. The KV tokens here are those of the {m.n_layers - m.linear_attn_layers} attention "
            f"layers; how {s.engine} carves that state out of its pool (vLLM's hybrid page alignment, SGLang's "
            f"mamba pool) is not modelled")


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
