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
The budget's lines are in vllm_budget.py, the cache's blocks in vllm_kv.py, the profile run in
vllm_profile.py; this module puts them together as estimate_vllm, with the refusals and the log lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.spec import ModelSpec
from ..units import GiB
from ..versions import holds
from ..training.workload import Hardware
from .config import Serving
from ..model.formats import WeightFormat
from .kv import stage_split
from .result import ServingEstimate, tree
from .speculative import tokens as tokens_k, verify_logits_bytes
from .vllm_budget import (StageBudget, VllmSettings, available_kv_bytes, engine_settings, free_at_init,
                          graphs_in_budget, requested_bytes, stage_budget)
from .vllm_kv import KVPool, blocks_per_request, kv_pool, kv_tokens, linear_pages, longest, needed_bytes
from .vllm_profile import NCCL_OUTSIDE_BYTES

# VLLM_USE_V1 defaults to 1 from vLLM 0.8.0 (vllm/envs.py:522-523 @0.8.0; "0" at envs.py:503-504 @0.7.3, read
# from the released wheels); earlier releases ran the V0 engine, whose budget is not modelled here.
V1_DEFAULT_FROM = (0, 8, 0)


@dataclass(frozen=True)
class KVAnswer:
    """What the engine makes of its workers' pools (get_kv_cache_configs, v1/core/kv_cache_utils.py:
    1508-1612 at 0.19.0): the smallest block count of all workers, and the figures it logs from it."""
    tight: int                # the pipeline rank with the fewest blocks (the reported rank)
    blocks: int               # num_gpu_blocks
    block: int                # block_size, as a linear-attention model aligns it
    tokens: int               # "GPU KV cache size: N tokens"
    concurrency: float        # "Maximum concurrency for L tokens per request"
    needed_bytes: int         # KV one request of max_model_len needs on the busiest worker
    available_bytes: int      # the smallest available_kv_cache_memory_bytes of the workers
    longest: int              # estimate_max_model_len


def kv_answer(c: VllmSettings, pools: list, block: int) -> KVAnswer:
    """The engine's KV figures from each worker's pool; an encoder-only pooling model has none and
    serves max_num_seqs requests of any length."""
    tight = min(range(c.pp), key=lambda i: (pools[i].blocks, pools[i].available_bytes))
    r = pools[tight]
    blocks = min(x.blocks for x in pools)
    tokens, concurrency = kv_tokens(c.v, blocks, r, block, c.max_len, blocks_per_request(r, c.max_len, block, c.mnbt))
    most = longest(pools, c.max_len, block, c.mnbt, c.kv_b)
    if c.no_kv:
        concurrency, tokens, most = float(c.seqs), 0, c.max_len
    return KVAnswer(tight=tight, blocks=blocks, block=block, tokens=tokens, concurrency=concurrency,
                    needed_bytes=max(needed_bytes(x, c.max_len, block, c.mnbt, c.kv_b) for x in pools),
                    available_bytes=min(x.available_bytes for x in pools), longest=most)


def kv_refusal(c: VllmSettings, k: KVAnswer) -> str:
    """check_enough_kv_cache_memory's errors (v1/core/kv_cache_utils.py:619-652 at 0.19.0; "models's"
    until it was corrected, a version rule)."""
    if c.no_kv:
        return ""
    if k.available_bytes <= 0:
        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                "initializing the engine.")
    if k.needed_bytes <= k.available_bytes:
        return ""
    typo = "models's" if holds("vllm-typo-models-s", c.v) else "model's"
    return (f"To serve at least one request with the {typo} max seq len ({c.max_len}), "
            f"({k.needed_bytes / GiB:.2f} GiB KV cache is needed, which is larger than the available KV cache "
            f"memory ({k.available_bytes / GiB:.2f} GiB). "
            + (f"Based on the available memory, the estimated maximum model length is {k.longest}. "
               if k.longest else "")
            + "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
              "the engine.")


def startup_refusal(s: Serving, c: VllmSettings, requested: int, free: int, total: int) -> str:
    """request_memory's error when the start-up snapshot has less free memory than requested
    (v1/worker/utils.py:412-421 at 0.19.0); the extensible cache (0.34), --kv-cache-memory and V1
    before 0.9.1 do not check it."""
    if holds("vllm-peak-includes-non-torch", c.v) or s.kv_cache_memory_bytes is not None or c.grows \
            or free >= requested:
        return ""
    return (f"Free memory on device ({free / GiB:.2f}/{total / GiB:.2f} GiB) on startup is less "
            f"than desired GPU memory utilization ({c.util}, {requested / GiB:.2f} GiB). Decrease GPU memory "
            f"utilization or reduce GPU memory used by other processes.")


def estimate_vllm(m: ModelSpec, s: Serving, hw: Hardware, fmt: WeightFormat, cuda_context: int) -> ServingEstimate:
    c = engine_settings(m, s, hw)
    total = hw.memory_bytes
    requested = requested_bytes(total, c.util, c.v)
    split = stage_split(m.n_layers, c.pp)
    budgets = [stage_budget(m, s, hw, fmt, c, split, stage) for stage in range(c.pp)]
    block, linear_page, state_blocks = linear_pages(m, s, c, budgets[0].layers)
    kept = [available_kv_bytes(s, c, b, requested, total, cuda_context) for b in budgets]
    pools = [kv_pool(b.layers, avail, block, c.kv_b, c.hybrid, linear_page, state_blocks)
             for b, (avail, _) in zip(budgets, kept)]
    k = kv_answer(c, pools, block)
    nccl = NCCL_OUTSIDE_BYTES if c.tp * c.pp > 1 and not holds("vllm-nccl-in-budget", c.v) else 0
    refusal = kv_refusal(c, k) or startup_refusal(s, c, requested, free_at_init(total, cuda_context, nccl > 0), total)
    b, r, held = budgets[k.tight], pools[k.tight], kept[k.tight][1]
    pool = k.blocks * r.block_bytes if r.available_bytes > 0 else 0
    device = device_tree(b, k, held, pool, nccl, cuda_context, c.no_kv)
    unused = (total - cuda_context - b.weights_bytes - b.activation_bytes - b.non_torch_bytes - pool - b.graphs_bytes
              - nccl)
    return ServingEstimate(
        engine="vllm", version=c.version, gpu_name=hw.name, gpu_memory_bytes=total, gpus=c.tp * c.pp * c.dp,
        device=device, kv_cache_bytes=pool, kv_cache_tokens=k.tokens, context_len=c.max_len,
        max_concurrency=round(k.concurrency, 2), max_context_len=k.longest, starts=not refusal, refusal=refusal,
        report=vllm_report(m, s, c, b, r, k, held, requested),
        settings={"gpu_memory_utilization": c.util, "max_model_len": c.max_len, "max_num_batched_tokens": c.mnbt,
                  "max_num_seqs": c.seqs, "block_size": block, "kv_cache_dtype_bytes": c.kv_b,
                  "weights": fmt.label(), "reported_rank": f"pipeline stage {k.tight}" if c.pp > 1 else "every rank"},
        warnings=vllm_warnings(m, s, c, block, state_blocks, unused))


# Without a KV cache there is no profile run (v1/engine/core.py:235-250 at 0.19.0): the peak is the warm-up's
# forward over max_num_batched_tokens (FlashInfer's autotune on Hopper and later, model_executor/warmup/
# kernel_warmup.py:39-46, 81-107), kept by the allocator all the same.
ACTIVATION_LABELS = {False: "activation peak (profiled; cached by the allocator)",
                     True: "activation peak (warm-up; cached by the allocator)"}


def device_tree(b: StageBudget, k: KVAnswer, held: dict, pool: int, nccl: int, cuda_context: int,
                no_kv: bool = False):
    """The reported rank's memory as named parts adding up to the device total."""
    return tree("device total", [
        ("weights", b.weights), (ACTIVATION_LABELS[no_kv], b.activation),
        ("non-torch memory", b.non_torch),
        ("KV cache", {f"{k.blocks:,} blocks of {k.block} tokens": pool}),
        ("CUDA graphs", {f"{b.graph_sizes} batch sizes x {b.pieces} pieces": b.graphs_bytes}),
        ("kept free by the extensible KV cache's sizing", {
            "margin: max(1 GiB, 0.75 x transient peak)": held.get("margin", 0),
            "CUDA-graph estimate, kept with the transient peak": b.graphs_bytes if held else 0}),
        ("NCCL communicators (outside the budget)", nccl),
        ("CUDA context", cuda_context),
    ], "device-total")


def vllm_report(m: ModelSpec, s: Serving, c: VllmSettings, b: StageBudget, r: KVPool, k: KVAnswer, held: dict,
                requested: int) -> dict:
    """The figures vLLM's log prints (gpu_worker.py:424-440, kv_cache_utils.py:1287-1330 at 0.19.0), as
    text and in bytes; a model without a KV cache logs none of the cache's lines."""
    report = {"Model loading took": f"{b.weights_bytes / GiB:.4f} GiB", **({} if c.no_kv else kv_log_lines(c, k, held))}
    report.update({
        "requested_bytes": requested, "available_kv_bytes": k.available_bytes, "num_gpu_blocks": k.blocks,
        "kv_tokens": k.tokens, "max_concurrency": round(k.concurrency, 2), "needed_kv_bytes": k.needed_bytes,
        "estimated_max_model_len": k.longest, "page_bytes": r.page_bytes, "kv_groups": r.n_groups,
        "weights_bytes": b.weights_bytes, "activation_bytes": b.activation_bytes,
        "non_torch_bytes": b.non_torch_bytes, "cuda_graph_bytes": b.graphs_bytes,
        "weights_and_non_torch_bytes": b.weights_bytes + b.non_torch_bytes,
    })
    if c.speculating:      # the verify step's logits, not in the profile run (its sampler has one row a request)
        report["speculative_verify_logits_bytes"] = verify_logits_bytes(m, s, min(c.seqs, c.mnbt // (tokens_k(s) + 1)))
    return report


def kv_log_lines(c: VllmSettings, k: KVAnswer, held: dict) -> dict:
    """The cache's log lines: "Available KV cache memory" (gpu_worker.py:424-440, from determine_available_memory)
    and the two _report_kv_cache_config prints (kv_cache_utils.py:1319-1330, only for a model with KV cache
    groups, :1612-1613)."""
    return {"Available KV cache memory": f"{held.get('profiled', k.available_bytes) / GiB:.2f} GiB",
            "GPU KV cache size": f"{k.tokens:,} tokens",
            f"Maximum concurrency for {c.max_len:,} tokens per request": f"{k.concurrency:.2f}x"}


def vllm_warnings(m: ModelSpec, s: Serving, c: VllmSettings, block: int, state_blocks: int, unused: int) -> tuple:
    """What the answer cannot say for sure: the V0 engine, a length past the model's, the Gated DeltaNet
    backend's block, and CUDA graphs captured outside the budget with no room left for them."""
    warnings = []
    if c.v < V1_DEFAULT_FROM:
        warnings.append(f"vLLM {c.version} ran the V0 engine by default (V1 became the default in 0.8.0, "
                        "VLLM_USE_V1); this budget follows V1's profile run with the version rules back to its "
                        "first releases, and V0's own budget is not modelled: unverified")
    if c.max_len > m.max_positions:
        warnings.append(f"max_model_len {c.max_len} is longer than the model's max_position_embeddings "
                        f"({m.max_positions}); vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1")
    if m.linear_attn_layers and state_blocks == 3:
        warnings.append(f"blocks of {block} tokens and 3 state blocks per request: vLLM {c.version} with prefix "
                        "caching and FlashInfer's Gated DeltaNet prefill, the automatic choice on Hopper; with the "
                        "Triton backend (other GPUs) blocks are aligned to 16 tokens and a request keeps 2 state "
                        "blocks")
    if not graphs_in_budget(c.v) and not s.enforce_eager and unused < 0:
        warnings.append("CUDA graphs are captured after the KV cache, outside the budget; they need room in "
                        "1 - gpu_memory_utilization")
    return tuple(warnings)
