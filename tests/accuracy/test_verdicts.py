"""Verdicts from bands per quantity (issue 22): "does not fit" when the exact terms alone or the device
total's lower edge exceed the card, "fits" when its upper edge fits, "at risk" in between; ``fits``
is ``verdict == "fits"`` everywhere; exact terms carry no band; unmeasured kinds say "unverified"."""

import json
from pathlib import Path

import pytest

from pycore.api import estimate_dict
from pycore.units import GiB
from pycore.accuracy.verdicts import QUANTITIES, edges, level_entry, levels, verdict_of

ROOT = Path(__file__).resolve().parents[2]


def _result(req: dict) -> dict:
    resp = estimate_dict(req)
    assert resp["status"] == "ok", resp
    return resp["result"]


def _band(lo, hi):
    return {"device_total": {"low_bytes": lo, "high_bytes": hi}}


def test_verdict_follows_the_device_total_band_edges():
    assert verdict_of(_band(70, 90), 100, 10) == "fits"            # upper edge 90 <= 100
    assert verdict_of(_band(95, 105), 100, 10) == "at risk"        # straddles
    assert verdict_of(_band(101, 110), 100, 10) == "does not fit"  # lower edge 101 > 100
    # exact terms over the card: "does not fit" even when the band would straddle
    assert verdict_of(_band(95, 105), 100, 101) == "does not fit"


def test_the_issue_example_does_not_fit_because_the_weights_alone_exceed_the_card():
    # Llama 2 13B: 13,015,864,320 parameters x 2 bytes (bf16) = 26,031,728,640 B = 24.24 GiB; an RTX 3090
    # has 24 GiB less what the driver keeps (catalog: about 23.6 GiB), so the weights alone do not fit.
    r = _result({"model": "llama-2-13b", "workload": {"mode": "lora", "seq_len": 512, "gradient_checkpointing": True},
                 "gpu": "rtx-3090-24gb"})
    assert r["params"]["total"] == 13_015_864_320
    assert 13_015_864_320 * 2 > r["gpu"]["memory_bytes"]
    assert r["verdict"] == "does not fit" and r["fits"] is False
    assert r["bands"]["device_total"]["exact_bytes"] >= 13_015_864_320 * 2


def test_every_answer_carries_a_band_per_quantity_around_its_estimate():
    for req in ({"model": "llama-3.1-8b", "workload": {"mode": "lora"}},
                {"model": "gpt2", "workload": {"mode": "full"}, "precision": {"weights": "fp32"}},
                {"model": "llama-3.1-8b", "workload": {"mode": "inference", "new_tokens": 16}},
                {"model": "llama-3.1-8b", "workload": {"mode": "full"}, "precision": {"weights": "fp32", "autocast": "bf16"},
                 "parallelism": {"recipe": "fsdp2", "data_parallel": 8}}):
        r = _result(req)
        est = {"peak_allocated": r["peak_allocated_bytes"], "reserved": r["reserved_bytes"],
               "device_total": r["device_total_bytes"]}
        for q in QUANTITIES:
            band = r["bands"][q]
            assert band["low_bytes"] <= est[q] <= band["high_bytes"], (req, q)
            assert band["low_bytes"] >= min(est[q], band["exact_bytes"])
        assert r["bands"]["reserved"]["low_bytes"] >= min(r["reserved_bytes"], r["bands"]["peak_allocated"]["low_bytes"])
        assert r["fits"] == (r["verdict"] == "fits")
        assert r["error_band"]["basis"]


def test_exact_terms_carry_no_band():
    # LoRA on a 13B model: the frozen bf16 weights (24 GiB) dominate; the band is a fraction of the modelled
    # terms only, so it is far narrower than the same fraction of the total would be.
    r = _result({"model": "llama-2-13b", "workload": {"mode": "lora", "seq_len": 512, "gradient_checkpointing": True},
                 "gpu": {"memory_gib": 80}})
    band = r["bands"]["device_total"]
    assert band["scale_bytes"] < 0.05 * r["device_total_bytes"]
    assert band["high_bytes"] - band["low_bytes"] <= 2 * band["scale_bytes"]
    assert band["high_bytes"] - band["low_bytes"] < 0.05 * r["device_total_bytes"]
    # the edges move by the band's fractions of the scale, never below the exact floor
    assert edges(1000, 100, 950, (-0.9, 0.2)) == (950, 1020)
    assert edges(1000, 100, 0, (-0.1, 0.1)) == (990, 1010)


def test_levels_fall_back_to_broader_kinds():
    assert levels("full/checkpointing") == ["full/checkpointing", "full", "all"]
    assert levels("lora/decoder/sdpa") == ["lora/decoder/sdpa", "lora/decoder", "lora", "all"]


def test_at_risk_answers_say_fits_false_and_so_do_their_searches():
    # GPT-2 full fine-tuning, batch 8 x 1024, fp32 + AdamW: shared/calibration measured 16.92 GiB reserved
    # + 0.79 GiB context = 17.7 GiB on the device. A card of exactly the estimate is inside the band.
    base = {"model": "gpt2", "workload": {"mode": "full", "batch_size": 8, "seq_len": 1024},
            "precision": {"weights": "fp32"}}
    total = _result(base)["device_total_bytes"]
    r = _result({**base, "gpu": {"memory_bytes": total}})
    assert r["verdict"] == "at risk" and r["fits"] is False
    swept = _result({**base, "gpu": {"memory_bytes": total}, "sweep": {"field": "batch_size"}})["sweep"]["points"]
    assert all(p["fits"] == (p["verdict"] == "fits") for p in swept if "fits" in p)
    plans = _result({**base, "gpu": {"memory_bytes": total}, "fit": {}})["fit"]["plans"]
    assert plans and all(p["verdict"] == "fits" and p["fits"] for p in plans)


@pytest.mark.parametrize("req, reason", [
    ({"model": "llama-3.1-8b", "workload": {"mode": "qlora"}, "precision": {"weights": "bf16"}}, "QLoRA"),
    ({"model": "gpt2", "workload": {"mode": "full", "optimizer": "adamw_8bit"}}, "8-bit AdamW"),
    ({"model": "gpt2", "workload": {"mode": "full", "optimizer": "lion"}}, "Lion"),
    ({"model": "gpt2", "workload": {"mode": "full", "optimizer": "adafactor"}}, "Adafactor"),
    ({"model": "llama-3.1-8b", "workload": {"mode": "inference"}, "precision": {"weights": "int4", "activations": "bf16"}},
     "int8/int4"),
    ({"model": "gemma-3-1b", "workload": {"mode": "lora"}}, "Gemma 3"),
    ({"model": "mixtral-8x22b", "workload": {"mode": "inference"}, "gpu": {"memory_gib": 512}}, "Mixtral"),
    ({"model": "deepseek-v2-lite", "workload": {"mode": "inference"}}, "MLA"),
    ({"model": "llama-3.1-8b", "workload": {"mode": "lora", "head": "sequence-classification"}}, "classification"),
])
def test_kinds_no_run_of_ours_measures_say_unverified(req, reason):
    r = _result(req)
    for q in QUANTITIES:
        assert r["bands"][q]["status"] == "unverified"
        assert any(reason in text for text in r["bands"][q]["unverified"])
    assert r["error_band"]["status"] == "unverified" and "unverified" in r["error_band"]["basis"]


def test_a_measured_kind_is_not_unverified():
    r = _result({"model": "llama-3.1-8b", "workload": {"mode": "lora"}})
    assert {r["bands"][q]["status"] for q in QUANTITIES} == {"measured"}


def test_check_agrees_only_inside_the_band_of_the_quantity():
    base = {"model": "llama-3.1-8b", "workload": {"mode": "lora", "batch_size": 2, "seq_len": 4096,
                                                  "gradient_checkpointing": True}}
    r = _result(base)
    band = r["bands"]["peak_allocated"]
    inside = _result({**base, "measured": {"peak_allocated_bytes": band["high_bytes"]}})["check"]
    assert inside["verdict"] == "agrees"
    # 8% above the estimate: the old check called this "agrees" (its tolerance was the ±15% device band)
    above = int(r["peak_allocated_bytes"] * 1.08)
    assert above > band["high_bytes"]
    assert _result({**base, "measured": {"peak_allocated_bytes": above}})["check"]["verdict"] == "measured higher"
    # the device total is judged by its own band
    dev = r["bands"]["device_total"]
    ck = _result({**base, "measured": {"device_used_bytes": dev["high_bytes"] + 256 * 2 ** 20}})["check"]
    assert ck["rows"][0]["quantity"].startswith("device total") and ck["verdict"] == "measured higher"


@pytest.fixture(scope="module")
def held_out(shared_run, calibrate):
    """The bands' coverage fitted on every run and on each family left out (refits the shares: a few s)."""
    return calibrate.cross_validate(shared_run[0])


@pytest.fixture(scope="module")
def ideal_shares(shared_run, calibrate):
    """The measured records, and each one's share that makes its estimated reserve the measured one."""
    recs = [r["record"] for r in shared_run[0] if "record" in r]
    return recs, {rec["id"]: calibrate.ideal_share(rec) for rec in recs}


def test_every_oom_run_does_not_fit_and_few_working_runs_are_at_risk(shared_run):
    rows, s = shared_run
    ooms = [r for r in rows if r.get("status") == "oom"]
    assert ooms and all(r["verdict"] == "does not fit" for r in ooms)
    ok = [r for r in rows if r.get("status") == "ok"]
    assert sum(r["verdict"] == "at risk" for r in ok) <= 0.10 * len(ok)
    assert all(r["verdict"] != "does not fit" for r in ok)
    assert s["fits_verdict_disagree"] == 0


def test_the_committed_quantity_bands_are_what_calibrate_fits(calibrate, shared_run):
    cal, (rows, _) = calibrate, shared_run
    committed = json.loads((ROOT / "pycore" / "data" / "error_bands.json").read_text())
    assert cal.fit_quantity_bands(rows) == committed["quantities"]


def test_held_out_coverage_is_reported_per_quantity(held_out):
    cv = held_out
    assert set(cv) == set(QUANTITIES)
    for q, parts in cv.items():
        # fitted on every run, the band holds (nearly) every run it was fitted on
        assert parts["fit"]["covered"] >= parts["fit"]["runs"] - 1
        assert parts["held_out"]["runs"] == parts["fit"]["runs"]
        assert parts["held_out"]["coverage_pct"] >= 80.0, (q, parts)   # 86-89% when this was written



def test_held_out_bands_are_at_most_8_percent_wide_and_miss_at_most_7_runs(held_out):
    # Issue 22's goal is >= 90% inside at <= 8% median half-width on families left out, with everything
    # fitted (the reserve's shares and the bands) refitted without the family. The widths hold it; coverage
    # is 38-40 of 44 (the llama family, held out, takes its full-training and inference runs with it).
    for q, parts in held_out.items():
        h = parts["held_out"]
        assert h["median_half_width_pct"] <= 8.0, (q, h)
        assert h["runs"] - h["covered"] <= 6 and len(h["missed"]) == h["runs"] - h["covered"], (q, h)


def test_every_quantity_s_band_held_out_meets_the_goal(held_out):
    # Issue 22's goal for each quantity: >= 90% inside at <= 8% median half-width on families left out
    # (40-41 of 44 inside at 2.8-6.9% when this was written)
    for q, parts in held_out.items():
        h = parts["held_out"]
        assert h["covered"] / h["runs"] >= 0.9 and h["median_half_width_pct"] <= 8.0, (q, h)


def test_a_level_whose_runs_come_from_fewer_than_3_families_falls_back():
    # 4 runs of 2 model families say little of a third: the broader level's band is used instead
    table = {"reserved": {"inference": {"runs": 4, "families": 2, "low": -0.1, "high": 0.1},
                          "all": {"runs": 44, "families": 9, "low": -0.4, "high": 0.4}}}
    assert level_entry("reserved", "inference", table)[0] == "all"
    table["reserved"]["inference"]["families"] = 3
    assert level_entry("reserved", "inference", table)[0] == "inference"


def test_the_device_total_band_held_out_meets_the_goal(held_out):
    # Issue 22: >= 90% inside at <= 8% median half-width on families left out. The device total (what the
    # verdict reads) meets it since its band is the reserve's plus the context's spread: 40 of 44 when this
    # was written (4 misses, all the reserve's; 90% of 44 is 39.6).
    h = held_out["device_total"]["held_out"]
    assert h["covered"] >= 40 and h["covered"] / h["runs"] >= 0.9, h
    assert h["median_half_width_pct"] <= 8.0, h


def test_the_device_total_band_is_the_reserve_band_plus_the_context_spread():
    # nvidia-smi's figure is what the allocator reserves plus what lies outside it (the CUDA context), two
    # terms modelled apart: the band adds the reserve's edges and the context's measured spread (bytes).
    table = json.loads((ROOT / "pycore" / "data" / "error_bands.json").read_text())["quantities"]
    spread = table["context"]
    # the spread is the measured contexts' range less the estimate's 820 MiB (shared/calibration: 787,283,968
    # to 898,433,024 B measured on 44 runs; 820 MiB = 859,832,320 B)
    assert spread["low"] == 787_283_968 - 859_832_320 and spread["high"] == 898_433_024 - 859_832_320
    r = _result({"model": "llama-3.2-1b", "gpu": {"memory_gib": 80},
                 "workload": {"mode": "lora", "batch_size": 4, "seq_len": 2048}})
    b = r["bands"]
    context = b["device_total"]["estimate_bytes"] - b["reserved"]["estimate_bytes"]
    assert context == 859_832_320
    assert b["device_total"]["low_bytes"] == b["reserved"]["low_bytes"] + context + spread["low"]
    assert b["device_total"]["high_bytes"] == b["reserved"]["high_bytes"] + context + spread["high"]


def test_the_committed_reserve_shares_are_what_calibrate_fits(calibrate, ideal_shares):
    # pycore/training/allocator.py's shares are the medians scripts/calibrate.py fits on the measured runs
    cal, (recs, ideal) = calibrate, ideal_shares
    assert cal.fit_shares(recs, ideal) == cal.committed_shares()
    # each kind has runs to fit on: a share no run informs would be a number typed by hand
    kinds = {cal.share_kind(rec) for rec in recs if ideal[rec["id"]] is not None}
    assert kinds == set(cal.SHARE_CONSTANTS)


def test_a_held_out_family_refits_the_shares_without_it(calibrate, ideal_shares):
    # leaving out every inference family moves the inference share back to its committed value (no runs
    # left to fit it); leaving out one family moves a share by at most what one run's median can
    cal, (recs, ideal) = calibrate, ideal_shares
    no_inference = [rec for rec in recs if rec["workload"]["mode"] != "inference"]
    assert cal.fit_shares(no_inference, ideal)["inference"] == cal.committed_shares()["inference"]
    inference = sorted(ideal[r["id"]] for r in recs if cal.share_kind(r) == "inference" and ideal[r["id"]] is not None)
    without_first = [r for r in recs if r["id"] != next(r["id"] for r in recs if cal.share_kind(r) == "inference")]
    refit = cal.fit_shares(without_first, ideal)["inference"]
    assert inference[len(inference) // 2 - 1] - 1e-3 <= refit <= inference[len(inference) // 2 + 1] + 1e-3


@pytest.mark.parametrize("mode, ckpt, kind", [
    ("full", False, "training without checkpointing"),
    ("lora", False, "training without checkpointing"),   # the same share as full training: one class
    ("qlora", False, "training without checkpointing"),
    ("full", True, "full training with checkpointing"),
    ("lora", True, "frozen base with checkpointing"),
    ("inference", False, "inference"),
])
def test_the_reserve_band_is_fitted_over_runs_one_share_models(mode, ckpt, kind):
    # allocator._reserved_at takes one share per kind of step; the reserve's and the device total's bands
    # are fitted over the runs of that kind, so LoRA without checkpointing is scored with full training's
    # errors, not apart from them; the allocated peak keeps mode / family / kernel.
    req = {"model": "llama-3.2-1b", "gpu": {"memory_gib": 80},
           "workload": {"mode": mode, "batch_size": 2, "seq_len": 512, "gradient_checkpointing": ckpt}}
    bands = _result(req)["bands"]
    assert bands["reserved"]["class"] == bands["device_total"]["class"] == kind
    assert bands["peak_allocated"]["class"].startswith(f"{mode}/decoder/")
    assert bands["reserved"]["runs"] >= 3 and bands["reserved"]["level"] == kind
