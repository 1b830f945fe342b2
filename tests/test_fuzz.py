"""A bounded fuzz of the JSON entry point with the hostile shapes of the hardening review (issue 8).

Every response is valid JSON; an error names a field that exists in the request (or, for a missing
field, its parent); no byte count in a result is a float; and no request takes more than 100 ms of
CPU time (process time, so that a busy machine does not make the bound flaky).
"""

import gc
import importlib
import json
import math
import re
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from pycore.api import estimate
from pycore.estimate import RECIPE_FUNCTIONS

# Recipes are imported on first use; import them now so that no measured request pays for an import.
for _module, _ in RECIPE_FUNCTIONS.values():
    importlib.import_module(f"pycore.parallel.{_module}")


# Modules the core imports on first use (the recipes, the serving engines) are imported once here, so
# that a request's time is its own work and not the import of a module.
for _warm in ({"model": "gpt2", "workload": {"mode": "full"}, "solve": True},
              {"model": "gpt2", "workload": {"mode": "serve", "engine": "vllm"}}):
    estimate(json.dumps(_warm))
for _module in ("pycore.plan.fit", "pycore.plan.layouts", "pycore.plan.sweep", "pycore.plan.serving",
                "pycore.check.parse", "pycore.check.compare", "pycore.serving.sglang", "pycore.serving.llamacpp"):
    importlib.import_module(_module)


def timed_estimate(text: str) -> tuple[str, float]:
    """The response and the CPU seconds the estimator itself took (garbage collection paused: a
    collection of the caches is not the request's work)."""
    gc.disable()
    try:
        t0 = time.process_time()
        out = estimate(text)
        return out, time.process_time() - t0
    finally:
        gc.enable()

HUGE = st.sampled_from([10 ** 400, -10 ** 400, 10 ** 19, 2 ** 63, 10 ** 7, 10_001, 1e300, -1.0, 0, 0.5, 2.0, True])
SCALARS = (st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6) | HUGE
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
           | st.sampled_from(["\ud800", "\x1b[2J", "<script>", "all-linear", "fp8", "int4", "lora", "vllm", ""]))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=8)


def mostly(good, bad=HUGE):
    """``good`` three times in four, ``bad`` otherwise, so that many requests reach a result."""
    return st.one_of(good, good, good, bad)


WORKLOAD_KEYS = ["mode", "batch_size", "seq_len", "new_tokens", "optimizer", "attention", "gradient_checkpointing",
                 "qlora_double_quant", "colour"]
MODES = st.sampled_from(["full", "lora", "qlora", "inference"])
HF_TYPES = st.sampled_from(["llama", "qwen2_moe", "qwen3_moe", "deepseek_v3", "gemma2", "gemma3_text", "gpt2", "bert",
                            "chatglm", "gpt_neox", "phi3", "mixtral", "unknown_type", "llama4", "llama4_text",
                            "glm4_moe", "qwen3_next", "gpt_bigcode", "starcoder2", "cohere", "cohere2"])


@st.composite
def hf_configs(draw):
    """A config.json with plausible fields, some of them hostile: huge layer counts with short lists."""
    cfg = {"model_type": draw(HF_TYPES), "hidden_size": draw(mostly(st.sampled_from([64, 128]))),
           "num_hidden_layers": draw(mostly(st.sampled_from([1, 2, 2, 1_024, 10_000_000]))),
           "num_attention_heads": draw(mostly(st.sampled_from([4, 4, 3]))), "vocab_size": draw(mostly(st.just(100))),
           "intermediate_size": 64}
    for key, values in (("num_experts", st.sampled_from([4, 0]) | HUGE),
                        ("mlp_only_layers", st.lists(st.integers(0, 3), max_size=50) | VALUES),
                        ("layer_types", st.lists(st.sampled_from(["sliding_attention", "full_attention"]), max_size=8)),
                        ("sliding_window", st.sampled_from([8, 0]) | HUGE), ("num_key_value_heads", st.sampled_from([2, 3])),
                        ("kv_lora_rank", st.sampled_from([16]) | HUGE), ("n_embd", st.just(64)), ("n_layer", st.just(2)),
                        ("n_head", st.just(4)), ("num_layers", st.just(2)), ("ffn_hidden_size", st.just(64)),
                        ("hidden_act", mostly(st.sampled_from(["silu", "gelu"]), st.just("\x1b") | VALUES)),
                        # Llama 4, Qwen3-Next, GLM, BigCode, Cohere fields
                        ("intermediate_size_mlp", st.sampled_from([128]) | HUGE), ("attention_chunk_size", st.sampled_from([8]) | HUGE),
                        ("no_rope_layers", st.lists(st.sampled_from([0, 1]), max_size=12) | VALUES),
                        ("moe_layers", st.lists(st.integers(-2, 12), max_size=12) | VALUES),
                        ("interleave_moe_layer_step", st.sampled_from([1, 2]) | HUGE),
                        ("full_attention_interval", st.sampled_from([1, 2, 4]) | HUGE),
                        ("linear_num_value_heads", st.sampled_from([4, 3]) | HUGE), ("linear_num_key_heads", st.sampled_from([2])),
                        ("linear_key_head_dim", st.sampled_from([16]) | HUGE), ("linear_value_head_dim", st.just(16)),
                        ("linear_conv_kernel_dim", st.sampled_from([4]) | HUGE),
                        ("n_routed_experts", st.sampled_from([4]) | HUGE), ("first_k_dense_replace", st.sampled_from([1, 5]) | HUGE),
                        ("multi_query", VALUES), ("use_qk_norm", VALUES), ("use_bias", VALUES),
                        ("text_config", st.just({}) | VALUES), ("vision_config", VALUES),
                        ("_name_or_path", SCALARS)):
        if draw(st.integers(0, 3)) == 0:
            cfg[key] = draw(values)
    return cfg


@st.composite
def requests(draw):
    req = {}
    model = draw(st.sampled_from(["catalog", "hf", "hf_text", "dims", "junk"]))
    if model == "catalog":
        req["model"] = draw(st.sampled_from(["gpt2", "llama-3.2-1b", "qwen3-30b-a3b", "deepseek-v2-lite", "gemma-2-2b",
                                             "bert-base", "nope"]))
    elif model == "hf":
        req["hf_config"] = draw(hf_configs())
    elif model == "hf_text":
        req["hf_config"] = json.dumps(draw(hf_configs()))
    elif model == "dims":
        req["model"] = {"dimensions": {"n_layers": draw(mostly(st.just(2))), "hidden_size": 64,
                                       "n_heads": draw(mostly(st.just(4))), "vocab_size": 100,
                                       **draw(st.dictionaries(st.sampled_from(["model_type", "family", "n_kv_heads",
                                                                               "n_experts", "name"]), VALUES, max_size=1))}}
    else:
        req["model"] = draw(VALUES)
    if model == "dims" and draw(st.booleans()):
        req["model"]["dimensions"] = {k: v for k, v in req["model"]["dimensions"].items() if k in ("n_layers", "hidden_size", "n_heads", "vocab_size")}
    workload = {"mode": draw(MODES), "batch_size": draw(mostly(st.integers(1, 8))),
                "seq_len": draw(mostly(st.integers(1, 2048)))}
    if draw(st.integers(0, 3)) == 0:
        workload.update(draw(st.dictionaries(st.sampled_from(WORKLOAD_KEYS), VALUES, max_size=2)))
    if draw(st.booleans()):
        workload["lora"] = draw(st.fixed_dictionaries({}, optional={"rank": st.integers(1, 64) | HUGE,
                                                                      "targets": st.just("all-linear") | VALUES}))
    req["workload"] = workload
    if draw(st.booleans()):
        req["precision"] = draw(st.fixed_dictionaries({}, optional={
            "weights": st.sampled_from(["fp32", "bf16", "int4", "fp8"]) | VALUES,
            "autocast": st.sampled_from(["bf16", None]), "activations": st.sampled_from(["fp16", None]) | VALUES}))
    if draw(st.booleans()):
        req["parallelism"] = draw(st.fixed_dictionaries({}, optional={
            "data_parallel": st.integers(1, 8) | HUGE, "zero_stage": st.integers(0, 4) | HUGE}))
    if draw(st.booleans()):
        req["gpu"] = draw(st.sampled_from(["t4-16gb", "h100-sxm-80gb"]) | st.fixed_dictionaries(
            {"memory_gib": st.floats(0.001, 1e3) | HUGE}) | VALUES)
    if draw(st.booleans()):
        req["framework"] = {"cuda_context_bytes": draw(st.integers(0, 2 ** 30) | HUGE)}
    req["solve"] = draw(st.booleans()) if draw(st.integers(0, 9)) == 0 else False
    return req


def _resolve(obj, path: str) -> bool:
    node = obj
    for part in re.findall(r'\["(?:[^"\\]|\\.)*"\]|[^.\[\]]+|\[\d+\]', path):
        if part.startswith('["'):
            part = json.loads(part[1:-1])          # a key written JSON-quoted: ["odd.key"]
        elif part.startswith("["):
            i = int(part[1:-1])
            if not isinstance(node, list) or i >= len(node):
                return False
            node = node[i]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, str) and part and path.startswith(("hf_config", "model.hf_config")):
            return True         # a config.json given as text: its fields are inside the string
        else:
            return False
    return True


def _assert_names_a_field_of(req, err):
    field = err["field"]
    if field == "request":
        return
    if _resolve(req, field):
        return
    parent = field.rsplit(".", 1)[0] if "." in field else ""
    missing = re.search(r"missing|required|needs|give", err["message"])
    assert missing and (not parent or _resolve(req, parent)), (field, err)


def _assert_integer_byte_counts(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "bytes" or k.endswith("_bytes"):
                assert type(v) is int, (k, v)
            _assert_integer_byte_counts(v)
    elif isinstance(node, list):
        for v in node:
            _assert_integer_byte_counts(v)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests())
def test_every_hostile_request_gets_a_bounded_structured_answer(req):
    text = json.dumps(req)
    out, seconds = timed_estimate(text)
    resp = json.loads(out)
    assert resp["status"] in ("ok", "error")
    if resp["status"] == "error":
        for err in resp["errors"]:
            assert err["field"] and err["message"] and "internal error" not in err["message"], err
            _assert_names_a_field_of(req, err)
    else:
        _assert_integer_byte_counts(resp["result"])
        assert all(math.isfinite(v) for v in (resp["result"]["device_total_bytes"], resp["result"]["peak_allocated_bytes"]))
    assert seconds < 0.1, f"{seconds * 1000:.0f} ms for {text[:300]}"


@settings(max_examples=300, deadline=None)
@given(depth=st.integers(60, 20_000), opener=st.sampled_from(["[", '{"a":']), inside=st.sampled_from(["request", "hf"]))
def test_nesting_at_any_depth_is_answered_without_recursion(depth, opener, inside):
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + ("" if opener == "[" else "1") + closer * depth
    text = deep if inside == "request" else json.dumps({"hf_config": deep})
    resp = json.loads(estimate(text))
    assert resp["status"] == "error" or depth <= 64


VALID = [
    {"model": "llama-3.2-1b", "workload": {"mode": "lora", "batch_size": 2, "seq_len": 256, "lora": {"rank": 8}}},
    {"model": "qwen3-30b-a3b", "workload": {"mode": "inference", "batch_size": 4, "seq_len": 512, "new_tokens": 16},
     "precision": {"weights": "int4"}},
    {"model": "gemma-2-2b", "workload": {"mode": "full", "seq_len": 4096, "optimizer": "adafactor"},
     "precision": {"weights": "fp32", "autocast": "bf16"}, "parallelism": {"data_parallel": 4, "zero_stage": 2}},
    {"hf_config": {"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
                   "vocab_size": 100, "intermediate_size": 64, "num_experts": 4, "mlp_only_layers": [1]},
     "workload": {"mode": "qlora", "seq_len": 64}, "gpu": {"memory_gib": 8}},
    {"model": {"dimensions": {"n_layers": 4, "hidden_size": 256, "n_heads": 4, "vocab_size": 1000}},
     "workload": {"mode": "full", "batch_size": 1, "seq_len": 64}, "framework": {"cuda_context_bytes": 0}},
]


def _paths(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, f"{prefix}.{k}" if prefix else k)
    yield prefix


def _variants(value):
    """Values near a valid one: a whole-number float (JSON 2.0), doubled or 1,000 times larger, negated,
    the other boolean, the same string; many of them are valid and reach a result."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.sampled_from([float(value), value * 2, value * 1000, value + 1, -value, max(1, value // 2)])
    if isinstance(value, float):
        return st.sampled_from([value * 2, value / 2])
    if isinstance(value, str):
        return st.just(value)
    return st.just(value)


@st.composite
def one_bad_field(draw):
    """A valid request with exactly one field (or a new one) replaced by a hostile value."""
    req = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    paths = [p for p in _paths(req) if p]
    path = draw(st.sampled_from(paths + ["workload.colour", "parallelism.zero_stage", "precision.activations"]))
    keys = path.split(".")
    node = req
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = draw(st.one_of(_variants(node.get(keys[-1])), VALUES | HUGE))
    req["solve"] = draw(st.integers(0, 5)) == 0
    return req, path


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=one_bad_field())
def test_one_hostile_field_gets_a_result_or_an_error_naming_it(case):
    req, path = case
    out, seconds = timed_estimate(json.dumps(req))
    resp = json.loads(out)
    if resp["status"] == "ok":
        _assert_integer_byte_counts(resp["result"])
    else:
        err = resp["errors"][0]
        assert "internal error" not in err["message"], err
        _assert_names_a_field_of(req, err)
    assert seconds < 0.1, f"{seconds * 1000:.0f} ms for {json.dumps(req)[:300]}"


SERVE_KEYS = {
    "version": st.sampled_from(["0.10.2", "0.20.0", "0.5.3", "b5000", "b7400", "x"]) | VALUES,
    "gpu_memory_utilization": st.floats(0, 1.5) | HUGE, "max_model_len": st.integers(0, 10 ** 7) | HUGE,
    "max_num_batched_tokens": st.integers(0, 10 ** 6) | HUGE, "max_num_seqs": st.integers(0, 5000) | HUGE,
    "block_size": st.sampled_from([16, 64, 3]) | HUGE, "tensor_parallel_size": st.integers(1, 16) | HUGE,
    "pipeline_parallel_size": st.integers(1, 300) | HUGE, "data_parallel_size": st.integers(1, 8),
    "enable_expert_parallel": st.booleans() | VALUES, "kv_cache_memory_bytes": st.integers(0, 2 ** 45) | HUGE,
    "kv_cache_dtype": st.sampled_from(["auto", "fp8", "bf16"]) | VALUES, "quantization": st.sampled_from(
        ["fp8", "gptq", "awq", "mxfp4", "bnb-nf4"]) | VALUES,
    "mem_fraction_static": st.floats(0, 1.2) | HUGE, "context_length": st.integers(0, 10 ** 7) | HUGE,
    "tp_size": st.integers(1, 16), "pp_size": st.integers(1, 300), "page_size": st.integers(0, 5000) | HUGE,
    "quant": st.sampled_from(["Q4_K_M", "IQ2_XS", "F16", "MXFP4_MOE", "Q9"]), "n_ctx": st.integers(0, 10 ** 7) | HUGE,
    "n_gpu_layers": st.integers(0, 10 ** 5) | HUGE, "n_parallel": st.integers(1, 4096) | HUGE,
    "kv_unified": st.booleans(), "cache_type_k": st.sampled_from(["q8_0", "q4_0", "f16", "iq4_nl"]),
    "cache_type_v": st.sampled_from(["q8_0", "f16"]), "flash_attn": st.sampled_from(["on", "off", "auto", "yes"]),
    "devices": st.integers(1, 64) | HUGE, "n_ubatch": st.integers(1, 10 ** 6) | HUGE, "n_cpu_moe": st.integers(0, 100),
    "logged_free_gib": st.floats(0, 300) | HUGE, "logged_weights_gib": st.floats(0, 300) | HUGE,
    "num_prompts": st.integers(1, 64), "prompt_len": st.integers(1, 10 ** 5), "max_new_tokens": st.integers(0, 10 ** 4),
    "colour": VALUES,
}


@st.composite
def serve_requests(draw):
    model = draw(st.sampled_from(["llama-3.2-1b", "qwen3-30b-a3b", "deepseek-v2-lite", "gemma-2-2b", "gpt-oss-20b",
                                  "phi-3-mini", "gpt2", "bert-base"]))
    engine = draw(st.sampled_from(["vllm", "sglang", "llamacpp", "hf"]) | VALUES)
    workload = {"mode": "serve", "engine": engine}
    for key in draw(st.lists(st.sampled_from(sorted(SERVE_KEYS)), max_size=4, unique=True)):
        workload[key] = draw(SERVE_KEYS[key])
    req = {"model": model, "workload": workload}
    if draw(st.booleans()):
        req["gpu"] = draw(st.sampled_from(["t4-16gb", "h100-sxm-80gb", "rtx-3060-12gb"]))
    return req


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=serve_requests())
def test_every_serving_request_gets_a_bounded_structured_answer(req):
    text = json.dumps(req)
    out, seconds = timed_estimate(text)
    resp = json.loads(out)
    assert resp["status"] in ("ok", "error")
    if resp["status"] == "error":
        for err in resp["errors"]:
            assert err["field"] and err["message"] and "internal error" not in err["message"], err
            _assert_names_a_field_of(req, err)
    else:
        _assert_integer_byte_counts(resp["result"])
        assert resp["result"]["device_total_bytes"] >= 0
    assert seconds < 0.1, f"{seconds * 1000:.0f} ms for {text[:300]}"
