"""The serving workload: ``{"mode": "serve", "engine": ..., ...}`` with each engine's own parameter
names (vLLM's engine arguments, SGLang's server arguments, llama.cpp's context parameters).

Fields a user leaves unset take the engine's default for the version named, as the engine
itself would pick them (see each engine's module).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, MAX_TOKENS
from ..schema import choice, flag, integer, number, spec, text, validate
from ..model.formats import FORMATS
from .gguf import CACHE_TYPES, PRESETS

ENGINES = ("vllm", "sglang", "llamacpp", "hf")
ENGINE_LABELS = (("vllm", "vLLM (V1 engine)"), ("sglang", "SGLang"), ("llamacpp", "llama.cpp / Ollama (GGUF)"),
                 ("hf", "Hugging Face generate"))
# The newest versions whose source the rules were read from (docs/serving.md lists the ranges).
DEFAULT_VERSIONS = {"vllm": "0.34.0", "sglang": "0.5.23", "llamacpp": "b7400", "hf": "5.17"}
MODEL_DTYPES = ("auto", "bfloat16", "float16", "float32")
KV_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16")
SPEC_METHODS = ("draft_model", "eagle", "eagle3", "mtp")     # speculative.py
_V, _S, _L, _H = ("vllm",), ("sglang",), ("llamacpp",), ("hf",)
_VS = ("vllm", "sglang")
_MODES = ("serve",)

@dataclass(frozen=True)
class Serving:
    engine: str = spec("vllm", choice(ENGINES, modes=_MODES, labels=ENGINE_LABELS, doc="serving engine"))
    version: str | None = spec(None, text(32, nullable=True, modes=_MODES,
                                          doc="engine version (default: vLLM 0.34.0, SGLang 0.5.23, llama.cpp "
                                              "build b7400)"))
    # --- weights (vLLM, SGLang, HF) ---
    dtype: str = spec("auto", choice(MODEL_DTYPES, engines=_VS, modes=_MODES,
                                     doc="model dtype (auto: the config's torch_dtype, else bfloat16)"))
    quantization: str | None = spec(None, choice(tuple(FORMATS), nullable=True, engines=_VS + _H, modes=_MODES,
                                                 labels=tuple((k, v[0]) for k, v in FORMATS.items()),
                                                 doc="weight format (default: the config's quantization_config, "
                                                     "else 16-bit)"))
    quant_group_size: int | None = spec(None, integer(1, 1 << 20, nullable=True, engines=_VS + _H, modes=_MODES,
                                                      doc="GPTQ/AWQ group size (default 128)"))
    kv_cache_dtype: str = spec("auto", choice(KV_DTYPES, engines=_VS, modes=_MODES,
                                              doc="KV cache dtype (auto: the model dtype)"))
    # --- vLLM ---
    gpu_memory_utilization: float | None = spec(None, number(0.01, 1.0, nullable=True, engines=_V, modes=_MODES,
                                                             doc="share of the GPU vLLM may use (default 0.9; 0.92 "
                                                                 "from 0.20; 1.0 with 0.34's extensible KV cache)"))
    max_model_len: int | None = spec(None, integer(1, MAX_TOKENS, nullable=True, engines=_V, modes=_MODES,
                                                   unit="tokens", doc="context length (default: the model's)"))
    max_num_batched_tokens: int | None = spec(None, integer(1, MAX_TOKENS, nullable=True, engines=_V, modes=_MODES,
                                                            unit="tokens", doc="tokens per scheduler step"))
    max_num_seqs: int | None = spec(None, integer(1, 65536, nullable=True, engines=_V, modes=_MODES,
                                                  doc="sequences per scheduler step"))
    block_size: int | None = spec(None, choice((1, 8, 16, 32, 64, 128, 256, 544), nullable=True, engines=_V,
                                               modes=_MODES, doc="KV block size in tokens (default 16; FlashMLA 64)"))
    tensor_parallel_size: int = spec(1, integer(1, 1024, engines=_V, modes=_MODES))
    pipeline_parallel_size: int = spec(1, integer(1, 1024, engines=_V, modes=_MODES))
    data_parallel_size: int = spec(1, integer(1, 1024, engines=_V, modes=_MODES))
    enable_expert_parallel: bool = spec(False, flag(engines=_V, modes=_MODES))
    enforce_eager: bool = spec(False, flag(engines=_V, modes=_MODES, doc="no CUDA graphs"))
    kv_cache_memory_bytes: int | None = spec(None, integer(1, 2 ** 50, nullable=True, engines=_V, modes=_MODES,
                                                           unit="bytes",
                                                           doc="--kv-cache-memory: the pool per GPU, no profiling"))
    entrypoint: str = spec("serve", choice(("serve", "llm"), engines=_V, modes=_MODES,
                                           labels=(("serve", "vllm serve (API server)"), ("llm", "LLM() in Python")),
                                           doc="which front end sets the scheduler defaults"))
    disable_hybrid_kv_cache_manager: bool = spec(False, flag(engines=_V, modes=_MODES))
    enable_extensible_kv_cache: bool | None = spec(None, flag(nullable=True, engines=_V, modes=_MODES,
                                                              doc="size the KV cache after warmup (default: on "
                                                                  "from 0.34, unless kv_cache_memory_bytes)"))
    enable_prefix_caching: bool | None = spec(None, flag(nullable=True, engines=_V, modes=_MODES,
                                                         doc="default: the version's (for hybrid linear-attention "
                                                             "models on from 0.26)"))
    # --- SGLang ---
    mem_fraction_static: float | None = spec(None, number(0.01, 1.0, nullable=True, engines=_S, modes=_MODES,
                                                          doc="weights + KV pool share (default from the GPU)"))
    context_length: int | None = spec(None, integer(1, MAX_TOKENS, nullable=True, engines=_S, modes=_MODES,
                                                    unit="tokens"))
    tp_size: int = spec(1, integer(1, 1024, engines=_S, modes=_MODES))
    pp_size: int = spec(1, integer(1, 1024, engines=_S, modes=_MODES))
    max_running_requests: int | None = spec(None, integer(1, 1 << 20, nullable=True, engines=_S, modes=_MODES))
    max_total_tokens: int | None = spec(None, integer(1, 1 << 40, nullable=True, engines=_S, modes=_MODES,
                                                      unit="tokens"))
    chunked_prefill_size: int | None = spec(None, integer(1, MAX_TOKENS, nullable=True, engines=_S, modes=_MODES,
                                                          unit="tokens"))
    cuda_graph_max_bs: int | None = spec(None, integer(0, 65536, nullable=True, engines=_S, modes=_MODES))
    page_size: int = spec(1, integer(1, 4096, engines=_S, modes=_MODES))
    swa_full_tokens_ratio: float = spec(0.8, number(0.0, 1.0, engines=_S, modes=_MODES))
    mamba_full_memory_ratio: float = spec(0.9, number(0.01, 100.0, engines=_S, modes=_MODES,
                                                      doc="linear-attention state memory over KV memory"))
    mamba_ssm_dtype: str = spec("float32", choice(("float32", "bfloat16"), engines=_S, modes=_MODES,
                                                  doc="dtype of the linear-attention recurrent state"))
    # --- llama.cpp ---
    quant: str = spec("Q4_K_M", choice(PRESETS, engines=_L, modes=_MODES, doc="GGUF file type (llama-quantize preset)"))
    n_ctx: int | None = spec(None, integer(0, MAX_TOKENS, nullable=True, engines=_L, modes=_MODES, unit="tokens",
                                           doc="-c (0 or unset: the model's training context)"))
    n_batch: int = spec(2048, integer(1, MAX_TOKENS, engines=_L, modes=_MODES))
    n_ubatch: int = spec(512, integer(1, MAX_TOKENS, engines=_L, modes=_MODES))
    n_gpu_layers: int | None = spec(None, integer(0, 100000, nullable=True, engines=_L, modes=_MODES,
                                                  doc="-ngl (unset: all layers)"))
    flash_attn: str = spec("auto", choice(("auto", "on", "off"), engines=_L, modes=_MODES))
    cache_type_k: str = spec("f16", choice(CACHE_TYPES, engines=_L, modes=_MODES))
    cache_type_v: str = spec("f16", choice(CACHE_TYPES, engines=_L, modes=_MODES))
    n_parallel: int = spec(1, integer(1, 4096, engines=_L, modes=_MODES, doc="-np slots"))
    kv_unified: bool = spec(True, flag(engines=_L, modes=_MODES, doc="one KV buffer shared by the slots"))
    swa_full: bool = spec(False, flag(engines=_L, modes=_MODES))
    n_cpu_moe: int = spec(0, integer(0, 100000, engines=_L, modes=_MODES,
                                     doc="--n-cpu-moe: keep the experts of the first N layers in host memory"))
    devices: int = spec(1, integer(1, 64, engines=_L + _H, modes=_MODES, doc="GPUs the layers are split over "
                                                                            "(hf: device_map over this many GPUs)"))
    # --- Hugging Face generate ---
    num_prompts: int = spec(1, integer(1, MAX_TOKENS, engines=_H, modes=_MODES, doc="prompts in the batch"))
    prompt_len: int = spec(2048, integer(1, MAX_TOKENS, engines=_H, modes=_MODES, unit="tokens"))
    max_new_tokens: int = spec(256, integer(0, MAX_TOKENS, engines=_H, modes=_MODES, unit="tokens"))
    cache_implementation: str = spec("dynamic", choice(("dynamic", "static"), engines=_H, modes=_MODES,
                                                       doc="generate's KV cache: grown per step, or allocated "
                                                           "for the whole length at the first step"))
    max_memory: str | None = spec(None, text(200, nullable=True, engines=_H, modes=_MODES,
                                             doc="from_pretrained's max_memory, such as 0:20GiB,1:20GiB,cpu:120GiB "
                                                 "(default: each GPU's free memory)"))
    device_map: str = spec("auto", choice(("auto", "balanced", "balanced_low_0", "sequential"), engines=_H,
                                          modes=_MODES, doc="from_pretrained's device_map strategy, used with "
                                                            "devices > 1 or max_memory"))
    # --- speculative decoding and pooling models (issue 24 item 6; pycore/serving/speculative.py) ---
    speculative_method: str | None = spec(None, choice(SPEC_METHODS, nullable=True, engines=_VS, modes=_MODES,
                                                       doc="vLLM speculative_config method / SGLang "
                                                           "--speculative-algorithm (default: draft_model when "
                                                           "draft_model is given)"))
    draft_model: str | None = spec(None, text(200, nullable=True, engines=_VS + _L, modes=_MODES,
                                              doc="the draft model's catalog id (vLLM speculative_config model, "
                                                  "SGLang --speculative-draft-model-path, llama.cpp -md)"))
    num_speculative_tokens: int | None = spec(None, integer(1, 64, nullable=True, engines=_VS + _L, modes=_MODES,
                                                            unit="tokens",
                                                            doc="tokens drafted per step (vLLM "
                                                                "num_speculative_tokens, SGLang "
                                                                "--speculative-num-draft-tokens, llama.cpp "
                                                                "--draft-max; default 16 there)"))
    n_gpu_layers_draft: int | None = spec(None, integer(0, 100000, nullable=True, engines=_L, modes=_MODES,
                                                        doc="-ngld (unset: all the draft's layers)"))
    n_ctx_draft: int | None = spec(None, integer(0, MAX_TOKENS, nullable=True, engines=_L, modes=_MODES,
                                                 unit="tokens", doc="-cd (0 or unset: the slot's context)"))
    quant_draft: str | None = spec(None, choice(PRESETS, nullable=True, engines=_L, modes=_MODES,
                                                doc="the draft GGUF's file type (default: quant)"))
    runner: str = spec("generate", choice(("generate", "pooling"), engines=_V, modes=_MODES,
                                          doc="--runner pooling (--task embed/classify/score): an embedding or "
                                              "reranker model, no sampler"))
    # --- the serving searches (solve) ---
    target_requests: int = spec(1, integer(1, 1 << 16, modes=_MODES,
                                           doc="for the searches: requests to serve at once"))
    # --- figures read from the user's own log, replacing the estimates (a check of a real run) ---
    logged_weights_gib: float | None = spec(None, number(0.0, 2 ** 20, nullable=True, engines=_VS, modes=_MODES,
                                                         unit="GiB", doc="vLLM 'Model loading took'; SGLang "
                                                                         "'Load weight end ... mem usage'"))
    logged_activation_gib: float | None = spec(None, number(0.0, 2 ** 20, nullable=True, engines=_V, modes=_MODES,
                                                            unit="GiB", doc="vLLM 'peak activation'"))
    logged_non_torch_gib: float | None = spec(None, number(0.0, 2 ** 20, nullable=True, engines=_V, modes=_MODES,
                                                           unit="GiB", doc="vLLM 'non-torch memory'"))
    logged_free_gib: float | None = spec(None, number(0.0, 2 ** 20, nullable=True, engines=_S, modes=_MODES,
                                                      unit="GiB", doc="SGLang 'Load weight begin. avail mem'"))

    def engine_version(self) -> str:
        return self.version or DEFAULT_VERSIONS[self.engine]


def validate_serving(s: Serving) -> None:
    validate(s, "workload")


def check_fields_for_engine(raw: dict, engine: str) -> None:
    """A field of another engine is an error naming it (a vLLM setting means nothing to llama.cpp)."""
    from ..schema import _fields
    owners = {name: f.engines for name, f, _ in _fields(Serving)}
    for key in raw:
        engines = owners.get(key)
        if engines and engine not in engines:
            raise InputError(f"workload.{key}", f"is a setting of {', '.join(engines)}, not of {engine}")

