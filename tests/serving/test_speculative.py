"""Speculative decoding and pooling models in the serving engines (issue 24 item 6): each figure is
arithmetic done by hand from the engine's rules (sources in pycore/serving/speculative.py)."""

import pytest

from pycore.api import estimate_dict
from pycore.serving.commands import read_command

GiB, MiB = 2 ** 30, 2 ** 20
H = 4096                      # Llama-3.1-8B hidden size
LLAMA_8B_TOKEN = 32 * 8 * 128 * 2 * 2       # layers x KV heads x head_dim x (K, V) x bf16 = 131,072 B
LLAMA_1B_TOKEN = 16 * 8 * 64 * 2 * 2        # Llama-3.2-1B: 16 layers x 8 heads x 64 = 32,768 B
# Llama-3.2-1B's parameters: embedding 128,256 x 2,048 (tied to the head) + 16 layers of
# q 2048^2 + k, v 2 x 2048 x 512 + o 2048^2 + MLP 3 x 2048 x 8192 + 2 norms x 2048, + final norm 2048
LLAMA_1B_PARAMS = 128256 * 2048 + 16 * (2048 * 2048 * 2 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048) + 2048
# one Llama-3.1-8B decoder layer: q, o 4096^2; k, v 4096 x 1024; MLP 3 x 4096 x 14336; 2 norms
LLAMA_8B_LAYER = 2 * H * H + 2 * H * 1024 + 3 * H * 14336 + 2 * H


def serve(model="llama-3.1-8b", gpu="h100-sxm-80gb", **workload):
    resp = estimate_dict({"model": model, "gpu": gpu, "workload": {"mode": "serve", **workload}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def error(model="llama-3.1-8b", **workload):
    resp = estimate_dict({"model": model, "gpu": "h100-sxm-80gb", "workload": {"mode": "serve", **workload}})
    assert resp["status"] == "error", resp
    return resp["errors"][0]


def part(tree: dict, name_start: str) -> int:
    """Bytes of the first node whose name starts with ``name_start``, anywhere in the tree."""
    if tree["name"].startswith(name_start):
        return tree["bytes"]
    for child in tree.get("children", ()):
        found = part(child, name_start)
        if found is not None:
            return found
    return None


VLLM = dict(engine="vllm", version="0.19.0", max_model_len=8192, kv_cache_memory_bytes=10 * GiB)


def test_vllm_draft_model_takes_its_kv_pages_from_the_same_budget():
    base = serve(**VLLM)
    r = serve(**VLLM, draft_model="llama-3.2-1b", num_speculative_tokens=5)
    # a block of 16 tokens holds the target's and the draft's layers: 16 x (131,072 + 32,768) = 2,621,440 B
    assert base["report"]["num_gpu_blocks"] == 10 * GiB // (16 * LLAMA_8B_TOKEN) == 5120
    assert r["report"]["num_gpu_blocks"] == 10 * GiB // (16 * (LLAMA_8B_TOKEN + LLAMA_1B_TOKEN)) == 4096
    assert r["kv_cache_tokens"] == 4096 * 16                 # one group (uniform type): blocks x block size
    assert r["max_concurrency"] == 4096 / (8192 / 16)        # 8.0 requests of 8,192 tokens
    # the draft loads whole, with its own (tied) embedding: 1,235,814,400 parameters x 2 bytes
    assert LLAMA_1B_PARAMS == 1_235_814_400
    assert r["report"]["weights_bytes"] - base["report"]["weights_bytes"] == LLAMA_1B_PARAMS * 2


def test_vllm_eagle_head_is_one_target_layer_and_fc_sharing_embedding_and_head():
    base = serve(**VLLM)
    r = serve(**VLLM, speculative_method="eagle")
    assert r["report"]["weights_bytes"] - base["report"]["weights_bytes"] == (LLAMA_8B_LAYER + 2 * H * H) * 2
    # one more layer of the target's shape in every block: 10 GiB // (16 x 33 x 4,096 B) = 4,964 blocks
    assert r["report"]["num_gpu_blocks"] == 10 * GiB // (16 * 33 * 8 * 128 * 2 * 2) == 4964


def test_vllm_eagle3_head_adds_its_wider_qkv_fused_fc_and_draft_vocabulary_head():
    base = serve(**VLLM)
    r = serve(**VLLM, speculative_method="eagle3")
    qkv_extra = H * (4096 + 2 * 1024)                       # qkv reads 2h: one more h of input
    fc = 3 * H * H
    head = 32000 * H
    assert r["report"]["weights_bytes"] - base["report"]["weights_bytes"] == \
        (LLAMA_8B_LAYER + qkv_extra + fc + head) * 2 + 32000 * 8


def test_vllm_deepseek_mtp_layer_adds_a_latent_cache_layer():
    r = serve(model="deepseek-v3", gpu="h200-141gb", engine="vllm", version="0.19.0", tensor_parallel_size=8,
              max_model_len=32768, kv_cache_memory_bytes=10 * GiB, speculative_method="mtp")
    # MLA: (kv_lora_rank 512 + rope 64) x 2 bytes a token and layer, blocks of 64 tokens, 61 + 1 layers
    assert r["report"]["num_gpu_blocks"] == 10 * GiB // (64 * 576 * 2 * 62) == 2348
    # eh_proj (2h x h, replicated) and enorm, hnorm, shared_head.norm: 2 x 7168^2 + 3 x 7168, bf16
    assert part(r["breakdown"], "eh_proj") == (2 * 7168 * 7168 + 3 * 7168) * 2


def test_sglang_draft_pool_has_the_targets_token_slots_over_the_drafts_layers():
    r = serve(engine="sglang", version="0.5.10", context_length=8192, mem_fraction_static=0.8,
              max_total_tokens=100000, draft_model="llama-3.2-1b")
    assert r["kv_cache_tokens"] == 100000
    assert part(r["breakdown"], "draft KV pool") == (100000 + 1) * LLAMA_1B_TOKEN
    assert part(r["breakdown"], "draft model llama-3.2-1b") == LLAMA_1B_PARAMS * 2
    # max_running_requests resets to 48; a standalone draft verifies 4 tokens a request (fp32 logits)
    assert r["settings"]["max_running_requests"] == 48
    assert part(r["breakdown"], "verify logits") == 48 * 4 * 128256 * 4


def test_sglang_default_fraction_reserves_six_gib_more_for_a_draft_model_four_for_eagle():
    base, draft, eagle = (serve(engine="sglang", version="0.5.10", context_length=8192, **kw)
                          for kw in ({}, {"draft_model": "llama-3.2-1b"}, {"speculative_method": "eagle"}))
    gpu_mib = base["gpu"]["memory_bytes"] / MiB
    reserved = max(512 + 8192 * 1.5 + 256 * 2 + 1 / 8 * 1024, 10 * 1024)     # 13,440 MiB on an 80 GB H100
    assert base["settings"]["mem_fraction_static"] == round((gpu_mib - reserved) / gpu_mib, 3)
    assert draft["settings"]["mem_fraction_static"] == round((gpu_mib - reserved - 6144) / gpu_mib, 3)
    assert eagle["settings"]["mem_fraction_static"] == round((gpu_mib - reserved - 4096) / gpu_mib, 3)


def test_llamacpp_draft_makes_one_context_per_slot():
    base = serve(engine="llamacpp", n_ctx=8192, n_parallel=2, flash_attn="on")
    r = serve(engine="llamacpp", n_ctx=8192, n_parallel=2, flash_attn="on", draft_model="llama-3.2-1b",
              n_ctx_draft=4096)
    # each of the 2 slots: 4,096 tokens x 32,768 B of f16 K and V
    assert part(r["breakdown"], "draft KV cache") == 2 * 4096 * LLAMA_1B_TOKEN
    assert r["kv_cache_bytes"] == base["kv_cache_bytes"]            # the target's cache is unchanged
    assert r["device_total_bytes"] - base["device_total_bytes"] == part(r["breakdown"], "speculative draft")
    # -cd unset: llama_n_ctx_seq of the target, all 8,192 cells with the unified cache (the default),
    # 8,192 / 2 slots without it
    d = serve(engine="llamacpp", n_ctx=8192, n_parallel=2, flash_attn="on", draft_model="llama-3.2-1b")
    assert part(d["breakdown"], "draft KV cache") == 2 * 8192 * LLAMA_1B_TOKEN
    d = serve(engine="llamacpp", n_ctx=8192, n_parallel=2, flash_attn="on", draft_model="llama-3.2-1b",
              kv_unified=False)
    assert part(d["breakdown"], "draft KV cache") == 2 * 4096 * LLAMA_1B_TOKEN


def test_vllm_encoder_only_pooling_model_has_no_kv_cache():
    r = serve(model="bert-base", engine="vllm", version="0.19.0", runner="pooling")
    assert r["kv_cache_bytes"] == 0 and r["kv_cache_tokens"] == 0 and r["starts"]
    assert part(r["breakdown"], "KV cache") is None
    assert r["max_concurrency"] == r["settings"]["max_num_seqs"]
    # what is left is weights, activations, non-torch memory, graphs and the context
    assert r["device_total_bytes"] < 2 * GiB


def test_vllm_decoder_pooling_model_keeps_its_cache_but_runs_no_sampler():
    gen = serve(model="qwen3-0.6b", engine="vllm", version="0.19.0", max_model_len=8192)
    pool = serve(model="qwen3-0.6b", engine="vllm", version="0.19.0", max_model_len=8192, runner="pooling")
    assert pool["kv_cache_bytes"] > 0
    assert part(gen["breakdown"], "sampler") and part(pool["breakdown"], "sampler") is None
    assert pool["report"]["activation_bytes"] < gen["report"]["activation_bytes"]


def test_requests_without_the_new_fields_are_unchanged_by_them():
    a = serve(**VLLM)
    b = serve(**VLLM, runner="generate")
    assert a["device_total_bytes"] == b["device_total_bytes"] and a["kv_cache_tokens"] == b["kv_cache_tokens"]


COMMANDS = [
    ("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 8192 --speculative-config "
     "'{\"model\": \"meta-llama/Llama-3.2-1B-Instruct\", \"num_speculative_tokens\": 5}'",
     {"draft_model": "llama-3.2-1b", "num_speculative_tokens": 5}),
    ("vllm serve Qwen/Qwen3-0.6B --task embed", {"runner": "pooling"}),
    ("python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --context-length 8192 "
     "--speculative-algorithm EAGLE --speculative-num-draft-tokens 4", {"speculative_method": "eagle",
                                                                      "num_speculative_tokens": 4}),
    ("llama-server -m Llama-3.1-8B-Instruct-Q4_K_M.gguf -c 8192 -md Llama-3.2-1B-Instruct-Q8_0.gguf -ngld 99 "
     "-cd 4096 --draft-max 8", {"draft_model": "llama-3.2-1b", "quant_draft": "Q8_0", "n_gpu_layers_draft": 99,
                                "n_ctx_draft": 4096, "num_speculative_tokens": 8}),
]


@pytest.mark.parametrize("cmd,fields", COMMANDS)
def test_speculative_flags_are_read_and_written_back(cmd, fields):
    r = read_command(cmd)
    assert {k: r["workload"][k] for k in fields} == fields
    first = serve(model=r["model"], **{k: v for k, v in r["workload"].items() if k != "mode"})
    again_req = read_command(first["launch_command"])
    assert {k: again_req["workload"].get(k) for k in fields} == fields
    again = serve(model=again_req["model"], **{k: v for k, v in again_req["workload"].items() if k != "mode"})
    assert again["device_total_bytes"] == first["device_total_bytes"]


def test_model_free_drafting_holds_nothing():
    r = read_command("vllm serve meta-llama/Llama-3.1-8B-Instruct --speculative-config "
                     "'{\"method\": \"ngram\", \"num_speculative_tokens\": 4, \"prompt_lookup_max\": 4}'")
    assert "draft_model" not in r["workload"] and "speculative_method" not in r["workload"]


@pytest.mark.parametrize("workload,field", [
    ({"engine": "vllm", "draft_model": "no-such-model"}, "workload.draft_model"),
    ({"engine": "vllm", "speculative_method": "mtp"}, "workload.speculative_method"),
    ({"engine": "vllm", "speculative_method": "eagle", "draft_model": "llama-3.2-1b"}, "workload.draft_model"),
    ({"engine": "vllm", "speculative_method": "draft_model"}, "workload.draft_model"),
    ({"engine": "vllm", "num_speculative_tokens": 3}, "workload.num_speculative_tokens"),
    ({"engine": "llamacpp", "speculative_method": "eagle"}, "workload.speculative_method"),
    ({"engine": "sglang", "runner": "pooling"}, "workload.runner"),
])
def test_bad_speculative_settings_name_the_field(workload, field):
    assert error(**workload)["field"] == field


def test_vllm_reports_the_verify_logits_its_profile_run_leaves_out():
    r = serve(**VLLM, draft_model="llama-3.2-1b", num_speculative_tokens=5, max_num_seqs=64)
    # 64 requests x (5 drafted + 1 bonus) rows x 128,256 vocabulary x 4 bytes (fp32)
    assert r["report"]["speculative_verify_logits_bytes"] == 64 * 6 * 128256 * 4
    assert "speculative_verify_logits_bytes" not in serve(**VLLM)["report"]
