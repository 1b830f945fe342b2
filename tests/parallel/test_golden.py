"""The published multi-GPU references (tests/data/golden_parallel.json, from ../shared/golden) stay
within their tolerances, each under its own recipe."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_parallel.json"
SHARED = ROOT.parent / "shared" / "golden" / "parallel.json"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


golden = _load("golden")

# Measured peaks that are still outside 10%, with the reason; they must not get worse.
KNOWN_MISSES = {
    "tt_llama31_8b_fsdp8_lbs2_sac:peak_reserved":
        "eager selective checkpointing at 16k tokens a GPU: with the bf16 logits freed before the loss backward "
        "(rule torchtitan-frees-logits, as train.py does since PR #391) the estimate is 12% under; the same "
        "layout with the blocks compiled measures 5.4 GiB less and is within 6%: what eager holds beyond it is "
        "not modelled",
}
KNOWN_MISS_BOUND = 20.0


@pytest.fixture(scope="module")
def rows():
    rows, unsupported = golden.run([str(GOLDEN)])
    assert unsupported <= 7
    return rows


def test_no_reference_raises_an_error(rows):
    assert [r for r in rows if "error" in r] == []


def test_every_formula_reference_matches_to_rounding(rows):
    checks = {c["id"]: c for c in json.loads(GOLDEN.read_text())["checks"] if "unsupported" not in c}
    formula = [r for r in rows if checks[r["id"]]["tolerance"]["rel"] < 0.05]
    assert len(formula) > 150
    assert [(r["id"], round(r["err"], 3)) for r in formula if not r["ok"]] == []


def test_measured_peaks_are_within_ten_percent_or_a_known_bounded_miss(rows):
    measured = [r for r in rows if r["id"].startswith("tt_")]
    assert len(measured) == 9
    for r in measured:
        if r["id"] in KNOWN_MISSES:
            assert r["err"] <= KNOWN_MISS_BOUND, r
        else:
            assert r["ok"], r


def test_recipes_that_disagree_both_pass_under_their_own_recipe(rows):
    by_id = {r["id"]: r for r in rows}
    # DeepSpeed's ZeRO-2 estimator before PR #5099 printed 15.93 GiB; the current formula gives 11.28 GiB
    assert by_id["ds_memrst_zero2_t5-3b_cold_8gpu_offload-none:per_gpu"]["ok"]
    assert by_id["ds_zero2_t5-3b_cold_8gpu_offload-none_POSTFIX_computed:per_gpu"]["ok"]
    # the Playbook's figures use 8 optimizer bytes a parameter, the ZeRO paper 12
    assert by_id["playbook_tpsp_70B_tp8_seq4096:optimizer"]["ok"] and by_id["zero_sec3_gpt2-1.5B_model_states:per_device"]["ok"]


def test_the_summary_line_has_the_published_format(capsys):
    golden.main([str(GOLDEN)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    import re
    assert re.fullmatch(r"golden cases=\d+ within_tol=\d+ median_abs_err=\d+\.\d% max_abs_err=\d+\.\d% unsupported=\d+"
                        r" fit=\d+/\d+ verify=\d+/\d+", last)


def test_the_references_split_into_a_fit_part_and_a_verify_part_by_framework_and_model(rows):
    parts = {r["id"]: r["part"] for r in rows}
    # the fit part is torchtitan's runs on llama-3.1-8b (7 of the 9 measured peaks); everything else verifies
    assert sorted(i for i, p in parts.items() if p == "fit") == sorted(
        i for i in parts if i.startswith("tt_llama31_8b_"))
    assert sum(p == "fit" for p in parts.values()) == 7
    assert parts["tt_llama31_405b_fsdp8_tp8_pp8_1f1b:peak_reserved"] == "verify"
    assert all(p in ("fit", "verify") for p in parts.values())
    verify = [r for r in rows if r["part"] == "verify"]
    assert sum(1 for r in verify if r["ok"]) >= 0.9 * len(verify)


def test_the_committed_translation_matches_the_shared_references(tmp_path):
    if not SHARED.exists():
        pytest.skip("shared/golden is not beside this checkout")
    out = tmp_path / "golden.json"
    _load("translate_golden").main(["translate_golden.py", str(SHARED), str(out)])
    assert json.loads(out.read_text()) == json.loads(GOLDEN.read_text()), \
        "tests/data/golden_parallel.json is stale: run scripts/translate_golden.py"


EXTRA = ROOT / "tests" / "data" / "golden_parallel_torchtitan.json"
# The term that grows with the CP degree at fixed tokens a GPU (405B, CP 8: 7.8 GiB more than CP 4) is not modelled.
EXTRA_MISSES = {"tt_llama31_405b_fsdp1_cp8_tp8_pp8_seq256k:peak_reserved": 12.0}


def test_torchtitans_untranslated_tables_verify_within_ten_percent_or_a_known_miss():
    rows, unsupported = golden.run([str(EXTRA)])
    assert unsupported == 0 and len(rows) == 8 and not [r for r in rows if "error" in r]
    for r in rows:
        if r["id"] in EXTRA_MISSES:
            assert r["err"] <= EXTRA_MISSES[r["id"]], r
        else:
            assert r["ok"], r
    assert {r["id"]: r["part"] for r in rows if r["part"] == "verify"} == {
        r["id"]: "verify" for r in rows if "405b" in r["id"]}
