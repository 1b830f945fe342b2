"""Recipe ``hf``: the Hugging Face stack as it runs on one GPU (transformers, peft, torch.autocast),
with data parallelism (DDP, or ZeRO sharding of its states), transformers' tensor-parallel plan,
and accelerate's ``device_map`` layer split (``pipeline_parallel`` GPUs, one micro-batch at a time).

A device_map is not pipeline parallelism: the layers run on the GPUs one after another, so each GPU
holds one micro-batch and idles (p - 1)/p of the step (accelerate big_modeling.md, "the GPUs run
sequentially"); no schedule keeps several micro-batches in flight. Tensor parallelism is
transformers' own ``tp_plan="auto"``, which exists only for model types whose configuration declares
a base_model_tp_plan (parallel/hf_tp_plans.py).

Rajbhandari et al. 2020 (ZeRO, section 5 and Figure 1): stage 1 partitions the optimizer states
over the N data-parallel ranks, stage 2 also the gradients, stage 3 also the parameters, which are
gathered one layer at a time. Activations are not sharded: each rank runs its own micro-batch.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from ..model.spec import ModelSpec
from ..training.result import Estimate, make_estimate
from ..training.static import static_states, stored_layer_weight_bytes, weight_parts
from ..training.step import StageView, traced_training_step, training_step
from ..training.timeline import Static
from ..units import dtype_bytes
from ..training.workload import Framework, Hardware, Precision, Workload
from ..model.layout import Parallelism, recompute_mode
from .hf_tp_plans import TP_PLAN_MODEL_TYPES, TRANSFORMERS_VERSION
from ..model.shard import RankParams, rank_params
from .stages import most_loaded

# ZeRO-3 holds the gathered parameters of the layer being computed and of the one prefetched next:
# two layers' worth of full weights (DeepSpeed's prefetch bucket, FSDP's forward prefetch).
ZERO3_GATHERED_LAYERS = 2
# accelerate get_balanced_memory (utils/modeling.py @16cb6eb8, lines 1046-1048): each GPU but the
# last may take its share plus 1.25 x the largest unsplittable block, here a decoder layer.
BALANCED_BUFFER = 1.25


def shard_states(st: Static, par: Parallelism, layer_weight_bytes: int, compute_bytes: int, amp: bool) -> Static:
    """Per-GPU model states under data parallelism ``par.data_parallel`` and its ZeRO stage."""
    n, stage = par.data_parallel, par.zero_stage
    if n == 1 and stage == 0:
        return st
    weights = dict(st.weights)
    if stage == 0:
        # DistributedDataParallel's reducer allocates gradient buckets the size of all gradients
        # (gradient_as_bucket_view=False by default, torch/nn/parallel/distributed.py).
        buffers = dict(st.buffers)
        buffers["DDP gradient buckets"] = st.grads_other + st.grads_per_layer * st.n_layers
        return replace(st, buffers=tuple(buffers.items()))
    shard = lambda b: -(-b // n)        # noqa: E731
    grads = dict(grads_per_layer=st.grads_per_layer, grads_other=st.grads_other, grads_head=st.grads_head)
    if stage >= 2:
        grads = {k: shard(v) for k, v in grads.items()}
    copies = {}
    if stage >= 3:
        weights = {k: shard(v) for k, v in weights.items()}
        gathered = min(ZERO3_GATHERED_LAYERS, st.n_layers) * layer_weight_bytes
        if amp:
            # Sharded frameworks cast when they gather (FSDP MixedPrecision, DeepSpeed bf16): the
            # gathered layers are 16-bit, and torch.autocast keeps no copy of the whole model.
            gathered = gathered * compute_bytes // 4
            copies = dict(autocast_copy_per_layer=0, autocast_copy_head=0)
        weights["gathered parameters (ZeRO-3)"] = gathered
    return replace(st, weights=weights, optimizer_states=shard(st.optimizer_states),
                   optimizer_temp=shard(st.optimizer_temp), **grads, **copies)


def module_sizes(m: ModelSpec, w: Workload, p: Precision, f: Framework) -> tuple[int, int, int]:
    """Stored bytes of the embedding, of one decoder layer (the average) and of the final norm and
    head: the units accelerate places (the decoder layer is a no-split module)."""
    whole = rank_params(m)
    total = sum(weight_parts(m, w, p, f, whole).values())
    rest_bytes = 2 if w.mode == "inference" and p.weights not in ("fp32", "bf16", "fp16") else dtype_bytes(p.weights)
    embed, head = whole.embedding * rest_bytes, whole.head * rest_bytes
    return embed, (total - embed - head) // m.n_layers, head


def device_map_split(m: ModelSpec, w: Workload, p: Precision, f: Framework, par: Parallelism) -> tuple:
    """Layers per GPU as accelerate places them for device_map="auto": get_balanced_memory caps
    every GPU but the last at its share plus a buffer, and infer_auto_device_map fills them in
    module order, keeping the largest layer free on the first GPU (its main device)."""
    n = par.pipeline_parallel
    if par.pipeline_layers is not None:
        return tuple(par.pipeline_layers)
    embed, layer, head = module_sizes(m, w, p, f)
    cap = (embed + layer * m.n_layers + head) // n + int(BALANCED_BUFFER * layer)
    counts, gpu, used = [0] * n, 0, embed
    for _ in range(m.n_layers):
        limit = cap - layer if gpu == 0 else cap
        if gpu < n - 1 and counts[gpu] and used + layer > limit:
            gpu, used = gpu + 1, 0
        counts[gpu] += 1
        used += layer
    if not counts[-1]:                    # every GPU gets layers; the head follows the last of them
        counts = [m.n_layers // n + (1 if i < m.n_layers % n else 0) for i in range(n)]
    return tuple(counts)


def _stage_estimate(m, w, p, hw, f, par, rank: RankParams, in_flight: int) -> Estimate:
    st = static_states(m, w, p, f, rank)
    compute = dtype_bytes(p.compute())
    st = shard_states(st, par, stored_layer_weight_bytes(m, st.weights, dtype_bytes(p.weights), rank), compute,
                      p.autocast is not None)
    view = StageView(tensor_parallel=par.tensor_parallel, sequence_parallel=par.sequence_parallel,
                     recompute=recompute_mode(par, w.gradient_checkpointing), recompute_layers=par.recompute_layers,
                     in_flight=in_flight,
                     grads_in_forward=(par.micro_batches or par.gradient_accumulation) > 1 or f.keeps_gradients())
    if not f.alloc_conf:        # torch's defaults: the measured share of churn (training/allocator.py)
        snaps, ctx = training_step(m, w, p, f, st, rank, view)
        return make_estimate(m, w, p, hw, f, ctx, snaps, m.warnings, outside=st.outside_allocator)
    snaps, ctx, trace = traced_training_step(m, w, p, f, st, rank, view)
    return make_estimate(m, w, p, hw, f, ctx, snaps, m.warnings, outside=st.outside_allocator, trace=trace)


def estimate_hf(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    for name in ("context_parallel", "expert_parallel"):
        if getattr(par, name) > 1:
            raise InputError(f"parallelism.{name}", "context and expert parallelism are not part of the Hugging "
                                                    "Face stack; choose recipe fsdp2 or megatron")
    if par.tensor_parallel > 1 and m.model_type not in TP_PLAN_MODEL_TYPES:
        raise InputError("parallelism.tensor_parallel", f"transformers {TRANSFORMERS_VERSION} has no tensor-parallel "
                                                        f"plan (base_model_tp_plan) for model type "
                                                        f"'{m.model_type or 'unknown'}'; choose recipe fsdp2 or "
                                                        "megatron, or data parallelism")
    if par.virtual_stages > 1:
        raise InputError("parallelism.virtual_stages", "a device_map split has no pipeline schedule to interleave")
    if par.sequence_parallel:
        raise InputError("parallelism.sequence_parallel", "transformers' tensor-parallel plans keep the norms' "
                                                          "activations whole; sequence parallelism is Megatron's "
                                                          "and torchtitan's (recipes megatron, fsdp2)")
    if par.tensor_parallel > 1 and w.mode != "full":
        raise InputError("parallelism.tensor_parallel", "LoRA and QLoRA with tensor parallelism are not modelled; "
                                                        "use data parallelism or a device_map split")
    # A device_map split runs one micro-batch through the GPUs in turn: every GPU can be the most loaded.
    split = device_map_split(m, w, p, f, par) if par.pipeline_parallel > 1 else None

    def evaluate(stage: int) -> Estimate:
        rank = rank_params(m, par.tensor_parallel, par.pipeline_parallel, 1, stage, split)
        return _stage_estimate(m, w, p, hw, f, par, rank, in_flight=1)
    return most_loaded(par, m, evaluate, list(range(par.pipeline_parallel)), split)
