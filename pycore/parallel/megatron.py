"""Recipe ``megatron``: Megatron-Core's own memory estimate, megatron/training/theoretical_memory_usage.py,
for the most loaded shard (the first pipeline stage, which holds the embedding and the most
micro-batches in flight), at the commit chosen by ``options.formula_version``:

- ``2024``    2bfe9beaae (2024-04-03): norms count 2h each, all divided by TP; no activation figure
              unless sequence parallelism and selective recomputation are both on.
- ``2025-08`` a6c6250f (2025-08-26): adds compute_activation_memory_without_sp (x 1.05, not / TP).
- ``2026-01`` 9ad59065 (2026-01-31): norm_size = 1 for RMSNorm, 2 for LayerNorm.
- ``current`` a7c9e8c4 / d98e8a64: norms replicated (not / TP), experts / (ETP x EP).

Bytes per parameter follow docs/user-guide/features/dist_optimizer.md: bf16 parameters with fp32
main gradients 18, or 6 + 12/d with the distributed optimizer (the row the script hard-codes);
fp16 20 or 4 + 16/d; fp32 16 or 8 + 8/d. Activations can instead follow Korthikanti et al. 2022
(Table 2 per layer, Eq. 6 for the first stage with the interleaving factor).
"""

from __future__ import annotations

from ..errors import InputError
from ..model.params import linears
from ..model.spec import ModelSpec, is_mla, moe_layers
from ..training.result import Estimate
from ..training.workload import Framework, Hardware, Precision, Workload
from .formulas import formula_estimate
from ..model.layout import Parallelism, micro_batches, recompute_mode, stage_layers
from .options import MegatronOptions
from ..model.shard import padded_vocab
from .stages import most_loaded

MIB = 2 ** 20                      # NUM_BYTES_IN_MEGABYTE = 1024 * 1024
WITHOUT_SP_OVERHEAD = 1.05         # compute_activation_memory_without_sp: "overhead_factor = 1.05"
# dist_optimizer.md: (parameter, gradient, optimizer-state) bytes per parameter; the distributed
# optimizer shards the last over d. bf16: bf16 params, fp32 main grads, fp32 main params + Adam;
# fp16: fp16 params and grads, fp32 main params, a fp32 grad copy and Adam; fp32: no main copy.
BYTES_PER_PARAMETER = {"bf16": (2, 4, 12), "fp16": (2, 2, 16), "fp32": (4, 4, 8)}


def dtype_row(p: Precision) -> str:
    return p.compute() if p.compute() in ("fp16", "fp32") else "bf16"


def bytes_per_parameter(p: Precision, distributed: bool, d: int) -> float:
    weight, grad, state = BYTES_PER_PARAMETER[dtype_row(p)]
    return weight + grad + (state / d if distributed else state)


# --use-precision-aware-optimizer (megatron/training/arguments.py @d98e8a64, lines 3667-3686): the
# main gradients, main parameters and Adam moments may be kept in other dtypes than fp32.
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


def planning_bytes(p: Precision, o: MegatronOptions) -> tuple[int, int, int]:
    """(parameter, main-gradient, optimizer-state) bytes a parameter for the recipe's parts: the
    dist_optimizer.md row, or with bf16 the precision-aware optimizer's dtypes (18 bytes by default:
    2 + 4 + (4 + 4 + 4); with bf16 main gradients and bf16 moments 2 + 2 + (4 + 2 + 2) = 12)."""
    row = dtype_row(p)
    custom = (o.main_grads_dtype, o.main_params_dtype, o.exp_avg_dtype, o.exp_avg_sq_dtype) != ("fp32",) * 4
    if not custom:
        return BYTES_PER_PARAMETER[row]
    if row != "bf16":
        raise InputError("parallelism.options.main_grads_dtype", "the precision-aware optimizer's dtypes apply to "
                                                                 "bf16 training (precision.autocast bf16)")
    state = DTYPE_BYTES[o.main_params_dtype] + DTYPE_BYTES[o.exp_avg_dtype] + DTYPE_BYTES[o.exp_avg_sq_dtype]
    return 2, DTYPE_BYTES[o.main_grads_dtype], state


def _norm_size(m: ModelSpec, version: str) -> int:
    if version in ("2024", "2025-08"):
        return 2                    # every norm counted with a bias
    return 1 if m.norm in ("rmsnorm", "gemma_rmsnorm") else 2


def block_parameters(m: ModelSpec, version: str, vocab: int) -> dict:
    """The model's parameters in theoretical_memory_usage.py's groups: tensor-sharded (the lump
    of every layer before ``current``), replicated (norms, routers), routed experts and the embedding."""
    h, L, a = m.hidden_size, m.n_layers, m.n_heads
    g = m.n_kv_heads
    ratio = m.head_dim * a / h                          # query_projection_to_hidden_size_ratio
    gated = 1.5 if m.gated_mlp else 1.0
    ns = _norm_size(m, version)
    embedding = h * vocab
    n_moe = moe_layers(m)
    n_dense = L - n_moe
    attention = 2 * h * h * ((1 + g / a) * ratio)
    if is_mla(m):
        # MLA: theoretical_memory_usage.py's multi_latent_attention branch (d98e8a64, lines 62-80)
        # counts its down/up projections and their norms instead: the same linears as the model's.
        attention = sum(lin.count() for lin in linears(m) if lin.group == "attention") / m.n_layers
        attention += m.q_lora_rank + m.kv_lora_rank
    if version in ("2024", "2025-08", "2026-01"):
        experts = m.n_experts or 1
        ffn = m.expert_ffn_size if m.n_experts else m.ffn_size
        layers = 2 * L * h * h * ((1 + g / a) * ratio + (ffn / h) * experts * gated + ns / h + ns / (2 * L * h))
        return {"tp_sharded": layers, "replicated": 0.0, "expert": 0.0, "embedding": embedding}
    dense_mlp = 2 * h * m.ffn_size * gated
    shared = 2 * h * m.shared_expert_ffn_size * m.n_shared_experts * gated
    routed = 2 * h * m.expert_ffn_size * m.n_experts * gated
    router = h * m.n_experts
    return {"tp_sharded": (attention + dense_mlp) * n_dense + (attention + shared) * n_moe,
            "replicated": 2 * h * ns * n_dense + (2 * h * ns + router) * n_moe + ns * h,
            "expert": routed * n_moe, "embedding": embedding}


def expert_tensor(par: Parallelism) -> int:
    """ETP: --expert-tensor-parallel-size, which Megatron sets to the tensor degree when not given
    (megatron/training/arguments.py @d98e8a64, 587-588)."""
    return par.expert_tensor_parallel or par.tensor_parallel


def shard_parameters(m: ModelSpec, par: Parallelism, version: str, vocab: int) -> dict:
    """Parameters on the most loaded shard and on the others, as theoretical_memory_usage.py counts
    them (every stage L/p layers; the first holds the embedding, the output layer is not counted)."""
    blocks = block_parameters(m, version, vocab)
    t, p, e = par.tensor_parallel, par.pipeline_parallel, par.expert_parallel * expert_tensor(par)
    most = (blocks["tp_sharded"] / p + blocks["embedding"]) / t + blocks["replicated"] / p
    if not m.tied_embeddings and p == 1:
        most += blocks["embedding"] / t
    other = blocks["tp_sharded"] / (p * t) + blocks["replicated"] / p
    return {"most_loaded": most, "other": other, "expert": blocks["expert"] / (p * e)}


def stage_parameters(m: ModelSpec, par: Parallelism, blocks: dict, layers: int, first: bool, last: bool) -> dict:
    """The same groups on one stage of ``layers`` layers: the embedding on the first, the output
    layer on the last (untied, or the copy Megatron keeps of a tied one when p > 1). Equal to the
    script's most loaded shard for the first stage of an even split."""
    t, p, e, L = par.tensor_parallel, par.pipeline_parallel, par.expert_parallel * expert_tensor(par), m.n_layers
    share = layers / L
    vocab = blocks["embedding"] * (first + (last and (p > 1 or not m.tied_embeddings)))
    return {"dense": (blocks["tp_sharded"] * share + vocab) / t + blocks["replicated"] * share,
            "expert": blocks["expert"] * share / e}


def theoretical_activations(m: ModelSpec, w: Workload, par: Parallelism, version: str, vocab: int,
                            recompute: str) -> float | None:
    """compute_activation_memory (SP and selective recomputation) or, from a6c6250f on,
    compute_activation_memory_without_sp; None where the script prints no activation figure."""
    s, b, h, L = w.seq_len, w.batch_size, m.hidden_size, m.n_layers
    t, p = par.tensor_parallel, par.pipeline_parallel
    v = par.virtual_stages if par.virtual_stages > 1 else None
    nmb = micro_batches(par)
    with_sp = par.sequence_parallel and recompute == "selective"
    if not with_sp and version == "2024":
        return None
    per_layer = s * b * h * (18 + 4 * m.ffn_size / h) if with_sp else s * b * h * (10 + 24 / t)
    act = per_layer * L + 8 * s * b * p + s * b * h * p    # input to embedding; its dropout (p in flight)
    if v is not None:
        act *= 1 + (p - 1) / (p * v)                       # interleaved_schedule_memory_penalty
    elif p > 1:
        act *= min(1, nmb / p)
    if with_sp:
        if p == 1:
            act += s * b * h * 4 * (1 + vocab / h)         # inputs to the output layer and the loss
        return act / t
    if p == 1:
        act += (s * b * vocab / t + s * b * h) * 2         # logits and the final norm's output
    return act * WITHOUT_SP_OVERHEAD


def inflight_fraction(par: Parallelism, stage: int) -> float:
    """Whole-stage micro-batches of activations stage ``stage`` holds (1F1B: min(p - r, m);
    interleaved: its chunk-micro-batches / v, which is p (1 + (p - 1)/(p v)) on the first stage,
    the script's interleaved_schedule_memory_penalty)."""
    p, v, nmb = par.pipeline_parallel, par.virtual_stages, micro_batches(par)
    if p == 1:
        return 1.0
    if v == 1:
        return float(min(p - stage, nmb))
    return min((p - stage - 1) * 2 + (v - 1) * p + 1, nmb * v) / v


def stage_activations(m: ModelSpec, w: Workload, par: Parallelism, version: str, vocab: int, recompute: str,
                      stage: int, layers: int) -> float | None:
    """One stage's activations in the script's terms (theoretical_activations), for any split and
    recomputation. The script assumes the stage stores every layer (selective recomputation at
    most); under full recomputation (--recompute-granularity full, method uniform, recompute_layers
    layers a block) a stage keeps each block's input, 2sbh bytes (Korthikanti et al. 2022, Table 2;
    / t with sequence parallelism) per micro-batch in flight, and recomputes one block at a time in
    backward. The last stage adds the output layer's logits and the final norm's output for its one
    micro-batch, as the script does for p = 1. Context parallelism gives each rank s / c of the
    sequence (the script counts the whole sequence)."""
    s, b, h, t, p = (w.seq_len // par.context_parallel, w.batch_size, m.hidden_size, par.tensor_parallel,
                     par.pipeline_parallel)
    with_sp = par.sequence_parallel and recompute == "selective"
    if not with_sp and version == "2024":
        return None
    per_layer = s * b * h * (18 + 4 * m.ffn_size / h) if with_sp else s * b * h * (10 + 24 / t)
    flight = inflight_fraction(par, stage)
    stored = per_layer * layers * flight
    if recompute == "full":
        block = max(1, min(par.recompute_layers, layers))
        stored = 2 * s * b * h / (t if par.sequence_parallel else 1) * -(-layers // block) * flight
        stored += per_layer * block                          # one block recomputed in backward
    act = stored
    if stage == 0:
        act += (8 * s * b + s * b * h) * flight              # input to embedding; its dropout
    if stage == p - 1:
        act += s * b * h * 4 * (1 + vocab / h) if with_sp else (s * b * vocab / t + s * b * h) * 2
    return act / t if with_sp else act * WITHOUT_SP_OVERHEAD


def korthikanti_per_layer(m: ModelSpec, w: Workload, par: Parallelism, recompute: str, scores: bool) -> float:
    """Korthikanti et al. 2022, Table 2: bytes of activations per transformer layer (16-bit, GPT
    layer with 4h MLP and dropout): sbh(10 + 24/t + 5as/(ht)) with tensor parallelism, the norm and
    dropout part (10) split by t under sequence parallelism, the 5as/h score term gone under
    selective recomputation, and 2sbh under full recomputation."""
    s, b, h, a, t = w.seq_len, w.batch_size, m.hidden_size, m.n_heads, par.tensor_parallel
    sp = par.sequence_parallel
    if recompute == "full":
        return 2 * s * b * h / (t if sp else 1)
    linear = s * b * h * (34 / t if sp else 10 + 24 / t)
    if recompute == "selective" or not scores:
        return linear
    return linear + 5 * a * s * s * b / t


def korthikanti_first_stage(m: ModelSpec, w: Workload, par: Parallelism, per_layer: float, vocab: int) -> tuple:
    """Eq. 6: the first stage holds L layers' worth (p micro-batches of L/p layers), times
    1 + (p - 1)/(p m) when interleaved; and the embedding/output terms s·b·h·p/t + [p = 1]
    4·s·b·h/t·(1 + V/h)."""
    s, b, h, L, t, p = w.seq_len, w.batch_size, m.hidden_size, m.n_layers, par.tensor_parallel, par.pipeline_parallel
    stage = per_layer * L
    if par.virtual_stages > 1:
        stage *= 1 + (p - 1) / (p * par.virtual_stages)
    elif p > 1:
        stage *= min(1, micro_batches(par) / p)
    extra = s * b * h * p / t + (4 * s * b * h / t * (1 + vocab / h) if p == 1 else 0)
    return stage, extra


def estimate_megatron(m: ModelSpec, w: Workload, p: Precision, hw: Hardware, f: Framework, par: Parallelism) -> Estimate:
    """The most loaded stage's parts (any split, any recomputation), with the script's own printout
    (for the even split it assumes) in the report."""
    o: MegatronOptions = par.options or MegatronOptions()
    if par.zero_stage > 1:
        raise InputError("parallelism.zero_stage", "Megatron's distributed optimizer shards optimizer states "
                                                   "(zero_stage 1); it has no stage 2 or 3")
    if par.offload_params != "none" or par.offload_optimizer != "none":
        raise InputError("parallelism.offload_optimizer", "Megatron's memory estimate has no offload")
    recompute = recompute_mode(par, w.gradient_checkpointing)
    vocab = padded_vocab(m.vocab_size, par.tensor_parallel, o.make_vocab_size_divisible_by)
    d = par.data_parallel * par.expert_parallel                    # Megatron's data_parallel_size
    # expert_data_parallel_size = world_size // (ETP x EP x PP) (theoretical_memory_usage.py @d98e8a64,
    # 205-212), with world = dp x tp x cp x ep x pp here
    d_expert = par.data_parallel * par.tensor_parallel * par.context_parallel // expert_tensor(par)
    distributed = o.distributed_optimizer or par.zero_stage >= 1
    report = _printout(m, w, p, par, o, vocab, recompute, d, d_expert, distributed)
    blocks = block_parameters(m, o.formula_version, vocab)
    split = stage_layers(par, m.n_layers)
    row = dtype_row(p)
    weight_b, grad_b, state_b = planning_bytes(p, o)

    def evaluate(stage: int) -> Estimate:
        sp = stage_parameters(m, par, blocks, split[stage], stage == 0, stage == par.pipeline_parallel - 1)
        n = sp["dense"] + sp["expert"]
        states = state_b * (sp["dense"] / (d if distributed else 1) + sp["expert"] / (d_expert if distributed else 1))
        parts = [("weights", {f"model parameters ({row})": int(weight_b * n)}),
                 ("gradients", {f"main gradients ({'fp32' if grad_b == 4 else 'bf16'})": int(grad_b * n)}),
                 ("optimizer states", {"main parameters and Adam states" + (" (distributed optimizer)" if distributed
                                       else ""): int(states)})]
        if o.activation_formula == "theoretical":
            act = stage_activations(m, w, par, o.formula_version, vocab, recompute, stage, split[stage])
        else:
            act = _korthikanti_stage(m, w, par, recompute, o, vocab, stage, split[stage])
        not_estimated = ("temporaries",) if act is not None else ("activations", "temporaries")
        if act is not None:
            parts.append(("activations", {f"activations ({o.activation_formula} formula, recompute {recompute})":
                                          int(act)}))
        return formula_estimate(m, w, p, hw, f, par, tuple(parts), report, not_estimated,
                                moment=f"pipeline stage {stage} (theoretical_memory_usage.py terms)")
    return most_loaded(par, m, evaluate, split=split)


def _korthikanti_stage(m, w, par, recompute, o: MegatronOptions, vocab: int, stage: int, layers: int) -> float:
    per_layer = korthikanti_per_layer(m, w, par, recompute, o.attention_scores_saved) / par.context_parallel
    s, b, h, t, p = (w.seq_len // par.context_parallel, w.batch_size, m.hidden_size, par.tensor_parallel,
                     par.pipeline_parallel)
    act = per_layer * layers * inflight_fraction(par, stage)
    if stage == 0:
        act += s * b * h * p / t
    if stage == p - 1:
        act += 4 * s * b * h / t * (1 + vocab / h)
    return act


def _printout(m, w, p: Precision, par, o: MegatronOptions, vocab: int, recompute: str, d: int, d_expert: int,
              distributed: bool) -> dict:
    """What theoretical_memory_usage.py prints for its even split (and Korthikanti's terms): the
    report the published references are checked against."""
    params = shard_parameters(m, par, o.formula_version, vocab)
    bpp = bytes_per_parameter(p, distributed, d)
    weight_and_optimizer = params["most_loaded"] * bpp + params["expert"] * bytes_per_parameter(p, distributed, d_expert)
    theoretical = theoretical_activations(m, w, par, o.formula_version, vocab, recompute)
    per_layer = korthikanti_per_layer(m, w, par, recompute, o.attention_scores_saved)
    first_stage, extra = korthikanti_first_stage(m, w, par, per_layer, vocab)
    report = {"formula_version": o.formula_version, "padded_vocab_size": vocab,
              "most_loaded_shard_parameters": params["most_loaded"], "other_shards_parameters": params["other"],
              "expert_parameters": params["expert"], "bytes_per_parameter": bpp,
              "weight_and_optimizer_bytes": weight_and_optimizer,
              "weight_and_optimizer_mb": round(weight_and_optimizer / MIB, 2),
              "activation_bytes": theoretical, "activation_mb": None if theoretical is None else round(theoretical / MIB, 2),
              "korthikanti_per_layer_bytes": per_layer, "korthikanti_first_stage_bytes": first_stage,
              "korthikanti_extra_bytes": extra}
    if theoretical is not None:
        report["total_mb"] = round((weight_and_optimizer + theoretical) / MIB, 2)
    return report
