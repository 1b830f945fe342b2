"""model.params.layer_norm_params: the one per-layer norm rule that params, shard, gguf and the serving
weights use. Expected values from the modules of each model's transformers modeling file, by hand."""

from pycore.data.catalog import catalog_model
from pycore.model.params import layer_norm_params


def test_a_llama_layer_has_two_rmsnorm_weights():
    # input_layernorm + post_attention_layernorm, [4096] each (modeling_llama.py)
    assert layer_norm_params(catalog_model("llama-3.1-8b")) == 2 * 4096


def test_qwen3_adds_per_head_q_and_k_norms_that_tensor_parallelism_replicates():
    # + q_norm and k_norm over head_dim 128 (modeling_qwen3.py), the same on every rank
    m = catalog_model("qwen3-8b")
    assert layer_norm_params(m) == 2 * 4096 + 2 * 128 == layer_norm_params(m, t=4)


def test_olmo2_q_and_k_norms_span_the_projections_and_split_with_the_heads():
    # q_norm [40 x 128], k_norm [40 x 128] (modeling_olmo2.py); at t = 4 each rank has a quarter
    m = catalog_model("olmo-2-1124-13b")
    assert layer_norm_params(m) == 2 * 5120 + 40 * 128 + 40 * 128 == 20480
    assert layer_norm_params(m, t=4) == 2 * 5120 + (40 * 128 + 40 * 128) // 4 == 12800


def test_mla_adds_q_a_and_kv_a_layernorms():
    # DeepSeek-V3: q_a_layernorm [1536], kv_a_layernorm [512] (modeling_deepseek_v3.py)
    assert layer_norm_params(catalog_model("deepseek-v3")) == 2 * 7168 + 1536 + 512


def test_gemma2_has_four_norms_a_layer():
    # input, post_attention, pre_feedforward, post_feedforward layernorms (modeling_gemma2.py)
    assert layer_norm_params(catalog_model("gemma-2-9b")) == 4 * 3584


def test_bert_layernorms_carry_a_bias():
    # attention.output.LayerNorm and output.LayerNorm, weight + bias [768] each (modeling_bert.py)
    assert layer_norm_params(catalog_model("bert-base")) == 2 * 2 * 768


def test_a_linear_attention_layer_has_no_q_k_norms():
    # Qwen3-Next: the Gated DeltaNet layers have the two layer norms only; full-attention layers add
    # q_norm, k_norm [256] (modeling_qwen3_next.py)
    m = catalog_model("qwen3-next-80b-a3b-instruct")
    assert layer_norm_params(m, attention=False) == 2 * 2048
    assert layer_norm_params(m) == 2 * 2048 + 2 * 256
