"""Plain-language explanations of each term: what it is, its formula, and this run's numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .result import Estimate
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


@dataclass(frozen=True)
class Term:
    """A top-level category of the breakdown: what it is, its formula, and this run's numbers."""
    what: str                   # {optimizer} and {loss} are filled in from the run
    formula: str
    numbers: Callable           # Estimate -> str


def explanations(e: Estimate) -> dict:
    """One entry per top-level category of the breakdown, keyed by its name."""
    fill = {"optimizer": e.workload.optimizer, "loss": "fp32" if e.model.family != "bert" else "the compute dtype"}
    return {name: {"what": term.what.format(**fill), "formula": term.formula, "numbers": term.numbers(e)}
            for name, term in TERMS.items()}


def _at_peak(category: str) -> Callable:
    return lambda e: _g(_category(e, category))


def weights_numbers(e: Estimate) -> str:
    stored = e.context.weight_bytes if e.workload.mode in ("full", "lora") else "mixed"
    return f"{e.params['total']:,} x {stored} bytes = {_g(_category(e, 'weights'))}"


def gradients_numbers(e: Estimate) -> str:
    return f"{e.params.get('trainable', 0):,} trainable; at the peak {_g(_category(e, 'gradients'))}"


def optimizer_numbers(e: Estimate) -> str:
    trainable = e.params.get("trainable", 0)
    states = _category(e, "optimizer states")
    per_param = states / trainable if trainable else 0
    return f"{trainable:,} trainable x {per_param:.3g} bytes = {_g(states)}"


def activation_numbers(e: Estimate) -> str:
    m, w, ctx = e.model, e.workload, e.context
    return _activation_numbers(e) or (f"b={w.batch_size}, s={w.seq_len}, {m.n_layers} layers, hidden {m.hidden_size}, "
                                      f"kernel {ctx.kernel}: {_g(_category(e, 'activations'))}")


def logits_numbers(e: Estimate) -> str:
    w, cb, V = e.workload, e.context.compute_bytes, e.model.vocab_size
    b, s = w.batch_size, w.seq_len
    if w.mode == "inference":
        return f"at the peak: {_g(_category(e, 'logits and loss'))}"
    return f"{b} x {s} x {V:,} x ({cb} + 4) = {_g(b * s * V * (cb + 4))}"


def kv_cache_numbers(e: Estimate) -> str:
    m, w, cb = e.model, e.workload, e.context.compute_bytes
    return (f"{w.batch_size} x {w.seq_len + max(0, w.new_tokens - 1)} x {m.n_layers} x 2 x {m.n_kv_heads} x "
            f"{m.head_dim} x {cb} = {_g(_category(e, 'KV cache'))} at the peak")


TERMS = {
    "weights": Term("The model's parameters in their storage dtype (quantised linears for QLoRA or int8/int4 "
                    "inference), plus LoRA adapters.", "P x bytes per parameter", weights_numbers),
    "gradients": Term("One gradient per trainable parameter, in the parameter's dtype, filled in during backward "
                      "(zero_grad(set_to_none=True) frees them after each step).",
                      "trainable parameters x bytes per parameter, those computed so far at the peak", gradients_numbers),
    "optimizer states": Term("State kept by {optimizer} between steps (AdamW: two moments; SGD with momentum: one "
                             "buffer), in the trainable parameters' dtype.",
                             "trainable parameters x states per parameter x bytes per state", optimizer_numbers),
    "autocast weight copies": Term(
        "Under mixed precision, torch.autocast casts each fp32 weight to 16 bits once per forward and keeps the copy "
        "until that layer's backward (only within the block under checkpointing).",
        "linear-layer parameters x 2 bytes", _at_peak("autocast weight copies")),
    "activations": Term(
        "Tensors that autograd saves in the forward pass for the backward pass: normalisation inputs, projections, "
        "attention outputs (and s x s scores for eager attention), MLP intermediates, dropout masks. Under "
        "checkpointing only each layer's input is kept.",
        "sum over layers of (bytes saved per token x b x s) + b x heads x s x s terms for eager attention",
        activation_numbers),
    "logits and loss": Term(
        "The output logits (b x s x V in the compute dtype, kept by the output until backward ends) and the loss's "
        "log-softmax in {loss}. For large vocabularies this is often the largest term.",
        "b x s x V x (compute bytes + 4)", logits_numbers),
    "KV cache": Term("Keys and values of every past token for every layer, kept by generate's dynamic cache; grown "
                     "by torch.cat, which briefly holds two copies of one layer.",
                     "b x tokens x layers x 2 x kv_heads x head_dim x bytes", kv_cache_numbers),
    "temporaries": Term(
        "Short-lived buffers at the busiest moment: the gradients of the loss, one layer's activation gradients, the "
        "optimizer's full-size temporary (foreach AdamW), or one layer's working memory in inference.",
        "depends on the phase of the peak",
        lambda e: f"{e.peak.phase}, {e.peak.moment}: {_g(_category(e, 'temporaries'))}"),
    "framework buffers": Term(
        "Buffers a distributed framework allocates beside the model states: DDP's gradient buckets, DeepSpeed's "
        "reduce bucket and ZeRO-3's gathered parameters, FSDP2's gathered blocks and reduce-scatter buffers.",
        "per recipe (see Multi-GPU training)", _at_peak("framework buffers")),
    "allocator reserve": Term(
        "Memory PyTorch's caching allocator holds beyond what tensors use: rounding, segments, and freed blocks too "
        "small for the next request. nvidia-smi counts it; max_memory_allocated does not.",
        "reserved - allocated (an allowance calibrated on measured runs)",
        lambda e: _g(e.reserved_bytes - e.peak_allocated_bytes)),
    "CUDA context": Term(
        "The CUDA context, kernels and library handles, outside PyTorch's allocator.",
        "820 MiB with lazy CUDA module loading (torch 1.13 and later), 1,343 MiB before; "
        "framework.cuda_context_bytes overrides it", lambda e: _g(e.device_total_bytes - e.reserved_bytes)),
}
