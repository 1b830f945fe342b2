"""Parameter counts match PyTorch's own count, to the parameter."""

import pytest

from pycore.data.catalog import catalog_model
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
    from pycore.data.catalog import model_entries
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
        extra = entry.get("published_params_extra")
        if extra:
            # What the checkpoint holds beyond the loaded model, each part recounted here by hand.
            for part in extra:
                assert part["params"] == _checkpoint_extra(entry["hf_config"], part), (mid, part["part"])
            assert published - ours == sum(p["params"] for p in extra), (mid, published - ours)
            continue
        note = entry.get("published_params_note", "")
        m = catalog_model(mid)
        if "counts it twice" in note:          # a tied lm_head stored again in the checkpoint
            assert published - ours == m.vocab_size * m.hidden_size, mid
        else:
            assert note.startswith("unexplained") and abs(ours - published) < 1e-4 * published, (mid, ours, published)
    assert checked >= 110


def test_the_catalog_holds_at_least_100_models_with_the_new_families_read_by_their_own_structure():
    from pycore.data.catalog import model_entries
    entries = model_entries()
    assert len(entries) >= 100
    types = {}
    for mid in entries:
        m = catalog_model(mid)
        assert not any("is not one this tool knows" in w for w in m.warnings), mid
        types.setdefault(m.model_type, []).append(mid)
    for t in ("llama4_text", "gpt_oss", "glm4_moe", "qwen3_next", "gpt_bigcode", "deepseek_v3", "kimi_k2", "starcoder2",
              "cohere", "cohere2"):
        assert t in types, t


def test_new_structures_by_hand():
    # Llama 4 Maverick: MoE every second layer (interleave_moe_layer_step 2), dense layers of
    # intermediate_size_mlp 16384; MoE: router 128 x 5120, 128 experts of 8192, one shared expert of 8192.
    m = catalog_model("llama-4-maverick-17b-128e")
    h, attn = 5120, 5120 * 40 * 128 * 2 + 5120 * 8 * 128 * 2
    dense = attn + 3 * h * 16384 + 2 * h
    moe = attn + 128 * h + 128 * 3 * h * 8192 + 3 * h * 8192 + 2 * h
    assert (m.dense_layers, m.sliding_layers) == (24, 36)        # NoPE (global) every fourth layer
    assert total_params(m) == 24 * dense + 24 * moe + 2 * 202048 * h + h
    # Qwen3-Next-80B-A3B: 36 Gated DeltaNet layers and 12 gated-attention layers, all MoE.
    q = catalog_model("qwen3-next-80b-a3b-instruct")
    h = 2048
    kd, vd = 16 * 128, 32 * 128
    linear = h * (2 * kd + 2 * vd) + h * 64 + vd * h + (2 * kd + vd) * 4 + 2 * 32 + 128
    full = h * 2 * 16 * 256 + 2 * h * 2 * 256 + 16 * 256 * h + 2 * 256
    moe = 512 * h + 512 * 3 * h * 512 + 3 * h * 512 + h + 2 * h
    assert total_params(q) == 36 * (linear + moe) + 12 * (full + moe) + 2 * 151936 * h + h
    # SantaCoder (gpt_bigcode, multi-query): c_attn h -> h + 2 x 128, biases everywhere, learned positions.
    s = catalog_model("santacoder")
    h = 2048
    layer = (h * (h + 256) + h + 256) + (h * h + h) + (h * 8192 + 8192) + (8192 * h + h) + 4 * h
    assert total_params(s) == 24 * layer + 49280 * h + 2048 * h + 2 * h


# ---- what a checkpoint holds beyond the model transformers loads, counted by hand -----------------
# Shapes from the modeling files (transformers 5.x modeling_llama4.py, modeling_glm4_moe.py,
# modeling_deepseek_v3.py, modeling_qwen3_next.py) and vLLM's MTP modules (glm4_moe_mtp.py,
# deepseek_mtp.py, qwen3_next_mtp.py), written out here independently of pycore.

def _blocks(out, inp):
    """FP8 block scales of one linear: one fp32 per 128 x 128 block (DeepSeek-V3 weight_scale_inv)."""
    return -(-out // 128) * -(-inp // 128)


def _moe_layer_linears(c):
    """(out, in) of one MoE decoder layer's linears, attention first (DeepSeek MLA or GLM's GQA)."""
    h, E, mI, S = c["hidden_size"], c["n_routed_experts"], c["moe_intermediate_size"], c["n_shared_experts"]
    H = c["num_attention_heads"]
    if c.get("kv_lora_rank"):
        ql, kl, nope, rope, vd = (c["q_lora_rank"], c["kv_lora_rank"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                                  c["v_head_dim"])
        attn = [(ql, h), (H * (nope + rope), ql), (kl + rope, h), (H * (nope + vd), kl), (h, H * vd)]
    else:
        hd, kv = c.get("head_dim", h // H), c["num_key_value_heads"]
        attn = [(H * hd, h), (kv * hd, h), (kv * hd, h), (h, H * hd)]
    experts = [(mI, h), (mI, h), (h, mI)] * E
    shared = [(mI * S, h), (mI * S, h), (h, mI * S)]
    return attn, experts + shared


def _moe_layer_params(c):
    h, E = c["hidden_size"], c["n_routed_experts"]
    attn, mlp = _moe_layer_linears(c)
    count = sum(o * i for o, i in attn + mlp) + E * h + 2 * h        # + router weight, two norms
    if c.get("kv_lora_rank"):
        count += c["q_lora_rank"] + c["kv_lora_rank"]                  # q_a_layernorm, kv_a_layernorm
    else:
        H, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c.get("head_dim", h // c["num_attention_heads"])
        if c.get("attention_bias"):
            count += H * hd + 2 * kv * hd                              # q/k/v biases; o_proj has none
        if c.get("use_qk_norm"):
            count += 2 * hd
    return count


def _checkpoint_extra(cfg, part):
    kind = part["part"]
    if kind == "vision" and cfg["vision_config"].get("model_type") == "siglip_vision_model":
        # Gemma 3: SiglipVisionModel without its head (vision_use_head false) and Gemma3MultiModalProjector
        v, H = cfg["vision_config"], cfg["text_config"]["hidden_size"]
        D, Iv, Lv, P, S = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"], v["patch_size"], v["image_size"]
        layer = 4 * (D * D + D) + (D * Iv + Iv) + (Iv * D + D) + 4 * D      # q,k,v,out with bias; fc1, fc2; 2 LayerNorms
        vision = 3 * P * P * D + D + (S // P) ** 2 * D + Lv * layer + 2 * D  # patch conv + bias, positions, post LN
        return vision + D * H + D                                            # mm_input_projection, mm_soft_emb_norm
    if kind == "vision" and cfg["vision_config"].get("model_type") == "pixtral":
        # Mistral Small 3.1: PixtralVisionModel and Mistral3MultiModalProjector with its patch merger, no biases
        v, H, m = cfg["vision_config"], cfg["text_config"]["hidden_size"], cfg["spatial_merge_size"]
        D, Iv, Lv, P = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"], v["patch_size"]
        layer = 4 * D * D + 3 * D * Iv + 2 * D                               # q,k,v,o; gated MLP; 2 RMSNorms
        vision = v["num_channels"] * P * P * D + D + Lv * layer              # patch_conv, ln_pre
        return vision + D + D * m * m * D + D * H + H * H                    # norm, merging_layer, linear_1, linear_2
    if kind == "vision":
        v, H = cfg["vision_config"], cfg["text_config"]["hidden_size"]
        D, Iv, Lv, P, S, C = (v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"], v["patch_size"],
                              v["image_size"], v["num_channels"])
        layer = 4 * (D * D + D) + (D * Iv + Iv) + (Iv * D + D) + 4 * D      # q,k,v,o with bias; fc1, fc2; 2 LayerNorms
        vision = (C * P * P * D + D + ((S // P) ** 2 + 1) * D + 4 * D + Lv * layer
                  + Iv * v["projector_input_dim"] + v["projector_output_dim"] ** 2)
        return vision + v["vision_output_dim"] * H                          # + multi_modal_projector.linear_1
    if kind == "mask-buffers":
        # GPT-2 / GPT-NeoX checkpoints store each layer's causal-mask buffer (attn.bias), n_positions^2
        L = cfg.get("n_layer") or cfg["num_hidden_layers"]
        P = cfg.get("n_positions") or cfg["max_position_embeddings"]
        return L * P * P
    if kind == "inv-freq-buffers":
        # checkpoints saved by older transformers keep each layer's rotary inv_freq (rotary dims / 2)
        h, H = cfg["hidden_size"], cfg["num_attention_heads"]
        rotary = int(h // H * cfg.get("rotary_pct", 1.0))
        return cfg["num_hidden_layers"] * (rotary // 2)
    c = cfg
    L, h, V = c["num_hidden_layers"], c["hidden_size"], c["vocab_size"]
    if kind == "router-bias":
        return (L - c["first_k_dense_replace"]) * c["n_routed_experts"]
    if kind == "mtp" and c.get("model_type") == "qwen3_next":
        H, kv, hd, E, mI, sI = (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["num_experts"],
                                c["moe_intermediate_size"], c["shared_expert_intermediate_size"])
        attn = h * 2 * H * hd + 2 * h * kv * hd + H * hd * h + 2 * hd       # gated q, k, v, o, q/k norms
        moe = E * h + E * 3 * h * mI + 3 * h * sI + h                       # router, experts, shared expert and its gate
        return attn + 2 * h + moe + 2 * h * h + 3 * h                      # + layer norms, fc [h, 2h], three MTP norms
    if kind == "mtp":
        E = c["n_routed_experts"]
        # one MoE decoder layer and its score-correction buffer, enorm + hnorm, eh_proj [h, 2h], shared_head.norm
        count = _moe_layer_params(c) + E + 2 * h + 2 * h * h + h
        return count + (2 * V * h if part["embed_head"] else 0)
    if kind == "fp8-scales":
        K, I = c["first_k_dense_replace"], c["intermediate_size"]
        attn, mlp = _moe_layer_linears(c)
        dense = sum(_blocks(o, i) for o, i in attn + [(I, h), (I, h), (h, I)])
        moe = sum(_blocks(o, i) for o, i in attn + mlp)
        return K * dense + (L - K) * moe + moe                            # the MTP layer is an MoE layer too
    raise AssertionError(f"unknown checkpoint part {kind}")


def test_starcoder2_and_cohere_by_hand():
    # StarCoder2-3B: biased q/k/v/o (2 KV heads of 128), plain c_fc/c_proj MLP with bias, two LayerNorms
    # with bias per layer, final LayerNorm, tied head (modeling_starcoder2.py).
    h, f, kv = 3072, 12288, 2 * 128
    layer = 2 * (h * h + h) + 2 * (h * kv + kv) + (h * f + f) + (f * h + h) + 2 * 2 * h
    assert total_params(catalog_model("starcoder2-3b")) == 30 * layer + 49152 * h + 2 * h
    # Aya-23-8B (cohere): one weight-only LayerNorm per layer shared by attention and MLP, tied head.
    h, f, kv = 4096, 14336, 8 * 128
    layer = 2 * h * h + 2 * h * kv + 3 * h * f + h
    m = catalog_model("aya-23-8b")
    assert (m.parallel_block, m.norms_per_layer, m.tied_embeddings) == (True, 1, True)
    assert total_params(m) == 32 * layer + 256000 * h + h
