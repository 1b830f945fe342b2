"""Plain-language explanations of each term: what it is, its formula, and this run's numbers."""

from __future__ import annotations

from ..result import Estimate
from ..units import GiB


def _g(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def _category(e: Estimate, name: str) -> int:
    for cat, items in e.peak.parts:
        if cat == name:
            return sum(items.values())
    return 0


def _activation_numbers(e: Estimate) -> str:
    """The activation formula with this run's numbers: each kind of layer's count times what one layer
    keeps (one GPU, training); under checkpointing, each layer's input plus one layer recomputed."""
    if e.workload.mode == "inference" or (e.layout and e.layout.get("gpus", 1) > 1) or e.context is None:
        return ""
    from .layers import layer_costs
    ctx, m = e.context, e.model
    kinds = layer_costs(ctx, m)
    tokens = ctx.tokens
    at_peak = f"; at the peak ({e.peak.moment}): {_g(_category(e, 'activations'))} in all"
    if e.workload.gradient_checkpointing:
        n = sum(k.count for k in kinds)
        one = max(k.saved_total() for k in kinds)
        return (f"{n} layer inputs x {kinds[0].checkpoint_input:,} bytes ({tokens:,} tokens x {m.hidden_size} x "
                f"{ctx.residual_bytes} bytes) = {_g(n * kinds[0].checkpoint_input)}, and one layer recomputed in "
                f"backward: {_g(one)}" + at_peak)
    merged: dict = {}                      # kinds of layer that keep the same bytes, counted together
    for k in kinds:
        merged[k.saved_total()] = merged.get(k.saved_total(), 0) + k.count
    parts = [f"{n} layers x {kept:,} bytes ({kept // tokens:,} bytes per token x {tokens:,} tokens)"
             for kept, n in merged.items()]
    total = sum(kept * n for kept, n in merged.items())
    return (" + ".join(parts) + f" = {_g(total)} kept by the layers by the end of the forward" + at_peak
            + " (with the final norm's and the head's inputs)")


def explanations(e: Estimate) -> dict:
    """One entry per top-level category of the breakdown, keyed by its name."""
    return {name: explain(e) for name, explain in TERMS}


def _weights(e: Estimate) -> dict:
    w, ctx, P = e.workload, e.context, e.params["total"]
    return {
        "what": "The model's parameters in their storage dtype (quantised linears for QLoRA or int8/int4 inference), "
                "plus LoRA adapters.",
        "formula": "P x bytes per parameter",
        "numbers": f"{P:,} x {ctx.weight_bytes if w.mode in ('full', 'lora') else 'mixed'} bytes = {_g(_category(e, 'weights'))}",
    }


def _gradients(e: Estimate) -> dict:
    return {
        "what": "One gradient per trainable parameter, in the parameter's dtype, filled in during backward "
                "(zero_grad(set_to_none=True) frees them after each step).",
        "formula": "trainable parameters x bytes per parameter, those computed so far at the peak",
        "numbers": f"{e.params.get('trainable', 0):,} trainable; at the peak {_g(_category(e, 'gradients'))}",
    }


def _optimizer_states(e: Estimate) -> dict:
    trainable = e.params.get("trainable", 0)
    states = _category(e, "optimizer states")
    per_param = states / trainable if trainable else 0
    return {
        "what": f"State kept by {e.workload.optimizer} between steps (AdamW: two moments; SGD with momentum: one "
                "buffer), in the trainable parameters' dtype.",
        "formula": "trainable parameters x states per parameter x bytes per state",
        "numbers": f"{trainable:,} trainable x {per_param:.3g} bytes = {_g(states)}",
    }


def _autocast_copies(e: Estimate) -> dict:
    return {
        "what": "Under mixed precision, torch.autocast casts each fp32 weight to 16 bits once per forward and "
                "keeps the copy until that layer's backward (only within the block under checkpointing).",
        "formula": "linear-layer parameters x 2 bytes",
        "numbers": _g(_category(e, "autocast weight copies")),
    }


def _activations(e: Estimate) -> dict:
    m, w, ctx = e.model, e.workload, e.context
    return {
        "what": "Tensors that autograd saves in the forward pass for the backward pass: normalisation inputs, "
                "projections, attention outputs (and s x s scores for eager attention), MLP intermediates, "
                "dropout masks. Under checkpointing only each layer's input is kept.",
        "formula": "sum over layers of (bytes saved per token x b x s) + b x heads x s x s terms for eager attention",
        "numbers": _activation_numbers(e) or
        f"b={w.batch_size}, s={w.seq_len}, {m.n_layers} layers, hidden {m.hidden_size}, kernel {ctx.kernel}: "
        f"{_g(_category(e, 'activations'))}",
    }


def _logits(e: Estimate) -> dict:
    w, cb, V = e.workload, e.context.compute_bytes, e.model.vocab_size
    b, s = w.batch_size, w.seq_len
    loss = "fp32" if e.model.family != "bert" else "the compute dtype"
    return {
        "what": f"The output logits (b x s x V in the compute dtype, kept by the output until backward ends) and "
                f"the loss's log-softmax in {loss}. For large vocabularies this is often the largest term.",
        "formula": "b x s x V x (compute bytes + 4)",
        "numbers": f"{b} x {s} x {V:,} x ({cb} + 4) = {_g(b * s * V * (cb + 4))}" if w.mode != "inference"
        else f"at the peak: {_g(_category(e, 'logits and loss'))}",
    }


def _kv_cache(e: Estimate) -> dict:
    m, w, cb = e.model, e.workload, e.context.compute_bytes
    return {
        "what": "Keys and values of every past token for every layer, kept by generate's dynamic cache; grown by "
                "torch.cat, which briefly holds two copies of one layer.",
        "formula": "b x tokens x layers x 2 x kv_heads x head_dim x bytes",
        "numbers": f"{w.batch_size} x {w.seq_len + max(0, w.new_tokens - 1)} x {m.n_layers} x 2 x {m.n_kv_heads} x "
                   f"{m.head_dim} x {cb} = {_g(_category(e, 'KV cache'))} at the peak",
    }


def _temporaries(e: Estimate) -> dict:
    return {
        "what": "Short-lived buffers at the busiest moment: the gradients of the loss, one layer's activation "
                "gradients, the optimizer's full-size temporary (foreach AdamW), or one layer's working memory "
                "in inference.",
        "formula": "depends on the phase of the peak",
        "numbers": f"{e.peak.phase}, {e.peak.moment}: {_g(_category(e, 'temporaries'))}",
    }


def _framework_buffers(e: Estimate) -> dict:
    return {
        "what": "Buffers a distributed framework allocates beside the model states: DDP's gradient buckets, "
                "DeepSpeed's reduce bucket and ZeRO-3's gathered parameters, FSDP2's gathered blocks and "
                "reduce-scatter buffers.",
        "formula": "per recipe (see Multi-GPU training)",
        "numbers": _g(_category(e, "framework buffers")),
    }


def _allocator_reserve(e: Estimate) -> dict:
    return {
        "what": "Memory PyTorch's caching allocator holds beyond what tensors use: rounding, segments, and freed "
                "blocks too small for the next request. nvidia-smi counts it; max_memory_allocated does not.",
        "formula": "reserved - allocated (an allowance calibrated on measured runs)",
        "numbers": _g(e.reserved_bytes - e.peak_allocated_bytes),
    }


def _cuda_context(e: Estimate) -> dict:
    return {
        "what": "The CUDA context, kernels and library handles, outside PyTorch's allocator.",
        "formula": "820 MiB with lazy CUDA module loading (torch 1.13 and later), 1,343 MiB before; "
                   "framework.cuda_context_bytes overrides it",
        "numbers": _g(e.device_total_bytes - e.reserved_bytes),
    }


# The breakdown's top-level categories, in the order the explanations list them.
TERMS = (("weights", _weights), ("gradients", _gradients), ("optimizer states", _optimizer_states),
         ("autocast weight copies", _autocast_copies), ("activations", _activations), ("logits and loss", _logits),
         ("KV cache", _kv_cache), ("temporaries", _temporaries), ("framework buffers", _framework_buffers),
         ("allocator reserve", _allocator_reserve), ("CUDA context", _cuda_context))
