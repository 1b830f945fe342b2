"""Set a user's measurement beside the estimate of the same configuration.

Term by term where the text allows: ``max_memory_allocated`` against the estimated peak of live
tensors, ``max_memory_reserved`` against what the caching allocator holds, their difference against
the allocator-reserve term, ``nvidia-smi`` against the device total, and nvidia-smi less reserved
against the CUDA context term.

A gap is then explained by recomputing the same request under each assumption the user may not
have stated (the attention kernel, checkpointing, the library versions whose rules change the peak,
the optimizer implementation, the cache) and ranking them by how much of the gap each closes; the
CUDA context and the allocator are read off the measurement itself. Nothing here is a guess that
the core cannot recompute.
"""

from __future__ import annotations

import copy

from ..units import MiB
from .parse import Measurement, Reading

# Where the answer has no band for a quantity (the allocator-reserve and outside-the-allocator rows,
# an answer from before bands per quantity): a gap smaller than this is agreement.
AGREE_FRACTION = 0.02
# Which band (the answer's "bands", pycore/accuracy/verdicts.py) each compared quantity is judged by.
ROW_BANDS = {"peak allocated (live tensors)": "peak_allocated",
             "peak reserved (the caching allocator's segments)": "reserved",
             "device total (nvidia-smi)": "device_total"}
# An alternative is named when it closes at least this share of the gap on the peak allocation.
CLOSES_AT_LEAST = 0.5
MAX_EXPLANATIONS = 3
# The context read off nvidia-smi is named when it differs from the assumed one by more than this.
CONTEXT_SLACK_BYTES = 128 * MiB


def _row(quantity: str, measured, estimated: int, note: str = "", lower_bound: bool = False, band=None) -> dict:
    gap = measured.bytes - estimated
    row = {"quantity": quantity, "measured_bytes": measured.bytes, "estimated_bytes": estimated, "gap_bytes": gap,
           "gap_fraction": round(gap / measured.bytes, 4) if measured.bytes else None,
           "source": measured.source, "resolution_bytes": measured.resolution_bytes,
           "measured_is_lower_bound": lower_bound, "note": note}
    if band and "low_bytes" in band:
        row["band"] = {"low_bytes": band["low_bytes"], "high_bytes": band["high_bytes"]}
    return row


def inside(row: dict, tol: float = AGREE_FRACTION) -> bool:
    """Whether the measurement lies in the estimate's band for its quantity (widened by the reading's
    resolution: nvidia-smi counts MiB); without a band, whether the gap is under ``tol``."""
    band = row.get("band")
    if band is None:
        return abs(row["gap_fraction"] or 0) <= tol
    slack = row.get("resolution_bytes") or 0
    return band["low_bytes"] - slack <= row["measured_bytes"] <= band["high_bytes"] + slack


def rows_for(result: dict, meas: Measurement) -> list[dict]:
    bands = result.get("bands") or {}
    rows = []
    alloc = meas.peak_allocated or meas.current_allocated
    reserved = meas.peak_reserved or meas.current_reserved
    used = max(meas.device_used, key=lambda r: r.bytes) if meas.device_used else None
    if alloc and "peak_allocated_bytes" in result:
        rows.append(_row("peak allocated (live tensors)", alloc, result["peak_allocated_bytes"],
                         lower_bound=meas.peak_allocated is None, band=bands.get("peak_allocated")))
    if reserved and "reserved_bytes" in result:
        rows.append(_row("peak reserved (the caching allocator's segments)", reserved, result["reserved_bytes"],
                         lower_bound=meas.peak_reserved is None, band=bands.get("reserved")))
    if alloc and reserved and "reserved_bytes" in result and "peak_allocated_bytes" in result:
        slack = Reading(max(0, reserved.bytes - alloc.bytes), "reserved − allocated, as measured",
                        max(alloc.resolution_bytes, reserved.resolution_bytes))
        if slack.bytes:
            rows.append(_row("allocator reserve (reserved − allocated)", slack,
                             result["reserved_bytes"] - result["peak_allocated_bytes"]))
    if used:
        rows.append(_row("device total (nvidia-smi)", used, result["device_total_bytes"],
                         note="nvidia-smi shows use when it ran; at the peak it includes the CUDA context",
                         band=bands.get("device_total")))
        context = result.get("assumptions", {}).get("cuda_context_bytes")
        if reserved and context is not None and used.bytes > reserved.bytes:
            outside = Reading(used.bytes - reserved.bytes, "nvidia-smi − reserved, as measured",
                              max(used.resolution_bytes, reserved.resolution_bytes))
            rows.append(_row("outside the allocator (CUDA context, kernels, libraries)", outside, context))
    return rows


def _tolerance(rows: list[dict]) -> float:
    """The main row's band as a fraction of its estimate (its wider side), for the page's sentence."""
    if not rows:
        return AGREE_FRACTION
    band, est = rows[0].get("band"), rows[0]["estimated_bytes"]
    if band is None or not est:
        return AGREE_FRACTION
    return round(max(est - band["low_bytes"], band["high_bytes"] - est) / est, 4)


def agreement_text(rows: list[dict]) -> str:
    """What counts as agreement for the main row, in words."""
    if not rows:
        return ""
    band = rows[0].get("band")
    if band is None:
        return f"within ±{100 * AGREE_FRACTION:.0f}% counts as agreement"
    return (f"agreement is inside the estimate's band for {rows[0]['quantity']}: {band['low_bytes'] / 2 ** 30:.2f} to "
            f"{band['high_bytes'] / 2 ** 30:.2f} GiB")


def _variants(data: dict, schema_fields: dict) -> list[tuple[str, str, dict]]:
    """(assumption, what it changes, request) for each unstated assumption worth recomputing."""
    w = data.get("workload") or {}
    mode = w.get("mode", "full")
    out = []

    def variant(name: str, text: str, path: tuple, value):
        d = copy.deepcopy(data)
        d.pop("measured", None)
        d["solve"] = False
        node = d
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        out.append((name, text, d))

    attention = w.get("attention", "sdpa")
    for choice in (schema_fields.get("workload.attention", {}).get("choices") or []):
        if choice != attention:
            variant("attention kernel", f"attention {choice!r} instead of {attention!r}", ("workload", "attention"), choice)
    if mode in ("full", "lora", "qlora"):
        ckpt = bool(w.get("gradient_checkpointing", False))
        variant("gradient checkpointing", "gradient checkpointing " + ("off" if ckpt else "on"),
                ("workload", "gradient_checkpointing"), not ckpt)
        variant("torch version", "torch 1.13: zero_grad() keeps the gradients (set_to_none=False before 2.0)",
                ("framework", "torch"), "1.13")
        optimizer = w.get("optimizer", "adamw")
        for other in ("adamw", "adamw_single", "adamw_fused"):
            if optimizer in ("adamw", "adamw_single", "adamw_fused") and other != optimizer:
                variant("optimizer implementation", f"optimizer {other!r} instead of {optimizer!r}",
                        ("workload", "optimizer"), other)
    if mode == "inference" and w.get("new_tokens", 0):
        variant("transformers version", "transformers 4.35: the legacy tuple cache (two copies while concatenating)",
                ("framework", "transformers"), "4.35")
        if w.get("cache_implementation", "dynamic") != "static":
            variant("KV cache", "a static cache, preallocated to the full length", ("workload", "cache_implementation"),
                    "static")
    return out


def explain(data: dict, result: dict, rows: list[dict], meas: Measurement, estimate_fn, schema_fields: dict) -> list[dict]:
    """The assumptions that most likely explain the gaps, most likely first."""
    out = []
    alloc = next((r for r in rows if r["quantity"].startswith("peak allocated")), None)
    if alloc and not inside(alloc) and not alloc["measured_is_lower_bound"]:
        gap = abs(alloc["gap_bytes"])
        tried = []
        for name, text, request in _variants(data, schema_fields):
            resp = estimate_fn(request)
            if resp.get("status") != "ok" or "peak_allocated_bytes" not in resp["result"]:
                continue
            alt = resp["result"]["peak_allocated_bytes"]
            closes = 1 - abs(alloc["measured_bytes"] - alt) / gap
            if closes >= CLOSES_AT_LEAST:
                tried.append({"assumption": name, "change": text, "estimated_bytes": alt,
                              "closes_fraction": round(closes, 3),
                              "text": f"{text}: the estimate becomes {alt / 2 ** 30:.2f} GiB "
                                      f"({closes:.0%} of the gap on the peak allocation)"})
        tried.sort(key=lambda t: -t["closes_fraction"])
        seen = set()
        for t in tried:                       # sdpa and flash give the same peak: name the first
            if (t["assumption"], t["estimated_bytes"]) not in seen and len(seen) < MAX_EXPLANATIONS:
                seen.add((t["assumption"], t["estimated_bytes"]))
                out.append(t)
        if not tried:
            side = "higher" if alloc["gap_bytes"] > 0 else "lower"
            out.append({"assumption": "the run itself", "change": "",
                        "text": f"no single stated assumption explains a measured peak {side} by "
                                f"{abs(alloc['gap_fraction']):.0%}: check that the measurement covers only this step "
                                "(torch.cuda.reset_peak_memory_stats() before it; no second model, evaluation or "
                                "data on the GPU) and that batch, length and precision are the run's"})
    outside = next((r for r in rows if r["quantity"].startswith("outside the allocator")), None)
    if outside and abs(outside["gap_bytes"]) > CONTEXT_SLACK_BYTES:
        mib = outside["measured_bytes"] // MiB
        out.append({"assumption": "CUDA context", "change": f"--cuda-context-mib {mib}",
                    "estimated_bytes": outside["estimated_bytes"],
                    "text": f"outside PyTorch's allocator the run used {mib} MiB; the estimate assumes "
                            f"{outside['estimated_bytes'] // MiB} MiB (framework.cuda_context_bytes sets it; NCCL, "
                            "cuDNN workspaces and other processes on the GPU count here too)"})
    slack = next((r for r in rows if r["quantity"].startswith("allocator reserve")), None)
    # The estimated reserve follows the estimated peak: it says something only where the peak agrees.
    peak_agrees = alloc is not None and inside(alloc)
    if slack and peak_agrees and abs(slack["gap_bytes"]) > max(512 * MiB, AGREE_FRACTION * slack["measured_bytes"]):
        more = slack["gap_bytes"] > 0
        out.append({"assumption": "allocator settings", "change": "",
                    "text": ("the caching allocator held more beyond live tensors than estimated: fragmentation "
                             "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True reduces it; a non-releasable peak of "
                             f"{meas.peak_non_releasable.bytes / 2 ** 30:.2f} GiB shows it)" if meas.peak_non_releasable
                             else "the caching allocator held more beyond live tensors than estimated: fragmentation "
                                  "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True reduces it)")
                    if more else
                    "the caching allocator held less beyond live tensors than estimated: expandable segments "
                    "or a memory fraction are probably set"})
    if meas.cuda_ooms:
        out.insert(0, {"assumption": "out of memory", "change": "",
                       "text": f"the run hit CUDA out-of-memory {meas.cuda_ooms} time(s): its peak is where it failed, "
                               "not the step's full need"})
    return out


def overall(result: dict, rows: list[dict]) -> str:
    """agrees / measured higher / measured lower, on the most telling row."""
    if not rows:
        return "nothing to compare"
    main = rows[0]
    frac = main["gap_fraction"] or 0
    if main["measured_is_lower_bound"] and frac < 0:
        return "agrees (the measurement is a lower bound)"
    if inside(main):                     # inside the band of the quantity it compares (issue 22)
        return "agrees"
    return "measured higher" if frac > 0 else "measured lower"


def check(data: dict, result: dict, meas: Measurement, estimate_fn, schema_fields: dict) -> dict:
    from .record import calibration_record
    rows = rows_for(result, meas)
    record, why = calibration_record(data, result, meas)
    return {"formats": list(meas.formats), "rows": rows, "verdict": overall(result, rows),
            "tolerance_fraction": _tolerance(rows), "agreement": agreement_text(rows),
            "explanations": explain(data, result, rows, meas, estimate_fn, schema_fields),
            "notes": list(meas.notes), "record": record, "record_note": why}
