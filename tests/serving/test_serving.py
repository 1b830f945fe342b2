"""Serving engines: each figure is checked against arithmetic done by hand from the engine's rules
(pages, blocks, cells and buffers; sources in pycore/serving/*.py and docs/serving.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pycore.api import estimate, estimate_dict

ROOT = Path(__file__).resolve().parents[2]
GiB, MiB = 2 ** 30, 2 ** 20


def serve(model="llama-3.1-8b", gpu="h100-sxm-80gb", solve=False, **workload):
    resp = estimate_dict({"model": model, "gpu": gpu, "solve": solve, "workload": {"mode": "serve", **workload}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def error(model="llama-3.1-8b", **workload):
    resp = estimate_dict({"model": model, "workload": {"mode": "serve", **workload}})
    assert resp["status"] == "error", resp
    return resp["errors"][0]


# ---- vLLM -----------------------------------------------------------------------------------

def test_vllm_blocks_tokens_and_concurrency_from_the_pool():
    # Llama-3.1-8B: 32 layers x 8 KV heads x 128 x (K + V) x 2 bytes = 131,072 B a token;
    # a 16-token block of one layer is 65,536 B. 10 GiB / (65,536 x 32) = 5,120 blocks.
    r = serve(engine="vllm", version="0.10.2", max_model_len=8192, kv_cache_memory_bytes=10 * GiB)
    assert r["report"]["page_bytes"] == 2 * 16 * 8 * 128 * 2
    assert r["report"]["num_gpu_blocks"] == 5120
    assert r["kv_cache_tokens"] == 5120 * 16
    assert r["max_concurrency"] == 5120 / (8192 // 16)          # 10.0 requests of 8,192 tokens
    assert r["kv_cache_bytes"] == 10 * GiB


def test_vllm_budget_is_utilization_times_memory_less_the_logged_parts():
    total = 80 * GiB
    r = serve(engine="vllm", version="0.10.2", gpu={"memory_bytes": total}, gpu_memory_utilization=0.9,
              logged_weights_gib=15.0, logged_activation_gib=2.0, logged_non_torch_gib=0.5, max_model_len=4096)
    expected = int(total * 0.9) - int(15 * GiB) - int(2 * GiB) - int(0.5 * GiB)
    assert r["report"]["available_kv_bytes"] == expected
    # 0.14 and later round the request up (math.ceil); 0.20 and later also deduct the CUDA graphs.
    r20 = serve(engine="vllm", version="0.20.0", gpu={"memory_bytes": total}, gpu_memory_utilization=0.9,
                logged_weights_gib=15.0, logged_activation_gib=2.0, logged_non_torch_gib=0.5, max_model_len=4096)
    assert r20["report"]["available_kv_bytes"] == expected - r20["report"]["cuda_graph_bytes"]
    assert r20["report"]["cuda_graph_bytes"] > 0


def test_vllm_default_utilization_changed_in_0_20():
    assert serve(engine="vllm", version="0.19.1", max_model_len=4096)["settings"]["gpu_memory_utilization"] == 0.90
    assert serve(engine="vllm", version="0.20.0", max_model_len=4096)["settings"]["gpu_memory_utilization"] == 0.92


def test_vllm_refuses_a_context_that_does_not_fit_and_names_the_longest():
    # 1 GiB of KV for 131,072 tokens: needed = 8,192 blocks x 32 layers x 65,536 B = 16 GiB. The longest
    # length that fits is floor(1 GiB / (32 x 65,536)) x 16 = 512 x 16 = 8,192 tokens.
    r = serve(engine="vllm", version="0.10.2", max_model_len=131072, kv_cache_memory_bytes=GiB)
    assert not r["starts"] and not r["fits"]
    assert r["report"]["needed_kv_bytes"] == 16 * GiB
    assert r["max_context_len"] == 8192
    assert "(16.00 GiB KV cache is needed" in r["refusal"] and "models's max seq len (131072)" in r["refusal"]
    assert "estimated maximum model length is 8192" in r["refusal"]
    assert "model's max seq len" in serve(engine="vllm", version="0.22.0", max_model_len=131072,
                                          kv_cache_memory_bytes=GiB)["refusal"]


def test_vllm_fp8_cache_halves_the_page():
    r = serve(engine="vllm", version="0.10.2", max_model_len=8192, kv_cache_dtype="fp8", kv_cache_memory_bytes=10 * GiB)
    assert r["report"]["page_bytes"] == 16 * 8 * 128 * 2 * 1
    assert r["kv_cache_tokens"] == 2 * 5120 * 16


def test_vllm_mla_caches_one_latent_replicated_on_every_rank():
    # DeepSeek-V3: kv_lora_rank 512 + qk_rope_head_dim 64 = 576 elements a token and layer, in 64-token
    # blocks (FlashMLA), the same on each of 8 tensor-parallel ranks.
    for tp in (1, 8):
        r = serve("deepseek-v3", engine="vllm", version="0.10.2", tensor_parallel_size=tp, max_model_len=8192,
                  kv_cache_memory_bytes=61 * 64 * 576 * 2 * 1000)
        assert r["report"]["page_bytes"] == 64 * 576 * 2
        assert r["report"]["num_gpu_blocks"] == 1000


def test_vllm_kv_heads_are_replicated_when_fewer_than_ranks():
    # Llama-3.1-70B has 8 KV heads: at tp 16 each rank still keeps one head (not half of one).
    r = serve("llama-3.1-70b", engine="vllm", version="0.10.2", tensor_parallel_size=16, max_model_len=4096,
              kv_cache_memory_bytes=GiB)
    assert r["report"]["page_bytes"] == 2 * 16 * 1 * 128 * 2
    assert error(engine="vllm", tensor_parallel_size=3)["field"] == "workload.tensor_parallel_size"


def test_vllm_sliding_window_layers_form_their_own_group():
    # gpt-oss-20b: 12 full-attention and 12 sliding-window (128) layers, 8 KV heads of 64: the page is
    # 2 x 16 x 8 x 64 x 2 = 32,768 B, and the layers pack into 2 groups of 12.
    pool = 12 * 32768 * 1000
    r = serve("gpt-oss-20b", engine="vllm", version="0.10.2", max_model_len=8192, max_num_batched_tokens=2048,
              kv_cache_memory_bytes=pool)
    assert r["report"]["kv_groups"] == 2 and r["report"]["num_gpu_blocks"] == 1000
    assert r["kv_cache_tokens"] == 1000 // 2 * 16
    # One request: 8,192 / 16 = 512 blocks of the full group, (ceil((128 - 1 + 2048) / 16) + 1) = 137 sliding.
    assert r["max_concurrency"] == round(1000 / (512 + 137), 2)


def test_vllm_pipeline_stages_split_layers_as_get_pp_indices():
    # 32 layers over 3 stages: 11, 11, 10; the engine keeps the smallest block count (the 11-layer stages).
    r = serve(engine="vllm", version="0.10.2", pipeline_parallel_size=3, max_model_len=4096,
              kv_cache_memory_bytes=11 * 65536 * 100)
    assert r["report"]["num_gpu_blocks"] == 100
    assert r["gpus"] == 3


def test_vllm_weights_in_a_quantised_format():
    # GPTQ 4-bit, group 128, repacked for Marlin: qweight K*N/2 and fp16 scales 2*(K/128)*N per linear.
    gptq = serve(engine="vllm", version="0.10.2", quantization="gptq", max_model_len=4096)
    plain = serve(engine="vllm", version="0.10.2", max_model_len=4096)
    ratio = gptq["report"]["weights_bytes"] / plain["report"]["weights_bytes"]
    assert 0.25 < ratio < 0.40
    fmt = error(engine="vllm", quantization="gptq", quant_group_size=64, model="gpt-oss-20b")
    assert fmt["field"] == "workload.quantization"              # gpt-oss is already MXFP4


# ---- SGLang ---------------------------------------------------------------------------------

def test_sglang_pool_from_free_memory_and_mem_fraction_static():
    # rest = post - pre x (1 - mfs) = (70 - 15) - 70 x 0.12 = 46.6 GiB; Llama-3.1-8B's cell is
    # 8 heads x 128 x 2 x 32 layers x 2 bytes = 131,072 B.
    r = serve(engine="sglang", version="0.5.3", mem_fraction_static=0.88, logged_free_gib=70, logged_weights_gib=15)
    rest = int(70 * GiB) - int(15 * GiB) - 70 * GiB * 0.12
    assert r["report"]["cell_bytes"] == 131072
    assert r["kv_cache_tokens"] == int(rest) // 131072
    # request slots: min(max(int(T / context_len x 512), 2048), 4096); running: min(T // 2, slots)
    slots = min(max(int(r["kv_cache_tokens"] / 131072 * 512), 2048), 4096)
    assert r["report"]["max_running_requests"] == min(r["kv_cache_tokens"] // 2, slots)


def test_sglang_default_mem_fraction_for_an_h100():
    # 0.5.3 on an 81,559 MiB H100 at tp 1: reserved = 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 = 13,440 MiB,
    # so mfs = round((81559 - 13440) / 81559, 3) = 0.835; at tp 8 (cuda_graph_max_bs 512) 0.818.
    gpu = {"memory_bytes": 81559 * MiB}
    assert serve(gpu=gpu, engine="sglang", version="0.5.3")["report"]["mem_fraction_static"] == 0.835
    assert serve("llama-3.1-70b", gpu=gpu, engine="sglang", version="0.5.3", tp_size=8)["report"][
        "mem_fraction_static"] == 0.818
    assert serve(gpu=gpu, engine="sglang", version="0.4.3", tp_size=1)["report"]["mem_fraction_static"] == 0.88


def test_sglang_refuses_when_nothing_is_left():
    r = serve(engine="sglang", mem_fraction_static=0.1)
    assert not r["starts"] and "increase --mem-fraction-static" in r["refusal"]


# ---- llama.cpp ------------------------------------------------------------------------------

def test_llamacpp_kv_is_the_whole_context_up_front():
    # 32 layers x 8,192 cells x 1,024 (8 KV heads x 128) x 2 bytes, K and V: 1 GiB. q8_0 rows take
    # 34 bytes per 32 elements.
    r = serve(engine="llamacpp", n_ctx=8192, flash_attn="on")
    assert r["report"]["kv_bytes"] == 32 * 8192 * 1024 * 2 * 2
    r8 = serve(engine="llamacpp", n_ctx=8192, flash_attn="on", cache_type_k="q8_0", cache_type_v="q8_0")
    assert r8["report"]["kv_bytes"] == 32 * 8192 * (1024 // 32 * 34) * 2


def test_llamacpp_parallel_slots_share_the_context():
    # -c 4096 -np 10 without a unified cache: 10 streams of pad(409, 256) = 512 cells (build >= b7000).
    r = serve(engine="llamacpp", n_ctx=4096, n_parallel=10, kv_unified=False, flash_attn="on", version="b7400")
    assert r["report"]["cells_per_stream"] == 512 and r["report"]["streams"] == 10
    assert r["report"]["kv_bytes"] == 32 * 10 * 512 * 1024 * 2 * 2


def test_llamacpp_quantised_v_needs_flash_attention():
    assert error(engine="llamacpp", cache_type_v="q8_0", flash_attn="off")["field"] == "workload.cache_type_v"


def test_llamacpp_partial_offload_keeps_the_first_layers_on_the_cpu():
    # -ngl 16 of 32: layers 16..31 on the GPU, their KV too; the output layer (index 32) stays on the CPU.
    r = serve(engine="llamacpp", n_ctx=4096, n_gpu_layers=16, flash_attn="on")
    kv_layer = 4096 * 1024 * 2 * 2
    assert r["report"]["kv_buffer_mib"] == {"CUDA0": 16 * kv_layer / MiB, "CPU": 16 * kv_layer / MiB}
    assert r["report"]["offloaded"] == "16/33 layers to GPU"
    assert r["host"]["bytes"] > r["report"]["model_buffer_mib"]["CPU_Mapped"] * MiB


def test_llamacpp_file_size_of_a_preset():
    # Llama-3.1-8B Q8_0: every 2-D weight in 34-byte blocks of 32; norms (65 vectors of 4,096) in f32.
    r = serve(engine="llamacpp", quant="Q8_0", n_ctx=512)
    weights = 2 * 128256 * 4096 + 32 * (4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 14336)
    assert r["report"]["file_bytes"] == weights // 32 * 34 + 65 * 4096 * 4


# ---- validation, CLI and searches ----------------------------------------------------------

def test_a_setting_of_another_engine_is_an_error_naming_it():
    e = error(engine="llamacpp", gpu_memory_utilization=0.9)
    assert e["field"] == "workload.gpu_memory_utilization" and "vllm" in e["message"]
    assert error(engine="vllm", max_model_len=0)["field"] == "workload.max_model_len"
    assert error(engine="nope")["field"] == "workload.engine"
    assert error(engine="vllm", version="latest")["field"] == "workload.version"
    resp = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "serve"}, "parallelism": {"tensor_parallel": 2}})
    assert resp["errors"][0]["field"] == "parallelism"


def test_cli_serve_prints_kv_tokens_and_concurrency():
    out = subprocess.run([sys.executable, "-m", "pycore", "serve", "--model", "llama-3.1-8b", "--engine", "vllm",
                          "--gpu", "h100-sxm-80gb", "--tp", "1", "--gpu-memory-utilization", "0.9",
                          "--max-model-len", "32768", "--kv-cache-dtype", "fp8", "--json"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    res = json.loads(out.stdout)
    assert res["kv_cache_tokens"] > 0 and res["max_concurrency"] > 0
    assert res["settings"]["gpu_memory_utilization"] == 0.9
    lc = subprocess.run([sys.executable, "-m", "pycore", "serve", "--model", "llama-3.1-8b", "--engine", "llamacpp",
                         "--quant", "Q4_K_M", "--n-ctx", "8192", "--ngl", "20", "--flash-attn", "--json"],
                        capture_output=True, text=True, cwd=ROOT, check=True)
    lres = json.loads(lc.stdout)
    assert lres["settings"]["n_gpu_layers"] == 20 and lres["settings"]["flash_attn"] is True


def test_searches_agree_with_single_estimates():
    r = serve(engine="vllm", version="0.11.0", max_model_len=32768, target_requests=8, solve=True)
    sol = r["solutions"]
    longest = sol["longest_context_for_requests"]
    assert longest > 0
    at = serve(engine="vllm", version="0.11.0", max_model_len=longest)
    over = serve(engine="vllm", version="0.11.0", max_model_len=longest + 1)
    # the searches hold the target at the lower edge of the error band (issue 20), and say so
    low = 1 - sol["band_pct"] / 100
    assert 0 < sol["band_pct"] < 20 and "lower edge" in sol["safety"]
    assert at["max_concurrency"] * low >= 8 > over["max_concurrency"] * low or longest == 131072
    assert sol["most_requests_at_context"] == int(r["max_concurrency"] * low)


def test_gguf_search_picks_the_most_faithful_preset_that_fits_the_card():
    r = serve(gpu="rtx-3060-12gb", engine="llamacpp", n_ctx=8192, flash_attn="on", solve=True)
    choices = {c["quant"]: c for c in r["solutions"]["gguf"]}
    assert not choices["F16"]["all_layers"] and choices["Q4_K_M"]["all_layers"]
    best = r["solutions"]["best_gguf"]
    assert best["all_layers"] and best["quant"] in ("Q8_0", "Q6_K")
    # F16 (15 GiB) still fits some layers on a 12 GiB card.
    assert 0 < choices["F16"]["n_gpu_layers"] < 33


@pytest.mark.parametrize("bad", ['{"model":"llama-3.1-8b","workload":{"mode":"serve","engine":"vllm","max_model_len":1e30}}',
                                 '{"model":"llama-3.1-8b","workload":{"mode":"serve","engine":"llamacpp","n_ctx":-5}}',
                                 '{"model":"llama-3.1-8b","workload":{"mode":"serve","engine":"sglang","page_size":"x"}}'])
def test_bad_serving_values_are_errors_not_crashes(bad):
    out = json.loads(estimate(bad))
    assert out["status"] == "error" and out["errors"][0]["field"].startswith("workload.")


# ---- Hugging Face generate: formats, kernels, caches and version rules -----------------------

def _infer(precision, framework=None, **workload):
    req = {"model": "llama-3.1-8b", "gpu": "h100-sxm-80gb", "precision": precision,
           "workload": {"mode": "inference", "batch_size": 1, "seq_len": 1024, "new_tokens": 64, **workload}}
    if framework:
        req["framework"] = framework
    resp = estimate_dict(req)
    assert resp["status"] == "ok", resp
    return resp["result"]


def _parts(result, category):
    for node in result["breakdown"]["children"][0]["children"]:
        if node["name"] == category:
            return {c["name"]: c["bytes"] for c in node.get("children", [])}
    return {}


def test_gptq_storage_from_the_format_definition():
    from pycore.model.formats import linear_bytes, named_format
    fmt = named_format("gptq")
    k = n = 4096
    # qweight int32 [K*4/32, N], qzeros int32 [K/128, N*4/32], scales fp16 [K/128, N], g_idx int32 [K]
    exllama = 4 * (k * 4 // 32) * n + 4 * (k // 128) * (n * 4 // 32) + 2 * (k // 128) * n + 4 * k
    assert linear_bytes(fmt, k, n, False, 2, marlin=False) == exllama
    # Marlin keeps qweight and scales only (symmetric, no act-order)
    assert linear_bytes(fmt, k, n, False, 2, marlin=True) == 4 * (k * 4 // 32) * n + 2 * (k // 128) * n
    # bitsandbytes NF4 with double quantisation: NK/2, uint8 absmax per 64, fp32 per 256 absmax, code, quant map
    nk = k * n
    assert linear_bytes(named_format("bnb-nf4"), k, n, False, 2) == nk // 2 + 64 + nk // 64 + 4 * (nk // 64 // 256) + 1028
    assert linear_bytes(named_format("fp8-block"), k, n, False, 2) == nk + 4 * 32 * 32


def test_exllama_workspace_is_the_largest_linear_in_fp16():
    r = _infer({"weights": "int4", "activations": "fp16", "quant_format": "gptq", "quant_kernel": "exllama"})
    # the largest quantised linear of Llama-3.1-8B is gate/up/down: 4096 x 14336
    assert _parts(r, "framework buffers") == {"ExLlama temp_dq (largest linear, fp16)": 2 * 4096 * 14336}
    v2 = _infer({"weights": "int4", "activations": "fp16", "quant_format": "gptq", "quant_kernel": "exllamav2"})
    scratch = max(2 * k * n + 256 + 4 * n * 2048 * 8 for k, n in ((4096, 14336), (14336, 4096), (4096, 4096)))
    assert _parts(v2, "framework buffers") == {"ExLlamaV2 scratch (largest linear)": scratch}


def test_static_cache_is_allocated_for_the_whole_length_at_the_prompt():
    kv_token = 32 * 8 * 128 * 2 * 2
    dyn = _infer({"weights": "bf16"})
    static = _infer({"weights": "bf16"}, cache_implementation="static")
    prefill = [p for p in static["phases"] if p["moment"] == "last layer of the prompt pass"][0]
    prefill_dyn = [p for p in dyn["phases"] if p["moment"] == "last layer of the prompt pass"][0]
    assert prefill["bytes"] - prefill_dyn["bytes"] == (1024 + 64 - 1 - 1024) * kv_token
    assert "torch.cat copy of one layer's keys" not in _parts(static, "temporaries")


def test_generate_before_4_42_holds_the_previous_steps_cache():
    kv_token = 32 * 8 * 128 * 2 * 2
    old = _infer({"weights": "bf16"}, framework={"transformers": "4.35"}, seq_len=64, new_tokens=4000)
    temps = _parts(old, "temporaries")
    assert temps["previous step's cache, still referenced (tuples, transformers < 4.42)"] == (64 + 4000 - 2) * kv_token
    new = _infer({"weights": "bf16"}, framework={"transformers": "4.42"}, seq_len=64, new_tokens=4000)
    assert "torch.cat copy of one layer's keys" in _parts(new, "temporaries")


def test_quant_format_must_match_the_weights_class():
    resp = estimate_dict({"model": "llama-3.1-8b", "workload": {"mode": "inference"},
                          "precision": {"weights": "int8", "quant_format": "gptq"}})
    assert resp["errors"][0]["field"] == "precision.weights"


def test_hf_engine_in_serve_mode_is_generate():
    r = serve(engine="hf", num_prompts=4, prompt_len=1000, max_new_tokens=24, quantization="awq")
    assert r["engine"] == "hf" and r["kv_cache_tokens"] == 4 * 1024 and r["max_concurrency"] == 4
    assert any("AWQ" in c["name"] for c in r["breakdown"]["children"][0]["children"][0]["children"])


def test_a_vllm_version_before_v1_was_the_default_is_answered_with_a_warning_that_says_so():
    # VLLM_USE_V1 defaulted to "0" in 0.7.3 and to "1" in 0.8.0 (vllm/envs.py of the released wheels)
    import json as _json
    from pycore.api import estimate as _estimate
    def warns(version):
        res = _json.loads(_estimate(_json.dumps({"model": "llama-3.1-8b", "workload": {"mode": "serve", "engine": "vllm",
                                                                                      "version": version}})))
        return any("V0 engine" in w for w in res["result"]["warnings"])
    assert warns("0.6.3") and warns("0.7.3")
    assert not warns("0.8.0") and not warns("0.19.0")


def test_llamacpp_search_states_its_band_in_numbers():
    # the llama.cpp safety line once printed its template ("{pct:g}%") rather than the band's figure
    r = serve(gpu="rtx-3060-12gb", engine="llamacpp", n_ctx=8192, flash_attn="on", solve=True)
    sol = r["solutions"]
    assert "{" not in sol["safety"] and f"device total {sol['band_pct']:g}% above" in sol["safety"]
