"""SGLang's budget, one line at a time (pycore/serving/sglang.py): each function against the formula of
SGLang's model_runner.py / server_args.py (0.5.3 unless named), worked by hand here."""

from dataclasses import replace

from pycore.data.catalog import catalog_model
from pycore.serving.config import Serving
from pycore.model.formats import NONE
from pycore.serving.sglang import (StagePool, kv_pool_bytes, mamba_slots, pool_tokens, request_slots,
                                   sglang_refusal, sglang_settings, stage_pool)
from pycore.training.workload import Hardware

GiB, MiB = 2 ** 30, 2 ** 20
H100 = Hardware("NVIDIA H100 80GB HBM3 (SXM)", 85017493504)      # 81,079 MiB
LLAMA = catalog_model("llama-3.1-8b")
CONTEXT = 859832320                                               # 820 MiB


def sg(**fields):
    return Serving(engine="sglang", version=fields.pop("version", "0.5.3"), **fields)


def test_settings_reserve_memory_by_the_workload_from_0_5():
    c = sglang_settings(LLAMA, sg(), H100, CONTEXT)
    # 81,079 MiB, below 160 GiB: chunked_prefill_size 8192, cuda_graph_max_bs 256 (tp < 4)
    # reserved = 512 + 8192 x 1.5 + 256 x 2 + 1 / 8 x 1024 = 13,440 MiB (above the 10 GiB floor)
    # mem_fraction_static = round((81,079 - 13,440) / 81,079, 3) = round(0.83424, 3) = 0.834
    assert (c.chunked, c.max_bs, c.mfs) == (8192, 256, 0.834)
    # free before the weights: the device less the CUDA context (one rank: no NCCL)
    assert (c.pre, c.nccl, c.context_len) == (85017493504 - 859832320, 0, 131072)


def test_settings_before_0_4_9_read_a_table_by_tensor_parallel_size():
    assert sglang_settings(LLAMA, sg(version="0.4.6", tp_size=8), H100, CONTEXT).mfs == 0.81


def test_stage_weights_hold_the_bf16_model_and_an_fp32_rotary_cache():
    st = stage_pool(LLAMA, sg(), NONE, sglang_settings(LLAMA, sg(), H100, CONTEXT), (32,), 0)
    # 8,030,261,248 parameters x 2 bytes + 131,072 positions x 128 x 4 bytes (float32 cos/sin cache)
    assert st.weights_bytes == 8030261248 * 2 + 131072 * 128 * 4


def test_the_pool_is_what_mem_fraction_static_leaves_after_the_weights():
    s = sg(mem_fraction_static=0.9, logged_free_gib=70, logged_weights_gib=15)
    st = stage_pool(LLAMA, s, NONE, sglang_settings(LLAMA, s, H100, CONTEXT), (32,), 0)
    # rest = (70 - 15) GiB - 70 GiB x (1 - 0.9) = 48 GiB; a token's cell over 32 layers:
    # 8 KV heads x (K 128 + V 128) x 32 x 2 bytes = 131,072; 48 GiB / 131,072 = 393,216 tokens
    assert st.cell == 131072
    assert round(st.rest) == 48 * GiB
    assert st.tokens == 393216


def pool(tokens=393216, full=32, swa=0, cell=131072, slots=0, per_req=0):
    return StagePool(weights={}, rest=0.0, cell=cell, tokens=tokens, full=full, swa=swa, layers=full + swa,
                     mamba_slots=slots, mamba_per_req=per_req)


def test_max_total_tokens_caps_the_pool_and_it_is_rounded_to_the_page():
    # min(393,216, 100,000) = 100,000; // 64 x 64 = 99,968
    assert pool_tokens(LLAMA, sg(max_total_tokens=100000, page_size=64), pool()) == (99968, 0)


def test_a_sliding_window_model_splits_the_pool_by_the_ratio():
    gemma = catalog_model("gemma-2-9b")                # 21 full and 21 sliding layers
    # full = int(63,000 x (21 + 21) / (0.5 x 21 + 21)) = int(2,646,000 / 31.5) = 84,000; sliding = 84,000 x 0.5
    assert pool_tokens(gemma, sg(swa_full_tokens_ratio=0.5), pool(63000, 21, 21)) == (84000, 42000)


def test_request_slots_follow_the_pool_and_the_context():
    s = sg()
    c = replace(sglang_settings(LLAMA, s, H100, CONTEXT), context_len=8192)
    # int(99,968 / 8,192 x 512) = 6,248 -> clamped to [2048, 4096] = 4096; min(99,968 // 2, 4096)
    assert request_slots(s, c, 99968, pool()) == (4096, 4096)
    # int(3,000 / 8,192 x 512) = 187 -> 2048 slots; min(3,000 // 2, 2048) = 1,500 run
    assert request_slots(s, c, 3000, pool()) == (1500, 2048)
    # up to 0.4.6 the pool has one more slot
    assert request_slots(s, replace(c, v=(0, 4, 6)), 3000, pool())[1] == 2049
    # speculative decoding runs at most 48 requests (server_args.py:2993-2994 @0.5.10)
    assert request_slots(s, replace(c, speculative="eagle"), 99968, pool())[0] == 48


def test_linear_attention_state_slots_come_first_and_cap_the_requests():
    # rest x r / (1 + r) // per request = 3,000 x 0.5 / 1.5 // 10 = 100 slots
    assert mamba_slots(3000, 10, 0.5) == 100
    assert mamba_slots(-1, 10, 0.5) == 0
    s = sg(version="0.5.4")
    c = replace(sglang_settings(LLAMA, s, H100, CONTEXT), context_len=8192)
    assert request_slots(s, c, 99968, pool(slots=300, per_req=10))[0] == 300 // 3
    c = replace(c, v=(0, 5, 23))                      # the overlap scheduler's extra buffer
    assert request_slots(s, c, 99968, pool(slots=300, per_req=10))[0] == 300 // 5


def test_the_pool_bytes_hold_a_page_more_than_the_tokens():
    # (99,968 + 64) x 131,072
    assert kv_pool_bytes(sg(page_size=64), pool(), 99968, 0, False) == (99968 + 64) * 131072
    # sliding-window model, page 1: (84,000 + 1) x 4,096 x 21 full + (42,000 + 1) x 4,096 x 21 sliding
    assert kv_pool_bytes(sg(), pool(0, 21, 21, 42 * 4096), 84000, 42000, True) == \
        84001 * 4096 * 21 + 42001 * 4096 * 21


def test_no_token_slot_is_sglangs_not_enough_memory_error():
    c = sglang_settings(LLAMA, sg(), H100, CONTEXT)
    assert sglang_refusal(sg(), c, 0, 0, False) == ("Not enough memory. Please try to increase "
                                                    "--mem-fraction-static. Current value: "
                                                    "self.server_args.mem_fraction_static=0.834")
    assert sglang_refusal(sg(), c, 100, 0, True).startswith("--swa-full-tokens-ratio 0.8 leaves")
    assert sglang_refusal(sg(), c, 100, 80, True) == ""


def test_the_report_prints_the_load_lines_and_the_k_size():
    from pycore.serving.sglang import sglang_report
    s = sg(mem_fraction_static=0.9, logged_free_gib=70, logged_weights_gib=15)
    c = sglang_settings(LLAMA, s, H100, CONTEXT)
    st = stage_pool(LLAMA, s, NONE, c, (32,), 0)
    kv = kv_pool_bytes(s, st, 393216, 0, False)
    assert kv == (393216 + 1) * 131072                  # page_size 1: one padding slot
    r = sglang_report(LLAMA, c, st, 393216, 0, 4096, kv)
    assert r["Load weight begin. avail mem"] == "70.00 GB"
    assert r["Load weight end. avail mem"] == "55.00 GB"             # 70 - 15
    assert r["K size"] == "24.00 GB"                                  # half of 48 GiB + 131,072 B
    assert "KV size" not in r and "max_mamba_cache_size" not in r    # not MLA, no linear attention
