"""vLLM's KV cache from the bytes left for it: page sizes, the groups the hybrid manager packs layers
into, the blocks of each worker, the tokens and concurrency it logs, and what one request needs.

Sources, v1/core/kv_cache_utils.py and v1/kv_cache_interface.py at 0.19.0 unless another version is
named (docs/serving.md lists the versions read).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..model.spec import ModelSpec
from ..units import largest
from ..versions import holds
from .config import Serving
from .kv import KVLayer
from .vllm_budget import DEFAULT_BLOCK_SIZE, VllmSettings


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


def linear_pages(m: ModelSpec, s: Serving, c: VllmSettings, layers: tuple) -> tuple[int, int, int]:
    """(block size, linear-attention page, state blocks): the settings' block, no linear page and one
    state block, unless the model has linear-attention layers, which need the hybrid manager and 0.10.2
    (Qwen3-Next's first release) and align the block to their state (hybrid_linear)."""
    if not m.linear_attn_layers:
        return c.block, 0, 1
    if s.disable_hybrid_kv_cache_manager:
        raise InputError("workload.disable_hybrid_kv_cache_manager",
                         "a model with linear-attention layers needs vLLM's hybrid KV cache manager")
    if c.v < (0, 10, 2):
        raise InputError("workload.version", "vLLM serves Qwen3-Next's linear attention from 0.10.2")
    return hybrid_linear(m, s, c.v, layers, c.kv_b, c.dt)


def group_layout(layers: tuple, hybrid: bool) -> tuple[int, int, list]:
    """(layers per group, number of groups, [(spec, groups of it)]) as get_kv_cache_config packs them:
    one spec when the hybrid manager is off (sliding layers cached as full ones,
    unify_hybrid_kv_cache_specs), else groups of min(layers of a kind) layers (:959-1034)."""
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


@dataclass(frozen=True)
class KVPool:
    """One worker's KV cache config (get_kv_cache_config_from_groups, kv_cache_utils.py:1081-1157)."""
    available_bytes: int      # available_kv_cache_memory_bytes of this worker
    blocks: int               # num_blocks before the engine takes the smallest over workers
    layers_per_group: int
    n_groups: int
    groups: tuple             # ((KVLayer spec, groups of it), ...)
    page_bytes: int           # one block of one layer of the first group (or the linear-attention page)
    block_bytes: int          # one block over every layer: page x layers per group, or the layers' pages
    pages_equal: bool         # False: UniformTypeKVCacheSpecs, one group whose page sums the layers'
    state_blocks: int         # blocks a linear-attention layer's state takes per request


def kv_pool(layers: tuple, available: int, block: int, kv_b: int, hybrid: bool, linear_page: int,
            state_blocks: int) -> KVPool:
    """num_blocks = available // page // layers per group (get_num_blocks, :839-854); a uniform type with
    different head sizes (0.11+) is one group whose block is the sum of the layers' pages, available //
    that (:1107-1116; one group, :1248-1252)."""
    size, n_groups, groups = group_layout(layers, hybrid)
    page = linear_page or page_bytes(groups[0][0], block, kv_b)
    pages_equal = linear_page > 0 or all(page_bytes(x, block, kv_b) == page for x, _ in groups)
    if pages_equal:
        per_block = page * size
    else:
        per_block = sum(page_bytes(x, block, kv_b) * x.count for x, _ in groups)
        n_groups = 1
    blocks = max(0, available) // per_block if per_block else 0
    return KVPool(available_bytes=available, blocks=blocks, layers_per_group=size, n_groups=n_groups,
                  groups=tuple(groups), page_bytes=page, block_bytes=per_block, pages_equal=pages_equal,
                  state_blocks=state_blocks)


def blocks_per_request(r: KVPool, length: int, block: int, batched: int) -> int:
    """Blocks of the shared pool one request of ``length`` tokens takes: per group, what its spec
    needs (get_max_concurrency_for_kv_cache_config, :802-820)."""
    if not r.pages_equal:
        return -(-length // block)
    return sum(need_blocks(spec, length, block, batched, r.state_blocks) * n for spec, n in r.groups)


def needed_bytes(r: KVPool, length: int, block: int, batched: int, kv_b: int) -> int:
    """KV bytes one request of ``length`` tokens needs on this worker (max_memory_usage_bytes, :656-662)."""
    return sum(need_blocks(spec, length, block, batched, r.state_blocks)
               * (r.page_bytes if spec.kind == "linear" else page_bytes(spec, block, kv_b)) * spec.count
               for spec, _ in r.groups)


def longest(pools: list, max_len: int, block: int, batched: int, kv_b: int) -> int:
    """estimate_max_model_len (:665-716): the largest length whose KV fits every worker's available
    memory, found by bisection over 1 .. max_model_len; 0 when not even one token fits."""
    return largest(lambda n: all(needed_bytes(x, n, block, batched, kv_b) <= x.available_bytes for x in pools),
                   1, max_len)


def kv_tokens(v, blocks: int, r: KVPool, block: int, max_len: int, per_request: int) -> tuple[int, float]:
    """(tokens, concurrency) as _report_kv_cache_config logs them (:1287-1330): blocks // groups x block
    tokens; from 0.21 int(concurrency x max_model_len) (0.33 kv_cache_utils.py 1120-1128); V1 before
    0.9.1 printed blocks x block tokens and tokens / max_model_len requests. Concurrency is blocks over
    the blocks one request needs."""
    concurrency = blocks / per_request if per_request else 0.0
    if holds("vllm-peak-includes-non-torch", v):
        return blocks * block, blocks * block / max_len
    if holds("vllm-tokens-from-concurrency", v):
        return int(concurrency * max_len), concurrency
    return (blocks // r.n_groups * block if r.n_groups > 1 else blocks * block), concurrency
