"""Per-layer and output-head training costs, assembled for each model family."""

from __future__ import annotations

from dataclasses import dataclass

from .activations import (FP32, INDEX_BYTES, LayerCost, Parts, attention, consumer_copies, dropout_mask, gated_deltanet,
                          mlp, norm)
from .context import StepContext
from ..model.spec import ModelSpec, is_classifier, is_mla, kv_dim, moe_layers



def _qkv_consumers(m: ModelSpec) -> tuple:
    if m.family == "gpt2":
        return ("c_attn",)
    if m.family == "bert":
        return ("query", "key", "value")
    if m.family in ("neox", "chatglm"):
        return ("query_key_value",)
    if is_mla(m):
        return ("q_a_proj" if m.q_lora_rank else "q_proj", "kv_a_proj_with_mqa")
    if m.fused_qkv:
        return ("qkv_proj",)
    return ("q_proj", "k_proj", "v_proj")


def _mlp_consumers(m: ModelSpec, moe: bool) -> tuple:
    if m.family == "gpt2":
        return ("c_fc",)
    if m.family == "bert":
        return ("dense",)
    if m.family in ("neox", "chatglm"):
        return ("dense_h_to_4h",)
    if moe:
        shared = ("gate_proj", "up_proj") if m.n_shared_experts else ()
        return ("gate",) + shared + (("shared_expert_gate",) if m.shared_expert_gate else ())
    if not m.gated_mlp:
        return ("c_fc",)
    return ("gate_up_proj",) if m.fused_gate_up else ("gate_proj", "up_proj")


def _moe_block(ctx: StepContext, acc: Parts, m: ModelSpec) -> int:
    """Router and experts as transformers 5 runs them in eager mode (modeling_olmoe.py,
    modeling_mixtral.py, modeling_qwen3_moe.py): softmax over experts in fp32, top-k, then for
    each expert the rows routed to it are gathered, projected and weighted."""
    cb, T = ctx.compute_bytes, ctx.tokens
    k, e, f, h = m.experts_per_token, m.n_experts, m.expert_ffn_size, m.hidden_size
    acc.add("MoE routing (router probabilities, top-k)", T * (FP32 * e + (INDEX_BYTES + FP32 + cb) * k), hidden=True)
    rows = T * k
    if ctx.base_trainable:
        acc.add("MoE expert inputs (gathered rows)", cb * rows * h, hidden=True)
    acc.add("MoE expert gate and up projections", 2 * cb * rows * f)
    acc.add("MoE expert activation output", cb * rows * f)
    if ctx.base_trainable:
        acc.add("MoE expert down-projection input", cb * rows * f)
    acc.add("MoE expert outputs (weighted by router)", cb * rows * h, hidden=True)
    backward = 3 * cb * rows * f
    if m.n_shared_experts:
        backward = max(backward, mlp(ctx, acc, m, m.shared_expert_ffn_size * m.n_shared_experts, T, "shared expert"))
    return backward


def _decoder_layer(ctx: StepContext, m: ModelSpec, moe: bool, window: int, linear: bool = False) -> tuple[Parts, int, int]:
    rb, cb, T = ctx.residual_bytes, ctx.compute_bytes, ctx.tokens
    acc = Parts.of(ctx)
    if m.parallel_block:
        # Cohere: one norm feeds attention and the MLP, whose outputs are added to the residual
        norm(ctx, acc, m, rb, _qkv_consumers(m) + _mlp_consumers(m, moe), "input norm")
        fwd = attention(ctx, acc, m, window)
        bwd = _moe_block(ctx, acc, m) if moe else mlp(ctx, acc, m, m.ffn_size, T, "MLP")
        return acc, fwd, bwd
    if linear:
        norm(ctx, acc, m, rb, ("in_proj_qkvz", "in_proj_ba"), "input norm")
        fwd = gated_deltanet(ctx, acc, m)
    else:
        norm(ctx, acc, m, rb, _qkv_consumers(m), "input norm")
        fwd = attention(ctx, acc, m, window)
    # StarCoder2: residual dropout on the attention output and on the MLP output (modeling_starcoder2.py)
    dropout_mask(ctx, acc, m.hidden_dropout, T * m.hidden_size)
    if m.norms_per_layer == 4:
        # Gemma 2/3: post_attention_layernorm normalises the attention output before the residual add
        norm(ctx, acc, m, cb, (), "post-attention norm")
        norm(ctx, acc, m, rb, _mlp_consumers(m, moe), "pre-MLP norm")
    else:
        norm(ctx, acc, m, rb, _mlp_consumers(m, moe), "post-attention norm")
    if moe:
        bwd = _moe_block(ctx, acc, m)
    else:
        bwd = mlp(ctx, acc, m, m.ffn_size, T, "MLP")
    dropout_mask(ctx, acc, m.hidden_dropout, T * m.hidden_size)
    if m.norms_per_layer == 4:
        norm(ctx, acc, m, cb, (), "post-MLP norm")
    return acc, fwd, bwd


def _gpt2_layer(ctx: StepContext, m: ModelSpec) -> tuple[Parts, int, int]:
    """GPT2Block: ln_1, c_attn, attention (dropout inside the kernel), c_proj, resid dropout,
    ln_2, c_fc, gelu_new, c_proj, dropout (modeling_gpt2.py)."""
    rb, T, h = ctx.residual_bytes, ctx.tokens, m.hidden_size
    acc = Parts.of(ctx)
    norm(ctx, acc, m, rb, ("c_attn",), "ln_1")
    fwd = attention(ctx, acc, m)
    dropout_mask(ctx, acc, m.hidden_dropout, T * h)
    norm(ctx, acc, m, rb, ("c_fc",), "ln_2")
    bwd = mlp(ctx, acc, m, m.ffn_size, T, "MLP")
    dropout_mask(ctx, acc, m.hidden_dropout, T * h)
    return acc, fwd, bwd


def _bert_layer(ctx: StepContext, m: ModelSpec) -> tuple[Parts, int, int]:
    """BertLayer (post-norm): q/k/v read the layer input; dense, dropout, LayerNorm(x + out);
    intermediate dense + gelu; output dense, dropout, LayerNorm (modeling_bert.py)."""
    rb, T, h = ctx.residual_bytes, ctx.tokens, m.hidden_size
    in_bytes = FP32 if ctx.amp else rb
    acc = Parts.of(ctx)
    consumer_copies(ctx, acc, "layer input (read by q, k, v)", T * h, in_bytes, ("query", "key", "value"), hidden=True)
    fwd = attention(ctx, acc, m)
    dropout_mask(ctx, acc, m.hidden_dropout, T * h)
    norm(ctx, acc, m, in_bytes, ("dense",), "attention LayerNorm")
    bwd = mlp(ctx, acc, m, m.ffn_size, T, "MLP")
    dropout_mask(ctx, acc, m.hidden_dropout, T * h)
    acc.add("output LayerNorm input", in_bytes * T * h, hidden=True)
    acc.add("output LayerNorm statistics", 2 * FP32 * T, hidden=True)
    return acc, fwd, bwd


def _neox_layer(ctx: StepContext, m: ModelSpec) -> tuple[Parts, int, int]:
    """GPTNeoXLayer / GLMBlock: pre-norm attention and MLP, fused query_key_value."""
    rb = ctx.residual_bytes
    acc = Parts.of(ctx)
    norm(ctx, acc, m, rb, ("query_key_value",), "input norm")
    fwd = attention(ctx, acc, m)
    norm(ctx, acc, m, rb, ("dense_h_to_4h",), "post-attention norm")
    bwd = mlp(ctx, acc, m, m.ffn_size, ctx.tokens, "MLP")
    return acc, fwd, bwd


def layer_costs(ctx: StepContext, m: ModelSpec, n_dense: int | None = None, n_moe: int | None = None) -> list[LayerCost]:
    """One LayerCost per kind of layer (dense/MoE, sliding/full attention), in model order; a
    pipeline stage gives its own counts of dense and MoE layers."""
    kinds: list[tuple[bool, int, int, bool]] = []        # (moe, window, count, linear attention)
    if n_moe is None:
        n_moe = moe_layers(m)
        n_dense = m.n_layers - n_moe
    for moe, count in ((False, n_dense), (True, n_moe)):
        if not count:
            continue
        sliding = round(count * m.sliding_layers / m.n_layers) if m.sliding_window else 0
        linear = min(count - sliding, round(count * m.linear_attn_layers / m.n_layers))
        if sliding:
            kinds.append((moe, m.sliding_window, sliding, False))
        if linear:
            kinds.append((moe, 0, linear, True))
        if count - sliding - linear:
            kinds.append((moe, 0, count - sliding - linear, False))
    out = []
    for moe, window, count, linear in kinds:
        if m.family == "gpt2":
            acc, fwd, bwd = _gpt2_layer(ctx, m)
        elif m.family == "bert":
            acc, fwd, bwd = _bert_layer(ctx, m)
        elif m.family in ("neox", "chatglm"):
            acc, fwd, bwd = _neox_layer(ctx, m)
        else:
            acc, fwd, bwd = _decoder_layer(ctx, m, moe, window, linear)
        hidden = -(-ctx.residual_bytes * ctx.tokens * m.hidden_size // ctx.sp)    # one hidden-state tensor
        grad_flow = 2 * hidden                                                   # grad of the residual stream
        # Recomputed in backward under selective recomputation: the attention core's tensors.
        recomputed = sum(acc.core.values())
        out.append(LayerCost(saved=dict(acc.items), forward_extra=fwd, backward_extra=bwd + grad_flow + recomputed,
                             checkpoint_input=hidden, count=count, comm_buffers=comm_buffers(ctx, m, moe)))
    return out


def comm_buffers(ctx: StepContext, m: ModelSpec, moe: bool) -> tuple:
    """Communication buffers in flight while a layer computes.

    Ring attention (context parallelism) keeps the local K/V block and the one being received from
    the next rank (TransformerEngine context_parallel.py p2p buffers). Expert parallelism's all-to-all
    token dispatcher keeps the routed tokens permuted before the exchange and the ones received
    after it, T x k x h each in the activations' dtype (megatron/core/transformer/moe/
    token_dispatcher.py @d98e8a64, dispatch_preprocess and token_dispatch).
    """
    out = []
    if ctx.cp > 1:
        out.append(("ring attention K/V buffers", 2 * 2 * ctx.tokens * kv_dim(m) * ctx.compute_bytes))
    if moe and ctx.ep > 1:
        out.append(("expert all-to-all buffers (before and after dispatch)",
                    2 * -(-ctx.tokens // ctx.sp) * m.experts_per_token * m.hidden_size * ctx.compute_bytes))
    return tuple(out)


@dataclass(frozen=True)
class HeadCost:
    """Final norm, output projection, logits and loss."""

    saved: dict            # kept until backward (final norm, BERT's transform)
    logits_bytes: int      # the model output's logits, alive until the output is released
    loss_saved_bytes: int  # the loss's log-softmax output
    loss_forward_extra: int
    loss_backward_extra: int
    # labels of the three loss terms in the breakdown (a fused loss keeps other tensors: kernels.py)
    loss_saved_name: str = "loss log-softmax"
    forward_extra_name: str = "loss input upcast to fp32"
    backward_extra_name: str = "loss gradients"


def classifier_head_cost(ctx: StepContext, m: ModelSpec) -> HeadCost:
    """A classification head: no vocabulary-sized logits (transformers modeling_layers.py 113-306).
    Decoders' GenericForSequenceClassification scores every position (score(hidden_states)) and keeps
    the last non-pad one; the score layer saves its input, the final norm's output. Token
    classification adds a dropout (p 0.1 by default: a bool mask and its output, saved by score) and
    upcasts its logits to fp32 for the loss (loss_utils.py 140-146). BERT's sequence classifier pools
    the first token only, so what it keeps is a batch-sized vector."""
    cb, rb, T, h, L = ctx.compute_bytes, ctx.residual_bytes, ctx.tokens, m.hidden_size, m.num_labels
    acc = Parts.of(ctx)
    token = m.head == "token-classification"
    if m.family == "bert":
        if token:
            acc.add("dropout mask", T * h, hidden=True)
            acc.add("dropout output (score input)", cb * T * h, hidden=True)
        else:
            acc.add("pooled first token (pooler and classifier inputs)", 3 * cb * ctx.batch * h)
    else:
        norm(ctx, acc, m, rb, ("score",), "final norm")
        if token:
            acc.add("dropout mask", T * h, hidden=True)
            acc.add("dropout output (score input)", cb * T * h, hidden=True)
    rows = T if (token or m.family != "bert") else ctx.batch
    logits = cb * rows * L
    loss = (FP32 if token else cb) * (T if token else ctx.batch) * L
    return HeadCost(saved=dict(acc.items), logits_bytes=logits, loss_saved_bytes=loss, loss_forward_extra=0,
                    loss_backward_extra=2 * loss)


def head_cost(ctx: StepContext, m: ModelSpec, upcast: bool) -> HeadCost:
    """transformers' ForCausalLMLoss runs ``logits.float()`` then cross_entropy: log_softmax keeps
    its fp32 output, the fp32 copy is transient, and backward holds two fp32 gradients of the same
    size (nll_loss and log_softmax backward). BERT's masked-LM loss has no upcast."""
    cb, rb, T, V, h = ctx.compute_bytes, ctx.residual_bytes, ctx.tokens, m.vocab_size, m.hidden_size
    acc = Parts.of(ctx)
    if is_classifier(m):
        return classifier_head_cost(ctx, m)
    if m.family == "bert":
        in_bytes = FP32 if ctx.amp else rb
        consumer_copies(ctx, acc, "MLM head input", T * h, in_bytes, ("dense",))
        acc.add("MLM head activation input", cb * T * h)
        norm(ctx, acc, m, cb if not ctx.amp else FP32, ("decoder",), "MLM head LayerNorm")
    else:
        norm(ctx, acc, m, rb, ("lm_head",), "final norm")
    logits = cb * T * V
    if m.final_logit_softcap:
        acc.add("logit soft-capping tanh output", cb * T * V)      # Gemma 2: tanh(logits / cap) * cap
    causal = m.family != "bert"
    if not causal and ctx.amp:
        # BERT's masked-LM loss is a plain CrossEntropyLoss (modeling_bert.py BertForMaskedLM). ATen's
        # cross_entropy_loss (LossNLL.cpp) calls log_softmax(self, dim, self.scalar_type()): the dtype is
        # given, so autocast's fp32_set_opt_dtype policy keeps it (autocast_mode.h set_opt_dtype) and the
        # log-softmax runs in the 16-bit dtype, its output saved. nll_loss is in autocast's fp32 list: its
        # input is cast to fp32, and that copy is saved for backward (derivatives.yaml nll_loss_forward:
        # self). Backward: nll_loss's fp32 gradient beside both; the copy and that gradient go before the
        # log-softmax's 16-bit gradient (issue 22: the model had one 16-bit logits-sized tensor too many,
        # +6.5% on BERT under bf16 autocast).
        N = T * V
        return HeadCost(saved=dict(acc.items), logits_bytes=logits, loss_saved_bytes=(cb + FP32) * N,
                        loss_forward_extra=0, loss_backward_extra=FP32 * N)
    loss_bytes = FP32 if (causal and upcast) else cb
    copy = FP32 * T * V if (loss_bytes == FP32 and cb != FP32) else 0
    return HeadCost(saved=dict(acc.items), logits_bytes=logits, loss_saved_bytes=loss_bytes * T * V,
                    loss_forward_extra=copy, loss_backward_extra=2 * loss_bytes * T * V)
