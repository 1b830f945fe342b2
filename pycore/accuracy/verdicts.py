"""Bands per quantity and the verdict they give (issue 22).

Each quantity an answer states - the allocated peak, what the caching allocator reserves, the device
total nvidia-smi shows - gets its own band, from the errors of that quantity on measured runs of the
same kind (pycore/data/error_bands.json, section "quantities", written by scripts/calibrate.py --bands).

Exact terms carry no band. Weights, optimizer states, gradients, framework buffers, autocast weight
copies and the KV cache have sizes that follow from the model and the dtypes (the parameter counts
match the calibration runs to the parameter); only the modelled terms (activations, logits, the
step's temporaries, the allocator's reserve, the CUDA context) can be wrong. So a band is

    low  = estimate + low_fraction  * scale          (never below the exact terms)
    high = estimate + high_fraction * scale

where ``scale`` is what the quantity's error grows with: for the allocated peak, the modelled terms
at the peak; for the reserve and the device total, the step's churn (everything but the weights,
optimizer states and framework buffers, which are allocated once and never freed), because the
allocator's reserve comes from blocks freed and allocated again.

The device total is what the allocator reserves plus what lies outside it (the CUDA context), two terms
modelled apart, so its band is theirs added: the reserve's edges plus the context's spread, the lowest and
highest error of the context in bytes over the measured runs (section "context"). The context does not grow
with the step; a share of churn fitted for the whole device total gave small runs too little of it.

The verdict: "does not fit" when the exact terms alone exceed the card or the device total's lower
edge does; "fits" when its upper edge fits; "at risk" in between. ``fits`` is ``verdict == "fits"``.
"""

from __future__ import annotations

from .bands import _bands, reference_band, run_class, serving_band, verdict, MIN_RUNS

QUANTITIES = ("peak_allocated", "reserved", "device_total")
# Terms whose size follows exactly from the model, the dtypes and the shapes (term_basis "source").
EXACT_CATEGORIES = ("weights", "optimizer states", "gradients", "KV cache", "framework buffers",
                    "autocast weight copies")
# Allocated once and held for the whole run: they never return a block to the allocator's cache.
# Optimizer states are not among them: created inside the first optimizer.step(), they take blocks the
# first step's activations freed, and the second step's activations then need new segments
# (leave-one-family-out coverage of the reserve's band: 33/44 runs with them counted resident, 39/44
# without; scripts/calibrate.py).
RESIDENT_CATEGORIES = ("weights", "framework buffers")
# Kinds of run no measurement covers yet (issue 22, item 7): their bands borrow the broader levels'
# and say "unverified".
UNVERIFIED_OPTIMIZERS = {"adamw_8bit": "8-bit AdamW", "paged_adamw_8bit": "8-bit AdamW", "lion": "Lion",
                         "adafactor": "Adafactor", "adafactor_hf": "Adafactor"}
MEASURED_MOE_TYPES = ("olmoe",)      # the MoE in shared/calibration
# Before scripts/calibrate.py has written the quantities' bands: the modelled terms may be off by
# their own size either way.
UNFITTED_FRACTIONS = (-1.0, 1.0)
# The quantities whose bands are fitted as fractions of their scale; the device total's is composed.
FITTED_QUANTITIES = ("peak_allocated", "reserved")


def _sum(snapshot, categories, inside: bool) -> int:
    return sum(sum(items.values()) for cat, items in snapshot.parts if (cat in categories) == inside)


def exact_bytes(e) -> int:
    """The exact terms at the moment they are largest: a floor no band goes below."""
    return max((_sum(s, EXACT_CATEGORIES, True) for s in e.snapshots), default=0)


def modelled_bytes(e) -> int:
    """The most modelled terms any moment holds: what the allocated peak's error grows with (the peak is
    the largest moment, and a moment the estimate puts below it may be the measured peak: the optimizer
    step of a model whose modelled terms are there zero, measured higher in backward)."""
    return max((max(0, s.total() - _sum(s, EXACT_CATEGORIES, True)) for s in e.snapshots), default=0)


def churn_bytes(e) -> int:
    """The most the step holds beyond its resident tensors: what the reserve's error grows with."""
    return max((max(0, s.total() - _sum(s, RESIDENT_CATEGORIES, True)) for s in e.snapshots), default=0)


def estimates(e) -> dict:
    return {"peak_allocated": e.peak_allocated_bytes, "reserved": e.reserved_bytes,
            "device_total": e.device_total_bytes}


def scales(e) -> dict:
    churn = churn_bytes(e)
    return {"peak_allocated": modelled_bytes(e), "reserved": churn, "device_total": churn}


def unverified_reasons(e) -> list[str]:
    """What in this run no measured run covers (issue 22's list of GPU measurements still owed)."""
    w, m, p = e.workload, e.model, e.precision
    out = []
    if w.mode == "qlora":
        out.append("QLoRA")
    if w.mode != "inference" and w.optimizer in UNVERIFIED_OPTIMIZERS:
        out.append(UNVERIFIED_OPTIMIZERS[w.optimizer])
    if w.mode == "inference" and p.quant_format is not None:
        out.append("quantised inference (the quantised kernels' workspaces follow the libraries' source and "
                   "optimum's GPTQ benchmark, accuracy page)")
    elif w.mode == "inference" and p.weights in ("int8", "int4", "fp8"):
        out.append("int8/int4/fp8 inference")
    model_type = getattr(m, "model_type", "") or ""
    if model_type.startswith("gemma3"):
        out.append("Gemma 3")
    if getattr(m, "n_experts", 0) and model_type not in MEASURED_MOE_TYPES:
        out.append("a mixture of experts other than OLMoE's shape (Mixtral-shaped MoE)")
    if getattr(m, "kv_lora_rank", 0):
        out.append("multi-head latent attention (MLA)")
    if getattr(m, "head", "") in ("sequence-classification", "token-classification", "reward"):
        out.append("a classification head")
    return out


def levels(cls: str) -> list[str]:
    """A class and its broader levels, most specific first: ``full/checkpointing``, ``full``, ``all``."""
    parts = cls.split("/") if cls and cls != "all" else []
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)] + ["all"]


# A level's band also needs its runs to come from this many model families: errors of one or two families
# say little of how far another family may be off. The same threshold as MIN_RUNS, applied to families
# (leave-one-family-out coverage of the reserve's band: 39/44 at 6.4% median half-width needing runs only,
# 40/44 at 6.9% needing 3 families, 41/44 at 8.0% needing 4; scripts/calibrate.py).
MIN_FAMILIES = MIN_RUNS


def level_entry(quantity: str, cls: str, table: dict | None = None) -> tuple[str, dict] | tuple[None, None]:
    """The most specific level of ``cls`` with at least MIN_RUNS measured runs of ``quantity`` from at least
    MIN_FAMILIES model families."""
    table = (_bands().get("quantities", {}) if table is None else table).get(quantity, {})
    for level in levels(cls):
        entry = table.get(level)
        if entry and entry["runs"] >= MIN_RUNS and entry.get("families", MIN_FAMILIES) >= MIN_FAMILIES:
            return level, entry
    return None, None


def is_multi_gpu(e) -> bool:
    return bool(e.layout) and (e.layout.get("gpus", 1) > 1 or e.layout.get("recipe", "hf") != "hf")


def band_class(e) -> str:
    kernel = e.context.kernel if e.context else None
    return run_class(e.workload.mode, e.model.family, kernel)


def quantity_class(quantity: str, e) -> str:
    """The kind of run a quantity's band is fitted over. The allocated peak: mode / model family /
    attention kernel (what sets the activations). The reserve and the device total: the kind of step
    whose share models the reserve (training/allocator.py RESERVE_KINDS: inference, training without
    checkpointing, full training with checkpointing, a frozen base with checkpointing), so full and LoRA
    runs without checkpointing, one share, are one class (leave-one-family-out coverage of the device
    total 38/44 with them pooled, 37/44 apart, before the device band became the reserve's plus the context's;
    scripts/calibrate.py)."""
    if quantity == "peak_allocated":
        return band_class(e)
    return e.reserve_kind


def quantity_bands(e) -> dict:
    """{quantity: {low_bytes, high_bytes, ...}} for a single-GPU or multi-GPU estimate."""
    est, floor = estimates(e), exact_bytes(e)
    if is_multi_gpu(e):
        # Not yet refitted per quantity: the published references' error of the total, which is a share
        # of the total, applied only as far as the modelled terms reach (exact terms carry no band: a
        # model given by its parameter count, all model states, gets none).
        ref = reference_band("total", "multi-GPU peaks and the recipes' own formulas")
        pct = ref.get("pct") or 0
        out = {}
        for q, v in est.items():
            half = min(int(v * pct / 100), max(0, v - floor))
            out[q] = {"low_bytes": max(min(v, floor), v - half), "high_bytes": v + half, "estimate_bytes": v,
                      "exact_bytes": floor, "status": ref["status"], "basis": ref["basis"]}
        return out
    sc = scales(e)
    reasons = unverified_reasons(e)
    out = {}
    for q in QUANTITIES:
        cls = quantity_class(q, e)
        level, entry = level_entry("reserved" if q == "device_total" else q, cls)
        out[q] = {"estimate_bytes": est[q], "exact_bytes": floor, "scale_bytes": sc[q],
                  "status": "unverified" if reasons or not entry else "measured",
                  "class": cls, "level": level or "", "runs": entry["runs"] if entry else 0}
        if reasons:
            out[q]["unverified"] = reasons
    for q, (low, high) in band_edges(out).items():
        out[q].update(low_bytes=low, high_bytes=high)
    return out


def band_edges(bands: dict, table: dict | None = None) -> dict:
    """{quantity: (low, high)} for one estimate's bands (estimate, scale, exact floor and class of each
    quantity) under a fitted table (default: error_bands.json's): the allocated peak and the reserve move
    by their fitted fractions of their scale; the device total is the reserve's edges plus the context's
    spread. What the allocator reserves holds the live tensors, and the device total holds what it reserves."""
    table = _bands().get("quantities", {}) if table is None else table
    out = {}
    for q in FITTED_QUANTITIES:
        b = bands[q]
        _, entry = level_entry(q, b["class"], table)
        fr = (entry["low"], entry["high"]) if entry else UNFITTED_FRACTIONS
        out[q] = edges(b["estimate_bytes"], b.get("scale_bytes", 0), b.get("exact_bytes", 0), fr)
    res, dev = bands["reserved"], bands["device_total"]
    (r_low, r_high), peak_low = out["reserved"], out["peak_allocated"][0]
    r_low = max(r_low, min(res["estimate_bytes"], peak_low))
    context = dev["estimate_bytes"] - res["estimate_bytes"]
    spread = table.get("context") or {"low": -context, "high": context}
    low = max(min(dev["estimate_bytes"], r_low), min(dev["estimate_bytes"], r_low + context + spread["low"]))
    out["reserved"] = (r_low, r_high)
    out["device_total"] = (low, max(dev["estimate_bytes"], r_high + context + spread["high"]))
    return out


def edges(estimate: int, scale: int, floor: int, fractions: tuple) -> tuple[int, int]:
    """(low, high): the estimate moved by the band's fractions of its scale; never below the exact
    terms (unless the estimate itself is), never on the wrong side of the estimate."""
    lo, hi = fractions
    low = min(estimate, max(floor, estimate + int(lo * scale)))
    return low, max(estimate, estimate + int(hi * scale))


def verdict_of(bands: dict, capacity: int, exact: int) -> str:
    """does not fit (exact terms or the lower edge over the card), fits (the upper edge fits), at risk."""
    total = bands["device_total"]
    if exact > capacity or total["low_bytes"] > capacity:
        return "does not fit"
    if total["high_bytes"] <= capacity:
        return "fits"
    return "at risk"


def estimate_verdict(e) -> str:
    return verdict_of(quantity_bands(e), e.hardware.memory_bytes, exact_bytes(e))


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def device_band_summary(band: dict, bands: dict, device_total: int) -> dict:
    """The answer's one-line band (the ``error_band`` the page shows and older callers read), now the
    device total's band: ``pct`` is its wider side as a percentage of the estimate."""
    total = bands["device_total"]
    below, above = device_total - total["low_bytes"], total["high_bytes"] - device_total
    pct = _pct(max(below, above), device_total)
    out = {**band, "pct": pct, "low_pct": _pct(below, device_total), "high_pct": _pct(above, device_total)}
    if "scale_bytes" not in total:               # a multi-GPU layout: the published references' band
        return out
    out.update(level=total["level"], runs=total["runs"])
    level = total["level"] or "no measured run"
    spread = _bands().get("quantities", {}).get("context")
    context = (f", plus the CUDA context's spread over {spread['runs']} runs ({spread['low'] / 2**20:+.0f} to "
               f"{spread['high'] / 2**20:+.0f} MiB)") if spread else ""
    basis = (f"device total −{out['low_pct']:g}% / +{out['high_pct']:g}%: the reserve's largest errors over "
             f"{total['runs']} measured runs ({level}) on the modelled terms{context}; weights, optimizer states, "
             f"gradients and other buffers of known size carry no band")
    if total["level"] != total.get("class"):
        basis = f"no measured run of exactly this kind; {basis}"
    out["basis"] = basis
    if total.get("unverified"):
        out["status"] = "unverified"
        out["unverified"] = total["unverified"]
        out["basis"] += "; unverified: no run of ours measures " + ", ".join(total["unverified"])
    return out


def serving_bands(band: dict, device_total: int) -> dict:
    """A serving engine's answer: its one band is on the device total (vLLM and SGLang size their pool
    to the budget, so for them it bounds the pool, not the fit; pycore/accuracy/bands.py serving_band)."""
    pct = band.get("pct") or 0
    return {"device_total": {"low_bytes": int(device_total * (1 - pct / 100)),
                             "high_bytes": int(device_total * (1 + pct / 100)), "estimate_bytes": device_total,
                             "status": band.get("status", ""), "applies_to": band.get("applies_to", "device_total")}}


# vLLM and SGLang size their KV pool to the budget: their band is on the pool and its tokens, and whether
# the deployment fits is the point estimate's (the pool takes what the budget leaves).
POOL_SIZING_ENGINES = ("vllm", "sglang")


def serving_error_band(e) -> dict:
    """A serving answer's band (bands.serving_band): llama.cpp's from its compute buffer's share of the
    device total; vLLM's and SGLang's applied to the KV tokens."""
    compute = sum(c.bytes for c in e.device.children if c.name == "compute buffer")
    band = serving_band(e.engine, e.device_total_bytes, compute)
    return {**band, "applies_to": "kv_cache_tokens"} if e.engine in POOL_SIZING_ENGINES else band


def serving_verdict(e) -> str:
    """The verdict of a serving answer (pycore.serving.result.ServingEstimate), which the serving searches
    judge their candidates by as well: "does not start" on the engine's refusal; for vLLM and SGLang the
    point estimate against the card; for llama.cpp the device total's band (bands.verdict: "fits" only when
    its upper edge fits, "at risk" when the band straddles the card)."""
    if not e.starts:
        return "does not start"
    if e.engine in POOL_SIZING_ENGINES:
        return "fits" if e.device_total_bytes <= e.gpu_memory_bytes else "does not fit"
    return verdict(e.device_total_bytes, e.gpu_memory_bytes, serving_error_band(e))
