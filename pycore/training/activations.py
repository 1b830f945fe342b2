"""Tensors that autograd saves in one transformer layer during a training step.

Each rule names the op that saves the tensor, as in transformers 5.17's modeling
files, peft 0.21's ``lora/layer.py`` and PyTorch 2.11's derivatives.yaml (an op
saves an input only when the gradient that needs it is required). Sizes are whole
micro-batch bytes: per-token widths times tokens, and b x heads x s x s for
attention score matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import FP32, StepContext
from ..model.spec import ModelSpec, attn_out_dim, is_layernorm, is_mla, kv_dim, q_dim, v_dim

MASK_BYTES = 1          # dropout masks are torch.bool on CUDA (native_dropout in Dropout.cu)
INDEX_BYTES = 8         # torch.topk / one_hot / where return int64 indices
STAT_BYTES = 2 * FP32   # LayerNorm/RMSNorm keep fp32 mean and rstd (or rsqrt) per row
# The linear that reads the attention output, by family (modeling_gpt2.py attn.c_proj, modeling_bert.py
# BertSelfOutput.dense, modeling_gpt_neox.py / ChatGLM dense; o_proj elsewhere).
OUTPUT_PROJECTION = {"gpt2": "c_proj", "bert": "dense", "neox": "dense", "chatglm": "dense"}
# Model types whose rotary embedding builds q with torch.cat (transformers 5.25 apply_rotary_pos_emb: the partial
# rotaries of modeling_gpt_neox.py, modeling_phi3.py, modeling_glm4_moe.py and modeling_qwen3_next.py); measured
# on the CPU.
ROTARY_BY_CAT = ("gpt_neox", "phi3", "glm4_moe", "qwen3_next")
# Model types whose eager attention calls softmax without dtype=torch.float32, so that it runs and keeps its
# output in the scores' dtype (transformers 5.25 modeling_gpt2.py line 64, modeling_bert.py line 131; GPT-BigCode
# and the Llama-like models pass dtype=torch.float32).
SOFTMAX_IN_INPUT_DTYPE = ("gpt2", "bert")


@dataclass
class Parts:
    """Named byte counts; ``add`` ignores zeros so that the tree stays readable.

    ``hidden`` marks tensors as wide as the hidden state (norm inputs, dropout masks, a layer's
    input): sequence parallelism splits them by the tensor-parallel degree ``sp`` (Korthikanti et
    al. 2022, section 4.2.2). ``core`` marks the attention core's score-sized tensors: selective
    recomputation drops them from what is saved and recomputes them in backward (section 5).
    """

    items: dict = field(default_factory=dict)
    core: dict = field(default_factory=dict)
    sp: int = 1
    selective: bool = False

    @classmethod
    def of(cls, ctx: StepContext) -> "Parts":
        return cls(sp=ctx.sp, selective=ctx.selective)

    def add(self, name: str, n_bytes: int, *, hidden: bool = False, core: bool = False) -> None:
        if not n_bytes:
            return
        n_bytes = -(-int(n_bytes) // self.sp) if hidden else int(n_bytes)
        target = self.core if core and self.selective else self.items
        target[name] = target.get(name, 0) + n_bytes

    def total(self) -> int:
        return sum(self.items.values())


@dataclass(frozen=True)
class LayerCost:
    """One layer: what it keeps for backward, and its working memory in forward and backward."""

    saved: dict            # part name -> bytes kept from forward to backward
    forward_extra: int     # transient bytes above ``saved`` at the layer's busiest forward moment
    backward_extra: int    # transient bytes (gradients of activations) during its backward
    checkpoint_input: int  # bytes kept when the layer is checkpointed: its input hidden states
    count: int = 1         # how many layers share this cost
    comm_buffers: tuple = ()   # (name, bytes) in flight while the layer computes: ring attention, all-to-all

    def saved_total(self) -> int:
        return sum(self.saved.values())


# ---- the pieces -------------------------------------------------------------

def adapter_inputs_label(ctx: StepContext) -> str:
    """The part that holds the adapters' copies of their inputs, named for the adapter type ("LoRA inputs
    in the adapters' dtype", "IA3 inputs ...", "DoRA inputs ..."); like every activation part it has no
    term key of its own and is drawn and documented as its category, activations (data/terms.json)."""
    return f"{ctx.adapter_name} inputs in the adapters' dtype"


def consumer_copies(ctx: StepContext, acc: Parts, name: str, elements: int, out_bytes: int, consumers,
                    hidden: bool = False) -> None:
    """What the linears reading one tensor of ``elements`` keep of it.

    A linear saves its input only for its weight's gradient. Full training: the tensor itself,
    shared by all consumers, except under autocast, where each linear keeps its own 16-bit cast
    (autocast caches only casts of leaf weights). LoRA: each adapted linear's lora_A keeps
    ``x.to(lora_A.weight.dtype)`` (peft Linear.forward, _cast_input_dtype), a copy unless x already
    has the adapters' dtype.
    """
    shared = False
    if ctx.base_trainable:
        if ctx.amp and out_bytes != ctx.compute_bytes:
            acc.add(name + " (16-bit cast per linear)", len(consumers) * ctx.compute_bytes * elements, hidden=hidden)
        else:
            acc.add(name, out_bytes * elements, hidden=hidden)
            shared = True
    adapted = [c for c in consumers if c in ctx.adapted]
    if adapted:
        if out_bytes == ctx.adapter_bytes:
            if not shared:
                acc.add(name, out_bytes * elements, hidden=hidden)
        else:
            acc.add(adapter_inputs_label(ctx), len(adapted) * ctx.adapter_bytes * elements, hidden=hidden)


def norm(ctx: StepContext, acc: Parts, m: ModelSpec, in_bytes: int, consumers, label: str,
         width: int = 0) -> None:
    """A normalisation of the hidden states, read by ``consumers``.

    RMSNorm (LlamaRMSNorm): ``x.to(float32)`` is kept by pow and by the rsqrt multiply (it is x
    itself when x is fp32); ``weight * y.to(input_dtype)`` keeps y when the weight trains. Gemma's
    variant keeps the fp32 normalised tensor for ``* (1 + weight)``. LayerNorm (native_layer_norm)
    keeps its input, mean and rstd, and runs in fp32 under autocast.
    """
    n = ctx.tokens * (width or m.hidden_size)
    trains = ctx.base_trainable
    if is_layernorm(m):
        acc.add(label + " input", in_bytes * n, hidden=not width)
        acc.add(label + " statistics", STAT_BYTES * ctx.tokens, hidden=not width)
        out_bytes = FP32 if ctx.amp else in_bytes
    else:
        acc.add(label + " fp32 input", FP32 * n, hidden=not width)
        acc.add(label + " statistics", FP32 * ctx.tokens, hidden=not width)
        if trains:
            acc.add(label + " normalised", (FP32 if m.norm == "gemma_rmsnorm" else in_bytes) * n, hidden=not width)
        out_bytes = in_bytes
    consumer_copies(ctx, acc, label + " output", n, out_bytes, consumers, hidden=not width)


def dropout_mask(ctx: StepContext, acc: Parts, p: float, elements: int) -> None:
    """The residual dropout's mask, as wide as the hidden state."""
    if ctx.training and p > 0:
        acc.add("dropout masks", MASK_BYTES * elements, hidden=True)


def score_elements(ctx: StepContext, m: ModelSpec, window: int = 0) -> int:
    keys = min(ctx.seq, window) if window else ctx.seq
    return ctx.batch * m.n_heads * ctx.seq * keys


# ---- attention --------------------------------------------------------------

def attention(ctx: StepContext, acc: Parts, m: ModelSpec, window: int = 0) -> int:
    """Projections, rotary, the attention kernel and the output projection's input.

    Returns the forward transient above what is saved (score matrices, rotary temporaries).
    """
    cb, T = ctx.compute_bytes, ctx.tokens
    if is_mla(m):
        return _mla(ctx, acc, m)
    qd, kd, vd, od = q_dim(m), kv_dim(m), v_dim(m), attn_out_dim(m)
    if m.fused_qkv and (m.family == "decoder" or (m.family == "neox" and ctx.kernel in ("eager", "math"))):
        # GPT-NeoX likewise under eager attention and SDPA's math path: v is a last-dim chunk of the fused output,
        # and the second matmul keeps a contiguous copy of it (measured on the CPU,
        # tests/integration/test_attention_output_saved.py); the flash kernel keeps the view itself (below).
        # Phi-3 (modeling_phi3.py Phi3Attention): q, k, v are last-dim slices of qkv_proj's output, viewed
        # per head and transposed. Rotary makes new q and k; v reaches the kernel as a strided view, and what
        # backward keeps is a contiguous v (eager: matmul reshapes the view for bmm, a copy; SDPA likewise),
        # so the fused output is freed once the layer's forward ends (issue 22: the model kept all of it,
        # +8% on Phi-3 LoRA without checkpointing).
        acc.add("attention q, k after rotary", cb * T * (qd + kd))
        acc.add("attention v (contiguous copy of the fused projection's slice)", cb * T * vd)
    elif m.fused_qkv:
        # q, k, v are views of one projection; the kernel keeps v (a view), so all of it stays.
        acc.add("attention fused q, k, v projection", cb * T * (qd + kd + vd))
        if m.family != "gpt2":
            acc.add("attention q, k after rotary", cb * T * (qd + kd))
    else:
        if m.qk_norm != "none":
            # Qwen3-Next in fp32: x.to(float32) is the query half of q_proj's output itself, a view that keeps
            # the gate half's storage too (measured on the CPU)
            q_in = 2 * qd if m.attn_output_gate and cb == FP32 else qd
            per_head = m.qk_norm == "per_head"       # else one norm over the whole projection (OLMo 2, OLMoE)
            for width, kept, lab, heads in ((qd, q_in, "q_norm", m.n_heads), (kd, kd, "k_norm", m.n_kv_heads)):
                acc.add(f"attention {lab} fp32 input", FP32 * T * kept)
                acc.add(f"attention {lab} statistics", FP32 * T * (heads if per_head else 1))   # rsqrt per row
                if ctx.base_trainable:
                    acc.add(f"attention {lab} normalised", cb * T * width)
        acc.add("attention q, k after rotary", cb * T * (qd + kd))
        acc.add("attention v", cb * T * vd)
    rotary_tmp = 0 if m.family in ("gpt2", "bert") else 2 * cb * T * qd
    score_extra = _kernel(ctx, acc, m, window)
    attention_output(ctx, acc, m, T * od)
    if m.family == "gpt2" and ctx.kernel in ("flash", "efficient"):
        # GPT-2's key and value are strided views of the fused c_attn output, and the SDPA path
        # keeps contiguous copies of both. Measured in shared/calibration: two hidden-sized tensors
        # per layer beyond q/k/v and the output in fp32 (memory-efficient kernel), bf16 and autocast
        # (flash), for GPT-2 small and medium; none with eager attention, which rules out the
        # training-time DynamicCache (it would exist under either kernel).
        acc.add("attention K, V contiguous copies", 2 * cb * T * kd)
    return max(rotary_tmp, score_extra)


def _kernel(ctx: StepContext, acc: Parts, m: ModelSpec, window: int) -> int:
    """What the attention kernel keeps besides its inputs and output; returns its forward transient."""
    if ctx.kernel == "eager":
        return _eager_scores(ctx, acc, m, window)
    if ctx.kernel == "math":
        return _math_scores(ctx, acc, m)
    # flash / memory-efficient kernels keep their output and a fp32 log-sum-exp per head and row.
    acc.add("attention log-sum-exp", FP32 * ctx.tokens * m.n_heads)
    if ctx.kernel == "efficient" and m.n_kv_heads < m.n_heads and (window or ctx.packed_mask):
        # with a mask, transformers repeats K/V to every head (repeat_kv) before the kernel
        acc.add("attention K/V repeated to all heads",
                ctx.compute_bytes * ctx.tokens * 2 * (m.n_heads * m.head_dim - kv_dim(m)))
    return 0


def attention_output(ctx: StepContext, acc: Parts, m: ModelSpec, elements: int) -> None:
    """The attention kernel's output, which the output projection reads.

    The flash and memory-efficient kernels keep their output for backward (derivatives.yaml,
    _scaled_dot_product_flash_attention / _efficient_attention: ``output`` is saved); an adapted
    projection's lora_A keeps a cast of it besides. Eager attention and SDPA's math path end in a matmul
    that keeps its inputs, not its output, so the output (transposed and made contiguous) is kept only as
    the output projection keeps its input (consumer_copies): by the base weight when it trains, by
    lora_A as itself in the adapters' dtype or as a cast, and not at all when the projection is frozen and
    not adapted (LoRA on q_proj and v_proj). Measured against autograd on the CPU for Llama, GPT-2, BERT,
    GPT-NeoX, Phi-3, GLM-4-MoE and Qwen3-Next (tests/integration/test_attention_output_saved.py; issue 22).
    """
    out_proj = OUTPUT_PROJECTION.get(m.family, "o_proj")
    cb = ctx.compute_bytes
    by_kernel = ctx.kernel in ("flash", "efficient")
    # A rotary that joins q with torch.cat makes it a contiguous b x heads x s x d tensor; the flash kernel's
    # output takes q's layout (empty_like), so transpose(1, 2).contiguous() copies it. The memory-efficient
    # kernel allocates its output as b x s x heads x d whatever q's layout (read from mem_eff_attention's
    # kernel_forward.h; not measured), so no copy is made there.
    copied = not by_kernel or (ctx.kernel == "flash" and m.model_type in ROTARY_BY_CAT)
    if by_kernel:
        acc.add("attention output", cb * elements)
    name = "attention output (the output projection's input)" if by_kernel else "attention output"
    if m.attn_output_gate:
        # Qwen3-Next: attn_output * sigmoid(gate) keeps both factors (the output as b x s x heads*d, a copy
        # unless the kernel's output is laid out so); the gate itself is not kept (sigmoid keeps its output);
        # the product is the projection's input
        if copied:
            acc.add("attention output (contiguous copy)" if by_kernel else name, cb * elements)
        acc.add("attention output gate's sigmoid", cb * elements)
        consumer_copies(ctx, acc, "attention output times the gate", elements, cb, (out_proj,))
    elif copied:
        consumer_copies(ctx, acc, name, elements, cb, (out_proj,))
    elif out_proj in ctx.adapted and cb != ctx.adapter_bytes:
        acc.add(adapter_inputs_label(ctx), ctx.adapter_bytes * elements)


def gated_deltanet(ctx: StepContext, acc: Parts, m: ModelSpec) -> int:
    """Qwen3-Next's linear attention as modeling_qwen3_next.py (transformers 5.24) runs it for training:
    in_proj_qkvz and in_proj_ba, the q/k/v regrouped for the depthwise causal conv (its input is saved),
    the conv + SiLU output that the chunked gated delta rule keeps as q, k and v, beta = sigmoid(b) and
    the fp32 decay g = -exp(A_log) * softplus(a + dt_bias), the rule's output, the gated RMSNorm's fp32
    input and SiLU(z) gate, and out_proj's input. Read from the code path; not calibrated against a
    measured run. Returns the forward transient (the chunked rule's per-chunk fp32 states)."""
    cb, T = ctx.compute_bytes, ctx.tokens
    kd = m.linear_k_heads * m.linear_k_head_dim
    vd = m.linear_v_heads * m.linear_v_head_dim
    nv = m.linear_v_heads
    conv = 2 * kd + vd
    acc.add("linear attention conv input (q, k, v)", cb * T * conv)
    acc.add("linear attention gate z and b, a projections", cb * T * (vd + 2 * nv))
    acc.add("linear attention q, k, v after conv and SiLU", cb * T * conv)
    acc.add("linear attention beta and fp32 decay", T * nv * (cb + 2 * FP32))
    acc.add("linear attention output", cb * T * vd)
    acc.add("linear attention gated norm fp32 input and gate", 2 * FP32 * T * vd)
    # the gated norm's output, kept only as out_proj keeps its input (a frozen, unadapted out_proj keeps
    # nothing of it; measured on the CPU, tests/integration/test_attention_output_saved.py)
    consumer_copies(ctx, acc, "linear attention out_proj input", T * vd, cb, ("out_proj",))
    # one chunk state (value heads x key dim x value dim, fp32) per 64-token chunk of each sequence
    chunks = -(-ctx.seq // 64) * ctx.batch
    return FP32 * chunks * nv * m.linear_k_head_dim * m.linear_v_head_dim


def _eager_scores(ctx: StepContext, acc: Parts, m: ModelSpec, window: int) -> int:
    """eager_attention_forward: matmul, softmax(dtype=float32).to(dtype), dropout, matmul.

    softmax keeps its fp32 output (GPT-2's and BERT's, in 16-bit weights, their own dtype);
    nn.functional.dropout in train mode runs native_dropout even at p=0, which keeps a bool mask, and
    its output is kept by the second matmul. K/V are repeated to all heads (repeat_kv) and kept by
    the two matmuls.
    """
    cb = ctx.compute_bytes
    n = score_elements(ctx, m, window)
    if m.model_type in SOFTMAX_IN_INPUT_DTYPE and not ctx.amp and cb != FP32:
        # GPT-2 and BERT call softmax without dtype=float32: in 16-bit weights it keeps a 16-bit output and
        # nothing is converted (under autocast softmax is on the fp32 list, as below)
        acc.add("attention scores: softmax output", cb * n, core=True)
        convert, soft = 0, cb
    else:
        acc.add("attention scores: softmax output (fp32)", FP32 * n, core=True)
        # bf16 input is first converted to a fp32 copy (fp16 has a fused half-to-float kernel, SoftMax.cpp)
        convert, soft = (FP32 if (cb == 2 and not ctx.fp16) else 0), cb
    acc.add("attention scores: dropout mask", MASK_BYTES * n, core=True)
    acc.add("attention scores: probabilities", cb * n, core=True)
    if m.n_kv_heads < m.n_heads:
        acc.add("attention K/V repeated to all heads", cb * ctx.tokens * 2 * (m.n_heads - m.n_kv_heads) * m.head_dim, core=True)
    # Busiest moment: the masked scores (cb) while softmax writes its output.
    return (cb + convert + soft) * n


def _math_scores(ctx: StepContext, acc: Parts, m: ModelSpec) -> int:
    """SDPA's math path (_scaled_dot_product_attention_math): q and k pre-scaled, K/V repeated
    to all heads for grouped-query, and the softmax output kept for backward."""
    cb, T = ctx.compute_bytes, ctx.tokens
    n = score_elements(ctx, m)
    full = m.n_heads * m.head_dim
    acc.add("attention scores: softmax output", cb * n, core=True)
    acc.add("attention K/V repeated to all heads", cb * T * 2 * (full - kv_dim(m)), core=True)
    if ctx.training and m.attn_dropout > 0:
        acc.add("attention scores: dropout mask", MASK_BYTES * n, core=True)
        acc.add("attention scores: probabilities", cb * n, core=True)
    return 2 * cb * n


def _mla(ctx: StepContext, acc: Parts, m: ModelSpec) -> int:
    """DeepSeek multi-head latent attention (modeling_deepseek_v3.py, transformers 5.25): q_a_proj's and
    kv_a_proj_with_mqa's compressed outputs go through RMSNorms (norm: the fp32 input, rsqrt, and what q_b_proj
    and kv_b_proj keep of the output); q and k are joined from their rotary and plain parts with torch.cat;
    v is a view of kv_b_proj's output, of which eager's matmul keeps a contiguous copy; then the kernel
    and the attention output as for other models. Measured on the CPU for eager attention in bf16
    (tests/integration/test_attention_output_saved.py); SDPA on CUDA not measured (flash needs equal q, k
    and v head sizes, which MLA does not have)."""
    cb, T = ctx.compute_bytes, ctx.tokens
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    if m.q_lora_rank:
        norm(ctx, acc, m, cb, ("q_b_proj",), "attention q_a_layernorm", width=m.q_lora_rank)
    norm(ctx, acc, m, cb, ("kv_b_proj",), "attention kv_a_layernorm", width=m.kv_lora_rank)
    if cb == FP32:
        # in fp32, x.to(float32) is the kv_lora_rank slice of kv_a_proj_with_mqa's output itself: a view that
        # keeps the rotary part's storage too (measured on the CPU)
        acc.add("attention kv_a_layernorm fp32 input's rotary part", FP32 * T * m.qk_rope_head_dim)
    acc.add("attention q, k after rotary", cb * T * 2 * m.n_heads * qk)
    acc.add("attention v", cb * T * m.n_heads * m.v_head_dim)
    score_extra = _kernel(ctx, acc, m, 0)
    attention_output(ctx, acc, m, T * m.n_heads * m.v_head_dim)
    return max(2 * cb * T * m.n_heads * qk, score_extra)


# ---- MLP ----------------------------------------------------------------------

def _activation(ctx: StepContext, acc: Parts, m: ModelSpec, n: int, label: str) -> int:
    """What the activation function keeps; returns the bytes per element of its output."""
    cb = ctx.compute_bytes
    if m.activation != "gelu_new":
        acc.add(label + " activation input", cb * n)     # one ATen op: silu/gelu save their input
        return cb
    # NewGELUActivation (transformers/activations.py): 0.5*x*(1+tanh(c*(x+0.044715*pow(x,3)))).
    # pow saves x (a fp32 cast under autocast), tanh its output, the last mul both factors.
    f = FP32 if ctx.amp else cb
    acc.add(label + " gelu_new: pow input", f * n)
    acc.add(label + " gelu_new: tanh output", f * n)
    acc.add(label + " gelu_new: 1 + tanh", f * n)
    acc.add(label + " gelu_new: 0.5 * x", cb * n)
    return f


def mlp(ctx: StepContext, acc: Parts, m: ModelSpec, ffn: int, rows: int, label: str) -> int:
    """A (gated) MLP on ``rows`` token rows; returns its backward transient (activation grads)."""
    cb = ctx.compute_bytes
    n = rows * ffn
    if m.gated_mlp:
        if m.fused_gate_up:
            acc.add(label + " gate and up projections", 2 * cb * n)   # both halves kept via views
        else:
            acc.add(label + " gate projection", cb * n)                # kept by the activation
            acc.add(label + " up projection", cb * n)                  # kept by the product
        acc.add(label + " activation output", cb * n)                  # kept by the product
        out_bytes = cb
    else:
        out_bytes = _activation(ctx, acc, m, n, label)
    down = {"decoder": "down_proj" if m.gated_mlp else "c_proj", "gpt2": "c_proj", "bert": "dense"}.get(m.family, "dense_4h_to_h")
    consumer_copies(ctx, acc, label + " down-projection input", n, out_bytes, (down,))
    # backward: grads of the product, of both factors, then of the gate (derivatives of mul/silu)
    return 3 * cb * n
