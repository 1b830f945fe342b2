"""vLLM's V1 engine: the KV budget as its workers compute it, blocks from the per-layer page sizes,
and the tokens, concurrency and max_model_len check it logs.

Sources: the released wheels' Python source (vllm/...; docs/serving.md lists the versions read).
Per worker (GPU rank):
- requested = gpu_memory_utilization x total memory (v1/worker/gpu_worker.py; math.ceil from 0.14,
  v1/worker/utils.py request_memory in 0.33 line 724); startup fails when the free memory at the
  snapshot is below it (0.33 utils.py line 761);
- available KV = requested - weights - profiled activation peak - non-torch memory (0.10.2
  gpu_worker.py lines 259-280, utils/__init__.py 2789-2797), minus the CUDA-graph estimate from 0.20
  (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default on; 0.20 gpu_worker.py 385-424). Up to 0.9.0 the
  "peak" also took in everything on the device outside torch, the CUDA context included
  (0.8.5 gpu_worker.py 177-212);
- the profile run is a forward of max_num_batched_tokens tokens spread over min(tokens,
  max_num_seqs) requests, without attention (no KV cache yet), then the sampler on one row per
  request (v1/worker/gpu_model_runner.py profile_run, _dummy_run, _dummy_sampler_run);
- blocks: available // (page x layers) for one spec (v1/core/kv_cache_utils.py line 797 in 0.10.2);
  hybrid models pack layers into groups of min(bucket sizes) layers that share one page size
  (:895-1034); the engine keeps the smallest block count of all workers;
- tokens logged: blocks x block_size (0.10.2 :856); from 0.21 int(concurrency x max_model_len)
  (0.33 kv_cache_utils.py 1120-1128); concurrency = blocks / blocks one request needs (:768-783);
- the max_model_len check and its message (0.10.2 check_enough_kv_cache_memory 670-715, with the
  binary search of estimate_max_model_len 625-667).
"""

from __future__ import annotations

import math
from ..errors import InputError
from ..versions import holds, version_tuple
from ..model.spec import ModelSpec, is_mla, kv_dim, q_dim
from ..units import GiB, MiB, largest
from ..workload import Hardware
from .config import Serving
from .formats import WeightFormat
from .kv import KVLayer, kv_layers, stage_split
from .result import ServingEstimate, tree
from .weights import Shard, expert_ranks, rank_weight_parts, vision_bytes
from .speculative import (draft_kv_layers, draft_profile_peak, draft_spec, draft_weight_parts, method,
                          tokens as tokens_k, verify_logits_bytes, with_draft)
from .vllm_extensible import EXTENSIBLE_UTILIZATION, extensible, extensible_budget
from .vllm_profile import (NCCL_OUTSIDE_BYTES, device_traits, encoder_cache_bytes, encoder_images, encoder_phase,
                           moe_workspace_persists, non_torch_parts, sampler_parts)

DEFAULT_BLOCK_SIZE = 16                  # vllm/config/cache.py DEFAULT_BLOCK_SIZE
# VLLM_USE_V1 defaults to 1 from vLLM 0.8.0 (vllm/envs.py:522-523 @0.8.0; "0" at envs.py:503-504 @0.7.3, read
# from the released wheels); earlier releases ran the V0 engine, whose budget is not modelled here.
V1_DEFAULT_FROM = (0, 8, 0)
MLA_BLOCK_SIZE = 64                      # FlashMLA's block size (platforms/cuda.py 137-183, 0.10.2)
# CUDA graphs: piecewise capture records one graph per layer piece and batch size; the logs give 0.67
# GiB (Mistral-7B, 67 sizes x 33 pieces), 0.72 GiB (Granite-4.0-micro, 67 x 41 + 35 full graphs) and
# 3.45 GiB (Qwen3-235B TP8, 67 x 95): about 0.35 MiB per piece-graph, within a factor of 1.6 of each.
CUDAGRAPH_BYTES_PER_PIECE = int(0.35 * MiB)
FUSED_MOE_CHUNK = 32768                  # VLLM_FUSED_MOE_CHUNK_SIZE default (envs.py)
FP8_DTYPES = ("fp8", "fp8_e4m3", "fp8_e5m2")


def parse_version(text: str) -> tuple[int, int, int]:
    return version_tuple(text, "workload.version", "a vLLM version", "0.11.0")


# ---- version rules --------------------------------------------------------------------------------

def default_utilization(v) -> float:
    return 0.92 if holds("vllm-utilization-0.92", v) else 0.90


def graphs_in_budget(v) -> bool:
    return holds("vllm-cuda-graphs-in-budget", v)


def scheduler_defaults(v, entrypoint: str, memory_bytes: int, gpu_name: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) with chunked prefill (engine/arg_utils.py 1657-1744 in
    0.10.2): devices of 70 GiB or more that are not A100s get the large tier; 0.30 adds 160 GiB parts."""
    big = memory_bytes >= 70 * GiB and "a100" not in gpu_name.lower()
    if holds("vllm-large-tier-160g", v) and memory_bytes >= 160 * GiB:
        return 16384, 1024
    if big:
        return (16384 if entrypoint == "llm" else 8192), 1024
    return (8192 if entrypoint == "llm" else 2048), 256


def capture_sizes(v, max_num_seqs: int, max_batched: int) -> list[int]:
    """CUDA-graph batch sizes: [1, 2, 4] + multiples of 8 up to min(2 x max_num_seqs, 512) (0.10.2
    config/__init__.py 3580-3668); from 0.33 steps of 8 to 256 then 16."""
    top = min(2 * max_num_seqs, 512)
    if holds("vllm-capture-steps-16", v):
        sizes = [1, 2, 4] + list(range(8, min(top, 255) + 1, 8)) + list(range(256, top + 1, 16))
    else:
        sizes = [1, 2, 4] + list(range(8, top + 1, 8))
    return [b for b in sizes if b <= max_batched]


# ---- the profile run -----------------------------------------------------------------------------

def profile_activation(m: ModelSpec, tokens: int, requests: int, tp: int, ep: int, dt: int, last: bool,
                       v=(0, 10, 2), gpu_name: str = "", sampler_bytes: int | None = None) -> dict:
    """The torch peak of the dummy forward and sampler, above the weights, on one rank: the larger of
    the two, with the fused-MoE workspaces added to the sampler's side where they persist (0.13+)."""
    h = m.hidden_size
    T = tokens
    hidden = {"hidden states and residual": 2 * T * h * dt}
    qd, kd = q_dim(m) // tp, (kv_dim(m) // tp if not is_mla(m) else kv_dim(m) // tp)
    attention = {"QKV projection": T * (qd + 2 * kd) * dt, "attention output": T * qd * dt, "o_proj output": T * h * dt}
    phases = {"attention": attention}
    if m.n_experts:
        chunk = min(T, FUSED_MOE_CHUNK)
        f = m.expert_ffn_size if ep > 1 else m.expert_ffn_size // tp
        k = m.experts_per_token
        moe = {"router logits": T * m.n_experts * dt, "top-k weights and ids": T * k * 8,
               "fused MoE intermediate caches": chunk * k * (max(2 * f, h) + f) * dt, "MoE output": T * h * dt}
        if m.n_shared_experts:
            moe["shared expert"] = T * 3 * m.shared_expert_ffn_size * m.n_shared_experts // tp * dt
        phases["MoE"] = moe
    if m.dense_layers or not m.n_experts:
        f = m.ffn_size // tp
        phases["MLP"] = {"gate_up output": 2 * T * f * dt, "activation output": T * f * dt, "down_proj output": T * h * dt}
    busiest = max(phases, key=lambda k: sum(phases[k].values()))
    forward = {**hidden, **{f"{busiest}: {k}": b for k, b in phases[busiest].items()}}
    if not last:
        return _largest(m, tokens, tp, dt, [forward], sampler_bytes is None)
    if sampler_bytes is not None:       # another engine's sampler (SGLang) at a fixed cost per logit
        logits = {f"sampler on {requests} rows of logits": requests * m.vocab_size * sampler_bytes}
    else:
        logits = sampler_parts(v, requests, m.vocab_size, dt, device_traits(gpu_name)[0])
    sampler = {"hidden states kept by the profile run": T * h * dt + requests * h * dt, **logits}
    if m.n_experts and sampler_bytes is None and moe_workspace_persists(v):
        sampler["fused MoE workspaces (kept by the WorkspaceManager)"] = phases["MoE"]["fused MoE intermediate caches"]
    return _largest(m, tokens, tp, dt, [forward, sampler], sampler_bytes is None)


def _largest(m: ModelSpec, tokens: int, tp: int, dt: int, candidates: list, vllm: bool) -> dict:
    """The profile peak: the largest phase; a multimodal model's encoder runs first, and its outputs stay
    in the encoder cache through the language model's phases."""
    if vllm and m.vision is not None and m.vision.tokens_per_image:
        images = encoder_images(m.vision, tokens)
        cache = encoder_cache_bytes(m.vision, images, m.hidden_size, dt)
        candidates = [{**c, f"encoder cache ({images} images)": cache} for c in candidates]
        candidates.append(encoder_phase(m.vision, images, tp, dt))
    return max(candidates, key=lambda c: sum(c.values()))


# ---- KV blocks -----------------------------------------------------------------------------------

def page_bytes(layer: KVLayer, block: int, kv_b: int) -> int:
    """One block of one layer (v1/kv_cache_interface.py 59-70 in 0.10.2: coef 1 for MLA)."""
    return block * layer.elements_per_token() * kv_b


def need_blocks(layer: KVLayer, length: int, block: int, batched: int, state_blocks: int = 1) -> int:
    """Blocks one request of ``length`` tokens needs in one layer (max_memory_usage_bytes / page); a
    linear-attention layer holds its state in ``state_blocks`` blocks whatever the length (MambaSpec)."""
    if layer.kind == "linear":
        return state_blocks
    if layer.kind == "sliding" and layer.chunked:
        # ChunkedLocalAttentionSpec.max_memory_usage_bytes (0.14 kv_cache_interface.py:229-244)
        return -(-min(layer.window + batched, length) // block)
    if layer.kind == "sliding":
        return -(-min(layer.window - 1 + batched, length) // block) + 1
    return -(-length // block)


def hybrid_linear(m: ModelSpec, s: Serving, v, layers: tuple, kv_b: int, dt: int) -> tuple[int, int, int]:
    """(block size, padded page, state blocks per request and group) for a model with linear-attention
    layers. The attention block grows until one block of a layer holds a layer's state: block =
    align x cdiv(state page, align x attention bytes per token), and the state page is padded to the
    attention page (0.11 models/config.py:314-400 HybridAttentionMambaModelConfig; 0.33
    platforms/interface.py _align_hybrid_block_size). The state is in the model's dtype
    (mamba_cache_dtype "auto"). A request keeps 1 state block per group, 2 with prefix caching ("align"
    mode), 3 with 0.33's Gated DeltaNet checkpoint block (v1/kv_cache_interface.py MambaSpec)."""
    attn = next(x for x in layers if x.kind != "linear")
    linear = next(x for x in layers if x.kind == "linear")
    per_token = attn.elements_per_token() * kv_b
    state = linear.state_bytes(dt, dt)
    caching = s.enable_prefix_caching if s.enable_prefix_caching is not None else holds("vllm-hybrid-prefix-caching", v)
    checkpoint = caching and holds("vllm-gdn-checkpoint-block", v)
    align = 64 if checkpoint else DEFAULT_BLOCK_SIZE
    block = align * -(-state // (align * per_token))
    if s.block_size:
        block = max(block, s.block_size)
    return block, block * per_token, 3 if checkpoint else 2 if caching else 1


def group_layout(layers: tuple, hybrid: bool) -> tuple[int, int, list]:
    """(layers per group, number of groups, [(spec, groups of it)]) as get_kv_cache_config packs them."""
    specs = [x for x in layers if x.count]
    if not hybrid:
        specs = [KVLayer("full" if x.kind == "sliding" else x.kind, x.count, x.kv_heads, x.k_width, x.v_width)
                 for x in specs]
        merged: dict = {}
        for x in specs:
            key = (x.kind, x.kv_heads, x.k_width, x.v_width)
            merged[key] = merged.get(key, 0) + x.count
        specs = [KVLayer(k[0], n, k[1], k[2], k[3]) for k, n in merged.items()]
    if len(specs) == 1:
        return specs[0].count, 1, [(specs[0], 1)]
    size = min(x.count for x in specs)
    groups = [(x, -(-x.count // size)) for x in specs]
    return size, sum(g for _, g in groups), groups


def estimate_vllm(m: ModelSpec, s: Serving, hw: Hardware, fmt: WeightFormat, cuda_context: int) -> ServingEstimate:
    version = s.engine_version()
    v = parse_version(version)
    tp, pp, dp = s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size
    if pp > m.n_layers:
        raise InputError("workload.pipeline_parallel_size", f"must be at most the model's {m.n_layers} layers")
    ep = expert_ranks(m, tp, dp, s.enable_expert_parallel, "workload.enable_expert_parallel")
    dt = 4 if s.dtype == "float32" else 2
    kv_b = 1 if s.kv_cache_dtype in FP8_DTYPES else (4 if s.kv_cache_dtype == "auto" and dt == 4 else 2)
    grows = extensible(v, s)          # 0.34: the KV cache is sized after warmup (vllm_extensible.py)
    speculating, pooling = method(s) is not None, s.runner == "pooling"
    # An encoder-only pooling model (BERT: EncoderOnlyAttention) has no KV cache spec, so the engine
    # neither profiles nor allocates a cache (0.19 v1/engine/core.py:235-250, gpu_model_runner.py:6919-6921).
    no_kv = pooling and m.family == "bert"
    util = s.gpu_memory_utilization if s.gpu_memory_utilization is not None else (
        EXTENSIBLE_UTILIZATION if grows else default_utilization(v))
    mnbt_d, seqs_d = scheduler_defaults(v, s.entrypoint, hw.memory_bytes, hw.name)
    max_len = s.max_model_len or m.max_positions
    mnbt = s.max_num_batched_tokens or mnbt_d
    seqs = s.max_num_seqs or (min(seqs_d, mnbt) if holds("vllm-max-num-seqs-capped", v) else seqs_d)
    block = s.block_size or (MLA_BLOCK_SIZE if is_mla(m) else DEFAULT_BLOCK_SIZE)
    hybrid = not s.disable_hybrid_kv_cache_manager and holds("vllm-hybrid-kv-manager", v) and \
        not (m.chunked_attention and holds("vllm-chunked-hybrid-off", v))
    total = hw.memory_bytes
    requested = math.ceil(total * util) if holds("vllm-request-rounded-up", v) else int(total * util)
    marlin = True
    split = stage_split(m.n_layers, pp)
    stages = []
    for stage in range(pp):
        first = sum(split[:stage])
        shard = Shard(tp=tp, pp=pp, stage=stage, first_layer=first, layers=split[stage], expert_ranks=ep)
        weights = dict(rank_weight_parts(m, fmt, dt, shard, marlin))
        if m.vision is not None:              # the multimodal model loads its encoder on every rank, 16-bit
            weights["vision encoder and projector"] = vision_bytes(m, tp, dt)
        if m.max_positions:
            weights["rotary cos/sin cache"] = m.max_positions * (m.qk_rope_head_dim if is_mla(m) else m.head_dim) * dt
        drafts = speculating and stage == pp - 1          # the drafter lives on the last rank (speculative.py)
        if drafts:
            weights.update(draft_weight_parts(m, s, fmt, dt, tp))
        if s.logged_weights_gib is not None:
            weights = {"weights (from the log)": int(s.logged_weights_gib * GiB)}
        requests = min(mnbt, seqs)
        act = profile_activation(m, mnbt, requests, tp, ep, dt, last=stage == pp - 1 and not pooling, v=v,
                                 gpu_name=hw.name)
        if drafts and s.draft_model is not None:
            act = draft_profile_peak(act, profile_activation(draft_spec(s), mnbt, requests, tp, 1, dt, last=False,
                                                             v=v, gpu_name=hw.name))
        if s.logged_activation_gib is not None:
            act = {"peak activation (from the log)": int(s.logged_activation_gib * GiB)}
        non_torch_named = non_torch_parts(v, tp, pp, hw.name)
        if s.logged_non_torch_gib is not None:
            non_torch_named = {"non-torch memory (from the log)": int(s.logged_non_torch_gib * GiB)}
        non_torch = sum(non_torch_named.values())
        n_pieces = split[stage] + 1
        sizes = [] if s.enforce_eager else capture_sizes(v, seqs, mnbt)
        graphs = len(sizes) * n_pieces * CUDAGRAPH_BYTES_PER_PIECE
        layers = kv_layers(m, tp, first, split[stage], "workload.tensor_parallel_size")
        if drafts:
            layers = with_draft(layers, draft_kv_layers(m, s, tp, "workload.tensor_parallel_size"))
        stages.append({"weights": weights, "act": act, "non_torch": non_torch, "non_torch_named": non_torch_named,
                       "graphs": graphs,
                       "layers": layers, "n_graph_sizes": len(sizes)})
    linear_page, state_blocks = 0, 1
    if m.linear_attn_layers:
        if s.disable_hybrid_kv_cache_manager:
            raise InputError("workload.disable_hybrid_kv_cache_manager",
                             "a model with linear-attention layers needs vLLM's hybrid KV cache manager")
        if v < (0, 10, 2):
            raise InputError("workload.version", "vLLM serves Qwen3-Next's linear attention from 0.10.2")
        block, linear_page, state_blocks = hybrid_linear(m, s, v, stages[0]["layers"], kv_b, dt)
    results = []
    for st in stages:
        w, a, nt, g = sum(st["weights"].values()), sum(st["act"].values()), st["non_torch"], st["graphs"]
        held = {}
        if s.kv_cache_memory_bytes is not None:
            avail = s.kv_cache_memory_bytes
        elif grows:
            free_init = total - cuda_context - (NCCL_OUTSIDE_BYTES if tp * pp > 1 else 0)
            held = {**extensible_budget(requested, free_init, w + nt + g, a + g), "profiled": requested - w - a - nt - g}
            avail = held["available"]
        elif holds("vllm-peak-includes-non-torch", v):
            avail = requested - (w + a) - (nt + cuda_context)
        else:
            avail = requested - w - a - nt - (g if graphs_in_budget(v) else 0)
        if no_kv:
            avail = 0
        size, n_groups, groups = group_layout(st["layers"], hybrid)
        page = linear_page or page_bytes(groups[0][0], block, kv_b)
        pages_equal = linear_page > 0 or all(page_bytes(x, block, kv_b) == page for x, _ in groups)
        if not pages_equal:
            # Uniform type with different head sizes (0.11+): one group whose page is the sum of the layers'.
            per_block = sum(page_bytes(x, block, kv_b) * x.count for x, _ in groups)
            n_groups = 1            # UniformTypeKVCacheSpecs: one group (0.19 v1/core/kv_cache_utils.py:1248-1252)
        else:
            per_block = page * size
        blocks = max(0, avail) // per_block if per_block else 0
        results.append({**st, "avail": avail, "blocks": blocks, "size": size, "n_groups": n_groups,
                        "groups": groups, "page": page, "per_block": per_block, "pages_equal": pages_equal,
                        "state_blocks": state_blocks, "held": held})
    tight = min(range(pp), key=lambda i: (results[i]["blocks"], results[i]["avail"]))
    r = results[tight]
    blocks = min(x["blocks"] for x in results)
    per_request = _blocks_per_request(r, max_len, block, mnbt)
    concurrency = blocks / per_request if per_request else 0.0
    if holds("vllm-peak-includes-non-torch", v):          # V1 before 0.9.1 also printed tokens / max_model_len
        tokens = blocks * block
        concurrency = tokens / max_len
    elif holds("vllm-tokens-from-concurrency", v):
        tokens = int(concurrency * max_len)
    else:
        tokens = blocks // r["n_groups"] * block if r["n_groups"] > 1 else blocks * block
    needed = max(_needed_bytes(x, max_len, block, mnbt, kv_b) for x in results)
    avail_min = min(x["avail"] for x in results)
    longest = _longest(results, max_len, block, mnbt, kv_b)
    refusal = ""
    if no_kv:
        concurrency, tokens, longest = float(seqs), 0, max_len
    elif avail_min <= 0:
        refusal = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                   "initializing the engine.")
    elif needed > avail_min:
        typo = "models's" if holds("vllm-typo-models-s", v) else "model's"
        refusal = (f"To serve at least one request with the {typo} max seq len ({max_len}), "
                   f"({needed / GiB:.2f} GiB KV cache is needed, which is larger than the available KV cache "
                   f"memory ({avail_min / GiB:.2f} GiB). "
                   + (f"Based on the available memory, the estimated maximum model length is {longest}. "
                      if longest else "")
                   + "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
                     "the engine.")
    nccl_outside = tp * pp > 1 and not holds("vllm-nccl-in-budget", v)
    free_at_init = total - cuda_context - (NCCL_OUTSIDE_BYTES if nccl_outside else 0)

    if not refusal and not holds("vllm-peak-includes-non-torch", v) and s.kv_cache_memory_bytes is None \
            and not grows and free_at_init < requested:
        refusal = (f"Free memory on device ({free_at_init / GiB:.2f}/{total / GiB:.2f} GiB) on startup is less "
                   f"than desired GPU memory utilization ({util}, {requested / GiB:.2f} GiB). Decrease GPU memory "
                   f"utilization or reduce GPU memory used by other processes.")
    pool = blocks * r["per_block"] if r["avail"] > 0 else 0
    rr = r
    nccl = NCCL_OUTSIDE_BYTES if nccl_outside else 0
    unused = (total - cuda_context - sum(rr["weights"].values()) - sum(rr["act"].values()) - rr["non_torch"]
              - pool - rr["graphs"] - nccl)
    device = tree("device total", [
        ("weights", rr["weights"]), ("activation peak (profiled; cached by the allocator)", rr["act"]),
        ("non-torch memory", rr["non_torch_named"]),
        ("KV cache", {f"{blocks:,} blocks of {block} tokens": pool}),
        ("CUDA graphs", {f"{rr['n_graph_sizes']} batch sizes x {split[tight] + 1} pieces": rr["graphs"]}),
        ("kept free by the extensible KV cache's sizing", {
            "margin: max(1 GiB, 0.75 x transient peak)": rr["held"].get("margin", 0),
            "CUDA-graph estimate, kept with the transient peak": rr["graphs"] if rr["held"] else 0}),
        ("NCCL communicators (outside the budget)", nccl),
        ("CUDA context", cuda_context),
    ], "device-total")
    report = {
        "Model loading took": f"{sum(rr['weights'].values()) / GiB:.4f} GiB",
        "Available KV cache memory": f"{(rr['held'] or {}).get('profiled', avail_min) / GiB:.2f} GiB",
        "GPU KV cache size": f"{tokens:,} tokens",
        f"Maximum concurrency for {max_len:,} tokens per request": f"{concurrency:.2f}x",
        "requested_bytes": requested, "available_kv_bytes": avail_min, "num_gpu_blocks": blocks,
        "kv_tokens": tokens, "max_concurrency": round(concurrency, 2), "needed_kv_bytes": needed,
        "estimated_max_model_len": longest, "page_bytes": r["page"], "kv_groups": r["n_groups"],
        "weights_bytes": sum(rr["weights"].values()), "activation_bytes": sum(rr["act"].values()),
        "non_torch_bytes": rr["non_torch"], "cuda_graph_bytes": rr["graphs"],
        "weights_and_non_torch_bytes": sum(rr["weights"].values()) + rr["non_torch"],
    }
    if speculating:        # the verify step's logits, not in the profile run (its sampler has one row a request)
        report["speculative_verify_logits_bytes"] = verify_logits_bytes(m, s, min(seqs, mnbt // (tokens_k(s) + 1)))
    warnings = []
    if v < V1_DEFAULT_FROM:
        warnings.append(f"vLLM {version} ran the V0 engine by default (V1 became the default in 0.8.0, "
                        "VLLM_USE_V1); this budget follows V1's profile run with the version rules back to its "
                        "first releases, and V0's own budget is not modelled: unverified")
    if max_len > m.max_positions:
        warnings.append(f"max_model_len {max_len} is longer than the model's max_position_embeddings "
                        f"({m.max_positions}); vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1")
    if m.linear_attn_layers and state_blocks == 3:
        warnings.append(f"blocks of {block} tokens and 3 state blocks per request: vLLM {version} with prefix caching "
                        "and FlashInfer's Gated DeltaNet prefill, the automatic choice on Hopper; with the Triton "
                        "backend (other GPUs) blocks are aligned to 16 tokens and a request keeps 2 state blocks")
    if not graphs_in_budget(v) and not s.enforce_eager and unused < 0:
        warnings.append("CUDA graphs are captured after the KV cache, outside the budget; they need room in "
                        "1 - gpu_memory_utilization")
    return ServingEstimate(
        engine="vllm", version=version, gpu_name=hw.name, gpu_memory_bytes=total, gpus=tp * pp * dp, device=device,
        kv_cache_bytes=pool, kv_cache_tokens=tokens, context_len=max_len, max_concurrency=round(concurrency, 2),
        max_context_len=longest, starts=not refusal, refusal=refusal, report=report,
        settings={"gpu_memory_utilization": util, "max_model_len": max_len, "max_num_batched_tokens": mnbt,
                  "max_num_seqs": seqs, "block_size": block, "kv_cache_dtype_bytes": kv_b,
                  "weights": fmt.label(), "reported_rank": f"pipeline stage {tight}" if pp > 1 else "every rank"},
        warnings=tuple(warnings))


def _blocks_per_request(r: dict, length: int, block: int, batched: int) -> int:
    """Blocks of the shared pool one request of ``length`` tokens takes: per group, what its spec
    needs (get_max_concurrency_for_kv_cache_config)."""
    if not r["pages_equal"]:
        return -(-length // block)
    return sum(need_blocks(spec, length, block, batched, r["state_blocks"]) * n for spec, n in r["groups"])


def _needed_bytes(r: dict, length: int, block: int, batched: int, kv_b: int) -> int:
    """KV bytes one request of ``length`` tokens needs on this worker (check_enough_kv_cache_memory)."""
    return sum(need_blocks(spec, length, block, batched, r["state_blocks"])
               * (r["page"] if spec.kind == "linear" else page_bytes(spec, block, kv_b)) * spec.count
               for spec, _ in r["groups"])


def _longest(results: list, max_len: int, block: int, batched: int, kv_b: int) -> int:
    """estimate_max_model_len: the largest length whose KV fits every worker's available memory."""
    return largest(lambda n: all(_needed_bytes(x, n, block, batched, kv_b) <= x["avail"] for x in results),
                   1, max_len)
