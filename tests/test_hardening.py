"""Issue 8: hostile and malformed input gets a clear, structured error quickly, and the advice is never wrong.

Each test reproduces one finding of the hardening review; on the code before the fix it fails or hangs.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pycore.api import estimate

ROOT = Path(__file__).resolve().parent.parent
GiB = 2 ** 30


def call(obj) -> dict:
    return json.loads(estimate(obj if isinstance(obj, str) else json.dumps(obj)))


def timed(obj) -> tuple[dict, float]:
    t0 = time.process_time()
    resp = call(obj)
    return resp, time.process_time() - t0


def error(obj) -> dict:
    resp = call(obj)
    assert resp["status"] == "error", resp
    return resp["errors"][0]


MOE = {"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 10_000_000, "num_attention_heads": 4,
       "vocab_size": 100, "intermediate_size": 64, "num_experts": 4, "mlp_only_layers": [0] * 2000}


# ---- 1-4: denial of service --------------------------------------------------------------

def test_a_huge_layer_count_is_refused_before_any_loop_over_layers():
    resp, seconds = timed({"hf_config": MOE})
    assert resp["errors"][0]["field"] == "hf_config.num_hidden_layers"
    assert seconds < 0.5            # it took 117 s before the limit was checked first


def test_a_per_layer_list_longer_than_any_model_is_refused():
    cfg = {**MOE, "num_hidden_layers": 100, "mlp_only_layers": [0] * 200_000}
    assert error({"hf_config": cfg})["field"] == "hf_config.mlp_only_layers"


def test_mlp_only_layers_is_looked_up_as_a_set():
    # 1,024 layers (the limit) and 1,024 listed layers
    cfg = {**MOE, "num_hidden_layers": 1_024, "mlp_only_layers": list(range(0, 2_048, 2))}
    resp, seconds = timed({"hf_config": cfg, "workload": {"seq_len": 16}})
    assert resp["status"] == "ok" and seconds < 0.5
    # by hand: layers 0, 2, 4, ... are dense, so 512 of the 1,024 are MoE; each has a 64 x 4 router
    assert resp["result"]["params"]["by_component"]["router"] == 512 * 64 * 4


def test_a_layer_count_deeper_than_any_published_transformer_is_refused_by_name():
    err = error({"hf_config": {**MOE, "num_hidden_layers": 1_025, "mlp_only_layers": []}})
    assert err["field"] == "hf_config.num_hidden_layers" and "at most 1024" in err["message"]
    err = error({"model": {"dimensions": {"n_layers": 10_000, "hidden_size": 4096, "n_heads": 32, "vocab_size": 32000}}})
    assert err["field"] == "model.dimensions.n_layers"


@pytest.mark.parametrize("text", ["[" * 6000 + "]" * 6000, '{"a":' * 5000 + "1" + "}" * 5000,
                                  '{"hf_config": {"vocab_size": ' + "[" * 985 + "]" * 985 + "}}"])
def test_deep_nesting_is_refused_before_parsing(text):
    err = error(text)
    assert err["field"] == "request" and "nested too deeply" in err["message"]


def test_a_config_json_given_as_text_is_parsed_by_the_core_with_the_same_bounds():
    deep = '{"model_type": "llama", "x": ' + "[" * 100 + "]" * 100 + "}"
    err = error({"hf_config": deep})
    assert err["field"] == "hf_config" and "nested too deeply" in err["message"]
    ok = call({"hf_config": json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                                        "vocab_size": 100}), "workload": {"seq_len": 8}})
    assert ok["status"] == "ok"
    # by hand: GPT-2 with h=64, 2 layers, 1024 positions, vocab 100, tied embeddings
    h, L = 64, 2
    assert ok["result"]["params"]["total"] == L * (12 * h * h + 13 * h) + 100 * h + 1024 * h + 2 * h


def test_the_cli_reads_at_most_the_request_limit(tmp_path):
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pycore", "estimate", "--hf-config", "/dev/zero"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "longer than" in out.stderr
    assert time.monotonic() - t0 < 30


# ---- 5-8: clear, structured errors ----------------------------------------------------------

def _byte_counts(node, path=""):
    """Every value in a result whose key says it is a byte count."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "bytes" or k.endswith("_bytes"):
                yield f"{path}.{k}", v
            yield from _byte_counts(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _byte_counts(v, f"{path}[{i}]")


def test_a_list_where_a_string_belongs_names_its_field():
    dims = {"n_layers": 2, "hidden_size": 64, "n_heads": 4, "vocab_size": 100, "model_type": [1]}
    assert error({"model": {"dimensions": dims}})["field"] == "model.dimensions.model_type"


@pytest.mark.parametrize("workload", [{"mode": "lora", "lora": {"rank": 16.0}}, {"mode": "qlora"},
                                      {"optimizer": "adafactor"}, {"optimizer": "adamw_8bit"}])
def test_whole_number_floats_become_integers_and_every_byte_count_is_an_integer(workload):
    dims = {"n_layers": 2.0, "hidden_size": 64.0, "n_heads": 4.0, "vocab_size": 100.0}
    resp = call({"model": {"dimensions": dims}, "workload": {**workload, "batch_size": 2.0, "seq_len": 16.0},
                 "parallelism": {"data_parallel": 2.0, "zero_stage": 1.0} if workload.get("mode") != "qlora" else None,
                 "framework": {"cuda_context_bytes": 1e9}})
    assert resp["status"] == "ok", resp
    counts = list(_byte_counts(resp["result"]))
    assert counts and all(type(v) is int for _, v in counts), [c for c in counts if type(c[1]) is not int]
    assert resp["result"]["assumptions"]["cuda_context_bytes"] == 1_000_000_000


@pytest.mark.parametrize("obj,field", [
    ({"model": "gpt2", "gpu": {"memory_gib": 10 ** 400}}, "gpu.memory_gib"),
    ({"model": "gpt2", "workload": {"mode": "lora", "lora": {"rank": 0}}}, "workload.lora.rank"),
    ({"model": "gpt2", "workload": {"mode": "lora", "lora": {"targets": ["nope"]}}}, "workload.lora.targets"),
    ({"hf_config": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 10 ** 6, "num_attention_heads": 4,
                    "vocab_size": 100, "intermediate_size": 64}}, "hf_config.num_hidden_layers"),
    ({"model": {"hf_config": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
                              "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 100,
                              "intermediate_size": 64}}}, "model.hf_config.num_key_value_heads"),
    ({"model": "gpt2", "workload": {"batch_size": 10 ** 8}}, "workload.batch_size"),
    ({"model": "gpt2", "workload": {"batch_size": 10 ** 4, "seq_len": 10 ** 5}}, "workload.seq_len"),
])
def test_the_field_in_an_error_is_the_path_the_user_wrote(obj, field):
    assert error(obj)["field"] == field


@pytest.mark.parametrize("obj,field", [
    ({"schema": True, "model": "gpt2"}, "schema"),
    ({"model": {"hf_config": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100},
                "colour": "red"}}, "model.colour"),
    ({"model": "gpt2", "workload": {"lora": {"rank": 8, "dropout": 0.1}}}, "workload.lora.dropout"),
    ({"model": "gpt2", "gpu": {"memory_gib": 24, "vendor": "x"}}, "gpu.vendor"),
])
def test_unknown_or_mistyped_fields_are_errors_everywhere(obj, field):
    assert error(obj)["field"] == field


def test_the_cli_escapes_control_characters_and_survives_lone_surrogates(tmp_path):
    base = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 100}
    for name in ("\x1b]0;pwned\x07\x1b[2JFITS\r", "\ud800"):
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({**base, "_name_or_path": name}))
        out = subprocess.run([sys.executable, "-m", "pycore", "estimate", "--hf-config", str(cfg)], cwd=ROOT,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\r" not in out.stdout and "\x07" not in out.stdout
    deep = tmp_path / "deep.json"
    deep.write_text('{"a":' * 5000 + "1" + "}" * 5000)
    out = subprocess.run([sys.executable, "-m", "pycore", "estimate", "--hf-config", str(deep)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "nested too deeply" in out.stderr


# ---- 13-16: answers that were wrong ----------------------------------------------------------

def _solved(req):
    resp = call({**req, "solve": True})
    assert resp["status"] == "ok", resp
    return resp["result"]


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gemma-3-27b", "qwen2.5-0.5b", "gpt2"])
@pytest.mark.parametrize("precision", [{"weights": "fp32", "autocast": "bf16"}, {"weights": "bf16"}])
def test_make_it_fit_never_suggests_a_change_that_adds_memory(model, precision):
    res = _solved({"model": model, "workload": {"mode": "full", "seq_len": 128}, "precision": precision})
    for s in res["suggestions"]:
        assert s["device_total_bytes"] < res["device_total_bytes"], s


def test_checkpointing_does_not_raise_the_device_total_through_the_optimizer_step():
    # 151.87 -> 158.45 GiB before: the checkpointing allowance was applied to the step's temporaries
    def total(ckpt):
        return call({"model": "llama-3.1-8b", "workload": {"mode": "full", "seq_len": 128, "gradient_checkpointing": ckpt},
                     "precision": {"weights": "fp32", "autocast": "bf16"}})["result"]["device_total_bytes"]
    assert total(True) <= total(False)


GEMMA_FP32 = {"model": "gemma-2-2b", "workload": {"mode": "full", "batch_size": 1, "seq_len": 4096, "optimizer": "sgd"},
              "precision": {"weights": "fp32"}}


def test_memory_can_fall_as_the_sequence_grows_and_the_solver_knows():
    def total(s):
        r = call({**GEMMA_FP32, "workload": {**GEMMA_FP32["workload"], "seq_len": s}})["result"]
        return r["device_total_bytes"]
    assert total(4097) < total(4096)            # past the 4,096-token window: the efficient kernel, not math
    def high(s):                                # a length fits when its band's upper edge does (issue 22)
        r = call({**GEMMA_FP32, "workload": {**GEMMA_FP32["workload"], "seq_len": s}})["result"]
        return r["bands"]["device_total"]["high_bytes"]
    assert high(4097) < high(4096)
    cap = (high(4096) + high(4097)) // 2        # 4,096 tokens do not fit, 4,097 do
    res = _solved({**GEMMA_FP32, "gpu": {"memory_bytes": cap}})
    assert res["max_seq_len"] > 4096            # before: the search stopped at the first failure

    def fits(s):
        return call({**GEMMA_FP32, "workload": {**GEMMA_FP32["workload"], "seq_len": s},
                     "gpu": {"memory_bytes": cap}})["result"]["fits"]
    assert fits(res["max_seq_len"]) and not fits(res["max_seq_len"] + 1)
    lo, hi = res["max_seq_len_gaps"][0]
    assert fits(lo - 1) and not fits(lo) and not fits(hi) and hi == 4096


def test_the_solver_matches_a_linear_scan_where_memory_is_not_monotonic():
    # a small sliding-window model, scanned exhaustively: every length from 1 to 600
    cfg = {"model_type": "gemma2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
           "sliding_window": 256}
    base = {"hf_config": cfg, "workload": {"mode": "full", "optimizer": "sgd", "batch_size": 1},
            "precision": {"weights": "fp32"}, "framework": {"cuda_context_bytes": 0}}
    # a length fits when its device total's band fits, upper edge and all (issue 22)
    totals = {s: call({**base, "workload": {**base["workload"], "seq_len": s}})["result"]["bands"]["device_total"]
              ["high_bytes"] for s in range(1, 601)}
    assert totals[257] < totals[256]
    cap = (totals[256] + totals[257]) // 2      # 256 does not fit, 257 does
    fitting = [s for s, t in totals.items() if t <= cap]
    res = _solved({**base, "workload": {**base["workload"], "seq_len": 8}, "gpu": {"memory_bytes": cap}})
    assert res["max_seq_len"] >= max(fitting)
    assert totals[res["max_seq_len"]] <= cap < totals[res["max_seq_len"] + 1]
    gap = res["max_seq_len_gaps"][0]
    assert gap[0] == min(s for s in totals if totals[s] > cap) and gap[1] == 256


@pytest.mark.parametrize("model", ["qwen2.5-0.5b", "llama-3.2-1b", "gpt2", "mixtral-8x7b"])
@pytest.mark.parametrize("mode", ["qlora", "lora", "full"])
def test_zero3_never_holds_more_per_gpu_than_one_gpu(model, mode):
    base = {"model": model, "workload": {"mode": mode, "seq_len": 256}}
    one = call(base)["result"]["device_total_bytes"]
    for dp in (2, 8):
        z3 = call({**base, "parallelism": {"data_parallel": dp, "zero_stage": 3}})["result"]
        assert z3["device_total_bytes"] <= one
    gathered = next(c for c in z3["breakdown"]["children"][0]["children"][0]["children"]
                    if c["name"].startswith("gathered"))
    if mode == "qlora":     # two layers at NF4 size (about 4.1 bits a weight), not 16 bits
        one_layer_16bit = 2 * sum(c["bytes"] for c in call(base)["result"]["breakdown"]["children"][0]["children"][0]
                                  ["children"] if "NF4 weights" in c["name"]) * 4 // call(base)["result"]["model"]["n_layers"]
        assert gathered["bytes"] < one_layer_16bit


def test_quantised_inference_with_fp16_activations_needs_less_than_fp16_and_bf16_says_why():
    def run(weights, act=None):
        return call({"model": "llama-3.2-1b", "workload": {"mode": "inference", "batch_size": 8, "seq_len": 2048,
                                                            "attention": "eager"},
                     "precision": {"weights": weights, "activations": act}})["result"]
    fp16 = run("fp16")["device_total_bytes"]
    assert run("int8", "fp16")["device_total_bytes"] < fp16
    assert run("int4", "fp16")["device_total_bytes"] < fp16
    bf16 = run("int8")
    names = [c["name"] for c in bf16["breakdown"]["children"][0]["children"][1]["children"]]
    assert "softmax input converted to fp32 (bf16 only)" in names
    assert error({"model": "gpt2", "precision": {"weights": "bf16", "activations": "fp16"}})["field"] == \
        "precision.activations"
