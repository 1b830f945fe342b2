"""Estimate one configuration: static memory, the moments of a step, the peak and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from math import prod

from .training.allocator import reserved_bytes
from .breakdown import Node, snapshot_tree
from .training.context import StepContext, adapter_bytes, make_context
from .serving.hf import inference_snapshots
from .training.layers import head_cost, layer_costs
from .model.spec import ModelSpec
from .parallel.zero import Parallelism, apply_parallelism, validate_parallelism
from .training.optimizers import SHAPE_OPTIMIZERS, param_shapes, state_bytes, step_temporary_bytes
from .errors import InputError
from .model.params import (embedding_params, head_params, known_lora_module_names, linears, lora_params, lora_shapes,
                           lora_targets,
                     param_counts)
from .training.timeline import Snapshot, Static, training_snapshots
from .units import dtype_bytes
from .workload import Framework, Hardware, Precision, Workload, validate_framework, validate_workload

# Weight-only quantisation for inference: bits per weight of the quantised linears, including
# scale overhead. int8: one fp16 scale per output row (LLM.int8 / per-channel); fp8: one fp32
# scale per tensor; int4: GPTQ/AWQ with group size 128, an fp16 scale and a 4-bit zero point per
# group (16 + 4 bits per 128 weights). Embeddings and the output head stay 16-bit.
INT4_GROUP = 128
INT4_GROUP_OVERHEAD_BITS = 16 + 4
# bitsandbytes NF4 (QLoRA): blocks of 64 weights with an fp32 absmax; double quantisation stores
# absmax in 8 bits with one fp32 constant per 256 blocks (Dettmers et al. 2023, section 3).
NF4_BLOCK = 64
NF4_DQ_BLOCK = 256


@dataclass(frozen=True)
class Estimate:
    model: ModelSpec
    workload: Workload
    precision: Precision
    hardware: Hardware
    context: StepContext
    snapshots: tuple
    peak: Snapshot
    peak_allocated_bytes: int
    reserved_bytes: int
    device_total_bytes: int
    params: dict
    warnings: tuple

    @property
    def fits(self) -> bool:
        return self.device_total_bytes <= self.hardware.memory_bytes

    def breakdown(self) -> Node:
        return snapshot_tree(self.peak, self.reserved_bytes - self.peak_allocated_bytes,
                             self.device_total_bytes - self.reserved_bytes)


def _linear_weight_counts(m: ModelSpec) -> tuple[int, int]:
    """(weights of the quantisable linears inside layers, largest single linear weight)."""
    inside = [lin for lin in linears(m) if lin.group != "head"]
    return sum(lin.weight_count() for lin in inside), max(lin.in_features * lin.out_features for lin in inside)


def weight_parts(m: ModelSpec, w: Workload, p: Precision, f: Framework = Framework()) -> dict:
    counts = param_counts(m)
    total = sum(counts.values())
    if w.mode == "qlora" or (w.mode == "inference" and p.weights in ("fp8", "int8", "int4")):
        quantised, _ = _linear_weight_counts(m)
        rest = total - quantised
        if w.mode == "qlora":
            absmax = -(-quantised // NF4_BLOCK)
            consts = absmax + 4 * -(-absmax // NF4_DQ_BLOCK) if w.qlora_double_quant else 4 * absmax
            parts = {"4-bit NF4 weights": quantised // 2, "NF4 quantisation constants": consts}
        elif p.weights == "int4":
            groups = -(-quantised // INT4_GROUP)
            parts = {"int4 weights": quantised // 2, "int4 group scales and zeros": groups * INT4_GROUP_OVERHEAD_BITS // 8}
        else:
            rows = sum(lin.out_features * lin.layers * lin.copies for lin in linears(m) if lin.group != "head")
            parts = {f"{p.weights} weights": quantised,
                     f"{p.weights} scales": 2 * rows if p.weights == "int8" else 4 * len(linears(m))}
        parts["16-bit embeddings, norms and head"] = rest * 2 if w.mode == "inference" else rest * dtype_bytes(p.weights)
        out = parts
    else:
        out = {f"weights ({p.weights})": total * dtype_bytes(p.weights)}
    if w.mode in ("lora", "qlora"):
        out["LoRA adapters"] = lora_params(m, w.lora_rank, w.lora_targets) * adapter_bytes(w, f, dtype_bytes(p.compute()))
    return out


def _static(m: ModelSpec, w: Workload, p: Precision, f: Framework) -> Static:
    """Weights, gradients, optimizer states and step temporaries: they do not depend on the batch or
    the length, so a solver's many estimates of one configuration share them."""
    return _static_cached(m, replace(w, batch_size=1, seq_len=1, new_tokens=0), p, f)


@lru_cache(maxsize=256)
def _static_cached(m: ModelSpec, w: Workload, p: Precision, f: Framework) -> Static:
    weights = weight_parts(m, w, p, f)
    L = m.n_layers
    compute = dtype_bytes(p.autocast) if p.autocast else dtype_bytes(p.weights)
    if w.mode == "full":
        pb = dtype_bytes(p.weights)
        trainable = sum(param_counts(m).values())
        per_layer = (trainable - embedding_params(m) - head_params(m) - m.hidden_size) // L
        # Every parameter's shape only matters for optimizers whose state depends on it.
        shapes = param_shapes(m) if w.optimizer in SHAPE_OPTIMIZERS else []
        largest = max([m.vocab_size * m.hidden_size] + [lin.in_features * lin.out_features * lin.copies
                                                        for lin in linears(m)])
        grads_other = (trainable - per_layer * L) * pb
        grads_head = (head_params(m) or embedding_params(m)) * pb
    else:
        pb = adapter_bytes(w, f, compute)
        trainable = lora_params(m, w.lora_rank, w.lora_targets)
        per_layer = trainable // L
        shapes = lora_shapes(m, w.lora_rank, w.lora_targets)
        largest = max([prod(s) for s, _ in shapes] or [0])
        grads_other = grads_head = (trainable - per_layer * L) * pb
    copy_layer = copy_head = 0
    if p.autocast is not None and w.mode == "full":
        quantised, _ = _linear_weight_counts(m)
        copy_layer = quantised * compute // L
        copy_head = m.vocab_size * m.hidden_size * compute
    return Static(
        weights=weights, optimizer_states=state_bytes(w.optimizer, trainable, pb, shapes),
        grads_per_layer=per_layer * pb, grads_other=grads_other, grads_head=grads_head,
        autocast_copy_per_layer=copy_layer, autocast_copy_head=copy_head,
        optimizer_temp=step_temporary_bytes(w.optimizer, trainable, pb, largest), n_layers=L,
    )


def _stored_layer_weight_bytes(m: ModelSpec, weights: dict, ctx: StepContext) -> int:
    """One layer's linear weights as stored (NF4 and its constants for QLoRA): what ZeRO-3
    gathers for each layer it computes."""
    nf4 = weights.get("4-bit NF4 weights")
    if nf4 is not None:
        return (nf4 + weights["NF4 quantisation constants"]) // m.n_layers
    linear_weights, _ = _linear_weight_counts(m)
    return linear_weights // m.n_layers * ctx.weight_bytes


def _qlora_dequant(m: ModelSpec, ctx: StepContext) -> int:
    """bitsandbytes MatMul4Bit dequantises the whole weight to the compute dtype for each call."""
    _, largest = _linear_weight_counts(m)
    return largest * ctx.compute_bytes


def estimate(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework = Framework(),
             par: Parallelism = Parallelism()) -> Estimate:
    validate_workload(w, p)
    validate_framework(f)
    validate_parallelism(par, w.mode != "inference")
    ctx = make_context(m, w, p, f)
    warnings = list(m.warnings)
    total_len = w.seq_len + (w.new_tokens if w.mode == "inference" else 0)
    if total_len > m.max_positions:
        warnings.append(f"sequence of {total_len} tokens is longer than the model's max_position_embeddings "
                        f"({m.max_positions})")
    if w.mode in ("lora", "qlora") and not lora_targets(m, w.lora_targets):
        if w.lora_targets is None:
            raise InputError("workload.mode", "LoRA's default targets (the attention projections) match no linear "
                             "layer of this model; set workload.lora.targets to some of "
                             + ", ".join(known_lora_module_names(m)))
        raise InputError("workload.lora.targets", "matches no linear layer of this model; its linears are "
                         + ", ".join(known_lora_module_names(m)))
    if w.mode == "inference":
        kv_b = dtype_bytes(p.kv_cache) if p.kv_cache else ctx.compute_bytes
        weights = weight_parts(m, w, p)
        snaps = inference_snapshots(ctx, m, weights, w.new_tokens, kv_b)
    else:
        st = _static(m, w, p, f)
        st = apply_parallelism(st, par, _stored_layer_weight_bytes(m, st.weights, ctx))
        layers = layer_costs(ctx, m)
        if w.mode == "qlora":
            extra = _qlora_dequant(m, ctx)
            layers = [replace(lc, forward_extra=lc.forward_extra + extra, backward_extra=lc.backward_extra + extra)
                      for lc in layers]
        head = head_cost(ctx, m, f.loss_upcast_fp32)
        snaps = training_snapshots(st, layers, head, ctx.checkpointing)
    peak = max(snaps, key=lambda s: s.total())
    allocated = peak.total()
    reserved = reserved_bytes(allocated, snaps, ctx)
    counts = param_counts(m)
    params = {"total": sum(counts.values()), "by_component": counts}
    if w.mode in ("lora", "qlora"):
        params["adapters"] = lora_params(m, w.lora_rank, w.lora_targets)
        params["trainable"] = params["adapters"]
    elif w.mode == "full":
        params["trainable"] = params["total"]
    else:
        params["trainable"] = 0
    return Estimate(model=m, workload=w, precision=p, hardware=hw, context=ctx, snapshots=tuple(snaps), peak=peak,
                    peak_allocated_bytes=allocated, reserved_bytes=reserved,
                    device_total_bytes=reserved + f.cuda_context_bytes, params=params, warnings=tuple(warnings))
