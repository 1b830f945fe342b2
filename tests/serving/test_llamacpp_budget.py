"""llama.cpp's buffers, one function at a time (pycore/serving/llamacpp.py): each against llama.cpp's
own rule (src/llama-context.cpp, llama-kv-cache.cpp, Ollama's graph estimate), worked by hand here."""

from dataclasses import replace

import pytest

from pycore.data.catalog import catalog_model
from pycore.errors import InputError
from pycore.serving.config import Serving
from pycore.serving.llamacpp import (GraphTerms, LlamaContext, WeightTable, context_cells, device_compute,
                                     flash_attention, graph_terms, host_compute, kv_buffers, layer_kv_bytes,
                                     model_buffers)

MiB = 2 ** 20
LLAMA = catalog_model("llama-3.1-8b")       # 32 layers, hidden 4096, 32 heads, 8 KV heads x 128, vocab 128,256


def lc(**fields):
    return Serving(engine="llamacpp", **fields)


def test_each_stream_gets_its_share_of_the_context_padded_to_256_cells():
    # b7400: pad(5000, 256) = 5120; 3 streams: pad(5120 // 3 = 1706, 256) = 1792 cells; n_ctx = 3 x 1792
    ctx = context_cells(LLAMA, lc(n_ctx=5000, n_parallel=3, kv_unified=False), 7400, True)
    assert ctx == LlamaContext(n_ctx=5376, cells=1792, streams=3, n_seq=3, n_batch=2048, n_ubatch=512)
    # before about b7000, without flash attention: pad(5000, 32) = 5024, 5024 // 3 = 1674 cells a stream
    ctx = context_cells(LLAMA, lc(n_ctx=5000, n_parallel=3, kv_unified=False), 6000, False)
    assert (ctx.n_ctx, ctx.cells) == (5024, 1674)
    # a unified cache is one stream of the whole context
    assert context_cells(LLAMA, lc(n_ctx=5000, n_parallel=3), 7400, True).cells == 5120


def test_flash_attention_auto_is_on_with_gpu_layers_from_the_build_that_made_it_default():
    assert flash_attention(lc(), 7400) is True
    assert flash_attention(lc(), 6000) is False                   # before about b6300
    assert flash_attention(lc(n_gpu_layers=0), 7400) is False      # nothing offloaded
    with pytest.raises(InputError) as e:
        flash_attention(lc(flash_attn="off", cache_type_v="q4_0"), 7400)
    assert e.value.field == "workload.cache_type_v"


def test_a_layers_cache_is_cells_times_k_and_v_rows():
    ctx = context_cells(LLAMA, lc(n_ctx=4096), 7400, True)
    # f16: 4096 cells x (K 8 x 128 + V 8 x 128) x 2 bytes = 16 MiB a layer
    assert layer_kv_bytes(LLAMA, lc(n_ctx=4096), ctx, 7400) == [16 * MiB] * 32
    # q8_0 K: a row of 1024 elements is 1024 / 32 blocks x 34 bytes = 1,088 bytes; V f16 2,048
    assert layer_kv_bytes(LLAMA, lc(n_ctx=4096, cache_type_k="q8_0"), ctx, 7400)[0] == 4096 * (1088 + 2048)


def test_each_layers_cache_sits_on_its_layers_device():
    assert kv_buffers([10, 20, 30, 40], [-1, 0, 1, 1, 1], 2) == ([20, 70], 10)


def test_weights_follow_their_layer_and_n_cpu_moe_keeps_the_first_experts_on_the_host():
    two = replace(LLAMA, n_layers=2)
    table = WeightTable(dense=((100, 1), (200, 2)), experts=((10, 0), (20, 0)), embeddings=1000, output=(300, 3),
                        output_weight=250)
    # layer 0 on GPU 0, layer 1 and the output layer on GPU 1; layer 0's experts on the host
    model, padding, host = model_buffers(two, lc(devices=2, n_cpu_moe=1), table, [0, 1, 1])
    assert model == [100, 200 + 20 + 300]
    assert padding == [1, 2 + 0 + 3]
    assert host == 1000 + 10                # the input embeddings always, and the kept experts


def test_the_graph_terms_of_one_ubatch():
    ctx = LlamaContext(n_ctx=4096, cells=4096, streams=1, n_seq=1, n_batch=2048, n_ubatch=512)
    g = graph_terms(LLAMA, ctx, False, 7400)
    assert g.logits == 4 * 512 * (128256 + 4096) == 271056896               # every token's row before b7600
    assert g.attention == 4 * 512 * (4096 * (32 + 1) + 4 * 4096) == 310378496
    assert g.ffn == 4 * 512 * (2 * 14336 + 2 * 4096) == 75497472
    assert g.host == 4 * 512 * (4096 + 4096 * 1) == 16777216
    # flash attention: the f16 mask 2 x ub x n_kv and 4 x ub x 4 x n_embd
    assert graph_terms(LLAMA, ctx, True, 7400).attention == 2 * 512 * 4096 + 4 * 512 * 4 * 4096
    # from about b7600 one logits row a sequence
    assert graph_terms(LLAMA, ctx, False, 7600).logits == 4 * 1 * (128256 + 4096)


def test_a_device_reserves_its_largest_phase_and_op_offload_puts_the_host_output_on_the_first_gpu():
    g = GraphTerms(logits=300, attention=200, ffn=100, host=50)
    n = LLAMA.n_layers
    assert device_compute(LLAMA, lc(), g, [0] * (n + 1), False, (True, 1000, 0)) == [(300, "logits")]
    # the output layer on the host: GPU 0 runs its matmul on a copy of output.weight (1000 bytes)
    assert device_compute(LLAMA, lc(), g, [0] * n + [-1], False, (True, 1000, 0)) == [
        (1300, "logits and a copy of the host's output.weight (op offload)")]
    # half the layers on the host without flash attention: a CPU layer's KV (500) joins the attention product
    assert device_compute(LLAMA, lc(), g, [-1] * 16 + [0] * 17, False, (True, 1000, 500)) == [(700, "attention scores")]


def test_the_host_compute_buffer():
    g = GraphTerms(logits=300, attention=200, ffn=100, host=50)
    assert host_compute(g, False, True, False) == 300       # nothing offloaded: the largest term
    assert host_compute(g, True, True, False) == 300        # the output layer runs on the host
    assert host_compute(g, True, True, True) == 50          # ... unless op offload takes it to a GPU
    assert host_compute(g, True, False, True) == 50
