"""vLLM's memory budget on one worker, one function per line of determine_available_memory
(v1/worker/gpu_worker.py:332-482 at 0.19.0): the engine's settings, the requested bytes, each pipeline
rank's weights, profiled activation peak, non-torch memory and CUDA-graph estimate, and the KV bytes left.

Sources: the released wheels' Python source (vllm/...; docs/serving.md lists the versions read); each
function names the file and line it follows, at 0.19.0 unless another version is named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..model.spec import ModelSpec, is_mla
from ..units import GiB, MiB
from ..versions import holds, version_tuple
from ..training.workload import Hardware
from .config import Serving
from ..model.formats import WeightFormat
from .kv import kv_layers
from .speculative import draft_kv_layers, draft_profile_peak, draft_spec, draft_weight_parts, method, with_draft
from .vllm_extensible import EXTENSIBLE_UTILIZATION, extensible, extensible_budget
from .vllm_profile import NCCL_OUTSIDE_BYTES, non_torch_parts, profile_activation
from .weights import Shard, expert_ranks, rank_weight_parts, vision_bytes

DEFAULT_BLOCK_SIZE = 16                  # vllm/config/cache.py DEFAULT_BLOCK_SIZE
MLA_BLOCK_SIZE = 64                      # FlashMLA's block size (platforms/cuda.py 137-183, 0.10.2)
# CUDA graphs: piecewise capture records one graph per layer piece and batch size; the logs give 0.67
# GiB (Mistral-7B, 67 sizes x 33 pieces), 0.72 GiB (Granite-4.0-micro, 67 x 41 + 35 full graphs) and
# 3.45 GiB (Qwen3-235B TP8, 67 x 95): about 0.35 MiB per piece-graph, within a factor of 1.6 of each.
CUDAGRAPH_BYTES_PER_PIECE = int(0.35 * MiB)
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


# ---- the engine's settings ------------------------------------------------------------------------

@dataclass(frozen=True)
class VllmSettings:
    """The engine arguments as vLLM resolves them for one request (engine/arg_utils.py, config/)."""
    version: str
    v: tuple                  # the version as a tuple, for the version rules
    tp: int
    pp: int
    dp: int
    ep: int                   # expert-parallel ranks
    dt: int                   # bytes per element of the model's dtype
    kv_b: int                 # bytes per element of the KV cache
    util: float               # gpu_memory_utilization
    max_len: int              # max_model_len
    mnbt: int                 # max_num_batched_tokens
    seqs: int                 # max_num_seqs
    block: int                # block_size before a linear-attention model aligns it (vllm_kv.linear_pages)
    hybrid: bool              # the hybrid KV cache manager groups layers by kind
    grows: bool               # the extensible KV cache (0.34) sizes the cache after warmup
    speculating: bool
    pooling: bool
    no_kv: bool               # an encoder-only pooling model: no KV cache spec at all


def engine_settings(m: ModelSpec, s: Serving, hw: Hardware) -> VllmSettings:
    """The settings the budget reads, with vLLM's defaults for those the request leaves out."""
    v = parse_version(s.engine_version())
    tp, pp, dp = s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size
    if pp > m.n_layers:
        raise InputError("workload.pipeline_parallel_size", f"must be at most the model's {m.n_layers} layers")
    ep = expert_ranks(m, tp, dp, s.enable_expert_parallel, "workload.enable_expert_parallel")
    dt = 4 if s.dtype == "float32" else 2
    kv_b = 1 if s.kv_cache_dtype in FP8_DTYPES else (4 if s.kv_cache_dtype == "auto" and dt == 4 else 2)
    speculating, pooling = method(s) is not None, s.runner == "pooling"
    # An encoder-only pooling model (BERT: EncoderOnlyAttention) has no KV cache spec, so the engine
    # neither profiles nor allocates a cache (0.19 v1/engine/core.py:235-250, gpu_model_runner.py:6919-6921),
    # and 0.34 turns the extensible cache off for it ("the model has no KV cache", v1/executor/abstract.py:
    # 152-161, core.py:308-313), which brings the default utilization back (config/cache.py:494-501).
    no_kv = pooling and m.family == "bert"
    grows = extensible(v, s) and not no_kv    # 0.34: the KV cache is sized after warmup (vllm_extensible.py)
    util = s.gpu_memory_utilization if s.gpu_memory_utilization is not None else (
        EXTENSIBLE_UTILIZATION if grows else default_utilization(v))
    mnbt_d, seqs_d = scheduler_defaults(v, s.entrypoint, hw.memory_bytes, hw.name)
    mnbt = s.max_num_batched_tokens or mnbt_d
    seqs = s.max_num_seqs or (min(seqs_d, mnbt) if holds("vllm-max-num-seqs-capped", v) else seqs_d)
    hybrid = not s.disable_hybrid_kv_cache_manager and holds("vllm-hybrid-kv-manager", v) and \
        not (m.chunked_attention and holds("vllm-chunked-hybrid-off", v))
    return VllmSettings(
        version=s.engine_version(), v=v, tp=tp, pp=pp, dp=dp, ep=ep, dt=dt, kv_b=kv_b, util=util,
        max_len=s.max_model_len or m.max_positions, mnbt=mnbt, seqs=seqs,
        block=s.block_size or (MLA_BLOCK_SIZE if is_mla(m) else DEFAULT_BLOCK_SIZE), hybrid=hybrid, grows=grows,
        speculating=speculating, pooling=pooling, no_kv=no_kv)


def requested_bytes(total_bytes: int, util: float, v) -> int:
    """gpu_memory_utilization x total memory: request_memory, math.ceil from 0.14 (v1/worker/utils.py:
    403-423), int() before."""
    return math.ceil(total_bytes * util) if holds("vllm-request-rounded-up", v) else int(total_bytes * util)


# ---- one pipeline rank's lines --------------------------------------------------------------------

@dataclass(frozen=True)
class StageBudget:
    """One pipeline rank's lines of determine_available_memory, as named parts (gpu_worker.py:365-392)."""
    weights: dict             # model_memory_usage: the weights this rank loads
    activation: dict          # torch_peak_increase: the profile run's peak above the weights
    non_torch: dict           # non_torch_increase: NCCL and other allocations outside torch
    graphs_bytes: int         # cudagraph_memory_estimate (profile_cudagraph_memory)
    graph_sizes: int          # batch sizes captured
    pieces: int               # graphs per batch size: the rank's layers + 1 (piecewise capture)
    layers: tuple             # the rank's KV cache layers (kv.KVLayer), the drafter's included

    @property
    def weights_bytes(self) -> int:
        return sum(self.weights.values())

    @property
    def activation_bytes(self) -> int:
        return sum(self.activation.values())

    @property
    def non_torch_bytes(self) -> int:
        return sum(self.non_torch.values())


def stage_weights(m: ModelSpec, s: Serving, fmt: WeightFormat, c: VllmSettings, shard: Shard, drafts: bool) -> dict:
    """The weights one rank loads (gpu_model_runner.py load_model, model_memory_usage): its shard of
    the linears, the vision encoder on every rank, the rotary cache in the model dtype, and the drafter
    on the last rank (speculative.py)."""
    weights = dict(rank_weight_parts(m, fmt, c.dt, shard, True))
    if m.vision is not None:              # the multimodal model loads its encoder on every rank, 16-bit
        weights["vision encoder and projector"] = vision_bytes(m, c.tp, c.dt)
    if m.max_positions and not m.learned_positions:    # BERT and GPT-2 learn their positions: no rotary cache
        weights["rotary cos/sin cache"] = m.max_positions * (m.qk_rope_head_dim if is_mla(m) else m.head_dim) * c.dt
    if drafts:
        weights.update(draft_weight_parts(m, s, fmt, c.dt, c.tp))
    if s.logged_weights_gib is not None:
        weights = {"weights (from the log)": int(s.logged_weights_gib * GiB)}
    return weights


def stage_activation(m: ModelSpec, s: Serving, c: VllmSettings, gpu_name: str, last: bool, drafts: bool) -> dict:
    """The profile run's torch peak on one rank (gpu_worker.py:369-371, profile_torch_peak): the dummy
    forward over max_num_batched_tokens tokens and, on the last rank, the sampler; with a draft model
    the larger of the two forwards (gpu_model_runner.py:5521)."""
    requests = min(c.mnbt, c.seqs)
    act = profile_activation(m, c.mnbt, requests, c.tp, c.ep, c.dt, last=last and not c.pooling, v=c.v,
                             gpu_name=gpu_name)
    if drafts and s.draft_model is not None:
        act = draft_profile_peak(act, profile_activation(draft_spec(s), c.mnbt, requests, c.tp, 1, c.dt, last=False,
                                                         v=c.v, gpu_name=gpu_name))
    if s.logged_activation_gib is not None:
        act = {"peak activation (from the log)": int(s.logged_activation_gib * GiB)}
    return act


def stage_non_torch(s: Serving, c: VllmSettings, gpu_name: str) -> dict:
    """non_torch_increase (gpu_worker.py:386-390): what appears outside torch during the profile run
    (vllm_profile.non_torch_parts), or the figure the user's log gives."""
    if s.logged_non_torch_gib is not None:
        return {"non-torch memory (from the log)": int(s.logged_non_torch_gib * GiB)}
    return non_torch_parts(c.v, c.tp, c.pp, gpu_name)


def stage_budget(m: ModelSpec, s: Serving, hw: Hardware, fmt: WeightFormat, c: VllmSettings, split: tuple,
                 stage: int) -> StageBudget:
    """Pipeline rank ``stage``'s budget lines; the drafter lives on the last rank (speculative.py)."""
    first, count = sum(split[:stage]), split[stage]
    last = stage == c.pp - 1
    drafts = c.speculating and last
    shard = Shard(tp=c.tp, pp=c.pp, stage=stage, first_layer=first, layers=count, expert_ranks=c.ep)
    weights = stage_weights(m, s, fmt, c, shard, drafts)
    act = stage_activation(m, s, c, hw.name, last, drafts)
    non_torch = stage_non_torch(s, c, hw.name)
    sizes = [] if s.enforce_eager else capture_sizes(c.v, c.seqs, c.mnbt)
    layers = kv_layers(m, c.tp, first, count, "workload.tensor_parallel_size")
    if drafts:
        layers = with_draft(layers, draft_kv_layers(m, s, c.tp, "workload.tensor_parallel_size"))
    return StageBudget(weights=weights, activation=act, non_torch=non_torch,
                       graphs_bytes=len(sizes) * (count + 1) * CUDAGRAPH_BYTES_PER_PIECE, graph_sizes=len(sizes),
                       pieces=count + 1, layers=layers)


def free_at_init(total_bytes: int, cuda_context: int, nccl_outside: bool) -> int:
    """The free memory of the start-up snapshot: the device less the CUDA context and, where the
    communicators are made before it, NCCL's buffers."""
    return total_bytes - cuda_context - (NCCL_OUTSIDE_BYTES if nccl_outside else 0)


def available_kv_bytes(s: Serving, c: VllmSettings, b: StageBudget, requested: int, total_bytes: int,
                       cuda_context: int) -> tuple[int, dict]:
    """(available_kv_cache_memory_bytes, what the extensible cache keeps free); an encoder-only pooling
    model has no KV cache spec, so the engine skips determine_available_memory and gives it nothing
    (v1/engine/core.py:235-250): no budget, nothing kept free."""
    if c.no_kv:
        return 0, {}
    return _kv_budget(s, c, b, requested, total_bytes, cuda_context)


def _kv_budget(s: Serving, c: VllmSettings, b: StageBudget, requested: int, total_bytes: int,
               cuda_context: int) -> tuple[int, dict]:
    """requested - weights - activation peak - non-torch - the CUDA-graph estimate (gpu_worker.py:417-421;
    the graphs from 0.20, VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS); --kv-cache-memory as given (:344-361);
    up to 0.9.0 the peak also took in everything outside torch, the CUDA context included (0.8.5
    gpu_worker.py 177-212); 0.34's extensible cache by vllm_extensible.extensible_budget."""
    w, a, nt, g = b.weights_bytes, b.activation_bytes, b.non_torch_bytes, b.graphs_bytes
    if s.kv_cache_memory_bytes is not None:
        return s.kv_cache_memory_bytes, {}
    if c.grows:
        init = free_at_init(total_bytes, cuda_context, c.tp * c.pp > 1)
        held = {**extensible_budget(requested, init, w + nt + g, a + g), "profiled": requested - w - a - nt - g}
        return held["available"], held
    if holds("vllm-peak-includes-non-torch", c.v):
        return requested - (w + a) - (nt + cuda_context), {}
    return requested - w - a - nt - (g if graphs_in_budget(c.v) else 0), {}
