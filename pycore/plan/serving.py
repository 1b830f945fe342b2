"""Serving searches: the longest context for N requests, the most requests at a length, the
smallest GPU or GPU count for a target, and the best GGUF preset and -ngl for a card.

Every answer is found by running the engine's own estimate (pycore.serving.engines) on changed
settings, so it follows the same rules as a single estimate. KV capacity is monotonic in each of
the settings searched, so the searches are bisections.
"""

from __future__ import annotations

from dataclasses import replace

from ..accuracy.verdicts import serving_error_band
from ..data.catalog import gpu_entries
from ..errors import InputError
from ..serving.engines import estimate_serving
from ..serving.gguf import gguf_file
from ..units import largest
from ..training.workload import Hardware

# llama-quantize presets from the most to the least faithful (tools/quantize/README.md table order).
GGUF_QUALITY = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS", "Q3_K_L", "Q3_K_M",
                "IQ3_M", "Q3_K_S", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_XS", "IQ1_M")
TP_DEGREES = (1, 2, 4, 8, 16)


def _run(req, s, hw=None):
    try:
        return estimate_serving(req.model, s, hw or req.hardware, req.checkpoint, req.framework.context_bytes())
    except InputError:
        return None


def _length_field(engine: str) -> str:
    return {"vllm": "max_model_len", "sglang": "context_length", "llamacpp": "n_ctx"}[engine]


def band_pct(e) -> float:
    """The error band of an answer in percent (accuracy/verdicts.serving_error_band), 0 where none is published."""
    return serving_error_band(e).get("pct") or 0.0


def _fits(e) -> bool:
    """A candidate is offered as fitting only where its own answer would say "fits" (ServingEstimate.verdict,
    accuracy/verdicts.serving_verdict): for llama.cpp the device total's band's upper edge, not the estimate."""
    return e is not None and e.verdict == "fits"


def _serves(e, requests: int, length: int) -> bool:
    """The answer's verdict is "fits" and the deployment holds ``requests`` requests of ``length`` tokens even
    at the lower edge of the error band (issue 20: a recommendation must start on the real engine): the KV
    tokens less the band for vLLM and SGLang; llama.cpp allocates its context up front, so its verdict, on
    the device total's band, is the whole test."""
    if not _fits(e):
        return False
    if e.engine == "llamacpp":
        return True
    low = 1 - band_pct(e) / 100
    if e.engine == "sglang":
        return e.kv_cache_tokens * low >= requests * length and e.report["max_running_requests"] >= requests
    return e.max_concurrency * low >= requests


def _with_length(s, length: int, requests: int):
    field = _length_field(s.engine)
    if s.engine == "llamacpp":
        return replace(s, n_ctx=length * requests, n_parallel=requests, kv_unified=requests == 1 or s.kv_unified)
    return replace(s, **{field: length})


def longest_context(req, requests: int) -> int:
    """The largest context length at which ``requests`` requests fit at once (0: none)."""
    s = req.serving
    return largest(lambda n: _serves(_run(req, _with_length(s, n, requests)), requests, n),
                         1, max(1, req.model.max_positions))


def most_requests(req, length: int, cap: int = 1 << 16) -> int:
    """The most requests of ``length`` tokens served at once."""
    s = req.serving
    return largest(lambda n: _serves(_run(req, _with_length(s, length, n)), n, length), 1, cap)


def smallest_gpu(req, requests: int, length: int) -> dict | None:
    """The catalog GPU with the least memory on which the target is served on one GPU."""
    s = _with_length(req.serving, length, requests)
    for gid, g in sorted(gpu_entries().items(), key=lambda kv: kv[1]["memory_bytes"]):
        e = _run(req, s, Hardware(g["name"], g["memory_bytes"]))
        if _serves(e, requests, length):
            return {"gpu": gid, "name": g["name"], "memory_bytes": g["memory_bytes"],
                    "device_total_bytes": e.device_total_bytes, "kv_cache_tokens": e.kv_cache_tokens}
    return None


def fewest_gpus(req, requests: int, length: int) -> dict | None:
    """The smallest tensor-parallel degree (then pipeline degree) of the request's GPU that serves
    the target (vLLM and SGLang)."""
    s = _with_length(req.serving, length, requests)
    tp_field, pp_field = (("tensor_parallel_size", "pipeline_parallel_size") if s.engine == "vllm"
                          else ("tp_size", "pp_size"))
    for pp in (1, 2, 4, 8):
        for tp in TP_DEGREES:
            if pp > req.model.n_layers:
                continue
            e = _run(req, replace(s, **{tp_field: tp, pp_field: pp}))
            if _serves(e, requests, length):
                return {"gpus": tp * pp, tp_field: tp, pp_field: pp, "device_total_bytes": e.device_total_bytes,
                        "kv_cache_tokens": e.kv_cache_tokens, "max_concurrency": e.max_concurrency}
    return None


def gguf_choices(req) -> list[dict]:
    """For each preset: its file, the most -ngl layers that fit the card, and whether all do."""
    s = req.serving
    n = req.model.n_layers
    out = []
    for preset in GGUF_QUALITY:
        try:
            f = gguf_file(req.model, preset)
        except InputError:
            continue
        base = replace(s, quant=preset)
        lo = largest(lambda ngl: _fits(_run(req, replace(base, n_gpu_layers=ngl))), 0, n + 1)
        out.append({"quant": preset, "file_bytes": f.bytes, "bits_per_weight": round(f.bits_per_weight, 4),
                    "n_gpu_layers": max(lo, 0), "all_layers": lo >= n + 1, "fits": lo >= 0})
    return out


def serving_solutions(req) -> dict:
    s = req.serving
    requests = s.target_requests
    e = _run(req, s)
    length = e.context_len if e is not None else req.model.max_positions
    pct = band_pct(e) if e is not None else 0.0
    out = {"target_requests": requests, "context_len": length, "band_pct": pct,
           "safety": (f"recommendations use the lower edge of the ±{pct:g}% error band (KV tokens {pct:g}% below the "
                      "estimate" if s.engine != "llamacpp" else f"recommendations use the upper edge of the ±{pct:g}% "
                      f"error band (device total {pct:g}% above the estimate") + "), so they start on the real engine",
           "longest_context_for_requests": longest_context(req, requests),
           "most_requests_at_context": most_requests(req, length)}
    if s.engine == "llamacpp":
        choices = gguf_choices(req)
        out["gguf"] = choices
        full = [c for c in choices if c["all_layers"]]
        out["best_gguf"] = (full[0] if full else max(choices, key=lambda c: c["n_gpu_layers"], default=None))
        out["smallest_gpu"] = smallest_gpu(req, requests, length)
    else:
        out["smallest_gpu"] = smallest_gpu(req, requests, length)
        out["fewest_gpus"] = fewest_gpus(req, requests, length)
    return out
