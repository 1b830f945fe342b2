"""vLLM's budget, one line at a time (pycore/serving/vllm_budget.py, vllm_kv.py, vllm.py): each
function against the upstream formula worked by hand here (vLLM 0.19.0 source unless named)."""

import pytest

from pycore.data.catalog import catalog_model
from pycore.serving.config import Serving
from pycore.model.formats import NONE
from pycore.serving.kv import KVLayer, kv_layers, stage_split
from pycore.serving.vllm import kv_answer, kv_refusal, startup_refusal
from pycore.serving.vllm_budget import (StageBudget, available_kv_bytes, capture_sizes, engine_settings,
                                        requested_bytes, stage_activation, stage_budget)
from pycore.serving.vllm_kv import blocks_per_request, kv_pool, kv_tokens, longest, needed_bytes
from pycore.training.workload import Hardware

GiB, MiB = 2 ** 30, 2 ** 20
H100 = Hardware("NVIDIA H100 80GB HBM3 (SXM)", 85017493504)
A100 = Hardware("NVIDIA A100 80GB", 85017493504)
LLAMA = catalog_model("llama-3.1-8b")        # 32 layers, hidden 4096, 32 heads, 8 KV heads x 128, ffn 14336
# one 16-token block of one Llama layer: 16 tokens x 8 heads x (K 128 + V 128) x 2 bytes
PAGE = 16 * 8 * 256 * 2                      # 65,536


def settings(version="0.19.0", hw=H100, **fields):
    return engine_settings(LLAMA, Serving(engine="vllm", version=version, **fields), hw)


# ---- requested bytes (v1/worker/utils.py:403-423) ------------------------------------------------

def test_requested_bytes_round_up_from_0_14_and_down_before():
    # 85,017,493,504 x 0.9 = 76,515,744,153.6: math.ceil -> ...154 (0.14+), int() -> ...153
    assert requested_bytes(85017493504, 0.9, (0, 19, 0)) == 76515744154
    assert requested_bytes(85017493504, 0.9, (0, 10, 2)) == 76515744153


# ---- the engine's settings (engine/arg_utils.py) -------------------------------------------------

def test_settings_take_the_large_scheduler_tier_on_an_h100_but_not_on_an_a100():
    # 80 GiB and not an A100: max_num_batched_tokens 8192 for `vllm serve`, max_num_seqs 1024
    c = settings()
    assert (c.mnbt, c.seqs, c.util, c.block, c.max_len, c.kv_b) == (8192, 1024, 0.9, 16, 131072, 2)
    c = settings(hw=A100)
    assert (c.mnbt, c.seqs) == (2048, 256)


def test_default_utilization_is_0_92_from_0_20():
    assert settings("0.20.0").util == 0.92
    assert settings("0.19.0").util == 0.9


def test_an_fp8_cache_stores_one_byte_an_element():
    assert settings(kv_cache_dtype="fp8").kv_b == 1


# ---- CUDA graphs and the stage's lines --------------------------------------------------------------

def test_capture_sizes_are_1_2_4_then_steps_of_8_to_twice_max_num_seqs_capped_at_512():
    # max_num_seqs 1024: min(2048, 512) = 512 -> [1, 2, 4] + 8, 16, ..., 512: 3 + 64 = 67 sizes
    assert len(capture_sizes((0, 19, 0), 1024, 8192)) == 67
    # max_num_seqs 16: min(32, 512) = 32 -> [1, 2, 4, 8, 16, 24, 32]
    assert capture_sizes((0, 19, 0), 16, 8192) == [1, 2, 4, 8, 16, 24, 32]
    # from 0.33, steps of 16 above 256: 3 + 32 (8..256) + 16 (272..512) = 51
    assert len(capture_sizes((0, 33, 0), 1024, 8192)) == 51


def test_a_pipeline_rank_without_the_sampler_profiles_the_forward_only():
    # T = 8192 tokens: hidden states and residual 2 x T x 4096 x 2 = 134,217,728; the MLP is the busiest
    # phase: gate_up 2 x T x 14336 x 2 + activation T x 14336 x 2 + down_proj T x 4096 x 2
    #   = 469,762,048 + 234,881,024 + 67,108,864 = 771,751,936 (attention: 234,881,024)
    act = stage_activation(LLAMA, Serving(engine="vllm", version="0.19.0"), settings(), H100.name, last=False,
                           drafts=False)
    assert sum(act.values()) == 134217728 + 771751936


def test_stage_budget_holds_the_rotary_cache_the_graphs_and_the_cache_layers():
    s = Serving(engine="vllm", version="0.19.0", pipeline_parallel_size=2)
    c = engine_settings(LLAMA, s, H100)
    b = stage_budget(LLAMA, s, H100, NONE, c, stage_split(32, 2), 0)
    # rotary cos/sin cache: 131,072 positions x head_dim 128 x 2 bytes = 33,554,432
    assert b.weights["rotary cos/sin cache"] == 131072 * 128 * 2
    # 16 layers + 1 pieces, 67 batch sizes, int(0.35 MiB) = 367,001 bytes a piece-graph
    assert (b.pieces, b.graph_sizes, b.graphs_bytes) == (17, 67, 67 * 17 * 367001)
    assert b.layers == (KVLayer("full", 16, 8, 128, 128),)


# ---- the KV bytes left (gpu_worker.py:417-421) -----------------------------------------------------

def budget(w=15, a=2, nt=1, g=1):
    return StageBudget(weights={"w": w * GiB}, activation={"a": a * GiB}, non_torch={"nt": nt * GiB},
                       graphs_bytes=g * GiB, graph_sizes=67, pieces=33, layers=kv_layers(LLAMA))


@pytest.mark.parametrize("version,expected", [
    ("0.19.0", 72 - 15 - 2 - 1),              # requested - weights - peak - non-torch
    ("0.20.0", 72 - 15 - 2 - 1 - 1),          # ... - the CUDA-graph estimate (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS)
])
def test_available_kv_is_requested_less_each_line(version, expected):
    c = settings(version)
    s = Serving(engine="vllm", version=version)
    assert available_kv_bytes(s, c, budget(), 72 * GiB, 80 * GiB, GiB) == (expected * GiB, {})


def test_before_0_9_1_the_peak_took_in_the_cuda_context():
    # 0.8.5: requested - (weights + peak) - (non-torch + CUDA context 1 GiB) = 72 - 17 - 2
    s = Serving(engine="vllm", version="0.8.5")
    assert available_kv_bytes(s, settings("0.8.5"), budget(), 72 * GiB, 80 * GiB, GiB)[0] == 53 * GiB


def test_kv_cache_memory_is_taken_as_given():
    s = Serving(engine="vllm", version="0.19.0", kv_cache_memory_bytes=10 * GiB)
    assert available_kv_bytes(s, settings(kv_cache_memory_bytes=10 * GiB), budget(), 72 * GiB, 80 * GiB, GiB)[0] \
        == 10 * GiB


# ---- blocks, tokens and one request's needs (v1/core/kv_cache_utils.py) ------------------------------

def llama_pool(available):
    return kv_pool(kv_layers(LLAMA), available, 16, 2, True, 0, 1)


def test_blocks_are_available_over_page_times_layers():
    # get_num_blocks: 54 GiB // 65,536 // 32 = 27,648
    r = llama_pool(54 * GiB)
    assert (r.page_bytes, r.block_bytes, r.blocks, r.n_groups) == (PAGE, 32 * PAGE, 27648, 1)
    assert llama_pool(-GiB).blocks == 0


def test_one_request_needs_its_length_in_blocks_in_every_layer():
    r = llama_pool(54 * GiB)
    # 131,072 / 16 = 8,192 blocks; 8,192 x 65,536 x 32 layers = 16 GiB
    assert blocks_per_request(r, 131072, 16, 8192) == 8192
    assert needed_bytes(r, 131072, 16, 8192, 2) == 16 * GiB


def test_a_sliding_window_layer_needs_the_window_and_a_chunk_only():
    # SlidingWindowSpec: cdiv(min(window - 1 + max_num_batched_tokens, length), block) + 1
    #   = cdiv(4095 + 2048, 16) + 1 = 384 + 1 = 385 blocks (the window 4096, 2048 tokens a step)
    layers = (KVLayer("full", 4, 8, 128, 128), KVLayer("sliding", 4, 8, 128, 128, 4096))
    r = kv_pool(layers, 54 * GiB, 16, 2, True, 0, 1)
    assert (r.layers_per_group, r.n_groups) == (4, 2)
    assert blocks_per_request(r, 131072, 16, 2048) == 8192 + 385


def test_the_longest_length_fits_the_smallest_worker():
    # 1 GiB: ceil(n / 16) x 65,536 x 32 <= 2^30 -> ceil(n / 16) <= 512 -> n <= 8,192
    assert longest([llama_pool(54 * GiB), llama_pool(GiB)], 131072, 16, 8192, 2) == 8192
    assert longest([llama_pool(0)], 131072, 16, 8192, 2) == 0


@pytest.mark.parametrize("v,tokens,concurrency", [
    ((0, 19, 0), 27648 * 16, 27648 / 8192),                  # blocks x block_size
    ((0, 21, 0), int(27648 / 8192 * 131072), 27648 / 8192),  # int(concurrency x max_model_len)
    ((0, 8, 5), 27648 * 16, 27648 * 16 / 131072),            # tokens / max_model_len
])
def test_the_logged_tokens_follow_each_version(v, tokens, concurrency):
    assert kv_tokens(v, 27648, llama_pool(54 * GiB), 16, 131072, 8192) == (tokens, concurrency)


# ---- refusals ------------------------------------------------------------------------------------------

def test_check_enough_kv_cache_memory_names_the_length_that_fits():
    c = settings()
    k = kv_answer(c, [llama_pool(GiB)], 16)
    assert (k.needed_bytes, k.available_bytes, k.longest) == (16 * GiB, GiB, 8192)
    text = kv_refusal(c, k)
    assert "(16.00 GiB KV cache is needed" in text and "maximum model length is 8192" in text
    assert "models's max seq len (131072)" in text                # the typo vLLM printed before 0.22
    assert kv_refusal(c, kv_answer(c, [llama_pool(0)], 16)).startswith("No available memory for the cache blocks")
    assert kv_refusal(c, kv_answer(c, [llama_pool(54 * GiB)], 16)) == ""


def test_request_memory_refuses_when_free_memory_at_start_is_below_the_request():
    s, c = Serving(engine="vllm", version="0.19.0"), settings()
    assert startup_refusal(s, c, 72 * GiB, 71 * GiB, 80 * GiB).startswith(
        "Free memory on device (71.00/80.00 GiB) on startup is less than desired GPU memory utilization (0.9, 72.00")
    assert startup_refusal(s, c, 72 * GiB, 72 * GiB, 80 * GiB) == ""


# ---- linear attention (Qwen3-Next: 12 full-attention layers, 36 Gated DeltaNet layers) ------------------

QNEXT = catalog_model("qwen3-next-80b-a3b-instruct")


@pytest.mark.parametrize("v,expected", [
    # state: conv (2 x 16 x 128 + 32 x 128) x (kernel 4 - 1) = 24,576 and recurrent 32 x 128 x 128 = 524,288
    # elements, x 2 bytes = 1,097,728 B; attention: 2 KV heads x (256 + 256) x 2 bytes = 2,048 B a token.
    # block = 16 x cdiv(1,097,728, 16 x 2,048) = 16 x 34 = 544; page = 544 x 2,048 = 1,114,112
    ((0, 19, 0), (544, 1114112, 1)),
    ((0, 26, 0), (544, 1114112, 2)),          # prefix caching on by default: 2 state blocks ("align")
    ((0, 33, 0), (576, 1179648, 3)),          # the checkpoint block: align 64, 64 x cdiv(.., 131,072) = 576
])
def test_a_linear_attention_model_aligns_the_block_to_its_state(v, expected):
    from pycore.serving.vllm_kv import hybrid_linear
    assert hybrid_linear(QNEXT, Serving(engine="vllm"), v, kv_layers(QNEXT), 2, 2) == expected


def test_linear_attention_needs_the_hybrid_manager_and_0_10_2():
    from pycore.errors import InputError
    from pycore.serving.vllm_kv import linear_pages
    s = Serving(engine="vllm", version="0.19.0", disable_hybrid_kv_cache_manager=True)
    with pytest.raises(InputError) as e:
        linear_pages(QNEXT, s, engine_settings(QNEXT, s, H100), kv_layers(QNEXT))
    assert e.value.field == "workload.disable_hybrid_kv_cache_manager"
    s = Serving(engine="vllm", version="0.10.1")
    with pytest.raises(InputError) as e:
        linear_pages(QNEXT, s, engine_settings(QNEXT, s, H100), kv_layers(QNEXT))
    assert e.value.field == "workload.version"
    assert linear_pages(LLAMA, Serving(engine="vllm"), settings(), kv_layers(LLAMA)) == (16, 0, 1)


def test_a_hybrid_pool_groups_layers_by_the_smaller_kind_and_pads_the_state_page():
    # groups of min(12, 36) = 12 layers: 1 full-attention group, 3 linear groups; a block over the 12
    # layers of a group: 12 x 1,114,112 = 13,369,344 B; 57,982,058,496 // 13,369,344 = 4,336 (4,336.94)
    r = kv_pool(kv_layers(QNEXT), 54 * GiB, 544, 2, True, 1114112, 1)
    assert (r.layers_per_group, r.n_groups, r.block_bytes, r.blocks) == (12, 4, 13369344, 4336)
    # one request of 262,144 tokens: cdiv(262,144, 544) = 482 blocks in the full group, 1 state block in
    # each of the 3 linear groups
    assert blocks_per_request(r, 262144, 544, 8192) == 482 + 3
    # bytes: 482 x 1,114,112 x 12 full layers + 1 x 1,114,112 x 36 linear layers
    assert needed_bytes(r, 262144, 544, 8192, 2) == 1114112 * (482 * 12 + 36)


def test_the_extensible_cache_keeps_a_margin_and_the_transient_peak_free():
    # 0.34: free at start 80 - 1 (CUDA context) = 79 GiB; non-KV used = weights 15 + non-torch 1 + graphs 1
    # = 17; transient peak = activation 2 + graphs 1 = 3; margin = max(1 GiB, 0.75 x 3) = 2.25 GiB;
    # available = min(80 - 17, 79 - 17 - 2.25) - 3 = 56.75 GiB (vllm_extensible.py, extensible_kv_cache.py:592-618)
    s = Serving(engine="vllm", version="0.34.0")
    c = settings("0.34.0")
    assert (c.grows, c.util) == (True, 1.0)
    avail, held = available_kv_bytes(s, c, budget(), 80 * GiB, 80 * GiB, GiB)
    assert avail == int(56.75 * GiB)
    assert held["margin"] == int(2.25 * GiB) and held["profiled"] == (80 - 15 - 2 - 1 - 1) * GiB


def test_an_encoder_only_pooling_model_has_no_cache_and_serves_max_num_seqs():
    bert = catalog_model("bert-base")
    s = Serving(engine="vllm", version="0.19.0", runner="pooling")
    c = engine_settings(bert, s, H100)
    assert c.no_kv
    assert available_kv_bytes(s, c, budget(), 72 * GiB, 80 * GiB, GiB)[0] == 0
    k = kv_answer(c, [kv_pool(kv_layers(bert), 0, 16, 2, True, 0, 1)], 16)
    assert (k.concurrency, k.tokens, k.longest) == (float(c.seqs), 0, c.max_len)
    assert kv_refusal(c, k) == ""


def test_the_report_prints_the_figures_as_vllms_log_does():
    from pycore.serving.vllm import device_tree, vllm_report
    c, b, r = settings(), budget(), llama_pool(54 * GiB)
    k = kv_answer(c, [r], 16)
    report = vllm_report(LLAMA, Serving(engine="vllm", version="0.19.0"), c, b, r, k, {}, 72 * GiB)
    # 27,648 blocks x 16 = 442,368 tokens; 27,648 / 8,192 blocks a request = 3.375 -> "3.38x" (round half even)
    assert report["Model loading took"] == "15.0000 GiB"
    assert report["Available KV cache memory"] == "54.00 GiB"
    assert report["GPU KV cache size"] == "442,368 tokens"
    assert report["Maximum concurrency for 131,072 tokens per request"] == "3.38x"
    assert report["weights_and_non_torch_bytes"] == 16 * GiB
    # the device: weights 15 + peak 2 + non-torch 1 + pool 54 + graphs 1 + CUDA context 1 GiB = 74 GiB
    pool = k.blocks * r.block_bytes
    assert pool == 54 * GiB
    assert device_tree(b, k, {}, pool, 0, GiB).bytes == 74 * GiB
