"""SGLang: the static KV pool its model runner sizes from mem_fraction_static, and the request slots
the scheduler derives from it.

Sources: the PyPI wheels of sglang (python/sglang/srt/...), primarily 0.5.3 (docs/serving.md lists
the versions read). Per GPU:
- pre = free memory before the weights load, the minimum over ranks (model_executor/model_runner.py
  lines 285 and 698-703; utils/common.py 393-465 uses torch.cuda.mem_get_info, so the CUDA context
  and NCCL are already gone from it);
- rest = post-load free - pre x (1 - mem_fraction_static) (model_runner.py profile_max_num_token,
  lines 1257-1298); tokens = rest // cell, the cell being the KV bytes of one token over this rank's
  layers: kv_heads x (head_dim + v_head_dim) x layers x dtype, or (kv_lora_rank + qk_rope_head_dim) x
  layers x dtype for MLA;
- capped by --max-total-tokens, rounded down to page_size, the minimum over pipeline stages
  (init_memory_pool, lines 1427-1499); sliding-window models split the pool into full and SWA layers
  by swa_full_tokens_ratio (set_num_token_hybrid, lines 1308-1388);
- request slots: min(max(int(tokens / context_len x 512), 2048), 4096), one more up to 0.4.6; the
  scheduler runs at most min(tokens // 2, slots) requests (managers/tp_worker.py 144-152);
- the default mem_fraction_static reserves memory by GPU size (server_args.py 637-675 in 0.5.3;
  310-349 in 0.4.10; a table by tensor-parallel size up to 0.4.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..versions import holds, version_tuple
from ..model.spec import ModelSpec, is_mla
from ..units import GiB, MiB
from ..training.workload import Hardware
from .config import Serving
from ..model.formats import WeightFormat
from .kv import kv_layers, stage_split
from .result import ServingEstimate, tree
from .vllm_budget import CUDAGRAPH_BYTES_PER_PIECE, FP8_DTYPES
from .vllm_profile import profile_activation
from .vllm_profile import NCCL_OUTSIDE_BYTES
from .speculative import (SGLANG_SPEC_MAX_RUNNING, VERIFY_LOGIT_BYTES, draft_weight_parts, method,
                          sglang_draft_cell, sglang_draft_tokens, sglang_reserve_mib)
from .weights import Shard, rank_weight_parts, vision_bytes

SWA_RATIO_DEFAULT = 0.8          # server_args.py swa_full_tokens_ratio
# The sampler on a decode batch: the logits, their fp32 copy and softmax's probabilities (2 + 4 + 4 bytes
# per vocabulary entry; layers/sampler.py, then FlashInfer's top-k/top-p sampling from the probabilities).
SAMPLER_BYTES_PER_LOGIT = 10


# On CUDA the rotary embedding keeps its cos/sin cache in float32 ("cache needs to be in FP32 for numerical
# stability"; layers/rotary_embedding/base.py:70-98 @0.5.10), built on the GPU while the model is created, so
# "Load weight end ... mem usage" counts it; get_rope shares one cache between the layers. vLLM casts it to
# the model dtype (vllm.py).
ROTARY_CACHE_BYTES_PER_ELEMENT = 4


def rotary_cache_bytes(m: ModelSpec) -> int:
    """max_position_embeddings x rotary dimension of the one shared cos/sin cache."""
    return m.max_positions * (m.qk_rope_head_dim if is_mla(m) else m.head_dim) * ROTARY_CACHE_BYTES_PER_ELEMENT


def parse_version(text: str) -> tuple[int, int, int]:
    return version_tuple(text, "workload.version", "an SGLang version", "0.5.3")


def gpu_defaults(v, gpu_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) by GPU memory (server_args.py 566-630 in 0.5.3)."""
    if gpu_mib < 20 * 1024:
        return 2048, 8
    if gpu_mib < 35 * 1024:
        return 2048, 16 if tp < 4 else 80
    if gpu_mib < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if gpu_mib < 160 * 1024:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def default_mem_fraction(v, gpu_mib: float, tp: int, pp: int, chunked: int, max_bs: int,
                         speculative_mib: int = 0) -> float:
    if holds("sglang-mfs-reserve-by-workload", v):
        reserved = 512 + max(chunked, 2048) * 1.5 + max_bs * 2 + tp * pp / 8 * 1024
        if gpu_mib > 60 * 1024:
            reserved = max(reserved, 10 * 1024)
        reserved += speculative_mib        # the drafter's weights, pool and graphs (speculative.py)
        return round((gpu_mib - reserved) / gpu_mib, 3)
    if holds("sglang-mfs-reserve-by-gpu", v):
        ps = tp * pp
        if gpu_mib < 35 * 1024:
            reserved = (2.8 + ps / 10) * 1024
        elif gpu_mib < 90 * 1024:
            reserved = (9.5 + ps / 2) * 1024
        elif gpu_mib < 160 * 1024:
            reserved = (12 + ps / 2) * 1024
        else:
            reserved = 32 * 1024
        return round((gpu_mib - reserved) / gpu_mib, 3)
    ps = tp * pp if holds("sglang-mfs-by-tp-and-pp", v) else tp
    for limit, value in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if ps >= limit:
            return value
    return 0.88


def cell_bytes(m: ModelSpec, layers: tuple, count: int, kv_b: int) -> tuple[int, int, int]:
    """(bytes per token over this rank's ``count`` layers, full-attention layers, sliding layers), from
    their cache layers (kv_layers)."""
    full = sum(x.count for x in layers if x.kind in ("full", "mla"))
    swa = sum(x.count for x in layers if x.kind == "sliding")
    if is_mla(m):
        return (m.kv_lora_rank + m.qk_rope_head_dim) * count * kv_b, count, 0
    heads = layers[0].kv_heads
    return heads * 2 * m.head_dim * (full + swa) * kv_b, full, swa


def mamba_state_per_request(layers: tuple, s: Serving, dt: int) -> int:
    """One request's slot in SGLang's MambaPool on this rank: every linear-attention layer's conv state
    (kernel - 1 columns, model dtype) and recurrent state (--mamba-ssm-dtype, float32 by default)
    (0.5.4 configs/mamba_utils.py Mamba2CacheParams, configs/qwen3_next.py:279-290)."""
    ssm = 4 if s.mamba_ssm_dtype == "float32" else 2
    return sum(x.state_bytes(dt, ssm) * x.count for x in layers if x.kind == "linear")


@dataclass(frozen=True)
class SglangSettings:
    """The server arguments as SGLang resolves them for one request (server_args.py)."""
    version: str
    v: tuple
    tp: int
    pp: int
    dt: int                   # bytes per element of the model's dtype
    kv_b: int                 # bytes per element of the KV cache
    chunked: int              # chunked_prefill_size
    max_bs: int               # cuda_graph_max_bs
    speculative: str | None   # the speculative method, if any (speculative.py)
    mfs: float                # mem_fraction_static
    context_len: int
    nccl: int                 # NCCL's buffers, gone from the free memory before the weights load
    pre: int                  # free memory before the weights load, the minimum over ranks


def sglang_settings(m: ModelSpec, s: Serving, hw: Hardware, cuda_context: int) -> SglangSettings:
    """The settings the budget reads, with SGLang's defaults by GPU size (server_args.py 566-675 in 0.5.3);
    pre = total - CUDA context - NCCL, or the free memory the user's log gives (model_runner.py 285, 698-703)."""
    v = parse_version(s.engine_version())
    tp, pp = s.tp_size, s.pp_size
    if pp > m.n_layers:
        raise InputError("workload.pp_size", f"must be at most the model's {m.n_layers} layers")
    dt = 4 if s.dtype == "float32" else 2
    gpu_mib = hw.memory_bytes / MiB
    chunk_d, bs_d = gpu_defaults(v, gpu_mib, tp)
    chunked = s.chunked_prefill_size or chunk_d
    max_bs = s.cuda_graph_max_bs if s.cuda_graph_max_bs is not None else bs_d
    kind = method(s)
    mfs = s.mem_fraction_static if s.mem_fraction_static is not None else default_mem_fraction(
        v, gpu_mib, tp, pp, chunked, max_bs, sglang_reserve_mib(s))
    nccl = NCCL_OUTSIDE_BYTES if tp * pp > 1 else 0
    pre = int(s.logged_free_gib * GiB) if s.logged_free_gib is not None else hw.memory_bytes - cuda_context - nccl
    return SglangSettings(version=s.engine_version(), v=v, tp=tp, pp=pp, dt=dt,
                          kv_b=1 if s.kv_cache_dtype in FP8_DTYPES else dt, chunked=chunked, max_bs=max_bs,
                          speculative=kind, mfs=mfs, context_len=s.context_length or m.max_positions, nccl=nccl,
                          pre=pre)


@dataclass(frozen=True)
class StagePool:
    """One pipeline rank's profile_max_num_token (model_runner.py 1257-1298 in 0.5.3)."""
    weights: dict             # what the rank loads, as named parts
    rest: float               # post-load free - pre x (1 - mem_fraction_static), less the state slots
    cell: int                 # KV bytes of one token over the rank's layers
    tokens: int               # rest // cell
    full: int                 # full-attention layers on the rank
    swa: int                  # sliding-window layers on the rank
    layers: int               # layers on the rank
    mamba_slots: int          # linear-attention state slots (MambaPool)
    mamba_per_req: int        # bytes of one slot

    @property
    def weights_bytes(self) -> int:
        return sum(self.weights.values())


def stage_weights(m: ModelSpec, s: Serving, fmt: WeightFormat, c: SglangSettings, shard: Shard) -> dict:
    """The weights one rank loads ("Load weight end"): its shard, the vision encoder, the fp32 rotary cache."""
    weights = dict(rank_weight_parts(m, fmt, c.dt, shard))
    if m.vision is not None:
        weights["vision encoder and projector"] = vision_bytes(m, c.tp, c.dt)
    if m.max_positions:
        weights["rotary cos/sin cache (fp32)"] = rotary_cache_bytes(m)
    if s.logged_weights_gib is not None:
        weights = {"weights (from the log)": int(s.logged_weights_gib * GiB)}
    return weights


def mamba_slots(rest: float, per_req: int, ratio: float) -> int:
    """A linear-attention model's state slots take rest x r / (1 + r) first (handle_max_mamba_cache,
    radix cache on; 0.5.4 model_runner.py:1433-1480)."""
    if not per_req or rest <= 0:
        return 0
    return int(rest * ratio / (1 + ratio) // per_req)


def stage_pool(m: ModelSpec, s: Serving, fmt: WeightFormat, c: SglangSettings, split: tuple, stage: int) -> StagePool:
    """rest = post-load free - pre x (1 - mem_fraction_static); tokens = rest // cell (profile_max_num_token)."""
    first, count = sum(split[:stage]), split[stage]
    weights = stage_weights(m, s, fmt, c, Shard(tp=c.tp, pp=c.pp, stage=stage, first_layer=first, layers=count))
    rest = c.pre - sum(weights.values()) - c.pre * (1 - c.mfs)
    layers = kv_layers(m, c.tp, first, count, "workload.tp_size")
    cell, n_full, n_swa = cell_bytes(m, layers, count, c.kv_b)
    per_req = mamba_state_per_request(layers, s, c.dt)
    slots = mamba_slots(rest, per_req, s.mamba_full_memory_ratio)
    rest -= slots * per_req
    return StagePool(weights=weights, rest=rest, cell=cell, tokens=int(rest) // cell if rest > 0 else 0,
                     full=n_full, swa=n_swa, layers=count, mamba_slots=slots, mamba_per_req=per_req)


def pool_tokens(m: ModelSpec, s: Serving, st: StagePool) -> tuple[int, int]:
    """(full-attention token slots, sliding-window slots): capped by --max-total-tokens, rounded down to
    page_size (init_memory_pool, model_runner.py 1427-1499); a sliding-window model splits the pool by
    swa_full_tokens_ratio (set_num_token_hybrid, 1308-1388)."""
    tokens = st.tokens if s.max_total_tokens is None else min(st.tokens, s.max_total_tokens)
    tokens = tokens // s.page_size * s.page_size
    if not (st.swa and not is_mla(m)):
        return tokens, 0
    r = s.swa_full_tokens_ratio
    if r * st.swa + st.full == 0:
        # set_num_token_hybrid divides by ratio x sliding layers + full layers (model_runner.py,
        # 0.5.4): with every attention layer sliding, a ratio of 0 leaves the division undefined
        raise InputError("workload.swa_full_tokens_ratio", "must be above 0 for this model: every attention "
                                                           "layer uses the sliding window, so its tokens are "
                                                           "the ratio's share of the pool")
    full_tokens = int(tokens * (st.full + st.swa) / (r * st.swa + st.full))
    return full_tokens, int(full_tokens * r)


def request_slots(s: Serving, c: SglangSettings, tokens: int, st: StagePool) -> tuple[int, int]:
    """(requests run at once, req_to_token pool slots): slots = min(max(int(tokens / context_len x 512),
    2048), 4096), one more up to 0.4.6; at most min(tokens // 2, slots) run (managers/tp_worker.py 144-152),
    48 with speculative decoding; a linear-attention model also by its state slots (3 a request, 5 with
    the extra buffer)."""
    slots = min(max(int(tokens / c.context_len * 512), 2048), 4096)
    pool_slots = slots + 1 if holds("sglang-request-pool-plus-one", c.v) else slots
    max_running = s.max_running_requests if s.max_running_requests is not None else (
        SGLANG_SPEC_MAX_RUNNING if c.speculative else None)
    running = min(tokens // 2, pool_slots) if max_running is None else min(max_running, pool_slots)
    if st.mamba_per_req:
        running = min(running, st.mamba_slots // (5 if holds("sglang-mamba-extra-buffer", c.v) else 3))
    return running, pool_slots


def sglang_refusal(s: Serving, c: SglangSettings, tokens: int, swa_tokens: int, hybrid: bool) -> str:
    """The model runner's error when the pool has no token (model_runner.py init_memory_pool), and a
    sliding-window pool whose ratio leaves its layers no slot."""
    if tokens <= 0:
        return ("Not enough memory. Please try to increase --mem-fraction-static. "
                f"Current value: self.server_args.mem_fraction_static={c.mfs}")
    if hybrid and swa_tokens <= 0:
        return (f"--swa-full-tokens-ratio {s.swa_full_tokens_ratio:g} leaves the sliding-window layers no "
                "token slots; no request can be scheduled")
    return ""


def kv_pool_bytes(s: Serving, st: StagePool, tokens: int, swa_tokens: int, hybrid: bool) -> int:
    """The K and V buffers: page_size more slots than tokens (slot 0 is padding), per layer kind."""
    if hybrid:
        per_layer_token = st.cell // max(1, st.full + st.swa)
        return ((tokens + s.page_size) * per_layer_token * st.full
                + (swa_tokens + s.page_size) * per_layer_token * st.swa)
    return (tokens + s.page_size) * st.cell if tokens > 0 else 0


def estimate_sglang(m: ModelSpec, s: Serving, hw: Hardware, fmt: WeightFormat, cuda_context: int) -> ServingEstimate:
    c = sglang_settings(m, s, hw, cuda_context)
    split = stage_split(m.n_layers, c.pp)
    stages = [stage_pool(m, s, fmt, c, split, stage) for stage in range(c.pp)]
    tight = min(range(c.pp), key=lambda i: stages[i].tokens)
    st = stages[tight]
    hybrid = bool(st.swa) and not is_mla(m)
    tokens, swa_tokens = pool_tokens(m, s, st)
    running, pool_slots = request_slots(s, c, tokens, st)
    refusal = sglang_refusal(s, c, tokens, swa_tokens, hybrid)
    kv_pool = kv_pool_bytes(s, st, tokens, swa_tokens, hybrid)
    device = device_tree(m, s, fmt, c, st, tight == c.pp - 1, tokens, swa_tokens, running, pool_slots, kv_pool,
                         cuda_context)
    return ServingEstimate(
        engine="sglang", version=c.version, gpu_name=hw.name, gpu_memory_bytes=hw.memory_bytes, gpus=c.tp * c.pp,
        device=device, kv_cache_bytes=kv_pool, kv_cache_tokens=tokens, context_len=c.context_len,
        max_concurrency=round(min(running, tokens / c.context_len if c.context_len else 0), 2),
        max_context_len=min(c.context_len, tokens), starts=not refusal, refusal=refusal,
        report=sglang_report(m, c, st, tokens, swa_tokens, running, kv_pool),
        settings={"mem_fraction_static": c.mfs, "context_length": c.context_len, "chunked_prefill_size": c.chunked,
                  "cuda_graph_max_bs": c.max_bs, "max_running_requests": running, "kv_cache_dtype_bytes": c.kv_b,
                  "weights": fmt.label()},
        warnings=(f"context_length {c.context_len} is longer than the model's max_position_embeddings "
                  f"({m.max_positions})",) if c.context_len > m.max_positions else ())


def draft_parts(m: ModelSpec, s: Serving, fmt: WeightFormat, c: SglangSettings, tokens: int, running: int) -> dict:
    """The speculative drafter, after mem_fraction_static's share: its weights, a KV pool of the target's
    token slots over its own layers, and the verify step's fp32 logits (speculative.py)."""
    if not c.speculative:
        return {}
    n = sglang_draft_tokens(m, s)
    return {**draft_weight_parts(m, s, fmt, c.dt, c.tp),
            f"draft KV pool ({tokens:,} token slots, as the target's)":
                (tokens + s.page_size) * sglang_draft_cell(m, s, c.tp, c.kv_b) if tokens > 0 else 0,
            f"verify logits ({running} requests x {n} draft tokens, fp32)":
                running * n * m.vocab_size * VERIFY_LOGIT_BYTES}


def device_tree(m: ModelSpec, s: Serving, fmt: WeightFormat, c: SglangSettings, st: StagePool, last: bool,
                tokens: int, swa_tokens: int, running: int, pool_slots: int, kv_pool: int, cuda_context: int):
    """The reported rank's memory as named parts adding up to the device total: the pool and the
    request-to-token table (int32, context_len + 4 a slot), graphs, the chunked prefill's activations."""
    graphs = _graph_count(c.max_bs) * (st.layers + 1) * CUDAGRAPH_BYTES_PER_PIECE
    act = profile_activation(m, c.chunked, max(1, min(c.chunked, c.max_bs or 1)), c.tp, 1, c.dt, last=last,
                             sampler_bytes=SAMPLER_BYTES_PER_LOGIT)
    return tree("device total", [
        ("weights", st.weights),
        ("KV cache", {f"{tokens:,} token slots" + (f" + {swa_tokens:,} sliding-window slots" if swa_tokens else ""):
                      kv_pool}),
        ("linear-attention state", {f"{st.mamba_slots} request slots": st.mamba_slots * st.mamba_per_req}),
        ("request-to-token table", {f"{pool_slots} slots x (context_len + 4) int32":
                                    pool_slots * (c.context_len + 4) * 4}),
        ("CUDA graphs", {f"batch sizes up to {c.max_bs}": graphs}),
        ("activations (chunked prefill of " + f"{c.chunked} tokens)", act),
        ("speculative drafter (after mem_fraction_static's share)", draft_parts(m, s, fmt, c, tokens, running)),
        ("NCCL communicators", c.nccl),
        ("CUDA context", cuda_context),
    ], "device-total")


def sglang_report(m: ModelSpec, c: SglangSettings, st: StagePool, tokens: int, swa_tokens: int, running: int,
                  kv_pool: int) -> dict:
    """The figures SGLang's log prints ("Load weight end", "KV Cache is allocated"), as text and in bytes."""
    report = {
        "mem_fraction_static": c.mfs, "max_total_num_tokens": tokens, "max_running_requests": running,
        "context_len": c.context_len, "chunked_prefill_size": c.chunked, "cuda_graph_max_bs": c.max_bs,
        "Load weight begin. avail mem": f"{c.pre / GiB:.2f} GB",
        "Load weight end. avail mem": f"{(c.pre - st.weights_bytes) / GiB:.2f} GB",
        "KV Cache is allocated. #tokens": tokens,
        "K size": f"{kv_pool / 2 / GiB:.2f} GB" if not is_mla(m) else None,
        "KV size": f"{kv_pool / GiB:.2f} GB" if is_mla(m) else None,
        "cell_bytes": st.cell, "rest_bytes": int(st.rest), "weights_bytes": st.weights_bytes,
        "kv_pool_bytes": kv_pool, "swa_tokens": swa_tokens, "free_before_load_bytes": int(c.pre),
        "max_mamba_cache_size": st.mamba_slots if st.mamba_per_req else None,
    }
    return {k: val for k, val in report.items() if val is not None}


def _graph_count(max_bs: int) -> int:
    """Captured batch sizes: 1, 2, 4, 8, then every 8 up to cuda_graph_max_bs (cuda_graph_runner.py)."""
    if max_bs <= 0:
        return 0
    return len([b for b in [1, 2, 4, 8] + list(range(16, max_bs + 1, 8)) if b <= max_bs])
