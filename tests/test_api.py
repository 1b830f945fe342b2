"""The JSON entry point: every kind of bad input is an error naming its field, and nothing escapes."""

import json
import pytest
from hypothesis import given, settings, strategies as st

from pycore.api import estimate


def call(obj) -> dict:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return json.loads(estimate(text))


def error_field(obj) -> str:
    resp = call(obj)
    assert resp["status"] == "error", resp
    assert resp["errors"][0]["message"]
    return resp["errors"][0]["field"]


GOOD = {"model": "gpt2", "workload": {"mode": "full", "batch_size": 2, "seq_len": 128}, "precision": {"weights": "fp32"}}


def with_(path: str, value):
    req = json.loads(json.dumps(GOOD))
    node = req
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return req


@pytest.mark.parametrize("path,value,field", [
    ("workload.batch_size", -1, "workload.batch_size"),
    ("workload.batch_size", 0, "workload.batch_size"),
    ("workload.batch_size", 2.5, "workload.batch_size"),
    ("workload.batch_size", "8", "workload.batch_size"),
    ("workload.seq_len", 10 ** 12, "workload.seq_len"),
    ("workload.mode", "pretrain", "workload.mode"),
    ("workload.optimizer", "adam9000", "workload.optimizer"),
    ("workload.attention", None, "workload.attention"),
    ("workload.gradient_checkpointing", "yes", "workload.gradient_checkpointing"),
    ("workload.colour", "red", "workload.colour"),
    ("precision.weights", "fp13", "precision.weights"),
    ("precision.autocast", "bf16", "precision.autocast"),     # needs fp32 weights, given fp32: valid? see below
    ("model", "not-a-model", "model"),
    ("model", 42, "model"),
    ("gpu", "gtx-9999", "gpu"),
    ("gpu", {"memory_gib": -3}, "gpu.memory_gib"),
    ("schema", 99, "schema"),
])
def test_bad_values_are_errors_naming_the_field(path, value, field):
    req = with_(path, value)
    if path == "precision.autocast":
        req["precision"]["weights"] = "bf16"
    assert error_field(req) == field


def test_infinite_number_names_its_field():
    # 1e999 is valid JSON that parses to an infinite float
    assert error_field('{"model": "gpt2", "gpu": {"memory_gib": 1e999}}') == "gpu.memory_gib"
    assert error_field('{"model": "gpt2", "workload": {"batch_size": 1e999}}') == "workload.batch_size"


def test_nan_in_the_json_text_is_refused():
    assert error_field('{"model": "gpt2", "workload": {"batch_size": NaN}}') == "request"


def test_lora_target_that_matches_nothing_names_the_field():
    req = with_("workload.mode", "lora")
    req["workload"]["lora"] = {"targets": ["nonexistent_proj"]}
    assert error_field(req) == "workload.lora.targets"


@pytest.mark.parametrize("text", ["", "[", "null", "[]", "\"gpt2\"", "{" * 100000, "[" * 5000 + "]" * 5000,
                                  "x" * 2_000_000])
def test_malformed_json_is_an_error(text):
    resp = call(text)
    assert resp["status"] == "error" and resp["errors"][0]["field"]


@pytest.mark.parametrize("cfg,field", [
    ({"model_type": "llama"}, "hf_config.hidden_size"),
    ({"model_type": "llama", "hidden_size": {"$gt": 1}, "intermediate_size": 1, "num_hidden_layers": 1,
      "num_attention_heads": 1, "vocab_size": 1}, "hf_config.hidden_size"),
    ({"model_type": ["llama"]}, "hf_config.model_type"),
    ({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 10 ** 40}, "hf_config.vocab_size"),
    ({"model_type": "llama", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "vocab_size": 10, "hidden_act": "<script>alert(1)</script>"}, "hf_config.hidden_act"),
    ("not a dict", "hf_config"),
])
def test_hostile_config_json_names_the_field(cfg, field):
    assert error_field({"hf_config": cfg, "workload": {"batch_size": 1, "seq_len": 8}}) == field


def test_absurdly_large_but_valid_run_is_a_result_not_an_error():
    resp = call({"model": "llama-3.1-405b", "workload": {"mode": "full", "batch_size": 64, "seq_len": 131072},
                 "gpu": "rtx-3060-12gb"})
    assert resp["status"] == "ok" and resp["result"]["fits"] is False


def test_custom_dimensions_model():
    resp = call({"model": {"dimensions": {"n_layers": 4, "hidden_size": 256, "n_heads": 4, "vocab_size": 1000}},
                 "workload": {"batch_size": 1, "seq_len": 64}, "gpu": {"memory_gib": 8}})
    assert resp["status"] == "ok"
    # by hand: 4 layers x (4*256^2 attention + 3*256*1024 MLP + 2*256 norms) + 2*1000*256 + 256
    assert resp["result"]["params"]["total"] == 4 * (4 * 256 ** 2 + 3 * 256 * 1024 + 512) + 2 * 1000 * 256 + 256


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10 ** 20, max_value=10 ** 20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)
field_names = st.sampled_from(["mode", "batch_size", "seq_len", "new_tokens", "optimizer", "attention",
                               "gradient_checkpointing", "lora", "weights", "autocast", "kv_cache"])
models = st.sampled_from(["gpt2", "bert-base", "llama-3.2-1b", "olmoe-1b-7b", "deepseek-v2-lite", "gemma-2-2b",
                          "phi-3-mini", "chatglm3-6b", "x"]) | json_values


@settings(max_examples=300, deadline=None)
@given(model=models, workload=st.dictionaries(field_names, json_values | st.integers(1, 5000), max_size=6),
       precision=st.dictionaries(st.sampled_from(["weights", "autocast", "kv_cache"]),
                                 st.sampled_from(["fp32", "bf16", "fp16", "int4", "fp8", None]) | json_values, max_size=3),
       gpu=st.sampled_from(["h100-sxm-80gb", "t4-16gb"]) | json_values, solve=st.booleans())
def test_no_request_makes_estimate_raise(model, workload, precision, gpu, solve):
    req = {"model": model, "workload": workload, "precision": precision, "gpu": gpu, "solve": solve and False}
    resp = json.loads(estimate(json.dumps(req)))
    assert resp["status"] in ("ok", "error")
    if resp["status"] == "error":
        assert all(e["field"] and e["message"] for e in resp["errors"])
        assert "internal error" not in resp["errors"][0]["message"]
