"""Error bands (issue 13): computed from the measurements by scripts/calibrate.py, carried by every
answer, and turning a verdict into "at risk" when they straddle the GPU's memory."""

import json
from pathlib import Path


from pycore.api import estimate_dict
from pycore.accuracy.bands import class_levels, run_class, single_gpu_band, verdict

ROOT = Path(__file__).resolve().parents[2]
BANDS = ROOT / "pycore" / "data" / "error_bands.json"


def test_the_committed_bands_are_what_calibrate_computes(calibrate, shared_run):
    cal, (rows, _) = calibrate, shared_run
    fresh = cal.bands(rows, [str(ROOT / "tests" / "data" / "golden_parallel.json"),
                             str(ROOT / "tests" / "data" / "golden_serving.json")])
    assert fresh == json.loads(BANDS.read_text()), ("pycore/data/error_bands.json is stale: run scripts/calibrate.py "
                                                    "<calibration files> --bands pycore/data/error_bands.json --golden "
                                                    "tests/data/golden_parallel.json tests/data/golden_serving.json")


def test_verdict_is_at_risk_when_the_band_straddles_the_capacity():
    band = {"pct": 10}
    assert verdict(80, 100, band) == "fits"              # 88 <= 100
    assert verdict(95, 100, band) == "at risk"           # 85.5 .. 104.5
    assert verdict(120, 100, band) == "does not fit"     # 108 > 100
    assert verdict(95, 100, {"pct": None}) == "fits"


def test_class_levels_fall_back_from_specific_to_general():
    assert run_class("lora", "decoder", "flash") == "lora/decoder/sdpa"
    assert run_class("full", "bert", "eager") == "full/encoder/eager"
    assert class_levels("lora/decoder/sdpa") == ["lora/decoder/sdpa", "lora/decoder", "lora", "all"]
    band = single_gpu_band("qlora/decoder/sdpa")       # no QLoRA run has been measured
    assert band["basis"].startswith(f"±{band['pct']:g}%: no measured run of exactly this kind")


def test_every_answer_carries_a_band_and_a_verdict():
    for req in ({"model": "llama-3.1-8b", "workload": {"mode": "lora"}},
                {"model": "llama-3.1-8b", "workload": {"mode": "inference", "new_tokens": 8},
                 "precision": {"weights": "int4", "activations": "bf16", "quant_format": "gptq"}},
                {"model": "llama-3.1-8b", "workload": {"mode": "full"}, "precision": {"weights": "fp32", "autocast": "bf16"},
                 "parallelism": {"recipe": "fsdp2", "data_parallel": 8}},
                {"model": "llama-3.1-8b", "workload": {"mode": "serve", "engine": "llamacpp"}}):
        r = estimate_dict(req)["result"]
        assert r["verdict"] in ("fits", "at risk", "does not fit")
        assert r["error_band"]["basis"]
    q = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "inference", "new_tokens": 8},
                       "precision": {"weights": "int4", "activations": "bf16", "quant_format": "gptq"}})["result"]
    assert "workspaces follow the libraries' source" in q["error_band"]["basis"]
    t = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "lora"}})["result"]["term_basis"]
    assert t["weights"] == "source" and t["allocator reserve"] == "measured"
