"""Solvers on one GPU: the largest batch and sequence that fit, and changes that make a run fit."""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError, MAX_TOKENS
from ..estimate import estimate
from ..training.context import seq_len_breakpoints
from ..units import largest as largest_fitting

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
    top = largest_fitting(lambda v: _fits(req, **{field: v}), lo, hi, doubling=True)
    return top if top >= lo else 0


def largest_parameters(req) -> int:
    """For a model given by its parameter count: the most parameters whose estimate fits the GPU
    (the ZeRO paper's Table 2 question), found by doubling then bisection."""
    def fits(n: int) -> bool:
        try:
            m = replace(req.model, parameters=n, largest_layer_parameters=min(req.model.largest_layer_parameters, n))
            return estimate(m, req.workload, req.precision, req.hardware, req.framework, req.parallelism).fits
        except InputError:
            return False
    return max(0, largest_fitting(fits, 1, MAX_PARAMETERS, doubling=True))


def suggestions(req, current_total: int) -> list[dict]:
    """Single changes to this configuration and the device memory each would need: every rung of the
    fit search's one-GPU ladders (plan/fit.py, one description of each change and its cost) taken alone;
    the layouts (offload, more GPUs) are the fit search's and the layout search's."""
    from .fit import apply_rungs, ladders, nested_patch
    out = []
    for _, rungs in ladders(req, layouts=False):
        for rung in rungs:
            try:
                wl, pr, pa = apply_rungs(req, [rung])
                e = estimate(req.model, wl, pr, req.hardware, req.framework, pa)
            except InputError:
                continue
            if e.device_total_bytes >= current_total:
                continue                    # a change that does not reduce memory is not advice
            out.append({"change": rung.text, "cost": rung.cost_text, "set": nested_patch([rung]),
                        "device_total_bytes": e.device_total_bytes, "saves_bytes": current_total - e.device_total_bytes,
                        "fits": e.fits, "verdict": e.verdict})
    out.sort(key=lambda d: d["device_total_bytes"])
    return out
