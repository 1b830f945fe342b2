"""The error band every answer carries: how far estimates of this kind of run have been from measured
ones, and what that is based on (pycore/data/error_bands.json, written by scripts/calibrate.py --bands
from the calibration files and the reference files; nothing here is typed by hand).

A single-GPU run's class is mode / model family / attention kernel (``lora/decoder/sdpa``). The band
is the 90th-percentile error of the device total over the measured runs of the most specific level
with at least MIN_RUNS runs: the class, then mode / family, then the mode, then every run. A verdict
is "at risk" when the band straddles the GPU's memory.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from ..data.catalog import data_bytes

MIN_RUNS = 3
CLASS_LEVELS = ("mode/family/kernel", "mode/family", "mode", "all")
_MODE_WORDS = {"full": "full training", "lora": "LoRA", "qlora": "QLoRA", "inference": "inference"}


@lru_cache(maxsize=1)
def _bands() -> dict:
    try:
        return json.loads(data_bytes("error_bands.json"))
    except OSError:
        return {"single_gpu": {}, "references": {}}


def run_class(mode: str, family: str, kernel: str | None) -> str:
    fam = {"decoder": "decoder", "bert": "encoder", "gpt2": "gpt2", "neox": "decoder", "chatglm": "decoder"}.get(
        family, "decoder")
    k = "eager" if kernel in ("eager", "math") else "sdpa"
    return f"{mode}/{fam}/{k}"


def class_levels(cls: str) -> list[str]:
    """The class and its broader levels, most specific first."""
    if not cls:
        return ["all"]
    mode, fam, kernel = cls.split("/")
    return [cls, f"{mode}/{fam}", mode, "all"]


def _round_up(pct: float) -> float:
    return max(1.0, math.ceil(pct * 2) / 2)


def _describe(level: str, runs: int) -> str:
    parts = level.split("/")
    if level == "all":
        return f"{runs} measured runs of every kind"
    what = _MODE_WORDS.get(parts[0], parts[0])
    if len(parts) >= 2:
        what += f" on {parts[1]} models"
    if len(parts) == 3:
        what += " with " + ("eager attention" if parts[2] == "eager" else "SDPA/flash attention")
    return f"{runs} measured runs of {what}"


def single_gpu_band(cls: str, quantised_kernels: bool = False) -> dict:
    """The band of a single-GPU estimate of class ``cls``."""
    table = _bands()["single_gpu"]
    for i, level in enumerate(class_levels(cls)):
        entry = table.get(level)
        if entry and entry["runs"] >= MIN_RUNS:
            pct = _round_up(entry["p90_pct"])
            basis = _describe(level, entry["runs"])
            if i > 0:
                basis = f"no measured run of exactly this kind; {basis}"
            out = {"pct": pct, "class": cls, "basis": f"±{pct:g}%: {basis}", "status": "measured",
                   "runs": entry["runs"], "level": level}
            if quantised_kernels:
                out["status"] = "partly unverified"
                out["basis"] += ("; the quantised kernels' workspaces follow the libraries' source and optimum's "
                                 "GPTQ benchmark (accuracy page), not a run of ours")
            return out
    return {"pct": None, "class": cls, "status": "unverified", "basis": "unverified: no measured run to compare with"}


def reference_band(kind: str, what: str) -> dict:
    """The band of an answer checked against published figures of ``kind`` (tests/data/golden_*.json)."""
    entry = _bands()["references"].get(kind)
    if not entry:
        return {"pct": None, "status": "unverified", "class": kind,
                "basis": f"unverified: {what} follows the sources; no published figure of this kind yet"}
    pct = _round_up(entry["p90_pct"])
    return {"pct": pct, "status": "published references", "class": kind, "checks": entry["checks"],
            "basis": f"±{pct:g}%: {entry['checks']} published {kind} figures ({what})"}


def serving_band(engine: str, device_total: int, compute_bytes: int = 0) -> dict:
    """vLLM and SGLang: the end-to-end checks against their start-up logs. llama.cpp: its weights and
    KV are exact (formula checks), so the band is the compute buffer's error over its share."""
    if engine == "llamacpp":
        ref = reference_band("compute buffer", "llama.cpp's compute buffers")
        if ref["pct"] is None or not device_total:
            return ref
        pct = round(max(0.5, ref["pct"] * compute_bytes / device_total), 1)
        return {**ref, "pct": pct, "basis": f"±{pct:g}%: the GGUF weights and KV cache follow exactly from the format "
                                             f"(formula checks); the compute buffer, {compute_bytes / device_total:.0%} of "
                                             f"the total, is within ±{ref['pct']:g}% on {ref['checks']} logged buffers"}
    return reference_band("end-to-end", "vLLM and SGLang start-up logs: pools and tokens predicted from the model")


def verdict(device_total: int, capacity: int, band: dict) -> str:
    """fits, at risk (the band straddles the capacity) or does not fit."""
    pct = band.get("pct")
    if pct is None:
        return "fits" if device_total <= capacity else "does not fit"
    low, high = device_total * (1 - pct / 100), device_total * (1 + pct / 100)
    if high <= capacity:
        return "fits"
    if low > capacity:
        return "does not fit"
    return "at risk"
