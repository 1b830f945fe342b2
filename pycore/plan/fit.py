"""The cheapest combinations of changes that make a run fit on its GPU ("make it fit").

Each lever is a ladder of settings, from the run as given to the most memory-saving, and each rung
has a stated cost. The search is best-first over combinations of rungs, cheapest total cost first:
a combination is estimated, kept when it fits (its supersets are never tried: they cost more and
save nothing needed), and otherwise extended one rung on one lever. A rung that does not reduce
memory against the combination it extends is dropped, so no plan contains a change that saves
nothing. The search stops after ``limit`` plans or ``MAX_EVALUATIONS`` estimates.

The costs rank the plans; they are not measurements. Where a cost is a known figure it cites it:
full recomputation runs each layer's forward again in backward, about a third more compute
(the forward is one of three passes; Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models", section 4: 30-40% overhead). Changes that alter what is trained or
how numbers are stored are costed above any slowdown, because they change the result.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace

from ..errors import InputError
from ..estimate import estimate
from ..schema import integer, spec
from .levers import method_ladders

MAX_EVALUATIONS = 400
MAX_HALVINGS = 6                # micro-batch down to 1/64, sequences down to 1/4
RECOMPUTE_COST = 0.33           # Korthikanti et al. 2022: one extra forward of three passes
MICRO_BATCH_COST = 0.04         # ranking weight per halving: smaller matmuls, more launches (not measured)
CHANGES_TRAINING = 1.0          # a change to what is trained or to the data: above any slowdown
OFFLOAD_COST = 0.6              # ranking weight: a step bound by PCIe and the CPU's Adam (not measured)
GPU_DOUBLING_COST = 0.5         # ranking weight per doubling of the GPUs asked for
# Each layout sets the recipe: one layout per plan; the CPU's Adam is the optimizer when states are offloaded.
EXCLUSIVE_LEVERS = (("ZeRO-Offload", "ZeRO-Infinity"), ("ZeRO-Offload", "GPUs"), ("ZeRO-Infinity", "GPUs"),
                    ("ZeRO-Offload", "optimizer"), ("ZeRO-Infinity", "optimizer"))


@dataclass(frozen=True)
class FitQuery:
    """What the fit search returns."""

    limit: int = spec(5, integer(1, 20, doc="plans returned, cheapest first"))


@dataclass(frozen=True)
class Rung:
    text: str                   # what changes, for the user
    cost: float                 # ranking weight, summed over a plan's rungs
    cost_text: str              # the stated cost
    workload: tuple = ()        # (field, value) pairs set on the workload
    precision: tuple = ()
    parallelism: tuple = ()


def ladders(req, layouts: bool = True) -> list[tuple[str, list[Rung]]]:
    """(lever, rungs beyond the run as given) for this request; each rung replaces the previous one.
    ``layouts`` adds the multi-GPU levers (offload, more GPUs)."""
    w, p, par = req.workload, req.precision, req.parallelism
    out = []
    training = w.mode != "inference"
    if w.batch_size > 1:
        # Training: micro-batches that divide the batch, so that accumulation keeps the global batch
        # exactly; inference: about half each time, in ceil(B / b) passes.
        B = w.batch_size
        sizes = _divisors_below(B) if training else \
            sorted({-(-B // 2 ** i) for i in range(1, MAX_HALVINGS + 1)} - {B}, reverse=True)
        rungs = []
        for b in _spread(sizes, MAX_HALVINGS):
            k = -(-B // b)
            cost = MICRO_BATCH_COST * (len(rungs) + 1)
            if training:
                rungs.append(Rung(f"micro-batch {b} with gradient accumulation x{k * par.gradient_accumulation} "
                                  "(the same global batch)", cost, f"slightly slower: {k} smaller micro-batches per step",
                                  (("batch_size", b),),
                                  parallelism=(("gradient_accumulation", k * par.gradient_accumulation),)))
            else:
                rungs.append(Rung(f"batch {b} ({k} passes for the same prompts)", cost,
                                  f"slower: {k} passes instead of one", (("batch_size", b),)))
        if rungs:
            out.append(("batch", rungs))
    if training and not w.gradient_checkpointing:
        out.append(("checkpointing", [Rung("gradient checkpointing on every layer", RECOMPUTE_COST,
                                           "about 33% slower: recomputation (Korthikanti et al. 2022)",
                                           (("gradient_checkpointing", True),))]))
    if w.attention == "eager":
        out.append(("attention", [Rung("SDPA attention instead of eager", 0.0,
                                       "no cost: the same attention, a fused kernel", (("attention", "sdpa"),))]))
    if training and w.optimizer == "adamw":
        out.append(("optimizer", [Rung("fused AdamW", 0.0, "no cost: the same update in one kernel",
                                       (("optimizer", "adamw_fused"),)),
                                  Rung("8-bit AdamW (bitsandbytes)", 0.3, "changes the optimizer: 8-bit states",
                                       (("optimizer", "adamw_8bit"),))]))
    elif training and w.optimizer == "adamw_fused":
        out.append(("optimizer", [Rung("8-bit AdamW (bitsandbytes)", 0.3, "changes the optimizer: 8-bit states",
                                       (("optimizer", "adamw_8bit"),))]))
    out += method_ladders(req, Rung)        # fused loss, activation offload, a smaller adapter (levers.py)
    if w.mode == "full":
        rungs = [Rung("LoRA (rank 16, attention projections) instead of full training", CHANGES_TRAINING,
                      "changes the training: LoRA trains adapters only", (("mode", "lora"),))]
        rungs.append(Rung("QLoRA (4-bit base) instead of full training", CHANGES_TRAINING + 0.2,
                          "changes the training: LoRA adapters over a 4-bit base", (("mode", "qlora"),),
                          precision=(("weights", "bf16"), ("autocast", None))))
        out.append(("fine-tuning method", rungs))
        if p.autocast:
            out.append(("precision", [Rung(f"pure {p.autocast} instead of mixed precision", 0.5,
                                           f"changes the numerics: {p.autocast} weights without fp32 master copies",
                                           precision=(("weights", p.autocast), ("autocast", None)))]))
    elif w.mode == "lora":
        out.append(("fine-tuning method", [Rung("QLoRA (4-bit base) instead of LoRA", 0.2,
                                                "changes the base weights' storage: 4-bit NF4", (("mode", "qlora"),))]))
    if not training:
        if p.weights in ("fp32", "bf16", "fp16") and p.quant_format is None:
            out.append(("weights", [Rung("int8 weights", 0.2, "changes the numerics: 8-bit weights",
                                         precision=(("weights", "int8"),)),
                                    Rung("int4 weights", 0.4, "changes the numerics: 4-bit weights",
                                         precision=(("weights", "int4"),))]))
        if w.new_tokens and (p.kv_cache or "bf16") not in ("fp8", "int8"):
            out.append(("KV cache", [Rung("fp8 KV cache", 0.1, "changes the numerics: an 8-bit cache",
                                          precision=(("kv_cache", "fp8"),))]))
    single = (par.recipe == "hf" and par.data_parallel == par.tensor_parallel == par.pipeline_parallel ==
              par.context_parallel == par.expert_parallel == 1)
    if training and single and layouts:
        # The multi-GPU layouts as levers: offload to the host (DeepSpeed ZeRO-Offload, Ren et al. 2021;
        # ZeRO-Infinity, Rajbhandari et al. 2021), or shard the model states over more GPUs (FSDP2).
        # Each layout is its own lever (one layout per plan, EXCLUSIVE_LEVERS): ZeRO-Infinity can fit where
        # ZeRO-Offload saves nothing (LoRA's optimizer states are small). DeepSpeed's CPU Adam replaces
        # the optimizer, so neither goes with 8-bit AdamW.
        if w.optimizer != "adamw_8bit":
            out.append(("ZeRO-Offload", [
                Rung("DeepSpeed ZeRO-2 with the optimizer states on the CPU (ZeRO-Offload)", OFFLOAD_COST,
                     "slower: the optimizer step runs on the CPU and the gradients cross PCIe; needs host memory",
                     parallelism=(("recipe", "deepspeed"), ("zero_stage", 2), ("offload_optimizer", "cpu")))]))
            out.append(("ZeRO-Infinity", [
                Rung("DeepSpeed ZeRO-3 with parameters and optimizer states on the CPU (ZeRO-Infinity)",
                     2 * OFFLOAD_COST, "much slower: every layer's parameters stream from the CPU each pass; "
                                       "needs host memory",
                     parallelism=(("recipe", "deepspeed"), ("zero_stage", 3), ("offload_optimizer", "cpu"),
                                  ("offload_params", "cpu")))]))
        out.append(("GPUs", [Rung(f"shard the model states over {n} GPUs (FSDP2)", GPU_DOUBLING_COST * k,
                                  f"needs {n} GPUs; the global batch grows {n}-fold unless the batch or the "
                                  "accumulation is lowered", parallelism=(("recipe", "fsdp2"), ("data_parallel", n)))
                             for k, n in ((1, 2), (2, 4), (3, 8))]))
    if w.seq_len >= 256:
        rungs, s = [], w.seq_len
        for i in range(2):
            s //= 2
            rungs.append(Rung(f"sequences of {s} tokens", CHANGES_TRAINING * (1.5 + i),
                              "changes the data: shorter sequences" if training else "shorter prompts",
                              (("seq_len", s),)))
        out.append(("sequence length", rungs))
    return out


def _divisors_below(n: int) -> list[int]:
    """The divisors of n below n, largest first (in about sqrt(n) steps)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted((set(small) | {n // d for d in small}) - {n}, reverse=True)


def _spread(sizes: list[int], most: int) -> list[int]:
    """At most ``most`` of the sizes, largest first, always keeping the smallest."""
    if len(sizes) <= most:
        return sizes
    step = (len(sizes) - 1) / (most - 1)
    return sorted({sizes[round(i * step)] for i in range(most)}, reverse=True)


def apply_rungs(req, rungs: list[Rung]):
    wl, pr, pa = {}, {}, {}
    for r in rungs:
        wl.update(r.workload)
        pr.update(r.precision)
        pa.update(r.parallelism)
    if pa.get("recipe", req.parallelism.recipe) != req.parallelism.recipe:
        from ..parallel.options import RECIPE_OPTIONS
        pa["options"] = RECIPE_OPTIONS[pa["recipe"]]()      # a new recipe starts from its own defaults
    return (replace(req.workload, **wl), replace(req.precision, **pr), replace(req.parallelism, **pa))


def nested_patch(rungs: list[Rung]) -> dict:
    """The request fields the rungs set, as nested request objects ({"workload": {"batch_size": 4}, ...})."""
    out: dict = {}
    for r in rungs:
        for section, pairs in (("workload", r.workload), ("precision", r.precision), ("parallelism", r.parallelism)):
            for key, value in pairs:
                out.setdefault(section, {})[key] = value.to_json() if hasattr(value, "to_json") else value
    return out


def _patch(rungs: list[Rung]) -> dict:
    """The request fields a plan sets, by path (the page applies them to its form)."""
    return {f"{section}.{key}": value for section, fields in nested_patch(rungs).items() for key, value in fields.items()}


def fit_search(req, q: FitQuery, current_total: int) -> dict:
    """The cheapest plans that fit, each with its device total and stated costs."""
    levers = ladders(req)
    names = [name for name, _ in levers]
    exclusive = [(names.index(a), names.index(b)) for a, b in EXCLUSIVE_LEVERS if a in names and b in names]
    start = tuple(0 for _ in levers)           # rung index per lever; 0 = as given
    heap = [(0.0, 0, start, current_total)]
    seen = {start}
    plans, fitting = [], []
    evaluations = 0
    counter = 0

    def chosen(state):
        return [levers[i][1][k - 1] for i, k in enumerate(state) if k]

    while heap and len(plans) < q.limit and evaluations < MAX_EVALUATIONS:
        cost, _, state, parent_total = heapq.heappop(heap)
        if state != start:
            if any(all(s >= f for s, f in zip(state, fit)) for fit in fitting):
                continue                          # a superset of a plan that fits: never cheaper
            try:
                wl, pr, pa = apply_rungs(req, chosen(state))
                e = estimate(req.model, wl, pr, req.hardware, req.framework, pa)
            except InputError:
                continue
            evaluations += 1
            total = e.device_total_bytes
            if total >= parent_total:
                continue                          # the last change saved nothing: not advice
            if e.fits:
                fitting.append(state)
                rungs = chosen(state)
                plans.append({"changes": [{"lever": names[i], "change": levers[i][1][k - 1].text,
                                           "cost": levers[i][1][k - 1].cost_text}
                                          for i, k in enumerate(state) if k],
                              "device_total_bytes": total, "headroom_bytes": req.hardware.memory_bytes - total,
                              "saves_bytes": current_total - total, "cost": round(cost, 3),
                              "host_bytes": e.host_bytes,           # offloaded states, per node
                              "set": _patch(rungs), "_estimate": e})     # the caller bands it, then drops it
                continue
        else:
            total = parent_total
        for i, k in enumerate(state):
            if k < len(levers[i][1]):
                nxt = state[:i] + (k + 1,) + state[i + 1:]
                if any(nxt[a] and nxt[b] for a, b in exclusive):
                    continue                      # two layouts at once: not a plan
                if nxt not in seen:
                    seen.add(nxt)
                    counter += 1
                    step = sum(levers[j][1][m - 1].cost for j, m in enumerate(nxt) if m)
                    heapq.heappush(heap, (step, counter, nxt, total))
    return {"plans": plans, "evaluated": evaluations, "levers": names,
            "complete": not heap or len(plans) >= q.limit,
            "message": "" if plans else "no combination of these changes fits this GPU: try more GPUs "
                                        "(the layout search) or a larger card"}
