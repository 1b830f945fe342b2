"""One GPU's training step: the activations of its share of the model, its model states, and the
moments of the step (the whole model on one GPU, or one rank of a layout)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..model.params import linears
from ..model.spec import ModelSpec
from ..model.shard import RankParams, local_model, rank_params
from .workload import Framework, Precision, Workload, nf4_base
from ..model.spec import is_classifier
from ..versions import holds, version_tuple
from .adapter_step import with_peft_terms
from .kernels import fused_layer, loss_head
from .offload import offload_layers
from .adapters import plan_for
from .context import StepContext, make_context
from .layers import head_cost, layer_costs
from .static import largest_linear
from .timeline import Snapshot, Static, StepShape, training_snapshots
from .trace import training_trace
from .vision import with_vision_training


@dataclass(frozen=True)
class StageView:
    """What one GPU runs of a training step (the defaults: the whole model on one GPU)."""

    tensor_parallel: int = 1
    sequence_parallel: bool = False
    context_parallel: int = 1
    expert_parallel: int = 1
    recompute: str = "none"          # none | selective | full
    recompute_layers: int = 1        # full: layers per checkpointed block
    in_flight: int = 1               # micro-batches whose activations are held at once
    grads_in_forward: bool = False   # gradient accumulation keeps gradients through forward


def step_context(m: ModelSpec, w: Workload, p: Precision, f: Framework, view: StageView = StageView()) -> StepContext:
    """The facts of the step for the rank's local model: its heads and widths, and its share of the sequence."""
    local = local_model(m, view.tensor_parallel)
    wl = replace(w, seq_len=w.seq_len // view.context_parallel, gradient_checkpointing=view.recompute == "full")
    if w.mode == "peft" and plan_for(m, w.peft_config).virtual_tokens:
        # prompt tuning joins its virtual tokens to every sequence (peft_model.py PeftModelForCausalLM.forward)
        wl = replace(wl, seq_len=wl.seq_len + plan_for(m, w.peft_config).virtual_tokens)
    sp = view.tensor_parallel if view.sequence_parallel else 1
    return make_context(local, wl, p, f, sp=sp, selective=view.recompute == "selective", cp=view.context_parallel,
                        ep=view.expert_parallel)


def training_step(m: ModelSpec, w: Workload, p: Precision, f: Framework, st: Static,
                  rank: RankParams | None = None, view: StageView = StageView(),
                  transform=None) -> tuple[list[Snapshot], StepContext]:
    """The moments of one GPU's step, given its model states ``st`` (from a recipe); ``transform``
    lets a recipe change what each layer keeps (a framework's own checkpointing policy)."""
    ctx, layers, head, shape = step_parts(m, w, p, f, st, rank, view, transform)
    snaps = with_vision_training(training_snapshots(st, layers, head, shape), m, w, p, f, shape.checkpointing,
                                 view.grads_in_forward)     # a multimodal model's images (training/vision.py)
    return snaps, ctx


def traced_training_step(m: ModelSpec, w: Workload, p: Precision, f: Framework, st: Static,
                         rank: RankParams | None = None, view: StageView = StageView()) -> tuple:
    """The moments of the step and the allocations and frees of its largest tensors (trace.py)."""
    ctx, layers, head, shape = step_parts(m, w, p, f, st, rank, view)
    sizes = layer_weight_sizes(local_model(m, view.tensor_parallel))
    trace = training_trace(st, layers, head, shape, keeps_gradients=f.keeps_gradients(), param_sizes=sizes)
    return training_snapshots(st, layers, head, shape), ctx, trace


def step_parts(m: ModelSpec, w: Workload, p: Precision, f: Framework, st: Static,
               rank: RankParams | None = None, view: StageView = StageView(), transform=None) -> tuple:
    """The step's context, per-layer costs, head and shape."""
    rank = rank or rank_params(m)
    ctx = step_context(m, w, p, f, view)
    local = local_model(m, view.tensor_parallel)
    layers = layer_costs(ctx, local, rank.dense_layers, rank.moe_layers)
    if w.liger_kernels or (w.torch_compile and holds("compile-recomputes-pointwise", version_tuple(
            f.torch, "framework.torch", "a torch version", "2.11"))):
        layers = [fused_layer(lc, ctx, local) for lc in layers]
    if nf4_base(w):
        # bitsandbytes MatMul4Bit dequantises the whole weight to the compute dtype for each call.
        extra = largest_linear(local) * ctx.compute_bytes
        layers = [replace(lc, forward_extra=lc.forward_extra + extra, backward_extra=lc.backward_extra + extra)
                  for lc in layers]
    if w.mode == "peft":
        layers = with_peft_terms(layers, plan_for(m, w.peft_config), ctx, local)
    if transform is not None:
        layers = transform(layers)
    layers = offload_layers(layers, w.activation_offload, ctx.checkpointing)
    head = head_cost(ctx, local, f.loss_upcast_fp32) if rank.last else None
    if head is not None and not is_classifier(local):
        head = loss_head(head, w.loss_kernel, ctx, local, head_trains=w.mode == "full")
    if head is not None and w.packing == "sdpa-mask":
        # transformers' masking_utils builds a bool b x 1 x s x s block-diagonal mask for packed rows; every
        # layer's SDPA call keeps the same tensor
        head = replace(head, saved={**head.saved, "packed-sequence attention mask": ctx.batch * ctx.seq * ctx.seq})
    prefix = plan_for(m, w.peft_config).prefix_tokens if w.mode == "peft" else 0
    if head is not None and prefix and ctx.kernel != "eager":
        # prefix tuning: the bool b x 1 x s x (n + s) mask every layer's SDPA call keeps
        head = replace(head, saved={**head.saved, "prefix attention mask": ctx.batch * ctx.seq * (ctx.seq + prefix)})
    shape = StepShape(checkpointing=view.recompute == "full", block=view.recompute_layers, in_flight=view.in_flight,
                      grads_in_forward=view.grads_in_forward, head=rank.last)
    return ctx, layers, head, shape


def layer_weight_sizes(m: ModelSpec) -> tuple:
    """The elements of each weight of one layer (stacked expert weights are one parameter each)."""
    return tuple(lin.in_features * lin.out_features * lin.copies for lin in linears(m) if lin.group != "head")
