"""What a PEFT adapter adds to each layer's step: saved weight deltas, dropout masks, DoRA's scaled
outputs, prefix keys and values, the adaption prompt's scores, and the busiest moment's temporaries.

The input copies in the adapters' dtype are counted by the layer model itself (StepContext.adapted,
as for the LoRA mode); prompt tuning's virtual tokens lengthen the sequence (step_context).
"""

from __future__ import annotations

from dataclasses import replace

from ..model.spec import ModelSpec, kv_dim
from .activations import LayerCost
from .adapters import AdapterPlan
from .context import FP32, StepContext

MASK_BYTES = 1      # dropout masks are torch.bool (native_dropout)


def peft_layer_terms(plan: AdapterPlan, ctx: StepContext, m: ModelSpec) -> tuple[dict, int]:
    """(saved bytes per layer by name, forward transient bytes) averaged over the model's layers."""
    L, T, ab, cb = m.n_layers, ctx.tokens, ctx.adapter_bytes, ctx.compute_bytes
    saved = {}
    if plan.delta_elements:
        # LoHa/LoKr/HiRA/FourierFT/BOFT/HRA/...: the weights F.linear (and the rotations) keep, per adapted module
        saved["PEFT weight deltas (out x in, kept for backward)"] = plan.delta_elements * ab // L
    if plan.dropout_elements_per_token:
        saved["PEFT adapter dropout masks"] = MASK_BYTES * T * plan.dropout_elements_per_token // L
    if plan.extra_input_elements_per_token or plan.own_input_elements_per_token:
        # OFT's blocked copy of x in the adapters' dtype; VeRA's x in its own dtype
        saved["PEFT adapter inputs (further copies)"] = T * (ab * plan.extra_input_elements_per_token +
                                                             cb * plan.own_input_elements_per_token) // L
    if plan.output_ab_elements_per_token or plan.output_cb_elements_per_token:
        # DoRA's base and LoRA outputs (lora/dora.py lines 153-165), IA3's and RoAd's scaled base outputs,
        # RandLoRA's, DEFT's and VeRA's adapter outputs
        saved["PEFT adapter and base outputs kept for backward"] = T * (ab * plan.output_ab_elements_per_token +
                                                                        cb * plan.output_cb_elements_per_token) // L
    if plan.prefix_tokens:
        # prefix keys and values joined to each layer's own: torch.cat makes (seq + n) copies the kernel keeps
        saved["prefix keys and values"] = 2 * ctx.batch * plan.prefix_tokens * kv_dim(m) * cb
    if plan.adaption_layers:
        # adaption_prompt/layer.py: softmax(q @ prompt_k^T, dtype=float32) kept by the gate multiply and
        # the product with the prompt values, on batch x heads x seq x adapter_len scores
        scores = ctx.batch * m.n_heads * ctx.seq * plan.adaption_len
        saved["adaption prompt scores (fp32 softmax and gated)"] = (FP32 + cb) * scores * plan.adaption_layers // L
    return saved, plan.delta_transient * ab


def with_peft_terms(layers: list[LayerCost], plan: AdapterPlan, ctx: StepContext, m: ModelSpec) -> list[LayerCost]:
    saved, transient = peft_layer_terms(plan, ctx, m)
    if not saved and not transient:
        return layers
    out = []
    for lc in layers:
        merged = dict(lc.saved)
        for name, b in saved.items():
            if b:
                merged[name] = merged.get(name, 0) + b
        out.append(replace(lc, saved=merged, forward_extra=lc.forward_extra + transient,
                           backward_extra=lc.backward_extra + transient))
    return out
