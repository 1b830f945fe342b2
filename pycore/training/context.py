"""The resolved facts of one step that every memory term needs (dtypes, tokens, kernels)."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.spec import ModelSpec, is_mla
from ..model.params import lora_targets
from ..units import dtype_bytes
from ..versions import holds, version_tuple
from .workload import QUANTISED_WEIGHTS, Framework, Precision, Workload

FP32 = 4


@dataclass(frozen=True)
class StepContext:
    batch: int
    seq: int
    tokens: int
    weight_bytes: int        # bytes per element of stored 16/32-bit weights (non-quantised parts for QLoRA)
    compute_bytes: int       # dtype the matmuls run in: autocast dtype, else the weights'
    residual_bytes: int      # dtype of the residual stream: the weights' (fp32 under autocast)
    amp: bool
    fp16: bool               # compute in fp16 (softmax has a fused half-to-float path)
    training: bool
    base_trainable: bool     # full training: base weights get gradients and save their inputs
    adapted: frozenset       # module names that carry LoRA adapters
    adapter_bytes: int       # dtype of LoRA adapters (fp32 under peft's default)
    kernel: str              # flash | efficient | math | eager, as picked for this model and dtype
    checkpointing: bool
    sp: int = 1              # sequence parallelism: hidden-width tensors are split by this degree
    selective: bool = False  # selective recomputation of the attention core
    cp: int = 1              # context parallelism: tokens are this rank's share of the sequence
    ep: int = 1              # expert parallelism: routed tokens go through an all-to-all
    packed_mask: bool = False  # an explicit mask reaches every layer's SDPA (packed rows, a KV prefix)
    adapter_name: str = "LoRA"  # the adapter type as peft names it, for the parts its copies are kept in


def sdpa_kernel(m: ModelSpec, w: Workload, f: Framework, compute_bytes: int, masked: bool) -> str:
    """The kernel torch.nn.functional.scaled_dot_product_attention runs (torch 2.11 sdp_utils.cpp).

    Flash needs 16-bit inputs and head_dim <= 256 and takes no explicit mask; the memory-efficient
    kernel takes fp32 and masks but not grouped-query attention (transformers then repeats K/V when a
    mask is present, sdpa_attention.py). fp32 with GQA and no mask passes enable_gqa=True, which only
    the math path accepts: measured in shared/calibration (llama1b-train-fp32-sgd keeps a fp32 s x s
    matrix per layer).
    """
    if w.attention == "eager":
        return "eager"
    tf = version_tuple(f.transformers, "framework.transformers", "a transformers version", "5.17")
    if w.attention == "sdpa" and not hf_runs_sdpa(m, tf, version_tuple(f.torch, "framework.torch", "a torch version", "2.11")):
        return "eager"
    if m.model_type == "gemma2" and holds("gemma2-eager-attention", tf):
        return "eager"
    if f.sdpa_kernel != "auto":
        return f.sdpa_kernel
    head = max(m.head_dim, m.v_head_dim)
    gqa = m.n_kv_heads < m.n_heads and not is_mla(m)
    if compute_bytes == 2 and head <= 256 and not masked:
        return "flash"
    if compute_bytes == 4 and gqa and not masked:
        return "math"
    return "efficient"


# transformers uses SDPA only with this torch or later (import_utils.is_torch_sdpa_available).
TORCH_SDPA_FOR_HF = (2, 1, 1)
# The rule that gives each family SDPA; the others got it with the first SDPA release (rule hf-sdpa-attention).
SDPA_RULE_BY_FAMILY = {"bert": "hf-sdpa-bert", "gpt2": "hf-sdpa-gpt2-neox", "neox": "hf-sdpa-gpt2-neox"}


def hf_runs_sdpa(m: ModelSpec, transformers: tuple, torch: tuple) -> bool:
    """Whether transformers runs this model's attention through SDPA at these versions: before, it computes
    eager attention whatever attn_implementation asks (rules hf-sdpa-attention, hf-sdpa-bert, hf-sdpa-gpt2-neox)."""
    if torch < TORCH_SDPA_FOR_HF or not holds("hf-sdpa-attention", transformers):
        return False
    return holds(SDPA_RULE_BY_FAMILY.get(m.family, "hf-sdpa-attention"), transformers)


def is_masked(m: ModelSpec, seq_len: int) -> bool:
    """transformers passes an explicit mask to SDPA when a sliding window is shorter than the
    sequence, which rules out the flash kernel (and, for fp32 GQA, the math path)."""
    return bool(m.sliding_window) and m.sliding_layers > 0 and seq_len > m.sliding_window


def seq_len_breakpoints(m: ModelSpec) -> tuple[int, ...]:
    """Lengths at which a discrete choice of the step changes, so that memory may fall as the length
    grows: the attention kernel switches where the sequence first exceeds the sliding window."""
    return (m.sliding_window + 1,) if m.sliding_window and m.sliding_layers else ()


def adapter_bytes(w: Workload, f: Framework, compute_bytes: int) -> int:
    """LoRA adapters are fp32 under peft's default autocast_adapter_dtype=True (checked with peft 0.21 in
    shared/calibration); the QLoRA recipe keeps them in the 16-bit compute dtype."""
    if w.mode == "qlora" or not f.lora_adapters_fp32:
        return compute_bytes
    return FP32


def _prefix_tokens(m: ModelSpec, w: Workload) -> int:
    """Prefix tuning / Cartridges: past key/values longer than the queries, so transformers builds an explicit
    b x 1 x s x (n + s) mask for SDPA (masking_utils: is_causal cannot be used when q_len != kv_len)."""
    if w.mode != "peft":
        return 0
    from .adapters import plan_for
    return plan_for(m, w.peft_config).prefix_tokens


def make_context(m: ModelSpec, w: Workload, p: Precision, f: Framework, *, sp: int = 1, selective: bool = False,
                 cp: int = 1, ep: int = 1) -> StepContext:
    training = w.mode != "inference"
    if w.mode == "inference" and p.weights in QUANTISED_WEIGHTS:
        weight_bytes = dtype_bytes(p.compute())     # weight-only quantisation: activations in bf16 or fp16
    else:
        weight_bytes = dtype_bytes(p.weights)
    compute = dtype_bytes(p.autocast) if p.autocast else weight_bytes
    adapted, adapter = frozenset(), "LoRA"
    if w.mode in ("lora", "qlora"):
        adapted = frozenset(lin.name for lin in lora_targets(m, w.lora_targets))
    elif w.mode == "peft":
        from .adapters import adapter_name, plan_for
        adapted, adapter = plan_for(m, w.peft_config).adapted_names, adapter_name(w.peft_config)
    explicit = w.packing == "sdpa-mask" or _prefix_tokens(m, w) > 0
    masked = is_masked(m, w.seq_len) or explicit          # packed rows, or keys longer than the queries
    return StepContext(
        batch=w.batch_size, seq=w.seq_len, tokens=w.batch_size * w.seq_len, weight_bytes=weight_bytes,
        compute_bytes=compute, residual_bytes=weight_bytes, amp=p.autocast is not None,
        fp16=p.compute() == "fp16", training=training, base_trainable=w.mode == "full",
        adapted=adapted, adapter_bytes=adapter_bytes(w, f, compute),
        kernel=sdpa_kernel(m, w, f, compute, masked), checkpointing=w.gradient_checkpointing and training,
        sp=sp, selective=selective, cp=cp, ep=ep, packed_mask=explicit, adapter_name=adapter,
    )
