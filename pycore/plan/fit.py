"""The cheapest combinations of changes that make a run fit on its GPU ("make it fit").

Each lever is a ladder of settings, from the run as given to the most memory-saving, and each rung
has a stated cost, read from the table of levers (``LEVERS`` in pycore/plan/levers.py, with each cost's
source). The search is best-first over combinations of rungs, cheapest total cost first:
a combination is estimated, kept when it fits (its supersets are never tried: they cost more and
save nothing needed), and otherwise extended one rung on one lever. A rung that does not reduce
memory against the combination it extends is dropped, so no plan contains a change that saves
nothing. The search stops after ``limit`` plans or ``MAX_EVALUATIONS`` estimates.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace

from ..errors import InputError
from ..estimate import estimate
from ..schema import integer, spec
from .levers import LEVERS, MAX_HALVINGS, Rung, ladder, method_ladders

MAX_EVALUATIONS = 400
# Each layout sets the recipe: one layout per plan; the CPU's Adam is the optimizer when states are offloaded.
EXCLUSIVE_LEVERS = (("ZeRO-Offload", "ZeRO-Infinity"), ("ZeRO-Offload", "GPUs"), ("ZeRO-Infinity", "GPUs"),
                    ("ZeRO-Offload", "optimizer"), ("ZeRO-Infinity", "optimizer"))


@dataclass(frozen=True)
class FitQuery:
    """What the fit search returns."""

    limit: int = spec(5, integer(1, 20, doc="plans returned, cheapest first"))


def ladders(req, layouts: bool = True) -> list[tuple[str, list[Rung]]]:
    """(lever, rungs beyond the run as given) for this request; each rung replaces the previous one.
    ``layouts`` adds the multi-GPU levers (offload, more GPUs)."""
    w, par = req.workload, req.parallelism
    training = w.mode != "inference"
    out = _batch_ladder(w, par) + _step_ladders(w)
    out += method_ladders(req)        # fused loss, activation offload, a smaller adapter (levers.py)
    out += _method_ladders(w, req.precision) if training else _numerics_ladders(w, req.precision)
    single = (par.recipe == "hf" and par.data_parallel == par.tensor_parallel == par.pipeline_parallel ==
              par.context_parallel == par.expert_parallel == 1)
    if training and single and layouts:
        out += _layout_ladders(w)
    return out + _sequence_ladder(w)


def _batch_ladder(w, par) -> list:
    """Training: micro-batches that divide the batch, so that accumulation keeps the global batch
    exactly; inference: about half each time, in ceil(B / b) passes."""
    if w.batch_size <= 1:
        return []
    B, training = w.batch_size, w.mode != "inference"
    sizes = _divisors_below(B) if training else \
        sorted({-(-B // 2 ** i) for i in range(1, MAX_HALVINGS + 1)} - {B}, reverse=True)
    rungs = []
    for i, b in enumerate(_spread(sizes, MAX_HALVINGS)):
        k = -(-B // b)
        if training:
            rungs.append(LEVERS["micro-batch"].rung(
                i, f"micro-batch {b} with gradient accumulation x{k * par.gradient_accumulation} (the same global batch)",
                (("batch_size", b),), parallelism=(("gradient_accumulation", k * par.gradient_accumulation),), k=k))
        else:
            rungs.append(LEVERS["inference-batch"].rung(i, f"batch {b} ({k} passes for the same prompts)",
                                                        (("batch_size", b),), k=k))
    return [ladder("micro-batch", rungs)] if rungs else []


def _step_ladders(w) -> list:
    """Changes of how a step runs that keep its result: checkpointing, SDPA, a fused or 8-bit AdamW."""
    training, out = w.mode != "inference", []
    if training and not w.gradient_checkpointing:
        out.append(ladder("checkpointing", [LEVERS["checkpointing"].rung(
            0, "gradient checkpointing on every layer", (("gradient_checkpointing", True),))]))
    if w.attention == "eager":
        out.append(ladder("sdpa", [LEVERS["sdpa"].rung(0, "SDPA attention instead of eager", (("attention", "sdpa"),))]))
    eight_bit = LEVERS["adamw-8bit"].rung(0, "8-bit AdamW (bitsandbytes)", (("optimizer", "adamw_8bit"),))
    if training and w.optimizer == "adamw":
        out.append(ladder("fused-adamw", [LEVERS["fused-adamw"].rung(0, "fused AdamW", (("optimizer", "adamw_fused"),)),
                                          eight_bit]))
    elif training and w.optimizer == "adamw_fused":
        out.append(ladder("adamw-8bit", [eight_bit]))
    return out


def _method_ladders(w, p) -> list:
    """Changes of what is trained: LoRA or QLoRA instead of full training, QLoRA instead of LoRA, pure
    16-bit weights instead of mixed precision."""
    if w.mode == "lora":
        return [ladder("lora-to-qlora", [LEVERS["lora-to-qlora"].rung(0, "QLoRA (4-bit base) instead of LoRA",
                                                                      (("mode", "qlora"),))])]
    if w.mode != "full":
        return []
    out = [ladder("lora", [
        LEVERS["lora"].rung(0, "LoRA (rank 16, attention projections) instead of full training", (("mode", "lora"),)),
        LEVERS["qlora"].rung(0, "QLoRA (4-bit base) instead of full training", (("mode", "qlora"),),
                             precision=(("weights", "bf16"), ("autocast", None)))])]
    if p.autocast:
        out.append(ladder("pure-precision", [LEVERS["pure-precision"].rung(
            0, f"pure {p.autocast} instead of mixed precision", precision=(("weights", p.autocast), ("autocast", None)),
            dtype=p.autocast)]))
    return out


def _numerics_ladders(w, p) -> list:
    """Inference: int8 or int4 weights, an fp8 KV cache."""
    out = []
    if p.weights in ("fp32", "bf16", "fp16") and p.quant_format is None:
        out.append(ladder("int8-weights", [
            LEVERS["int8-weights"].rung(0, "int8 weights", precision=(("weights", "int8"),)),
            LEVERS["int4-weights"].rung(0, "int4 weights", precision=(("weights", "int4"),))]))
    if w.new_tokens and (p.kv_cache or "bf16") not in ("fp8", "int8"):
        out.append(ladder("fp8-kv-cache", [LEVERS["fp8-kv-cache"].rung(0, "fp8 KV cache",
                                                                       precision=(("kv_cache", "fp8"),))]))
    return out


def _layout_ladders(w) -> list:
    """The multi-GPU layouts as levers: offload to the host (DeepSpeed ZeRO-Offload, Ren et al. 2021;
    ZeRO-Infinity, Rajbhandari et al. 2021), or shard the model states over more GPUs (FSDP2). Each layout
    is its own lever (one layout per plan, EXCLUSIVE_LEVERS): ZeRO-Infinity can fit where ZeRO-Offload
    saves nothing (LoRA's optimizer states are small). DeepSpeed's CPU Adam replaces the optimizer, so
    neither goes with 8-bit AdamW."""
    out = []
    if w.optimizer != "adamw_8bit":
        out.append(ladder("zero-offload", [LEVERS["zero-offload"].rung(
            0, "DeepSpeed ZeRO-2 with the optimizer states on the CPU (ZeRO-Offload)",
            parallelism=(("recipe", "deepspeed"), ("zero_stage", 2), ("offload_optimizer", "cpu")))]))
        out.append(ladder("zero-infinity", [LEVERS["zero-infinity"].rung(
            0, "DeepSpeed ZeRO-3 with parameters and optimizer states on the CPU (ZeRO-Infinity)",
            parallelism=(("recipe", "deepspeed"), ("zero_stage", 3), ("offload_optimizer", "cpu"),
                         ("offload_params", "cpu")))]))
    out.append(ladder("fsdp2-gpus", [LEVERS["fsdp2-gpus"].rung(
        i, f"shard the model states over {n} GPUs (FSDP2)", parallelism=(("recipe", "fsdp2"), ("data_parallel", n)), n=n)
        for i, n in enumerate((2, 4, 8))]))
    return out


def _sequence_ladder(w) -> list:
    """Sequences (or prompts) halved, then quartered: a change of the data."""
    if w.seq_len < 256:
        return []
    key = "shorter-sequences" if w.mode != "inference" else "shorter-prompts"
    return [ladder(key, [LEVERS[key].rung(i, f"sequences of {w.seq_len // 2 ** (i + 1)} tokens",
                                          (("seq_len", w.seq_len // 2 ** (i + 1)),)) for i in range(2)])]


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
    while heap and len(plans) < q.limit and evaluations < MAX_EVALUATIONS:
        cost, _, state, parent_total = heapq.heappop(heap)
        if state != start:
            if any(all(s >= f for s, f in zip(state, fit)) for fit in fitting):
                continue                          # a superset of a plan that fits: never cheaper
            try:
                wl, pr, pa = apply_rungs(req, _chosen(levers, state))
                e = estimate(req.model, wl, pr, req.hardware, req.framework, pa)
            except InputError:
                continue
            evaluations += 1
            total = e.device_total_bytes
            if total >= parent_total:
                continue                          # the last change saved nothing: not advice
            if e.fits:
                fitting.append(state)
                plans.append(_plan(req, levers, state, cost, e, current_total))
                continue
        else:
            total = parent_total
        for nxt in _next_states(levers, exclusive, state):
            if nxt not in seen:
                seen.add(nxt)
                counter += 1
                step = sum(levers[j][1][m - 1].cost for j, m in enumerate(nxt) if m)
                heapq.heappush(heap, (step, counter, nxt, total))
    return {"plans": plans, "evaluated": evaluations, "levers": names,
            "complete": not heap or len(plans) >= q.limit,
            "message": "" if plans else "no combination of these changes fits this GPU: try more GPUs "
                                        "(the layout search) or a larger card"}


def _chosen(levers: list, state: tuple) -> list[Rung]:
    """The rungs a state of the search sets (rung index per lever; 0 = as given)."""
    return [levers[i][1][k - 1] for i, k in enumerate(state) if k]


def _next_states(levers: list, exclusive: list, state: tuple):
    """The states one rung further on one lever, except those that pull two exclusive levers (two layouts)."""
    for i, k in enumerate(state):
        if k < len(levers[i][1]):
            nxt = state[:i] + (k + 1,) + state[i + 1:]
            if not any(nxt[a] and nxt[b] for a, b in exclusive):
                yield nxt


def _plan(req, levers: list, state: tuple, cost: float, e, current_total: int) -> dict:
    """A plan that fits: its changes with their stated costs, its device total and what it saves."""
    total = e.device_total_bytes
    return {"changes": [{"lever": levers[i][0], "change": levers[i][1][k - 1].text, "cost": levers[i][1][k - 1].cost_text}
                        for i, k in enumerate(state) if k],
            "device_total_bytes": total, "headroom_bytes": req.hardware.memory_bytes - total,
            "saves_bytes": current_total - total, "cost": round(cost, 3),
            "host_bytes": e.host_bytes,           # offloaded states, per node
            "set": _patch(_chosen(levers, state)), "_estimate": e}     # the caller bands it, then drops it
