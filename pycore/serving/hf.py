"""Inference: a plain forward pass, or ``generate`` with prefill and decode over a KV cache.

Under ``torch.no_grad`` nothing is kept for backward: a layer's temporaries are freed
as it finishes, so the busiest moment is one layer's working memory on top of the
weights, the KV cache and the hidden states.
"""

from __future__ import annotations

from ..training.activations import FP32, INDEX_BYTES
from ..training.context import StepContext
from ..model.spec import ModelSpec, is_mla, kv_dim, moe_layers, q_dim
from ..training.timeline import Snapshot



def kv_bytes_per_token(m: ModelSpec, kv_elem_bytes: int) -> tuple[int, int]:
    """K and V bytes per token for (full-attention layers, sliding-window layers), each layer.

    transformers' DeepSeek classes cache the decompressed per-head keys and values, not the
    latent (modeling_deepseek_v2.py past_key_values.update(key_states, value_states)).
    """
    if is_mla(m):
        per = m.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim) * kv_elem_bytes
    else:
        per = 2 * kv_dim(m) * kv_elem_bytes
    return per, per


def kv_cache_bytes(m: ModelSpec, batch: int, length: int, kv_elem_bytes: int) -> int:
    """The cache for ``length`` tokens. Sliding-window layers keep at most the window
    (DynamicSlidingWindowLayer in transformers' cache_utils.py)."""
    per, _ = kv_bytes_per_token(m, kv_elem_bytes)
    sliding = m.sliding_layers if m.sliding_window else 0
    full = m.n_layers - sliding
    window_len = min(length, m.sliding_window) if sliding else 0
    return batch * per * (full * length + sliding * window_len)


def layer_working_bytes(ctx: StepContext, m: ModelSpec, tokens: int, keys: int) -> dict:
    """Peak temporaries of one layer without autograd, for ``tokens`` query rows over ``keys``."""
    cb, rb, h = ctx.compute_bytes, ctx.residual_bytes, m.hidden_size
    qd, kd = q_dim(m), kv_dim(m)
    # The model's loop (hidden_states = decoder_layer(hidden_states, ...)) keeps the layer's input
    # alive beside the residual stream inside the layer, until the layer returns.
    out = {"layer input (held by the model's loop)": rb * tokens * h, "hidden states": rb * tokens * h,
           "normalised hidden states": cb * tokens * h}
    attn = {"attention projections and rotary": cb * tokens * (qd + 2 * kd) + 2 * cb * tokens * qd}
    if ctx.kernel == "eager" or ctx.kernel == "math":
        n = ctx.batch * m.n_heads * (tokens // ctx.batch) * keys
        # matmul, scale, mask add, softmax(dtype=float32) then .to(dtype) (eager_attention_forward):
        # the masked scores, softmax's fp32 output and the cast back to the compute dtype.
        attn["attention scores (b x heads x q x k)"] = cb * n
        attn["softmax output (fp32)"] = FP32 * n
        if cb == 2 and not ctx.fp16:
            # bf16 input: softmax first converts the scores to a fp32 copy; fp16 has a fused
            # half-to-float path (aten/src/ATen/native/cuda/SoftMax.cu), so this copy is bf16's only.
            attn["softmax input converted to fp32 (bf16 only)"] = FP32 * n
        elif cb != FP32:
            attn["softmax output cast to the compute dtype"] = cb * n
        attn["K/V repeated to all heads (repeat_kv)"] = cb * tokens * 2 * (m.n_heads * m.head_dim - kd)
    # Gated: act(gate), up and their product coexist. gelu_new, six Python ops evaluated left to
    # right, holds its input, 0.5 * x and two intermediates; one-op activations their input and output.
    ffn_factor = 3 if m.gated_mlp else (4 if m.activation == "gelu_new" else 2)
    ffn = {"MLP intermediates": ffn_factor * cb * tokens * m.ffn_size}
    if moe_layers(m):
        k, e, f = m.experts_per_token, m.n_experts, m.expert_ffn_size
        # Experts run on all routed rows at once (transformers 5 grouped experts): the gathered
        # rows, their gate/up projection, the activation and the product exist together, beside
        # the router's fp32 probabilities, the int64 top-k indices and the zeroed output.
        # Measured: olmoe-infer prefill holds about tokens x k x (h + 4 f) x 2 bytes more.
        moe_tmp = tokens * (FP32 * e + INDEX_BYTES * k + cb * h)
        # Two busy moments per expert pass: at the gated product (rows, gate/up, act, product) and at
        # the routing-weight multiply (rows, product, down output, weighted output).
        moe_tmp += cb * tokens * k * max(h + 4 * f, 3 * h + f)
        if m.n_shared_experts:
            moe_tmp += 3 * cb * tokens * m.shared_expert_ffn_size * m.n_shared_experts
        if not m.dense_layers or moe_tmp >= ffn["MLP intermediates"]:
            ffn = {"MoE routing and expert intermediates": moe_tmp}
    busiest = attn if sum(attn.values()) >= sum(ffn.values()) else ffn
    out.update({k: v for k, v in busiest.items() if v})
    out["layer output"] = cb * tokens * h
    return out


def inference_snapshots(ctx: StepContext, m: ModelSpec, weights: dict, new_tokens: int,
                        kv_elem_bytes: int) -> list[Snapshot]:
    b, s, cb, V = ctx.batch, ctx.seq, ctx.compute_bytes, m.vocab_size
    w = ("weights", dict(weights))
    snaps = []
    mask = {}
    if ctx.kernel == "eager":
        mask = {"attention mask (b x s x s)": cb * b * s * s}          # 4-D float mask shared by layers
    if new_tokens == 0:
        work = layer_working_bytes(ctx, m, b * s, s)
        snaps.append(Snapshot("forward", "last layer", (w, ("temporaries", {**work, **mask}))))
        head = {"logits": cb * b * s * V, "final hidden states": cb * b * s * m.hidden_size}
        if m.family == "bert":
            head["MLM head transform"] = 2 * cb * b * s * m.hidden_size
        snaps.append(Snapshot("forward", "output logits for every position", (w, ("logits and loss", head))))
        return snaps
    # DynamicLayer.update stores torch.cat([empty, k]): a copy, even of views of a fused projection.
    cache_prefill = kv_cache_bytes(m, b, s, kv_elem_bytes)
    work = layer_working_bytes(ctx, m, b * s, s)
    snaps.append(Snapshot("prefill", "last layer of the prompt pass", (
        w, ("KV cache", {"KV cache": cache_prefill}), ("temporaries", {**work, **mask}))))
    # generate keeps logits for the last position only (logits_to_keep=1) and copies them to fp32.
    last_logits = {"last-position logits": cb * b * V, "fp32 copy for sampling": FP32 * b * V}
    final_len = s + new_tokens - 1
    cache_final = kv_cache_bytes(m, b, final_len, kv_elem_bytes)
    one_layer = cache_final // max(1, m.n_layers) // 2
    decode_work = layer_working_bytes(ctx, m, b, final_len)
    snaps.append(Snapshot("decode", f"last decode step ({final_len} cached tokens)", (
        w, ("KV cache", {"KV cache": cache_final}),
        ("temporaries", {"torch.cat copy of one layer's keys": one_layer, **decode_work}),
        ("logits and loss", last_logits))))
    return snaps
