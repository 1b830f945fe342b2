"""Reading Hugging Face config.json files."""

import pytest

from pycore.errors import InputError
from pycore.model.hfconfig import SUPPORTED_TYPES, read_hf_config

LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}


def test_every_required_model_type_is_supported():
    required = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
                "gemma3_text", "phi3", "gpt2", "gpt_neox", "bert", "olmoe", "deepseek_v2", "deepseek_v3", "chatglm"}
    assert required <= set(SUPPORTED_TYPES)


def test_both_rope_spellings_are_accepted():
    a = read_hf_config({**LLAMA, "rope_theta": 10000.0})
    b = read_hf_config({**LLAMA, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}})
    assert a == b


def test_both_expert_count_spellings_are_accepted():
    base = {**LLAMA, "model_type": "qwen3_moe", "moe_intermediate_size": 32, "num_experts_per_tok": 2}
    assert read_hf_config({**base, "num_experts": 8}) == read_hf_config({**base, "num_local_experts": 8})


def test_unknown_model_type_is_read_with_a_warning():
    m = read_hf_config({**LLAMA, "model_type": "brand_new_llm"})
    assert m.warnings and "brand_new_llm" in m.warnings[0]


def test_missing_essential_fields_are_named():
    cfg = dict(LLAMA)
    del cfg["hidden_size"]
    del cfg["vocab_size"]
    with pytest.raises(InputError) as exc:
        read_hf_config(cfg)
    assert exc.value.field == "hf_config.hidden_size"
    assert "vocab_size" in exc.value.message


@pytest.mark.parametrize("field,value", [("hidden_size", -5), ("hidden_size", "64"), ("num_hidden_layers", 0),
                                         ("num_attention_heads", 2.5), ("vocab_size", float("nan")),
                                         ("hidden_size", 10 ** 30), ("tie_word_embeddings", "yes")])
def test_bad_values_name_their_field(field, value):
    with pytest.raises(InputError) as exc:
        read_hf_config({**LLAMA, field: value})
    assert exc.value.field == "hf_config." + field


def test_kv_heads_must_divide_heads():
    with pytest.raises(InputError) as exc:
        read_hf_config({**LLAMA, "num_key_value_heads": 3})
    assert exc.value.field == "hf_config.num_key_value_heads"   # the path the user wrote


def test_not_an_object_is_an_error():
    with pytest.raises(InputError) as exc:
        read_hf_config(["llama"])
    assert exc.value.field == "hf_config"


def test_deepseek_reads_mla_and_dense_layers():
    m = read_hf_config({"model_type": "deepseek_v2", "hidden_size": 64, "intermediate_size": 128,
                        "moe_intermediate_size": 16, "num_hidden_layers": 4, "num_attention_heads": 4,
                        "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8,
                        "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
                        "first_k_dense_replace": 1, "vocab_size": 100})
    assert m.kv_lora_rank == 16 and m.dense_layers == 1 and m.n_experts == 8
