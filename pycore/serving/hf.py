"""Inference: a plain forward pass, or ``generate`` with prefill and decode over a KV cache.

Under ``torch.no_grad`` nothing is kept for backward: a layer's temporaries are freed
as it finishes, so the busiest moment is one layer's working memory on top of the
weights, the KV cache and the hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.spec import ModelSpec, attention_layers, is_classifier, is_mla, kv_dim, moe_layers, q_dim
from ..training.result import Estimate, make_estimate
from ..training.activations import FP32, INDEX_BYTES
from ..training.context import StepContext, make_context
from ..training.static import weight_parts
from ..training.timeline import Snapshot
from ..units import dtype_bytes
from ..versions import holds, version_tuple
from ..training.workload import Framework, Hardware, Precision, Workload
from ..model.formats import named_format
from .hf_vision import with_vision_inference
from ..model.quant_kernels import call_temporaries, default_kernel, persistent_workspaces
from .kv import recurrent_state_bytes



def kv_bytes_per_token(m: ModelSpec, kv_elem_bytes: int, latent: bool = True) -> tuple[int, int]:
    """K and V bytes per token for (full-attention layers, sliding-window layers), each layer.

    DeepSeek's multi-head latent attention: transformers from 5.15 caches the compressed latent
    (rule mla-latent-cache: modeling_deepseek_v2.py:404 @5.17, past_key_values.update(k_nope, k_pe));
    before, the decompressed per-head keys and values (@4.57.6 :365-382).
    """
    if is_mla(m) and latent:
        per = (m.kv_lora_rank + m.qk_rope_head_dim) * kv_elem_bytes
    elif is_mla(m):
        per = m.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim) * kv_elem_bytes
    else:
        per = 2 * kv_dim(m) * kv_elem_bytes
    return per, per


def kv_cache_bytes(m: ModelSpec, batch: int, length: int, kv_elem_bytes: int, latent: bool = True,
                   whole_prompt: bool = False) -> int:
    """The cache for ``length`` tokens. Sliding-window layers keep at most the window
    (DynamicSlidingWindowLayer in transformers' cache_utils.py); ``whole_prompt``: right after the prompt
    pass, where their window is a view of the whole prompt's K/V (rule sliding-cache-keeps-prompt-at-prefill)."""
    per, _ = kv_bytes_per_token(m, kv_elem_bytes, latent)
    sliding = m.sliding_layers if m.sliding_window else 0
    full = attention_layers(m) - sliding
    window_len = (length if whole_prompt else min(length, m.sliding_window)) if sliding else 0
    # Gated DeltaNet layers (Qwen3-Next): a conv state of the full kernel width in the model's dtype and
    # an fp32 recurrent state per sequence (modeling_qwen3_next.py Qwen3NextDynamicCache, torch path).
    linear = m.linear_attn_layers * recurrent_state_bytes(m, 1, kv_elem_bytes, 4, m.linear_conv_kernel)
    return batch * (per * (full * length + sliding * window_len) + linear)


def sdpa_window_mask(ctx: StepContext, m: ModelSpec, keys: int) -> bool:
    """SDPA past a sliding window: transformers materialises the window's mask (masking_utils.py sdpa_mask:
    the causal skip holds only while the keys fit the window), so the flash kernel is ruled out."""
    return ctx.kernel in ("efficient", "flash") and bool(m.sliding_window) and m.sliding_layers > 0 \
        and keys > m.sliding_window


def sdpa_window_mask_working(ctx: StepContext, m: ModelSpec, tokens: int, keys: int) -> dict:
    """A sliding layer's attention with that mask (issue 22, Gemma 2 prefill past the window): SDPA turns
    the boolean mask into an additive one in the query's dtype for the call (attention.cpp
    convert_boolean_attn_mask), and with a mask transformers repeats K/V to every head (sdpa_attention.py:
    use_gqa_in_sdpa needs no mask)."""
    out = {"SDPA's additive copy of the window mask (one layer)": ctx.compute_bytes * tokens * keys}
    if m.n_kv_heads < m.n_heads:
        out["K/V repeated to all heads (repeat_kv)"] = ctx.compute_bytes * tokens * 2 * (m.n_heads * m.head_dim - kv_dim(m))
    return out


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
    elif sdpa_window_mask(ctx, m, keys):
        attn.update(sdpa_window_mask_working(ctx, m, tokens, keys))
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


# transformers versions whose generate behaved differently (read from the wheels; docs/serving.md):
# - before 4.42 generate passed the cache as tuples of tensors; each layer's torch.cat made a new
#   tensor while the previous step's tuple stayed referenced until the forward returned, so a decode
#   step holds the old and the new cache (modeling_llama.py 380-385 @4.35.0; generate creates a
#   DynamicCache itself from 4.42, generation/utils.py 1775-1780 @4.42.0); and without `del outputs`
#   the prompt's fp32 logits lived through the first decode step;
# - before 4.45 the model computed logits for every prompt position and upcast them with .float()
#   (modeling_llama.py 1208-1209 @4.44.0); 4.45 keeps the last position only (PR #31292).


def inference_snapshots(ctx: StepContext, m: ModelSpec, weights: dict, new_tokens: int,
                        kv_elem_bytes: int, static: bool = False, buffers: dict | None = None,
                        kernel_temps: tuple = ({}, {}), transformers: tuple = (5, 17, 0)) -> list[Snapshot]:
    """The moments of a forward pass or of generate. ``static``: StaticCache, allocated for the whole
    length at the first step and written in place (transformers cache_utils.py StaticLayer); ``buffers``:
    quantised kernels' persistent workspaces; ``kernel_temps``: their per-call temporaries in the
    prompt pass and in a decode step; ``transformers``: the version, for the rules above."""
    w = (("weights", dict(weights)),)
    if buffers:
        w = (*w, ("framework buffers", dict(buffers)))
    latent = holds("mla-latent-cache", transformers)
    prefill_k, decode_k = _latent_expansion(ctx, m, new_tokens, kernel_temps, latent)
    prompt_work = {**layer_working_bytes(ctx, m, ctx.batch * ctx.seq, ctx.seq), **prompt_masks(ctx, m), **prefill_k}
    if new_tokens == 0:
        return forward_snapshots(ctx, m, w, prompt_work)
    cache = GenerateCache.of(ctx, m, new_tokens, kv_elem_bytes, static, latent,
                             holds("sliding-cache-keeps-prompt-at-prefill", transformers))
    snaps = prefill_snapshots(ctx, m, w, cache, prompt_work, transformers)
    # generate(max_new_tokens=1) runs the prompt pass only: its token comes from the prompt's logits.
    if new_tokens == 1:
        snaps.append(Snapshot("prefill", "sampling the one new token", (
            *w, ("KV cache", {cache.name: cache.prefill_bytes}), ("logits and loss", last_logits(ctx, m)))))
        return snaps
    return snaps + decode_snapshots(ctx, m, w, cache, decode_k, transformers)


def _latent_expansion(ctx: StepContext, m: ModelSpec, new_tokens: int, kernel_temps: tuple, latent: bool) -> tuple:
    """The kernels' temporaries of the prompt pass and of a decode step, with MLA's expansion of the cached
    latent where the cache holds it: expand_kv (modeling_deepseek_v2.py:357-374 @5.17): kv_b_proj's output
    b x T x a x (nope + v) and the assembled keys b x T x a x (nope + rope), one layer at a time, over every
    cached token."""
    prefill_k, decode_k = kernel_temps
    if not (is_mla(m) and latent):
        return prefill_k, decode_k
    b, s, cb = ctx.batch, ctx.seq, ctx.compute_bytes
    expand = lambda t: cb * b * t * m.n_heads * (2 * m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)  # noqa: E731
    return ({**prefill_k, "keys and values expanded from the latent (one layer)": expand(s)},
            {**decode_k, "keys and values expanded from the latent (one layer)": expand(s + new_tokens - 1)})


def prompt_masks(ctx: StepContext, m: ModelSpec) -> dict:
    """The attention masks the prompt pass builds once and keeps for the whole forward."""
    b, s, cb = ctx.batch, ctx.seq, ctx.compute_bytes
    mask = {}
    if ctx.kernel == "eager":
        mask = {"attention mask (b x s x s)": cb * b * s * s}          # 4-D float mask shared by layers
        if m.sliding_window and 0 < m.sliding_layers < m.n_layers:
            # Models with both layer types build a causal and a sliding-window mask and keep both for the
            # whole forward (modeling_gemma2.py:439-440, masking_utils.py:600-604 @5.17: torch.where(mask,
            # 0.0, min_dtype) materialised as b x 1 x q x kv in the compute dtype).
            mask["sliding-window attention mask (b x s x s)"] = cb * b * s * s
    elif sdpa_window_mask(ctx, m, s):
        # the boolean b x 1 x s x s window mask, built once and kept for the whole forward
        mask = {"sliding-window attention mask (bool, b x s x s)": b * s * s}
    return mask


def forward_snapshots(ctx: StepContext, m: ModelSpec, w: tuple, prompt_work: dict) -> list[Snapshot]:
    """A plain forward pass: the last layer's working memory, then the output head over every position."""
    b, s, cb, V = ctx.batch, ctx.seq, ctx.compute_bytes, m.vocab_size
    snaps = [Snapshot("forward", "last layer", (*w, ("temporaries", prompt_work)))]
    out_width = m.num_labels if is_classifier(m) else V          # a classification head scores each position
    head = {"logits": cb * b * s * out_width, "final hidden states": cb * b * s * m.hidden_size}
    if m.final_logit_softcap and not is_classifier(m):
        # logits / cap, tanh, * cap (modeling_gemma2.py:526-530): each a new logits-sized tensor
        # while its input is alive.
        head["logit soft-capping (tanh, then x cap)"] = cb * b * s * V
    if m.family == "bert":
        head["MLM head transform"] = 2 * cb * b * s * m.hidden_size
    snaps.append(Snapshot("forward", "output logits for every position", (*w, ("logits and loss", head))))
    return snaps


@dataclass(frozen=True)
class GenerateCache:
    """generate's KV cache: its name, its bytes after the prompt and at the last decode step."""
    name: str
    prefill_bytes: int
    final_bytes: int
    final_len: int              # cached tokens at the last decode step
    kv_elem_bytes: int
    static: bool
    latent: bool

    @classmethod
    def of(cls, ctx: StepContext, m: ModelSpec, new_tokens: int, kv_elem_bytes: int, static: bool,
           latent: bool, whole_prompt: bool = False) -> "GenerateCache":
        b, s = ctx.batch, ctx.seq
        final_len = s + new_tokens - 1
        final = kv_cache_bytes(m, b, final_len, kv_elem_bytes, latent)
        # DynamicLayer.update stores torch.cat([empty, k]): a copy, even of views of a fused projection.
        # StaticCache holds max_cache_len = prompt + new tokens from the start and copies in place.
        prefill = final if static else kv_cache_bytes(m, b, s, kv_elem_bytes, latent, whole_prompt)
        name = "static KV cache (prompt + new tokens)" if static else "KV cache"
        return cls(name, prefill, final, final_len, kv_elem_bytes, static, latent)

    def bytes_for(self, m: ModelSpec, batch: int, length: int) -> int:
        return kv_cache_bytes(m, batch, length, self.kv_elem_bytes, self.latent)


def last_logits(ctx: StepContext, m: ModelSpec) -> dict:
    """generate keeps logits for the last position only (logits_to_keep=1) and copies them to fp32."""
    return {"last-position logits": ctx.compute_bytes * ctx.batch * m.vocab_size,
            "fp32 copy for sampling": FP32 * ctx.batch * m.vocab_size}


def prefill_snapshots(ctx: StepContext, m: ModelSpec, w: tuple, cache: GenerateCache, prompt_work: dict,
                      transformers: tuple) -> list[Snapshot]:
    """The prompt pass: its last layer beside the cache, and (before 4.45) the logits of every position."""
    b, s, cb, V = ctx.batch, ctx.seq, ctx.compute_bytes, m.vocab_size
    kv = ("KV cache", {cache.name: cache.prefill_bytes})
    snaps = [Snapshot("prefill", "last layer of the prompt pass", (*w, kv, ("temporaries", prompt_work)))]
    if holds("prompt-logits-every-position", transformers):
        prompt_logits = {"logits for every prompt position": cb * b * s * V, "their fp32 upcast (.float())": FP32 * b * s * V}
        snaps.append(Snapshot("prefill", "output logits of the prompt", (*w, kv, ("logits and loss", prompt_logits))))
    return snaps


def decode_snapshots(ctx: StepContext, m: ModelSpec, w: tuple, cache: GenerateCache, decode_k: dict,
                     transformers: tuple) -> list[Snapshot]:
    """The decode steps: (before 4.42) the first, holding the old tuples beside the new cache; the last,
    over the whole cache."""
    b, s, V = ctx.batch, ctx.seq, m.vocab_size
    snaps = []
    legacy = holds("legacy-tuple-cache", transformers) and not cache.static
    if legacy:
        first = cache.bytes_for(m, b, s + 1)
        survive = {"the prompt's fp32 logits (outputs kept through step 1)":
                   FP32 * b * (s if holds("prompt-logits-every-position", transformers) else 1) * V}
        snaps.append(Snapshot("decode", "first decode step (transformers < 4.42)", (
            *w, ("KV cache", {"new cache (tuples)": first}),
            ("temporaries", {"previous step's cache, still referenced": cache.prefill_bytes, **survive}))))
    one_layer = 0 if cache.static else cache.final_bytes // max(1, m.n_layers) // 2
    decode_work = layer_working_bytes(ctx, m, b, cache.final_len)
    if legacy:
        temps = {"previous step's cache, still referenced (tuples, transformers < 4.42)":
                 cache.bytes_for(m, b, cache.final_len - 1), **decode_work, **decode_k}
    else:
        temps = {"torch.cat copy of one layer's keys": one_layer, **decode_work, **decode_k}
    snaps.append(Snapshot("decode", f"last decode step ({cache.final_len} cached tokens)", (
        *w, ("KV cache", {cache.name: cache.final_bytes}), ("temporaries", {k: v for k, v in temps.items() if v}),
        ("logits and loss", last_logits(ctx, m)))))
    return snaps


def quantised_weights(m: ModelSpec, fmt, compute_bytes: int, kernel: str) -> dict:
    """The checkpoint's linears in their format (Marlin drops GPTQ's zeros and g_idx), the rest 16-bit."""
    from .weights import Shard, rank_weight_parts
    return dict(rank_weight_parts(m, fmt, compute_bytes, Shard(), marlin=kernel == "marlin"))


# torch.equal on CUDA compares through at::cuda::eq(self, src).all(): a bool tensor of the inputs' shape
# (aten/src/ATen/native/cuda/Equal.cpp).
EQUAL_MASK_BYTES = 1


def tied_head_copy(m: ModelSpec, fmt, compute_bytes: int, transformers: tuple, weights: dict) -> tuple:
    """(weights, moments before the run, warning) for a tied model loaded from an AWQ checkpoint that holds
    lm_head.weight beside the embedding, as AutoAWQ's save_quantized wrote them before 0.2.9 (every
    state_dict tensor cloned). transformers 5.0-5.3 keep the two (rule tied-head-loaded-twice); later
    versions tie them in tie_weights after every weight is loaded, comparing them with torch.equal first,
    so the copy and the comparison's mask are a moment of loading."""
    if fmt.method != "awq" or not m.tied_embeddings:
        return weights, [], ""
    elements = m.vocab_size * m.hidden_size
    if holds("tied-head-loaded-twice", transformers):
        return ({**weights, "lm_head, not tied (the checkpoint's own copy)": elements * compute_bytes}, [],
                "transformers 5.0-5.3 keep this tied model's lm_head as a second copy of the embedding when the "
                "AWQ checkpoint stores both, as AutoAWQ before 0.2.9 wrote them; counted")
    load = Snapshot("load", "tie_weights: the checkpoint's lm_head beside the embedding, compared by torch.equal", (
        ("weights", dict(weights)),
        ("temporaries", {"the checkpoint's lm_head copy": elements * compute_bytes,
                         "torch.equal's comparison mask": elements * EQUAL_MASK_BYTES})))
    return weights, [load], ("the load moment assumes the AWQ checkpoint stores lm_head beside the embedding, as "
                             "AutoAWQ before 0.2.9 wrote them; tie_weights then compares and ties the two")


def estimate_inference(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, warnings: list) -> Estimate:
    """Inference on one GPU (a forward pass, or generate): the moments of inference_snapshots with the
    weights as stored, or in their quantised format with its kernel's workspaces and temporaries."""
    ctx = make_context(m, w, p, f)
    kv_b = dtype_bytes(p.kv_cache) if p.kv_cache else ctx.compute_bytes
    static = w.cache_implementation == "static"
    tf = version_tuple(f.transformers, "framework.transformers", "a transformers version", "5.17")
    if p.quant_format is None:
        snaps = inference_snapshots(ctx, m, weight_parts(m, w, p), w.new_tokens, kv_b, static, transformers=tf)
        return make_estimate(m, w, p, hw, f, ctx, with_vision_inference(snaps, m, w, p, f), warnings)
    fmt = named_format(p.quant_format)
    kernel = p.quant_kernel if p.quant_kernel != "auto" else default_kernel(fmt, tf)
    cb = ctx.compute_bytes
    temps = (call_temporaries(m, fmt, kernel, w.batch_size * w.seq_len, cb), call_temporaries(m, fmt, kernel, w.batch_size, cb))
    weights, load, note = tied_head_copy(m, fmt, cb, tf, quantised_weights(m, fmt, cb, kernel))
    snaps = load + inference_snapshots(ctx, m, weights, w.new_tokens, kv_b, static,
                                       persistent_workspaces(m, fmt, kernel), temps, tf)
    warnings = [*warnings, note] if note else warnings
    return make_estimate(m, w, p, hw, f, ctx, with_vision_inference(snaps, m, w, p, f), warnings)


def generate_request(req):
    """Serving engine "hf" as the inference workload: num_prompts x prompt_len, max_new_tokens."""
    from dataclasses import replace
    from .engines import weight_format
    from ..training.workload import QUANT_FORMAT_WEIGHTS
    s = req.serving
    fmt = weight_format(s, req.checkpoint)
    dtype = {"float16": "fp16", "float32": "fp32"}.get(s.dtype, "bf16")
    w = Workload(mode="inference", batch_size=s.num_prompts, seq_len=s.prompt_len, new_tokens=s.max_new_tokens,
                 cache_implementation=s.cache_implementation)
    if fmt.quantised:
        p = Precision(weights=QUANT_FORMAT_WEIGHTS[fmt.method], activations=dtype if dtype != "fp32" else "bf16",
                      quant_format=fmt.method)
    else:
        p = Precision(weights=dtype)
    kv = {"fp8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}.get(s.kv_cache_dtype)
    if kv:
        p = replace(p, kv_cache=kv)
    f = req.framework
    if s.version is not None:               # the hf engine's version is transformers'
        version_tuple(s.version, "workload.version", "a transformers version", "5.17")
        f = replace(f, transformers=s.version)
    return replace(req, workload=w, precision=p, framework=f, serving=None, solve=False)
