"""llama.cpp (and Ollama, which runs it): the GGUF weights on each device, the KV cache allocated up
front for the whole context, and the compute buffer the graph allocator reserves.

Sources: llama.cpp ec98e2002 (Dec 2025, build ~b7400) as vendored in ollama f63eea3d, and the logs in
tests/data/golden_serving.json. Rules that changed between builds carry their build range; the
boundaries marked "about" are dated from logs, not from a bisected commit.
- context: n_ctx = pad(n_ctx or n_ctx_train, 256); n_batch = min(n_ctx, n_batch); n_ubatch =
  min(n_batch, n_ubatch) (src/llama-context.cpp 52, 132-134, 149). Without a unified cache each of
  the n_parallel streams gets pad(n_ctx / n_parallel, 256) cells (:151-164); before about b7000 the
  context was padded to 256 with flash attention and 32 without, with no per-stream padding;
- KV: K = cells x row(type_k, n_head_kv x head_dim) per layer, V likewise (src/llama-kv-cache.cpp
  113-134); each layer's cache sits on that layer's device (offload_kqv, :108-119);
- sliding-window layers get their own cache of pad(min(cells, n_swa x streams + n_ubatch), 256) cells
  (src/llama-kv-cache-iswa.cpp 47-70; before about b7000 not padded), or full cells with --swa-full;
- MLA (deepseek2): one head of K = kv_lora_rank + rope (576) and V = kv_lora_rank (512) elements;
  builds from about b7600 keep no separate V;
- layers: the last n_gpu_layers repeating layers go to the GPUs, the output layer only when
  n_gpu_layers > n_layer, token_embd always stays on the CPU (src/llama-model.cpp 2396-2421);
  layers split over devices in proportion (upper_bound of the cumulative split);
- compute buffer, flash attention off: max(4 ub (n_kv (n_head + 1) + 4 n_embd), 4 ub (n_vocab + n_embd))
  (Ollama fs/ggml/ggml.go line 665, which matches the FA-off logs within 1%); with flash attention the
  score term becomes the f16 mask 2 ub n_kv; host buffer 4 ub (n_embd + n_kv x masks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.spec import ModelSpec, is_mla
from ..units import MiB
from ..versions import holds
from ..training.workload import Hardware
from .config import Serving
from .gguf import TYPES, Tensor, gguf_file, model_tensors, row_bytes, tensor_bytes, tensor_types
from .kv import linear_flags, recurrent_state_bytes, sliding_flags
from .result import ServingEstimate, tree
from .speculative import llamacpp_draft_request, with_llamacpp_draft

# Ollama reserves this per CUDA/ROCm GPU for the runtime context (llm/memory.go MinimumMemory, 457 MiB);
# llama.cpp logs do not show it.
RUNTIME_CONTEXT_BYTES = 457 * MiB
# ggml-cuda pads each quantised row-split tensor by the rest of a 512-element row (ggml-cuda.cu 855-869).
CUDA_ROW_PADDING = 512
# Rules by build (pycore/versions.py RULES): llamacpp-pad-256, llamacpp-outputs-max, llamacpp-mla-no-v,
# llamacpp-iswa, llamacpp-flash-attn-auto.


def build_number(version: str) -> int:
    m = re.fullmatch(r"b?(\d{1,6})", version.strip())
    if not m:
        raise InputError("workload.version", f"a llama.cpp build is written like b7400, got {version[:40]!r}")
    return int(m.group(1))


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class LlamaContext:
    """The context as llama_context computes it (src/llama-context.cpp 52, 132-164)."""
    n_ctx: int                # the context over every stream
    cells: int                # KV cells of one stream
    streams: int              # 1 with a unified cache (or one sequence), else one per -np sequence
    n_seq: int                # -np
    n_batch: int
    n_ubatch: int


def context_cells(m: ModelSpec, s: Serving, build: int, flash: bool) -> LlamaContext:
    """n_ctx, cells per stream and streams as llama_context computes them."""
    n_ctx = s.n_ctx if s.n_ctx is not None else 4096
    if n_ctx == 0:
        n_ctx = m.max_positions
    n_seq = s.n_parallel
    streams = 1 if s.kv_unified or n_seq == 1 else n_seq
    if holds("llamacpp-pad-256", (build,)):
        n_ctx = _pad(n_ctx, 256)
        cells = n_ctx if streams == 1 else _pad(n_ctx // n_seq, 256)
        n_ctx = cells * streams
    else:
        n_ctx = _pad(n_ctx, 256 if flash else 32)
        cells = n_ctx // streams
    n_batch = min(n_ctx, s.n_batch)
    return LlamaContext(n_ctx=n_ctx, cells=cells, streams=streams, n_seq=n_seq, n_batch=n_batch,
                        n_ubatch=min(n_batch, s.n_ubatch))


def _kv_widths(m: ModelSpec, build: int) -> tuple[int, int, int]:
    """(K elements, V elements) per token and layer, and heads as llama.cpp stores them."""
    if is_mla(m):
        k = m.kv_lora_rank + m.qk_rope_head_dim
        return k, (0 if holds("llamacpp-mla-no-v", (build,)) else m.kv_lora_rank), 1
    w = m.n_kv_heads * m.head_dim
    return w, w, m.n_kv_heads


def _row(t: str, n: int) -> int:
    block = TYPES[t][0]
    if n % block:
        raise InputError("workload.cache_type_k", f"{t} needs rows that are multiples of {block}; this model's "
                                                  f"rows have {n} elements")
    return row_bytes(t, n)


def layer_kv_bytes(m: ModelSpec, s: Serving, ctx: LlamaContext, build: int) -> list[int]:
    """KV bytes of each layer (K + V over every stream)."""
    k_w, v_w, _ = _kv_widths(m, build)
    cells, streams = ctx.cells, ctx.streams
    swa_cells = cells
    if m.sliding_window and m.sliding_layers and not s.swa_full and holds("llamacpp-iswa", (build,)):
        ring = m.sliding_window * (ctx.n_seq if streams == 1 else 1) + ctx.n_ubatch
        swa_cells = min(cells, ring)
        if holds("llamacpp-pad-256", (build,)):
            swa_cells = _pad(swa_cells, 256)
    per_cell = _row(s.cache_type_k, k_w) + (_row(s.cache_type_v, v_w) if v_w else 0)
    flags = sliding_flags(m)
    out = [streams * (swa_cells if sliding else cells) * per_cell for sliding in flags]
    if m.linear_attn_layers:
        # A hybrid model's recurrent layers keep one conv and one state row per sequence, in f32
        # (llama-memory-recurrent.cpp; llama_memory_hybrid with type_r = type_s = GGML_TYPE_F32).
        state = ctx.n_seq * recurrent_state_bytes(m, 1, 4, 4)
        out = [state if lin else kv for kv, lin in zip(out, linear_flags(m))]
    return out


def _placement(m: ModelSpec, s: Serving) -> tuple[int, int, list[int]]:
    """(first GPU layer, GPU layers incl. the output layer, device of each layer index 0..n_layer)."""
    n = m.n_layers
    ngl = n + 1 if s.n_gpu_layers is None else s.n_gpu_layers
    start = max(n - ngl, 0)
    act = min(ngl, n + 1)
    devices = []
    for il in range(n + 1):
        if il < start or il - start >= act or act == 0:
            devices.append(-1)
        else:
            devices.append(min(s.devices - 1, (il - start) * s.devices // act))
    return start, act, devices


@dataclass(frozen=True)
class WeightTable:
    """A GGUF file's bytes summed where llama.cpp places them as a group: per block, its dense tensors
    and its expert tensors (each with the CUDA row padding they take on a GPU), the input embeddings
    (always in host memory) and the output layer's tensors. An estimate then adds up blocks, not
    tensors, so a search's work does not grow with the tensors of every evaluation."""
    dense: tuple                 # per block: (bytes, padding on a GPU)
    experts: tuple               # per block: (bytes, padding on a GPU) of its 3-D expert tensors
    embeddings: int              # token_embd / position_embd: the input layer stays in host memory
    output: tuple                # (bytes, padding on a GPU) of the output norm and output.weight
    output_weight: int           # output.weight, or the tied token_embd.weight that the output layer reads


def _padding(t: Tensor, ty: str) -> int:
    if ty in ("f32", "f16", "bf16") or not t.ne0 % CUDA_ROW_PADDING:
        return 0
    return row_bytes(ty, CUDA_ROW_PADDING - t.ne0 % CUDA_ROW_PADDING) * max(1, t.experts)


@lru_cache(maxsize=64)
def weight_table(m: ModelSpec, quant: str) -> WeightTable:
    n = m.n_layers
    dense, experts = [[0, 0] for _ in range(n)], [[0, 0] for _ in range(n)]
    embeddings, output, output_weight = 0, [0, 0], 0
    for t, ty in zip(model_tensors(m), tensor_types(m, quant)):
        b = tensor_bytes(t, ty)
        if t.name == ("output.weight" if not m.tied_embeddings else "token_embd.weight"):
            output_weight = b
        if t.name in ("token_embd.weight", "position_embd.weight"):
            embeddings += b
            continue
        group = output if t.layer < 0 else (experts if t.experts > 1 else dense)[t.layer]
        group[0] += b
        group[1] += _padding(t, ty)
    return WeightTable(tuple(map(tuple, dense)), tuple(map(tuple, experts)), embeddings, tuple(output), output_weight)


def flash_attention(s: Serving, build: int) -> bool:
    """-fa on, or auto with layers on a GPU from the build that made auto the default; a quantised V
    cache needs it (llama-context.cpp)."""
    on_gpu = s.n_gpu_layers is None or s.n_gpu_layers > 0
    flash = s.flash_attn == "on" or (s.flash_attn == "auto" and on_gpu and holds("llamacpp-flash-attn-auto", (build,)))
    if not flash and s.cache_type_v not in ("f16", "bf16", "f32"):
        raise InputError("workload.cache_type_v", "a quantised V cache needs flash attention "
                                                  "(llama-context.cpp: \"quantized V cache was requested, but this "
                                                  "requires Flash Attention\")")
    return flash


def model_buffers(m: ModelSpec, s: Serving, table: WeightTable, devices: list) -> tuple[list, list, int]:
    """(GGUF bytes per device, CUDA row padding per device, host bytes): each block's tensors on its
    layer's device; --n-cpu-moe keeps the experts of its first layers in host memory; the output norm and
    output.weight on the output layer's device; the input embeddings in host memory (llama-model.cpp
    load_tensors 2396-2421)."""
    n, nd = m.n_layers, s.devices
    model_dev, padding_dev = [0] * nd, [0] * nd
    host_model = table.embeddings
    groups = [(devices[il], table.dense[il]) for il in range(n)]
    groups += [(-1 if il < s.n_cpu_moe else devices[il], table.experts[il]) for il in range(n)]
    groups.append((devices[n], table.output))
    for d, (b, pad) in groups:
        if d < 0:
            host_model += b
        else:
            model_dev[d] += b
            padding_dev[d] += pad
    if m.tied_embeddings and devices[n] >= 0:
        model_dev[devices[n]] += table.output_weight    # the output layer's copy of the tied embedding
    return model_dev, padding_dev, host_model


def kv_buffers(kv: list, devices: list, nd: int) -> tuple[list, int]:
    """(KV bytes per device, KV bytes in host memory): each layer's cache on its layer's device
    (offload_kqv, llama-kv-cache.cpp 108-119)."""
    kv_dev, kv_host = [0] * nd, 0
    for il, b in enumerate(kv):
        if devices[il] < 0:
            kv_host += b
        else:
            kv_dev[devices[il]] += b
    return kv_dev, kv_host


@dataclass(frozen=True)
class GraphTerms:
    """The compute buffer's candidates, in bytes, as the graph allocator reserves them (Ollama
    fs/ggml/ggml.go 665, which matches the FA-off logs within 1%)."""
    logits: int               # 4 x outputs x (n_vocab + n_embd)
    attention: int            # FA off: 4 ub (n_kv (n_head + 1) + 4 n_embd); on: the f16 mask 2 ub n_kv + 4 ub 4 n_embd
    ffn: int                  # 4 ub (2 x widest FFN + 2 n_embd)
    host: int                 # the CPU buffer: 4 ub (n_embd + n_kv x masks)


def graph_terms(m: ModelSpec, ctx: LlamaContext, flash: bool, build: int) -> GraphTerms:
    """The terms of one ubatch's graph; logits for one row a sequence from about b6500, else every token."""
    ub, n_kv, h = ctx.n_ubatch, ctx.cells, m.hidden_size
    outputs = max(1, ctx.n_seq) if holds("llamacpp-outputs-max", (build,)) else ub
    if flash:
        attention = 2 * ub * n_kv + 4 * ub * 4 * h
    else:
        attention = 4 * ub * (n_kv * (m.n_heads + 1) + 4 * h)
    masks = 2 if (m.sliding_window and 0 < m.sliding_layers < m.n_layers) else 1
    return GraphTerms(logits=4 * outputs * (m.vocab_size + h), attention=attention,
                      ffn=4 * ub * (2 * _widest_ffn(m) + 2 * h), host=4 * ub * (h + n_kv * masks))


def device_compute(m: ModelSpec, s: Serving, g: GraphTerms, devices: list, flash: bool, offload_copy: tuple) -> list:
    """[(bytes, which term)] of each device's compute buffer: the largest of its layers' attention and
    MLP and, on the output layer's device, the logits. Op offload (ggml-backend scheduler, ggml-cuda.cu
    get_op_batch_size >= 32): with the output layer in host memory its matmul still runs on the first
    GPU (ggml-backend.cpp ggml_backend_sched_backend_id_from_cur, "1.off"), on a copy of output.weight;
    without flash attention a CPU layer's K and V are copied to the GPU for the attention product.
    ``offload_copy`` is (op offload, output.weight bytes, the largest CPU layer's KV bytes)."""
    n = m.n_layers
    op_offload, output_weight, cpu_kv = offload_copy
    partial = any(d < 0 for d in devices[:n])
    out = []
    for d in range(s.devices):
        phases = {}
        if any(x == d for x in devices[:n]):
            phases["attention scores" if not flash else "attention mask and activations"] = g.attention + (
                cpu_kv if partial and op_offload and not flash else 0)
            phases["MLP activations"] = g.ffn
        if devices[n] == d:
            phases["logits"] = g.logits
        elif devices[n] < 0 and op_offload and d == 0:
            phases["logits and a copy of the host's output.weight (op offload)"] = g.logits + output_weight
        which = max(phases, key=phases.get) if phases else ""
        out.append((phases.get(which, 0), which))
    return out


def host_compute(g: GraphTerms, on_gpu: bool, output_on_host: bool, op_offload: bool) -> int:
    """The CPU compute buffer: the host term; every term's largest when nothing is offloaded; the
    logits too when the output layer stays in host memory and runs there."""
    if not on_gpu:
        return max(g.attention, g.ffn, g.logits)
    if output_on_host and not op_offload:
        return max(g.host, g.logits)
    return g.host


@dataclass(frozen=True)
class Buffers:
    """Where llama.cpp's buffers land: per device and in host memory (bytes)."""
    model: list
    padding: list
    kv: list
    compute: list             # [(bytes, which term)]
    host_model: int
    host_kv: int
    host_compute: int
    host_output: int          # the output buffer: 4 x n_vocab a sequence
    gpu_layers: int           # layers offloaded, the output layer counted


def buffers(m: ModelSpec, s: Serving, ctx: LlamaContext, flash: bool, build: int, kv: list) -> Buffers:
    """Every buffer's bytes, placed by -ngl, --n-cpu-moe and the devices' split."""
    table = weight_table(m, s.quant)
    _, gpu_layers, devices = _placement(m, s)
    model_dev, padding_dev, host_model = model_buffers(m, s, table, devices)
    kv_dev, kv_host = kv_buffers(kv, devices, s.devices)
    g = graph_terms(m, ctx, flash, build)
    on_gpu = s.n_gpu_layers is None or s.n_gpu_layers > 0
    op_offload = on_gpu and ctx.n_ubatch >= 32
    cpu_kv = max((b for il, b in enumerate(kv) if devices[il] < 0), default=0)
    return Buffers(model=model_dev, padding=padding_dev, kv=kv_dev,
                   compute=device_compute(m, s, g, devices, flash, (op_offload, table.output_weight, cpu_kv)),
                   host_model=host_model, host_kv=kv_host,
                   host_compute=host_compute(g, on_gpu, devices[m.n_layers] < 0, op_offload),
                   host_output=4 * m.vocab_size * max(1, ctx.n_seq), gpu_layers=min(gpu_layers, m.n_layers + 1))


def device_trees(s: Serving, b: Buffers) -> list:
    """Each device's memory as named parts adding up to its total; Ollama's runtime reserve on a device
    that holds anything."""
    nd = s.devices
    return [tree(f"GPU {d}" if nd > 1 else "device total", [
        ("model buffer (GGUF weights)", {f"{s.quant} tensors": b.model[d], "CUDA row padding": b.padding[d]}),
        ("KV cache", b.kv[d]),
        ("compute buffer", {f"graph reserve ({b.compute[d][1]})" if b.compute[d][1] else "graph reserve":
                            b.compute[d][0]}),
        ("CUDA context", RUNTIME_CONTEXT_BYTES if (b.model[d] or b.kv[d]) else 0),
    ], "device-total") for d in range(nd)]


def llamacpp_report(m: ModelSpec, s: Serving, ctx: LlamaContext, flash: bool, kv: list, b: Buffers) -> dict:
    """The figures llama.cpp's log prints (file size, the buffers by backend, the offload count)."""
    f, nd, n = gguf_file(m, s.quant), s.devices, m.n_layers
    report = {
        "file size": f"{_size(f.bytes)} ({f.bits_per_weight:.2f} BPW)",
        "file_bytes": f.bytes, "bits_per_weight": round(f.bits_per_weight, 4),
        "tensor types": {t: c for t, c in f.type_counts},
        "n_ctx": ctx.n_ctx, "cells_per_stream": ctx.cells, "streams": ctx.streams,
        "n_batch": ctx.n_batch, "n_ubatch": ctx.n_ubatch, "flash_attn": flash,
        "kv_bytes": sum(kv), "kv_size_mib": round(sum(kv) / MiB, 2),
        "model_buffer_mib": {**{(f"CUDA{d}" if nd > 1 else "CUDA0"): round((b.model[d] + b.padding[d]) / MiB, 2)
                                for d in range(nd) if b.model[d]},
                             "CPU_Mapped": round(b.host_model / MiB, 2)},
        "kv_buffer_mib": {**{f"CUDA{d}": round(b.kv[d] / MiB, 2) for d in range(nd) if b.kv[d]},
                          **({"CPU": round(b.host_kv / MiB, 2)} if b.host_kv else {})},
        "compute_buffer_mib": {**{f"CUDA{d}": round(b.compute[d][0] / MiB, 2) for d in range(nd) if b.compute[d][0]},
                               "CUDA_Host": round(b.host_compute / MiB, 2)},
        "offloaded": f"{b.gpu_layers}/{n + 1} layers to GPU",
    }
    if m.sliding_window and m.sliding_layers:
        flags = sliding_flags(m)
        report["kv_swa_bytes"] = sum(x for x, sl in zip(kv, flags) if sl)
        report["kv_nonswa_bytes"] = sum(x for x, sl in zip(kv, flags) if not sl)
    return report


def estimate_llamacpp(m: ModelSpec, s: Serving, hw: Hardware) -> ServingEstimate:
    build = build_number(s.engine_version())
    if m.family == "bert":
        raise InputError("model", "llama.cpp serves decoder models; BERT is an encoder")
    flash = flash_attention(s, build)
    ctx = context_cells(m, s, build, flash)
    gguf_file(m, s.quant)                          # an unknown preset is the first error, before the caches
    kv = layer_kv_bytes(m, s, ctx, build)
    b = buffers(m, s, ctx, flash, build, kv)
    trees = device_trees(s, b)
    busiest = max(range(s.devices), key=lambda d: trees[d].bytes)
    host = tree("host memory", [("mapped weights (CPU_Mapped)", b.host_model), ("KV cache on the CPU", b.host_kv),
                                ("CPU compute buffer", b.host_compute), ("output buffer", b.host_output)])
    k_w, v_w, _ = _kv_widths(m, build)
    per_slot = ctx.cells if ctx.streams > 1 else ctx.n_ctx
    est = ServingEstimate(
        engine="llamacpp", version=f"b{build}", gpu_name=hw.name, gpu_memory_bytes=hw.memory_bytes, gpus=s.devices,
        device=trees[busiest], kv_cache_bytes=b.kv[busiest], kv_cache_tokens=ctx.n_ctx, context_len=per_slot,
        max_concurrency=float(ctx.n_seq), max_context_len=per_slot, starts=True,
        report=llamacpp_report(m, s, ctx, flash, kv, b), host_bytes=host.bytes, host=host,
        devices=tuple(trees) if s.devices > 1 else (),
        settings={"n_ctx": ctx.n_ctx, "n_gpu_layers": b.gpu_layers, "flash_attn": flash,
                  "n_ubatch": ctx.n_ubatch, "k_width": k_w, "v_width": v_w},
        warnings=(f"n_ctx {ctx.n_ctx} is longer than the model was trained for ({m.max_positions})",)
        if ctx.n_ctx > m.max_positions else ())
    if s.draft_model is not None:                     # -md: speculative decoding (speculative.py)
        d, ds = llamacpp_draft_request(s, est.context_len)
        est = with_llamacpp_draft(est, estimate_llamacpp(d, ds, hw), d, ds, s.n_parallel)
    return est


def _widest_ffn(m: ModelSpec) -> int:
    if m.n_experts:
        return max(m.expert_ffn_size * m.experts_per_token, m.ffn_size if m.dense_layers else 0)
    return m.ffn_size


def _size(b: int) -> str:
    return f"{b / MiB:.2f} MiB" if b < 1024 * MiB else f"{b / (1024 * MiB):.2f} GiB"

