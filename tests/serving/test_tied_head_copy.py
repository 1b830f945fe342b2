"""A tied model loaded from an AWQ checkpoint that stores lm_head.weight beside the embedding (AutoAWQ's
save_quantized before 0.2.9 cloned every state_dict tensor): transformers 5.0-5.3 keep the two (tie_weights:
"both are present in the checkpoints, so we will NOT tie them", PR #42507); from 5.4 tie_weights ties them
after comparing them with torch.equal (PR #44497), so the copy is a moment of loading. Bytes by hand."""

from pycore.api import estimate_dict
from pycore.versions import RULES


def _result(model, tf, fmt="awq", weights="int4"):
    resp = estimate_dict({"model": model, "gpu": {"memory_gib": 80},
                          "precision": {"weights": weights, "quant_format": fmt},
                          "framework": {"transformers": tf},
                          "workload": {"mode": "inference", "batch_size": 1, "seq_len": 512, "new_tokens": 64}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def _weights(res):
    return next(c["bytes"] for c in res["breakdown"]["children"][0]["children"] if c["name"] == "weights")


# Llama 3.2 3B ties its embeddings: vocab 128,256 x hidden 3,072 x 2 bytes (fp16) = 788,004,864 B
HEAD = 128_256 * 3_072 * 2


def test_transformers_5_0_to_5_3_keep_a_second_16_bit_head():
    old, new = _result("llama-3.2-3b", "5.2.0"), _result("llama-3.2-3b", "5.17.0")
    assert _weights(old) - _weights(new) == HEAD
    assert any("second copy of the embedding" in w for w in old["warnings"])


def test_from_5_4_the_copy_and_torch_equal_s_mask_are_a_loading_moment():
    res = _result("llama-3.2-3b", "5.17.0")
    # at batch 1 x 512 the prompt pass adds less than the copy and its 1-byte-per-element bool mask
    assert res["peak_phase"] == "load"
    assert res["peak_allocated_bytes"] == _weights(res) + HEAD + 128_256 * 3_072 * 1
    assert _result("llama-3.2-3b", "5.3.9")["peak_phase"] != "load"


def test_an_untied_model_or_another_format_is_unchanged():
    # Llama 3.1 8B has its own lm_head in the checkpoint and in the model: nothing to tie
    assert _weights(_result("llama-3.1-8b", "5.2.0")) == _weights(_result("llama-3.1-8b", "5.17.0"))
    assert _result("llama-3.1-8b", "5.17.0")["peak_phase"] != "load"
    # GPTQ checkpoints are not known to store the tied head twice: no rule applies
    assert _weights(_result("llama-3.2-3b", "5.2.0", "gptq")) == _weights(_result("llama-3.2-3b", "5.17.0", "gptq"))


def test_the_rule_holds_from_5_0_until_5_4():
    rule = next(r for r in RULES if r.name == "tied-head-loaded-twice")
    assert [rule.holds(v) for v in ((4, 57, 6), (5, 0, 0), (5, 3, 9), (5, 4, 0))] == [False, True, True, False]
