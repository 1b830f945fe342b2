"""Parameter counts match PyTorch's own count, to the parameter."""

import pytest

from pycore.catalog import catalog_model
from pycore.model.hfconfig import read_hf_config
from pycore.model.params import lora_params, total_params


def test_every_calibration_model_matches_measured_n_params(shared_records):
    for rec in shared_records:
        model = read_hf_config(rec["hf_config"])
        assert total_params(model) == rec["measured"]["n_params"], rec["id"]


def test_lora_adapters_match_measured_trainable_count(shared_records):
    lora = [r for r in shared_records if r["workload"]["mode"] == "lora"]
    assert lora
    for rec in lora:
        w = rec["workload"]
        model = read_hf_config(rec["hf_config"])
        assert lora_params(model, w["lora_rank"], w["lora_targets"]) == rec["measured"]["n_trainable"], rec["id"]


# Totals published with each model (model cards / papers), counted independently of this code.
PUBLISHED = {
    "gpt2": 124_439_808,               # nanoGPT's transformer_sizing notebook
    "llama-2-7b": 6_738_415_616,       # Touvron et al. 2023 / HF model card (6.74B)
    "chatglm3-6b": 6_243_584_000,      # sum(p.numel()) of THUDM/chatglm3-6b
    "pythia-1b": 1_011_781_632,        # EleutherAI Pythia suite table
}


@pytest.mark.parametrize("model_id,expected", sorted(PUBLISHED.items()))
def test_catalog_counts_match_published_totals(model_id, expected):
    assert total_params(catalog_model(model_id)) == expected


def test_llama_3_1_8b_by_hand():
    # embed + lm_head: 2*128256*4096; per layer: q,o 4096^2 each, k,v 4096*1024 each,
    # MLP 3*4096*14336, two norms 2*4096; final norm 4096.
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    expected = 2 * 128256 * 4096 + 32 * per_layer + 4096
    assert total_params(catalog_model("llama-3.1-8b")) == expected == 8_030_261_248


def test_tied_embeddings_are_counted_once():
    tied = catalog_model("llama-3.2-1b")
    assert tied.tied_embeddings
    untied = read_hf_config({**_cfg(tied), "tie_word_embeddings": False})
    assert total_params(untied) - total_params(tied) == 128256 * 2048


def _cfg(m):
    return {"model_type": "llama", "hidden_size": m.hidden_size, "intermediate_size": m.ffn_size,
            "num_hidden_layers": m.n_layers, "num_attention_heads": m.n_heads, "num_key_value_heads": m.n_kv_heads,
            "head_dim": m.head_dim, "vocab_size": m.vocab_size, "tie_word_embeddings": True}


def test_all_linear_lora_on_mistral_matches_measured():
    # mistral7b-lora-r64-all in shared/calibration trains 167,772,160 adapter parameters
    m = catalog_model("mistral-7b")
    assert lora_params(m, 64, "all-linear") == 167_772_160


def test_every_catalog_model_matches_its_published_total():
    """Each catalog entry with a published total (the Hub's safetensors count or the model card, source
    beside it in models.json) is counted exactly, or its note says why the checkpoint differs."""
    from pycore.catalog import model_entries
    checked = 0
    for mid, entry in model_entries().items():
        published = entry.get("published_params")
        if published is None:
            continue
        checked += 1
        assert entry.get("published_params_source"), mid
        ours = total_params(catalog_model(mid))
        if ours == published:
            continue
        note = entry.get("published_params_note", "")
        m = catalog_model(mid)
        if "counts it twice" in note:          # a tied lm_head stored again in the checkpoint
            assert published - ours == m.vocab_size * m.hidden_size, mid
        else:
            assert note.startswith("unexplained") and abs(ours - published) < 1e-4 * published, (mid, ours, published)
    assert checked >= 37
