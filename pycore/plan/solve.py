"""Solvers on one GPU: the largest batch and sequence that fit, and changes that make a run fit."""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError, MAX_TOKENS
from ..estimate import estimate
from ..training.context import seq_len_breakpoints

SEARCH_LIMIT = 1 << 20
MAX_PARAMETERS = 10 ** 15       # the ModelSize field's own limit


def _fits(req, **changes) -> bool:
    try:
        w = replace(req.workload, **changes)
        return estimate(req.model, w, req.precision, req.hardware, req.framework, req.parallelism).fits
    except InputError:
        return False


def largest(req, field: str) -> int:
    """The largest value of ``field`` (batch_size or seq_len) that fits; 0 if even 1 does not."""
    return search_largest(req, field)["value"]


def search_largest(req, field: str) -> dict:
    """The largest value of ``field`` that fits, and the values below it that do not.

    Memory never falls as batch or length grows while the step's discrete choices stay the same
    (tested), so within each range between breakpoints (where the attention kernel changes) a
    doubling search then bisection finds the boundary in O(log n) estimates. The answer is the
    largest fitting value over all ranges; ``gaps`` lists the ranges below it that do not fit.
    """
    other = req.workload.seq_len if field == "batch_size" else req.workload.batch_size
    limit = min(SEARCH_LIMIT, MAX_TOKENS // max(1, other))
    cuts = seq_len_breakpoints(req.model) if field == "seq_len" else ()
    starts = [1] + sorted(c for c in cuts if 1 < c <= limit)
    ranges = [(lo, (starts[i + 1] - 1) if i + 1 < len(starts) else limit) for i, lo in enumerate(starts)]
    best, gaps = 0, []
    for lo, hi in ranges:
        top = _largest_in(req, field, lo, hi)
        if top:
            if best and top > best and best < lo - 1:
                gaps.append([best + 1, lo - 1])
            best = top
        elif best:
            gaps.append([lo, hi])
    gaps = [g for g in gaps if g[1] < best]
    return {"value": best, "gaps": gaps}


def _largest_in(req, field: str, lo: int, hi: int) -> int:
    """Largest value in [lo, hi] that fits, assuming memory does not fall within the range; 0 if none."""
    if not _fits(req, **{field: lo}):
        return 0
    step = 1
    good, bad = lo, None
    while good < hi:
        probe = min(hi, lo + step)
        if _fits(req, **{field: probe}):
            good = probe
            step *= 2
        else:
            bad = probe
            break
    if bad is None:
        return good
    while bad - good > 1:
        mid = (good + bad) // 2
        if _fits(req, **{field: mid}):
            good = mid
        else:
            bad = mid
    return good


def largest_parameters(req) -> int:
    """For a model given by its parameter count: the most parameters whose estimate fits the GPU
    (the ZeRO paper's Table 2 question), found by doubling then bisection."""
    def fits(n: int) -> bool:
        try:
            m = replace(req.model, parameters=n, largest_layer_parameters=min(req.model.largest_layer_parameters, n))
            return estimate(m, req.workload, req.precision, req.hardware, req.framework, req.parallelism).fits
        except InputError:
            return False
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= MAX_PARAMETERS and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_PARAMETERS + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def suggestions(req, current_total: int) -> list[dict]:
    """Single changes to this configuration and the device memory each would need."""
    w, p = req.workload, req.precision
    options = []
    if w.mode != "inference":
        if not w.gradient_checkpointing:
            options.append(("turn on gradient checkpointing", dict(workload=dict(gradient_checkpointing=True))))
        if w.mode == "full":
            options.append(("fine-tune with LoRA (rank 16, attention projections) instead of full training",
                            dict(workload=dict(mode="lora"))))
            options.append(("fine-tune with QLoRA (4-bit base) instead of full training",
                            dict(workload=dict(mode="qlora"), precision=dict(weights="bf16", autocast=None))))
            if w.optimizer == "adamw":
                options.append(("use fused AdamW (no full-size step temporary)", dict(workload=dict(optimizer="adamw_fused"))))
            if w.optimizer in ("adamw", "adamw_fused"):
                options.append(("use 8-bit AdamW", dict(workload=dict(optimizer="adamw_8bit"))))
            if p.autocast:
                options.append((f"train in pure {p.autocast} instead of mixed precision",
                                dict(precision=dict(weights=p.autocast, autocast=None))))
        if w.mode == "lora":
            options.append(("use QLoRA (4-bit base)", dict(workload=dict(mode="qlora"))))
        if w.attention == "eager":
            options.append(("use SDPA attention (no s x s matrices kept)", dict(workload=dict(attention="sdpa"))))
    else:
        if p.weights in ("fp32", "bf16", "fp16"):
            options.append(("quantise weights to int8", dict(precision=dict(weights="int8"))))
            options.append(("quantise weights to int4", dict(precision=dict(weights="int4"))))
        if (p.kv_cache or "bf16") not in ("fp8", "int8"):
            options.append(("store the KV cache in fp8", dict(precision=dict(kv_cache="fp8"))))
        if w.attention == "eager":
            options.append(("use SDPA attention", dict(workload=dict(attention="sdpa"))))
    if w.batch_size > 1:
        options.append((f"halve the batch to {w.batch_size // 2}", dict(workload=dict(batch_size=w.batch_size // 2))))
    out = []
    for text, change in options:
        try:
            wl = replace(w, **change.get("workload", {}))
            pr = replace(p, **change.get("precision", {}))
            e = estimate(req.model, wl, pr, req.hardware, req.framework, req.parallelism)
        except InputError:
            continue
        if e.device_total_bytes >= current_total:
            continue                    # a change that does not reduce memory is not advice
        out.append({"change": text, "set": change, "device_total_bytes": e.device_total_bytes,
                    "saves_bytes": current_total - e.device_total_bytes, "fits": e.fits})
    out.sort(key=lambda d: d["device_total_bytes"])
    return out
