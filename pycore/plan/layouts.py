"""Layouts: every valid way to split a training run over N GPUs, ranked; and the fewest GPUs that fit.

A layout is dp x tp x pp x cp x ep = N with the constraints the recipe's framework enforces
(parallel/layout.py), a ZeRO stage the recipe supports and a recomputation mode. Each gets the
most loaded GPU's device total and a simple throughput proxy:

- pipeline bubble: (p - 1) / (v m + p - 1) of the step is idle (Narayanan et al. 2021, section 2.2);
- tensor-parallel traffic: 4 all-reduces of the layer's b s h activations a layer (2 forward, 2
  backward; Shoeybi et al. 2019, section 3), each moving 2 (t - 1)/t of its bytes, per micro-batch;
- whether the tensor x context parallel group crosses the node boundary (both exchange activations
  every layer: NVLink inside a node, the network outside);
- recomputation: full recomputes each forward (about 1/3 more compute), selective 2.7% (Korthikanti
  et al. 2022, section 5: 2.7% for GPT-3 175B).
relative_step_time = (1 + recompute) / (1 - bubble) x (2 if TP crosses nodes else 1): a ranking aid,
not a prediction of speed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InputError
from ..estimate import estimate
from ..parallel.layout import Parallelism
from ..schema import integer, spec
from ..units import dtype_bytes

RECOMPUTE_OVERHEAD = {"none": 0.0, "selective": 0.027, "full": 1 / 3}
CROSS_NODE_PENALTY = 2.0
ZERO_STAGES = {"hf": (0, 1, 2, 3), "deepspeed": (0, 1, 2, 3), "zero-paper": (0, 1, 2, 3), "fsdp2": (3,),
               "megatron": (0, 1), "playbook": (0,), "deepspeed-estimator": (2, 3)}
RECOMPUTES = ("none", "selective", "full")
MAX_GPUS = 1024
# GPU counts tried for "fewest GPUs": every count up to 8, then whole nodes of 8.
FEWEST_CANDIDATES = tuple(range(1, 9)) + tuple(range(16, MAX_GPUS + 1, 8))


@dataclass(frozen=True)
class PlanQuery:
    """What the layout search answers: with ``gpus``, every layout of that many GPUs; without, the
    fewest GPUs that fit (up to ``max_gpus``)."""

    gpus: int | None = spec(None, integer(1, MAX_GPUS * 64, nullable=True, doc="rank the layouts of this many GPUs"))
    global_batch: int | None = spec(None, integer(1, 1 << 24, nullable=True,
                                                  doc="sequences per optimizer step, over all data-parallel ranks"))
    max_gpus: int = spec(MAX_GPUS, integer(1, MAX_GPUS * 64, doc="largest GPU count the fewest-GPUs search tries"))
    limit: int = spec(50, integer(1, 100_000, doc="layouts returned, best first"))


def run_plan(req, q: PlanQuery) -> dict:
    """The plan answer: the recommended layout and the ranked layouts (for q.gpus, or for the fewest GPUs)."""
    if q.gpus is not None:
        rows = layouts(req, q.gpus, q.global_batch)
        out = {"question": "layouts", "gpus": q.gpus, "recommended": best(rows), "layouts": rows}
    else:
        out = {"question": "fewest", **fewest_gpus(req, q.global_batch, q.max_gpus)}
    out["count"] = len(out["layouts"])
    out["layouts"] = out["layouts"][:q.limit]
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def degree_sets(req, gpus: int):
    """(dp, tp, pp, cp, ep) with product ``gpus`` that the model allows."""
    m, w = req.model, req.workload
    recipe = req.parallelism.recipe
    tps = [t for t in _divisors(gpus) if m.n_heads % t == 0 and m.n_kv_heads % t == 0 and m.ffn_size % t == 0
           and (not m.n_shared_experts or m.shared_expert_ffn_size % t == 0)]
    if recipe == "hf" and w.mode != "full":
        tps = [1]
    for t in tps:
        for p in _divisors(gpus // t):
            if m.n_layers % p or (recipe == "hf" and p > 1 and w.mode == "inference"):
                continue
            for c in _divisors(gpus // (t * p)):
                if c > 1 and (w.seq_len % (2 * c) or w.attention == "eager" or recipe in ("hf", "deepspeed")):
                    continue
                for e in _divisors(gpus // (t * p * c)):
                    if e > 1 and (not m.n_experts or m.n_experts % e or recipe == "hf"):
                        continue
                    yield gpus // (t * p * c * e), t, p, c, e


def _throughput(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    m, w = req.model, req.workload
    p, v, t = par.pipeline_parallel, par.virtual_stages, par.tensor_parallel
    steps = max(1, par.micro_batches or accumulation)
    bubble = (p - 1) / (v * steps + p - 1) if p > 1 else 0.0
    act_bytes = micro * w.seq_len // par.context_parallel * m.hidden_size * dtype_bytes(req.precision.compute())
    tp_bytes = int(4 * 2 * (t - 1) / t * act_bytes * (m.n_layers // p) * steps) if t > 1 else 0
    # Tensor and context parallelism exchange activations every layer: across nodes that is slow.
    crosses = t * par.context_parallel > par.gpus_per_node
    recompute = RECOMPUTE_OVERHEAD[par.recompute or "none"]
    return {"bubble_fraction": round(bubble, 4), "tp_comm_bytes_per_step": tp_bytes, "tp_crosses_node": crosses,
            "recompute_overhead": round(recompute, 4),
            "relative_step_time": round((1 + recompute) / (1 - bubble) * (CROSS_NODE_PENALTY if crosses else 1), 4)}


def layouts(req, gpus: int, global_batch: int | None = None, limit: int | None = None) -> list[dict]:
    """Every valid layout of ``gpus`` GPUs, the fitting ones first, each group by headroom."""
    base = req.parallelism
    w = req.workload
    rows = []
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
        for stage in stages:
            if p > 1 and stage > 1 and base.recipe == "deepspeed":
                continue
            for recompute in RECOMPUTES:
                par = replace(base, data_parallel=dp, tensor_parallel=t, pipeline_parallel=p, context_parallel=c,
                              expert_parallel=e, zero_stage=stage, recompute=recompute, sequence_parallel=t > 1,
                              gradient_accumulation=accumulation, micro_batches=None, pipeline_layers=None)
                try:
                    est = estimate(req.model, replace(w, batch_size=micro), req.precision, req.hardware,
                                   req.framework, par)
                except InputError:
                    continue
                rows.append(_row(req, par, est, micro, accumulation))
    rows.sort(key=lambda r: (not r["fits"], -r["headroom_bytes"]))
    return rows[:limit] if limit else rows


def _row(req, par: Parallelism, est, micro: int, accumulation: int) -> dict:
    return {"gpus": par.gpus, "degrees": {"data": par.data_parallel, "tensor": par.tensor_parallel,
                                          "pipeline": par.pipeline_parallel, "context": par.context_parallel,
                                          "expert": par.expert_parallel},
            "zero_stage": par.zero_stage, "recompute": par.recompute, "sequence_parallel": par.sequence_parallel,
            "micro_batch": micro, "gradient_accumulation": accumulation,
            "device_total_bytes": est.device_total_bytes, "headroom_bytes": req.hardware.memory_bytes - est.device_total_bytes,
            "fits": est.fits, "verdict": est.verdict, "host_bytes": est.host_bytes, "not_estimated": list(est.not_estimated),
            "most_loaded": (est.layout.get("most_loaded") or {}).get("description", ""),
            "throughput": _throughput(req, par, micro, accumulation),
            "parallelism": {"recipe": par.recipe, "data_parallel": par.data_parallel,
                            "tensor_parallel": par.tensor_parallel, "pipeline_parallel": par.pipeline_parallel,
                            "context_parallel": par.context_parallel, "expert_parallel": par.expert_parallel,
                            "sequence_parallel": par.sequence_parallel, "zero_stage": par.zero_stage,
                            "recompute": par.recompute, "gradient_accumulation": accumulation}}


def best(rows: list[dict]) -> dict | None:
    """The fitting layout with the best throughput proxy (then the most headroom)."""
    fitting = [r for r in rows if r["fits"]]
    if not fitting:
        return None
    return min(fitting, key=lambda r: (r["throughput"]["relative_step_time"], -r["headroom_bytes"]))


def fewest_gpus(req, global_batch: int | None = None, max_gpus: int = MAX_GPUS) -> dict:
    """The smallest GPU count with a fitting layout, that layout, and every layout of that count."""
    for n in FEWEST_CANDIDATES:
        if n > max_gpus:
            break
        rows = layouts(req, n, global_batch)
        choice = best(rows)
        if choice is not None:
            return {"gpus": n, "recommended": choice, "layouts": rows}
    return {"gpus": None, "recommended": None, "layouts": [],
            "message": f"no layout of up to {max_gpus} GPUs fits; consider LoRA, offload or a larger GPU"}
