"""Recipe ``fsdp2``: PyTorch FSDP2 ``fully_shard`` as torchtitan uses it
(torchtitan/parallelisms/parallelize_llama.py @9dec370, lines 309-339), with
MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32):

- parameters, gradients and optimizer states stay in the parameters' own dtype (fp32) and are
  sharded over the shard group (FSDPParam.init_dtype_attrs): 16 bytes a parameter / N with AdamW;
- while a block computes, its parameters are all-gathered in bf16 (foreach_all_gather) and the
  next block's are prefetched; the root group (embeddings, final norm, output) is never resharded;
- reduce-scatter takes the unsharded gradients in fp32 (foreach_reduce, reduce_dtype);
- reshard_after_forward=False keeps every block's gathered parameters from its forward to its
  backward (torchtitan does so for the last block, and for every block under pipelining);
- HSDP shards within ``shard_group`` GPUs and replicates across groups; CPUOffloadPolicy keeps
  parameters, gradients and states on the host;
- under pipelining (torch.distributed.pipelining), gradient sync and resharding are off for every
  micro-batch's backward but the last: gradients accumulate unsharded in fp32 (FSDP2 keeps a
  pending gradient in reduce_dtype; PyTorch's test_fully_shard asserts its dtype is float32).
Files: torch/distributed/fsdp/_fully_shard/_fsdp_param_group.py @002a76fb and _fsdp_collectives.py
@010ae4a8.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from ..model.spec import ModelSpec
from ..model.shard import local_model
from ..training.result import Estimate, make_estimate
from ..training.allocator import RECIPE_SHARES
from ..training.activations import FP32, LayerCost
from ..training.optimizers import SHAPE_OPTIMIZERS, param_shapes, state_bytes
from ..training.static import stage_lora_params
from ..training.step import StageView, step_context, training_step
from ..training.timeline import Static
from ..units import dtype_bytes
from ..training.workload import Framework, Hardware, Precision, Workload
from ..model.layout import Parallelism, recompute_mode
from .options import Fsdp2Options
from ..model.shard import RankParams, rank_params_for
from .stages import in_flight, most_loaded
from .torch_cp import ring_buffers, with_torch_ring
from .torchtitan_loss import torchtitan_loss

# While block i computes in forward, its unsharded parameters, the all-gather buffer they were
# copied out of (held until block i+1's copy-out) and block i+1's prefetched all-gather exist
# (_fsdp_param_group.py wait_for_unshard): three block-sized bf16 tensors.
GATHERED_BLOCKS = 3
ASYNC_TP_WORKSPACE = "async TP symmetric-memory workspace"


def fsdp_states(m: ModelSpec, w: Workload, p: Precision, par: Parallelism, rank: RankParams,
                o: Fsdp2Options) -> tuple[Static, int]:
    n = o.shard_group or par.dense_shard_group
    if (par.dense_shard_group % n) and o.shard_group:
        raise InputError("parallelism.options.shard_group", f"must divide the data x context x expert ranks "
                                                            f"({par.dense_shard_group})")
    n_e = min(n, par.expert_shard_group)
    wb = dtype_bytes(p.weights)                           # sharded parameters keep their own dtype
    cb = dtype_bytes(p.compute())                          # MixedPrecisionPolicy.param_dtype
    shard = lambda b, k=n: -(-b // k)                      # noqa: E731
    total = rank.total()
    trainable = total if w.mode == "full" else stage_lora_params(m, w, rank)
    params = shard(wb * rank.dense()) + shard(wb * rank.expert(), n_e)
    grads = shard(wb * trainable)
    shapes = param_shapes(m) if w.optimizer in SHAPE_OPTIMIZERS and w.mode == "full" else []
    states = shard(state_bytes(w.optimizer, trainable, wb, shapes))
    block = rank.largest_layer()
    root = rank.embedding + rank.head
    compute = {"gathered blocks (current, its all-gather buffer, the prefetched next)": GATHERED_BLOCKS * cb * block,
               "root group, never resharded (embeddings, final norm, output layer)": cb * root}
    if not o.reshard_after_forward or par.pipeline_parallel > 1:
        compute["blocks kept unsharded from forward to backward"] = cb * (rank.layer_dense() + rank.layer_expert())
    if par.pipeline_parallel > 1:
        # torch.distributed.pipelining calls set_requires_gradient_sync(False) and
        # set_reshard_after_backward(False) for every micro-batch's backward but the last, so FSDP2
        # accumulates the stage's gradients unsharded, in reduce_dtype (fp32), until the last one.
        compute["unsharded gradients accumulated across micro-batches (fp32)"] = FP32 * trainable
    elif not o.last_block_resharded and rank.last:
        compute["last block kept unsharded after forward (torchtitan)"] = cb * block
    backward = {"reduce-scatter input (fp32) and the block's unsharded gradients": (FP32 + cb) * block}
    if o.async_tensor_parallel and par.tensor_parallel > 1:
        compute[ASYNC_TP_WORKSPACE] = async_tp_workspace(m, w, par, cb)
    host = 0
    if par.offload_params != "none" or par.offload_optimizer != "none":
        ranks_per_node = min(par.gpus, par.gpus_per_node)
        host = (params + grads + states) * ranks_per_node
        params = grads = states = 0
    per_layer = grads // max(1, rank.layers + 1)
    st = Static(weights={f"sharded parameters ({p.weights}, 1/{n})": params}, optimizer_states=states,
                grads_per_layer=per_layer, grads_other=grads - per_layer * rank.layers, grads_head=per_layer,
                autocast_copy_per_layer=0, autocast_copy_head=0, optimizer_temp=_step_temp(w, shard(wb * trainable)),
                n_layers=rank.layers, backward_buffers=tuple(backward.items()), compute_buffers=tuple(compute.items()))
    return st, host


def async_tp_workspace(m: ModelSpec, w: Workload, par: Parallelism, cb: int) -> int:
    """Async TP's symmetric-memory workspace, the largest any fused collective matmul asks for
    (torch/distributed/_symmetric_memory/__init__.py @2.14.1: get_symm_mem_workspace keeps one per
    group and grows it; the pipelined all-gather needs the local shard, 160-177; the pipelined
    reduce-scatter two chunks of the output, 347-349): 2 x b s h / t in the compute dtype."""
    tokens = w.batch_size * w.seq_len // par.context_parallel
    return 2 * cb * tokens * m.hidden_size // par.tensor_parallel


def _step_temp(w: Workload, sharded_param_bytes: int) -> int:
    """torch.optim's foreach AdamW builds a sqrt of every exp_avg_sq at once (adam.py); on DTensors
    that is the rank's shard."""
    return sharded_param_bytes if w.optimizer in ("adamw", "adafactor") else 0


def torchtitan_op_layers(ctx, m: ModelSpec, layers: list[LayerCost]) -> list[LayerCost]:
    """torchtitan's selective per-op checkpointing (parallelize_llama.py:214-265 @9dec370) saves the
    block input, the outputs of every other matmul (wq, wv, w1, w2), and SDPA's output and
    log-sum-exp; everything else is recomputed in backward."""
    T, cb, h = ctx.tokens, ctx.compute_bytes, m.hidden_size
    saved = {"block input": -(-ctx.residual_bytes * T * h // ctx.sp),
             "wq output": cb * T * m.n_heads * m.head_dim, "wv output": cb * T * m.n_kv_heads * m.head_dim,
             "attention output and log-sum-exp": cb * T * m.n_heads * m.head_dim + FP32 * T * m.n_heads,
             "w1 output": cb * T * m.ffn_size, "w2 output": cb * T * h}
    out = []
    for lc in layers:
        recomputed = max(0, lc.saved_total() - sum(saved.values()))
        out.append(replace(lc, saved=saved, backward_extra=lc.backward_extra + recomputed))
    return out


def _transform(m: ModelSpec, w: Workload, pe: Precision, f: Framework, view: StageView, par: Parallelism,
               o: Fsdp2Options, op_policy: bool):
    """The layers as torchtitan runs them: its per-op checkpointing policy, PyTorch's ring attention."""
    if not op_policy and par.context_parallel == 1:
        return None
    ctx = step_context(m, w, pe, f, view)
    local = local_model(m, par.tensor_parallel)

    def apply(layers: list[LayerCost]) -> list[LayerCost]:
        if op_policy:
            layers = torchtitan_op_layers(ctx, local, layers)
        if par.context_parallel > 1:
            layers = with_torch_ring(layers, ring_buffers(ctx.tokens, par.context_parallel, local, ctx.compute_bytes,
                                                          o.torchtitan_version, o.cp_rotate_method))
        return layers
    return apply


def estimate_fsdp2(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    o: Fsdp2Options = par.options or Fsdp2Options()
    if par.zero_stage not in (0, 3):
        raise InputError("parallelism.zero_stage", "FSDP2 shards parameters, gradients and states (ZeRO-3); for "
                                                   "ZeRO-2-like behaviour set options.reshard_after_forward false")
    if w.mode == "qlora":
        raise InputError("workload.mode", "QLoRA under FSDP2 is not modelled; use recipe hf")
    if o.async_tensor_parallel and par.tensor_parallel > 1 and not o.compile:
        # torchtitan raises "Async TP requires --training.compile" (parallelize_llama.py:54-58 @9dec370;
        # distributed/tensor_parallel.py:20-22 @v0.2.2): inductor's micro-pipeline TP pass does the fusing.
        raise InputError("parallelism.options.async_tensor_parallel", "torchtitan's async TP needs compile: set "
                                                                       "options.compile true")
    pe = Precision(weights=p.compute())                    # activations run in the gathered dtype
    recompute = recompute_mode(par, w.gradient_checkpointing)
    op_policy = recompute == "selective" and o.activation_checkpoint == "torchtitan-op"

    def evaluate(stage: int) -> Estimate:
        rank = rank_params_for(m, par, stage)
        st, host = fsdp_states(m, w, p, par, rank, o)
        view = StageView(tensor_parallel=par.tensor_parallel, sequence_parallel=par.sequence_parallel,
                         context_parallel=par.context_parallel, expert_parallel=par.expert_parallel,
                         recompute="none" if op_policy else recompute,
                         recompute_layers=par.recompute_layers, in_flight=in_flight(par, stage),
                         grads_in_forward=par.gradient_accumulation > 1 or par.pipeline_parallel > 1)
        transform = _transform(m, w, pe, f, view, par, o, op_policy)
        snaps, ctx = training_step(m, w, pe, f, st, rank, view, transform)
        if rank.last:
            snaps = torchtitan_loss(snaps, ctx, local_model(m, par.tensor_parallel).vocab_size,
                                    o.torchtitan_version, o.compile, loss_parallel=par.tensor_parallel > 1)
        return make_estimate(m, w, p, hw, f, ctx, snaps, m.warnings, host_bytes=host, shares=RECIPE_SHARES)
    return most_loaded(par, m, evaluate)
