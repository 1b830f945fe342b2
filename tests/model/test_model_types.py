"""The model types with their own layer structure (issue 12): what each caches and keeps, checked by
hand from the configs' numbers and the rules each library states (sources in the comments)."""

from pycore.api import estimate_dict
from pycore.data.catalog import catalog_model
from pycore.model.hfconfig import read_hf_config
from pycore.serving.hf import kv_cache_bytes
from pycore.serving.kv import kv_layers, linear_flags

NEXT = "qwen3-next-80b-a3b-instruct"


def _serve(model, gpu="h200-141gb", **workload):
    resp = estimate_dict({"model": model, "gpu": gpu, "workload": {"mode": "serve", **workload}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def test_qwen3_next_caches_tokens_only_in_its_twelve_attention_layers():
    m = catalog_model(NEXT)
    # full_attention_interval 4: layers 3, 7, ..., 47 are softmax attention (configuration_qwen3_next.py)
    assert [i for i, lin in enumerate(linear_flags(m)) if not lin] == list(range(3, 48, 4))
    layers = kv_layers(m, 1)
    assert [(x.kind, x.count, x.kv_heads, x.k_width) for x in layers] == [("full", 12, 2, 256), ("linear", 36, 0, 0)]
    # a linear layer caches no tokens; its state: conv (4 - 1) x 8192 channels and 32 x 128 x 128
    assert (layers[1].elements_per_token(), layers[1].conv_elements, layers[1].state_elements) == \
        (0, 3 * 8192, 32 * 128 * 128)
    # a pipeline stage of linear layers only would cache nothing: refused, naming the field
    resp = estimate_dict({"model": NEXT, "workload": {"mode": "serve", "engine": "vllm", "pipeline_parallel_size": 16}})
    assert resp["status"] == "error" and resp["errors"][0]["field"] == "workload.pipeline_parallel_size"


def test_qwen3_next_transformers_cache_adds_each_sequences_recurrent_state():
    m = catalog_model(NEXT)
    # 12 attention layers x 2 (K, V) x 2 KV heads x 256 x 2 bytes per token, and per sequence and linear
    # layer a bf16 conv state of conv_dim 2 x 16 x 128 + 32 x 128 = 8192 channels x kernel 4, and an fp32
    # recurrent state 32 x 128 x 128 (Qwen3NextDynamicCache).
    per_token = 12 * 2 * 2 * 256 * 2
    per_seq = 36 * (8192 * 4 * 2 + 32 * 128 * 128 * 4)
    assert kv_cache_bytes(m, 3, 1000, 2) == 3 * (1000 * per_token + per_seq)


def test_qwen3_next_on_llamacpp_counts_recurrent_cells_in_f32():
    r = _serve(NEXT, engine="llamacpp", quant="Q4_K_M", n_ctx=4096, flash_attn="on")
    # 12 layers x 4096 cells x (512 K + 512 V) f16, plus 36 layers x one sequence x f32 (conv 3 x 8192 and
    # state 32 x 128 x 128): llama_memory_hybrid with type_r = type_s = f32.
    kv = 12 * 4096 * (512 + 512) * 2
    state = 36 * (3 * 8192 + 32 * 128 * 128) * 4
    assert r["report"]["kv_bytes"] == kv + state
    assert not any("linear attention" in w for w in r["warnings"])


def _vllm_next(version, tp):
    return _serve(NEXT, engine="vllm", version=version, tensor_parallel_size=tp, kv_cache_memory_bytes=40 * 2 ** 30,
                  max_model_len=32768)


def test_qwen3_next_on_vllm_shares_one_block_pool_between_kv_and_state():
    # Attention: 2 bytes x (K + V) x 2 KV heads x 256 = 2048 bytes per token and layer. A Gated DeltaNet
    # layer's state: conv (4 - 1) x 8192 and recurrent 32 x 128 x 128, bf16 = 1,097,728 bytes. The block
    # grows to 16 x cdiv(1,097,728, 16 x 2048) = 544 tokens, so one attention page (1,114,112 bytes) holds
    # one state (models/config.py HybridAttentionMambaModelConfig). 12 attention + 36 linear layers make 4
    # groups of 12 sharing each block: 40 GiB // (12 x 1,114,112) = 3,212 blocks. A 32,768-token request
    # takes cdiv(32768, 544) = 61 attention blocks and 1 block in each of the 3 state groups.
    state = 3 * 8192 * 2 + 32 * 128 * 128 * 2
    block = 16 * -(-state // (16 * 2048))
    blocks = 40 * 2 ** 30 // (12 * block * 2048)
    assert (block, blocks) == (544, 3212)
    r = _vllm_next("0.11.0", 1)
    assert (r["settings"]["block_size"], r["report"]["num_gpu_blocks"]) == (block, blocks)
    assert r["max_concurrency"] == round(blocks / (61 + 3), 2)
    assert r["kv_cache_tokens"] == blocks // 4 * block           # before 0.21: blocks per group x block size
    # 0.26: prefix caching is on for hybrid models ("align" mode keeps 2 state blocks per group)
    r = _vllm_next("0.26.0", 1)
    assert r["max_concurrency"] == round(blocks / (61 + 6), 2)
    assert r["kv_cache_tokens"] == int(blocks / (61 + 6) * 32768)
    # 0.33: 64-token alignment (FlashInfer's GDN prefill) gives 576-token blocks and 3 state blocks per group
    r = _vllm_next("0.33.0", 2)
    blocks2 = 40 * 2 ** 30 // (12 * 576 * 1024)
    assert (r["settings"]["block_size"], r["report"]["num_gpu_blocks"]) == (576, blocks2)
    assert r["max_concurrency"] == round(blocks2 / (57 + 9), 2)
    assert any("FlashInfer" in w for w in r["warnings"])
    bad = estimate_dict({"model": NEXT, "workload": {"mode": "serve", "engine": "vllm", "version": "0.9.2"}})
    assert bad["errors"][0]["field"] == "workload.version"


def test_qwen3_next_on_sglang_sets_aside_state_slots_before_the_kv_pool():
    r = _serve(NEXT, engine="sglang", version="0.5.4", tp_size=2)
    rep = r["report"]
    # per request on a rank of 2: 36 layers x (conv 3 x 4096 bf16 + state 16 x 128 x 128 fp32)
    per_req = 36 * (3 * 4096 * 2 + 16 * 128 * 128 * 4)
    slots = rep["max_mamba_cache_size"]
    before = rep["rest_bytes"] + slots * per_req                  # the memory left for both pools
    assert slots == int(before * 0.9 / 1.9 // per_req)          # --mamba-full-memory-ratio 0.9
    assert rep["cell_bytes"] == 12 * 2 * 1 * 256 * 2              # 12 attention layers, 1 KV head per rank
    assert rep["max_total_num_tokens"] == rep["rest_bytes"] // rep["cell_bytes"]
    assert rep["max_running_requests"] == slots // 3              # 0.5.4; / 5 from 0.5.23
    assert _serve(NEXT, engine="sglang", version="0.5.23", tp_size=2)["report"]["max_running_requests"] == slots // 5


def test_qwen3_next_training_keeps_linear_attention_tensors():
    resp = estimate_dict({"model": NEXT, "workload": {"mode": "lora", "seq_len": 1024, "batch_size": 1},
                          "gpu": "h200-141gb"})
    assert resp["status"] == "ok", resp
    acts = next(c for c in resp["result"]["breakdown"]["children"][0]["children"] if c["name"] == "activations")
    names = {c["name"] for c in acts["children"]}
    assert any(n.startswith("linear attention") for n in names)


def test_llama4_chunked_layers_keep_at_most_one_chunk_in_transformers_cache():
    m = catalog_model("llama-4-scout-17b-16e")
    # 36 chunked layers keep at most 8192 tokens, the 12 global (NoPE) layers all 20000; 8 KV heads x 128.
    per_layer_token = 2 * 8 * 128 * 2
    assert kv_cache_bytes(m, 1, 20000, 2) == per_layer_token * (12 * 20000 + 36 * 8192)


def test_llama4_config_reads_moe_layers_and_no_rope_layers_when_given():
    cfg = {"model_type": "llama4_text", "hidden_size": 64, "intermediate_size": 32, "intermediate_size_mlp": 128,
           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
           "num_local_experts": 4, "num_experts_per_tok": 1, "moe_layers": [1, 3], "attention_chunk_size": 32,
           "no_rope_layers": [1, 1, 0, 1]}
    m = read_hf_config(cfg)
    assert (m.dense_layers, m.sliding_layers, m.sliding_window, m.ffn_size, m.expert_ffn_size) == (2, 3, 32, 128, 32)
    bad = estimate_dict({"hf_config": {**cfg, "no_rope_layers": [1, "x", 0, 1]}})
    assert bad["errors"][0]["field"] == "hf_config.no_rope_layers"


def test_gpt_bigcode_caches_one_kv_head():
    m = catalog_model("santacoder")
    # multi_query: one K and one V head of 128 per layer, 24 layers, 2 bytes
    assert kv_cache_bytes(m, 2, 1000, 2) == 2 * 1000 * 24 * 2 * 128 * 2


def test_glm4_moe_has_no_o_proj_bias_and_per_head_qk_norm():
    from pycore.model.params import linears
    m = catalog_model("glm-4.5")
    o = next(lin for lin in linears(m) if lin.name == "o_proj")
    q = next(lin for lin in linears(m) if lin.name == "q_proj")
    assert q.bias and not o.bias and m.qk_norm == "per_head"
    assert catalog_model("glm-4.5-air").qk_norm == "none"


def test_interleaved_moe_layers_are_placed_where_the_model_has_them():
    from pycore.model.spec import dense_layers_in, is_moe_layer
    from pycore.serving.gguf import model_tensors
    m = catalog_model("llama-4-maverick-17b-128e")
    # moe_layers = range(1, 48, 2): the odd layers (configuration_llama4.py, interleave_moe_layer_step 2)
    assert [i for i in range(48) if is_moe_layer(m, i)] == list(range(1, 48, 2))
    assert dense_layers_in(m, 0, 24) == 12                        # a first pipeline stage of 24 layers
    experts = [t.layer for t in model_tensors(m) if t.name == "ffn_down_exps.weight"]
    assert experts == list(range(1, 48, 2))


def test_llama4_chunked_layers_on_vllm_follow_the_hybrid_manager_default():
    def scout(version):
        return _serve("llama-4-scout-17b-16e", engine="vllm", version=version, tensor_parallel_size=8,
                      max_model_len=131072)
    # 0.10.1-0.13: VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 0, the manager is off and
    # every layer is cached for the whole max_model_len: one group, concurrency = blocks x 16 / 131072.
    old = scout("0.11.0")
    assert old["report"]["kv_groups"] == 1
    assert old["max_concurrency"] == round(old["report"]["num_gpu_blocks"] * 16 / 131072, 2)
    # 0.14+: 12 global layers and 36 chunked ones in 4 groups of 12; a chunked layer keeps at most
    # cdiv(min(8192 + max_num_batched_tokens, 131072), 16) blocks per request (ChunkedLocalAttentionSpec).
    new = scout("0.14.0")
    mnbt = new["settings"]["max_num_batched_tokens"]
    per_request = 131072 // 16 + 3 * -(-min(8192 + mnbt, 131072) // 16)
    assert new["report"]["kv_groups"] == 4
    assert new["max_concurrency"] == round(new["report"]["num_gpu_blocks"] / per_request, 2)


def test_starcoder2_keeps_its_residual_dropout_masks():
    # residual_dropout 0.1 on the attention output and the MLP output of each of its 30 layers: one bool
    # mask of b x s x h per dropout (torch's native_dropout keeps its mask for backward)
    resp = estimate_dict({"model": "starcoder2-3b", "workload": {"mode": "lora", "batch_size": 2, "seq_len": 512},
                          "gpu": "h200-141gb"})
    acts = next(c for c in resp["result"]["breakdown"]["children"][0]["children"] if c["name"] == "activations")
    masks = sum(c["bytes"] for c in acts["children"] if c["name"] == "dropout masks")
    assert masks == 30 * 2 * (2 * 512 * 3072)


def test_qwen3_next_with_no_full_attention_layer_is_refused_naming_the_interval():
    # 1 layer: under the default interval (every 4th layer is softmax attention) the only layer is linear
    cfg = {"model_type": "qwen3_next", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 64}
    err = estimate_dict({"hf_config": cfg, "workload": {"mode": "full"}})["errors"][0]
    assert err["field"] == "hf_config.full_attention_interval" and "default" in err["message"]
    err = estimate_dict({"hf_config": {**cfg, "full_attention_interval": 2}, "workload": {"mode": "full"}})["errors"][0]
    assert err["field"] == "hf_config.full_attention_interval" and "default" not in err["message"]
    # interval 1: every layer is softmax attention, which is a plain model
    assert estimate_dict({"hf_config": {**cfg, "full_attention_interval": 1}, "workload": {"mode": "full"}})["status"] == "ok"
