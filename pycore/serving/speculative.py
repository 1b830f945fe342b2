"""Speculative decoding's memory in the serving engines: the drafter's weights on a rank, its KV cache
and the verify step's extra logits; and pooling (embedding, reranker) models, which have no sampler.

What each engine does, read from its source at the version named:
- vLLM 0.19.0: the drafter lives on the last pipeline rank (v1/worker/gpu_model_runner.py:512); a
  draft model loads whole at the target's tensor-parallel degree (config/speculative.py:705-719) and
  keeps its own embedding and lm_head (v1/spec_decode/draft_model.py:81-88); EAGLE and MTP heads take
  the target's embedding (v1/spec_decode/eagle.py:1373-1379, "Detected MTP model. Sharing target model
  embedding weights") and its lm_head when the checkpoint has none (:1400-1404). The drafter's attention
  layers are registered like the target's, so get_kv_cache_spec (gpu_model_runner.py:6899-6925) gives
  them cache pages from the same budget: every block holds the target's and the draft's layers. The
  profile run drafts over the same max_num_batched_tokens after the target (gpu_model_runner.py:5521),
  so the profiled peak is the larger of the two forwards.
- SGLang 0.5.10: the target sizes its pool without the draft; the draft worker reuses the target's
  memory_pool_config, the same number of token slots, over its own layers (num_nextn_predict_layers for
  MTP; model_executor/model_runner_kv_cache_mixin.py:153-158 and 894-899), after mem_fraction_static's
  share: the default fraction reserves 6 GiB more for a standalone draft model and 4 GiB for EAGLE/MTP
  (server_args.py:1316-1322); NEXTN is EAGLE (:2983); max_running_requests defaults to 48 (:2993-2994).
  EAGLE workers take the target's embedding and head (speculative/eagle_worker.py:160-184).
- llama.cpp (ggml-org/llama.cpp tools/server/server-context.cpp @fb40266, load_model and init): the
  draft loads with its own -ngld, -cd (0: the target's llama_n_ctx_seq, all of -c with the unified
  cache) and f16 caches, and every slot creates its own draft context (KV cache and compute buffer),
  one per -np slot.
"""

from __future__ import annotations

from ..errors import InputError
from ..model.spec import ModelSpec, kv_dim, q_dim
from .config import Serving
from ..model.formats import NONE, WeightFormat
from .kv import KVLayer, kv_heads_per_rank, kv_layers
from .weights import Shard, rank_weight_parts

# EAGLE-3 heads predict over a reduced vocabulary with their own lm_head and a draft-to-target map
# (int64): draft_vocab_size 32000 in yuhuili/EAGLE3-LLaMA3.1-Instruct-8B's config.json, read by vLLM
# 0.19 model_executor/models/llama_eagle3.py:277-305.
EAGLE3_DRAFT_VOCAB = 32000
D2T_BYTES_PER_ENTRY = 8
# SGLang 0.5.10 server_args.py:1316-1322: reserved_mem += 6 GiB (STANDALONE) or 4 GiB (EAGLE, EAGLE3, NEXTN).
SGLANG_RESERVE_MIB = {"draft_model": 6 * 1024, "eagle": 4 * 1024, "eagle3": 4 * 1024, "mtp": 4 * 1024}
SGLANG_SPEC_MAX_RUNNING = 48          # server_args.py:2993-2994, "reset to 48 for speculative decoding"
SGLANG_ALGORITHMS = {"STANDALONE": "draft_model", "EAGLE": "eagle", "EAGLE3": "eagle3", "NEXTN": "mtp"}
LLAMACPP_DRAFT_MAX = 16               # common/common.h speculative n_max default (--draft-max)
VERIFY_LOGIT_BYTES = 4                # the verify step's logits in float32 (both engines' samplers)


def method(s: Serving) -> str | None:
    """The speculative method a request asks for, or None; checks the fields agree."""
    if s.speculative_method is None and s.draft_model is None:
        if s.num_speculative_tokens is not None:
            raise InputError("workload.num_speculative_tokens", "give draft_model or speculative_method with it")
        return None
    if s.engine == "llamacpp":
        return "draft_model"
    chosen = s.speculative_method or "draft_model"
    if chosen == "draft_model" and s.draft_model is None:
        raise InputError("workload.draft_model", "speculative_method draft_model needs the draft model's id")
    if chosen != "draft_model" and s.draft_model is not None:
        raise InputError("workload.draft_model", f"{chosen} heads are sized from the target's own layers; leave "
                                                 "draft_model unset")
    return chosen


def draft_spec(s: Serving) -> ModelSpec:
    from ..data.catalog import catalog_model
    try:
        return catalog_model(s.draft_model)
    except InputError:
        raise InputError("workload.draft_model", f"unknown model id {s.draft_model[:60]!r}; see `python -m "
                                                 "pycore models`") from None


def mtp_layers(m: ModelSpec) -> int:
    """num_nextn_predict_layers from the model's config (DeepSeek-V3, GLM-4.5, MiMo: 1)."""
    from ..data.catalog import model_entries
    entry = model_entries().get(m.name)
    n = (entry or {}).get("hf_config", {}).get("num_nextn_predict_layers", 0) if entry else 0
    if not n:
        raise InputError("workload.speculative_method", f"{m.name} has no multi-token-prediction layers "
                                                        "(num_nextn_predict_layers) in its config")
    return n


def tokens(s: Serving) -> int:
    if s.num_speculative_tokens is not None:
        return s.num_speculative_tokens
    return LLAMACPP_DRAFT_MAX if s.engine == "llamacpp" else 1


def _layer_bytes(m: ModelSpec, fmt: WeightFormat, dt: int, tp: int, n: int) -> int:
    """n decoder layers of the target's shape (its last n), without embedding or head: a middle
    pipeline stage's share."""
    shard = Shard(tp=tp, pp=3, stage=1, first_layer=m.n_layers - n, layers=n)
    return sum(b for _, b in rank_weight_parts(m, fmt, dt, shard))


def draft_weight_parts(m: ModelSpec, s: Serving, fmt: WeightFormat, dt: int, tp: int) -> dict:
    """The drafter's weights on one rank, by part."""
    kind = method(s)
    h = m.hidden_size
    if kind == "draft_model":
        d = draft_spec(s)
        return {f"draft model {d.name} (own embedding and lm_head)":
                sum(b for _, b in rank_weight_parts(d, NONE, dt, Shard(tp=tp)))}
    if kind == "mtp":
        n = mtp_layers(m)
        # each MTP module: a decoder layer, enorm + hnorm + shared_head.norm and eh_proj (2h -> h, replicated)
        # (vLLM 0.19 model_executor/models/deepseek_mtp.py:68-70, 86-94)
        return {f"{n} MTP layer(s) in the checkpoint's format": _layer_bytes(m, fmt, dt, tp, n),
                "eh_proj (2h x h) and norms": n * (2 * h * h + 3 * h) * dt}
    layer = _layer_bytes(m, NONE, dt, tp, 1)
    if kind == "eagle":
        # EAGLE-1: one decoder layer and fc (2h -> h) (vLLM 0.19 models/llama_eagle.py:87-90)
        return {"EAGLE head: one decoder layer": layer, "fc (2h x h)": 2 * h * h * dt}
    # EAGLE-3: qkv reads 2h (llama_eagle3.py:34-47), fc fuses three hidden states (3h -> h, :186-192),
    # its own lm_head over the draft vocabulary and the draft-to-target map
    wider_qkv = h * (q_dim(m) + 2 * kv_dim(m)) // tp * dt
    return {"EAGLE-3 head: one decoder layer, qkv over 2h": layer + wider_qkv, "fc (3h x h)": 3 * h * h * dt,
            f"lm_head over {EAGLE3_DRAFT_VOCAB} draft tokens and d2t map":
                EAGLE3_DRAFT_VOCAB * h // tp * dt + EAGLE3_DRAFT_VOCAB * D2T_BYTES_PER_ENTRY}


def draft_kv_layers(m: ModelSpec, s: Serving, tp: int, where: str) -> tuple[KVLayer, ...]:
    """The drafter's attention layers as one rank caches them."""
    kind = method(s)
    if kind == "draft_model":
        return kv_layers(draft_spec(s), tp, where="workload.draft_model")
    if kind == "mtp":
        n = mtp_layers(m)
        return kv_layers(m, tp, m.n_layers - n, n, where)
    return (KVLayer("full", 1, kv_heads_per_rank(m, tp, where), m.head_dim, m.head_dim),)


def verify_logits_bytes(m: ModelSpec, s: Serving, requests: int) -> int:
    """The verify step's logits: k + 1 rows per request (the drafted tokens and the bonus token) over
    the whole vocabulary (gathered on every rank), float32 (vLLM uniform_decode_query_len = 1 + num_spec_tokens,
    gpu_model_runner.py:775; SGLang's verify batch of speculative_num_draft_tokens per request)."""
    return requests * (tokens(s) + 1) * m.vocab_size * VERIFY_LOGIT_BYTES


def sglang_reserve_mib(s: Serving) -> int:
    kind = method(s)
    return SGLANG_RESERVE_MIB[kind] if kind else 0


def sglang_draft_cell(m: ModelSpec, s: Serving, tp: int, kv_b: int) -> int:
    """Bytes per token slot of the draft worker's own pool."""
    return sum(x.elements_per_token() * x.count for x in draft_kv_layers(m, s, tp, "workload.tp_size")) * kv_b


def with_draft(layers: tuple, extra: tuple) -> tuple:
    """The target's cache layers with the drafter's added: a draft layer of the same shape joins its
    kind's count (one spec in vLLM's get_kv_cache_spec), another shape is a kind of its own."""
    from dataclasses import replace
    out = list(layers)
    for x in extra:
        same = next((i for i, y in enumerate(out) if replace(y, count=0) == replace(x, count=0)), None)
        if same is None:
            out.append(x)
        else:
            out[same] = replace(out[same], count=out[same].count + x.count)
    return tuple(out)


def draft_profile_peak(target: dict, draft: dict) -> dict:
    """vLLM's profiled peak with a draft model: the drafter's forward over the same tokens runs after
    the target's (gpu_model_runner.py:5521), so the peak is the larger of the two."""
    if sum(draft.values()) <= sum(target.values()):
        return target
    return {f"draft model forward: {k}": b for k, b in draft.items()}


def sglang_draft_tokens(m: ModelSpec, s: Serving) -> int:
    """--speculative-num-draft-tokens, else auto_choose_speculative_params (server_args.py:6711-6745 @0.5.10):
    4 for a standalone draft model and most architectures, 8 for Llama's EAGLE heads."""
    if s.num_speculative_tokens is not None:
        return s.num_speculative_tokens
    return 8 if method(s) != "draft_model" and m.model_type == "llama" else 4


def llamacpp_draft_request(s: Serving, target_context: int) -> tuple[ModelSpec, Serving]:
    """llama-server with -md: the draft model and the settings it loads with. The draft loads once (its
    own -ngld), and each of the -np slots makes its own draft context of -cd tokens (0: the target's
    llama_n_ctx_seq, ``target_context``) with f16 caches (-ctkd/-ctvd are not read), its n_batch the
    draft context."""
    from dataclasses import replace
    if s.devices > 1:
        raise InputError("workload.draft_model", "a draft model over several GPUs (-devd) is not modelled; "
                                                 "give devices 1")
    n_ctx = s.n_ctx_draft or target_context
    return draft_spec(s), replace(
        s, draft_model=None, num_speculative_tokens=None, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=min(s.n_ubatch, n_ctx),
        n_gpu_layers=s.n_gpu_layers_draft, n_parallel=1, quant=s.quant_draft or s.quant, cache_type_k="f16",
        cache_type_v="f16", n_cpu_moe=0, n_ctx_draft=None, n_gpu_layers_draft=None, quant_draft=None)


def with_llamacpp_draft(target, draft, d: ModelSpec, ds: Serving, slots: int):
    """The target's estimate plus the draft model's buffers on the same GPU: ``draft`` is llama.cpp's
    estimate of the draft ``d`` under ``ds`` (llamacpp_draft_request), its context made once per slot."""
    from dataclasses import replace
    from ..model.breakdown import Node, node
    n_ctx = ds.n_ctx
    parts = {c.name: c.bytes for c in draft.device.children}
    leaves = (Node(f"draft model buffer ({d.name}, {ds.quant})", parts.get("model buffer (GGUF weights)", 0)),
              Node(f"draft KV cache ({slots} slot(s) x {n_ctx:,} tokens)", slots * parts.get("KV cache", 0)),
              Node(f"draft compute buffer ({slots} slot context(s))", slots * parts.get("compute buffer", 0)))
    spec_node = node("speculative draft (-md)", tuple(x for x in leaves if x.bytes))
    device = node(target.device.name, target.device.children + (spec_node,), target.device.key)
    report = {**target.report, "draft_n_ctx": n_ctx, "draft_bytes": spec_node.bytes}
    settings = {**target.settings, "n_ctx_draft": n_ctx, "n_gpu_layers_draft": draft.settings.get("n_gpu_layers")}
    return replace(target, device=device, report=report, settings=settings,
                   host_bytes=target.host_bytes + draft.host_bytes)
