"""Mode peft: reading PEFT adapter configs, refusing bad ones by field, and the terms each type adds.

Counts against the real library are in tests/integration/test_peft_counts.py; the expected values
here are hand arithmetic on the model's published dimensions (shown), or the calibrated LoRA mode.
"""

import json

import pytest

from pycore import api
from pycore.data.catalog import catalog_model
from pycore.errors import InputError
from pycore.training.adapter_params import factorization
from pycore.training.adapters import adapter_plan
from pycore.training.peft_config import PEFT_TYPES, REFUSED, parse_peft_config

LLAMA8 = "llama-3.1-8b"      # hidden 4096, 32 layers, 32 heads, 8 KV heads (k/v out 1024), ffn 14336, vocab 128256


def _plan(raw, name=LLAMA8):
    return adapter_plan(catalog_model(name), parse_peft_config("workload.peft_config", raw))


def _estimate(workload, model=LLAMA8):
    req = {"model": model, "gpu": "a100-80gb", "workload": workload}
    return json.loads(api.estimate(json.dumps(req)))


def _error_field(workload, model=LLAMA8):
    out = _estimate(workload, model)
    assert out["status"] == "error", out
    return out["errors"][0]["field"], out["errors"][0]["message"]


BASE = {"batch_size": 2, "seq_len": 1024}


def test_every_peft_type_is_known_and_the_refused_ones_say_why():
    assert len(PEFT_TYPES) == 45 and len(set(PEFT_TYPES)) == 45
    assert len(PEFT_TYPES) - len(REFUSED) >= 30
    field, message = _error_field({**BASE, "mode": "peft", "peft_config": {"peft_type": "XLORA"}})
    assert field == "workload.peft_config.peft_type" and "XLORA is not modelled" in message


def test_an_unknown_peft_type_is_refused_naming_the_field():
    field, message = _error_field({**BASE, "mode": "peft", "peft_config": {"peft_type": "SUPER_LORA", "r": 8}})
    assert field == "workload.peft_config.peft_type" and "SUPER_LORA" in message


def test_rank_zero_is_refused_naming_r():
    field, _ = _error_field({**BASE, "mode": "peft", "peft_config": {"peft_type": "LORA", "r": 0,
                                                                     "target_modules": ["q_proj"]}})
    assert field == "workload.peft_config.r"


def test_targets_that_match_no_module_are_refused_naming_target_modules():
    field, message = _error_field({**BASE, "mode": "peft", "peft_config": {"peft_type": "LORA", "r": 8,
                                                                           "target_modules": ["c_attn"]}})
    assert field == "workload.peft_config.target_modules" and "model.layers.0.self_attn.q_proj" in message
    field, _ = _error_field({**BASE, "mode": "peft", "peft_config": {"peft_type": "LORA", "r": 8,
                                                                     "target_modules": r"model\.layers\.99\..*"}})
    assert field == "workload.peft_config.target_modules"


def test_contradicting_patterns_are_refused_naming_the_field():
    both = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"],
            "rank_pattern": {"q_proj": 4, "self_attn.q_proj": 16}}
    assert _error_field({**BASE, "mode": "peft", "peft_config": both})[0] == "workload.peft_config.rank_pattern"
    unused = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "rank_pattern": {"down_proj": 4}}
    assert _error_field({**BASE, "mode": "peft", "peft_config": unused})[0] == "workload.peft_config.rank_pattern"
    regex_and_layers = {"peft_type": "LORA", "r": 8, "target_modules": ".*q_proj", "layers_to_transform": [0]}
    assert _error_field({**BASE, "mode": "peft", "peft_config": regex_and_layers})[0] == \
        "workload.peft_config.layers_to_transform"
    oft_both = {"peft_type": "OFT", "r": 4, "oft_block_size": 32, "target_modules": ["q_proj"]}
    assert _error_field({**BASE, "mode": "peft", "peft_config": oft_both})[0] == "workload.peft_config.r"


def test_unmodelled_lora_options_are_refused_naming_the_key():
    cfg = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "layer_replication": [[0, 4], [2, 6]]}
    assert _error_field({**BASE, "mode": "peft", "peft_config": cfg})[0] == "workload.peft_config.layer_replication"


def test_peft_config_needs_mode_peft_and_mode_peft_needs_a_config():
    assert _error_field({**BASE, "mode": "peft"})[0] == "workload.peft_config"
    assert _error_field({**BASE, "mode": "lora", "peft_config": {"peft_type": "LORA"}})[0] == "workload.peft_config"


def test_lora_counts_by_hand_on_llama_8b():
    # q: 8 x (4096 + 4096) = 65,536; v: 8 x (4096 + 1024) = 40,960; x 32 layers = 3,407,872
    assert _plan({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"]}).trainable == 3_407_872
    # PEFT's default for llama is q_proj and v_proj (peft/utils/constants.py line 85)
    assert _plan({"peft_type": "LORA", "r": 8}).trainable == 3_407_872
    # rank_pattern: v at rank 2 -> 65,536 + 2 x 5,120 = 75,776 per layer; layers_to_transform [0, 1] -> 2 layers
    cfg = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"v_proj": 2},
           "layers_to_transform": [0, 1]}
    assert _plan(cfg).trainable == 2 * 75_776
    # DoRA adds one magnitude per output: 32 x (4096 + 1024) = 163,840
    dora = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"], "use_dora": True}
    assert _plan(dora).trainable == 3_407_872 + 163_840


def test_lokr_factorises_as_peft_does():
    # lokr/layer.py docstring: 256 -> (16, 16), 128 -> (8, 16), 127 -> (1, 127), 128 with factor 4 -> (4, 32)
    assert factorization(256) == (16, 16) and factorization(128) == (8, 16)
    assert factorization(127) == (1, 127) and factorization(128, 4) == (4, 32)


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor", "adamw_8bit", "sgd"])
def test_peft_lora_gives_exactly_the_lora_modes_numbers(optimizer):
    # the LoRA mode is the calibrated one (shared/calibration); a PEFT LoRA config must not differ from it
    lora = _estimate({**BASE, "mode": "lora", "optimizer": optimizer,
                      "lora": {"rank": 16, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}})
    peft = _estimate({**BASE, "mode": "peft", "optimizer": optimizer,
                      "peft_config": {"peft_type": "LORA", "r": 16,
                                      "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}})
    assert lora["result"]["peak_allocated_bytes"] == peft["result"]["peak_allocated_bytes"]
    assert lora["result"]["params"]["trainable"] == peft["result"]["params"]["trainable"]


def _peak(cfg, **kw):
    out = _estimate({**BASE, **kw, "mode": "peft", "peft_config": cfg}, model="llama-3.2-1b")
    assert out["status"] == "ok", out
    return out["result"]["peak_allocated_bytes"]


def test_loha_keeps_a_full_weight_delta_per_adapted_module():
    # llama-3.2-1b q_proj is 2048 x 2048; LoHa saves the fp32 delta F.linear uses: 16 layers x 2048^2 x 4 bytes
    # = 268,435,456 bytes more than a LoRA whose trainable count is the same (LoHa r=4 has 2 x 4 = LoRA r=8's)
    loha = _peak({"peft_type": "LOHA", "r": 4, "target_modules": ["q_proj"]})
    lora = _peak({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]})
    assert loha - lora >= 16 * 2048 * 2048 * 4


def test_prompt_tuning_lengthens_every_sequence():
    # 100 virtual tokens on 1024: the activations grow as a 1124-token run's
    prompt = _peak({"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 100})
    ia3 = _peak({"peft_type": "IA3", "target_modules": ["v_proj"], "feedforward_modules": []})
    assert prompt > ia3


def test_adalora_keeps_importance_scores_beside_the_optimizer():
    out = _estimate({**BASE, "mode": "peft", "peft_config": {"peft_type": "ADALORA", "init_r": 12, "target_r": 8,
                                                             "total_step": 1000, "target_modules": ["q_proj"]}},
                    model="llama-3.2-1b")
    # 16 layers x 12 x (2048 + 2048 + 1) = 16 x 49,164 = 786,624 parameters, three fp32 score tensors each
    assert out["result"]["params"]["trainable"] == 786_624
    text = json.dumps(out["result"])
    assert "AdaLoRA importance scores" in text and str(3 * 786_624 * 4) in text


@pytest.mark.parametrize("field, value", [
    ("target_modules", "(a+)+x"), ("target_modules", "((q+))*_proj"), ("target_modules", ".*.*.*.*x"),
    ("exclude_modules", "(o|v)+_proj"), ("rank_pattern", {"(.*)*down_proj": 4}), ("modules_to_save", ["(.+)+head"]),
])
def test_regexes_that_could_backtrack_for_ever_are_refused_at_once(field, value):
    import time
    cfg = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], field: value}
    start = time.perf_counter()
    got, message = _error_field({**BASE, "mode": "peft", "peft_config": cfg})
    assert time.perf_counter() - start < 2
    assert got.startswith("workload.peft_config." + field) and ("repeat" in message)


def test_peft_s_own_regex_defaults_are_accepted():
    # peft/utils/constants.py line 101 (gemma4): r".*language_model\..*\.(q_proj|v_proj)"
    cfg = {"peft_type": "LORA", "r": 8, "target_modules": r".*model\..*\.(q_proj|v_proj)"}
    assert _plan(cfg).trainable == 3_407_872


def test_prefix_tuning_keeps_its_keys_and_values_and_an_explicit_mask():
    from pycore.training.workload import Hardware, Precision, Workload
    from pycore.estimate import estimate as run
    cfg = parse_peft_config("workload.peft_config", {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20})
    m = catalog_model(LLAMA8)
    e = run(m, Workload(mode="peft", batch_size=2, seq_len=1024, peft_config=cfg), Precision(), Hardware("x", 80 << 30))
    # keys longer than the queries: an explicit mask, so SDPA cannot take the flash kernel
    assert e.context.kernel == "efficient"
    snap = next(s for s in e.snapshots if s.moment == "last layer's forward")
    acts = dict(snap.parts)["activations"]
    # 32 layers x 2 (K and V) x batch 2 x 20 prefix tokens x 1024 (8 KV heads x 128) x 2 bytes
    assert acts["prefix keys and values"] == 32 * 2 * 2 * 20 * 1024 * 2
    # PEFT sizes the prefix by num_key_value_heads x head_dim (peft/utils/other.py lines 1198-1232):
    # 20 x 32 layers x 2 x 1024 trainable values
    assert e.params["trainable"] == 20 * 32 * 2 * 1024


def test_an_adapter_over_an_nf4_base_gives_the_qlora_modes_numbers_for_lora():
    qlora = _estimate({**BASE, "mode": "qlora", "lora": {"rank": 16}})
    peft = json.loads(api.estimate(json.dumps({
        "model": LLAMA8, "gpu": "a100-80gb", "framework": {"lora_adapters_fp32": False},
        "workload": {**BASE, "mode": "peft", "peft_nf4_base": True, "peft_config": {
            "peft_type": "LORA", "r": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}})))
    assert peft["result"]["peak_allocated_bytes"] == qlora["result"]["peak_allocated_bytes"]
    assert _error_field({**BASE, "mode": "lora", "peft_nf4_base": True})[0] == "workload.peft_nf4_base"
