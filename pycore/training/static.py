"""The model states of one GPU in the Hugging Face stack: weights, gradients, optimizer states and
the optimizer step's temporaries, for the whole model or for one rank's share of a layout.

They do not depend on the batch or the length, so a solver's many estimates share them (cached).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from math import prod

from ..model.params import embedding_params, head_params, linears, lora_params, lora_shapes
from ..model.spec import ModelSpec
from ..model.shard import RankParams, rank_params
from ..units import dtype_bytes
from .workload import QUANTISED_WEIGHTS, Framework, Precision, Workload, nf4_base
from .adapters import plan_for
from .context import adapter_bytes
from .optimizers import SHAPE_OPTIMIZERS, managed_state_bytes, param_shapes, state_bytes, step_temporary_bytes
from ..versions import version_tuple
from .timeline import Static

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


def nf4_parts(quantised: int, double_quant: bool) -> dict:
    """bitsandbytes 4-bit storage of ``quantised`` weights: packed NF4 and its constants."""
    absmax = -(-quantised // NF4_BLOCK)
    consts = absmax + 4 * -(-absmax // NF4_DQ_BLOCK) if double_quant else 4 * absmax
    return {"4-bit NF4 weights": quantised // 2, "NF4 quantisation constants": consts}


def weight_parts(m: ModelSpec, w: Workload, p: Precision, f: Framework = Framework(),
                 rank: RankParams | None = None) -> dict:
    """The stored weights on one GPU, by format (``rank`` None: the whole model)."""
    rank = rank or rank_params(m)
    total = rank.total()
    if nf4_base(w) or (w.mode == "inference" and p.weights in QUANTISED_WEIGHTS):
        quantised = rank.linear_weights()
        rest = total - quantised
        if nf4_base(w):
            parts = nf4_parts(quantised, w.qlora_double_quant)
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
        out["LoRA adapters"] = stage_lora_params(m, w, rank) * adapter_bytes(w, f, dtype_bytes(p.compute()))
    if w.mode == "peft":
        out.update(peft_weight_parts(m, w, p, f, rank))
    return out


def stage_lora_params(m: ModelSpec, w: Workload, rank: RankParams) -> int:
    """Adapters on the stage's layers (each adapted linear has one pair per layer)."""
    whole = lora_params(m, w.lora_rank, w.lora_targets)
    return whole if rank.layers == m.n_layers else whole * rank.layers // m.n_layers


def static_states(m: ModelSpec, w: Workload, p: Precision, f: Framework, rank: RankParams | None = None) -> Static:
    """Weights, gradients, optimizer states and step temporaries of one GPU (``rank`` None: the whole model)."""
    return _static(m, replace(w, batch_size=1, seq_len=1, new_tokens=0), p, f, rank or rank_params(m))


@lru_cache(maxsize=512)
def _static(m: ModelSpec, w: Workload, p: Precision, f: Framework, rank: RankParams) -> Static:
    weights = weight_parts(m, w, p, f, rank)
    L = max(1, rank.layers)
    compute = dtype_bytes(p.autocast) if p.autocast else dtype_bytes(p.weights)
    whole = rank.layers == m.n_layers and rank.first and rank.last
    if w.mode == "full":
        pb = dtype_bytes(p.weights)
        trainable = rank.total()
        per_layer = (rank.layer_dense() + rank.layer_expert()) // L
        shapes = _shapes(m, rank, whole) if w.optimizer in SHAPE_OPTIMIZERS else []
        largest = rank.largest
        grads_other = (trainable - per_layer * rank.layers) * pb
        grads_head = _head_matrix(m, rank, whole) * pb
    elif w.mode == "peft":
        plan = plan_for(m, w.peft_config)
        pb = peft_param_bytes(plan, w, f, compute)
        trainable = _stage_share(plan.trainable, m, rank)
        per_layer = trainable // L
        shapes = list(plan.shapes)
        largest = max([prod(s) for s, _ in shapes] or [0])
        grads_other = grads_head = (trainable - per_layer * rank.layers) * pb
    else:
        pb = adapter_bytes(w, f, compute)
        trainable = stage_lora_params(m, w, rank)
        per_layer = trainable // L
        shapes = [(s, n if whole else n * rank.layers // m.n_layers) for s, n in lora_shapes(m, w.lora_rank, w.lora_targets)]
        largest = max([prod(s) for s, _ in shapes] or [0])
        grads_other = grads_head = (trainable - per_layer * rank.layers) * pb
    copy_layer = copy_head = 0
    if p.autocast is not None and w.mode == "full":
        copy_layer = rank.linear_weights() * compute // L
        copy_head = rank.vocab * m.hidden_size * compute if rank.last else 0     # the output layer's cast
    tied = 2 * m.vocab_size * m.hidden_size * pb if w.mode == "full" and m.tied_embeddings and whole else 0
    return Static(
        tied_grad_sum=tied,
        weights=weights, optimizer_states=state_bytes(w.optimizer, trainable, pb, shapes),
        grads_per_layer=per_layer * pb, grads_other=grads_other, grads_head=grads_head,
        autocast_copy_per_layer=copy_layer, autocast_copy_head=copy_head,
        optimizer_temp=step_temporary_bytes(w.optimizer, trainable, pb, largest,
                                            version_tuple(f.torch, "framework.torch", "a torch version", "2.11")),
        n_layers=rank.layers, outside_allocator=_managed(w, shapes),
        state_parts=_peft_state(m, w, trainable, pb),
    )


def peft_param_bytes(plan, w: Workload, f: Framework, compute: int) -> int:
    """Bytes per adapter parameter: fp32 for C3A's kernel and the prompt encoders (created in torch's
    default dtype), else the LoRA rule (autocast_adapter_dtype)."""
    return 4 if plan.fp32_params else adapter_bytes(w, f, compute)


def peft_weight_parts(m: ModelSpec, w: Workload, p: Precision, f: Framework, rank: RankParams) -> dict:
    """The adapter's parameters, frozen buffers and modules_to_save copies on one GPU."""
    plan = plan_for(m, w.peft_config)
    compute = dtype_bytes(p.compute())
    pb = peft_param_bytes(plan, w, f, compute)
    name = plan.peft_type.lower().replace("_", " ")
    out = {f"PEFT adapter ({name})": _stage_share(plan.trainable - plan.saved_copies, m, rank) * pb}
    if plan.frozen_buffers or plan.index_elements:
        # projections and bases are fp32 (torch's default dtype when PEFT creates them); indices int64
        out[f"PEFT frozen buffers ({name})"] = _stage_share(4 * plan.frozen_buffers + 8 * plan.index_elements, m, rank)
    if plan.saved_copies:
        out["modules_to_save copies"] = plan.saved_copies * dtype_bytes(p.weights)
    return out


def _stage_share(n: int, m: ModelSpec, rank: RankParams) -> int:
    return n if rank.layers == m.n_layers else n * rank.layers // m.n_layers


def _peft_state(m: ModelSpec, w: Workload, trainable: int, pb: int) -> tuple:
    if w.mode != "peft":
        return ()
    copies = plan_for(m, w.peft_config).score_copies
    return (("AdaLoRA importance scores (ipt, exp_avg_ipt, exp_avg_unc)", copies * trainable * pb),) if copies else ()


def _managed(w: Workload, shapes) -> tuple:
    managed = managed_state_bytes(w.optimizer, shapes)
    return (("paged optimizer states (CUDA managed memory)", managed),) if managed else ()


def _head_matrix(m: ModelSpec, rank: RankParams, whole: bool) -> int:
    """Parameters whose gradient backward computes first: the output layer (a tied one is the
    embedding); a pipeline stage without the output layer has none."""
    if whole:
        return head_params(m) or embedding_params(m)
    return rank.vocab * m.hidden_size if rank.last else 0


def _shapes(m: ModelSpec, rank: RankParams, whole: bool) -> list:
    """(shape, how many) of the rank's parameters, for Adafactor's and 8-bit AdamW's states; a
    stage's share of the layers is taken in proportion."""
    shapes = param_shapes(m)
    if whole:
        return shapes
    return [(s, max(1, n * rank.layers // m.n_layers) if n > 1 else n) for s, n in shapes]


def stored_layer_weight_bytes(m: ModelSpec, weights: dict, weight_bytes: int, rank: RankParams | None = None) -> int:
    """One layer's linear weights as stored (NF4 and its constants for QLoRA): what ZeRO-3 gathers
    for each layer it computes."""
    rank = rank or rank_params(m)
    L = max(1, rank.layers)
    nf4 = weights.get("4-bit NF4 weights")
    if nf4 is not None:
        return (nf4 + weights["NF4 quantisation constants"]) // L
    return rank.linear_weights() // L * weight_bytes


def largest_linear(m: ModelSpec) -> int:
    """The largest single linear weight inside the layers (bitsandbytes dequantises one at a time)."""
    return max(lin.in_features * lin.out_features for lin in linears(m) if lin.group != "head")
