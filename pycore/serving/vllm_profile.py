"""vLLM's profile run, term by term: the sampler's dummy run, the fused-MoE workspaces that outlive
the forward, and the non-torch memory that appears after the start-of-profiling snapshot on more
than one rank. Each term names the source it follows (vLLM sdists read at 0.11.0, 0.12.0, 0.13.0,
0.14.1, 0.16.0, 0.17.0 and 0.19.0; the boundaries are the releases on either side).
"""

from __future__ import annotations

from ..model.spec import ModelSpec, kv_dim, q_dim
from ..units import GiB, MiB
from ..versions import holds

# ---- the GPU's streaming multiprocessors and interconnect -------------------------------------------
# SM counts from NVIDIA's datasheets / whitepapers (Hopper, Ada, Ampere, Blackwell); "nvls" marks the
# SXM parts behind NVSwitch whose NCCL communicators set up NVLink SHARP (NVLS) buffers (Hopper and
# later), "nvlink" SXM parts without NVLS, "pcie" cards that talk over PCIe only.
DEVICE_TRAITS = (          # (substring of the catalog name, SMs, interconnect)
    ("h100 pcie", 114, "pcie"), ("h100 nvl", 132, "nvlink"), ("h100", 132, "nvls"), ("h200", 132, "nvls"),
    ("gh200", 132, "nvls"), ("gb200", 148, "nvls"), ("b200", 148, "nvls"), ("b300", 148, "nvls"),
    ("a100", 108, "nvlink"), ("l40s", 142, "pcie"), ("l4", 58, "pcie"), ("a10g", 80, "pcie"), ("a10", 72, "pcie"),
    ("rtx 3090", 82, "pcie"), ("rtx 4090", 128, "pcie"), ("rtx 5090", 170, "pcie"), ("rtx 5080", 84, "pcie"),
    ("rtx 6000 ada", 142, "pcie"), ("rtx a6000", 84, "pcie"), ("rtx pro 6000", 188, "pcie"), ("t4", 40, "pcie"),
    ("v100", 80, "nvlink"),
)
DEFAULT_SMS = 132                 # an H100 SXM, for a GPU given only by its memory


def device_traits(gpu_name: str) -> tuple[int, str]:
    """(SMs, interconnect) of a GPU by its catalog name; unknown parts are taken as PCIe H100s."""
    name = gpu_name.lower()
    for key, sms, link in DEVICE_TRAITS:
        if key in name:
            return sms, link
    return DEFAULT_SMS, "pcie"


# ---- the sampler's dummy run (gpu_model_runner.py _dummy_sampler_run) -------------------------------
# Top-k and top-p on every row (top_k = vocab - 1, top_p = 0.9), temperature 0.5, no generators.
# Sort path (before 0.17): bf16 logits, their fp32 copy (sampler.py "logits.to(torch.float32)"), the
# sort's fp32 values and int64 indices, two bool masks, top-p's fp32 softmax, live together
# (topk_topp_sampler.py apply_top_k_top_p_pytorch): 2 + 4 + 4 + 8 + 1 + 1 + 4 + 4 bytes per logit.
SAMPLER_SORT_BYTES_PER_LOGIT = 28
# Triton path (0.17+, PR #33538; topk_topp_sampler.py:251-252 "if HAS_TRITON and logits.shape[0] >= 8"):
# the mask is applied in place, then softmax probabilities (fp32) and the exponential noise q of
# random_sample (empty_like(probs), divided in place) are live with both logits: 2 + 4 + 4 + 4 bytes.
SAMPLER_TRITON_BYTES_PER_LOGIT = 14
TRITON_MIN_ROWS = 8              # until 0.30, which takes the Triton path for any row count (rule below)
# The kernel's scratch: one fp32 row of the vocabulary per program, min(next_pow2(programs), SMs) rows,
# programs = min(SMs, rows); cached per device in _TRITON_BUFFER_CACHE (topk_topp_triton.py:1010-1021).
TRITON_SCRATCH_BYTES = 4


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def sampler_parts(v, rows: int, vocab: int, logit_bytes: int, sms: int) -> dict:
    """The sampler's dummy run on ``rows`` rows of ``vocab`` logits (the profile's last rank)."""
    triton_rows = rows >= TRITON_MIN_ROWS or holds("vllm-triton-top-k-top-p-any-rows", v)
    if holds("vllm-triton-top-k-top-p", v) and triton_rows:
        programs = min(sms, rows)
        scratch = min(_next_pow2(programs), sms) * vocab * TRITON_SCRATCH_BYTES
        per = SAMPLER_TRITON_BYTES_PER_LOGIT - 2 + logit_bytes
        return {f"sampler on {rows} rows (fp32 logits, probabilities, exponential noise; Triton top-k/top-p)":
                rows * vocab * per,
                f"Triton top-k/top-p scratch ({min(_next_pow2(programs), sms)} rows of the vocabulary, {sms} SMs)":
                scratch}
    per = SAMPLER_SORT_BYTES_PER_LOGIT - 2 + logit_bytes
    return {f"sampler on {rows} rows of logits (fp32 copy, sort, top-k/top-p masks)": rows * vocab * per}


# ---- fused-MoE workspaces ---------------------------------------------------------------------------
def moe_workspace_persists(v) -> bool:
    """From 0.13 the modular fused-MoE kernel takes workspace13 and workspace2 from the worker's
    WorkspaceManager (v1/worker/workspace.py; fused_moe/modular_kernel.py:1063 in 0.19), which keeps
    them: they are still allocated while the sampler runs, so the profile peak is their sum with it."""
    return holds("vllm-moe-workspace-manager", v)


# ---- non-torch memory -------------------------------------------------------------------------------
# Inside the budget at tensor parallel 1: cuBLAS/cuBLASLt workspaces and attention-backend buffers,
# 0.02-0.07 GiB in the logs of tests/data/golden_serving.json.
NON_TORCH_BASE = int(0.05 * GiB)
# From 2 ranks over PCIe: NCCL's communicator buffers and the custom all-reduce's, 0.21 GiB at TP8 on
# L40S (vLLM 0.10.2 log, tests/data/golden_serving.json l40s-qwen3-235b-fp8-tp8-v0.10.2).
NON_TORCH_TP_NCCL = int(0.16 * GiB)
# From 0.11 NCCL starts before the snapshot (gpu_worker.py init_device: init_worker_distributed_environment
# precedes MemorySnapshot, line 263 vs 282 in 0.19), so only the custom all-reduce's buffers (8 + 2 + 16
# MiB) are in the budget over PCIe.
NON_TORCH_TP_CUSTOM_AR = 26 * MiB
NCCL_OUTSIDE_BYTES = int(0.16 * GiB)
# Behind NVSwitch on Hopper and later, the first collectives of the profile run allocate NCCL's NVLS
# (NVLink SHARP) buffers and the FlashInfer / custom all-reduce IPC workspaces of TP > 1 after the
# snapshot: Llama-3-8B on H100 printed non_torch_memory 1.79 GiB at TP1 and 3.58 GiB at TP2
# (vllm-project/vllm PR #10511, 2024-12-14): 1.79 GiB more per rank. Pipeline-only runs use send/recv
# and stay at the PCIe figure. The same buffers appear in every version (issue 20: about 2 GiB per
# rank at TP2/TP4 on H100 with 0.19).
NON_TORCH_NVLS_BYTES = int(1.79 * GiB)


def non_torch_parts(v, tp: int, pp: int, gpu_name: str) -> dict:
    """Non-torch memory counted in the budget on one rank."""
    out = {"cuBLAS workspaces and attention-backend buffers": NON_TORCH_BASE}
    if tp * pp == 1:
        return out
    _, link = device_traits(gpu_name)
    if tp > 1 and link == "nvls":
        out["NCCL NVLS buffers and all-reduce workspaces (after the snapshot, NVSwitch)"] = NON_TORCH_NVLS_BYTES
    elif holds("vllm-nccl-in-budget", v):
        out["NCCL communicators and custom all-reduce buffers"] = NON_TORCH_TP_NCCL
    else:
        out["custom all-reduce buffers"] = NON_TORCH_TP_CUSTOM_AR
    return out


# ---- the multimodal encoder's profile run (gpu_model_runner.py profile_run, 0.19 lines 5721-5796) ----
def encoder_images(vt, max_batched: int) -> int:
    """Images of the encoder's dummy batch: the encoder budget, max(max_num_batched_tokens, one image's
    tokens) (v1/core/encoder_cache_manager.py compute_mm_encoder_budget; config/scheduler.py:234-235),
    over one image's tokens (multimodal/encoder_budget.py _get_max_items)."""
    if not vt.tokens_per_image:
        return 0
    return max(1, max(max_batched, vt.tokens_per_image) // vt.tokens_per_image)


def encoder_phase(vt, images: int, tp: int, dt: int) -> dict:
    """The encoder's forward on the dummy images: pixel values, the hidden states and residual, and one
    layer's MLP (fc1's output and its activation, split by TP; attention runs without a score matrix)."""
    if not images or not vt.patches:
        return {}
    rows = images * vt.patches
    return {f"encoder on {images} images: pixel values": images * vt.pixels * dt,
            "encoder hidden states and residual": 2 * rows * vt.hidden * dt,
            "encoder MLP (fc1 output and activation)": 2 * rows * (vt.ffn // tp) * dt}


def encoder_cache_bytes(vt, images: int, text_hidden: int, dt: int) -> int:
    """The encoder's outputs, kept in encoder_cache through the language model's dummy run and sampler."""
    return images * vt.tokens_per_image * text_hidden * dt


# ---- the profile run's peak (gpu_model_runner.py profile_run 5721, _dummy_run 5194, _dummy_sampler_run
# 5556 at 0.19.0): a forward of max_num_batched_tokens tokens without attention's KV, then the sampler -----

FUSED_MOE_CHUNK = 32768                  # VLLM_FUSED_MOE_CHUNK_SIZE default (envs.py)


def forward_phases(m: ModelSpec, tokens: int, tp: int, ep: int, dt: int) -> dict:
    """{phase: {part: bytes}} of one layer's dummy forward on one rank: attention's projections, the
    fused-MoE kernels' buffers (chunked at VLLM_FUSED_MOE_CHUNK_SIZE) and the dense MLP's outputs."""
    h, T = m.hidden_size, tokens
    qd, kd = q_dim(m) // tp, kv_dim(m) // tp
    phases = {"attention": {"QKV projection": T * (qd + 2 * kd) * dt, "attention output": T * qd * dt,
                            "o_proj output": T * h * dt}}
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
        phases["MLP"] = mlp_outputs(m, T, m.ffn_size // tp, dt)
    return phases


# A plain (ungated) MLP's two linears as vLLM names them, by family (0.19.0 model_executor/models/bert.py
# BertIntermediate.dense and BertOutput.dense, gpt_neox.py GPTNeoXMLP, gpt2.py GPT2MLP and starcoder2.py
# Starcoder2MLP): up projection, get_act_fn(hidden_act) on its output, down projection.
PLAIN_MLP_LINEARS = {"bert": ("intermediate.dense", "output.dense"), "neox": ("dense_h_to_4h", "dense_4h_to_h")}
PLAIN_MLP_DEFAULT = ("c_fc", "c_proj")
ACTIVATION_NAMES = {"silu": "SiLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "gelu_new": "NewGELU",
                    "relu": "ReLU"}


def mlp_outputs(m: ModelSpec, tokens: int, ffn: int, dt: int) -> dict:
    """One dense MLP's outputs on ``tokens`` rows (``ffn`` the rank's share): a gated MLP's merged
    gate_up projection (2 x ffn), SiluAndMul's output and down_proj's; a plain MLP's up projection
    (ffn), its activation's output and the down projection's."""
    out = tokens * m.hidden_size * dt
    if m.gated_mlp:
        return {"gate_up output": 2 * tokens * ffn * dt, "activation output": tokens * ffn * dt,
                "down_proj output": out}
    up, down = PLAIN_MLP_LINEARS.get(m.family, PLAIN_MLP_DEFAULT)
    return {f"{up} output": tokens * ffn * dt, f"{ACTIVATION_NAMES[m.activation]} output": tokens * ffn * dt,
            f"{down} output": out}


def profile_activation(m: ModelSpec, tokens: int, requests: int, tp: int, ep: int, dt: int, last: bool,
                       v=(0, 10, 2), gpu_name: str = "", sampler_bytes: int | None = None) -> dict:
    """The torch peak of the dummy forward and sampler, above the weights, on one rank: the larger of
    the two, with the fused-MoE workspaces added to the sampler's side where they persist (0.13+)."""
    T, h = tokens, m.hidden_size
    phases = forward_phases(m, tokens, tp, ep, dt)
    busiest = max(phases, key=lambda k: sum(phases[k].values()))
    forward = {"hidden states and residual": 2 * T * h * dt,
               **{f"{busiest}: {k}": b for k, b in phases[busiest].items()}}
    if not last:
        return _with_encoder(m, tokens, tp, dt, [forward], sampler_bytes is None)
    if sampler_bytes is not None:       # another engine's sampler (SGLang) at a fixed cost per logit
        logits = {f"sampler on {requests} rows of logits": requests * m.vocab_size * sampler_bytes}
    else:
        logits = sampler_parts(v, requests, m.vocab_size, dt, device_traits(gpu_name)[0])
    sampler = {"hidden states kept by the profile run": T * h * dt + requests * h * dt, **logits}
    if m.n_experts and sampler_bytes is None and moe_workspace_persists(v):
        sampler["fused MoE workspaces (kept by the WorkspaceManager)"] = phases["MoE"]["fused MoE intermediate caches"]
    return _with_encoder(m, tokens, tp, dt, [forward, sampler], sampler_bytes is None)


def _with_encoder(m: ModelSpec, tokens: int, tp: int, dt: int, candidates: list, vllm: bool) -> dict:
    """The profile peak: the largest phase; a multimodal model's encoder runs first, and its outputs stay
    in the encoder cache through the language model's phases."""
    if vllm and m.vision is not None and m.vision.tokens_per_image:
        images = encoder_images(m.vision, tokens)
        cache = encoder_cache_bytes(m.vision, images, m.hidden_size, dt)
        candidates = [{**c, f"encoder cache ({images} images)": cache} for c in candidates]
        candidates.append(encoder_phase(m.vision, images, tp, dt))
    return max(candidates, key=lambda c: sum(c.values()))
