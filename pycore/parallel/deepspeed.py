"""Recipe ``deepspeed``: DeepSpeed's engine as it runs with bf16 or fp16 (the model converted to
16 bits, fp32 master weights in the optimizer), read from deepspeed @38327e07:

- stage 0 with bf16 runs BF16_Optimizer (runtime/bf16_optimizer.py:156-182): fp32 gradients of the
  whole model (grad_acc_dtype fp32), master weights and Adam states partitioned over d;
- stages 1-3 run the ZeRO optimizer with gradients accumulated in the model's dtype
  (engine.py:1010-1025): stage 1 keeps every gradient until the step, stage 2 keeps its partition
  (stage_1_and_2.py:1352), stage 3 also partitions the parameters (stage3.py:547, 738);
- buffers: the IPG reduce bucket of reduce_bucket_size elements in the model's dtype, two with
  overlap_comm (stage_1_and_2.py:2049-2060, stage3.py:538); the fp32 copy of a gradient partition at
  the step (:1896); ZeRO-3's persistent small parameters (parameter_offload.py:256) and the gathered
  live parameters with the prefetch bucket (partitioned_param_coordinator.py:105-112, 380);
- ZeRO-Offload keeps fp32 master weights, fp32 gradients and Adam states on the host (16 bytes a
  trainable parameter per rank, stage_1_and_2.py:477-689); ZeRO-Infinity's parameter offload keeps
  the 16-bit partitions there too.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from ..model.spec import ModelSpec, norm_params_per_unit
from ..training.result import Estimate, make_estimate
from ..training.allocator import RECIPE_SHARES
from ..training.optimizers import SHAPE_OPTIMIZERS, param_shapes, state_bytes
from ..training.static import stage_lora_params
from ..training.step import StageView, training_step
from ..training.timeline import Static
from ..units import dtype_bytes
from ..training.workload import Framework, Hardware, Precision, Workload
from ..model.layout import Parallelism, recompute_mode
from .options import DeepSpeedOptions
from ..model.shard import RankParams, rank_params_for
from .stages import in_flight, most_loaded

FP32 = 4


def engine_precision(p: Precision) -> Precision:
    """DeepSpeed's bf16/fp16 engines convert the model to 16 bits; its activations follow."""
    return Precision(weights=p.compute())


def persistent_params(m: ModelSpec, rank: RankParams, threshold: int) -> int:
    """ZeRO-3 keeps parameters of at most ``threshold`` elements whole on every rank: norms and
    biases of the stage's layers and the final norm (parameter_offload.py:256)."""
    h = m.hidden_size
    per_norm = norm_params_per_unit(m) * h
    small = per_norm if per_norm <= 2 * threshold else 0
    per_layer = small * m.norms_per_layer
    return per_layer * rank.layers + (small if rank.last else 0)


def deepspeed_states(m: ModelSpec, w: Workload, p: Precision, par: Parallelism, rank: RankParams,
                     o: DeepSpeedOptions) -> tuple[Static, int]:
    """One rank's model states and buffers, and its host memory."""
    n, n_e = par.dense_shard_group, par.expert_shard_group
    stage = par.zero_stage
    pb = dtype_bytes(p.compute())                         # the engine's parameter dtype
    mixed = pb == 2
    total = rank.total()
    trainable = total if w.mode == "full" else stage_lora_params(m, w, rank)
    t_dense = trainable if w.mode != "full" else rank.dense()
    t_expert = 0 if w.mode != "full" else rank.expert()
    shard = lambda b, k=n: -(-b // k)                     # noqa: E731
    bf16_optimizer = stage == 0 and p.compute() == "bf16" and o.grad_accum_dtype != "bf16"
    accum = FP32 if (bf16_optimizer or o.grad_accum_dtype == "fp32") else pb
    shapes = param_shapes(m) if w.optimizer in SHAPE_OPTIMIZERS and w.mode == "full" else []
    opt_states = state_bytes(w.optimizer, trainable, FP32 if mixed else pb, shapes)
    master = FP32 * trainable if mixed else 0
    sharded_states = stage >= 1 or bf16_optimizer
    if sharded_states:
        dense_share = t_dense / max(1, trainable)
        opt_states = int(opt_states * dense_share) // n + int(opt_states * (1 - dense_share)) // n_e
        master = shard(FP32 * t_dense) + shard(FP32 * t_expert, n_e) if mixed else 0
    weights = {f"16-bit parameters ({p.compute()})" if mixed else "parameters (fp32)": pb * total}
    compute, backward = {}, {}
    bucket = o.reduce_bucket_size * pb * (2 if (o.overlap_comm if o.overlap_comm is not None else stage == 3) else 1)
    if stage >= 3:
        persist = persistent_params(m, rank, o.param_persistence_threshold)
        weights = {f"16-bit parameter partition ({p.compute()})": shard(pb * (total - persist)),
                   "persistent small parameters (whole)": pb * persist}
        layer = rank.largest_layer()
        live = min(layer + min(o.prefetch_bucket_size, layer), o.max_live_parameters)
        compute["gathered parameters (live and prefetched)"] = pb * live
    host = 0
    offload = par.offload_optimizer != "none"
    grads_total = accum * trainable
    if stage >= 2:
        grads_total = shard(accum * t_dense) + shard(accum * t_expert, n_e)
        backward["reduce bucket (IPG)"] = bucket
    step_temp = 0
    if stage in (1, 2):
        step_temp = shard(FP32 * t_dense) if mixed else 0           # fp32 copy of the gradient partition
    elif stage == 3:
        step_temp = FP32 * min(shard(trainable), o.sub_group_size) if mixed else 0
    if offload:
        ranks_per_node = min(par.gpus, par.gpus_per_node)
        host_per_rank = master + shard(FP32 * trainable) + opt_states
        host = host_per_rank * ranks_per_node if par.offload_optimizer == "cpu" else 0
        master, opt_states, step_temp = 0, 0, 0
        grads_total = 0
        compute["gradient staging for the host (largest parameter)"] = pb * rank.largest
        if stage <= 2:
            backward["reduce bucket (IPG)"] = bucket
    if par.offload_params != "none":
        host += shard(pb * total) * min(par.gpus, par.gpus_per_node) if par.offload_params == "cpu" else 0
        weights = {k: v for k, v in weights.items() if "partition" not in k}
    per_layer = grads_total // max(1, rank.layers + 1)
    st = Static(weights=weights, optimizer_states=opt_states, grads_per_layer=per_layer,
                grads_other=grads_total - per_layer * rank.layers, grads_head=per_layer,
                autocast_copy_per_layer=0, autocast_copy_head=0, optimizer_temp=step_temp, n_layers=rank.layers,
                state_parts=(("fp32 master weights", master),) if master else (),
                backward_buffers=tuple(backward.items()),
                compute_buffers=tuple(compute.items()))
    return st, host


def estimate_deepspeed(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    o: DeepSpeedOptions = par.options or DeepSpeedOptions()
    if w.mode == "qlora":
        raise InputError("workload.mode", "QLoRA under DeepSpeed is not modelled; use recipe hf")
    if par.virtual_stages > 1:
        raise InputError("parallelism.virtual_stages", "DeepSpeed's pipeline engine (TrainSchedule) does not "
                                                       "interleave stages")
    if par.pipeline_parallel > 1 and par.zero_stage > 1:
        raise InputError("parallelism.zero_stage", "DeepSpeed's pipeline engine supports ZeRO stage 0 or 1")
    pe = engine_precision(p)
    fe = replace(f, lora_adapters_fp32=False)          # the engine converts adapters to 16 bits too

    def evaluate(stage: int) -> Estimate:
        rank = rank_params_for(m, par, stage)
        st, host = deepspeed_states(m, w, p, par, rank, o)
        view = StageView(tensor_parallel=par.tensor_parallel, sequence_parallel=par.sequence_parallel,
                         context_parallel=par.context_parallel, expert_parallel=par.expert_parallel,
                         recompute=recompute_mode(par, w.gradient_checkpointing),
                         recompute_layers=par.recompute_layers, in_flight=in_flight(par, stage),
                         grads_in_forward=par.gradient_accumulation > 1 or par.pipeline_parallel > 1)
        snaps, ctx = training_step(m, w, pe, fe, st, rank, view)
        return make_estimate(m, w, p, hw, fe, ctx, snaps, m.warnings, host_bytes=host, shares=RECIPE_SHARES)
    return most_loaded(par, m, evaluate)
