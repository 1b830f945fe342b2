"""Fused losses and kernels people switch on to save memory, each as what it keeps and what it frees.

Read from each library's source at the version named:
- Liger fused linear cross-entropy (liger-kernel 0.8.5, src/liger_kernel/ops/fused_linear_cross_entropy.py
  lines 97-125, 151-175, 574-578): no logits are returned; the tokens run in chunks of
  next_pow2(ceil(BT / ceil(V / H))) rows (_CHUNK_MEM_CONST = 1, line 27), each chunk's logits (chunk x V in
  the input's dtype) are turned into their gradient in place, and the gradients of the hidden states (BT x H)
  and, when it trains, of the output layer (V x H) are computed in forward and kept until backward; the loss
  per token is fp32.
- Cut Cross-Entropy (cut-cross-entropy 25.1.1, cut_cross_entropy/cce.py line 77, cce_backward.py lines 272-281):
  forward keeps the log-sum-exp (fp32 per token) and the inputs; backward recomputes the logits block by
  block and writes de (BT x H) and, when the classifier trains, dc (V x H).
- torchtune's CEWithChunkedOutputLoss (torchtune 0.6.1, torchtune/modules/loss/ce_chunked_output_loss.py
  lines 30-80): the logits are still made (in chunks, all kept), but each chunk is upcast to fp32 on its own,
  so the fp32 copy and the two fp32 gradients in backward are one chunk's (num_output_chunks, default 8);
  the log-softmax outputs of all chunks are kept, as before.
- flash-attention's CrossEntropyLoss (flash_attn/losses/cross_entropy.py and ops/triton/cross_entropy.py at
  058ad35a): a Triton kernel on the 16-bit logits; forward keeps ``save_for_backward(logits, lse, labels)``
  (the fp32 log-sum-exp per row beside the logits, which exist anyway); backward writes
  ``dlogits = torch.empty_like(logits)``, in place with inplace_backward=True (default False).
- Liger RMSNorm / SwiGLU / RoPE (ops/rms_norm.py line 674, swiglu.py line 272, rope.py line 289): RMSNorm
  saves X in its own dtype and the fp32 rstd (no fp32 copy, no normalised copy); SwiGLU saves the gate and
  up projections and recomputes silu(gate) * up in backward; RoPE rotates q and k in place.
"""

from __future__ import annotations

from dataclasses import replace

from ..model.spec import ModelSpec, q_dim
from .activations import LayerCost
from .context import FP32, StepContext
from .layers import HeadCost

LIGER_CHUNK_MEM_CONST = 1            # liger fused_linear_cross_entropy.py line 27
TORCHTUNE_CHUNKS = 8                 # CEWithChunkedOutputLoss(num_output_chunks=8), line 30


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def liger_chunk_rows(tokens: int, vocab: int, hidden: int) -> int:
    """Rows of one chunk (fused_linear_cross_entropy.py lines 103-105)."""
    inc = -(-vocab // (LIGER_CHUNK_MEM_CONST * hidden))
    return min(_next_pow2(-(-tokens // inc)), tokens)


def loss_head(head: HeadCost, kernel: str, ctx: StepContext, m: ModelSpec, head_trains: bool) -> HeadCost:
    """The causal-LM head under ``kernel``; ``head_trains``: the output layer's weight gets a gradient."""
    if kernel == "default" or head is None:
        return head
    T, V, h, cb = ctx.tokens, m.vocab_size, m.hidden_size, ctx.compute_bytes
    weight_grad = V * h * ctx.weight_bytes if head_trains else 0
    if kernel == "liger-flce":
        chunk = liger_chunk_rows(T, V, h)
        return replace(head, logits_bytes=0, loss_saved_bytes=cb * T * h + weight_grad + FP32 * T,
                       loss_forward_extra=cb * chunk * V, loss_backward_extra=0,
                       loss_saved_name="Liger FLCE: gradients computed in forward (hidden, output layer)",
                       forward_extra_name="Liger FLCE: one chunk of logits", backward_extra_name="loss gradients")
    if kernel == "cut-cross-entropy":
        return replace(head, logits_bytes=0, loss_saved_bytes=FP32 * T, loss_forward_extra=0,
                       loss_backward_extra=cb * T * h + (V * h * cb if head_trains else 0),
                       loss_saved_name="CCE: log-sum-exp per token",
                       backward_extra_name="CCE backward: de (and dc)")
    if kernel == "torchtune-chunked":
        n = TORCHTUNE_CHUNKS
        return replace(head, loss_forward_extra=-(-head.loss_forward_extra // n),
                       loss_backward_extra=-(-head.loss_backward_extra // n) + cb * T * V,
                       forward_extra_name="one chunk's fp32 upcast",
                       backward_extra_name="one chunk's fp32 loss gradients and the logits' gradient")
    # flash-attn-ce
    return replace(head, loss_saved_bytes=FP32 * T, loss_forward_extra=0, loss_backward_extra=cb * T * V,
                   loss_saved_name="flash-attn CE: log-sum-exp per row",
                   backward_extra_name="flash-attn CE: the logits' gradient")


def fused_layer(lc: LayerCost, ctx: StepContext, m: ModelSpec) -> LayerCost:
    """A decoder layer with Liger's RMSNorm, SwiGLU and RoPE (or Inductor's fusions, which rematerialise
    the same pointwise chains: see the compile rule)."""
    if m.family != "decoder":
        return lc
    saved = {}
    for name, b in lc.saved.items():
        if name.endswith("norm fp32 input") and m.norm in ("rmsnorm", "gemma_rmsnorm"):
            saved[name.replace("fp32 input", "input (own dtype)")] = b * ctx.residual_bytes // FP32
        elif name.endswith("norm normalised"):
            continue
        elif name == "MLP activation output" and m.gated_mlp:
            continue            # SwiGLU recomputes silu(gate) * up in backward
        else:
            saved[name] = b
    rotary = 2 * ctx.compute_bytes * ctx.tokens * q_dim(m) if ctx.kernel in ("flash", "efficient") else 0
    return replace(lc, saved=saved, forward_extra=max(0, lc.forward_extra - rotary))
