"""Recipes that are published formulas: the ZeRO paper's accounting, DeepSpeed's own
estimate_zero2/3_model_states_mem_needs, and the Ultra-Scale Playbook's figures.

They answer model-state questions from a parameter count alone; where the source gives an
activation term (activation checkpoints, the Playbook's per-layer formulas) and the model's
dimensions are known, it is added. What a formula does not cover is listed in ``not_estimated``.
"""

from __future__ import annotations

from ..errors import InputError
from ..model.params import linears, total_params
from ..model.spec import ModelSize, ModelSpec
from ..training.result import Estimate, param_summary
from ..training.timeline import Snapshot
from ..training.workload import Framework, Hardware, Precision, Workload
from ..model.layout import Parallelism, recompute_mode
from .options import DeepSpeedEstimatorOptions, PlaybookOptions, ZeroPaperOptions

# Rajbhandari et al. 2020, section 3.1: mixed-precision Adam keeps fp16 parameters and gradients
# (2 + 2 bytes) and K = 12 bytes of fp32 master weights, momentum and variance per parameter.
ZERO_PAPER_K = 12
# DeepSpeed's estimators (deepspeed/runtime/zero/stage_1_and_2.py and stage3.py @38327e07):
# the largest layer costs 4 bytes a parameter (a 16-bit parameter and its 16-bit gradient).
DS_LARGEST_LAYER_BYTES = 4


def _size(m) -> tuple[int, int, int]:
    """(parameters, hidden size, layers) of a model given by dimensions or by its size."""
    if isinstance(m, ModelSize):
        return m.parameters, m.hidden_size, m.n_layers
    return total_params(m), m.hidden_size, m.n_layers


def formula_estimate(m, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism, parts: tuple,
                     report: dict, not_estimated: tuple, host_bytes: int = 0, moment: str = "") -> Estimate:
    """An estimate from a formula's named terms: one moment, no allocator model."""
    snap = Snapshot("step", moment or f"{par.recipe} formula", parts)
    total = snap.total()
    params = param_summary(m, w) if isinstance(m, ModelSpec) else {"total": m.parameters, "trainable": m.parameters,
                                                                    "by_component": {}}
    return Estimate(model=m, workload=w, precision=p, hardware=hw, context=None, snapshots=(snap,), peak=snap,
                    peak_allocated_bytes=total, reserved_bytes=total, device_total_bytes=total + f.context_bytes(),
                    params=params, warnings=tuple(m.warnings), report=report, host_bytes=host_bytes,
                    not_estimated=("allocator reserve",) + not_estimated,
                    layout=_layout(par, "every rank holds the same"))


_DEGREE_FIELDS = (("tensor_parallel", "tensor"), ("pipeline_parallel", "pipeline"), ("virtual_stages", "virtual"),
                  ("context_parallel", "context"), ("expert_parallel", "expert"))


def refuse_degrees(par: Parallelism, names: tuple, why: str) -> None:
    """An InputError naming the first of ``names`` (Parallelism fields) set above 1 (or on)."""
    for field_name in names:
        value = getattr(par, field_name)
        if value is True or (not isinstance(value, bool) and value > 1):
            raise InputError(f"parallelism.{field_name}", f"recipe {par.recipe}: {why}")


def _layout(par: Parallelism, description: str) -> dict:
    return {"recipe": par.recipe, "gpus": par.gpus, "zero_stage": par.zero_stage,
            "degrees": {"data": par.data_parallel, "tensor": par.tensor_parallel, "pipeline": par.pipeline_parallel,
                        "virtual": par.virtual_stages, "context": par.context_parallel, "expert": par.expert_parallel},
            "most_loaded": {"stage": 0, "tensor_rank": 0, "description": description}, "stages": []}


def estimate_zero_paper(m, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    """Rajbhandari et al. 2020, section 5 and Figure 1: per device, P_os = 4Ψ + KΨ/N_d, P_os+g =
    2Ψ + (2 + K)Ψ/N_d, P_os+g+p = (4 + K)Ψ/N_d; model parallelism divides Ψ first (Table 2)."""
    opt: ZeroPaperOptions = par.options or ZeroPaperOptions()
    refuse_degrees(par, ("virtual_stages", "expert_parallel"), "the ZeRO paper models neither interleaved "
                                                               "pipelines nor experts")
    P, h, L = _size(m)
    mp = par.tensor_parallel * par.pipeline_parallel
    psi = -(-P // mp)
    n = par.dense_shard_group
    stage = par.zero_stage
    shard = lambda b, s: -(-b // n) if stage >= s else b        # noqa: E731
    weights, grads, states = shard(2 * psi, 3), shard(2 * psi, 2), shard(opt.optimizer_bytes * psi, 1)
    parts = [("weights", {"fp16 parameters": weights}), ("gradients", {"fp16 gradients": grads}),
             ("optimizer states", {f"fp32 master weights, momentum and variance (K={opt.optimizer_bytes})": states})]
    not_estimated = ("activations", "temporaries")
    report = {"psi": psi, "model_states_bytes": weights + grads + states}
    if recompute_mode(par, w.gradient_checkpointing) == "full" and h and L:
        # Section 6.1: activation checkpoints are batch x seq x hidden x layers x 2 bytes, replicated
        # across the model-parallel ranks unless Pa partitions them. The layers are the stage's
        # (1F1B keeps p micro-batches of L/p layers on the first stage: L in all); context
        # parallelism splits the sequence, sequence parallelism splits a checkpoint by t.
        # With recompute_layers k a checkpoint is kept per block of k layers.
        split = mp if opt.partition_activations else (par.tensor_parallel if par.sequence_parallel else 1)
        blocks = -(-L // max(1, par.recompute_layers))
        ckpt = w.batch_size * (w.seq_len // par.context_parallel) * h * blocks * 2 // split
        parts.append(("activations", {"activation checkpoints (one per layer)": ckpt}))
        report["activation_checkpoint_bytes"] = ckpt
        not_estimated = ("temporaries", "recomputed layer activations")
    return formula_estimate(m, w, p, hw, f, par, tuple(parts), report, not_estimated)


def largest_module_params(m: ModelSpec) -> int:
    """DeepSpeed's largest layer: the most parameters any single module holds directly
    (model.modules() with recurse=False): the embedding, a linear, or a stack of experts."""
    sizes = [m.vocab_size * m.hidden_size]
    for lin in linears(m):
        per = lin.in_features * lin.out_features + (lin.out_features if lin.bias else 0)
        sizes.append(per * lin.copies)
    if m.n_experts:                # transformers 5 keeps a layer's experts as stacked tensors of one module
        sizes.append(sum(lin.in_features * lin.out_features * lin.copies for lin in linears(m) if lin.group == "experts"))
    return max(sizes)


def estimate_deepspeed_estimator(m, w: Workload, p: Precision, hw: Hardware, f: Framework,
                                 par: Parallelism) -> Estimate:
    """What DeepSpeed's estimate_zero2_model_states_mem_needs / estimate_zero3_model_states_mem_needs
    print (stage_1_and_2.py:2430-2447, stage3.py:3008-3044 @38327e07); GPU bytes per GPU and CPU bytes
    per node, before the int() and the division by 2**30 of their printout."""
    o: DeepSpeedEstimatorOptions = par.options or DeepSpeedEstimatorOptions()
    if par.zero_stage not in (2, 3):
        raise InputError("parallelism.zero_stage", "DeepSpeed's estimators exist for ZeRO stages 2 and 3")
    refuse_degrees(par, ("tensor_parallel", "pipeline_parallel", "virtual_stages", "context_parallel",
                         "expert_parallel", "sequence_parallel"),
                   "estimate_zero2/3_model_states_mem_needs take data-parallel GPUs only")
    P = m.parameters if isinstance(m, ModelSize) else total_params(m)
    largest = m.largest_layer_parameters if isinstance(m, ModelSize) else largest_module_params(m)
    total_gpus = par.gpus
    per_node = min(par.gpus_per_node, total_gpus)
    nodes = -(-total_gpus // per_node)
    fac = o.additional_buffer_factor
    offload_opt, offload_params = par.offload_optimizer != "none", par.offload_params != "none"
    if par.zero_stage == 2:
        if offload_opt:
            gpu, cpu = 2 * P, P * max(4 * total_gpus, 16) * fac
        else:
            gpu = (4 * P + int(16 * P / total_gpus)) if o.version == "before-pr5099" else 2 * P + int(18 * P / total_gpus)
            cpu = P * 4 * per_node * fac
        report_parts = {"16-bit parameters and gradients (estimator)": gpu}
    else:
        if largest == 0:
            raise InputError("model.largest_layer_parameters", "the ZeRO-3 estimator needs the largest layer's "
                                                               "parameter count")
        llm = DS_LARGEST_LAYER_BYTES * largest
        gf = 1 / nodes
        if offload_opt and offload_params:
            gpu = llm
            cpu = P * 18 * gf * fac if o.zero_init else P * max(4 * per_node, 18 * gf) * fac
        elif offload_opt:
            gpu = llm + int(2 * P / total_gpus)
            cpu = P * 16 * gf * fac if o.zero_init else P * max(4 * per_node, 16 * gf) * fac
        else:
            gpu = llm + int(18 * P / total_gpus)
            cpu = largest * 4 * per_node * fac if o.zero_init else P * 4 * per_node * fac
        report_parts = {"largest layer (16-bit parameters and gradients)": llm,
                        "sharded model states (estimator)": int(gpu) - llm}
    gpu, cpu = int(gpu), int(cpu)
    report = {"gpu_bytes": gpu, "cpu_bytes": cpu, "total_params": P, "largest_layer_params": largest,
              "num_gpus_per_node": per_node, "num_nodes": nodes}
    return formula_estimate(m, w, p, hw, f, par, (("weights", report_parts),), report,
                            ("activations", "temporaries", "framework buffers"), host_bytes=cpu,
                            moment=f"estimate_zero{par.zero_stage}_model_states_mem_needs")


def estimate_playbook(m, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    """The Ultra-Scale Playbook's memory figures (nanotron/ultrascale-playbook assets/data/benchmarks,
    tp_sp_memoryusage and cp_8Bmemoryusage): parameters and gradients 2 bytes each and optimizer
    states 8 bytes per parameter (1:1:4), split by the TP and PP degrees; ZeRO (the Playbook's
    section "ZeRO") divides the optimizer states (stage 1), the gradients too (2) and the
    parameters too (3) by the data-parallel ranks (dp x cp). Activations per GPU: 34·s·b·h·L/t with
    sequence parallelism, else s·b·h·L·(10 + 24/t), the sequence split by c; under full
    recomputation each block of recompute_layers layers keeps its input, 2·s·b·h (/ t with SP), and
    one block is recomputed at a time. With 1F1B the first stage holds p
    micro-batches of L/p layers: L layers' worth, so PP leaves the activations as they are. The
    Playbook's text says 16 bytes a parameter; its figures use these."""
    o: PlaybookOptions = par.options or PlaybookOptions()
    refuse_degrees(par, ("virtual_stages", "expert_parallel"), "the Playbook's figures cover neither "
                                                               "interleaved stages nor experts")
    P, h, L = _size(m)
    t, c, pp = par.tensor_parallel, par.context_parallel, par.pipeline_parallel
    psi = P / (t * pp)
    n = par.data_parallel * c
    z = par.zero_stage
    params, grads, opt = (2 * psi / (n if z >= 3 else 1), 2 * psi / (n if z >= 2 else 1),
                          o.optimizer_bytes * psi / (n if z >= 1 else 1))
    parts = [("weights", {"parameters (bf16)": int(params)}), ("gradients", {"gradients (bf16)": int(grads)}),
             ("optimizer states", {"optimizer states": int(opt)})]
    report = {"params_bytes": int(params), "grads_bytes": int(grads), "optimizer_bytes": int(opt)}
    not_estimated = ("temporaries", "logits and loss")
    if h and L:
        s, b = w.seq_len / c, w.batch_size
        per_layer = 34 * s * b * h / t if par.sequence_parallel else s * b * h * (10 + 24 / t)
        if recompute_mode(par, w.gradient_checkpointing) == "full":
            # each block of k layers keeps its input; one block is recomputed at a time in backward
            k = max(1, min(par.recompute_layers, L))
            act = 2 * s * b * h * -(-L // k) / (t if par.sequence_parallel else 1) + per_layer * k
        else:
            act = per_layer * L
        parts.append(("activations", {"activations (Playbook formula)": int(act)}))
        report["activations_bytes"] = int(act)
    else:
        not_estimated = ("activations",) + not_estimated
    return formula_estimate(m, w, p, hw, f, par, tuple(parts), report, not_estimated)
