"""Layouts: every valid way to split a training run over N GPUs, ranked; and the fewest GPUs that fit.

A layout is dp x tp x pp x cp x ep = N with the constraints the recipe's framework enforces
(model/layout.py; a pipeline degree that does not divide the layers gets Megatron's first/last
split), a ZeRO stage the recipe supports, and the fastest recomputation that fits it: one row per
distinct layout. Rows are ranked by the step-time model of plan/steptime.py (recompute cost,
pipeline bubble, communication inside and across nodes), fitting layouts first; the first row is
the recommended layout. Each row also gives the framework's own arguments (plan/launch.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InputError
from ..estimate import estimate
from ..parallel.hf_tp_plans import TP_PLAN_MODEL_TYPES
from ..model.layout import Parallelism, chunk_layers
from ..schema import integer, spec
from .launch import launch
from .sweep import stack_terms
from .steptime import RECOMPUTE_OVERHEAD, step_time  # noqa: F401 (RECOMPUTE_OVERHEAD re-exported)

ZERO_STAGES = {"hf": (0, 1, 2, 3), "deepspeed": (0, 1, 2, 3), "zero-paper": (0, 1, 2, 3), "fsdp2": (3,),
               "megatron": (0, 1), "playbook": (0,), "deepspeed-estimator": (2, 3)}
RECOMPUTES = ("none", "selective", "full")
# Recipes whose framework splits the norms' activations by the TP degree (sequence parallelism).
SEQUENCE_PARALLEL_RECIPES = ("megatron", "fsdp2", "deepspeed", "playbook", "zero-paper")
MAX_GPUS = 1024
# GPU counts tried for "fewest GPUs": every count up to 8, then whole nodes of 8.
FEWEST_CANDIDATES = tuple(range(1, 9)) + tuple(range(16, MAX_GPUS + 1, 8))


@dataclass(frozen=True)
class PlanQuery:
    """What the layout search answers: with ``gpus``, every layout of that many GPUs; without, the
    fewest GPUs that fit (up to ``max_gpus``)."""

    gpus: int | None = spec(None, integer(1, MAX_GPUS * 64, nullable=True, doc="rank the layouts of this many GPUs"))
    global_batch: int | None = spec(None, integer(1, 1 << 24, url="gb", nullable=True,
                                                  doc="sequences per optimizer step, over all data-parallel ranks"))
    max_gpus: int = spec(MAX_GPUS, integer(1, MAX_GPUS * 64, doc="largest GPU count the fewest-GPUs search tries"))
    limit: int = spec(50, integer(1, 100_000, doc="layouts returned, best first"))


# The most pipeline-stage evaluations one plan request makes (a layout's estimate evaluates its distinct
# stages, or every GPU of a device_map split; each about a third of a millisecond natively): a bound on
# the search's work whatever the model, the GPU count or the sequence, so that any plan answers in well
# under a second of CPU. A search that reaches it says so.
MAX_PLAN_ESTIMATES = 1500


# Recipes whose estimate is a closed form (parallel/formulas.py, parallel/megatron.py), with no
# timeline of moments: an estimate costs 0.06-0.14 ms whatever its pipeline degree, against about
# 0.25 ms a stage for the timeline recipes (Llama-3.1-405B and Qwen3-30B-A3B layouts on CPython 3.11,
# CPU time, this project's build machine, 2026-12): each is charged one stage evaluation.
FORMULA_RECIPES = ("megatron", "zero-paper", "playbook", "deepspeed-estimator")


class Budget:
    """The stage evaluations a plan request may still make."""

    def __init__(self, n: int = MAX_PLAN_ESTIMATES):
        self.left = n

    def spend(self, par: Parallelism) -> None:
        p = par.pipeline_parallel
        # about the work of its estimate: the distinct stages it evaluates (one for a closed form)
        stages = 1 if par.recipe in FORMULA_RECIPES else min(p, 3)
        if self.left < stages:
            raise BudgetSpent
        self.left -= stages


class BudgetSpent(Exception):
    """The plan request made MAX_PLAN_ESTIMATES stage evaluations."""


def run_plan(req, q: PlanQuery) -> dict:
    """The plan answer: the recommended layout and the ranked layouts (for q.gpus, or for the fewest GPUs)."""
    if q.gpus is not None:
        try:
            rows = layouts(req, q.gpus, q.global_batch)
        except BudgetSpent:
            raise InputError("plan.gpus", f"{q.gpus} GPUs have more layouts than the search evaluates "
                                          f"({MAX_PLAN_ESTIMATES:,} stage evaluations); fix some degrees (tensor, "
                                          "pipeline, context parallel) or ask for the fewest GPUs") from None
        out = {"question": "layouts", "gpus": q.gpus, "recommended": best(rows), "layouts": rows}
    else:
        out = {"question": "fewest", **fewest_gpus(req, q.global_batch, q.max_gpus)}
    out["count"] = len(out["layouts"])
    out["layouts"] = out["layouts"][:q.limit]
    for r in out["layouts"] + ([out["recommended"]] if out["recommended"] else []):
        _add_launch(req, r)
    return out


def _layout_par(base: Parallelism, degrees: tuple, stage: int, recompute: str, accumulation: int) -> Parallelism:
    dp, t, p, c, e = degrees
    return replace(base, data_parallel=dp, tensor_parallel=t, pipeline_parallel=p, context_parallel=c,
                   expert_parallel=e, zero_stage=stage, recompute=recompute,
                   sequence_parallel=t > 1 and base.recipe in SEQUENCE_PARALLEL_RECIPES,
                   gradient_accumulation=accumulation, micro_batches=None, pipeline_layers=None)


def _add_launch(req, r: dict) -> None:
    """The framework's own arguments, for the rows the answer returns only (the search ranks many more)."""
    if "launch" not in r:
        d = r["degrees"]
        par = _layout_par(req.parallelism, (d["data"], d["tensor"], d["pipeline"], d["context"], d["expert"]),
                          r["zero_stage"], r["recompute"], r["gradient_accumulation"])
        r["launch"] = launch(req, par, r["micro_batch"], r["gradient_accumulation"])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# Recipes whose activations are counted only under full recomputation (the ZeRO paper's checkpoints,
# section 6.1): without it they are left out, so no recomputation is not the most memory there and a
# fit without it says nothing; the search keeps full recomputation first for them.
ACTIVATIONS_ONLY_WITH_FULL = ("zero-paper",)

# Degrees each recipe refuses by name (parallel/formulas.py refuse_degrees, parallel/hf.py): a layout
# with one of them above 1 never yields a row, so the search does not spend its budget on it
# (tests/test_async_tp_etp.py checks each against the recipe).
REFUSED_DEGREES = {"hf": ("context", "expert"), "zero-paper": ("expert",),
                   "playbook": ("expert",), "deepspeed-estimator": ("tensor", "pipeline", "context", "expert")}


def degree_sets(req, gpus: int):
    """(dp, tp, pp, cp, ep) with product ``gpus`` that the model and the recipe allow."""
    m, w = req.model, req.workload
    recipe = req.parallelism.recipe
    refused = REFUSED_DEGREES.get(recipe, ())
    tps = [t for t in _divisors(gpus) if m.n_heads % t == 0 and m.n_kv_heads % t == 0 and m.ffn_size % t == 0
           and (not m.n_shared_experts or m.shared_expert_ffn_size % t == 0)]
    if recipe == "hf" and (w.mode != "full" or m.model_type not in TP_PLAN_MODEL_TYPES) or "tensor" in refused:
        tps = [1]
    for t in tps:
        for p in _divisors(gpus // t):
            if p > 1 and "pipeline" in refused:
                continue
            # Any p up to the layers: where p does not divide them, Megatron's first/last split
            # (model/layout.py balanced_split) is what the recipes evaluate.
            v = req.parallelism.virtual_stages          # the user's interleaving: p x v chunks
            if p * v > m.n_layers or (v > 1 and p == 1) or (recipe == "hf" and p > 1 and w.mode == "inference"):
                continue
            for c in _divisors(gpus // (t * p)):
                if c > 1 and (w.seq_len % (2 * c) or w.attention == "eager" or "context" in refused
                              or recipe == "deepspeed"):
                    continue
                for e in _divisors(gpus // (t * p * c)):
                    if e > 1 and (not m.n_experts or m.n_experts % e or "expert" in refused):
                        continue
                    yield gpus // (t * p * c * e), t, p, c, e


def layouts(req, gpus: int, global_batch: int | None = None, limit: int | None = None,
            budget: Budget | None = None) -> list[dict]:
    """Every valid layout of ``gpus`` GPUs, one row each, ranked by rank_key (the recommended first).
    Raises BudgetSpent past ``budget``."""
    budget = budget or Budget()
    base = req.parallelism
    w = req.workload
    rows = []
    hint = {"none_fits": False}          # whether the last layout's fastest choice was no recomputation
    for dp, t, p, c, e in degree_sets(req, gpus):
        replicas = dp * e
        micro = w.batch_size
        accumulation = 1
        if global_batch is not None:
            if global_batch % replicas:
                continue
            per_replica = global_batch // replicas
            micro = min(micro, per_replica)
            if per_replica % micro:
                continue
            accumulation = per_replica // micro
        stages = ZERO_STAGES[base.recipe]
        if dp * c * e == 1 and len(stages) > 1:
            stages = stages[:1]           # nothing to shard across: every stage is the same layout
        # The highest ZeRO stage (the least memory) first: where its least memory-hungry choice does not
        # fit, no lower stage does, and the layout is that one row.
        for stage in sorted(stages, reverse=True):
            if p > 1 and stage > 1 and base.recipe == "deepspeed":
                continue
            row = _fastest_fitting(req, base, (dp, t, p, c, e), stage, micro, accumulation, budget,
                                   none_first=hint["none_fits"] and base.recipe not in ACTIVATIONS_ONLY_WITH_FULL)
            hint["none_fits"] = row is not None and row["fits"] and row["recompute"] == "none"
            if row is not None:
                rows.append(row)
                if not row["fits"]:
                    break
    rows = _distinct(rows)
    rows.sort(key=rank_key)
    return rows[:limit] if limit else rows


# A fitting layout with less headroom than this share of the GPU is ranked after those with more:
# the estimate's own error on measured multi-GPU peaks is of this order (the fit part of
# tests/data/golden_parallel.json, torchtitan on Llama-3.1-8B: median 2.4%, largest 11.9%).
SAFE_HEADROOM_FRACTION = 0.10


def tight(r: dict) -> bool:
    """Whether a row's headroom is within the estimate's error of the GPU's memory."""
    return r["headroom_bytes"] < SAFE_HEADROOM_FRACTION * (r["device_total_bytes"] + r["headroom_bytes"])


def rank_key(r: dict) -> tuple:
    """Fitting layouts first, those with a safe headroom before tight ones, then by the step-time
    model (plan/steptime.py), then by headroom."""
    return (not r["fits"], tight(r), r["throughput"]["relative_step_time"], -r["headroom_bytes"])


# Full recomputation keeps the fewest activations; where it misses the GPU by more than this share,
# the other choices (which keep more) are not evaluated. The margin covers the few MiB by which a
# recomputed layer's working memory can put full above none at a backward moment.
CLEAR_MISS_FRACTION = 0.01


def _fastest_fitting(req, base: Parallelism, degrees: tuple, stage: int, micro: int, accumulation: int,
                     budget: Budget, none_first: bool = False):
    """One row for a layout: the fastest recomputation that fits (none, then selective, then full;
    the step-time model orders them so), or, where none fits, the one that needs the least memory.
    Full recomputation is tried first: a clear miss settles the layout without the others; where the
    previous layout fitted without recomputation (``none_first``), that is tried first, and a fit
    settles the layout (the answer is the same in either order: only the work differs)."""
    tried = {}

    def row_for(recompute: str):
        if recompute not in tried:
            par = _layout_par(base, degrees, stage, recompute, accumulation)
            budget.spend(par)
            try:
                est = estimate(req.model, replace(req.workload, batch_size=micro), req.precision, req.hardware,
                               req.framework, par)
                row = _row(req, par, est, micro, accumulation)
                row["tight"] = row["fits"] and tight(row)
            except InputError:
                row = None                # a recomputation the recipe refuses; the layout may take another
            tried[recompute] = row
        return tried[recompute]

    if none_first:
        first = row_for("none")
        if first is not None and first["fits"]:
            return first
    # Full recomputation first: where it misses clearly, nothing else is evaluated (most layouts of a
    # GPU count too small for the model settle in one estimate).
    full = row_for("full")
    if full is not None and -full["headroom_bytes"] > CLEAR_MISS_FRACTION * req.hardware.memory_bytes:
        return full
    none = row_for("none")
    if none is not None and none["fits"]:
        return none
    rows = [r for r in (row_for(rc) for rc in RECOMPUTES) if r is not None]
    fitting = [r for r in rows if r["fits"]]
    if fitting:
        return fitting[0]
    return min(rows, key=lambda r: r["device_total_bytes"]) if rows else None


def _distinct(rows: list[dict]) -> list[dict]:
    """Drop a row whose degrees, recomputation and bytes repeat an earlier one (a ZeRO stage that
    shards nothing more): one row per distinct layout."""
    seen, out = set(), []
    for r in rows:
        key = (tuple(r["degrees"].values()), r["recompute"], r["device_total_bytes"], r["host_bytes"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _row(req, par: Parallelism, est, micro: int, accumulation: int) -> dict:
    verdict = est.verdict
    return {"gpus": par.gpus, "degrees": {"data": par.data_parallel, "tensor": par.tensor_parallel,
                                          "pipeline": par.pipeline_parallel, "context": par.context_parallel,
                                          "expert": par.expert_parallel},
            "zero_stage": par.zero_stage, "recompute": par.recompute, "sequence_parallel": par.sequence_parallel,
            "micro_batch": micro, "gradient_accumulation": accumulation,
            "device_total_bytes": est.device_total_bytes, "headroom_bytes": req.hardware.memory_bytes - est.device_total_bytes,
            "terms": stack_terms(est),      # what the device total is made of, by term key (the page's chart)
            "fits": verdict == "fits", "verdict": verdict, "host_bytes": est.host_bytes, "not_estimated": list(est.not_estimated),
            "most_loaded": (est.layout.get("most_loaded") or {}).get("description", ""),
            "throughput": step_time(req, par, micro, accumulation),
            "pipeline_schedule": pipeline_schedule(par),
            "pipeline_layers": list(chunk_layers(par, req.model.n_layers)) if par.pipeline_parallel > 1 else None,
            "tight": False,
            "parallelism": {"recipe": par.recipe, "data_parallel": par.data_parallel,
                            "tensor_parallel": par.tensor_parallel, "pipeline_parallel": par.pipeline_parallel,
                            "context_parallel": par.context_parallel, "expert_parallel": par.expert_parallel,
                            "sequence_parallel": par.sequence_parallel, "zero_stage": par.zero_stage,
                            "recompute": par.recompute, "gradient_accumulation": accumulation}}


def pipeline_schedule(par: Parallelism) -> str:
    """What runs the stages: a pipeline schedule, or accelerate's device_map (not a pipeline)."""
    if par.pipeline_parallel == 1:
        return "none"
    if par.recipe == "hf":
        return "device_map: the GPUs run one after another, (p - 1)/p of the time idle (not pipeline parallelism)"
    return "interleaved 1F1B" if par.virtual_stages > 1 else "1F1B"


def best(rows: list[dict]) -> dict | None:
    """The fitting layout the step-time model ranks first (then the most headroom)."""
    fitting = [r for r in rows if r["fits"]]
    if not fitting:
        return None
    return min(fitting, key=rank_key)


def fewest_possible(req) -> int:
    """A count below which no layout can fit: every layout keeps the model's weights, gradients and
    optimizer states somewhere on its GPUs (sharded or replicated, never less than once), so the GPUs
    together hold at least one GPU's worth of them. Offloaded states live in host memory: no floor."""
    par = req.parallelism
    if par.offload_optimizer != "none" or par.offload_params != "none":
        return 1
    try:
        one = estimate(req.model, req.workload, req.precision, req.hardware, req.framework,
                       Parallelism(recipe=par.recipe, options=par.options))
    except InputError:
        return 1
    return max(1, -(-one.model_states_bytes // req.hardware.memory_bytes))


def fewest_gpus(req, global_batch: int | None = None, max_gpus: int = MAX_GPUS) -> dict:
    """The smallest GPU count with a fitting layout, that layout, and every layout of that count; the
    search starts at fewest_possible and stops at its budget, saying so."""
    budget = Budget()
    floor = fewest_possible(req)
    tried = 0
    for n in FEWEST_CANDIDATES:
        if n > max_gpus:
            break
        if n < floor:
            continue
        try:
            rows = layouts(req, n, global_batch, budget=budget)
        except BudgetSpent:
            return {"gpus": None, "recommended": None, "layouts": [],
                    "message": f"no layout of up to {tried} GPUs fits; the search stopped there, after "
                               f"{MAX_PLAN_ESTIMATES:,} stage evaluations (its bound on work); consider LoRA, "
                               "offload, a shorter sequence or a larger GPU, or ask for the layouts of one GPU count"}
        tried = n
        choice = best(rows)
        if choice is not None:
            return {"gpus": n, "recommended": choice, "layouts": rows}
    return {"gpus": None, "recommended": None, "layouts": [],
            "message": f"no layout of up to {max_gpus} GPUs fits; consider LoRA, offload or a larger GPU"}
