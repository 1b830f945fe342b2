"""Pipeline stages: which to evaluate, how many micro-batches each holds, and the summary of a layout.

Megatron's 1F1B schedule (core/pipeline_parallel/schedules.py @d98e8a64, get_pp_rank_microbatches):
stage r runs p - r - 1 warm-up forwards before its first backward, so it holds min(p - r, m)
micro-batches of activations; interleaved with v chunks, stage 0 holds L(1 + (p - 1)/(p v))
layers' worth (Narayanan et al. 2021; Korthikanti et al. 2022, section 4.2.3).
"""

from __future__ import annotations

from dataclasses import replace

from ..model.spec import ModelSpec, dense_layers_in
from ..model.layout import Parallelism, balanced_split, micro_batches, stage_layers  # noqa: F401 (re-exported)


def in_flight(par: Parallelism, stage: int) -> int:
    """Micro-batches whose activations stage ``stage`` holds at its peak (1F1B). Interleaving is
    counted in chunk-micro-batches of L/(p v) layers, returned as whole-stage micro-batches rounded up."""
    p, m = par.pipeline_parallel, micro_batches(par)
    if p == 1:
        return 1
    if par.virtual_stages == 1:
        return min(p - stage, m)
    v = par.virtual_stages
    chunks = min((p - stage - 1) * 2 + (v - 1) * p + 1, m * v)
    return -(-chunks // v)


def megatron_split_flags(split: tuple[int, ...], virtual: int = 1) -> dict:
    """Megatron's arguments for a split of p x v chunks in model order: the first and last counts
    when the middle chunks are even and nothing is interleaved (the flags count a pipeline rank's
    layers over all its chunks, transformer_block.py get_num_layers_to_build @d98e8a64), else the
    layout string (E embedding, t a transformer layer, L the loss, | between chunks; chunk i runs on
    rank i % p), which sets the interleaving itself."""
    middle = set(split[1:-1])
    if len(middle) <= 1 and virtual == 1:
        return {"--decoder-first-pipeline-num-layers": split[0], "--decoder-last-pipeline-num-layers": split[-1]}
    chunks = ["t" * n for n in split]
    return {"--pipeline-model-parallel-layout": "E" + "|".join(chunks) + "L"}


def candidate_stages(par: Parallelism) -> list[int]:
    """Stages that can be the most loaded: every stage (most_loaded keeps, of stages with the same
    layers, the earliest; with an even split that leaves the first and the last)."""
    p = par.pipeline_parallel
    if p == 1:
        return [0]
    return list(range(p))


def most_loaded(par: Parallelism, m: ModelSpec, evaluate, stages=None, split=None):
    """Evaluate ``evaluate(stage)`` for the candidate stages and return the most loaded one's
    estimate, with the layout summary attached. Of the middle stages of an uneven split only the
    earliest of each layer count (and dense/MoE mix) is evaluated: it has the most micro-batches in
    flight and the same parameters as the later ones (the work stays bounded for p up to L)."""
    stages = _distinct_stages(par, m, stages if stages is not None else candidate_stages(par), split)
    results = {s: evaluate(s) for s in stages}
    worst = max(results, key=lambda s: results[s].device_total_bytes)
    return replace(results[worst], layout=layout_summary(par, worst, results, split, m))


def _distinct_stages(par: Parallelism, m: ModelSpec, stages: list[int], split=None) -> list[int]:
    """The first and last stages, and each middle stage that no earlier middle stage dominates: an
    earlier stage holds at least as many micro-batches (1F1B's min(p - r, m) falls with r; a
    device_map holds one everywhere), so it is at least as loaded when it also has at least as many
    layers and as many MoE layers."""
    split = split or stage_layers(par, m.n_layers)
    last = len(split) - 1
    keep, kept_middle, start = [], [], 0
    starts = [sum(split[:s]) for s in range(len(split))]
    for s in stages:
        start = starts[s]
        if s in (0, last):
            keep.append(s)
            continue
        moe = split[s] - dense_layers_in(m, start, split[s])
        if any(layers >= split[s] and k_moe >= moe for layers, k_moe in kept_middle):
            continue
        kept_middle.append((split[s], moe))
        keep.append(s)
    return keep


def layout_summary(par: Parallelism, worst: int, results: dict, split, m: ModelSpec) -> dict:
    """The degrees, the GPU count, which rank the per-GPU answer is for, and each evaluated stage's total."""
    p = par.pipeline_parallel
    split = split or stage_layers(par, m.n_layers)
    start = sum(split[:worst])
    what = ("GPU" if par.recipe == "hf" else "pipeline stage") + f" {worst} of {p}"
    if p > 1:
        what += f" (layers {start}-{start + split[worst] - 1}"
        what += ", embeddings" if worst == 0 else ""
        what += ", output layer and loss" if worst == p - 1 else ""
        what += f", {in_flight(par, worst)} micro-batch{'es' if in_flight(par, worst) > 1 else ''} in flight" \
            if par.recipe != "hf" else ""
        what += "; a device_map: the GPUs run one after another, each idle (p - 1)/p of the step" \
            if par.recipe == "hf" else ""
        what += ")"
    if par.tensor_parallel > 1:
        what += f", tensor rank 0 of {par.tensor_parallel} (all hold the same)"
    return {"recipe": par.recipe, "gpus": par.gpus,
            "degrees": {"data": par.data_parallel, "tensor": par.tensor_parallel, "pipeline": p,
                        "virtual": par.virtual_stages, "context": par.context_parallel, "expert": par.expert_parallel},
            "zero_stage": par.zero_stage, "most_loaded": {"stage": worst, "tensor_rank": 0, "description": what},
            "stages": [{"stage": s, "layers": split[s], "device_total_bytes": e.device_total_bytes}
                       for s, e in sorted(results.items())]}
